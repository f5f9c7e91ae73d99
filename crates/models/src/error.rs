//! `ModelError`: everything that can go wrong turning a model spec into a runnable model.
//! Each variant names the file (and key or tensor) involved, so a user can act on it.

use std::path::PathBuf;

use crate::loader::LoadError;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Load(#[from] LoadError),
    /// config.json or GGUF metadata lacks a key or holds a bad value.
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: unsupported architecture '{arch}'; supported: {supported}")]
    UnknownArchitecture {
        path: PathBuf,
        arch: String,
        supported: String,
    },
    #[error("{path}: tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },
    /// The model spec could not be resolved to files.
    #[error("{0}")]
    Resolve(String),
    #[error(transparent)]
    Backend(#[from] ingot_tensor::BackendError),
}

pub type Result<T> = std::result::Result<T, ModelError>;
