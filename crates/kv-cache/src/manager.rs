//! `KvCacheManager`: per-request block allocation on top of the [`BlockPool`], with automatic
//! prefix caching (vLLM v1's KVCacheManager).
//!
//! A request's blocks live in a [`KvCacheBlocks`] handle that only this manager can create
//! and that [`KvCacheManager::free`] consumes, so a request cannot free its blocks twice.
//! On admission the manager finds the longest run of the request's full prompt blocks that
//! is already cached, takes references on them, and reports how many tokens need no
//! recomputation (never all of them: the last token is always computed, to produce logits).
//! As the request's tokens are computed, its newly full blocks are registered in the cache.

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
        while blocks.hashes.len() < full {
            let i = blocks.hashes.len();
            let chunk = &tokens[i * self.block_size..(i + 1) * self.block_size];
            let h = block_hash(blocks.hashes.last().copied(), chunk, extra_key);
            self.pool.cache(blocks.blocks[i], h);
            blocks.hashes.push(h);
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
}
