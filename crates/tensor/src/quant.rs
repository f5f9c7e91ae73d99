//! GGUF block formats ([`DType::BLOCK_TYPES`]) and their reference dequantizer: the one
//! definition of what the bytes of a block-format tensor mean, shared by the loader (which
//! decodes whole tensors when a dense copy is wanted), by every backend's kernels (which
//! decode in registers) and by their tests (which compare against [`dequantize`]).
//!
//! Each format is a run of fixed-size blocks: a block holds one or two f16 scales and
//! `block_size` small integers, and element `i` is `d * q[i]` (symmetric formats) or
//! `d * q[i] + m` / `d * q[i] - m` (formats with an offset). K-quants group 256 elements
//! into a super-block of 8 or 16 sub-blocks whose 6- or 8-bit scales are themselves scaled by
//! the super-block's f16 `d` (and `dmin`). A matrix `[N, K]` is `N` rows of `K / block_size`
//! blocks each, so a row starts on a block boundary.
//!
//! The semantics are ggml's `dequantize_row_*` (ggml-quants.c) as restated by the `gguf`
//! Python package's `gguf/quants.py`, operation for operation: every product and sum is done
//! in f32 in the same order (for K-quants `(d * scale) * q - (dmin * min)`), no fused
//! multiply-add, so the output is bit-identical to the Python reference (the loader's tests
//! check this on `testdata/quant`). A kernel that fuses differently may round differently
//! and states its tolerance against this.

use half::f16;

use crate::DType;

/// Elements per super-block of the K-quants.
pub const QK_K: usize = 256;

/// Decodes `data` (whole blocks of the block format `dtype`) into `out`, one f32 per
/// element, on the calling thread. Panics unless `dtype` is a block format and
/// `data.len()` is exactly the storage of `out.len()` elements.
#[track_caller]
pub fn dequantize(dtype: DType, data: &[u8], out: &mut [f32]) {
    assert!(
        dtype.is_quantized(),
        "quant::dequantize: {dtype} is not a block format"
    );
    assert_eq!(
        dtype.storage_bytes(out.len()),
        Some(data.len()),
        "quant::dequantize: {} bytes of {dtype} blocks for {} elements",
        data.len(),
        out.len()
    );
    match dtype {
        DType::Q8_0 => blocks::<34, 32>(data, out, q8_0),
        DType::Q4_0 => blocks::<18, 32>(data, out, q4_0),
        DType::Q4_1 => blocks::<20, 32>(data, out, q4_1),
        DType::Q5_0 => blocks::<22, 32>(data, out, q5_0),
        DType::Q5_1 => blocks::<24, 32>(data, out, q5_1),
        DType::Q4_K => blocks::<144, QK_K>(data, out, q4_k),
        DType::Q5_K => blocks::<176, QK_K>(data, out, q5_k),
        DType::Q6_K => blocks::<210, QK_K>(data, out, q6_k),
        DType::F32 | DType::F16 | DType::BF16 | DType::U32 => unreachable!(),
    }
}

/// Applies `decode` to every `B`-byte block and its `N` outputs (lengths checked by the
/// caller).
fn blocks<const B: usize, const N: usize>(
    data: &[u8],
    out: &mut [f32],
    decode: impl Fn(&[u8; B], &mut [f32; N]),
) {
    let (src, _) = data.as_chunks::<B>();
    let (dst, _) = out.as_chunks_mut::<N>();
    for (b, o) in src.iter().zip(dst) {
        decode(b, o);
    }
}

#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Q8_0: `d: f16, q: [i8; 32]`; `x = q * d`.
fn q8_0(b: &[u8; 34], out: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    for (o, &q) in out.iter_mut().zip(&b[2..]) {
        *o = f32::from(q as i8) * d;
    }
}

/// Q4_0: `d: f16, qs: [u8; 16]`; element `j` is the low nibble of `qs[j]`, element `j + 16`
/// the high nibble; `x = (q - 8) * d`.
fn q4_0(b: &[u8; 18], out: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let (lo, hi) = out.split_at_mut(16);
    for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b[2..]) {
        *l = d * f32::from((q & 0x0F) as i8 - 8);
        *h = d * f32::from((q >> 4) as i8 - 8);
    }
}

/// Q4_1: `d: f16, m: f16, qs: [u8; 16]` (nibbles as Q4_0); `x = d * q + m`.
fn q4_1(b: &[u8; 20], out: &mut [f32; 32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let (lo, hi) = out.split_at_mut(16);
    for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b[4..]) {
        *l = d * f32::from(q & 0x0F) + m;
        *h = d * f32::from(q >> 4) + m;
    }
}

/// The 5-bit values of Q5_0/Q5_1: low nibbles as Q4_0, bit `i` of the little-endian u32 `qh`
/// is bit 4 of element `i`.
#[inline(always)]
fn q5_values(qh: &[u8], qs: &[u8]) -> [u8; 32] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = (qs[j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
        q[j + 16] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    }
    q
}

/// Q5_0: `d: f16, qh: u32, qs: [u8; 16]`; `x = (q - 16) * d`.
fn q5_0(b: &[u8; 22], out: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let q = q5_values(&b[2..6], &b[6..]);
    for (o, &q) in out.iter_mut().zip(&q) {
        *o = d * f32::from(q as i8 - 16);
    }
}

