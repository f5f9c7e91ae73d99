//! The 8-bit activation mode (opt-in): x rows quantized to 8 bits per chunk of 32, weights
//! kept in their blocks, integer dot products, as llama.cpp multiplies on CPUs.
//!
//! An x chunk of 32 becomes `qx = round_ties_even(x * 127 / amax)` (i8, |qx| <= 127) with the
//! scale `dx = amax / 127`, its two half sums `X_h = Σ qx_i` over `i = 16h..16h+16`, and
//! `dxX = dx * float(X_0 + X_1)` ([`Q8Rows`]). A weight chunk is unsigned integers `q` with
//! a per-format offset `o` and scales: value `s_h * (q - o) + m` (`h` the half of the chunk:
//! only Q6_K has a scale per 16, [`IntBlocks::SPLIT`]; `m` the additive min of Q4_1, Q5_1,
//! Q4_K, Q5_K). Q8_0's signed values are stored as `q = w + 128` with `o = 128`.
//!
//! The one order (batch invariance, DESIGN.md §5): an output element keeps one f32
//! accumulator `a`; for each chunk in increasing k, with `I_h = Σ_{i in half h} (q_i - o)·qx_i`
//! (exact in i32):
//!   `a = fma(s_0·dx, float(I_0 + I_1), a)`, or for Q6_K
//!   `a = fma(s_0·dx, float(I_0), a); a = fma(s_1·dx, float(I_1), a)`;
//!   then, for formats with a min, `a = fma(m, dxX, a)`;
//! and the element is `a` (+ bias). Integer sums are exact in any order, so every
//! instruction set may add the products as it likes (VNNI `vpdpbusd` with a horizontal
//! reduction or over a transposed panel, AVX2 `vpmaddubsw` + `vpmaddwd`, plain Rust) and
//! gets the same `I_h`; the float steps are the same on every path that fuses (x86 always;
//! portable where the target has FMA). The quantization of a row depends on that row only.
//! Unlike the exact mode there are no eight lanes: a chunk's whole integer sum is one term,
//! so a 16-lane register can hold 16 columns' accumulators (`int8_vnni.rs`).
//!
//! Cost against the exact mode: no float decoding of the weights, a quarter of the
//! activation bytes and 64 multiply-adds per VNNI instruction, for an error that
//! `tests/quant.rs` bounds against float32.

use super::blocks::{self, Blocks, CHUNK};
#[cfg(target_arch = "x86_64")]
use super::int8_vnni;
#[cfg(target_arch = "x86_64")]
use super::prefetch::Prefetch;
use crate::lanes::madd;
use crate::matmul::OutPtr;
use std::ops::Range;

/// Quantized x rows: per chunk of 32, the i8 values, the scale and the sums.
#[derive(Default)]
pub(crate) struct Q8Rows {
    pub qs: Vec<i8>,    // [T, K]
    pub d: Vec<f32>,    // [T, K / 32]: dx
    pub half: Vec<i32>, // [T, K / 32, 2]: X_0, X_1
    pub dxx: Vec<f32>,  // [T, K / 32]: dx * float(X_0 + X_1)
}

impl Q8Rows {
    /// Quantizes `x` ([t, k], k a multiple of 32) into `self`, reusing its buffers.
    pub(crate) fn quantize(&mut self, x: &[f32], k: usize) {
        let chunks = x.len() / CHUNK;
        debug_assert!(k.is_multiple_of(CHUNK) && x.len().is_multiple_of(k));
        self.qs.resize(x.len(), 0);
        self.d.resize(chunks, 0.0);
        self.half.resize(chunks * 2, 0);
        self.dxx.resize(chunks, 0.0);
        let xs = x.as_chunks::<CHUNK>().0;
        let qs = self.qs.as_chunks_mut::<CHUNK>().0;
        let half = self.half.as_chunks_mut::<2>().0;
        for ((((x, q), d), h), dxx) in xs
            .iter()
            .zip(qs)
            .zip(&mut self.d)
            .zip(half)
            .zip(&mut self.dxx)
        {
            *d = quantize_chunk(x, q, h);
            *dxx = *d * (h[0] + h[1]) as f32;
        }
    }

