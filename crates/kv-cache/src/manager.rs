//! `KvCacheManager`: per-request block allocation on top of the [`BlockPool`], with automatic
//! prefix caching (vLLM v1's KVCacheManager).
//!
//! A request's blocks live in a [`KvCacheBlocks`] handle that only this manager can create
//! and that [`KvCacheManager::free`] consumes, so a request cannot free its blocks twice.
//! On admission the manager finds the longest run of the request's full prompt blocks that
//! is already cached, takes references on them, and reports how many tokens need no
//! recomputation (never all of them: the last token is always computed, to produce logits).
//! As the request's tokens are computed, its newly full blocks are registered in the cache.
//! With events on, each registration and eviction is also logged as a [`KvCacheEvent`].

use crate::events::KvCacheEvent;
use crate::hash::{BlockHash, block_hash};
use crate::pool::{BlockId, BlockPool};

/// The blocks held by one request, in logical order.
#[derive(Debug)]
pub struct KvCacheBlocks {
    blocks: Vec<BlockId>,
    /// Hashes of the leading full blocks that are registered (or were hit) in the cache.
    hashes: Vec<BlockHash>,
}

impl KvCacheBlocks {
    pub fn ids(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.blocks.iter().map(|b| b.0)
    }

    pub fn block_ids(&self) -> &[BlockId] {
        &self.blocks
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

/// Counters, cumulative since start (tokens for queries and hits, as vLLM counts them).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KvCacheStats {
    pub num_blocks: usize,
    pub num_free_blocks: usize,
    pub prefix_cache_queries: u64,
    pub prefix_cache_hits: u64,
}

impl KvCacheStats {
    /// Share of blocks in use by requests, in [0, 1].
    pub fn usage(&self) -> f64 {
        if self.num_blocks == 0 {
            return 0.0;
        }
        1.0 - self.num_free_blocks as f64 / self.num_blocks as f64
    }
}

#[derive(Debug)]
pub struct KvCacheManager {
    pool: BlockPool,
    block_size: usize,
    prefix_caching: bool,
    queries: u64,
    hits: u64,
    /// Events since the last `take_events`; None while events are off.
    events: Option<Vec<KvCacheEvent>>,
}

impl KvCacheManager {
    pub fn new(num_blocks: usize, block_size: usize, prefix_caching: bool) -> Self {
        assert!(block_size > 0, "block size must be positive");
        Self {
            pool: BlockPool::new(num_blocks),
            block_size,
            prefix_caching,
            queries: 0,
            hits: 0,
            events: None,
        }
    }

    /// From now on, log every block cached and evicted (see `take_events`). Nothing is
    /// logged without prefix caching, since nothing is cached.
    pub fn enable_events(&mut self) {
        self.events.get_or_insert_with(Vec::new);
        self.pool.track_evictions();
    }

