//! AVX-512 register tiles for `matmul`, over W widened into a pair-interleaved f32 panel.
//!
//! The crate's reduction order (`lanes.rs`) has eight lanes, so a 16-lane register cannot
//! hold one dot product's accumulator without changing its order. It holds two: lanes 0-7
//! accumulate (x row i) · (W column 2p) and lanes 8-15 (x row i) · (W column 2p + 1), each
//! exactly as the eight-lane AVX2 kernel does (one fused multiply-add per group of eight k,
//! in increasing k, zero-padded tail, then the same tree). So these tiles give the AVX2
//! kernels' bits (tested) at twice the width, and the 32 registers hold a 6 x 4-pair tile:
//! per group of eight k, six broadcasts of x, four panel loads, 24 FMAs.
//!
//! The panel: W columns in pairs; pair p, k-group q is 16 floats `[col 2p: k = 8q..8q+8 |
//! col 2p+1: same k]`, K padded with zeros to a multiple of 8 and an odd last column paired
//! with zeros. A task builds it once (from f32, f16, bf16 or GGUF blocks, `panel.rs`) and
//! runs all its rows against it.

#![cfg(target_arch = "x86_64")]

use crate::lanes::LANES;
use crate::matmul::OutPtr;
use std::arch::x86_64::*;
use std::ops::Range;

/// Floats of a pair panel of `nc` columns of length `k`.
pub(crate) fn panel_len(nc: usize, k: usize) -> usize {
    nc.div_ceil(2) * k.div_ceil(LANES) * 2 * LANES
}

/// Writes the pair panel of `nc` row-major rows `rows` ([nc, k]) into `out`.
pub(crate) fn interleave(rows: &[f32], nc: usize, k: usize, out: &mut [f32]) {
    let kq = k.div_ceil(LANES);
    debug_assert!(rows.len() >= nc * k && out.len() >= panel_len(nc, k));
    for p in 0..nc.div_ceil(2) {
        let pair = &mut out[p * kq * 2 * LANES..(p + 1) * kq * 2 * LANES];
        for half in 0..2 {
            let col = 2 * p + half;
            for q in 0..kq {
                let dst = &mut pair[q * 2 * LANES + half * LANES..][..LANES];
                let lo = q * LANES;
                let n = if col < nc { LANES.min(k - lo) } else { 0 };
                if n > 0 {
                    dst[..n].copy_from_slice(&rows[col * k + lo..][..n]);
                }
                dst[n..].fill(0.0);
            }
        }
    }
}

/// One task's view: x rows, the pair panel of W columns `col0..`, where to write.
pub(crate) struct PanelGemm<'a> {
    pub x: &'a [f32],     // [T, K]
    pub panel: &'a [f32], // pair panel of columns col0.. (see the module header)
    pub col0: usize,
    pub ncols: usize, // columns in the panel
    pub bias: Option<&'a [f32]>,
    pub out: OutPtr,
    pub k: usize,
    pub ldo: usize,
}

/// Rows of the main tile, and pairs of columns per tile.
const MR: usize = 6;
const NP: usize = 4;

/// Computes `rows` x all panel columns. Safety: the rectangle of the output belongs to the
/// caller alone; the CPU has AVX-512 F/DQ/VL, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
pub(crate) unsafe fn run(g: &PanelGemm<'_>, rows: Range<usize>) {
    let pairs = g.ncols.div_ceil(2);
    let mut r = rows.start;
    // SAFETY: every tile lies inside rows x panel columns.
    unsafe {
        while rows.end - r >= MR {
            row_group::<MR>(g, r, pairs);
            r += MR;
        }
        match rows.end - r {
            5 => row_group::<5>(g, r, pairs),
            4 => row_group::<4>(g, r, pairs),
            3 => row_group::<3>(g, r, pairs),
            2 => row_group::<2>(g, r, pairs),
            1 => row_group::<1>(g, r, pairs),
            _ => {}
        }
    }
}

#[inline(always)]
unsafe fn row_group<const M: usize>(g: &PanelGemm<'_>, r: usize, pairs: usize) {
    let mut p = 0;
    // SAFETY: forwarded.
    unsafe {
        while pairs - p >= NP {
            tile::<M, NP>(g, r, p);
            p += NP;
        }
        while p < pairs {
            tile::<M, 1>(g, r, p);
            p += 1;
        }
    }
}

/// Rows `r..r+M` x pairs `p..p+N`.
#[inline(always)]
unsafe fn tile<const M: usize, const N: usize>(g: &PanelGemm<'_>, r: usize, p: usize) {
    let k = g.k;
    let kq = k.div_ceil(LANES);
    let kb = k / LANES;
    // SAFETY (whole body): x loads read 8 floats below k of row r+i (the tail through a
    // mask); panel loads stay inside pair p+j; the caller has the features.
    unsafe {
        let xr: [*const f32; M] = std::array::from_fn(|i| g.x.as_ptr().add((r + i) * k));
        let wp: [*const f32; N] =
            std::array::from_fn(|j| g.panel.as_ptr().add((p + j) * kq * 2 * LANES));
        let mut acc = [[_mm512_setzero_ps(); N]; M];
        for q in 0..kb {
            // A loop, not `from_fn`: a closure would not inherit the target features.
            let mut xv = [_mm512_setzero_ps(); M];
            for i in 0..M {
                xv[i] = _mm512_broadcast_f32x8(_mm256_loadu_ps(xr[i].add(q * LANES)));
            }
            for j in 0..N {
                let wv = _mm512_loadu_ps(wp[j].add(q * 2 * LANES));
                for i in 0..M {
                    acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
                }
            }
        }
        if kb < kq {
            // Ragged tail: x zero-padded by a masked load, the panel by construction.
            let mask: __mmask8 = (1u8 << (k - kb * LANES)) - 1;
            let mut xv = [_mm512_setzero_ps(); M];
            for i in 0..M {
                xv[i] = _mm512_broadcast_f32x8(_mm256_maskz_loadu_ps(mask, xr[i].add(kb * LANES)));
            }
            for j in 0..N {
                let wv = _mm512_loadu_ps(wp[j].add(kb * 2 * LANES));
                for i in 0..M {
                    acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, a) in row.iter().enumerate() {
                // The tree of `lanes::hsum` in both halves at once: a_l + a_{l+4} (swap the
                // 128-bit quarters of each half), then lanes 0 + 2 and 1 + 3, then 0 + 1.
                let s = _mm512_add_ps(*a, _mm512_shuffle_f32x4::<0b10_11_00_01>(*a, *a));
                let t = _mm512_add_ps(s, _mm512_permute_ps::<0b11_10_11_10>(s));
                let u = _mm512_add_ps(t, _mm512_permute_ps::<0b01_01_01_01>(t));
                let col = g.col0 + 2 * (p + j);
                store(g, r + i, col, _mm512_cvtss_f32(u));
                if col + 1 < g.col0 + g.ncols {
                    store(
                        g,
                        r + i,
                        col + 1,
                        _mm_cvtss_f32(_mm512_extractf32x4_ps::<2>(u)),
                    );
                }
            }
        }
    }
}

/// Stores element (row, col) plus its bias. Safety: in range and owned by the caller.
#[inline(always)]
unsafe fn store(g: &PanelGemm<'_>, row: usize, col: usize, dot: f32) {
    let v = match g.bias {
        Some(b) => dot + b[col],
        None => dot,
    };
    // SAFETY: forwarded.
    unsafe { *g.out.0.add(row * g.ldo + col) = v };
}