    /// Index of chunk `ch` of row `r` (rows of `chunks` chunks).
    #[inline(always)]
    pub(crate) fn at(r: usize, chunks: usize, ch: usize) -> usize {
        r * chunks + ch
    }
}

/// One chunk: returns `dx`, writes `qx` and the half sums.
#[inline(always)]
fn quantize_chunk(x: &[f32; CHUNK], q: &mut [i8; CHUNK], half: &mut [i32; 2]) -> f32 {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    // Round half to even by the 1.5 * 2^23 trick (exact for |v * id| <= 127 < 2^22):
    // `round_ties_even` itself is a libm call on x86 targets without SSE4.1.
    const MAGIC: f32 = 12_582_912.0;
    for (q, &v) in q.iter_mut().zip(x) {
        *q = ((v * id + MAGIC) - MAGIC).clamp(-127.0, 127.0) as i8;
    }
    for (h, s) in half.iter_mut().enumerate() {
        *s = q[16 * h..16 * h + 16].iter().map(|&v| i32::from(v)).sum();
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
    /// Whether the two halves of a chunk have their own scales (Q6_K).
    const SPLIT: bool = false;
    /// How a 32-element block lays out its integers, where a panel can gather them
    /// straight from the blocks (`int8_vnni.rs`); `None` for the other formats.
    const LAYOUT: Option<Layout> = None;
    /// The integers of chunk `c` of block `b`, and its scales (each as the reference
    /// dequantizer computes it, e.g. Q4_K's `d * sc` and `-(dmin * m)`).
    fn ints(b: &[u8], c: usize, q: &mut [u8; CHUNK]) -> Scales;

    /// [`IntBlocks::ints`] with AVX2 and F16C (the same bytes, one 32-byte store).
    /// Safety: the caller runs with AVX2 and F16C; `b` is a whole block.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn ints_avx2(b: &[u8], c: usize, q: &mut [u8; CHUNK]) -> Scales {
        Self::ints(b, c, q)
    }
}

/// The integers of a 32-element block whose f16 scale is at byte 0 (and min at byte 2).
#[derive(Clone, Copy)]
pub(crate) enum Layout {
    /// 16 bytes of nibbles at this offset: low nibbles are elements 0..16, high 16..32.
    Nibbles(usize),
    /// 32 signed bytes at this offset, stored with 128 added.
    Bytes(usize),
}

/// The one float step of a chunk (module header) for one element, `fma` being `madd` on
/// the portable path and a fused multiply-add on x86.
#[inline(always)]
pub(crate) fn chunk_step<F: IntBlocks, const FUSE: bool>(
    a: f32,
    sc: &Scales,
    dx: f32,
    ints: [i32; 2],
    dxx: f32,
) -> f32 {
    let fma = |a: f32, b: f32, c: f32| if FUSE { a.mul_add(b, c) } else { madd(a, b, c) };
    let mut a = a;
    if F::SPLIT {
        a = fma(sc.s[0] * dx, ints[0] as f32, a);
        a = fma(sc.s[1] * dx, ints[1] as f32, a);
    } else {
        a = fma(sc.s[0] * dx, (ints[0] + ints[1]) as f32, a);
    }
    if F::HAS_MIN {
        a = fma(sc.m, dxx, a);
    }
    a
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

/// The f16 at byte `i` of `b` through F16C (exact, the same value as [`f16_at`]).
/// Safety: F16C.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn f16c_at(b: &[u8], i: usize) -> f32 {
    use std::arch::x86_64::*;
    let h = u16::from_le_bytes([b[i], b[i + 1]]);
    unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h)))) }
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
    const LAYOUT: Option<Layout> = Some(Layout::Bytes(2));
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
            let d = f16c_at(b, 0);
            Scales { s: [d, d], m: 0.0 }
        }
    }
}

