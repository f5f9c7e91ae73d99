//! GGUF (v2 and v3) reader: a memory-mapped file, its parsed header and a table of tensors.
//!
//! Layout (ggml's `docs/gguf.md`; all little-endian): magic `"GGUF"`, `version: u32`,
//! `tensor_count: u64`, `kv_count: u64`, then `kv_count` metadata pairs (`key: string`,
//! `type: u32`, value; strings are `len: u64` + UTF-8 bytes, arrays `elem_type: u32`,
//! `len: u64` + elements, and may nest), then `tensor_count` tensor infos (`name: string`,
//! `n_dims: u32`, `ne: [u64; n_dims]`, `type: u32`, `offset: u64`), padding to
//! `general.alignment` (default 32), and the data section, where each tensor's bytes sit at
//! `data_start + offset`. Version 1 (32-bit counts) and big-endian files are rejected.
//!
//! `open` parses the header once (O(header bytes); a vocabulary of 150k strings costs a few
//! milliseconds) and checks every tensor up front: known type, `ne[0]` a whole number of
//! blocks, aligned offset, bytes inside the file. After that, tensor access is a slice of the
//! map and cannot fail on bounds. Nothing trusts a count from the file when allocating: a
//! count larger than the bytes left is reported as truncation before any `Vec` is sized by it.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use ingot_tensor::DType;
use memmap2::Mmap;

use super::dequant::{self, DequantError};
use super::ggml_type::GgmlType;
use super::{LoadError, WeightSource};

/// Alignment of the data section and of each tensor's offset when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;
/// Deepest array nesting accepted; real files use at most 1, this only bounds recursion.
const MAX_ARRAY_DEPTH: usize = 8;

/// One metadata value. Arrays hold values of a single type (possibly arrays themselves).
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// GGUF's name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetaValue::U8(_) => "u8",
            MetaValue::I8(_) => "i8",
            MetaValue::U16(_) => "u16",
            MetaValue::I16(_) => "i16",
            MetaValue::U32(_) => "u32",
            MetaValue::I32(_) => "i32",
            MetaValue::U64(_) => "u64",
            MetaValue::I64(_) => "i64",
            MetaValue::F32(_) => "f32",
            MetaValue::F64(_) => "f64",
            MetaValue::Bool(_) => "bool",
            MetaValue::String(_) => "string",
            MetaValue::Array(_) => "array",
        }
    }

    /// Any integer, widened losslessly; the narrowing getters below start from this.
    fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v.into(),
            MetaValue::I8(v) => v.into(),
            MetaValue::U16(v) => v.into(),
            MetaValue::I16(v) => v.into(),
            MetaValue::U32(v) => v.into(),
            MetaValue::I32(v) => v.into(),
            MetaValue::U64(v) => v.into(),
            MetaValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// An integer of any width whose value fits in u64 (negative values do not).
    pub fn as_u64(&self) -> Option<u64> {
        self.as_i128().and_then(|v| u64::try_from(v).ok())
    }

    /// An integer of any width whose value fits in u32.
    pub fn as_u32(&self) -> Option<u32> {
        self.as_i128().and_then(|v| u32::try_from(v).ok())
    }

    /// An integer of any width whose value fits in usize.
    pub fn as_usize(&self) -> Option<usize> {
        self.as_i128().and_then(|v| usize::try_from(v).ok())
    }

    /// An integer of any width whose value fits in i64.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_i128().and_then(|v| i64::try_from(v).ok())
    }

    /// An integer of any width whose value fits in i32.
    pub fn as_i32(&self) -> Option<i32> {
        self.as_i128().and_then(|v| i32::try_from(v).ok())
    }

    /// An f32 or f64 (rounded to nearest), or an integer converted to the nearest f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => self.as_i128().map(|v| v as f64),
        }
    }

    /// As [`as_f64`](Self::as_f64), rounded to f32 (exact for an f32 value).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            MetaValue::F32(v) => Some(v),
            _ => self.as_f64().map(|v| v as f32),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A short description for error messages: the value, or an array's type and length.
    fn describe(&self) -> String {
        match self {
            MetaValue::Array(a) => match a.first() {
                Some(first) => format!("an array of {} {}", a.len(), first.type_name()),
                None => "an empty array".to_string(),
            },
            MetaValue::String(s) if s.len() > 40 => format!("a string ({} bytes)", s.len()),
            other => format!("{} {other:?}", other.type_name()),
        }
    }
}

