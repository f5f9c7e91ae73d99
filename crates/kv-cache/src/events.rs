//! KV cache events: what the prefix cache gained and lost, for consumers outside the engine
//! (a KV-aware router that sends a request to the replica already holding its prefix).
//!
//! The three kinds are vLLM's (`vllm/distributed/kv_events.py`): `BlockStored` when full
//! blocks become reusable (registered under their hash), `BlockRemoved` when cached blocks
//! are evicted (their hash forgotten), `AllBlocksCleared` when the whole cache is dropped.
//! The log is exact: a hash is announced stored exactly when it enters the pool's
//! hash -> block map and removed exactly when it leaves it, so a consumer that applies every
//! event in order holds the same set of hashes as the pool. A block whose content another
//! block already caches is never registered, so it is not announced either.
//!
//! Recording is off unless asked for ([`crate::KvCacheManager::enable_events`]); the engine
//! drains the log after each step into one [`KvEventBatch`].

use crate::BlockHash;

/// One change to the set of cached blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvCacheEvent {
    /// Full blocks newly cached, one chain in order: `block_hashes[i]` holds
    /// `token_ids[i * block_size..(i + 1) * block_size]`, and block `i`'s parent is block
    /// `i - 1` (the first block's is `parent`, None at the start of a sequence).
    BlockStored {
        block_hashes: Vec<BlockHash>,
        parent: Option<BlockHash>,
        token_ids: Vec<u32>,
        block_size: usize,
        /// The extra key hashed into every block (0 when none; DESIGN.md §6).
        extra_key: u64,
    },
    /// Cached blocks evicted: a later request no longer finds them.
    BlockRemoved { block_hashes: Vec<BlockHash> },
    /// Every cached block is gone.
    AllBlocksCleared,
}

/// The events of one engine step, stamped when the step ended.
#[derive(Clone, Debug, PartialEq)]
pub struct KvEventBatch {
    /// Position in the engine's sequence of batches, from 0 with no holes: a batch dropped
    /// on the way out leaves a visible gap for subscribers.
    pub seq: u64,
    /// Seconds since the Unix epoch.
    pub ts: f64,
    pub events: Vec<KvCacheEvent>,
}
