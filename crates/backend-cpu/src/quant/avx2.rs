//! AVX2 decoders of a 32-element chunk of GGUF blocks into four registers of eight f32
//! (elements 8g..8g+8 in register g), for the exact mode's small-T tiles on x86: the same
//! arithmetic as `blocks.rs` (and the reference dequantizer), bit for bit, without going
//! through memory. Integers are widened with `vpmovzxbd`, shifted and masked in 32-bit
//! lanes, converted with `vcvtdq2ps`, then scaled with the reference's unfused products and
//! sums; f16 scales go through F16C (exact).

#![cfg(target_arch = "x86_64")]

// No closures around intrinsics here: a closure does not inherit the caller's target
// features, so `std::array::from_fn(|g| ...)` would call each intrinsic out of line.

use super::blocks::{self, Blocks};
use std::arch::x86_64::*;

/// `[e(0), e(1), e(2), e(3)]`, written out (see the note above).
macro_rules! groups {
    (|$g:ident| $e:expr) => {
        [
            {
                let $g = 0;
                $e
            },
            {
                let $g = 1;
                $e
            },
            {
                let $g = 2;
                $e
            },
            {
                let $g = 3;
                $e
            },
        ]
    };
}

/// A block format with an AVX2 chunk decoder.
pub(crate) trait Avx2Blocks: Blocks {
    /// Decodes chunk `c` of the block at `b` (`BYTES` readable).
    /// Safety: the caller runs with AVX2, FMA and F16C.
    unsafe fn decode8x4(b: *const u8, c: usize) -> [__m256; 4];
}

/// f16 at `p` to f32 (F16C, exact). Safety: 2 bytes readable; F16C enabled.
#[inline(always)]
pub(super) unsafe fn h2f(p: *const u8) -> f32 {
    unsafe {
        let bits = std::ptr::read_unaligned(p as *const u16);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
    }
}

/// 8 bytes at `p` zero-extended to eight i32.
#[inline(always)]
unsafe fn u8x8(p: *const u8) -> __m256i {
    unsafe { _mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i)) }
}

/// The nibbles of 16 bytes as four groups of eight i32: low nibbles of bytes 0-7, 8-15,
/// then high nibbles of bytes 0-7, 8-15 (elements 0..32 of Q4_0 / Q4_1 / Q5_x).
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> [__m256i; 4] {
    unsafe {
        let lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i));
        let hi = _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.add(8) as *const __m128i));
        let m = _mm256_set1_epi32(0x0F);
        [
            _mm256_and_si256(lo, m),
            _mm256_and_si256(hi, m),
            _mm256_srli_epi32::<4>(lo),
            _mm256_srli_epi32::<4>(hi),
        ]
    }
}

/// Bit 4 of each element of group `g` from the 32-bit `qh` (Q5_0 / Q5_1).
#[inline(always)]
unsafe fn fifth_bits(qh: u32, g: usize) -> __m256i {
    unsafe {
        let v = _mm256_set1_epi32(((qh >> (8 * g)) & 0xFF) as i32);
        let bit = _mm256_and_si256(
            _mm256_srlv_epi32(v, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
            _mm256_set1_epi32(1),
        );
        _mm256_slli_epi32::<4>(bit)
    }
}

#[inline(always)]
unsafe fn cvt(v: __m256i) -> __m256 {
    unsafe { _mm256_cvtepi32_ps(v) }
}

impl Avx2Blocks for blocks::Q8_0 {
    #[inline(always)]
    unsafe fn decode8x4(b: *const u8, _: usize) -> [__m256; 4] {
        unsafe {
            let d = _mm256_set1_ps(h2f(b));
            groups!(|g| {
                let q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(b.add(2 + 8 * g) as *const __m128i));
                _mm256_mul_ps(cvt(q), d)
            })
        }
    }
}

impl Avx2Blocks for blocks::Q4_0 {
    #[inline(always)]
    unsafe fn decode8x4(b: *const u8, _: usize) -> [__m256; 4] {
        unsafe {
            let d = _mm256_set1_ps(h2f(b));
            let q = nibbles(b.add(2));
            let eight = _mm256_set1_epi32(8);
            groups!(|g| _mm256_mul_ps(d, cvt(_mm256_sub_epi32(q[g], eight))))
        }
    }
}

impl Avx2Blocks for blocks::Q4_1 {
    #[inline(always)]
    unsafe fn decode8x4(b: *const u8, _: usize) -> [__m256; 4] {
        unsafe {
            let (d, m) = (_mm256_set1_ps(h2f(b)), _mm256_set1_ps(h2f(b.add(2))));
            let q = nibbles(b.add(4));
            groups!(|g| _mm256_add_ps(_mm256_mul_ps(d, cvt(q[g])), m))
        }
    }
}

