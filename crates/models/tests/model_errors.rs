//! Malformed model folders and files give errors that name the file and the problem: a
//! missing config key, an unknown architecture, a weight whose shape disagrees with the
//! config, a GGUF of an unsupported architecture. Never a panic.

use std::path::{Path, PathBuf};

use ingot_backend_cpu::CpuBackend;
use ingot_models::{ModelError, ModelFiles, ModelSource};
use ingot_tensor::DType;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

/// A copy of the tiny Llama HF folder with `config.json` edited by `edit`.
fn edited_copy(edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        std::fs::copy(fixture("tiny-llama").join(f), dir.path().join(f)).unwrap();
    }
    let text = std::fs::read_to_string(fixture("tiny-llama/config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut v);
    std::fs::write(dir.path().join("config.json"), v.to_string()).unwrap();
    dir
}

fn open_and_load(dir: &Path) -> Result<(), ModelError> {
    let files = ModelFiles::open(ModelSource::HfDir(dir.to_path_buf()))?;
    files.load_model(&CpuBackend::new(), DType::F32).map(|_| ())
}

#[test]
fn missing_config_key_names_file_and_key() {
    let dir = edited_copy(|v| {
        v.as_object_mut().unwrap().remove("hidden_size");
    });
    let msg = open_and_load(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("config.json") && msg.contains("hidden_size"),
        "{msg}"
    );
}

#[test]
fn unknown_architecture_lists_supported_ones() {
    let dir = edited_copy(|v| v["architectures"] = serde_json::json!(["GPT2LMHeadModel"]));
    let err = open_and_load(dir.path()).unwrap_err();
    assert!(matches!(err, ModelError::UnknownArchitecture { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("GPT2LMHeadModel") && msg.contains("LlamaForCausalLM"),
        "{msg}"
    );
}

#[test]
fn weight_shape_mismatch_names_the_tensor() {
    let dir = edited_copy(|v| v["intermediate_size"] = serde_json::json!(96));
    let msg = open_and_load(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("mlp.gate_proj"),
        "{msg}"
    );
    assert!(msg.contains("does not match"), "{msg}");
}

#[test]
fn gguf_of_unknown_architecture() {
    // Rewrite the architecture string inside the fixture GGUF ("llama" -> "lxama").
    let mut bytes = std::fs::read(fixture("tiny-llama/tiny-llama-f32.gguf")).unwrap();
    let key = b"general.architecture";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    // value type (u32) + length (u64) + "llama"
    let s = at + 4 + 8;
    assert_eq!(&bytes[s..s + 5], b"llama");
    bytes[s + 1] = b'x';
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let msg = ModelFiles::open(ModelSource::Gguf(path))
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("odd.gguf") && msg.contains("lxama") && msg.contains("qwen2"),
        "{msg}"
    );
}

#[test]
fn truncated_gguf_is_an_error_not_a_panic() {
    let bytes = std::fs::read(fixture("tiny-llama/tiny-llama-f32.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.gguf");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let msg = ModelFiles::open(ModelSource::Gguf(path))
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("cut.gguf"), "{msg}");
}
