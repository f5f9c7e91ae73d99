//! Hugging Face safetensors checkpoints: one file, a directory of `*.safetensors` files, or
//! shards listed by `model.safetensors.index.json`, all memory-mapped.
//!
//! A safetensors file is `header_len: u64`, a JSON header mapping each tensor name to its
//! dtype, shape and `[start, end)` byte range in the data that follows, then the data. The
//! `safetensors` crate parses and validates the header (ranges contiguous, sizes consistent
//! with dtype and shape, data exactly filling the rest of the file); this module keeps one
//! table of all tensors across the shards, each pointing into its file's map, so a lookup is
//! a hash probe and a load is one conversion pass (F32/F16/BF16 -> f32, other dtypes are an
//! error at load time naming the file and tensor).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
pub use safetensors::Dtype;
use safetensors::{SafeTensorError, SafeTensors};

use super::dequant;
use super::ggml_type::GgmlType;
use super::{LoadError, WeightSource};

/// The shard index file name written by `transformers`.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// One mapped file.
#[derive(Debug)]
struct Shard {
    path: PathBuf,
    map: Mmap,
}

/// One tensor's entry in the combined table.
#[derive(Clone, Debug)]
struct Entry {
    name: String,
    /// Index into `SafetensorsDir::shards`.
    shard: usize,
    dtype: Dtype,
    /// Row-major shape, outermost first.
    shape: Vec<usize>,
    /// Absolute byte range within the shard's map.
    start: usize,
    end: usize,
}

/// All tensors of a safetensors checkpoint, memory-mapped.
#[derive(Debug)]
pub struct SafetensorsDir {
    /// What `open` was given (directory or single file).
    path: PathBuf,
    shards: Vec<Shard>,
    /// Shard by shard, each in data-offset order.
    entries: Vec<Entry>,
    /// name -> index into `entries`.
    by_name: HashMap<String, usize>,
}

impl SafetensorsDir {
    /// Opens `path`: a single `.safetensors` file; a directory with
    /// `model.safetensors.index.json` (its shards); or a directory of `*.safetensors` files
    /// (all of them, sorted by name).
    pub fn open(path: &Path) -> Result<SafetensorsDir, LoadError> {
        let index_path = path.join(INDEX_FILE);
        let index = if path.is_dir() && index_path.is_file() {
            Some(read_index(&index_path)?)
        } else {
            None
        };
        let files = match &index {
            _ if path.is_file() => vec![path.to_path_buf()],
            Some(index) => index.files.clone(),
            None => list_safetensors(path)?,
        };
        let mut out = SafetensorsDir {
            path: path.to_path_buf(),
            shards: Vec::with_capacity(files.len()),
            entries: Vec::new(),
            by_name: HashMap::new(),
        };
        for file in files {
            out.add_shard(file)?;
        }
        if let Some(index) = index {
            out.check_index(&index_path, index)?;
        }
        Ok(out)
    }

    fn add_shard(&mut self, path: PathBuf) -> Result<(), LoadError> {
        let io = |source| LoadError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        if file.metadata().map_err(io)?.len() == 0 {
            return Err(LoadError::Malformed {
                path,
                message: "not a safetensors file: the file is empty".into(),
            });
        }
        // SAFETY: read-only private map; as for every mmap-based loader, the file must not be
        // truncated or rewritten by another process while it is mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let (header_len, meta) =
            SafeTensors::read_metadata(&map).map_err(|e| LoadError::Malformed {
                path: path.clone(),
                message: describe_safetensors_error(&e, map.len()),
            })?;
        let data_start = 8 + header_len;
        let shard = self.shards.len();
        for name in meta.offset_keys() {
            let Some(info) = meta.info(&name) else {
                continue;
            };
            if let Some(&prev) = self.by_name.get(&name) {
                let other = &self.shards[self.entries[prev].shard].path;
                return Err(LoadError::Tensor {
                    path,
                    tensor: name,
                    message: format!("also present in {}", other.display()),
                });
            }
            let (s, e) = info.data_offsets;
            self.by_name.insert(name.clone(), self.entries.len());
            self.entries.push(Entry {
                name,
                shard,
                dtype: info.dtype,
                shape: info.shape.clone(),
                start: data_start + s,
                end: data_start + e,
            });
        }
        self.shards.push(Shard { path, map });
        Ok(())
    }

