//! The exact mode's small-T kernels: x rows [T, K] in f32 times W rows kept in GGUF blocks,
//! each block decoded in registers (a 32-float chunk on the stack per W row of the tile,
//! `blocks.rs`) and multiplied in the crate's fixed order (`lanes.rs`: eight lanes over k,
//! fused multiply-add where the path always fuses, the fixed tree). A chunk is decoded once
//! per tile and used by all its MR rows.
//!
//! The decoded values are the reference dequantizer's bits, and the accumulation is the f32
//! kernels' (`matmul.rs`), so each element equals the f32 matmul of x with the dequantized
//! W on the same path, bit for bit: batch invariance follows from the f32 kernels', and the
//! panel route (`panel.rs`, for many rows) gives the same bits as this one.
//!
//! Tiles: 3 x 4, a leftover pair of rows 2 x 4, a single row 1 x 8 (the GEMV: eight W rows
//! stream at once), leftover columns MR x 1, as the f32 AVX2 kernel. The same code is
//! compiled three times: portable (auto-vectorised, SSE2 or NEON), with AVX2 + FMA, and with
//! AVX-512 enabled, where the single-row tile decodes two W rows per 16-lane register
//! (`pair512.rs`: half the instructions, same arithmetic per lane, same bits).

#[cfg(target_arch = "x86_64")]
use super::avx2::Avx2Blocks;
use super::blocks::{Blocks, CHUNK};
#[cfg(target_arch = "x86_64")]
use super::pair512::Pair512;
#[cfg(target_arch = "x86_64")]
use super::prefetch::Prefetch;
use crate::lanes::{LANES, hsum, madd};
use crate::matmul::OutPtr;
use std::ops::Range;

/// The formats these kernels take: every [`Blocks`] type, with its AVX2 and two-row AVX-512
/// decoders on x86.
#[cfg(target_arch = "x86_64")]
pub(crate) trait Kern: Pair512 {}
#[cfg(target_arch = "x86_64")]
impl<T: Pair512> Kern for T {}
#[cfg(not(target_arch = "x86_64"))]
pub(crate) trait Kern: Blocks {}
#[cfg(not(target_arch = "x86_64"))]
impl<T: Blocks> Kern for T {}

/// One matmul with W in blocks of `F`.
pub(crate) struct QGemm<'a> {
    pub x: &'a [f32], // [T, K]
    pub w: &'a [u8],  // [N, K / BLOCK * BYTES]
    pub bias: Option<&'a [f32]>,
    pub out: OutPtr, // [T, ldo]
    pub k: usize,
    pub ldo: usize,
}

impl QGemm<'_> {
    #[inline(always)]
    fn w_row<F: Blocks>(&self, col: usize) -> &[u8] {
        let rb = self.k / F::BLOCK * F::BYTES;
        &self.w[col * rb..(col + 1) * rb]
    }

    /// Safety: in range, and no other task writes this element.
    #[inline(always)]
    unsafe fn store(&self, row: usize, col: usize, dot: f32) {
        let v = match self.bias {
            Some(b) => dot + b[col],
            None => dot,
        };
        unsafe { *self.out.0.add(row * self.ldo + col) = v };
    }
}

/// Decodes chunk `ch` (of the whole row) of each of the NR W rows into `buf`.
#[inline(always)]
fn decode_chunks<F: Blocks, const NR: usize>(
    wr: &[&[u8]; NR],
    ch: usize,
    buf: &mut [[f32; CHUNK]; NR],
) {
    let per_block = F::BLOCK / CHUNK;
    let (b, c) = (ch / per_block, ch % per_block);
    for j in 0..NR {
        F::decode(&wr[j][b * F::BYTES..(b + 1) * F::BYTES], c, &mut buf[j]);
    }
}

