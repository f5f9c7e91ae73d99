//! The engine: the step loop on its own thread (DESIGN.md §2), the handle that submits
//! requests and streams their outputs, incremental detokenization, stop strings, offline
//! batch generation, and KV cache sizing.

pub mod config;
pub mod core;
pub mod detokenizer;
pub mod handle;
pub mod offline;
pub mod output;
pub mod stop;
pub mod structured;

/// The request and response types (one home, `ingot-api`), for the engine's users.
pub use ingot_api as api;
pub use ingot_api::{
    AddError, FinishReason, MAX_LOGPROBS, SamplingParams, SamplingParamsError, StructuredOutput,
    TokenLogprobs,
};

pub use config::{EngineConfig, KvSizing, split_kv_budget};
pub use core::{EngineCore, EngineRequest, EngineStats, SubmitError};
pub use handle::{EngineHandle, RequestStream};
/// KV cache events (blocks cached and evicted), for publishers.
pub use ingot_kv_cache::{BlockHash, KvCacheEvent, KvEventBatch};
pub use offline::Completion;
pub use output::{RequestOutput, Usage};
