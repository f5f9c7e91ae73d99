//! AVX-512 decoders of the same 32-element chunk of two W rows at once, for the exact mode's
//! one-row GEMV: register `g` holds `[row a: elements 8g..8g+8 | row b: elements 8g..8g+8]`.
//!
//! Why: a decode step multiplies one x row by every W row, so for each weight the kernel
//! widens, converts and scales once and multiplies once; on AVX2 the decoding is three to
//! four times the work of the multiply-add. Sixteen lanes over two rows halve the
//! instructions of both while keeping the crate's order (`lanes.rs`): each 256-bit half is
//! exactly the AVX2 kernel's accumulator for its row (the layout `tile512.rs` uses for
//! panels), and every lane computes the AVX2 decoder's operations (`avx2.rs`) in the same
//! order, so the values, and the dot products, are the same bits (tested with every path in
//! `tests/quant.rs`).
//!
//! Q8_0, Q4_0, Q4_1, Q5_0, Q4_K and Q6_K (the formats the default model and the common
//! Q4_K_M files are made of) decode both rows as integers and convert and scale once; Q5_1
//! and Q5_K join the two rows' AVX2 registers (same bits, less gain).

#![cfg(target_arch = "x86_64")]

use super::avx2::{Avx2Blocks, h2f};
use super::blocks;
use std::arch::x86_64::*;

/// A block format with a two-row AVX-512 chunk decoder.
pub(crate) trait Pair512: Avx2Blocks {
    /// Decodes chunk `c` of the blocks at `a` and `b` (one per W row, `BYTES` readable each).
    /// Safety: the caller runs with AVX-512 F/BW/DQ/VL, AVX2, FMA and F16C.
    #[inline(always)]
    unsafe fn decode16x4(a: *const u8, b: *const u8, c: usize) -> [__m512; 4] {
        unsafe {
            let (x, y) = (Self::decode8x4(a, c), Self::decode8x4(b, c));
            [
                join(x[0], y[0]),
                join(x[1], y[1]),
                join(x[2], y[2]),
                join(x[3], y[3]),
            ]
        }
    }
}

/// `[lo | hi]`.
#[inline(always)]
unsafe fn join(lo: __m256, hi: __m256) -> __m512 {
    unsafe { _mm512_insertf32x8::<1>(_mm512_castps256_ps512(lo), hi) }
}

/// `[s(a) x 8 | s(b) x 8]` for the f16 at offset `off` of blocks `a` and `b` (F16C, exact).
#[inline(always)]
unsafe fn scale2(a: *const u8, b: *const u8, off: usize) -> __m512 {
    unsafe {
        let ha = std::ptr::read_unaligned(a.add(off) as *const u16);
        let hb = std::ptr::read_unaligned(b.add(off) as *const u16);
        let both = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(ha) | (i32::from(hb) << 16)));
        let idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(both))
    }
}

/// `[a[0..8] | b[0..8]]` as 16 bytes.
#[inline(always)]
unsafe fn bytes8x2(a: *const u8, b: *const u8) -> __m128i {
    unsafe {
        _mm_unpacklo_epi64(
            _mm_loadl_epi64(a as *const __m128i),
            _mm_loadl_epi64(b as *const __m128i),
        )
    }
}

/// Both rows' nibbles of 16 bytes, as [`super::avx2`]'s `nibbles` gives one row's: groups
/// low 0-7, low 8-15, high 0-7, high 8-15, each `[row a | row b]` as i32.
#[inline(always)]
unsafe fn nibbles2(a: *const u8, b: *const u8) -> [__m512i; 4] {
    unsafe {
        let lo = _mm512_cvtepu8_epi32(bytes8x2(a, b));
        let hi = _mm512_cvtepu8_epi32(bytes8x2(a.add(8), b.add(8)));
        let m = _mm512_set1_epi32(0x0F);
        [
            _mm512_and_si512(lo, m),
            _mm512_and_si512(hi, m),
            _mm512_srli_epi32::<4>(lo),
            _mm512_srli_epi32::<4>(hi),
        ]
    }
}

#[inline(always)]
unsafe fn cvt(v: __m512i) -> __m512 {
    unsafe { _mm512_cvtepi32_ps(v) }
}

/// Q8_0 group `g` of both blocks as i32.
#[inline(always)]
unsafe fn q8_group(a: *const u8, b: *const u8, g: usize) -> __m512i {
    unsafe { _mm512_cvtepi8_epi32(bytes8x2(a.add(2 + 8 * g), b.add(2 + 8 * g))) }
}

