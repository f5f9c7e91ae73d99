//! KV cache events for KV-aware routers, published as vLLM publishes them: each engine
//! step's blocks stored and evicted (`ingot_kv_cache::events`) become one msgpack
//! `KVEventBatch` sent on a ZeroMQ PUB socket (`ingot serve --kv-events-endpoint`), so
//! consumers written for vLLM workers (vllm-router's `kv_aware`, NVIDIA Dynamo's KV router,
//! llm-d's KV indexer) can follow what each Ingot replica has cached.
//!
//! - [`wire`]: the exact frames and msgpack layout vLLM writes.
//! - [`publisher`]: the socket on its own thread behind a bounded channel, so publishing
//!   never slows the step loop.

pub mod publisher;
pub mod wire;

pub use publisher::{DEFAULT_QUEUE, KvEventPublisher, PublisherConfig, PublisherError};
