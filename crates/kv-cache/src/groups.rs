//! KV cache groups: the layers of one attention type (full attention, or sliding-window
//! attention with window W) share a block pool and a block table per request (vLLM's hybrid
//! KV cache manager, `vllm/v1/core/kv_cache_coordinator.py`).
//!
//! A full-attention group keeps every block of a request. A sliding group needs only the
//! blocks that hold the last W positions before the next token to compute: when that token
//! sits at position `p`, its queries read `[p - W + 1, p]`, so every block lying wholly before
//! `p - W + 1` is returned to the pool and its table entry becomes [`BlockId::NULL`]. This is
//! also right for a prefill chunk `[p, p + n)`: its first query is the one reaching furthest
//! back. All window arithmetic lives here, so the manager, the scheduler's admission checks
//! and its invariant checks agree.

use crate::BlockId;

/// One group as the manager is built: its attention type and its pool's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvGroupSpec {
    /// None: full attention; Some(w): the group's layers attend to the last `w` positions.
    pub sliding_window: Option<usize>,
    pub num_blocks: usize,
}

impl BlockId {
    /// A table entry holding nothing: a block freed because it left the window (or never
    /// allocated because a prefix hit skipped it). Kernels never read it.
    pub const NULL: BlockId = BlockId(u32::MAX);

    pub fn is_null(self) -> bool {
        self == Self::NULL
    }
}

impl KvGroupSpec {
    /// Logical blocks (from the start) that a request whose next token to compute sits at
    /// `num_computed` no longer needs: all of them wholly before `num_computed - W + 1`.
    pub fn num_skipped(&self, num_computed: usize, block_size: usize) -> usize {
        match self.sliding_window {
            None => 0,
            Some(w) => (num_computed + 1).saturating_sub(w) / block_size,
        }
    }

    /// Leading cached blocks a prefix hit of `hit_blocks` blocks needs in this group: all of
    /// them for full attention, the last `ceil((W - 1) / block_size)` for a sliding window
    /// (the first recomputed token, at `hit_blocks * block_size`, reads W - 1 before it).
    pub fn blocks_needed_for_hit(&self, hit_blocks: usize, block_size: usize) -> usize {
        match self.sliding_window {
            None => hit_blocks,
            Some(w) => (w - 1).div_ceil(block_size).min(hit_blocks),
        }
    }

    /// The most blocks one request of `num_tokens` tokens ever holds at once in this group,
    /// when at most `max_chunk` tokens are computed per step.
    pub fn max_blocks_held(&self, num_tokens: usize, max_chunk: usize, block_size: usize) -> usize {
        let all = num_tokens.div_ceil(block_size);
        match self.sliding_window {
            None => all,
            // W - 1 positions before the chunk, the chunk, and one block of misalignment.
            Some(w) => all.min((w - 1 + max_chunk.max(1)).div_ceil(block_size) + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_arithmetic() {
        let g = KvGroupSpec {
            sliding_window: Some(8),
            num_blocks: 0,
        };
        // Next token at 10 reads [3, 10]: block 0 ([0, 4)) is still needed.
        assert_eq!(g.num_skipped(10, 4), 0);
        // Next token at 11 reads [4, 11]: block 0 is out.
        assert_eq!(g.num_skipped(11, 4), 1);
        assert_eq!(g.num_skipped(15, 4), 2);
        assert_eq!(g.blocks_needed_for_hit(5, 4), 2);
        assert_eq!(g.blocks_needed_for_hit(1, 4), 1);
        assert_eq!(g.max_blocks_held(100, 1, 4), 3);
        assert_eq!(g.max_blocks_held(6, 1, 4), 2);
        let full = KvGroupSpec {
            sliding_window: None,
            num_blocks: 0,
        };
        assert_eq!(full.num_skipped(1000, 4), 0);
        assert_eq!(full.max_blocks_held(100, 1, 4), 25);
        let one = KvGroupSpec {
            sliding_window: Some(1),
            num_blocks: 0,
        };
        assert_eq!(one.blocks_needed_for_hit(3, 4), 0);
        assert_eq!(one.num_skipped(8, 4), 2);
    }
}