/// The portable tile: eight-lane arrays, `madd`.
#[inline(always)]
fn tile_portable<F: Blocks, const MR: usize, const NR: usize>(g: &QGemm<'_>, r: usize, c: usize) {
    let k = g.k;
    let xr: [&[f32]; MR] = std::array::from_fn(|i| &g.x[(r + i) * k..(r + i + 1) * k]);
    let wr: [&[u8]; NR] = std::array::from_fn(|j| g.w_row::<F>(c + j));
    let mut acc = [[[0.0f32; LANES]; NR]; MR];
    let mut buf = [[0.0f32; CHUNK]; NR];
    for ch in 0..k / CHUNK {
        decode_chunks::<F, NR>(&wr, ch, &mut buf);
        let xs: [&[[f32; LANES]]; MR] =
            std::array::from_fn(|i| xr[i][ch * CHUNK..(ch + 1) * CHUNK].as_chunks().0);
        let ws: [&[[f32; LANES]]; NR] = std::array::from_fn(|j| buf[j].as_chunks().0);
        accumulate(&mut acc, xs, ws);
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, a) in row.iter().enumerate() {
            // SAFETY: the caller owns the rectangle.
            unsafe { g.store(r + i, c + j, hsum(*a)) };
        }
    }
}

/// `acc[i][j] += x_i · w_j` lane by lane over whole groups of eight (out of line, for the
/// reason given at `matmul::accumulate`).
#[inline(never)]
fn accumulate<const MR: usize, const NR: usize>(
    acc: &mut [[[f32; LANES]; NR]; MR],
    x: [&[[f32; LANES]]; MR],
    w: [&[[f32; LANES]]; NR],
) {
    let steps = x[0].len();
    assert!(x.iter().all(|r| r.len() == steps) && w.iter().all(|r| r.len() == steps));
    let mut a = *acc;
    for s in 0..steps {
        for j in 0..NR {
            let wv = w[j][s];
            for i in 0..MR {
                let xv = &x[i][s];
                for l in 0..LANES {
                    a[i][j][l] = madd(xv[l], wv[l], a[i][j][l]);
                }
            }
        }
    }
    *acc = a;
}

/// The AVX2 tile (also compiled with AVX-512 enabled): each W chunk decoded straight into
/// registers (`avx2.rs`), `__m256` accumulators, FMA.
/// Safety: the rectangle is the caller's; AVX2, FMA and F16C are enabled in the caller.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_avx2<F: Avx2Blocks, const MR: usize, const NR: usize>(
    g: &QGemm<'_>,
    r: usize,
    c: usize,
) {
    use std::arch::x86_64::*;
    let k = g.k;
    let per_block = F::BLOCK / CHUNK;
    let xr: [*const f32; MR] = std::array::from_fn(|i| g.x[(r + i) * k..(r + i + 1) * k].as_ptr());
    let wr: [*const u8; NR] = std::array::from_fn(|j| g.w_row::<F>(c + j).as_ptr());
    // SAFETY (whole body): x loads read 8 floats inside a row of k; a chunk's block lies
    // inside its W row (k is whole blocks); the caller has the features.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); NR]; MR];
        let nch = k / CHUNK;
        let ahead = Prefetch::new::<F>(wr[0], NR, k);
        for ch in 0..nch {
            ahead.slice(ch, nch);
            let (b, cb) = (ch / per_block, ch % per_block);
            for j in 0..NR {
                let w = F::decode8x4(wr[j].add(b * F::BYTES), cb);
                for (q, wq) in w.iter().enumerate() {
                    for i in 0..MR {
                        let xv = _mm256_loadu_ps(xr[i].add(ch * CHUNK + q * LANES));
                        acc[i][j] = _mm256_fmadd_ps(xv, *wq, acc[i][j]);
                    }
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, a) in row.iter().enumerate() {
                // The tree of `lanes::hsum`, as in `matmul.rs`.
                let s = _mm_add_ps(_mm256_castps256_ps128(*a), _mm256_extractf128_ps::<1>(*a));
                let t = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let u = _mm_add_ss(t, _mm_shuffle_ps::<0b01>(t, t));
                g.store(r + i, c + j, _mm_cvtss_f32(u));
            }
        }
    }
}

