//! `KvCacheManager`: per-request block allocation on top of one [`BlockPool`] per KV cache
//! group, with automatic prefix caching (vLLM v1's KVCacheManager and its hybrid
//! coordinator).
//!
//! A request's blocks live in a [`KvCacheBlocks`] handle that only this manager can create
//! and that [`KvCacheManager::free`] consumes, so a request cannot free its blocks twice.
//! The handle holds one block table per group ([`crate::groups`]): a full-attention group's
//! table holds every block; a sliding-window group's table holds [`BlockId::NULL`] for the
//! blocks that fell out of its window (freed as soon as they do) and real blocks after.
//!
//! On admission the manager finds the longest run of the request's full prompt blocks that
//! is cached in every group (for a sliding group only the blocks of the last window before
//! the hit point must be cached; vLLM's `SlidingWindowManager.find_longest_cache_hit`), takes
//! references on them, and reports how many tokens need no recomputation (never all of them:
//! the last token is always computed, to produce logits). As the request's tokens are
//! computed, its newly full blocks are registered in each group's cache.
//!
//! KV events ([`KvCacheEvent`]) describe group 0 only, the full-attention group whenever the
//! model has full-attention layers: its cache is what decides a prefix hit's length, and a
//! router matching prefixes needs one set of hashes, not one per group.

use crate::events::KvCacheEvent;
use crate::groups::KvGroupSpec;
use crate::hash::{BlockHash, block_hash};
use crate::pool::{BlockId, BlockPool};

/// The blocks held by one request, one table per group, in logical order.
#[derive(Debug)]
pub struct KvCacheBlocks {
    tables: Vec<Vec<BlockId>>, // [groups][logical blocks], NULL where out of a window
    /// Hashes of the leading full blocks that are registered (or were hit) in the cache.
    hashes: Vec<BlockHash>,
}

impl KvCacheBlocks {
    /// Group 0's block ids.
    pub fn ids(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.group_ids(0)
    }

    /// Group `g`'s block ids (`u32::MAX` for a [`BlockId::NULL`] entry).
    pub fn group_ids(&self, g: usize) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.tables[g].iter().map(|b| b.0)
    }

    /// Group 0's table.
    pub fn block_ids(&self) -> &[BlockId] {
        &self.tables[0]
    }

    /// Group `g`'s table.
    pub fn table(&self, g: usize) -> &[BlockId] {
        &self.tables[g]
    }

    pub fn num_groups(&self) -> usize {
        self.tables.len()
    }

    /// Logical blocks (the same in every group's table).
    pub fn len(&self) -> usize {
        self.tables[0].len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counters, cumulative since start (tokens for queries and hits, as vLLM counts them).
/// Blocks of group 0 (full attention) and of the sliding-window groups, summed, apart.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KvCacheStats {
    pub num_blocks: usize,
    pub num_free_blocks: usize,
    /// Blocks of the sliding-window groups after group 0 (0 when there are none).
    pub num_sliding_blocks: usize,
    pub num_free_sliding_blocks: usize,
    pub prefix_cache_queries: u64,
    pub prefix_cache_hits: u64,
}

impl KvCacheStats {
    /// Share of blocks in use by requests, in [0, 1]: of the fuller of the two kinds, since
    /// a request needs room in every group.
    pub fn usage(&self) -> f64 {
        let used = |total: usize, free: usize| {
            if total == 0 {
                0.0
            } else {
                1.0 - free as f64 / total as f64
            }
        };
        used(self.num_blocks, self.num_free_blocks)
            .max(used(self.num_sliding_blocks, self.num_free_sliding_blocks))
    }
}

#[derive(Debug)]
struct Group {
    spec: KvGroupSpec,
    pool: BlockPool,
}

#[derive(Debug)]
pub struct KvCacheManager {
    groups: Vec<Group>,
    block_size: usize,
    prefix_caching: bool,
    queries: u64,
    hits: u64,
    /// Events since the last `take_events`; None while events are off.
    events: Option<Vec<KvCacheEvent>>,
}

impl KvCacheManager {
    /// One full-attention group of `num_blocks` blocks serving every layer.
    pub fn new(num_blocks: usize, block_size: usize, prefix_caching: bool) -> Self {
        Self::with_groups(
            &[KvGroupSpec {
                sliding_window: None,
                num_blocks,
            }],
            block_size,
            prefix_caching,
        )
    }

    /// One pool per group, in the order given (group 0 first: the one KV events describe).
    pub fn with_groups(groups: &[KvGroupSpec], block_size: usize, prefix_caching: bool) -> Self {
        assert!(block_size > 0, "block size must be positive");
        assert!(!groups.is_empty(), "at least one KV cache group");
        assert!(
            groups.iter().all(|g| g.sliding_window != Some(0)),
            "a sliding window holds at least one position"
        );
        Self {
            groups: groups
                .iter()
                .map(|&spec| Group {
                    spec,
                    pool: BlockPool::new(spec.num_blocks),
                })
                .collect(),
            block_size,
            prefix_caching,
            queries: 0,
            hits: 0,
            events: None,
        }
    }