impl Pair512 for blocks::Q8_0 {
    #[inline(always)]
    unsafe fn decode16x4(a: *const u8, b: *const u8, _: usize) -> [__m512; 4] {
        unsafe {
            let d = scale2(a, b, 0);
            [
                _mm512_mul_ps(cvt(q8_group(a, b, 0)), d),
                _mm512_mul_ps(cvt(q8_group(a, b, 1)), d),
                _mm512_mul_ps(cvt(q8_group(a, b, 2)), d),
                _mm512_mul_ps(cvt(q8_group(a, b, 3)), d),
            ]
        }
    }
}

impl Pair512 for blocks::Q4_0 {
    #[inline(always)]
    unsafe fn decode16x4(a: *const u8, b: *const u8, _: usize) -> [__m512; 4] {
        unsafe {
            let d = scale2(a, b, 0);
            let q = nibbles2(a.add(2), b.add(2));
            let eight = _mm512_set1_epi32(8);
            [
                _mm512_mul_ps(d, cvt(_mm512_sub_epi32(q[0], eight))),
                _mm512_mul_ps(d, cvt(_mm512_sub_epi32(q[1], eight))),
                _mm512_mul_ps(d, cvt(_mm512_sub_epi32(q[2], eight))),
                _mm512_mul_ps(d, cvt(_mm512_sub_epi32(q[3], eight))),
            ]
        }
    }
}

impl Pair512 for blocks::Q4_1 {
    #[inline(always)]
    unsafe fn decode16x4(a: *const u8, b: *const u8, _: usize) -> [__m512; 4] {
        unsafe {
            let (d, m) = (scale2(a, b, 0), scale2(a, b, 2));
            let q = nibbles2(a.add(4), b.add(4));
            [
                _mm512_add_ps(_mm512_mul_ps(d, cvt(q[0])), m),
                _mm512_add_ps(_mm512_mul_ps(d, cvt(q[1])), m),
                _mm512_add_ps(_mm512_mul_ps(d, cvt(q[2])), m),
                _mm512_add_ps(_mm512_mul_ps(d, cvt(q[3])), m),
            ]
        }
    }
}

/// Q4_K sub-block `c` of one block: `(d * sc, dmin * m)`, each product rounded as the
/// reference (and `avx2.rs`) rounds it.
#[inline(always)]
unsafe fn k4_scales1(p: *const u8, c: usize) -> (f32, f32) {
    unsafe {
        let s: &[u8; 12] = &*(p.add(4) as *const [u8; 12]);
        let (sc, mn) = blocks::k4_scale_min(s, c);
        (h2f(p) * f32::from(sc), h2f(p.add(2)) * f32::from(mn))
    }
}

/// Q4_K group `g` of both blocks' sub-block (quants at `off`, nibble `shift`), scaled.
#[inline(always)]
unsafe fn k4_group(
    a: *const u8,
    b: *const u8,
    off: usize,
    shift: __m128i,
    (ds, ms): (__m512, __m512),
) -> __m512 {
    unsafe {
        let q = _mm512_cvtepu8_epi32(bytes8x2(a.add(off), b.add(off)));
        let q = _mm512_and_si512(_mm512_srl_epi32(q, shift), _mm512_set1_epi32(0x0F));
        _mm512_sub_ps(_mm512_mul_ps(ds, cvt(q)), ms)
    }
}

impl Pair512 for blocks::Q4K {
    #[inline(always)]
    unsafe fn decode16x4(a: *const u8, b: *const u8, c: usize) -> [__m512; 4] {
        unsafe {
            let ((dsa, msa), (dsb, msb)) = (k4_scales1(a, c), k4_scales1(b, c));
            let ds = join(_mm256_set1_ps(dsa), _mm256_set1_ps(dsb));
            let ms = join(_mm256_set1_ps(msa), _mm256_set1_ps(msb));
            let off = 16 + 32 * (c / 2);
            let shift = _mm_cvtsi32_si128(4 * (c % 2) as i32);
            [
                k4_group(a, b, off, shift, (ds, ms)),
                k4_group(a, b, off + 8, shift, (ds, ms)),
                k4_group(a, b, off + 16, shift, (ds, ms)),
                k4_group(a, b, off + 24, shift, (ds, ms)),
            ]
        }
    }
}

