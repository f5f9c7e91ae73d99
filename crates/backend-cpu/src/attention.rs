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
//! window start, the last ends at the query's own position). Per chunk: the scores are
//! computed, the running max is raised once, the sum and the output accumulator are
//! rescaled, and the chunk's weighted V rows are added position by position. The chunk grid
//! is fixed (never a fixed number of splits) and independent of the block size, so an
//! output depends only on the query, the K/V values at positions `start..=pos`, and those
//! positions: a token gives bit-identical results decoded alone, in any batch, or as part
//! of a prompt processed whole or in chunks (batch invariance, DESIGN.md §5).
//!
//! Speed: the K rows of a chunk that share a block are contiguous, so each run of them is
//! scored against the whole GQA group by the matmul kernel (`matmul::dots`: the crate's
//! fixed dot-product order, AVX2 where detected); exponentials use a branch-free `expf`
//! that vectorises; the V accumulation keeps a block of head dims in registers across the
//! chunk. Work is split over (token, KV head) pairs with rayon; a task handles the
//! `Hq / Hk` query heads that share one KV head, so each K/V row it reads serves the whole
//! group. Cost per task: O(context · group · head_dim) flops, O(CHUNK · group) scratch.
//!
//! Cache dtypes: f32, or f16 (half the memory and bandwidth). `kv_write` rounds K/V to f16
//! to nearest even (the `half` crate, F16C where present); attention widens a chunk's f16
//! K and V rows exactly into an f32 scratch of `[2, CHUNK, D]` once per chunk and runs the
//! f32 code on it, so an f16 cache gives exactly the bits of an f32 cache holding the same
//! (rounded) values. Extra cost: O(CHUNK · D) conversions per chunk, shared by the group.

use crate::lanes::madd;
use crate::matmul::{Isa, Weight, dots};
use half::f16;
use half::slice::HalfFloatSliceExt;
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

/// A KV cache element: f32, or f16 (narrowed to nearest even, widened exactly).
pub(crate) trait CacheElem: Weight {
    /// `dst[i] = src[i]` rounded to the cache's precision (`dst.len() == src.len()`).
    fn narrow_slice(src: &[f32], dst: &mut [Self]);
}

impl CacheElem for f32 {
    fn narrow_slice(src: &[f32], dst: &mut [Self]) {
        dst.copy_from_slice(src);
    }
}

impl CacheElem for f16 {
    fn narrow_slice(src: &[f32], dst: &mut [Self]) {
        dst.convert_from_f32_slice(src);
    }
}

/// Writes `k`, `v` [T, Hk, D] into the caches at `slot_mapping` [T].
pub(crate) fn kv_write<E: CacheElem>(
    dims: CacheDims,
    k: &[f32],            // [T, Hk, D]
    v: &[f32],            // [T, Hk, D]
    k_cache: &mut [E],    // [num_blocks, Hk, block_size, D]
    v_cache: &mut [E],    // [num_blocks, Hk, block_size, D]
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
            E::narrow_slice(&k[src..src + d], &mut k_cache[dst..dst + d]);
            E::narrow_slice(&v[src..src + d], &mut v_cache[dst..dst + d]);
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
pub(crate) fn paged_attention<E: CacheElem>(
    isa: Isa,
    dims: CacheDims,
    q: &[f32], // [T, Hq, D]
    num_q_heads: usize,
    k_cache: &[E], // [num_blocks, Hk, block_size, D]
    v_cache: &[E], // [num_blocks, Hk, block_size, D]
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
                isa,
            };
            #[cfg(target_arch = "x86_64")]
            if isa.has_avx2() {
                // SAFETY: these ISAs come only from detecting AVX2 and FMA.
                unsafe { task.run_avx2(out) };
                return;
            }
            task.run::<32>(out);
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
struct Task<'a, E> {
    dims: CacheDims,
    q: &'a [f32], // [group, D]
    group: usize,
    kv_head: usize,
    k_cache: &'a [E], // [num_blocks, Hk, block_size, D]
    v_cache: &'a [E], // [num_blocks, Hk, block_size, D]
    table: &'a [u32], // [max_blocks]
    positions: std::ops::Range<usize>,
    scale: f32,
    isa: Isa,
}