/// One tensor's header entry.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// ggml order: `ne[0]` is the innermost (contiguous) dimension. Length 0..=4.
    pub ne: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Byte offset of the data from the start of the data section.
    pub offset: u64,
    /// Bytes of data: `product(ne) / block_size * type_size`.
    pub n_bytes: u64,
}

impl GgufTensorInfo {
    /// Row-major shape, outermost first (`ne` reversed).
    pub fn shape(&self) -> Vec<usize> {
        // open() checked that the element count fits usize, and so each non-zero extent;
        // a zero-sized tensor's other extents fit i64, hence usize on 64-bit targets.
        self.ne.iter().rev().map(|&n| n as usize).collect()
    }

    pub fn n_elements(&self) -> u64 {
        self.ne.iter().product()
    }
}

/// An open GGUF file: header parsed, data memory-mapped.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    /// The whole file, read-only.
    map: Mmap,
    version: u32,
    alignment: u64,
    /// Absolute byte offset of the data section.
    data_start: u64,
    metadata: BTreeMap<String, MetaValue>,
    /// In file order.
    tensors: Vec<GgufTensorInfo>,
    /// name -> index into `tensors`.
    by_name: HashMap<String, usize>,
}

impl GgufFile {
    /// Maps and parses `path`, validating every tensor's type and extent.
    pub fn open(path: &Path) -> Result<GgufFile, LoadError> {
        let io = |source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            return Err(malformed(path, "truncated header: the file is empty"));
        }
        // SAFETY: the map is read-only and private to this process. As with every mmap-based
        // model loader, another process truncating or rewriting the file while it is mapped
        // would be undefined behaviour; model files are not modified while being served.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let header = parse_header(path, &map)?;
        let by_name = header
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            path: path.to_path_buf(),
            map,
            version: header.version,
            alignment: header.alignment,
            data_start: header.data_start,
            metadata: header.metadata,
            tensors: header.tensors,
            by_name,
        })
    }

    /// 2 or 3.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// `general.alignment`, or [`DEFAULT_ALIGNMENT`].
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset of the data section.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// Every metadata pair, sorted by key.
    pub fn metadata(&self) -> &BTreeMap<String, MetaValue> {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// The value of `key`, or an error naming the file and key when it is absent.
    pub fn require(&self, key: &str) -> Result<&MetaValue, LoadError> {
        self.metadata
            .get(key)
            .ok_or_else(|| malformed(&self.path, format!("metadata key '{key}' is missing")))
    }

    /// `key` read through `convert`, or an error naming the file, key, what was expected and
    /// what was found.
    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        convert: impl FnOnce(&'a MetaValue) -> Option<T>,
    ) -> Result<T, LoadError> {
        let value = self.require(key)?;
        convert(value).ok_or_else(|| {
            malformed(
                &self.path,
                format!(
                    "metadata key '{key}' is {}, expected {expected}",
                    value.describe()
                ),
            )
        })
    }

    pub fn get_str(&self, key: &str) -> Result<&str, LoadError> {
        self.typed(key, "a string", MetaValue::as_str)
    }

    /// Any integer type whose value fits.
    pub fn get_u32(&self, key: &str) -> Result<u32, LoadError> {
        self.typed(key, "an integer that fits u32", MetaValue::as_u32)
    }

    /// Any integer type whose value fits.
    pub fn get_u64(&self, key: &str) -> Result<u64, LoadError> {
        self.typed(key, "an integer that fits u64", MetaValue::as_u64)
    }

    /// Any integer type whose value fits.
    pub fn get_usize(&self, key: &str) -> Result<usize, LoadError> {
        self.typed(key, "an integer that fits usize", MetaValue::as_usize)
    }

    /// Any integer type whose value fits.
    pub fn get_i64(&self, key: &str) -> Result<i64, LoadError> {
        self.typed(key, "an integer that fits i64", MetaValue::as_i64)
    }

    /// f32, f64 or an integer.
    pub fn get_f32(&self, key: &str) -> Result<f32, LoadError> {
        self.typed(key, "a number", MetaValue::as_f32)
    }

    /// f32, f64 or an integer.
    pub fn get_f64(&self, key: &str) -> Result<f64, LoadError> {
        self.typed(key, "a number", MetaValue::as_f64)
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, LoadError> {
        self.typed(key, "a bool", MetaValue::as_bool)
    }

    pub fn get_array(&self, key: &str) -> Result<&[MetaValue], LoadError> {
        self.typed(key, "an array", MetaValue::as_array)
    }

    /// An array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<String>, LoadError> {
        self.typed(key, "an array of strings", |v| {
            v.as_array()?
                .iter()
                .map(|e| e.as_str().map(str::to_owned))
                .collect()
        })
    }

    /// An array of numbers (e.g. `tokenizer.ggml.scores`).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, LoadError> {
        self.typed(key, "an array of numbers", |v| {
            v.as_array()?.iter().map(MetaValue::as_f32).collect()
        })
    }

    /// An array of integers that fit i32 (e.g. `tokenizer.ggml.token_type`).
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, LoadError> {
        self.typed(key, "an array of integers that fit i32", |v| {
            v.as_array()?.iter().map(MetaValue::as_i32).collect()
        })
    }

    /// An array of integers that fit u32.
    pub fn get_u32_array(&self, key: &str) -> Result<Vec<u32>, LoadError> {
        self.typed(key, "an array of integers that fit u32", |v| {
            v.as_array()?.iter().map(MetaValue::as_u32).collect()
        })
    }

    /// Every tensor's header entry, in file order.
    pub fn tensor_infos(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Result<&GgufTensorInfo, LoadError> {
        self.by_name
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| LoadError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
            })
    }

    pub fn ggml_type(&self, name: &str) -> Result<GgmlType, LoadError> {
        Ok(self.tensor_info(name)?.ggml_type)
    }

    /// The tensor's raw bytes (blocks of its GGML type), borrowed from the map.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], LoadError> {
        let info = self.tensor_info(name)?;
        let start = self.data_start + info.offset;
        let range = usize::try_from(start)
            .ok()
            .zip(usize::try_from(start + info.n_bytes).ok());
        // open() checked the range; this stays a checked lookup rather than an index.
        range
            .and_then(|(s, e)| self.map.get(s..e))
            .ok_or_else(|| self.tensor_error(name, "data lies outside the file"))
    }

    fn tensor_error(&self, name: &str, message: impl Into<String>) -> LoadError {
        LoadError::Tensor {
            path: self.path.clone(),
            tensor: name.to_string(),
            message: message.into(),
        }
    }
}