    /// The events since the last call, in the order they happened.
    pub fn take_events(&mut self) -> Vec<KvCacheEvent> {
        self.events.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn log_evictions(&mut self) {
        if let Some(events) = &mut self.events {
            let block_hashes = self.pool.take_evicted();
            if !block_hashes.is_empty() {
                events.push(KvCacheEvent::BlockRemoved { block_hashes });
            }
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.pool.num_blocks()
    }

    pub fn num_free_blocks(&self) -> usize {
        self.pool.num_free()
    }

    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    pub fn stats(&self) -> KvCacheStats {
        KvCacheStats {
            num_blocks: self.pool.num_blocks(),
            num_free_blocks: self.pool.num_free(),
            prefix_cache_queries: self.queries,
            prefix_cache_hits: self.hits,
        }
    }

    /// Blocks needed to hold `num_tokens` tokens.
    pub fn blocks_for(&self, num_tokens: usize) -> usize {
        num_tokens.div_ceil(self.block_size)
    }

    /// Starts a request: references the longest cached prefix of `tokens` and returns the
    /// handle with the number of tokens whose KV is already there.
    pub fn admit(&mut self, tokens: &[u32], extra_key: u64) -> (KvCacheBlocks, usize) {
        let mut handle = KvCacheBlocks {
            blocks: Vec::new(),
            hashes: Vec::new(),
        };
        if !self.prefix_caching || tokens.is_empty() {
            return (handle, 0);
        }
        let max_blocks = (tokens.len() - 1) / self.block_size;
        let mut parent = None;
        for block in tokens.chunks_exact(self.block_size).take(max_blocks) {
            let h = block_hash(parent, block, extra_key);
            let Some(id) = self.pool.lookup(h) else { break };
            self.pool.touch(id);
            handle.blocks.push(id);
            handle.hashes.push(h);
            parent = Some(h);
        }
        let computed = handle.blocks.len() * self.block_size;
        self.queries += tokens.len() as u64;
        self.hits += computed as u64;
        (handle, computed)
    }

    /// Grows `blocks` to hold `num_tokens` tokens. Returns false, changing nothing, when
    /// the pool has too few free blocks.
    pub fn allocate_slots(&mut self, blocks: &mut KvCacheBlocks, num_tokens: usize) -> bool {
        let need = self
            .blocks_for(num_tokens)
            .saturating_sub(blocks.blocks.len());
        if need == 0 {
            return true;
        }
        match self.pool.allocate(need) {
            Some(new) => {
                blocks.blocks.extend(new);
                self.log_evictions();
                true
            }
            None => false,
        }
    }

    /// Registers the request's blocks that `num_computed` computed tokens have filled.
    /// `tokens` holds at least those tokens.
    pub fn cache_full_blocks(
        &mut self,
        blocks: &mut KvCacheBlocks,
        tokens: &[u32],
        num_computed: usize,
        extra_key: u64,
    ) {
        if !self.prefix_caching {
            return;
        }
        let full = (num_computed / self.block_size).min(blocks.blocks.len());
        // Blocks registered in a row (parent, hashes, tokens), announced as one event.
        let mut run: Option<(Option<BlockHash>, Vec<BlockHash>, Vec<u32>)> = None;
        while blocks.hashes.len() < full {
            let i = blocks.hashes.len();
            let chunk = &tokens[i * self.block_size..(i + 1) * self.block_size];
            let parent = blocks.hashes.last().copied();
            let h = block_hash(parent, chunk, extra_key);
            let registered = self.pool.cache(blocks.blocks[i], h);
            blocks.hashes.push(h);
            if self.events.is_none() {
                continue;
            }
            if registered {
                let (_, hashes, ids) = run.get_or_insert_with(|| (parent, Vec::new(), Vec::new()));
                hashes.push(h);
                ids.extend_from_slice(chunk);
            } else if let Some(r) = run.take() {
                self.log_stored(r, extra_key);
            }
        }
        if let Some(r) = run {
            self.log_stored(r, extra_key);
        }
    }

    fn log_stored(
        &mut self,
        (parent, block_hashes, token_ids): (Option<BlockHash>, Vec<BlockHash>, Vec<u32>),
        extra_key: u64,
    ) {
        if let Some(events) = &mut self.events {
            events.push(KvCacheEvent::BlockStored {
                block_hashes,
                parent,
                token_ids,
                block_size: self.block_size,
                extra_key,
            });
        }
    }

    /// Releases a request's blocks. Tail blocks are freed first, so they are evicted before
    /// the shared prefix blocks in front of them.
    pub fn free(&mut self, blocks: KvCacheBlocks) {
        self.pool.free(blocks.blocks.into_iter().rev());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_hit_skips_computed_blocks() {
        let mut m = KvCacheManager::new(16, 4, true);
        let prompt: Vec<u32> = (0..10).collect();
        let (mut a, hit) = m.admit(&prompt, 0);
        assert_eq!(hit, 0);
        assert!(m.allocate_slots(&mut a, 10));
        m.cache_full_blocks(&mut a, &prompt, 10, 0);
        // Same 8-token prefix, different tail.
        let other: Vec<u32> = (0..8).chain([77, 78, 79]).collect();
        let (mut b, hit) = m.admit(&other, 0);
        assert_eq!(hit, 8);
        assert_eq!(b.block_ids(), &a.block_ids()[..2]);
        assert!(m.allocate_slots(&mut b, 11));
        assert_eq!(m.pool().ref_cnt(a.block_ids()[0]), 2);
        m.free(a);
        m.free(b);
        assert_eq!(m.num_free_blocks(), 16);
        let s = m.stats();
        assert_eq!((s.prefix_cache_queries, s.prefix_cache_hits), (21, 8));
    }

    #[test]
    fn the_last_token_is_always_computed() {
        let mut m = KvCacheManager::new(8, 4, true);
        let prompt: Vec<u32> = (0..8).collect();
        let (mut a, _) = m.admit(&prompt, 0);
        assert!(m.allocate_slots(&mut a, 8));
        m.cache_full_blocks(&mut a, &prompt, 8, 0);
        m.free(a);
        let (b, hit) = m.admit(&prompt, 0);
        assert_eq!(hit, 4);
        m.free(b);
    }

    #[test]
    fn allocation_failure_changes_nothing() {
        let mut m = KvCacheManager::new(2, 4, false);
        let (mut a, _) = m.admit(&[1, 2, 3], 0);
        assert!(!m.allocate_slots(&mut a, 9));
        assert!(a.is_empty());
        assert_eq!(m.num_free_blocks(), 2);
        assert!(m.allocate_slots(&mut a, 8));
        m.free(a);
    }

    #[test]
    fn events_announce_stores_and_evictions() {
        let mut m = KvCacheManager::new(4, 4, true);
        m.enable_events();
        let prompt: Vec<u32> = (0..12).collect();
        let (mut a, _) = m.admit(&prompt, 0);
        assert!(m.allocate_slots(&mut a, 12));
        assert!(m.take_events().is_empty(), "fresh blocks evict nothing");
        // A chunk of 6 tokens fills block 0; the next 6 fill blocks 1 and 2.
        m.cache_full_blocks(&mut a, &prompt, 6, 0);
        m.cache_full_blocks(&mut a, &prompt, 12, 0);
        let h = crate::hash::chain(&prompt, 4, 0);
        assert_eq!(
            m.take_events(),
            vec![
                KvCacheEvent::BlockStored {
                    block_hashes: vec![h[0]],
                    parent: None,
                    token_ids: (0..4).collect(),
                    block_size: 4,
                    extra_key: 0,
                },
                KvCacheEvent::BlockStored {
                    block_hashes: vec![h[1], h[2]],
                    parent: Some(h[0]),
                    token_ids: (4..12).collect(),
                    block_size: 4,
                    extra_key: 0,
                },
            ]
        );
        m.free(a);
        // Three blocks needed, one never cached is free: the two tail cached blocks go.
        let (mut b, hit) = m.admit(&[50, 51, 52, 53, 54, 55, 56, 57, 58], 0);
        assert_eq!(hit, 0);
        assert!(m.allocate_slots(&mut b, 9));
        assert_eq!(
            m.take_events(),
            vec![KvCacheEvent::BlockRemoved {
                block_hashes: vec![h[2], h[1]]
            }]
        );
        m.free(b);
    }

    #[test]
    fn a_duplicate_block_is_not_announced() {
        let mut m = KvCacheManager::new(8, 4, true);
        m.enable_events();
        let prompt: Vec<u32> = (0..9).collect();
        // Two requests computing the same prompt side by side: only the first caches it.
        let (mut a, _) = m.admit(&prompt, 0);
        let (mut b, _) = m.admit(&prompt, 0);
        assert!(m.allocate_slots(&mut a, 9) && m.allocate_slots(&mut b, 9));
        m.cache_full_blocks(&mut a, &prompt, 9, 0);
        m.cache_full_blocks(&mut b, &prompt, 9, 0);
        let events = m.take_events();
        assert_eq!(events.len(), 1);
        assert!(
            matches!(&events[0], KvCacheEvent::BlockStored { block_hashes, .. } if block_hashes.len() == 2)
        );
        m.free(a);
        m.free(b);
    }

    #[test]
    fn no_events_unless_enabled() {
        let mut m = KvCacheManager::new(2, 4, true);
        let prompt: Vec<u32> = (0..8).collect();
        let (mut a, _) = m.admit(&prompt, 0);
        assert!(m.allocate_slots(&mut a, 8));
        m.cache_full_blocks(&mut a, &prompt, 8, 0);
        assert!(m.take_events().is_empty());
        m.free(a);
    }

    proptest::proptest! {
        /// A consumer applying every event in order holds exactly the pool's cached hashes,
        /// and every stored event's tokens rebuild its hash chain.
        #[test]
        fn events_replay_to_the_cached_set(
            reqs in proptest::collection::vec((0u32..3, 1usize..30, proptest::bool::ANY), 1..40)
        ) {
            use std::collections::HashSet;
            let bs = 4;
            let mut m = KvCacheManager::new(12, bs, true);
            m.enable_events();
            let mut seen: HashSet<BlockHash> = HashSet::new();
            let mut held = Vec::new();
            for (family, len, keep) in reqs {
                // Prompts of a family share their first tokens, so prefixes hit and repeat.
                let prompt: Vec<u32> = (0..len as u32).map(|t| if t < 8 { family * 100 + t } else { t * 7 + family }).collect();
                let (mut blocks, _) = m.admit(&prompt, 0);
                if !m.allocate_slots(&mut blocks, len) {
                    m.free(blocks);
                } else {
                    m.cache_full_blocks(&mut blocks, &prompt, len, 0);
                    if keep { held.push(blocks) } else { m.free(blocks) }
                }
                if held.len() > 2 {
                    m.free(held.remove(0));
                }
                for e in m.take_events() {
                    match e {
                        KvCacheEvent::BlockStored { block_hashes, parent, token_ids, block_size, extra_key } => {
                            proptest::prop_assert_eq!(token_ids.len(), block_hashes.len() * block_size);
                            let mut p = parent;
                            for (h, chunk) in block_hashes.iter().zip(token_ids.chunks(block_size)) {
                                proptest::prop_assert_eq!(*h, block_hash(p, chunk, extra_key));
                                proptest::prop_assert!(seen.insert(*h), "stored twice without removal");
                                p = Some(*h);
                            }
                        }
                        KvCacheEvent::BlockRemoved { block_hashes } => {
                            for h in block_hashes {
                                proptest::prop_assert!(seen.remove(&h), "removed without being stored");
                            }
                        }
                        KvCacheEvent::AllBlocksCleared => seen.clear(),
                    }
                }
                let cached: HashSet<BlockHash> = m.pool().cached_hashes().collect();
                proptest::prop_assert_eq!(&seen, &cached);
            }
            for b in held {
                m.free(b);
            }
        }
    }
}
