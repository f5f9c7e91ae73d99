//! The 8-bit activation mode (opt-in): x rows quantized to 8 bits per chunk of 32, weights
//! kept in their blocks, integer dot products, as llama.cpp multiplies on CPUs.
//!
//! An x chunk of 32 becomes `qx = round_ties_even(x * 127 / amax)` (i8, |qx| <= 127) with the
//! scale `dx = amax / 127`, plus its eight lane sums `X_l = Σ qx_i` over `i = 4l..4l+4`
//! ([`Q8Rows`]). A weight chunk is unsigned integers `q` with a per-format offset `o` and
//! scales: value `s_h * (q - o) + m` (`h` the half of the chunk: Q6_K has a scale per 16;
//! `m` the additive min of Q4_1, Q5_1, Q4_K, Q5_K). Q8_0's signed values are stored as
//! `q = w + 128` with `o = 128`.
//!
//! The one order (batch invariance, DESIGN.md §5): an output element keeps eight lanes; for
//! each chunk `c` in increasing k, lane `l` does
//!   `a_l = fma(s_{l/4} * dx, float(I_l), a_l)` with `I_l = Σ_{i=4l}^{4l+3} (q_i - o) qx_i`
//!   (exact in i32), then, for formats with a min, `a_l = fma(m * dx, float(X_l), a_l)`;
//! at the end the fixed tree of `lanes.rs`. Integer sums are exact, so every instruction
//! set computes the same `I_l` (VNNI `vpdpbusd`, AVX2 `vpmaddubsw` + `vpmaddwd`, or plain
//! Rust); the float steps are the same on every path that fuses (x86 always; portable where
//! the target has FMA). The quantization of a row depends on that row only.
//!
//! Cost against the exact mode: no float decoding of the weights and a quarter of the
//! activation bytes, for an error that `tests/quant.rs` measures against float32.

use super::blocks::{self, Blocks, CHUNK};
#[cfg(target_arch = "x86_64")]
use super::prefetch::Prefetch;
use crate::lanes::{LANES, hsum, madd};
use crate::matmul::OutPtr;
use std::ops::Range;

/// Quantized x rows: per chunk of 32, the i8 values, the scale and the lane sums.
#[derive(Default)]
pub(crate) struct Q8Rows {
    pub qs: Vec<i8>,    // [T, K]
    pub d: Vec<f32>,    // [T, K / 32]
    pub sums: Vec<i32>, // [T, K / 32, 8]
}

impl Q8Rows {
    /// Quantizes `x` ([t, k], k a multiple of 32) into `self`, reusing its buffers.
    pub(crate) fn quantize(&mut self, x: &[f32], k: usize) {
        let chunks = x.len() / CHUNK;
        debug_assert!(k.is_multiple_of(CHUNK) && x.len().is_multiple_of(k));
        self.qs.resize(x.len(), 0);
        self.d.resize(chunks, 0.0);
        self.sums.resize(chunks * LANES, 0);
        let xs = x.as_chunks::<CHUNK>().0;
        let qs = self.qs.as_chunks_mut::<CHUNK>().0;
        let sums = self.sums.as_chunks_mut::<LANES>().0;
        for (((x, q), d), s) in xs.iter().zip(qs).zip(&mut self.d).zip(sums) {
            *d = quantize_chunk(x, q, s);
        }
    }
}

/// One chunk: returns `dx`, writes `qx` and the lane sums.
#[inline(always)]
fn quantize_chunk(x: &[f32; CHUNK], q: &mut [i8; CHUNK], sums: &mut [i32; LANES]) -> f32 {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    // Round half to even by the 1.5 * 2^23 trick (exact for |v * id| <= 127 < 2^22):
    // `round_ties_even` itself is a libm call on x86 targets without SSE4.1.
    const MAGIC: f32 = 12_582_912.0;
    for (q, &v) in q.iter_mut().zip(x) {
        *q = ((v * id + MAGIC) - MAGIC).clamp(-127.0, 127.0) as i8;
    }
    for (l, s) in sums.iter_mut().enumerate() {
        *s = q[4 * l..4 * l + 4].iter().map(|&v| i32::from(v)).sum();
    }
    amax / 127.0
}