impl WeightSource for GgufFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn tensor_names(&self) -> Vec<String> {
        self.tensors.iter().map(|t| t.name.clone()).collect()
    }

    fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>, LoadError> {
        Ok(self.tensor_info(name)?.shape())
    }

    fn load_f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        let info = self.tensor_info(name)?;
        let bytes = self.tensor_bytes(name)?;
        let n = info.n_elements() as usize;
        dequant::dequantize_to_vec(info.ggml_type, bytes, n).map_err(|e| match e {
            DequantError::Unsupported(t) => self.tensor_error(
                name,
                format!("cannot load GGML type {t} (id {}) as f32: {e}", t.id()),
            ),
            DequantError::Size { .. } => self.tensor_error(name, e.to_string()),
        })
    }

    fn blocks(&self, name: &str) -> Result<Option<(DType, &[u8])>, LoadError> {
        let info = self.tensor_info(name)?;
        match info.ggml_type.block_dtype() {
            Some(dt) => Ok(Some((dt, self.tensor_bytes(name)?))),
            None => Ok(None),
        }
    }
}

fn malformed(path: &Path, message: impl Into<String>) -> LoadError {
    LoadError::Malformed {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// What `parse_header` finds.
struct Header {
    version: u32,
    alignment: u64,
    data_start: u64,
    metadata: BTreeMap<String, MetaValue>,
    tensors: Vec<GgufTensorInfo>,
}

/// Reads little-endian fields from the front of the file; every read is bounds-checked and
/// a short read is reported as truncation with the offset.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "truncated header: needs {n} bytes at offset {} but the file ends at {}",
                self.pos,
                self.buf.len()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_le_bytes)
    }

    /// A count of items each at least `min_item_bytes` long, checked against what is left.
    fn count(&mut self, min_item_bytes: usize, what: &str) -> Result<usize, String> {
        let at = self.pos;
        let n = self.u64()?;
        let fits = usize::try_from(n).ok().filter(|&n| {
            n.checked_mul(min_item_bytes)
                .is_some_and(|b| b <= self.remaining())
        });
        fits.ok_or_else(|| {
            format!(
                "truncated header: {what} count {n} at offset {at} needs more bytes than the \
                 {} left in the file",
                self.remaining()
            )
        })
    }

    fn string(&mut self) -> Result<String, String> {
        let len = self.count(1, "string length")?;
        let at = self.pos;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| format!("string at offset {at} is not valid UTF-8: {e}"))
    }
}

