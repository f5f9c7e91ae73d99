//! Model configs, weight loaders, the Llama-family decoder and the architecture registry.
//!
//! The path from what a user types to a runnable model: [`spec::resolve`] finds the files,
//! [`bundle::ModelFiles::open`] reads config and tokenizer, `load_model` uploads weights.

pub mod bundle;
pub mod config;
pub mod default_model;
mod error;
pub mod layers;
pub mod llama;
pub mod loader;
pub mod registry;
pub mod spec;

pub use bundle::{LoadFormat, ModelFiles};
pub use config::ModelConfig;
pub use error::{ModelError, Result};
pub use loader::WeightFormat;
pub use spec::ModelSource;
