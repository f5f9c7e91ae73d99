//! The bodies of Ingot's fuzz targets: each takes arbitrary bytes and feeds them to one
//! surface that meets untrusted input, the way Ingot itself does. The libFuzzer binaries in
//! `fuzz/` (a workspace of its own, run with `cargo fuzz`) call these, and so does
//! `tests/replay.rs` in the normal suite, which replays the committed corpora and a short
//! proptest run: one body per target, two drivers.
//!
//! The property is the absence of panics, aborts and runaway allocation (libFuzzer's
//! `-rss_limit_mb` and `-malloc_limit_mb` catch the last): every malformed input must come
//! back as an `Err`, which the bodies drop.
//!
//! - [`model_file`]: GGUF files (header, metadata, tensor table, config, GGUF vocabulary and
//!   chat template) and safetensors files, through the loaders' public entry points.
//! - [`text`]: tokenizers (GGUF-built and Hugging Face) on arbitrary text and token ids,
//!   and chat templates on arbitrary messages and template arguments.
//! - [`request`]: HTTP request bodies through the server's JSON parsing, limits and
//!   conversion to sampling parameters, for every endpoint that takes one.

pub mod model_file;
pub mod request;
pub mod text;

use std::path::PathBuf;

/// `testdata/<rel>` of the repository.
pub fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}