/// The AVX-512 single-row tile over eight W rows as four pairs: register `p` accumulates
/// rows `2p` (lanes 0-7) and `2p + 1` (lanes 8-15), each half exactly as `tile_avx2`'s
/// 1 x 8 tile accumulates that row (same decoded values, same multiply-adds in the same
/// order, same tree), so the bits are the AVX2 tile's.
/// Safety: the tile is the caller's; AVX-512 F/BW/DQ/VL, AVX2, FMA and F16C are enabled.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_pair512<F: Pair512>(g: &QGemm<'_>, r: usize, c: usize) {
    use std::arch::x86_64::*;
    let k = g.k;
    let per_block = F::BLOCK / CHUNK;
    let x = g.x[r * k..(r + 1) * k].as_ptr();
    let wr: [*const u8; 8] = std::array::from_fn(|j| g.w_row::<F>(c + j).as_ptr());
    // SAFETY (whole body): x loads read 8 floats inside row r of k floats; a chunk's block
    // lies inside its W row (k is whole blocks); the caller has the features.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); 4];
        let nch = k / CHUNK;
        let ahead = Prefetch::new::<F>(wr[0], 8, k);
        for ch in 0..nch {
            ahead.slice(ch, nch);
            let (b, cb) = (ch / per_block, ch % per_block);
            let xc = x.add(ch * CHUNK);
            let xs = [
                _mm512_broadcast_f32x8(_mm256_loadu_ps(xc)),
                _mm512_broadcast_f32x8(_mm256_loadu_ps(xc.add(LANES))),
                _mm512_broadcast_f32x8(_mm256_loadu_ps(xc.add(2 * LANES))),
                _mm512_broadcast_f32x8(_mm256_loadu_ps(xc.add(3 * LANES))),
            ];
            for (p, a) in acc.iter_mut().enumerate() {
                let off = b * F::BYTES;
                let w = F::decode16x4(wr[2 * p].add(off), wr[2 * p + 1].add(off), cb);
                for (xq, wq) in xs.iter().zip(&w) {
                    *a = _mm512_fmadd_ps(*xq, *wq, *a);
                }
            }
        }
        for (p, a) in acc.iter().enumerate() {
            let halves = [
                _mm512_castps512_ps256(*a),
                _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(*a))),
            ];
            for (h, v) in halves.iter().enumerate() {
                // The tree of `lanes::hsum`, as in `tile_avx2`.
                let s = _mm_add_ps(_mm256_castps256_ps128(*v), _mm256_extractf128_ps::<1>(*v));
                let t = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let u = _mm_add_ss(t, _mm_shuffle_ps::<0b01>(t, t));
                g.store(r, c + 2 * p + h, _mm_cvtss_f32(u));
            }
        }
    }
}

/// Which tile code a block runs.
#[derive(Clone, Copy)]
enum Path {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX2 tiles, and the two-row tile for single rows.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// Rows × cols with tiles 3 x 4, 2 x 4, 1 x 8 and MR x 1 (see the module header).
#[inline(always)]
unsafe fn block<F: Kern>(path: Path, g: &QGemm<'_>, rows: Range<usize>, cols: Range<usize>) {
    #[inline(always)]
    unsafe fn group<F: Kern, const MR: usize, const NR: usize>(
        path: Path,
        g: &QGemm<'_>,
        r: usize,
        cols: Range<usize>,
    ) {
        let mut c = cols.start;
        // SAFETY: forwarded; every tile lies inside the rectangle.
        unsafe {
            while cols.end - c >= NR {
                match path {
                    Path::Portable => tile_portable::<F, MR, NR>(g, r, c),
                    #[cfg(target_arch = "x86_64")]
                    Path::Avx2 => tile_avx2::<F, MR, NR>(g, r, c),
                    #[cfg(target_arch = "x86_64")]
                    Path::Avx512 if MR == 1 && NR == 8 => tile_pair512::<F>(g, r, c),
                    #[cfg(target_arch = "x86_64")]
                    Path::Avx512 => tile_avx2::<F, MR, NR>(g, r, c),
                }
                c += NR;
            }
            while c < cols.end {
                match path {
                    Path::Portable => tile_portable::<F, MR, 1>(g, r, c),
                    #[cfg(target_arch = "x86_64")]
                    Path::Avx2 | Path::Avx512 => tile_avx2::<F, MR, 1>(g, r, c),
                }
                c += 1;
            }
        }
    }
    let mut r = rows.start;
    // SAFETY: every tile lies inside rows × cols.
    unsafe {
        while rows.end - r >= 3 {
            group::<F, 3, 4>(path, g, r, cols.clone());
            r += 3;
        }
        match rows.end - r {
            2 => group::<F, 2, 4>(path, g, r, cols),
            1 => group::<F, 1, 8>(path, g, r, cols),
            _ => {}
        }
    }
}

/// Portable path. Safety: the rectangle belongs to the caller.
pub(crate) unsafe fn run_portable<F: Kern>(g: &QGemm<'_>, rows: Range<usize>, cols: Range<usize>) {
    // SAFETY: forwarded.
    unsafe { block::<F>(Path::Portable, g, rows, cols) }
}

/// AVX2 path. Safety: the rectangle belongs to the caller; the CPU has AVX2, FMA, F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn run_avx2<F: Kern>(g: &QGemm<'_>, rows: Range<usize>, cols: Range<usize>) {
    // SAFETY: forwarded.
    unsafe { block::<F>(Path::Avx2, g, rows, cols) }
}