impl IntBlocks for blocks::Q4_0 {
    const OFFSET: i32 = 8;
    const HAS_MIN: bool = false;
    const LAYOUT: Option<Layout> = Some(Layout::Nibbles(2));
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
        unsafe {
            store32(q, nibbles_avx2(b.as_ptr().add(2)));
            let d = f16c_at(b, 0);
            Scales { s: [d, d], m: 0.0 }
        }
    }
}

impl IntBlocks for blocks::Q4_1 {
    const OFFSET: i32 = 0;
    const HAS_MIN: bool = true;
    const LAYOUT: Option<Layout> = Some(Layout::Nibbles(4));
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
        unsafe {
            store32(q, nibbles_avx2(b.as_ptr().add(4)));
            let d = f16c_at(b, 0);
            Scales {
                s: [d, d],
                m: f16c_at(b, 2),
            }
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
            let d = f16c_at(b, 0);
            Scales { s: [d, d], m: 0.0 }
        }
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
            let d = f16c_at(b, 0);
            Scales {
                s: [d, d],
                m: f16c_at(b, 2),
            }
        }
    }
}

/// Q4_K / Q5_K scales of sub-block `c`: `d * sc` and `-(dmin * mn)`, from `d` and `dmin`.
#[inline(always)]
fn k4_scales_with(b: &[u8], c: usize, d: f32, dmin: f32) -> Scales {
    let (sc, mn) = blocks::k4_scale_min(b[4..16].try_into().expect("12 bytes"), c);
    let s = d * f32::from(sc);
    Scales {
        s: [s, s],
        m: -(dmin * f32::from(mn)),
    }
}

/// [`k4_scales_with`] reading `d` and `dmin` in software.
#[inline(always)]
fn k4_scales(b: &[u8], c: usize) -> Scales {
    k4_scales_with(b, c, f16_at(b, 0), f16_at(b, 2))
}

/// The 32 low (c even) or high (c odd) nibbles of the 32 bytes at `p` (Q4_K, Q5_K, Q6_K).
/// Safety: AVX2; 32 bytes readable.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn nibbles32_avx2(p: *const u8, high: bool) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    unsafe {
        let v = _mm256_loadu_si256(p as *const __m256i);
        let v = if high { _mm256_srli_epi16::<4>(v) } else { v };
        _mm256_and_si256(v, _mm256_set1_epi8(0x0F))
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
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn ints_avx2(b: &[u8], c: usize, q: &mut [u8; CHUNK]) -> Scales {
        let b = &b[..144];
        unsafe {
            store32(
                q,
                nibbles32_avx2(b.as_ptr().add(16 + 32 * (c / 2)), c % 2 == 1),
            );
            k4_scales_with(b, c, f16c_at(b, 0), f16c_at(b, 2))
        }
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
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn ints_avx2(b: &[u8], c: usize, q: &mut [u8; CHUNK]) -> Scales {
        use std::arch::x86_64::*;
        let b = &b[..176];
        unsafe {
            let lo = nibbles32_avx2(b.as_ptr().add(48 + 32 * (c / 2)), c % 2 == 1);
            let qh = _mm256_loadu_si256(b.as_ptr().add(16) as *const __m256i);
            let bit = _mm256_set1_epi8((1u8 << c) as i8);
            let set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
            store32(
                q,
                _mm256_or_si256(lo, _mm256_and_si256(set, _mm256_set1_epi8(0x10))),
            );
            k4_scales_with(b, c, f16c_at(b, 0), f16c_at(b, 2))
        }
    }
}

/// Q6_K's two scales of chunk `c`, `d` given.
#[inline(always)]
fn k6_scales(b: &[u8], c: usize, d: f32) -> Scales {
    let (h, g) = (c / 4, c % 4);
    Scales {
        s: [
            d * f32::from(b[192 + 8 * h + 2 * g] as i8),
            d * f32::from(b[192 + 8 * h + 2 * g + 1] as i8),
        ],
        m: 0.0,
    }
}

