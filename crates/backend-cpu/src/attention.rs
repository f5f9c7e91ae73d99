//! The paged KV cache: `kv_write` (scatter new K/V rows into slots) and `paged_attention`
//! (varlen causal attention reading context through block tables).
//!
//! Layout (DESIGN.md §5): per layer, K and V caches are `[num_blocks, num_kv_heads,
//! block_size, head_dim]`; slot `s` is block `s / block_size`, row `s % block_size`.
//!
//! Attention is one online softmax per (query token, query head), FlashAttention's running
//! max and running sum (Milakov & Gimelshein 2018; Dao et al. 2022), accumulated in f32.
//! Context positions are visited in increasing order, in chunks of `CHUNK` positions
//! aligned to multiples of `CHUNK` in absolute position (the first chunk starts at the
//! window start, the last ends at the query's own position): per chunk, the scores are
//! computed, the running max is raised once, and the chunk's exponentials are added in
//! order. The chunk grid is fixed, never a fixed number of splits, and does not depend on
//! the block size, so an output depends only on the query, the K/V values at positions
//! `start..=pos`, and those positions: the same token gives bit-identical results decoded
//! alone, in any batch, or as part of a prompt processed whole or in chunks (batch
//! invariance, DESIGN.md §5). Scores are dot products in the crate's fixed lane order.
//!
//! Work is split over (token, KV head) pairs with rayon; a task handles the `Hq / Hk` query
//! heads that share one KV head (GQA), so each K/V row it reads serves the whole group.
//! Cost per task: O(context · group · head_dim), plus O(CHUNK · group) scratch.

use crate::lanes::{LANES, dot, madd};
use rayon::prelude::*;

/// Context positions per online-softmax step.
const CHUNK: usize = 32;

/// Paged cache geometry.
#[derive(Clone, Copy)]
pub(crate) struct CacheDims {
    pub num_blocks: usize,
    pub num_kv_heads: usize,
    pub block_size: usize,
    pub head_dim: usize,
}

impl CacheDims {
    /// Offset of (slot, kv head)'s row in a cache.
    #[inline(always)]
    fn row(&self, block: usize, kv_head: usize, offset: usize) -> usize {
        ((block * self.num_kv_heads + kv_head) * self.block_size + offset) * self.head_dim
    }
}

/// Writes `k`, `v` [T, Hk, D] into the caches at `slot_mapping` [T].
pub(crate) fn kv_write(
    dims: CacheDims,
    k: &[f32],            // [T, Hk, D]
    v: &[f32],            // [T, Hk, D]
    k_cache: &mut [f32],  // [num_blocks, Hk, block_size, D]
    v_cache: &mut [f32],  // [num_blocks, Hk, block_size, D]
    slot_mapping: &[u32], // [T]
) {
    let (hk, d, bs) = (dims.num_kv_heads, dims.head_dim, dims.block_size);
    for (t, &slot) in slot_mapping.iter().enumerate() {
        let slot = slot as usize;
        let (block, off) = (slot / bs, slot % bs);
        assert!(
            block < dims.num_blocks,
            "kv_write: slot {slot} of token {t} is outside the cache ({} blocks of {bs})",
            dims.num_blocks
        );
        for h in 0..hk {
            let src = (t * hk + h) * d;
            let dst = dims.row(block, h, off);
            k_cache[dst..dst + d].copy_from_slice(&k[src..src + d]);
            v_cache[dst..dst + d].copy_from_slice(&v[src..src + d]);
        }
    }
}

/// The per-step sequence layout, read from the metadata tensors.
pub(crate) struct Varlen<'a> {
    pub block_tables: &'a [u32], // [S, max_blocks]
    pub max_blocks: usize,
    pub seq_lens: &'a [u32],        // [S]
    pub query_start_loc: &'a [u32], // [S + 1]
    pub max_seq_len: usize,
}

/// Causal attention of `q` [T, Hq, D] over the caches -> [T, Hq, D].
#[allow(clippy::too_many_arguments)]
pub(crate) fn paged_attention(
    simd: bool,
    dims: CacheDims,
    q: &[f32], // [T, Hq, D]
    num_q_heads: usize,
    k_cache: &[f32], // [num_blocks, Hk, block_size, D]
    v_cache: &[f32], // [num_blocks, Hk, block_size, D]
    meta: &Varlen<'_>,
    scale: f32,
    window: Option<usize>,
) -> Vec<f32> {
    let (hk, d) = (dims.num_kv_heads, dims.head_dim);
    let group = num_q_heads / hk;
    let t_total = q.len() / (num_q_heads * d).max(1);
    let seq_of = token_sequences(meta, t_total, dims);

    let mut out = vec![f32::NAN; q.len()]; // [T, Hq, D], poisoned
    if d == 0 {
        return out;
    }
    out.par_chunks_mut(group * d)
        .enumerate()
        .for_each(|(item, out)| {
            let (t, kvh) = (item / hk, item % hk);
            let s = seq_of[t] as usize;
            let q_len = (meta.query_start_loc[s + 1] - meta.query_start_loc[s]) as usize;
            let pos = meta.seq_lens[s] as usize - q_len + (t - meta.query_start_loc[s] as usize);
            let start = window.map_or(0, |w| (pos + 1).saturating_sub(w));
            let task = Task {
                dims,
                q: &q[(t * num_q_heads + kvh * group) * d..][..group * d],
                group,
                kv_head: kvh,
                k_cache,
                v_cache,
                table: &meta.block_tables[s * meta.max_blocks..(s + 1) * meta.max_blocks],
                positions: start..pos + 1,
                scale,
            };
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: `simd` is set only when AVX2 and FMA were detected.
                unsafe { task.run_avx2(out) };
                return;
            }
            let _ = simd;
            task.run(out);
        });
    out
}