/// GGUF value type ids.
mod vt {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// Smallest encoding of one value of type `ty`, used to bound array counts.
fn min_value_bytes(ty: u32) -> usize {
    match ty {
        vt::U8 | vt::I8 | vt::BOOL => 1,
        vt::U16 | vt::I16 => 2,
        vt::U32 | vt::I32 | vt::F32 => 4,
        vt::U64 | vt::I64 | vt::F64 | vt::STRING => 8,
        vt::ARRAY => 12,
        _ => 1,
    }
}

fn read_value(c: &mut Cursor, ty: u32, depth: usize) -> Result<MetaValue, String> {
    Ok(match ty {
        vt::U8 => MetaValue::U8(c.u8()?),
        vt::I8 => MetaValue::I8(c.u8()? as i8),
        vt::U16 => MetaValue::U16(u16::from_le_bytes(c.array()?)),
        vt::I16 => MetaValue::I16(i16::from_le_bytes(c.array()?)),
        vt::U32 => MetaValue::U32(c.u32()?),
        vt::I32 => MetaValue::I32(i32::from_le_bytes(c.array()?)),
        vt::U64 => MetaValue::U64(c.u64()?),
        vt::I64 => MetaValue::I64(i64::from_le_bytes(c.array()?)),
        vt::F32 => MetaValue::F32(f32::from_le_bytes(c.array()?)),
        vt::F64 => MetaValue::F64(f64::from_le_bytes(c.array()?)),
        vt::BOOL => match c.u8()? {
            0 => MetaValue::Bool(false),
            1 => MetaValue::Bool(true),
            b => return Err(format!("bool at offset {} is {b}, not 0 or 1", c.pos - 1)),
        },
        vt::STRING => MetaValue::String(c.string()?),
        vt::ARRAY => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"));
            }
            let elem = c.u32()?;
            if elem > vt::F64 {
                return Err(format!("unknown array element type {elem}"));
            }
            let n = c.count(min_value_bytes(elem), "array")?;
            let mut items = Vec::with_capacity(n);
            for i in 0..n {
                let v = read_value(c, elem, depth + 1).map_err(|e| format!("element {i}: {e}"))?;
                items.push(v);
            }
            MetaValue::Array(items)
        }
        other => return Err(format!("unknown value type {other}")),
    })
}