impl IntBlocks for blocks::Q6K {
    const OFFSET: i32 = 32;
    const HAS_MIN: bool = false;
    const SPLIT: bool = true;
    #[inline(always)]
    fn ints(b: &[u8], c: usize, q: &mut [u8; CHUNK]) -> Scales {
        let (h, g) = (c / 4, c % 4);
        let ql = &b[64 * h + 32 * (g % 2)..][..32];
        let qh = &b[128 + 32 * h..][..32];
        let shift = 4 * (g / 2);
        for ((q, &l), &hb) in q.iter_mut().zip(ql).zip(qh) {
            *q = ((l >> shift) & 0x0F) | (((hb >> (2 * g)) & 0x03) << 4);
        }
        k6_scales(b, c, f16_at(b, 208))
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn ints_avx2(b: &[u8], c: usize, q: &mut [u8; CHUNK]) -> Scales {
        use std::arch::x86_64::*;
        let b = &b[..210];
        let (h, g) = (c / 4, c % 4);
        unsafe {
            let lo = nibbles32_avx2(b.as_ptr().add(64 * h + 32 * (g % 2)), g >= 2);
            let qh = _mm256_loadu_si256(b.as_ptr().add(128 + 32 * h) as *const __m256i);
            // Bits 2g, 2g+1 of each byte to bits 4, 5: a 16-bit shift, then a byte mask
            // (bits crossing from the neighbouring byte land outside the mask).
            let hi = _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g as i32));
            let hi = _mm256_slli_epi16::<4>(_mm256_and_si256(hi, _mm256_set1_epi8(3)));
            store32(q, _mm256_or_si256(lo, hi));
            k6_scales(b, c, f16c_at(b, 208))
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
    pub(crate) fn w_row<F: Blocks>(&self, col: usize) -> &[u8] {
        let rb = self.k / F::BLOCK * F::BYTES;
        &self.w[col * rb..(col + 1) * rb]
    }

    /// Safety: in range, and no other task writes this element.
    #[inline(always)]
    pub(crate) unsafe fn store(&self, row: usize, col: usize, dot: f32) {
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

/// [`ints_of`] through the AVX2 unpackers. Safety: the caller runs with AVX2 and F16C.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn ints_of_avx2<F: IntBlocks, const N: usize>(
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
    let chunks = g.k / CHUNK;
    let wr: [&[u8]; NR] = std::array::from_fn(|j| g.w_row::<F>(c + j));
    let mut acc = [[0.0f32; NR]; MR];
    let mut q = [[0u8; CHUNK]; NR];
    let mut sc = [Scales::default(); NR];
    for ch in 0..chunks {
        ints_of::<F, NR>(&wr, ch, &mut q, &mut sc);
        for i in 0..MR {
            let at = Q8Rows::at(r + i, chunks, ch);
            let qx: &[i8; CHUNK] = g.x.qs[at * CHUNK..][..CHUNK].try_into().unwrap();
            let xh = [g.x.half[2 * at], g.x.half[2 * at + 1]];
            for j in 0..NR {
                let mut p = [0i32; 2];
                for e in 0..CHUNK {
                    p[e / 16] += i32::from(q[j][e]) * i32::from(qx[e]);
                }
                let ints = [p[0] - F::OFFSET * xh[0], p[1] - F::OFFSET * xh[1]];
                acc[i][j] = chunk_step::<F, false>(acc[i][j], &sc[j], g.x.d[at], ints, g.x.dxx[at]);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, &a) in row.iter().enumerate() {
            // SAFETY: the caller owns the rectangle.
            unsafe { g.store(r + i, c + j, a) };
        }
    }
}

/// The AVX2 tile: `vpmaddubsw` (u8 x i8 pairs; no pair exceeds i16 since q <= 63, or
/// |w| <= 128 for Q8_0 through the sign trick) and `vpmaddwd` make eight partial sums,
/// four per half, added exactly; then the scalar chunk step, fused.
/// Safety: the rectangle is the caller's; AVX2, FMA and F16C are enabled in the caller.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)] // row i indexes x, the accumulators and the output
pub(crate) unsafe fn tile_avx2<F: IntBlocks, const MR: usize, const NR: usize>(
    g: &IGemm<'_>,
    r: usize,
    c: usize,
) {
    use std::arch::x86_64::*;
    /// The sum of the four i32 lanes of `v`.
    #[inline(always)]
    unsafe fn hsum4(v: __m128i) -> i32 {
        unsafe {
            let t = _mm_add_epi32(v, _mm_shuffle_epi32::<0b01_00_11_10>(v));
            let u = _mm_add_epi32(t, _mm_shuffle_epi32::<0b10_11_00_01>(t));
            _mm_cvtsi128_si32(u)
        }
    }
    let k = g.k;
    let chunks = k / CHUNK;
    let wr: [&[u8]; NR] = std::array::from_fn(|j| g.w_row::<F>(c + j));
    let mut q = [[0u8; CHUNK]; NR];
    let mut sc = [Scales::default(); NR];
    let mut acc = [[0.0f32; NR]; MR];
    // SAFETY (whole body): loads read 32 bytes inside a chunk.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let ahead = Prefetch::new::<F>(wr[0].as_ptr(), NR, k);
        for ch in 0..chunks {
            ahead.slice(ch, chunks);
            ints_of_avx2::<F, NR>(&wr, ch, &mut q, &mut sc);
            for i in 0..MR {
                let at = Q8Rows::at(r + i, chunks, ch);
                let qx = _mm256_loadu_si256(g.x.qs.as_ptr().add(at * CHUNK) as *const __m256i);
                let xh = [g.x.half[2 * at], g.x.half[2 * at + 1]];
                for j in 0..NR {
                    let qw = _mm256_loadu_si256(q[j].as_ptr() as *const __m256i);
                    let p = if F::OFFSET == 128 {
                        // Q8_0: back to the signed w, then |w| x sign(qx, w).
                        let w = _mm256_xor_si256(qw, _mm256_set1_epi8(-128));
                        let p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(qx, w));
                        _mm256_madd_epi16(p, ones)
                    } else {
                        _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qx), ones)
                    };
                    let p0 = hsum4(_mm256_castsi256_si128(p));
                    let p1 = hsum4(_mm256_extracti128_si256::<1>(p));
                    let ints = if F::OFFSET == 128 {
                        [p0, p1]
                    } else {
                        [p0 - F::OFFSET * xh[0], p1 - F::OFFSET * xh[1]]
                    };
                    acc[i][j] =
                        chunk_step::<F, true>(acc[i][j], &sc[j], g.x.d[at], ints, g.x.dxx[at]);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, &a) in row.iter().enumerate() {
                g.store(r + i, c + j, a);
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
}

/// Rows × cols: tiles of 4 x 4, and single columns.
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
                    while c < cols.end {
                        tile_portable::<F, MR, 1>(g, r, c);
                        c += 1;
                    }
                }
                #[cfg(target_arch = "x86_64")]
                Path::Avx2 => {
                    while cols.end - c >= 4 {
                        tile_avx2::<F, MR, 4>(g, r, c);
                        c += 4;
                    }
                    while c < cols.end {
                        tile_avx2::<F, MR, 1>(g, r, c);
                        c += 1;
                    }
                }
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

/// AVX2 path. Safety: the rectangle belongs to the caller; the CPU has AVX2, FMA, F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn run_avx2<F: IntBlocks>(g: &IGemm<'_>, rows: Range<usize>, cols: Range<usize>) {
    // SAFETY: forwarded.
    unsafe { block::<F>(Path::Avx2, g, rows, cols) }
}

/// AVX-512 VNNI path (`int8_vnni.rs`). Safety: the rectangle belongs to the caller; the
/// CPU has AVX-512 F/BW/DQ/VL/VNNI, AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn run_vnni<F: IntBlocks>(g: &IGemm<'_>, rows: Range<usize>, cols: Range<usize>) {
    // SAFETY: forwarded.
    unsafe { int8_vnni::run::<F>(g, rows, cols) }
}