/// Bit 4 of each element of group `g` of both rows, from their 32-bit `qh` (Q5_0 / Q5_1),
/// as `avx2.rs`'s `fifth_bits` gives one row's.
#[inline(always)]
unsafe fn fifth_bits2(qa: u32, qb: u32, g: usize) -> __m512i {
    unsafe {
        let byte = |q: u32| ((q >> (8 * g)) & 0xFF) as i32;
        let v = _mm512_inserti64x4::<1>(_mm512_set1_epi32(byte(qa)), _mm256_set1_epi32(byte(qb)));
        let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
        let bit = _mm512_and_si512(_mm512_srlv_epi32(v, lane), _mm512_set1_epi32(1));
        _mm512_slli_epi32::<4>(bit)
    }
}

/// One Q5_0 group of both rows: `d * float((nibble | fifth bit) - 16)`.
#[inline(always)]
unsafe fn q5_0_group(q: __m512i, qa: u32, qb: u32, g: usize, d: __m512) -> __m512 {
    unsafe {
        let v = _mm512_or_si512(q, fifth_bits2(qa, qb, g));
        _mm512_mul_ps(d, cvt(_mm512_sub_epi32(v, _mm512_set1_epi32(16))))
    }
}

impl Pair512 for blocks::Q5_0 {
    #[inline(always)]
    unsafe fn decode16x4(a: *const u8, b: *const u8, _: usize) -> [__m512; 4] {
        unsafe {
            let d = scale2(a, b, 0);
            let qa = std::ptr::read_unaligned(a.add(2) as *const u32);
            let qb = std::ptr::read_unaligned(b.add(2) as *const u32);
            let q = nibbles2(a.add(6), b.add(6));
            [
                q5_0_group(q[0], qa, qb, 0, d),
                q5_0_group(q[1], qa, qb, 1, d),
                q5_0_group(q[2], qa, qb, 2, d),
                q5_0_group(q[3], qa, qb, 3, d),
            ]
        }
    }
}
impl Pair512 for blocks::Q5_1 {}
impl Pair512 for blocks::Q5K {}
/// Q6_K's two sub-block scales for chunk `c` of one block: `(d * sc[0], d * sc[1])`, each
/// product rounded as `avx2.rs` rounds it.
#[inline(always)]
unsafe fn k6_scales1(p: *const u8, c: usize) -> (f32, f32) {
    unsafe {
        let d = h2f(p.add(208));
        let sc = p.add(192 + 8 * (c / 4) + 2 * (c % 4));
        (d * f32::from(*sc as i8), d * f32::from(*sc.add(1) as i8))
    }
}

/// One Q6_K group of both rows: low four bits at `ql`, high two at `qh` (offsets into each
/// block), `scale * float(q - 32)`.
#[inline(always)]
unsafe fn k6_group(
    (a, b): (*const u8, *const u8),
    (ql, qh): (usize, usize),
    (shift, hshift): (__m128i, __m128i),
    scale: __m512,
) -> __m512 {
    unsafe {
        let lo = _mm512_cvtepu8_epi32(bytes8x2(a.add(ql), b.add(ql)));
        let lo = _mm512_and_si512(_mm512_srl_epi32(lo, shift), _mm512_set1_epi32(0x0F));
        let hi = _mm512_cvtepu8_epi32(bytes8x2(a.add(qh), b.add(qh)));
        let hi = _mm512_and_si512(_mm512_srl_epi32(hi, hshift), _mm512_set1_epi32(3));
        let q = _mm512_or_si512(lo, _mm512_slli_epi32::<4>(hi));
        _mm512_mul_ps(scale, cvt(_mm512_sub_epi32(q, _mm512_set1_epi32(32))))
    }
}

impl Pair512 for blocks::Q6K {
    #[inline(always)]
    unsafe fn decode16x4(a: *const u8, b: *const u8, c: usize) -> [__m512; 4] {
        unsafe {
            let (h, g4) = (c / 4, c % 4);
            let ((s0a, s1a), (s0b, s1b)) = (k6_scales1(a, c), k6_scales1(b, c));
            let s0 = join(_mm256_set1_ps(s0a), _mm256_set1_ps(s0b));
            let s1 = join(_mm256_set1_ps(s1a), _mm256_set1_ps(s1b));
            let ql = 64 * h + 32 * (g4 % 2);
            let qh = 128 + 32 * h;
            let shifts = (
                _mm_cvtsi32_si128(4 * (g4 / 2) as i32),
                _mm_cvtsi32_si128(2 * g4 as i32),
            );
            [
                k6_group((a, b), (ql, qh), shifts, s0),
                k6_group((a, b), (ql + 8, qh + 8), shifts, s0),
                k6_group((a, b), (ql + 16, qh + 16), shifts, s1),
                k6_group((a, b), (ql + 24, qh + 24), shifts, s1),
            ]
        }
    }
}