/// A chunk's scales: `s` per half (equal but for Q6_K) and the additive min (0 if none).
#[derive(Clone, Copy, Default)]
pub(crate) struct Scales {
    pub s: [f32; 2],
    pub m: f32,
}

/// A block format as unsigned integers with an offset (see the module header).
pub(crate) trait IntBlocks: Blocks {
    /// The offset `o` subtracted from every `q`.
    const OFFSET: i32;
    /// Whether the format has an additive min.
    const HAS_MIN: bool;
    /// The integers of chunk `c` of block `b`, and its scales (each as the reference
    /// dequantizer computes it, e.g. Q4_K's `d * sc` and `-(dmin * m)`).
    fn ints(b: &[u8], c: usize, q: &mut [u8; CHUNK]) -> Scales;

    /// [`IntBlocks::ints`] with AVX2 (the same bytes, one 32-byte store).
    /// Safety: the caller runs with AVX2; `b` is a whole block.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn ints_avx2(b: &[u8], c: usize, q: &mut [u8; CHUNK]) -> Scales {
        Self::ints(b, c, q)
    }
}

/// The 32 nibbles of 16 bytes at `p`, low nibbles first (Q4_0, Q4_1, Q5_x).
/// Safety: AVX2; 16 bytes readable.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn nibbles_avx2(p: *const u8) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    unsafe {
        let v = _mm_loadu_si128(p as *const __m128i);
        let m = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(v, m);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), m);
        _mm256_set_m128i(hi, lo)
    }
}

/// Bit `i` of `qh` as 0x10 in byte `i` (the fifth bit of Q5_0 / Q5_1). Safety: AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn fifth_bits_avx2(qh: u32) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    unsafe {
        // Byte i takes byte i / 8 of qh, keeps bit i % 8, and becomes 0x10 where it is set.
        let v = _mm256_set1_epi32(qh as i32);
        let spread = _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        );
        let bytes = _mm256_shuffle_epi8(v, spread);
        let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }
}

/// Stores 32 bytes. Safety: AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store32(q: &mut [u8; CHUNK], v: std::arch::x86_64::__m256i) {
    use std::arch::x86_64::*;
    unsafe { _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, v) }
}

#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    blocks::f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

#[inline(always)]
fn nibbles_into(qs: &[u8], q: &mut [u8; CHUNK]) {
    for j in 0..16 {
        q[j] = qs[j] & 0x0F;
        q[j + 16] = qs[j] >> 4;
    }
}

#[inline(always)]
fn high_bits_into(qh: &[u8], q: &mut [u8; CHUNK]) {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    for (i, v) in q.iter_mut().enumerate() {
        *v |= (((qh >> i) & 1) as u8) << 4;
    }
}

