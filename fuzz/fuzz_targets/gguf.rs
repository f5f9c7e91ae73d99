//! libFuzzer driver for `ingot_fuzz_targets::model_file::gguf`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingot_fuzz_targets::model_file::gguf(data));