/// Maps each token to its sequence, checking the metadata (caller bugs panic here).
fn token_sequences(meta: &Varlen<'_>, t_total: usize, dims: CacheDims) -> Vec<u32> {
    let qsl = meta.query_start_loc;
    let s_count = meta.seq_lens.len();
    assert_eq!(
        qsl[0], 0,
        "paged_attention: query_start_loc must start at 0"
    );
    assert_eq!(
        qsl[s_count] as usize, t_total,
        "paged_attention: query_start_loc ends at {} but q has {t_total} tokens",
        qsl[s_count]
    );
    let mut seq_of = vec![0u32; t_total];
    for s in 0..s_count {
        let (a, b) = (qsl[s] as usize, qsl[s + 1] as usize);
        assert!(
            a <= b,
            "paged_attention: query_start_loc decreases at sequence {s}"
        );
        let len = meta.seq_lens[s] as usize;
        assert!(
            b - a <= len,
            "paged_attention: sequence {s} has {} queries but only {len} tokens",
            b - a
        );
        assert!(
            len <= meta.max_seq_len,
            "paged_attention: seq_lens[{s}] = {len} exceeds max_seq_len {}",
            meta.max_seq_len
        );
        let used = len.div_ceil(dims.block_size);
        for (i, &blk) in meta.block_tables[s * meta.max_blocks..][..used]
            .iter()
            .enumerate()
        {
            assert!(
                (blk as usize) < dims.num_blocks,
                "paged_attention: block_tables[{s}][{i}] = {blk} is outside the cache ({} blocks)",
                dims.num_blocks
            );
        }
        seq_of[a..b].fill(s as u32);
    }
    seq_of
}

/// One (token, KV head) work item: the group of query heads sharing that KV head.
struct Task<'a> {
    dims: CacheDims,
    q: &'a [f32], // [group, D]
    group: usize,
    kv_head: usize,
    k_cache: &'a [f32], // [num_blocks, Hk, block_size, D]
    v_cache: &'a [f32], // [num_blocks, Hk, block_size, D]
    table: &'a [u32],   // [max_blocks]
    positions: std::ops::Range<usize>,
    scale: f32,
}

impl Task<'_> {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(&self, out: &mut [f32]) {
        // The same code compiled with wider vectors; `madd` is a compile-time choice and
        // LLVM does not contract the rest, so the rounding is identical to `run`.
        self.run(out)
    }

    /// Online softmax over the context, writing `out` [group, D].
    #[inline(always)]
    fn run(&self, out: &mut [f32]) {
        let d = self.dims.head_dim;
        let bs = self.dims.block_size;
        let g = self.group;
        let mut max = [f32::NEG_INFINITY; MAX_GROUP];
        let mut sum = [0.0f32; MAX_GROUP];
        let mut scores = [[0.0f32; CHUNK]; MAX_GROUP];
        assert!(
            g <= MAX_GROUP,
            "paged_attention: more than {MAX_GROUP} query heads per KV head"
        );
        out.fill(0.0);

        let mut p0 = self.positions.start;
        while p0 < self.positions.end {
            let p1 = ((p0 / CHUNK + 1) * CHUNK).min(self.positions.end);
            let n = p1 - p0;
            // Scores of the chunk, one K row at a time (read once for the whole group).
            for (j, p) in (p0..p1).enumerate() {
                let block = self.table[p / bs] as usize;
                let kr = &self.k_cache[self.dims.row(block, self.kv_head, p % bs)..][..d];
                for (sc, q) in scores.iter_mut().zip(self.q.chunks_exact(d)) {
                    sc[j] = dot(q, kr) * self.scale;
                }
            }
            // Raise each head's running max once, rescale its sum and accumulator.
            for h in 0..g {
                let chunk_max = scores[h][..n]
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                let new_max = max[h].max(chunk_max);
                let correction = (max[h] - new_max).exp();
                max[h] = new_max;
                let mut s = sum[h] * correction;
                for e in scores[h][..n].iter_mut() {
                    *e = (*e - new_max).exp();
                    s += *e;
                }
                sum[h] = s;
                for a in out[h * d..(h + 1) * d].iter_mut() {
                    *a *= correction;
                }
            }
            // Accumulate the weighted V rows in position order.
            for (j, p) in (p0..p1).enumerate() {
                let block = self.table[p / bs] as usize;
                let vr = &self.v_cache[self.dims.row(block, self.kv_head, p % bs)..][..d];
                for h in 0..g {
                    let w = scores[h][j];
                    axpy(w, vr, &mut out[h * d..(h + 1) * d]);
                }
            }
            p0 = p1;
        }
        for h in 0..g {
            let inv = 1.0 / sum[h];
            for a in out[h * d..(h + 1) * d].iter_mut() {
                *a *= inv;
            }
        }
    }
}

/// The largest GQA group (query heads per KV head) supported.
const MAX_GROUP: usize = 64;

/// `y += a * x`, elementwise (each element is its own reduction over positions).
#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let mut yc = y.chunks_exact_mut(LANES);
    let mut xc = x.chunks_exact(LANES);
    for (yv, xv) in (&mut yc).zip(&mut xc) {
        for l in 0..LANES {
            yv[l] = madd(a, xv[l], yv[l]);
        }
    }
    for (yv, xv) in yc.into_remainder().iter_mut().zip(xc.remainder()) {
        *yv = madd(a, *xv, *yv);
    }
}
