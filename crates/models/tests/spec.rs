//! Model spec resolution: GGUF paths, HF folders, folders holding one GGUF, and repo ids
//! looked up in a Hugging Face cache laid out as huggingface_hub writes it.

use std::path::PathBuf;

use ingot_models::spec::{self, ModelSource};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

#[test]
fn paths_resolve_by_kind() {
    let gguf = fixture("tiny-qwen2/tiny-qwen2-f32.gguf");
    assert_eq!(
        spec::resolve(Some(gguf.to_str().unwrap())).unwrap(),
        ModelSource::Gguf(gguf.clone())
    );
    let dir = fixture("tiny-qwen2");
    assert_eq!(
        spec::resolve(Some(dir.to_str().unwrap())).unwrap(),
        ModelSource::HfDir(dir)
    );
    let only = tempfile::tempdir().unwrap();
    std::fs::copy(&gguf, only.path().join("m.gguf")).unwrap();
    assert_eq!(
        spec::resolve(Some(only.path().to_str().unwrap())).unwrap(),
        ModelSource::Gguf(only.path().join("m.gguf"))
    );
    let err = spec::resolve(Some("/no/such/model.gguf"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no such file"), "{err}");
}

#[test]
fn repo_id_resolves_through_an_hf_cache() {
    // <cache>/models--org--name/{refs/main, snapshots/<rev>/...}
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--tiny-org--tiny-qwen2");
    let rev = "0123456789abcdef0123456789abcdef01234567";
    let snap = repo.join("snapshots").join(rev);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), rev).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture("tiny-qwen2").join(f), snap.join(f)).unwrap();
    }
    let hf = hf_hub::Cache::new(cache.path().to_path_buf());
    let got = spec::resolve_hf_cache("tiny-org/tiny-qwen2", &hf).unwrap();
    assert_eq!(got, ModelSource::HfDir(snap.clone()));
    let files = ingot_models::ModelFiles::open(got).unwrap();
    assert_eq!(files.config.vocab_size, 448);
    let err = spec::resolve_hf_cache("tiny-org/absent", &hf)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not in the Hugging Face cache"), "{err}");
}
