//! Model configs, weight loaders, the Llama-family decoder and the architecture registry.

pub mod loader;