impl IntBlocks for blocks::Q8_0 {
    const OFFSET: i32 = 128;
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn ints(b: &[u8], _: usize, q: &mut [u8; CHUNK]) -> Scales {
        for (q, &w) in q.iter_mut().zip(&b[2..34]) {
            *q = w ^ 0x80;
        }
        let d = f16_at(b, 0);
        Scales { s: [d, d], m: 0.0 }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn ints_avx2(b: &[u8], _: usize, q: &mut [u8; CHUNK]) -> Scales {
        use std::arch::x86_64::*;
        let b = &b[..34];
        unsafe {
            let v = _mm256_loadu_si256(b.as_ptr().add(2) as *const __m256i);
            store32(q, _mm256_xor_si256(v, _mm256_set1_epi8(-128)));
        }
        let d = f16_at(b, 0);
        Scales { s: [d, d], m: 0.0 }
    }
}

impl IntBlocks for blocks::Q4_0 {
    const OFFSET: i32 = 8;
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn ints(b: &[u8], _: usize, q: &mut [u8; CHUNK]) -> Scales {
        nibbles_into(&b[2..18], q);
        let d = f16_at(b, 0);
        Scales { s: [d, d], m: 0.0 }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn ints_avx2(b: &[u8], _: usize, q: &mut [u8; CHUNK]) -> Scales {
        let b = &b[..18];
        unsafe { store32(q, nibbles_avx2(b.as_ptr().add(2))) };
        let d = f16_at(b, 0);
        Scales { s: [d, d], m: 0.0 }
    }
}

impl IntBlocks for blocks::Q4_1 {
    const OFFSET: i32 = 0;
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn ints(b: &[u8], _: usize, q: &mut [u8; CHUNK]) -> Scales {
        nibbles_into(&b[4..20], q);
        let d = f16_at(b, 0);
        Scales {
            s: [d, d],
            m: f16_at(b, 2),
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn ints_avx2(b: &[u8], _: usize, q: &mut [u8; CHUNK]) -> Scales {
        let b = &b[..20];
        unsafe { store32(q, nibbles_avx2(b.as_ptr().add(4))) };
        let d = f16_at(b, 0);
        Scales {
            s: [d, d],
            m: f16_at(b, 2),
        }
    }
}

impl IntBlocks for blocks::Q5_0 {
    const OFFSET: i32 = 16;
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn ints(b: &[u8], _: usize, q: &mut [u8; CHUNK]) -> Scales {
        nibbles_into(&b[6..22], q);
        high_bits_into(&b[2..6], q);
        let d = f16_at(b, 0);
        Scales { s: [d, d], m: 0.0 }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn ints_avx2(b: &[u8], _: usize, q: &mut [u8; CHUNK]) -> Scales {
        use std::arch::x86_64::*;
        let b = &b[..22];
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        unsafe {
            let v = _mm256_or_si256(nibbles_avx2(b.as_ptr().add(6)), fifth_bits_avx2(qh));
            store32(q, v);
        }
        let d = f16_at(b, 0);
        Scales { s: [d, d], m: 0.0 }
    }
}

impl IntBlocks for blocks::Q5_1 {
    const OFFSET: i32 = 0;
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn ints(b: &[u8], _: usize, q: &mut [u8; CHUNK]) -> Scales {
        nibbles_into(&b[8..24], q);
        high_bits_into(&b[4..8], q);
        let d = f16_at(b, 0);
        Scales {
            s: [d, d],
            m: f16_at(b, 2),
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn ints_avx2(b: &[u8], _: usize, q: &mut [u8; CHUNK]) -> Scales {
        use std::arch::x86_64::*;
        let b = &b[..24];
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        unsafe {
            let v = _mm256_or_si256(nibbles_avx2(b.as_ptr().add(8)), fifth_bits_avx2(qh));
            store32(q, v);
        }
        let d = f16_at(b, 0);
        Scales {
            s: [d, d],
            m: f16_at(b, 2),
        }
    }
}

/// Q4_K / Q5_K scales of sub-block `c`: `d * sc` and `-(dmin * mn)`.
#[inline(always)]
fn k4_scales(b: &[u8], c: usize) -> Scales {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = blocks::k4_scale_min(b[4..16].try_into().expect("12 bytes"), c);
    let s = d * f32::from(sc);
    Scales {
        s: [s, s],
        m: -(dmin * f32::from(mn)),
    }
}

impl IntBlocks for blocks::Q4K {
    const OFFSET: i32 = 0;
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn ints(b: &[u8], c: usize, q: &mut [u8; CHUNK]) -> Scales {
        let qs = &b[16 + 32 * (c / 2)..][..32];
        let shift = 4 * (c % 2);
        for (q, &v) in q.iter_mut().zip(qs) {
            *q = (v >> shift) & 0x0F;
        }
        k4_scales(b, c)
    }
}

impl IntBlocks for blocks::Q5K {
    const OFFSET: i32 = 0;
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn ints(b: &[u8], c: usize, q: &mut [u8; CHUNK]) -> Scales {
        let qh = &b[16..48];
        let qs = &b[48 + 32 * (c / 2)..][..32];
        let shift = 4 * (c % 2);
        for ((q, &l), &h) in q.iter_mut().zip(qs).zip(qh) {
            *q = ((l >> shift) & 0x0F) | (((h >> c) & 1) << 4);
        }
        k4_scales(b, c)
    }
}

impl IntBlocks for blocks::Q6K {
    const OFFSET: i32 = 32;
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn ints(b: &[u8], c: usize, q: &mut [u8; CHUNK]) -> Scales {
        let (h, g) = (c / 4, c % 4);
        let ql = &b[64 * h + 32 * (g % 2)..][..32];
        let qh = &b[128 + 32 * h..][..32];
        let shift = 4 * (g / 2);
        for ((q, &l), &hb) in q.iter_mut().zip(ql).zip(qh) {
            *q = ((l >> shift) & 0x0F) | (((hb >> (2 * g)) & 0x03) << 4);
        }
        let d = f16_at(b, 208);
        Scales {
            s: [
                d * f32::from(b[192 + 8 * h + 2 * g] as i8),
                d * f32::from(b[192 + 8 * h + 2 * g + 1] as i8),
            ],
            m: 0.0,
        }
    }
}

/// One 8-bit-mode matmul: quantized x, W in blocks.
pub(crate) struct IGemm<'a> {
    pub x: &'a Q8Rows,
    pub w: &'a [u8], // [N, K / BLOCK * BYTES]
    pub bias: Option<&'a [f32]>,
    pub out: OutPtr, // [T, ldo]
    pub k: usize,
    pub ldo: usize,
}

impl IGemm<'_> {
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

/// Unpacks chunk `ch` (of the whole row) of each of the N W rows.
#[inline(always)]
fn ints_of<F: IntBlocks, const N: usize>(
    wr: &[&[u8]; N],
    ch: usize,
    q: &mut [[u8; CHUNK]; N],
    sc: &mut [Scales; N],
) {
    let per_block = F::BLOCK / CHUNK;
    let (b, c) = (ch / per_block, ch % per_block);
    for j in 0..N {
        sc[j] = F::ints(&wr[j][b * F::BYTES..(b + 1) * F::BYTES], c, &mut q[j]);
    }
}

/// [`ints_of`] through the AVX2 unpackers. Safety: the caller runs with AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn ints_of_avx2<F: IntBlocks, const N: usize>(
    wr: &[&[u8]; N],
    ch: usize,
    q: &mut [[u8; CHUNK]; N],
    sc: &mut [Scales; N],
) {
    let per_block = F::BLOCK / CHUNK;
    let (b, c) = (ch / per_block, ch % per_block);
    for j in 0..N {
        // SAFETY: forwarded.
        sc[j] = unsafe { F::ints_avx2(&wr[j][b * F::BYTES..(b + 1) * F::BYTES], c, &mut q[j]) };
    }
}

/// The portable tile: plain integer sums, `madd`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // row i indexes x, the accumulators and the output
fn tile_portable<F: IntBlocks, const MR: usize, const NR: usize>(
    g: &IGemm<'_>,
    r: usize,
    c: usize,
) {
    let k = g.k;
    let chunks = k / CHUNK;
    let wr: [&[u8]; NR] = std::array::from_fn(|j| g.w_row::<F>(c + j));
    let mut acc = [[[0.0f32; LANES]; NR]; MR];
    let mut q = [[0u8; CHUNK]; NR];
    let mut sc = [Scales::default(); NR];
    for ch in 0..chunks {
        ints_of::<F, NR>(&wr, ch, &mut q, &mut sc);
        for i in 0..MR {
            let at = (r + i) * chunks + ch;
            let qx: &[i8; CHUNK] = g.x.qs[at * CHUNK..][..CHUNK].try_into().unwrap();
            let dx = g.x.d[at];
            let xs = &g.x.sums[at * LANES..][..LANES];
            for j in 0..NR {
                let (d0, d1) = (sc[j].s[0] * dx, sc[j].s[1] * dx);
                let mx = sc[j].m * dx;
                for l in 0..LANES {
                    let mut dot = 0i32;
                    for e in 4 * l..4 * l + 4 {
                        dot += i32::from(q[j][e]) * i32::from(qx[e]);
                    }
                    let int = dot - F::OFFSET * xs[l];
                    let s = if l < LANES / 2 { d0 } else { d1 };
                    acc[i][j][l] = madd(s, int as f32, acc[i][j][l]);
                    if F::HAS_MIN {
                        acc[i][j][l] = madd(mx, xs[l] as f32, acc[i][j][l]);
                    }
                }
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, a) in row.iter().enumerate() {
            // SAFETY: the caller owns the rectangle.
            unsafe { g.store(r + i, c + j, hsum(*a)) };
        }
    }
}

/// The AVX2 tile: `vpmaddubsw` (u8 x i8 pairs; no pair exceeds i16 since q <= 63, or
/// |w| <= 128 for Q8_0 through the sign trick) and `vpmaddwd` make the eight lane sums.
/// Safety: the rectangle is the caller's; AVX2 and FMA are enabled in the caller.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)] // row i indexes x, the accumulators and the output
unsafe fn tile_avx2<F: IntBlocks, const MR: usize, const NR: usize>(
    g: &IGemm<'_>,
    r: usize,
    c: usize,
) {
    use std::arch::x86_64::*;
    let k = g.k;
    let chunks = k / CHUNK;
    let wr: [&[u8]; NR] = std::array::from_fn(|j| g.w_row::<F>(c + j));
    let mut q = [[0u8; CHUNK]; NR];
    let mut sc = [Scales::default(); NR];
    // SAFETY (whole body): loads read 32 bytes or 8 values inside a chunk.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); NR]; MR];
        let ahead = Prefetch::new::<F>(wr[0].as_ptr(), NR, k);
        for ch in 0..chunks {
            ahead.slice(ch, chunks);
            ints_of_avx2::<F, NR>(&wr, ch, &mut q, &mut sc);
            for i in 0..MR {
                let at = (r + i) * chunks + ch;
                let qx = _mm256_loadu_si256(g.x.qs.as_ptr().add(at * CHUNK) as *const __m256i);
                let xs = _mm256_loadu_si256(g.x.sums.as_ptr().add(at * LANES) as *const __m256i);
                let dx = _mm256_set1_ps(g.x.d[at]);
                for j in 0..NR {
                    let qw = _mm256_loadu_si256(q[j].as_ptr() as *const __m256i);
                    let int = if F::OFFSET == 128 {
                        // Q8_0: back to the signed w, then |w| x sign(qx, w).
                        let w = _mm256_xor_si256(qw, _mm256_set1_epi8(-128));
                        let p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(qx, w));
                        _mm256_madd_epi16(p, ones)
                    } else {
                        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qx), ones);
                        match F::OFFSET {
                            0 => p,
                            8 => _mm256_sub_epi32(p, _mm256_slli_epi32::<3>(xs)),
                            16 => _mm256_sub_epi32(p, _mm256_slli_epi32::<4>(xs)),
                            _ => _mm256_sub_epi32(p, _mm256_slli_epi32::<5>(xs)),
                        }
                    };
                    let s = _mm256_setr_m128(_mm_set1_ps(sc[j].s[0]), _mm_set1_ps(sc[j].s[1]));
                    acc[i][j] =
                        _mm256_fmadd_ps(_mm256_mul_ps(s, dx), _mm256_cvtepi32_ps(int), acc[i][j]);
                    if F::HAS_MIN {
                        let m = _mm256_mul_ps(_mm256_set1_ps(sc[j].m), dx);
                        acc[i][j] = _mm256_fmadd_ps(m, _mm256_cvtepi32_ps(xs), acc[i][j]);
                    }
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, a) in row.iter().enumerate() {
                let s = _mm_add_ps(_mm256_castps256_ps128(*a), _mm256_extractf128_ps::<1>(*a));
                let t = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let u = _mm_add_ss(t, _mm_shuffle_ps::<0b01>(t, t));
                g.store(r + i, c + j, _mm_cvtss_f32(u));
            }
        }
    }
}

/// The AVX-512 VNNI tile: a register holds two W columns' eight lanes (lanes 0-7 column
/// `c + 2p`, 8-15 column `c + 2p + 1`), so one `vpdpbusd` makes both columns' lane sums.
/// `NC = 2 * NP` columns. Safety: the rectangle is the caller's; AVX-512 F/BW/DQ/VL/VNNI
/// are enabled in the caller.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)] // row i indexes x, the accumulators and the output
unsafe fn tile_vnni<F: IntBlocks, const MR: usize, const NP: usize, const NC: usize>(
    g: &IGemm<'_>,
    r: usize,
    c: usize,
) {
    use std::arch::x86_64::*;
    const { assert!(NC == 2 * NP) };
    let k = g.k;
    let chunks = k / CHUNK;
    let wr: [&[u8]; NC] = std::array::from_fn(|j| g.w_row::<F>(c + j));
    let mut q = [[0u8; CHUNK]; NC];
    let mut sc = [Scales::default(); NC];
    // SAFETY (whole body): loads read 32 bytes or 8 values inside a chunk.
    unsafe {
        // Lane l of a pair register takes scale index l / 4: (column, half).
        let spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        let mut acc = [[_mm512_setzero_ps(); NP]; MR];
        let ahead = Prefetch::new::<F>(wr[0].as_ptr(), NC, k);
        for ch in 0..chunks {
            ahead.slice(ch, chunks);
            ints_of_avx2::<F, NC>(&wr, ch, &mut q, &mut sc);
            // Loops, not `from_fn`: a closure would not inherit the target features.
            let mut w = [_mm512_setzero_si512(); NP];
            let mut s = [_mm512_setzero_ps(); NP];
            let mut m = [_mm512_setzero_ps(); NP];
            for p in 0..NP {
                let a = _mm256_loadu_si256(q[2 * p].as_ptr() as *const __m256i);
                let b = _mm256_loadu_si256(q[2 * p + 1].as_ptr() as *const __m256i);
                w[p] = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b);
                let (a, b) = (sc[2 * p].s, sc[2 * p + 1].s);
                let v = _mm_setr_ps(a[0], a[1], b[0], b[1]);
                s[p] = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(v));
                if F::HAS_MIN {
                    let (a, b) = (sc[2 * p].m, sc[2 * p + 1].m);
                    let v = _mm_setr_ps(a, a, b, b);
                    m[p] = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(v));
                }
            }
            for i in 0..MR {
                let at = (r + i) * chunks + ch;
                let qx = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                    g.x.qs.as_ptr().add(at * CHUNK) as *const __m256i,
                ));
                let xs = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                    g.x.sums.as_ptr().add(at * LANES) as *const __m256i,
                ));
                let off = match F::OFFSET {
                    0 => _mm512_setzero_si512(),
                    8 => _mm512_slli_epi32::<3>(xs),
                    16 => _mm512_slli_epi32::<4>(xs),
                    32 => _mm512_slli_epi32::<5>(xs),
                    _ => _mm512_slli_epi32::<7>(xs),
                };
                let dx = _mm512_set1_ps(g.x.d[at]);
                for p in 0..NP {
                    let mut int = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[p], qx);
                    if F::OFFSET != 0 {
                        int = _mm512_sub_epi32(int, off);
                    }
                    acc[i][p] = _mm512_fmadd_ps(
                        _mm512_mul_ps(s[p], dx),
                        _mm512_cvtepi32_ps(int),
                        acc[i][p],
                    );
                    if F::HAS_MIN {
                        acc[i][p] = _mm512_fmadd_ps(
                            _mm512_mul_ps(m[p], dx),
                            _mm512_cvtepi32_ps(xs),
                            acc[i][p],
                        );
                    }
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (p, a) in row.iter().enumerate() {
                // The tree of `lanes::hsum` in both halves (as `tile512.rs`).
                let s = _mm512_add_ps(*a, _mm512_shuffle_f32x4::<0b10_11_00_01>(*a, *a));
                let t = _mm512_add_ps(s, _mm512_permute_ps::<0b11_10_11_10>(s));
                let u = _mm512_add_ps(t, _mm512_permute_ps::<0b01_01_01_01>(t));
                g.store(r + i, c + 2 * p, _mm512_cvtss_f32(u));
                g.store(
                    r + i,
                    c + 2 * p + 1,
                    _mm_cvtss_f32(_mm512_extractf32x4_ps::<2>(u)),
                );
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
    #[cfg(target_arch = "x86_64")]
    Vnni,
}