    /// From now on, log every block cached and evicted in group 0 (see `take_events`).
    /// Nothing is logged without prefix caching, since nothing is cached.
    pub fn enable_events(&mut self) {
        self.events.get_or_insert_with(Vec::new);
        self.groups[0].pool.track_evictions();
    }

    /// The events since the last call, in the order they happened.
    pub fn take_events(&mut self) -> Vec<KvCacheEvent> {
        self.events.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn log_evictions(&mut self) {
        if let Some(events) = &mut self.events {
            let block_hashes = self.groups[0].pool.take_evicted();
            if !block_hashes.is_empty() {
                events.push(KvCacheEvent::BlockRemoved { block_hashes });
            }
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Group 0's blocks.
    pub fn num_blocks(&self) -> usize {
        self.groups[0].pool.num_blocks()
    }

    /// Group 0's free blocks.
    pub fn num_free_blocks(&self) -> usize {
        self.groups[0].pool.num_free()
    }

    /// Group 0's pool.
    pub fn pool(&self) -> &BlockPool {
        &self.groups[0].pool
    }

    pub fn num_groups(&self) -> usize {
        self.groups.len()
    }

    pub fn group_spec(&self, g: usize) -> KvGroupSpec {
        self.groups[g].spec
    }

    pub fn group_pool(&self, g: usize) -> &BlockPool {
        &self.groups[g].pool
    }

    pub fn stats(&self) -> KvCacheStats {
        let rest = &self.groups[1..];
        KvCacheStats {
            num_blocks: self.num_blocks(),
            num_free_blocks: self.num_free_blocks(),
            num_sliding_blocks: rest.iter().map(|g| g.pool.num_blocks()).sum(),
            num_free_sliding_blocks: rest.iter().map(|g| g.pool.num_free()).sum(),
            prefix_cache_queries: self.queries,
            prefix_cache_hits: self.hits,
        }
    }

    /// Blocks needed to hold `num_tokens` tokens.
    pub fn blocks_for(&self, num_tokens: usize) -> usize {
        num_tokens.div_ceil(self.block_size)
    }

    /// The first group that could never hold a request of `num_tokens` tokens computed at
    /// most `max_chunk` per step, with the blocks it would need and the group's size.
    pub fn never_fits(&self, num_tokens: usize, max_chunk: usize) -> Option<(usize, usize)> {
        self.groups.iter().find_map(|g| {
            let need = g
                .spec
                .max_blocks_held(num_tokens, max_chunk, self.block_size);
            (need > g.pool.num_blocks()).then_some((need, g.pool.num_blocks()))
        })
    }

    /// Starts a request: references the longest prefix of `tokens` cached in every group and
    /// returns the handle with the number of tokens whose KV is already there.
    pub fn admit(&mut self, tokens: &[u32], extra_key: u64) -> (KvCacheBlocks, usize) {
        let mut handle = KvCacheBlocks {
            tables: vec![Vec::new(); self.groups.len()],
            hashes: Vec::new(),
        };
        if !self.prefix_caching || tokens.is_empty() {
            return (handle, 0);
        }
        let bs = self.block_size;
        let max_blocks = (tokens.len() - 1) / bs;
        let mut hashes = Vec::with_capacity(max_blocks);
        for block in tokens.chunks_exact(bs).take(max_blocks) {
            let h = block_hash(hashes.last().copied(), block, extra_key);
            // A full-attention group 0 misses here: no longer hit is possible.
            if self.groups[0].spec.sliding_window.is_none()
                && self.groups[0].pool.lookup(h).is_none()
            {
                break;
            }
            hashes.push(h);
        }
        // Each group can only shorten the hit; stop when every group accepts it.
        let mut hit = hashes.len();
        loop {
            let before = hit;
            for g in &self.groups {
                hit = g.longest_hit(&hashes[..hit], bs);
            }
            if hit == before {
                break;
            }
        }
        hashes.truncate(hit);
        for (g, table) in self.groups.iter_mut().zip(&mut handle.tables) {
            let skip = hit - g.spec.blocks_needed_for_hit(hit, bs);
            table.resize(skip, BlockId::NULL);
            for &h in &hashes[skip..] {
                let id = g.pool.lookup(h).expect("hit blocks are cached");
                g.pool.touch(id);
                table.push(id);
            }
        }
        handle.hashes = hashes;
        let computed = hit * bs;
        self.queries += tokens.len() as u64;
        self.hits += computed as u64;
        (handle, computed)
    }

    /// Returns to their pools the sliding-window blocks a request no longer needs once
    /// `num_computed` of its tokens are computed (its next token sits at `num_computed`).
    pub fn free_out_of_window(&mut self, blocks: &mut KvCacheBlocks, num_computed: usize) {
        for (g, table) in self.groups.iter_mut().zip(&mut blocks.tables) {
            let skip = g
                .spec
                .num_skipped(num_computed, self.block_size)
                .min(table.len());
            // Entries before the first real one are NULL already: walk back to them. Older
            // blocks are freed first, so they are evicted first.
            let first = table[..skip]
                .iter()
                .rposition(|b| b.is_null())
                .map_or(0, |i| i + 1);
            g.pool.free(table[first..skip].iter().copied());
            table[first..skip].fill(BlockId::NULL);
        }
    }

    /// Grows `blocks` to hold `num_tokens` tokens in every group, first freeing the blocks
    /// that `num_computed` computed tokens put out of a window. Returns false, allocating
    /// nothing, when some group's pool has too few free blocks.
    pub fn allocate_slots(
        &mut self,
        blocks: &mut KvCacheBlocks,
        num_computed: usize,
        num_tokens: usize,
    ) -> bool {
        self.free_out_of_window(blocks, num_computed);
        let need = self.blocks_for(num_tokens).saturating_sub(blocks.len());
        if need == 0 {
            return true;
        }
        // The new blocks start at or after `num_computed`, inside every window.
        if self.groups.iter().any(|g| g.pool.num_free() < need) {
            return false;
        }
        for (g, table) in self.groups.iter_mut().zip(&mut blocks.tables) {
            table.extend(g.pool.allocate(need).expect("checked free blocks"));
        }
        self.log_evictions();
        true
    }

    /// Registers the request's blocks that `num_computed` computed tokens have filled, in
    /// every group still holding them. `tokens` holds at least those tokens.
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
        let bs = self.block_size;
        let full = (num_computed / bs).min(blocks.len());
        // Group 0's blocks registered in a row (parent, hashes, tokens), announced as one event.
        let mut run: Option<(Option<BlockHash>, Vec<BlockHash>, Vec<u32>)> = None;
        while blocks.hashes.len() < full {
            let i = blocks.hashes.len();
            let chunk = &tokens[i * bs..(i + 1) * bs];
            let parent = blocks.hashes.last().copied();
            let h = block_hash(parent, chunk, extra_key);
            let mut registered = false;
            for (g, (group, table)) in self.groups.iter_mut().zip(&blocks.tables).enumerate() {
                let id = table[i];
                if !id.is_null() {
                    let r = group.pool.cache(id, h);
                    registered |= g == 0 && r;
                }
            }
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
        for (g, table) in self.groups.iter_mut().zip(blocks.tables) {
            g.pool
                .free(table.into_iter().rev().filter(|b| !b.is_null()));
        }
    }
}

impl Group {
    /// The longest hit, at most `hashes.len()` blocks, this group can serve: a cached prefix
    /// for full attention; for a sliding window, the longest whose last
    /// `blocks_needed_for_hit` blocks are all cached (scanned from the right, as vLLM does).
    fn longest_hit(&self, hashes: &[BlockHash], block_size: usize) -> usize {
        let cached = |h: &BlockHash| self.pool.lookup(*h).is_some();
        let Some(w) = self.spec.sliding_window else {
            return hashes.iter().take_while(|h| cached(h)).count();
        };
        let need = (w - 1).div_ceil(block_size);
        if need == 0 {
            return hashes.len();
        }
        let mut run = 0;
        for (i, h) in hashes.iter().enumerate().rev() {
            if cached(h) {
                run += 1;
                if run == need {
                    return i + need;
                }
            } else {
                run = 0;
            }
        }
        // Fewer than `need` blocks from the start: all of them must be cached.
        run
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
        assert!(m.allocate_slots(&mut a, 0, 10));
        m.cache_full_blocks(&mut a, &prompt, 10, 0);
        // Same 8-token prefix, different tail.
        let other: Vec<u32> = (0..8).chain([77, 78, 79]).collect();
        let (mut b, hit) = m.admit(&other, 0);
        assert_eq!(hit, 8);
        assert_eq!(b.block_ids(), &a.block_ids()[..2]);
        assert!(m.allocate_slots(&mut b, 8, 11));
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
        assert!(m.allocate_slots(&mut a, 0, 8));
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
        assert!(!m.allocate_slots(&mut a, 0, 9));
        assert!(a.is_empty());
        assert_eq!(m.num_free_blocks(), 2);
        assert!(m.allocate_slots(&mut a, 0, 8));
        m.free(a);
    }

    #[test]
    fn events_announce_stores_and_evictions() {
        let mut m = KvCacheManager::new(4, 4, true);
        m.enable_events();
        let prompt: Vec<u32> = (0..12).collect();
        let (mut a, _) = m.admit(&prompt, 0);
        assert!(m.allocate_slots(&mut a, 0, 12));
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
        assert!(m.allocate_slots(&mut b, 0, 9));
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
        assert!(m.allocate_slots(&mut a, 0, 9) && m.allocate_slots(&mut b, 0, 9));
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
        assert!(m.allocate_slots(&mut a, 0, 8));
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
                if !m.allocate_slots(&mut blocks, 0, len) {
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