impl<E: CacheElem> Task<'_, E> {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(&self, out: &mut [f32]) {
        // The same code compiled with wider vectors for the softmax and V accumulation;
        // `madd` is a compile-time choice and LLVM does not contract the rest, so only the
        // scores (the matmul kernel of `isa`) round differently from the portable build.
        self.run::<64>(out)
    }

    /// Online softmax over the context, writing `out` [group, D]; `DB` is the register
    /// block of the V accumulation (see `accumulate_v`).
    #[inline(always)]
    fn run<const DB: usize>(&self, out: &mut [f32]) {
        let d = self.dims.head_dim;
        let bs = self.dims.block_size;
        let g = self.group;
        assert!(
            g <= MAX_GROUP,
            "paged_attention: more than {MAX_GROUP} query heads per KV head"
        );
        let mut max = [f32::NEG_INFINITY; MAX_GROUP];
        let mut sum = [0.0f32; MAX_GROUP];
        let mut scores = [0.0f32; MAX_GROUP * CHUNK]; // [group, CHUNK]
        let mut rows = [0usize; CHUNK]; // cache offsets of the chunk's positions
        // Half caches: the chunk's rows widened to f32, read at offsets `j * D`.
        let direct = E::as_f32(self.k_cache).zip(E::as_f32(self.v_cache));
        let mut widened = match direct {
            Some(_) => Vec::new(),
            None => vec![0.0f32; 2 * CHUNK * d], // [2, CHUNK, D]: K rows, then V rows
        };
        let widened_rows: [usize; CHUNK] = std::array::from_fn(|j| j * d);
        out.fill(0.0);

        // Walk the block table incrementally (no division per position).
        let (mut table_idx, mut offset) = (self.positions.start / bs, self.positions.start % bs);
        let mut p0 = self.positions.start;
        while p0 < self.positions.end {
            let p1 = ((p0 / CHUNK + 1) * CHUNK).min(self.positions.end);
            let n = p1 - p0;
            for row in &mut rows[..n] {
                *row = self
                    .dims
                    .row(self.table[table_idx] as usize, self.kv_head, offset);
                offset += 1;
                if offset == bs {
                    (table_idx, offset) = (table_idx + 1, 0);
                }
            }
            let (k_src, v_src, rows) = match direct {
                Some((k, v)) => (k, v, &rows[..n]),
                None => {
                    let (wk, wv) = widened.split_at_mut(CHUNK * d);
                    for (j, &r) in rows[..n].iter().enumerate() {
                        E::widen_slice(&self.k_cache[r..r + d], &mut wk[j * d..(j + 1) * d]);
                        E::widen_slice(&self.v_cache[r..r + d], &mut wv[j * d..(j + 1) * d]);
                    }
                    (&*wk, &*wv, &widened_rows[..n])
                }
            };
            // Scores of the chunk: q [group, D] against each run of contiguous K rows (the
            // rows of one block, or the whole widened chunk), through the matmul kernel's
            // fixed per-element order (so the runs' lengths change no bit).
            let mut j0 = 0;
            while j0 < n {
                let mut len = 1;
                while j0 + len < n && rows[j0 + len] == rows[j0] + len * d {
                    len += 1;
                }
                let k_run = &k_src[rows[j0]..rows[j0] + len * d];
                dots(self.isa, self.q, k_run, d, &mut scores[j0..], CHUNK);
                j0 += len;
            }
            for (h, o) in out.chunks_exact_mut(d).enumerate() {
                // Raise the running max once per chunk; rescale the sum and accumulator.
                let sc = &mut scores[h * CHUNK..h * CHUNK + n];
                for e in sc.iter_mut() {
                    *e *= self.scale;
                }
                let chunk_max = sc.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                let new_max = max[h].max(chunk_max);
                let correction = exp_nonpositive(max[h] - new_max);
                max[h] = new_max;
                for e in sc.iter_mut() {
                    *e = exp_nonpositive(*e - new_max);
                }
                sum[h] = sc.iter().fold(sum[h] * correction, |s, &e| s + e);
                accumulate_v::<DB>(o, correction, sc, rows, v_src);
            }
            p0 = p1;
        }
        for (o, s) in out.chunks_exact_mut(d).zip(sum) {
            let inv = 1.0 / s;
            for a in o {
                *a *= inv;
            }
        }
    }
}

