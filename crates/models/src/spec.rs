//! Model spec resolution: what the user typed (`--model`, or nothing) to files on disk.
//!
//! - nothing: the default model (see [`crate::catalog`]);
//! - a path to a `.gguf` file, or a directory holding one GGUF;
//! - a path to a Hugging Face directory (config.json, *.safetensors, tokenizer.json);
//! - a short name of the catalog (`gemma3-270m`), fetched into the model cache if missing;
//! - an `org/name` repo id, looked up in the Hugging Face cache (`HF_HOME`, through the
//!   `hf-hub` crate). Ingot never downloads from the hub itself; with or without
//!   `HF_HUB_OFFLINE`, a repo that is not cached is an error saying where it looked.

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    Gguf(PathBuf),
    HfDir(PathBuf),
}

impl ModelSource {
    pub fn path(&self) -> &Path {
        match self {
            ModelSource::Gguf(p) | ModelSource::HfDir(p) => p,
        }
    }
}

/// Resolves a spec; `None` means the default model (fetched if missing).
pub fn resolve(spec: Option<&str>) -> Result<ModelSource> {
    let Some(spec) = spec else {
        return Ok(ModelSource::Gguf(crate::catalog::DEFAULT.ensure()?));
    };
    let path = Path::new(spec);
    if path.is_file() {
        return Ok(ModelSource::Gguf(path.to_path_buf()));
    }
    if path.is_dir() {
        return resolve_dir(path);
    }
    if let Some(model) = crate::catalog::find(spec) {
        return Ok(ModelSource::Gguf(model.ensure()?));
    }
    if looks_like_repo_id(spec) {
        return resolve_hf_cache(spec, &hf_hub::Cache::from_env());
    }
    Err(ModelError::Resolve(format!(
        "model '{spec}': no such file or directory, not a model of the catalog ({}), and not \
         an 'org/name' Hugging Face repo id",
        crate::catalog::MODELS
            .iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

fn resolve_dir(dir: &Path) -> Result<ModelSource> {
    if dir.join("config.json").is_file() {
        return Ok(ModelSource::HfDir(dir.to_path_buf()));
    }
    let ggufs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::Resolve(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    match ggufs.as_slice() {
        [one] => Ok(ModelSource::Gguf(one.clone())),
        [] => Err(ModelError::Resolve(format!(
            "{}: neither a Hugging Face model directory (no config.json) nor a folder with a .gguf",
            dir.display()
        ))),
        _ => Err(ModelError::Resolve(format!(
            "{}: holds several .gguf files; name one",
            dir.display()
        ))),
    }
}

fn looks_like_repo_id(s: &str) -> bool {
    let ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    matches!(s.split('/').collect::<Vec<_>>().as_slice(), [org, name] if ok(org) && ok(name))
}

/// Looks `repo_id` up in an HF cache (`<cache>/models--org--name/snapshots/<rev>/`).
pub fn resolve_hf_cache(repo_id: &str, cache: &hf_hub::Cache) -> Result<ModelSource> {
    let repo = cache.repo(hf_hub::Repo::model(repo_id.to_string()));
    if let Some(config) = repo.get("config.json") {
        let dir = config
            .parent()
            .expect("a cached file has a snapshot folder");
        return Ok(ModelSource::HfDir(dir.to_path_buf()));
    }
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0");
    Err(ModelError::Resolve(format!(
        "model '{repo_id}' is not in the Hugging Face cache at {}{}; Ingot does not download \
         from the hub: fetch it with the Hugging Face CLI first, or pass a local path",
        cache.path().display(),
        if offline {
            " (HF_HUB_OFFLINE is set)"
        } else {
            ""
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        assert!(looks_like_repo_id("HuggingFaceTB/SmolLM2-135M-Instruct"));
        assert!(!looks_like_repo_id("a/b/c"));
        assert!(!looks_like_repo_id("model.gguf"));
    }
}
