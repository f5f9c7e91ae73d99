//! Model files from bytes. The loaders read files (GGUF is memory-mapped), so each input is
//! written to a scratch file of this thread first and opened the way `ingot serve` opens
//! a model: then every tensor's bytes and f32 values are asked for, as loading would.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use ingot_models::loader::{GgufFile, SafetensorsDir, WeightSource};
use ingot_models::{ModelFiles, ModelSource};

/// A scratch file for this thread (tests run targets on several threads at once), written
/// with `data` for the duration of `f` and removed afterwards.
fn with_file(ext: &str, data: &[u8], f: impl FnOnce(&Path)) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    let dir = std::env::temp_dir().join("ingot-fuzz");
    std::fs::create_dir_all(&dir).expect("creating the scratch directory");
    let name = format!("{}-{}.{ext}", std::process::id(), SLOT.with(|s| *s));
    let path = dir.join(name);
    std::fs::write(&path, data).expect("writing the scratch file");
    f(&path);
    let _ = std::fs::remove_file(&path);
}

/// Most elements of one tensor converted to f32 per input: beyond that the conversion is
/// plain arithmetic over bytes already checked to exist, and only slows the fuzzer down.
const MAX_CONVERTED: usize = 1 << 16;

/// `data` as a GGUF model: header, metadata, tensor table, config, tokenizer, tensor data.
pub fn gguf(data: &[u8]) {
    with_file("gguf", data, |path| {
        let Ok(files) = ModelFiles::open(ModelSource::Gguf(path.to_path_buf())) else {
            return;
        };
        let _ = files.tokenizer.encode("Hello, world!", true);
        drop(files);
        let Ok(file) = GgufFile::open(path) else {
            return;
        };
        for name in file.tensor_names() {
            let _ = file.tensor_bytes(&name);
            let small = file
                .tensor_info(&name)
                .is_ok_and(|t| t.n_elements() as usize <= MAX_CONVERTED);
            if small {
                let _ = file.load_f32(&name);
            }
        }
    });
}

/// `data` as a `.safetensors` file: header JSON, offsets, dtypes, tensor data.
pub fn safetensors(data: &[u8]) {
    with_file("safetensors", data, |path| {
        let Ok(dir) = SafetensorsDir::open(path) else {
            return;
        };
        for name in dir.tensor_names() {
            let _ = dir.dtype(&name);
            let _ = dir.tensor_bytes(&name);
            let small = dir.shape(&name).is_ok_and(|s| {
                s.iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .is_some_and(|n| n <= MAX_CONVERTED)
            });
            if small {
                let _ = dir.load_f32(&name);
            }
        }
    });
}
