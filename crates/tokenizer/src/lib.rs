//! Text <-> token ids for Ingot, and chat templates.
//!
//! A [`Tokenizer`] wraps Hugging Face's `tokenizers` crate, so the BPE merge loop, added-token matching
//! and byte-level decoding are the same code transformers runs. It is built either from a Hugging Face
//! model directory (`tokenizer.json` + `tokenizer_config.json` + `generation_config.json`) or from the
//! tokenizer metadata of a GGUF file ([`GgufVocab`], filled in by the GGUF loader of `ingot-models`),
//! where the pipeline is assembled by hand the way llama.cpp reads those keys. A [`ChatTemplate`] renders
//! OpenAI-style messages with minijinja, set up to behave like the Jinja environment transformers uses.
//!
//! This crate knows nothing about models or tensors, so both loaders and tests can use it alone.

mod chat_template;
mod error;
mod gguf_vocab;
mod spm;
mod tokenizer;

pub use chat_template::ChatTemplate;
pub use error::{Error, Result};
pub use gguf_vocab::{GgufVocab, SUPPORTED_GGUF_MODELS, SUPPORTED_GGUF_PRE, TokenType};
pub use tokenizer::Tokenizer;