/// Rows × cols: tiles of 4 x 4 (or 4 x 8 on VNNI), 1 x 8, and single columns.
#[inline(always)]
unsafe fn block<F: IntBlocks>(path: Path, g: &IGemm<'_>, rows: Range<usize>, cols: Range<usize>) {
    #[inline(always)]
    unsafe fn group<F: IntBlocks, const MR: usize>(
        path: Path,
        g: &IGemm<'_>,
        r: usize,
        cols: Range<usize>,
    ) {
        let mut c = cols.start;
        // SAFETY: forwarded; every tile lies inside the rectangle.
        unsafe {
            match path {
                Path::Portable => {
                    while cols.end - c >= 4 {
                        tile_portable::<F, MR, 4>(g, r, c);
                        c += 4;
                    }
                }
                #[cfg(target_arch = "x86_64")]
                Path::Avx2 => {
                    while cols.end - c >= 4 {
                        tile_avx2::<F, MR, 4>(g, r, c);
                        c += 4;
                    }
                }
                #[cfg(target_arch = "x86_64")]
                Path::Vnni => {
                    while cols.end - c >= 8 {
                        tile_vnni::<F, MR, 4, 8>(g, r, c);
                        c += 8;
                    }
                    while cols.end - c >= 2 {
                        tile_vnni::<F, MR, 1, 2>(g, r, c);
                        c += 2;
                    }
                }
            }
            while c < cols.end {
                match path {
                    Path::Portable => tile_portable::<F, MR, 1>(g, r, c),
                    #[cfg(target_arch = "x86_64")]
                    _ => tile_avx2::<F, MR, 1>(g, r, c),
                }
                c += 1;
            }
        }
    }
    let mut r = rows.start;
    // SAFETY: every tile lies inside rows × cols.
    unsafe {
        while rows.end - r >= 4 {
            group::<F, 4>(path, g, r, cols.clone());
            r += 4;
        }
        match rows.end - r {
            3 => group::<F, 3>(path, g, r, cols),
            2 => group::<F, 2>(path, g, r, cols),
            1 => group::<F, 1>(path, g, r, cols),
            _ => {}
        }
    }
}

/// Portable path. Safety: the rectangle belongs to the caller.
pub(crate) unsafe fn run_portable<F: IntBlocks>(
    g: &IGemm<'_>,
    rows: Range<usize>,
    cols: Range<usize>,
) {
    // SAFETY: forwarded.
    unsafe { block::<F>(Path::Portable, g, rows, cols) }
}

/// AVX2 path. Safety: the rectangle belongs to the caller; the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn run_avx2<F: IntBlocks>(g: &IGemm<'_>, rows: Range<usize>, cols: Range<usize>) {
    // SAFETY: forwarded.
    unsafe { block::<F>(Path::Avx2, g, rows, cols) }
}

/// AVX-512 VNNI path. Safety: the rectangle belongs to the caller; the CPU has AVX-512
/// F/BW/DQ/VL/VNNI, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
pub(crate) unsafe fn run_vnni<F: IntBlocks>(g: &IGemm<'_>, rows: Range<usize>, cols: Range<usize>) {
    // SAFETY: forwarded.
    unsafe { block::<F>(Path::Vnni, g, rows, cols) }
}