fn parse_header(path: &Path, buf: &[u8]) -> Result<Header, LoadError> {
    let bad = |m: String| malformed(path, m);
    let mut c = Cursor { buf, pos: 0 };

    let magic = c.take(4).map_err(bad)?;
    if magic != b"GGUF" {
        return Err(bad(format!(
            "not a GGUF file: magic is {:?} ({magic:02x?}), expected \"GGUF\"",
            String::from_utf8_lossy(magic)
        )));
    }
    let version = c.u32().map_err(bad)?;
    if version != 2 && version != 3 {
        let hint = if (1..=3).contains(&version.swap_bytes()) {
            " (this looks like a big-endian GGUF file, which is not supported)"
        } else if version == 1 {
            " (version 1 files predate 64-bit counts; re-convert the model)"
        } else {
            ""
        };
        return Err(bad(format!(
            "unsupported GGUF version {version}{hint}; supported versions are 2 and 3"
        )));
    }
    // A tensor info is at least name length + n_dims + type + offset bytes.
    let n_tensors = c.count(8 + 4 + 4 + 8, "tensor").map_err(bad)?;
    let n_kv = c.count(8 + 4 + 1, "metadata").map_err(bad)?;

    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = c
            .string()
            .map_err(|e| bad(format!("metadata pair {i}: key: {e}")))?;
        let value = c
            .u32()
            .and_then(|ty| read_value(&mut c, ty, 0))
            .map_err(|e| bad(format!("metadata key '{key}': {e}")))?;
        if metadata.contains_key(&key) {
            return Err(bad(format!("duplicate metadata key '{key}'")));
        }
        metadata.insert(key, value);
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => v.as_u64().filter(|a| a.is_power_of_two()).ok_or_else(|| {
            bad(format!(
                "metadata key 'general.alignment' is {}, expected a power of two",
                v.describe()
            ))
        })?,
    };

    let mut tensors: Vec<GgufTensorInfo> = Vec::with_capacity(n_tensors);
    let mut seen = HashMap::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name = c
            .string()
            .map_err(|e| bad(format!("tensor info {i}: name: {e}")))?;
        let tensor_err = |m: String| LoadError::Tensor {
            path: path.to_path_buf(),
            tensor: name.clone(),
            message: m,
        };
        let n_dims = c.u32().map_err(&tensor_err)? as usize;
        if n_dims > MAX_DIMS {
            return Err(tensor_err(format!(
                "{n_dims} dimensions, at most {MAX_DIMS} are allowed"
            )));
        }
        let ne = (0..n_dims)
            .map(|_| c.u64())
            .collect::<Result<Vec<_>, _>>()
            .map_err(&tensor_err)?;
        let type_id = c.u32().map_err(&tensor_err)?;
        let offset = c.u64().map_err(&tensor_err)?;

        // ggml stores ne as int64_t; a "negative" extent is corruption, not a big tensor.
        if let Some(n) = ne.iter().find(|&&n| i64::try_from(n).is_err()) {
            return Err(tensor_err(format!(
                "dimension {n} is out of range (ne={ne:?})"
            )));
        }
        let ggml_type = GgmlType::from_id(type_id)
            .ok_or_else(|| tensor_err(format!("unknown GGML type id {type_id}")))?;
        let n_elements = ne
            .iter()
            .try_fold(1u64, |acc, &n| acc.checked_mul(n))
            .filter(|&n| usize::try_from(n).is_ok() && i64::try_from(n).is_ok())
            .ok_or_else(|| tensor_err(format!("element count of shape ne={ne:?} overflows")))?;
        let block = ggml_type.block_size() as u64;
        let ne0 = ne.first().copied().unwrap_or(1);
        if !ne0.is_multiple_of(block) {
            return Err(tensor_err(format!(
                "ne[0] = {ne0} is not a multiple of the {ggml_type} block size {block}"
            )));
        }
        let n_bytes = ggml_type
            .bytes_for(n_elements)
            .ok_or_else(|| tensor_err(format!("byte size of shape ne={ne:?} overflows")))?;
        if !offset.is_multiple_of(alignment) {
            return Err(tensor_err(format!(
                "data offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        if seen.insert(name.clone(), i).is_some() {
            return Err(bad(format!("duplicate tensor name '{name}'")));
        }
        tensors.push(GgufTensorInfo {
            name,
            ne,
            ggml_type,
            offset,
            n_bytes,
        });
    }

    let data_start = (c.pos as u64).next_multiple_of(alignment);
    let file_len = buf.len() as u64;
    for t in &tensors {
        let start = data_start.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        let message = match (start, end) {
            (Some(_), Some(e)) if e <= file_len => continue,
            (Some(s), _) if s >= file_len && t.n_bytes > 0 => format!(
                "data offset {} (absolute {s}) is past the end of the file ({file_len} bytes)",
                t.offset
            ),
            (Some(s), Some(e)) => format!(
                "data [{s}, {e}) runs past the end of the file ({file_len} bytes): truncated file?"
            ),
            _ => format!("data offset {} overflows", t.offset),
        };
        return Err(LoadError::Tensor {
            path: path.to_path_buf(),
            tensor: t.name.clone(),
            message,
        });
    }

    Ok(Header {
        version,
        alignment,
        data_start,
        metadata,
        tensors,
    })
}