/// The AVX2 arithmetic with AVX-512 enabled: two-row decoding for single rows. Safety: as
/// `run_avx2`, and the CPU has AVX-512 F/BW/DQ/VL.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn run_avx512<F: Kern>(g: &QGemm<'_>, rows: Range<usize>, cols: Range<usize>) {
    // SAFETY: forwarded.
    unsafe { block::<F>(Path::Avx512, g, rows, cols) }
}

/// Decodes W rows `cols` into row-major f32 `out` ([cols, K]), for the panel route.
#[inline(always)]
fn decode_rows<F: Blocks>(w: &[u8], k: usize, cols: Range<usize>, out: &mut [f32]) {
    let rb = k / F::BLOCK * F::BYTES;
    let per_block = F::BLOCK / CHUNK;
    for (col, dst) in cols.zip(out.chunks_exact_mut(k)) {
        let row = &w[col * rb..(col + 1) * rb];
        for (ch, o) in dst.as_chunks_mut::<CHUNK>().0.iter_mut().enumerate() {
            let (b, c) = (ch / per_block, ch % per_block);
            F::decode(&row[b * F::BYTES..(b + 1) * F::BYTES], c, o);
        }
    }
}

/// [`decode_rows`] compiled for the portable path.
pub(crate) fn decode_rows_portable<F: Kern>(
    w: &[u8],
    k: usize,
    cols: Range<usize>,
    out: &mut [f32],
) {
    decode_rows::<F>(w, k, cols, out)
}

/// [`decode_rows`] with the AVX2 chunk decoders (`avx2.rs`): the same values.
/// Safety: the CPU has AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn decode_rows_x86<F: Kern>(w: &[u8], k: usize, cols: Range<usize>, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let rb = k / F::BLOCK * F::BYTES;
    let per_block = F::BLOCK / CHUNK;
    assert!(w.len() >= cols.end * rb && out.len() >= cols.len() * k);
    for (i, col) in cols.enumerate() {
        // SAFETY: blocks inside row `col` of w; stores inside row i of out (checked above).
        unsafe {
            let row = w.as_ptr().add(col * rb);
            let dst = out.as_mut_ptr().add(i * k);
            for ch in 0..k / CHUNK {
                let v = F::decode8x4(row.add(ch / per_block * F::BYTES), ch % per_block);
                for (q, v) in v.iter().enumerate() {
                    _mm256_storeu_ps(dst.add(ch * CHUNK + q * LANES), *v);
                }
            }
        }
    }
}

/// W rows decoded on the AVX2 path. Safety: the CPU has AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn decode_rows_avx2<F: Kern>(
    w: &[u8],
    k: usize,
    cols: Range<usize>,
    out: &mut [f32],
) {
    // SAFETY: forwarded.
    unsafe { decode_rows_x86::<F>(w, k, cols, out) }
}

/// See [`decode_rows_avx2`]. Safety: the CPU has AVX-512 F/BW/DQ/VL too.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn decode_rows_avx512<F: Kern>(
    w: &[u8],
    k: usize,
    cols: Range<usize>,
    out: &mut [f32],
) {
    // SAFETY: forwarded.
    unsafe { decode_rows_x86::<F>(w, k, cols, out) }
}
