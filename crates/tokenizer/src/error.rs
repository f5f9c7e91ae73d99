//! The one error type of this crate. Every variant names what was being read (a file, the GGUF vocabulary,
//! a chat template) so a caller can show it as is; none of them is raised by a panic on bad input.

use std::path::PathBuf;

/// Everything that can go wrong loading a tokenizer, encoding, decoding or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file was read but its content is not what it should be (bad JSON, bad tokenizer.json, ...).
    #[error("{}: {message}", path.display())]
    BadFile { path: PathBuf, message: String },
    /// GGUF tokenizer metadata that cannot be turned into a tokenizer.
    #[error("GGUF tokenizer metadata: {0}")]
    BadVocab(String),
    /// Encoding or decoding failed (an unknown token id, an internal tokenizers error).
    #[error("tokenizer: {0}")]
    Tokenize(String),
    /// A chat template failed to parse or to render.
    #[error("chat template: {0}")]
    Template(String),
    /// The chat template itself refused the conversation through `raise_exception(message)`; the
    /// message is the template's own, fit to show to the user who sent the conversation.
    #[error("chat template raised: {0}")]
    TemplateRaised(String),
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
