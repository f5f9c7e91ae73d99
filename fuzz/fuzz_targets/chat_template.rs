//! libFuzzer driver for `ingot_fuzz_targets::text::chat_template`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingot_fuzz_targets::text::chat_template(data));
