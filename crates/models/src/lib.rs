//! Model configs, weight loaders, the decoder families and the architecture registry.
//!
//! The path from what a user types to a runnable model: [`spec::resolve`] finds the files,
//! [`bundle::ModelFiles::open`] reads config and tokenizer, `load_model` uploads weights
//! through the family the registry names and hands back a [`Model`] trait object.

pub mod bundle;
pub mod catalog;
pub mod config;
mod error;
pub mod families;
pub mod layers;
pub mod loader;
pub mod model;
pub mod registry;
pub mod spec;
pub mod weights;

pub use bundle::{LoadFormat, ModelFiles};
pub use config::ModelConfig;
pub use error::{ModelError, Result};
pub use loader::WeightFormat;
pub use model::{
    ForwardBatch, KvGroup, KvGroupBatch, LayerCache, LayerKv, Model, kv_groups, single_kv_group,
};
pub use spec::ModelSource;
