//! `LoadFormat::Dummy`: a model known only by its config loads with generated weights, the
//! tokenizer comes from the folder when it has one and is the placeholder vocabulary when it
//! has not, and a GGUF's metadata works as the config too.

use std::path::PathBuf;

use ingot_backend_cpu::CpuBackend;
use ingot_models::{LoadFormat, ModelFiles, ModelSource};
use ingot_tensor::DType;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

#[test]
fn config_alone_loads_with_placeholder_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("tiny-qwen2/config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let source = ModelSource::HfDir(dir.path().to_path_buf());
    // Without the dummy format the folder is incomplete.
    assert!(ModelFiles::open(source.clone()).is_err());
    let files = ModelFiles::open_as(source, LoadFormat::Dummy).unwrap();
    assert_eq!(files.tokenizer.vocab_size(), files.config.vocab_size);
    assert_eq!(files.tokenizer.eos_token_ids(), &[447]);
    assert!(
        files.config.qkv_bias,
        "Qwen2 shapes include the Q/K/V biases"
    );
    files.load_model(&CpuBackend::new(), DType::F16).unwrap();
}

#[test]
fn folder_tokenizer_and_gguf_metadata_are_used() {
    let hf =
        ModelFiles::open_as(ModelSource::HfDir(fixture("tiny-llama")), LoadFormat::Dummy).unwrap();
    let real = ModelFiles::open(ModelSource::HfDir(fixture("tiny-llama"))).unwrap();
    assert_eq!(
        hf.tokenizer.encode("hello world", true).unwrap(),
        real.tokenizer.encode("hello world", true).unwrap()
    );
    hf.load_model(&CpuBackend::new(), DType::F32).unwrap();

    let gguf = ModelFiles::open_as(
        ModelSource::Gguf(fixture("tiny-llama/tiny-llama-f32.gguf")),
        LoadFormat::Dummy,
    )
    .unwrap();
    assert_eq!(gguf.config.num_layers, real.config.num_layers);
    gguf.load_model(&CpuBackend::new(), DType::F32).unwrap();
}
