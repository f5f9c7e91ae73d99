//! Dequantization of GGML block formats to f32: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1
//! and the K-quants Q4_K, Q5_K, Q6_K.
//!
//! Each format is a run of fixed-size blocks (see [`GgmlType`]): a block holds one or two f16
//! scales and `block_size` small integers, and element `i` is `d * q[i]` (symmetric formats)
//! or `d * q[i] + m` / `d * q[i] - m` (formats with an offset). K-quants group 256 elements
//! into a super-block of 8 or 16 sub-blocks whose 6- or 8-bit scales are themselves scaled by
//! the super-block's f16 `d` (and `dmin`).
//!
//! The semantics are ggml's `dequantize_row_*` (ggml-quants.c) as restated by the `gguf`
//! Python package's `gguf/quants.py`, operation for operation: every product and sum is done
//! in f32 in the same order (for K-quants `(d * scale) * q - (dmin * min)`), no fused
//! multiply-add, so the output is bit-identical to the Python reference
//! (`tests/loader_gguf.rs` checks this on `testdata/quant`).
//!
//! Cost: one pass over the data, O(elements). Blocks are independent, so a tensor is split
//! into chunks of about [`PAR_ELEMENTS`] elements that rayon decodes in parallel; smaller
//! inputs (a single embedding row, say) run on the calling thread. The per-block loops work
//! on fixed-size arrays, so they compile without bounds checks and auto-vectorise.

use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use rayon::prelude::*;

use super::ggml_type::{GgmlType, QK_K};

/// Elements per parallel work item; below this a tensor is decoded on the calling thread.
pub const PAR_ELEMENTS: usize = 1 << 14;

/// Why a buffer could not be dequantized. [`GgufFile`](super::gguf::GgufFile) wraps these
/// in a [`LoadError`](super::LoadError) naming the file and tensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DequantError {
    #[error("dequantizing GGML type {0} is not supported (supported: {list})", list = supported_list())]
    Unsupported(GgmlType),
    #[error(
        "{ty}: {bytes} bytes of blocks do not make {elements} elements \
         (block of {block} elements is {type_size} bytes)",
        block = ty.block_size(),
        type_size = ty.type_size()
    )]
    Size {
        ty: GgmlType,
        bytes: usize,
        elements: usize,
    },
}

/// The types [`dequantize`] can decode.
pub const SUPPORTED: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

fn supported_list() -> String {
    SUPPORTED
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether [`dequantize`] can decode `ty`.
pub fn is_supported(ty: GgmlType) -> bool {
    SUPPORTED.contains(&ty)
}

/// Decodes `data` (whole blocks of `ty`) into `out`, one f32 per element.
/// `out.len()` must be exactly the number of elements `data` holds.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), DequantError> {
    if !is_supported(ty) {
        return Err(DequantError::Unsupported(ty));
    }
    let (block, type_size) = (ty.block_size(), ty.type_size());
    let n_blocks = out.len() / block;
    if !out.len().is_multiple_of(block) || data.len() != n_blocks * type_size {
        return Err(DequantError::Size {
            ty,
            bytes: data.len(),
            elements: out.len(),
        });
    }
    match ty {
        GgmlType::F32 => floats::<4>(data, out, |b| f32::from_le_bytes(*b)),
        GgmlType::F16 => f16s(data, out),
        GgmlType::BF16 => floats::<2>(data, out, |b| {
            f32::from_bits(u32::from(u16::from_le_bytes(*b)) << 16)
        }),
        GgmlType::Q8_0 => blocks::<34, 32>(data, out, q8_0),
        GgmlType::Q4_0 => blocks::<18, 32>(data, out, q4_0),
        GgmlType::Q4_1 => blocks::<20, 32>(data, out, q4_1),
        GgmlType::Q5_0 => blocks::<22, 32>(data, out, q5_0),
        GgmlType::Q5_1 => blocks::<24, 32>(data, out, q5_1),
        GgmlType::Q4_K => blocks::<144, QK_K>(data, out, q4_k),
        GgmlType::Q5_K => blocks::<176, QK_K>(data, out, q5_k),
        GgmlType::Q6_K => blocks::<210, QK_K>(data, out, q6_k),
        _ => return Err(DequantError::Unsupported(ty)),
    }
    Ok(())
}