    /// Every tensor the index names must be in the shard the index says.
    fn check_index(&self, index_path: &Path, index: ShardIndex) -> Result<(), LoadError> {
        for (tensor, file) in index.weight_map {
            let found = self
                .by_name
                .get(&tensor)
                .map(|&i| &self.shards[self.entries[i].shard].path);
            if found != Some(&file) {
                return Err(LoadError::Tensor {
                    path: index_path.to_path_buf(),
                    tensor,
                    message: match found {
                        Some(p) => {
                            format!("listed in {} but found in {}", file.display(), p.display())
                        }
                        None => format!("listed in {} but not present there", file.display()),
                    },
                });
            }
        }
        Ok(())
    }

    /// Paths of the mapped files, in load order.
    pub fn files(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).collect()
    }

    fn entry(&self, name: &str) -> Result<&Entry, LoadError> {
        self.by_name
            .get(name)
            .map(|&i| &self.entries[i])
            .ok_or_else(|| LoadError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
            })
    }

    /// The tensor's stored dtype.
    pub fn dtype(&self, name: &str) -> Result<Dtype, LoadError> {
        Ok(self.entry(name)?.dtype)
    }

    /// The tensor's raw little-endian bytes, borrowed from the map.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], LoadError> {
        let e = self.entry(name)?;
        let shard = &self.shards[e.shard];
        // read_metadata() proved the ranges lie in the file; still a checked lookup.
        shard
            .map
            .get(e.start..e.end)
            .ok_or_else(|| LoadError::Tensor {
                path: shard.path.clone(),
                tensor: name.to_string(),
                message: "data lies outside the file".into(),
            })
    }
}

impl WeightSource for SafetensorsDir {
    fn path(&self) -> &Path {
        &self.path
    }

    fn file_of(&self, name: &str) -> &Path {
        match self.by_name.get(name) {
            Some(&i) => &self.shards[self.entries[i].shard].path,
            None => &self.path,
        }
    }

    fn tensor_names(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.name.clone()).collect()
    }

    fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>, LoadError> {
        Ok(self.entry(name)?.shape.clone())
    }

    fn load_f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        let e = self.entry(name)?;
        let bytes = self.tensor_bytes(name)?;
        let err = |message: String| LoadError::Tensor {
            path: self.shards[e.shard].path.clone(),
            tensor: name.to_string(),
            message,
        };
        // Element-wise little-endian floats are GGML's F32/F16/BF16 layouts exactly.
        let ty = match e.dtype {
            Dtype::F32 => GgmlType::F32,
            Dtype::F16 => GgmlType::F16,
            Dtype::BF16 => GgmlType::BF16,
            other => {
                return Err(err(format!(
                    "dtype {other:?} is not supported (F32, F16 and BF16 are)"
                )));
            }
        };
        let n: usize = e.shape.iter().product();
        dequant::dequantize_to_vec(ty, bytes, n).map_err(|x| err(x.to_string()))
    }
}

/// What `model.safetensors.index.json` says.
struct ShardIndex {
    /// The shard files it names, deduplicated, in the order first named.
    files: Vec<PathBuf>,
    /// (tensor, shard file path) pairs.
    weight_map: Vec<(String, PathBuf)>,
}

fn read_index(index: &Path) -> Result<ShardIndex, LoadError> {
    let bad = |message: String| LoadError::Malformed {
        path: index.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(index).map_err(|source| LoadError::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no \"weight_map\" object".into()))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = Vec::new();
    let mut pairs = Vec::with_capacity(map.len());
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("weight_map entry for '{tensor}' is not a string")))?;
        let p = dir.join(file);
        if !files.contains(&p) {
            files.push(p.clone());
        }
        pairs.push((tensor.clone(), p));
    }
    if files.is_empty() {
        return Err(bad("\"weight_map\" is empty".into()));
    }
    Ok(ShardIndex {
        files,
        weight_map: pairs,
    })
}

/// Every `*.safetensors` file directly in `dir`, sorted by name.
fn list_safetensors(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let p = entry.map_err(io)?.path();
        if p.extension().is_some_and(|e| e == "safetensors") && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(LoadError::Malformed {
            path: dir.to_path_buf(),
            message: format!("no *.safetensors files and no {INDEX_FILE}"),
        });
    }
    Ok(files)
}

fn describe_safetensors_error(e: &SafeTensorError, file_len: usize) -> String {
    let hint = match e {
        SafeTensorError::MetadataIncompleteBuffer => {
            format!(
                ": the header's tensors do not end exactly at the end of the file \
                 ({file_len} bytes): truncated or trailing data"
            )
        }
        SafeTensorError::InvalidHeaderLength | SafeTensorError::HeaderTooSmall => {
            format!(": the header does not fit in the file ({file_len} bytes): truncated?")
        }
        _ => String::new(),
    };
    format!("not a valid safetensors file: {e}{hint}")
}
