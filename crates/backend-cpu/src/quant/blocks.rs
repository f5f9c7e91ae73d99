//! Decoders of GGUF weight blocks into f32, 32 elements at a time: the unit every quantized
//! kernel of this crate consumes (`exact.rs` multiplies the decoded values with f32
//! activations; `panel` fills decode whole rows).
//!
//! Each format is a zero-sized type implementing [`Blocks`]. A block holds `BLOCK` elements
//! (32, or 256 for the K-quants) in `BYTES` bytes, laid out as ggml lays it out
//! (`ingot_tensor::quant` documents every layout once); a 256-element super-block is decoded
//! as eight chunks of 32.
//!
//! The arithmetic is the reference dequantizer's (`ingot_tensor::quant::dequantize`),
//! operation for operation: the same f32 products and sums in the same order, never fused,
//! so a decoded value is bit-identical to the reference's. That is what makes the exact mode
//! exact: multiplying blocks equals multiplying the dequantized f32 matrix, bit for bit
//! (tested). The loops run over fixed-size arrays so that LLVM vectorises them for whatever
//! target features the calling kernel is compiled with (NEON, AVX2, AVX-512).

/// Elements per decoded chunk.
pub(crate) const CHUNK: usize = 32;

/// One GGUF block format.
pub(crate) trait Blocks: Copy + Send + Sync + 'static {
    /// Elements per block (32 or 256).
    const BLOCK: usize;
    /// Bytes per block.
    const BYTES: usize;
    /// Decodes chunk `c` (elements `32c .. 32c + 32`) of the block `b` (`BYTES` bytes).
    fn decode(b: &[u8], c: usize, out: &mut [f32; CHUNK]);
}

/// f16 bits to f32, exact, without a runtime CPU check: a normal or subnormal half is the
/// same bits shifted into an f32 and scaled by 2^112 (exact); infinities and NaNs (quieted,
/// as F16C and the `half` crate do) are set apart.
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let rest = u32::from(h & 0x7FFF) << 13;
    let v = if h & 0x7C00 == 0x7C00 {
        let quiet = if h & 0x03FF != 0 { 0x0040_0000 } else { 0 };
        f32::from_bits(0x7F80_0000 | quiet | rest)
    } else {
        f32::from_bits(rest) * f32::from_bits(0x7780_0000) // 2^112
    };
    f32::from_bits(v.to_bits() | sign)
}

#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// Low nibbles of 16 bytes are elements 0..16, high nibbles 16..32 (Q4_0, Q4_1, and the low
/// bits of Q5_0, Q5_1).
#[inline(always)]
fn nibbles(qs: &[u8; 16]) -> [u8; 32] {
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = qs[j] & 0x0F;
        q[j + 16] = qs[j] >> 4;
    }
    q
}

/// The 5-bit values of Q5_0 / Q5_1: nibbles, plus bit `i` of the little-endian `qh` as bit 4
/// of element `i`.
#[inline(always)]
fn five_bits(qh: &[u8], qs: &[u8; 16]) -> [u8; 32] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut q = nibbles(qs);
    for (i, v) in q.iter_mut().enumerate() {
        *v |= (((qh >> i) & 1) as u8) << 4;
    }
    q
}

#[inline(always)]
fn arr<const N: usize>(b: &[u8], at: usize) -> &[u8; N] {
    b[at..at + N].try_into().expect("block slice")
}

#[derive(Clone, Copy)]
pub(crate) struct Q8_0;
#[derive(Clone, Copy)]
pub(crate) struct Q4_0;
#[derive(Clone, Copy)]
pub(crate) struct Q4_1;
#[derive(Clone, Copy)]
pub(crate) struct Q5_0;
#[derive(Clone, Copy)]
pub(crate) struct Q5_1;
#[derive(Clone, Copy)]
pub(crate) struct Q4K;
#[derive(Clone, Copy)]
pub(crate) struct Q5K;
#[derive(Clone, Copy)]
pub(crate) struct Q6K;

impl Blocks for Q8_0 {
    const BLOCK: usize = 32;
    const BYTES: usize = 34;
    #[inline(always)]
    fn decode(b: &[u8], _: usize, out: &mut [f32; CHUNK]) {
        let d = f16_at(b, 0);
        let qs = arr::<32>(b, 2);
        for (o, &q) in out.iter_mut().zip(qs) {
            *o = f32::from(q as i8) * d;
        }
    }
}

impl Blocks for Q4_0 {
    const BLOCK: usize = 32;
    const BYTES: usize = 18;
    #[inline(always)]
    fn decode(b: &[u8], _: usize, out: &mut [f32; CHUNK]) {
        let d = f16_at(b, 0);
        let q = nibbles(arr(b, 2));
        for (o, &q) in out.iter_mut().zip(&q) {
            *o = d * f32::from(q as i8 - 8);
        }
    }
}