impl Avx2Blocks for blocks::Q5_0 {
    #[inline(always)]
    unsafe fn decode8x4(b: *const u8, _: usize) -> [__m256; 4] {
        unsafe {
            let d = _mm256_set1_ps(h2f(b));
            let qh = std::ptr::read_unaligned(b.add(2) as *const u32);
            let q = nibbles(b.add(6));
            let sixteen = _mm256_set1_epi32(16);
            groups!(|g| {
                let v = _mm256_or_si256(q[g], fifth_bits(qh, g));
                _mm256_mul_ps(d, cvt(_mm256_sub_epi32(v, sixteen)))
            })
        }
    }
}

impl Avx2Blocks for blocks::Q5_1 {
    #[inline(always)]
    unsafe fn decode8x4(b: *const u8, _: usize) -> [__m256; 4] {
        unsafe {
            let (d, m) = (_mm256_set1_ps(h2f(b)), _mm256_set1_ps(h2f(b.add(2))));
            let qh = std::ptr::read_unaligned(b.add(4) as *const u32);
            let q = nibbles(b.add(8));
            groups!(|g| {
                let v = _mm256_or_si256(q[g], fifth_bits(qh, g));
                _mm256_add_ps(_mm256_mul_ps(d, cvt(v)), m)
            })
        }
    }
}

/// Q4_K / Q5_K sub-block `c`: `(d * sc, dmin * m)` as the reference computes them.
#[inline(always)]
unsafe fn k4_scales(b: *const u8, c: usize) -> (__m256, __m256) {
    unsafe {
        let s: &[u8; 12] = &*(b.add(4) as *const [u8; 12]);
        let (sc, mn) = blocks::k4_scale_min(s, c);
        let ds = h2f(b) * f32::from(sc);
        let ms = h2f(b.add(2)) * f32::from(mn);
        (_mm256_set1_ps(ds), _mm256_set1_ps(ms))
    }
}

impl Avx2Blocks for blocks::Q4K {
    #[inline(always)]
    unsafe fn decode8x4(b: *const u8, c: usize) -> [__m256; 4] {
        unsafe {
            let (ds, ms) = k4_scales(b, c);
            let qs = b.add(16 + 32 * (c / 2));
            let shift = _mm_cvtsi32_si128(4 * (c % 2) as i32);
            let m = _mm256_set1_epi32(0x0F);
            groups!(|g| {
                let q = _mm256_and_si256(_mm256_srl_epi32(u8x8(qs.add(8 * g)), shift), m);
                _mm256_sub_ps(_mm256_mul_ps(ds, cvt(q)), ms)
            })
        }
    }
}

impl Avx2Blocks for blocks::Q5K {
    #[inline(always)]
    unsafe fn decode8x4(b: *const u8, c: usize) -> [__m256; 4] {
        unsafe {
            let (ds, ms) = k4_scales(b, c);
            let qs = b.add(48 + 32 * (c / 2));
            let qh = b.add(16);
            let shift = _mm_cvtsi32_si128(4 * (c % 2) as i32);
            let hshift = _mm_cvtsi32_si128(c as i32);
            let (m, one) = (_mm256_set1_epi32(0x0F), _mm256_set1_epi32(1));
            groups!(|g| {
                let lo = _mm256_and_si256(_mm256_srl_epi32(u8x8(qs.add(8 * g)), shift), m);
                let hi = _mm256_and_si256(_mm256_srl_epi32(u8x8(qh.add(8 * g)), hshift), one);
                let q = _mm256_or_si256(lo, _mm256_slli_epi32::<4>(hi));
                _mm256_sub_ps(_mm256_mul_ps(ds, cvt(q)), ms)
            })
        }
    }
}

impl Avx2Blocks for blocks::Q6K {
    #[inline(always)]
    unsafe fn decode8x4(b: *const u8, c: usize) -> [__m256; 4] {
        unsafe {
            let (h, g4) = (c / 4, c % 4);
            let d = h2f(b.add(208));
            let sc = b.add(192 + 8 * h + 2 * g4);
            let s0 = _mm256_set1_ps(d * f32::from(*sc as i8));
            let s1 = _mm256_set1_ps(d * f32::from(*sc.add(1) as i8));
            let ql = b.add(64 * h + 32 * (g4 % 2));
            let qh = b.add(128 + 32 * h);
            let shift = _mm_cvtsi32_si128(4 * (g4 / 2) as i32);
            let hshift = _mm_cvtsi32_si128(2 * g4 as i32);
            let (m, three) = (_mm256_set1_epi32(0x0F), _mm256_set1_epi32(3));
            let off = _mm256_set1_epi32(32);
            groups!(|g| {
                let lo = _mm256_and_si256(_mm256_srl_epi32(u8x8(ql.add(8 * g)), shift), m);
                let hi = _mm256_and_si256(_mm256_srl_epi32(u8x8(qh.add(8 * g)), hshift), three);
                let q = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32::<4>(hi)), off);
                _mm256_mul_ps(if g < 2 { s0 } else { s1 }, cvt(q))
            })
        }
    }
}