/// Q5_1: `d: f16, m: f16, qh: u32, qs: [u8; 16]`; `x = d * q + m`.
fn q5_1(b: &[u8; 24], out: &mut [f32; 32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let q = q5_values(&b[4..8], &b[8..]);
    for (o, &q) in out.iter_mut().zip(&q) {
        *o = d * f32::from(q) + m;
    }
}

/// The eight 6-bit (scale, min) pairs of a Q4_K/Q5_K super-block, packed into 12 bytes:
/// bytes 0-3 hold scales 0-3 in their low 6 bits, bytes 4-7 mins 0-3; scales/mins 4-7 take
/// their low 4 bits from the nibbles of bytes 8-11 and their top 2 bits from the top bits of
/// bytes 0-3 / 4-7 (ggml's `get_scale_min_k4`).
#[inline(always)]
pub fn k4_scales_mins(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..4 {
        sc[j] = s[j] & 0x3F;
        mn[j] = s[j + 4] & 0x3F;
        sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 2) & 0x30);
        mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 2) & 0x30);
    }
    (sc, mn)
}

/// Q4_K: `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]`. Eight sub-blocks of 32;
/// sub-blocks `2i` and `2i + 1` are the low and high nibbles of `qs[32i..32i + 32]`;
/// `x = (d * sc) * q - (dmin * m)`.
fn q4_k(b: &[u8; 144], out: &mut [f32; QK_K]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = k4_scales_mins(&b[4..16]);
    let qs = &b[16..144];
    for (i, (o, q)) in out
        .chunks_exact_mut(64)
        .zip(qs.chunks_exact(32))
        .enumerate()
    {
        let (d1, m1) = (d * f32::from(sc[2 * i]), dmin * f32::from(mn[2 * i]));
        let (d2, m2) = (
            d * f32::from(sc[2 * i + 1]),
            dmin * f32::from(mn[2 * i + 1]),
        );
        let (lo, hi) = o.split_at_mut(32);
        for ((l, h), &q) in lo.iter_mut().zip(hi).zip(q) {
            *l = d1 * f32::from(q & 0x0F) - m1;
            *h = d2 * f32::from(q >> 4) - m2;
        }
    }
}

/// Q5_K: `d, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]`. As Q4_K, plus bit
/// `s` of `qh[l]` is bit 4 of element `l` of sub-block `s`.
fn q5_k(b: &[u8; 176], out: &mut [f32; QK_K]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = k4_scales_mins(&b[4..16]);
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (s, o) in out.chunks_exact_mut(32).enumerate() {
        let (ds, ms) = (d * f32::from(sc[s]), dmin * f32::from(mn[s]));
        let low = &qs[32 * (s / 2)..32 * (s / 2) + 32];
        let shift = 4 * (s % 2);
        for ((o, &l), &h) in o.iter_mut().zip(low).zip(qh) {
            let q = ((l >> shift) & 0x0F) | (((h >> s) & 1) << 4);
            *o = ds * f32::from(q) - ms;
        }
    }
}

/// Q6_K: `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`. Two halves of 128; in half
/// `h`, element `32g + l` (g = 0..4) takes its low 4 bits from `ql[64h + l + 32 * (g % 2)]`
/// (low nibble for g < 2, high for g >= 2) and its top 2 bits from bits `2g..2g+2` of
/// `qh[32h + l]`; `x = (d * scales[e / 16]) * (q - 32)` for element `e` of the block.
fn q6_k(b: &[u8; 210], out: &mut [f32; QK_K]) {
    let d = f16_at(b, 208);
    let mut scale = [0f32; 16];
    for (s, &raw) in scale.iter_mut().zip(&b[192..208]) {
        *s = d * f32::from(raw as i8);
    }
    for h in 0..2 {
        let ql = &b[64 * h..64 * h + 64];
        let qh = &b[128 + 32 * h..128 + 32 * h + 32];
        let o = &mut out[128 * h..128 * h + 128];
        for g in 0..4 {
            let low = &ql[32 * (g % 2)..32 * (g % 2) + 32];
            let nibble_shift = 4 * (g / 2);
            let dst = &mut o[32 * g..32 * g + 32];
            for (l, (o, (&lq, &hq))) in dst.iter_mut().zip(low.iter().zip(qh)).enumerate() {
                let q = ((lq >> nibble_shift) & 0x0F) | (((hq >> (2 * g)) & 0x03) << 4);
                *o = scale[8 * h + 2 * g + l / 16] * f32::from(q as i8 - 32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-made blocks whose values are known exactly.
    #[test]
    fn known_blocks() {
        // Q8_0: d = 0.5, q = -16..16.
        let mut b = f16::from_f32(0.5).to_le_bytes().to_vec();
        b.extend((-16i8..16).map(|q| q as u8));
        let mut out = [0f32; 32];
        dequantize(DType::Q8_0, &b, &mut out);
        assert!(
            out.iter()
                .enumerate()
                .all(|(i, &x)| x == (i as f32 - 16.0) * 0.5)
        );

        // Q4_1: d = 2, m = -1; byte j holds element j (low nibble) and j + 16 (high).
        let mut b = f16::from_f32(2.0).to_le_bytes().to_vec();
        b.extend(f16::from_f32(-1.0).to_le_bytes());
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        dequantize(DType::Q4_1, &b, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], 2.0 * j as f32 - 1.0);
            assert_eq!(out[j + 16], 2.0 * (15 - j) as f32 - 1.0);
        }
    }

    #[test]
    #[should_panic(expected = "bytes of Q4_K blocks")]
    fn rejects_partial_blocks() {
        dequantize(DType::Q4_K, &[0u8; 144], &mut [0f32; 255]);
    }
}
