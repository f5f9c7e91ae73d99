//! The OpenAI-compatible API (plus vLLM's `/tokenize` and `/detokenize`), one folder per
//! endpoint: `protocol.rs` holds the request/response shapes and their conversion to engine
//! types (unit-tested without a server), `handler.rs` the thin axum handler.

pub mod chat;
pub mod common;
pub mod completions;
pub mod generation;
pub mod logprobs;
pub mod models;
pub mod structured;
pub mod tokenize;