impl Blocks for Q4_1 {
    const BLOCK: usize = 32;
    const BYTES: usize = 20;
    #[inline(always)]
    fn decode(b: &[u8], _: usize, out: &mut [f32; CHUNK]) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        let q = nibbles(arr(b, 4));
        for (o, &q) in out.iter_mut().zip(&q) {
            *o = d * f32::from(q) + m;
        }
    }
}

impl Blocks for Q5_0 {
    const BLOCK: usize = 32;
    const BYTES: usize = 22;
    #[inline(always)]
    fn decode(b: &[u8], _: usize, out: &mut [f32; CHUNK]) {
        let d = f16_at(b, 0);
        let q = five_bits(&b[2..6], arr(b, 6));
        for (o, &q) in out.iter_mut().zip(&q) {
            *o = d * f32::from(q as i8 - 16);
        }
    }
}

impl Blocks for Q5_1 {
    const BLOCK: usize = 32;
    const BYTES: usize = 24;
    #[inline(always)]
    fn decode(b: &[u8], _: usize, out: &mut [f32; CHUNK]) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        let q = five_bits(&b[4..8], arr(b, 8));
        for (o, &q) in out.iter_mut().zip(&q) {
            *o = d * f32::from(q) + m;
        }
    }
}

/// Scale and min of sub-block `j` of a Q4_K / Q5_K super-block, from its 12 packed bytes:
/// sub-blocks 0-3 keep 6 bits in bytes 0-3 (scales) and 4-7 (mins); 4-7 take their low 4
/// bits from the nibbles of bytes 8-11 and their top 2 bits from the top of bytes 0-7.
#[inline(always)]
pub(crate) fn k4_scale_min(s: &[u8; 12], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 0x3F, s[j + 4] & 0x3F)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 2) & 0x30),
            (s[j + 4] >> 4) | ((s[j] >> 2) & 0x30),
        )
    }
}

impl Blocks for Q4K {
    const BLOCK: usize = 256;
    const BYTES: usize = 144;
    #[inline(always)]
    fn decode(b: &[u8], c: usize, out: &mut [f32; CHUNK]) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let (sc, mn) = k4_scale_min(arr(b, 4), c);
        let (ds, ms) = (d * f32::from(sc), dmin * f32::from(mn));
        let qs = arr::<32>(b, 16 + 32 * (c / 2));
        let shift = 4 * (c % 2);
        for (o, &q) in out.iter_mut().zip(qs) {
            *o = ds * f32::from((q >> shift) & 0x0F) - ms;
        }
    }
}

impl Blocks for Q5K {
    const BLOCK: usize = 256;
    const BYTES: usize = 176;
    #[inline(always)]
    fn decode(b: &[u8], c: usize, out: &mut [f32; CHUNK]) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let (sc, mn) = k4_scale_min(arr(b, 4), c);
        let (ds, ms) = (d * f32::from(sc), dmin * f32::from(mn));
        let qh = arr::<32>(b, 16);
        let qs = arr::<32>(b, 48 + 32 * (c / 2));
        let shift = 4 * (c % 2);
        for ((o, &l), &h) in out.iter_mut().zip(qs).zip(qh) {
            let q = ((l >> shift) & 0x0F) | (((h >> c) & 1) << 4);
            *o = ds * f32::from(q) - ms;
        }
    }
}

impl Blocks for Q6K {
    const BLOCK: usize = 256;
    const BYTES: usize = 210;
    #[inline(always)]
    fn decode(b: &[u8], c: usize, out: &mut [f32; CHUNK]) {
        // Chunk c is group g = c % 4 of half h = c / 4.
        let (h, g) = (c / 4, c % 4);
        let d = f16_at(b, 208);
        let s0 = d * f32::from(b[192 + 8 * h + 2 * g] as i8);
        let s1 = d * f32::from(b[192 + 8 * h + 2 * g + 1] as i8);
        let ql = arr::<32>(b, 64 * h + 32 * (g % 2));
        let qh = arr::<32>(b, 128 + 32 * h);
        let shift = 4 * (g / 2);
        let mut q = [0i8; CHUNK];
        for ((q, &l), &hb) in q.iter_mut().zip(ql).zip(qh) {
            *q = (((l >> shift) & 0x0F) | (((hb >> (2 * g)) & 0x03) << 4)) as i8 - 32;
        }
        let (lo, hi) = out.split_at_mut(16);
        for (o, &q) in lo.iter_mut().zip(&q[..16]) {
            *o = s0 * f32::from(q);
        }
        for (o, &q) in hi.iter_mut().zip(&q[16..]) {
            *o = s1 * f32::from(q);
        }
    }
}