/// The largest GQA group (query heads per KV head) supported.
const MAX_GROUP: usize = 64;

/// `o = o * correction + Σ_j p[j] · V[rows[j]]`, positions in order, per element. The head
/// dim is walked in register blocks of `DB` dims (then 8, then single dims), each held
/// across all the chunk's positions; `DB` sets how many independent add chains hide the
/// add latency (64 with AVX2's 16 registers, 32 for SSE2/NEON). The blocking changes no
/// element's sequence of operations.
#[inline(always)]
fn accumulate_v<const DB: usize>(
    o: &mut [f32],
    correction: f32,
    p: &[f32],
    rows: &[usize],
    v: &[f32],
) {
    let d = o.len();
    let mut c0 = 0;
    while c0 + DB <= d {
        accumulate_block::<DB>(&mut o[c0..c0 + DB], correction, p, rows, v, c0);
        c0 += DB;
    }
    while c0 + 8 <= d {
        accumulate_block::<8>(&mut o[c0..c0 + 8], correction, p, rows, v, c0);
        c0 += 8;
    }
    for c in c0..d {
        accumulate_block::<1>(&mut o[c..c + 1], correction, p, rows, v, c);
    }
}

/// One register block of `accumulate_v`: dims `c0..c0 + B`.
#[inline(always)]
fn accumulate_block<const B: usize>(
    o: &mut [f32],
    correction: f32,
    p: &[f32],
    rows: &[usize],
    v: &[f32],
    c0: usize,
) {
    let ob: &mut [f32; B] = o.try_into().unwrap();
    let mut acc: [f32; B] = ob.map(|e| e * correction);
    for (&w, &r) in p.iter().zip(rows) {
        let vr: &[f32; B] = v[r + c0..r + c0 + B].try_into().unwrap();
        for e in 0..B {
            acc[e] = madd(w, vr[e], acc[e]);
        }
    }
    *ob = acc;
}

/// `e^x` for `x <= 0`, branch-free so that a slice of them vectorises; within 2 ulp of the
/// true value (tested). Cody–Waite reduction `x = n ln2 + r` with ln2 split in two parts
/// (`|r| <= ln2/2`), a degree-7 Taylor-like minimax polynomial for `e^r` (the Cephes `expf`
/// coefficients), and `2^n` built in the exponent bits. Inputs below -87 are clamped there
/// (`e^-87 ≈ 1.6e-38`, negligible beside the running max's weight of 1), which also keeps
/// `2^n` a normal float. Plain multiplies and adds: the same bits on every target.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4; // 0.693359375: few mantissa bits, so n * LN2_HI is exact
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.max(-87.0);
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND; // round(x / ln2), in [-126, 0]
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut q = 1.987_569_2e-4;
    q = q * r + 1.398_199_9e-3;
    q = q * r + 8.333_452e-3;
    q = q * r + 4.166_579_6e-2;
    q = q * r + 1.666_666_5e-1;
    q = q * r + 0.5;
    let er = q * (r * r) + r + 1.0;
    er * f32::from_bits(((n_bits + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::exp_nonpositive;

    /// Within 2 ulp (relative 2.4e-7) of the f64 exponential over the whole clamped range,
    /// exact at 0, monotone, and clamped below -87.
    #[test]
    fn exp_nonpositive_is_accurate() {
        let mut prev = 0.0f32;
        for i in 0..=1_000_000 {
            let x = -87.0 * i as f32 / 1_000_000.0;
            let got = exp_nonpositive(x);
            let want = (x as f64).exp();
            let rel = ((got as f64 - want) / want).abs();
            assert!(rel <= 2.4e-7, "exp({x}) = {got}, want {want} (rel {rel:e})");
            assert!(i == 0 || got <= prev, "not monotone at {x}");
            prev = got;
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-1e30), exp_nonpositive(-87.0));
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), exp_nonpositive(-87.0));
    }
}
