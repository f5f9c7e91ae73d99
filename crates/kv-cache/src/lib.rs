//! Bookkeeping of the paged KV cache, with automatic prefix caching (DESIGN.md §6). No
//! tensors live here: blocks are ids into the caches the backend owns.
//!
//! - [`pool::BlockPool`]: every block with its reference count and (when full and cached) its
//!   hash; a free queue ordered so the least recently freed cached block is evicted first;
//!   a hash -> block map of cached blocks.
//! - [`hash`]: a full block's hash chains its parent's hash, its token ids and extra keys.
//! - [`manager::KvCacheManager`]: per-request allocation in every group, longest cached
//!   prefix on admission, growth as a request generates, freeing, and the usage and hit
//!   counters.
//! - [`groups`]: KV cache groups (full attention, or one sliding window each), each with its
//!   own pool and block table per request; the window arithmetic that frees blocks.
//! - [`events`]: blocks stored and evicted, logged for KV-aware routers (vLLM's KV events).

pub mod events;
pub mod groups;
pub mod hash;
pub mod manager;
pub mod pool;

pub use events::{KvCacheEvent, KvEventBatch};
pub use groups::KvGroupSpec;
pub use hash::BlockHash;
pub use manager::{KvCacheBlocks, KvCacheManager, KvCacheStats};
pub use pool::BlockId;
