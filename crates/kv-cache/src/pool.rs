//! `BlockPool`: all KV blocks, their reference counts and prefix-cache hashes, following
//! vLLM v1's BlockPool.
//!
//! Free blocks sit in one queue, a doubly-linked list threaded through the flat block array
//! by index (no pointers, no per-node allocation): allocation pops the head, freeing pushes
//! the tail, and a prefix-cache hit on a free block unlinks it from the middle, all O(1). A
//! free block may still hold a cached hash; it is evicted (its hash forgotten) only when the
//! queue hands it out again, so the least recently freed cached block goes first. With
//! eviction tracking on, the hashes forgotten that way are kept until taken (KV events).

use std::collections::HashMap;

use crate::BlockHash;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId(pub u32);

const NIL: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Block {
    ref_cnt: u32,
    hash: Option<BlockHash>,
    prev: u32,
    next: u32,
}

#[derive(Debug)]
pub struct BlockPool {
    blocks: Vec<Block>,
    head: u32,
    tail: u32,
    num_free: usize,
    cached: HashMap<BlockHash, BlockId>,
    /// Hashes evicted by `allocate` since the last `take_evicted`; None when not tracked.
    evicted: Option<Vec<BlockHash>>,
}

impl BlockPool {
    pub fn new(num_blocks: usize) -> Self {
        assert!(num_blocks < NIL as usize, "too many blocks");
        let blocks = (0..num_blocks as u32)
            .map(|i| Block {
                ref_cnt: 0,
                hash: None,
                prev: if i == 0 { NIL } else { i - 1 },
                next: if i + 1 == num_blocks as u32 {
                    NIL
                } else {
                    i + 1
                },
            })
            .collect();
        let (head, tail) = if num_blocks == 0 {
            (NIL, NIL)
        } else {
            (0, num_blocks as u32 - 1)
        };
        Self {
            blocks,
            head,
            tail,
            num_free: num_blocks,
            cached: HashMap::new(),
            evicted: None,
        }
    }

    /// From now on, remember the hashes that `allocate` evicts (see `take_evicted`).
    pub fn track_evictions(&mut self) {
        self.evicted.get_or_insert_with(Vec::new);
    }

    /// Hashes evicted since the last call, in eviction order (empty when not tracked).
    pub fn take_evicted(&mut self) -> Vec<BlockHash> {
        self.evicted
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    pub fn num_free(&self) -> usize {
        self.num_free
    }

    pub fn ref_cnt(&self, id: BlockId) -> u32 {
        self.blocks[id.0 as usize].ref_cnt
    }

    pub fn num_cached(&self) -> usize {
        self.cached.len()
    }

    /// `n` blocks off the head of the free queue, each with one reference; None (and no
    /// change) if fewer than `n` are free. Cached hashes of the blocks taken are evicted.
    pub fn allocate(&mut self, n: usize) -> Option<Vec<BlockId>> {
        if n > self.num_free {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.head;
            self.unlink(id);
            let b = &mut self.blocks[id as usize];
            if let Some(h) = b.hash.take() {
                self.cached.remove(&h);
                if let Some(evicted) = &mut self.evicted {
                    evicted.push(h);
                }
            }
            b.ref_cnt = 1;
            out.push(BlockId(id));
        }
        Some(out)
    }

    /// The cached block holding `hash`, if any.
    pub fn lookup(&self, hash: BlockHash) -> Option<BlockId> {
        self.cached.get(&hash).copied()
    }

    /// Takes one more reference on `id` (a prefix-cache hit), pulling it out of the free
    /// queue if it was idle.
    pub fn touch(&mut self, id: BlockId) {
        if self.blocks[id.0 as usize].ref_cnt == 0 {
            self.unlink(id.0);
        }
        self.blocks[id.0 as usize].ref_cnt += 1;
    }

    /// Drops one reference on each block, in the order given; blocks reaching zero join the
    /// tail of the free queue (so the first given is evicted first).
    pub fn free(&mut self, ids: impl IntoIterator<Item = BlockId>) {
        for id in ids {
            let b = &mut self.blocks[id.0 as usize];
            assert!(b.ref_cnt > 0, "block {} freed more often than taken", id.0);
            b.ref_cnt -= 1;
            if b.ref_cnt == 0 {
                self.push_tail(id.0);
            }
        }
    }

    /// Registers a full block under `hash`; returns whether it was registered. If another
    /// block already holds that content, the map keeps the existing one and `id` stays
    /// uncached.
    pub fn cache(&mut self, id: BlockId, hash: BlockHash) -> bool {
        let b = &mut self.blocks[id.0 as usize];
        if b.hash.is_some() {
            return false;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.cached.entry(hash) {
            e.insert(id);
            b.hash = Some(hash);
            return true;
        }
        false
    }

    fn unlink(&mut self, id: u32) {
        let Block { prev, next, .. } = self.blocks[id as usize];
        if prev == NIL {
            self.head = next
        } else {
            self.blocks[prev as usize].next = next
        }
        if next == NIL {
            self.tail = prev
        } else {
            self.blocks[next as usize].prev = prev
        }
        let b = &mut self.blocks[id as usize];
        b.prev = NIL;
        b.next = NIL;
        self.num_free -= 1;
    }

    fn push_tail(&mut self, id: u32) {
        let b = &mut self.blocks[id as usize];
        b.prev = self.tail;
        b.next = NIL;
        if self.tail == NIL {
            self.head = id
        } else {
            self.blocks[self.tail as usize].next = id
        }
        self.tail = id;
        self.num_free += 1;
    }

    /// Every hash in the cache, in no particular order. For tests and invariant checks.
    pub fn cached_hashes(&self) -> impl Iterator<Item = BlockHash> + '_ {
        self.cached.keys().copied()
    }

    /// Ids in free-queue order (head first). For tests and invariant checks.
    pub fn free_queue(&self) -> Vec<BlockId> {
        let mut out = Vec::with_capacity(self.num_free);
        let mut cur = self.head;
        while cur != NIL {
            out.push(BlockId(cur));
            cur = self.blocks[cur as usize].next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_order_and_eviction() {
        let mut p = BlockPool::new(4);
        p.track_evictions();
        let a = p.allocate(3).unwrap();
        assert_eq!(p.num_free(), 1);
        p.cache(a[0], BlockHash(10));
        p.cache(a[1], BlockHash(11));
        // Freed in reverse: a[2] then a[1] then a[0] join the tail.
        p.free(a.iter().rev().copied());
        assert_eq!(p.free_queue(), vec![BlockId(3), a[2], a[1], a[0]]);
        // A hit on a free cached block pulls it out of the queue.
        let hit = p.lookup(BlockHash(11)).unwrap();
        p.touch(hit);
        assert_eq!(p.num_free(), 3);
        // Allocating everything evicts a[0]'s hash but not the touched block's.
        let b = p.allocate(3).unwrap();
        assert!(b.contains(&a[0]));
        assert_eq!(p.lookup(BlockHash(10)), None);
        assert_eq!(p.take_evicted(), vec![BlockHash(10)]);
        assert!(p.take_evicted().is_empty());
        assert_eq!(p.lookup(BlockHash(11)), Some(hit));
        assert!(p.allocate(1).is_none());
    }
}