/// [`dequantize`] into a new vector of `n_elements` values.
pub fn dequantize_to_vec(
    ty: GgmlType,
    data: &[u8],
    n_elements: usize,
) -> Result<Vec<f32>, DequantError> {
    let mut out = vec![0.0f32; n_elements];
    dequantize(ty, data, &mut out)?;
    Ok(out)
}

/// Applies `decode` to every block, in parallel chunks when the tensor is large.
/// Lengths were checked by the caller: `data` is `B`-byte blocks, `out` the same count of
/// `N`-element rows.
fn blocks<const B: usize, const N: usize>(
    data: &[u8],
    out: &mut [f32],
    decode: impl Fn(&[u8; B], &mut [f32; N]) + Sync,
) {
    let (src, _) = data.as_chunks::<B>();
    let (dst, _) = out.as_chunks_mut::<N>();
    let serial = |src: &[[u8; B]], dst: &mut [[f32; N]]| {
        for (b, o) in src.iter().zip(dst) {
            decode(b, o);
        }
    };
    let per_task = (PAR_ELEMENTS / N).max(1);
    if src.len() <= per_task {
        serial(src, dst);
    } else {
        src.par_chunks(per_task)
            .zip(dst.par_chunks_mut(per_task))
            .for_each(|(s, d)| serial(s, d));
    }
}

/// Element-wise formats: `W` little-endian bytes per element.
fn floats<const W: usize>(data: &[u8], out: &mut [f32], decode: impl Fn(&[u8; W]) -> f32 + Sync) {
    blocks::<W, 1>(data, out, |b, o| o[0] = decode(b));
}

/// F16 goes through `half`'s slice conversion, which uses F16C / NEON when the CPU has it
/// (detected at run time). f16 -> f32 is exact either way.
fn f16s(data: &[u8], out: &mut [f32]) {
    const CHUNK: usize = 1024;
    let convert = |src: &[u8], dst: &mut [f32]| {
        let mut bits = [0u16; CHUNK];
        for (s, d) in src.chunks(2 * CHUNK).zip(dst.chunks_mut(CHUNK)) {
            let (pairs, _) = s.as_chunks::<2>();
            let bits = &mut bits[..pairs.len()];
            for (b, p) in bits.iter_mut().zip(pairs) {
                *b = u16::from_le_bytes(*p);
            }
            bits.reinterpret_cast::<f16>().convert_to_f32_slice(d);
        }
    };
    if out.len() <= PAR_ELEMENTS {
        convert(data, out);
    } else {
        data.par_chunks(2 * PAR_ELEMENTS)
            .zip(out.par_chunks_mut(PAR_ELEMENTS))
            .for_each(|(s, d)| convert(s, d));
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
fn k4_scales_mins(s: &[u8]) -> ([u8; 8], [u8; 8]) {
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

    #[test]
    fn rejects_unsupported_type_and_bad_sizes() {
        let mut out = [0f32; 256];
        assert_eq!(
            dequantize(GgmlType::Q2_K, &[0u8; 84], &mut out),
            Err(DequantError::Unsupported(GgmlType::Q2_K))
        );
        let err = dequantize(GgmlType::Q8_0, &[0u8; 33], &mut out[..32]).unwrap_err();
        assert!(matches!(err, DequantError::Size { bytes: 33, .. }), "{err}");
        let err = dequantize(GgmlType::Q4_K, &[0u8; 144], &mut out[..255]).unwrap_err();
        assert!(
            matches!(err, DequantError::Size { elements: 255, .. }),
            "{err}"
        );
    }

    #[test]
    fn parallel_split_equals_serial_decoding() {
        // Random blocks with finite scales, enough of them to take the rayon path; the
        // serial decode of each block alone must agree bit for bit.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        };
        let n_blocks = 3 * PAR_ELEMENTS / QK_K + 5;
        let mut data: Vec<u8> = (0..n_blocks * 210).map(|_| next()).collect();
        for blk in data.chunks_exact_mut(210) {
            blk[208..210].copy_from_slice(&f16::from_f32(0.01).to_le_bytes());
        }
        let whole = dequantize_to_vec(GgmlType::Q6_K, &data, n_blocks * QK_K).unwrap();
        for (i, blk) in data.chunks_exact(210).enumerate() {
            let one = dequantize_to_vec(GgmlType::Q6_K, blk, QK_K).unwrap();
            assert_eq!(&whole[i * QK_K..(i + 1) * QK_K], &one[..], "block {i}");
        }
    }
}
