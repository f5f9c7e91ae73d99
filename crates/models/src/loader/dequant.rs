//! Dequantization of whole GGML tensors to f32: F32, F16, BF16, and the block formats Q8_0,
//! Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K.
//!
//! The block formats are defined once, in [`ingot_tensor::quant`] (the same definition the
//! backends' kernels are tested against); this module adds the plain float formats and
//! parallelism over a whole tensor. The output is bit-identical to the `gguf` Python
//! package's reference (`tests/loader_gguf.rs` checks this on `testdata/quant`).
//!
//! Cost: one pass over the data, O(elements). Blocks are independent, so a tensor is split
//! into chunks of about [`PAR_ELEMENTS`] elements that rayon decodes in parallel; smaller
//! inputs (a single embedding row, say) run on the calling thread. The per-block loops work
//! on fixed-size arrays, so they compile without bounds checks and auto-vectorise.

use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use ingot_tensor::{DType, quant};
use rayon::prelude::*;

use super::ggml_type::GgmlType;

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
        _ => match ty.block_dtype() {
            Some(dt) => quantized(dt, data, out),
            None => return Err(DequantError::Unsupported(ty)),
        },
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

/// GGUF block formats: [`ingot_tensor::quant::dequantize`] (the one definition of each
/// format) over chunks of whole blocks, in parallel when the tensor is large.
fn quantized(dt: DType, data: &[u8], out: &mut [f32]) {
    let per_task = (PAR_ELEMENTS / dt.block_size()).max(1);
    let (n, bytes) = (per_task * dt.block_size(), per_task * dt.block_bytes());
    if out.len() <= n {
        quant::dequantize(dt, data, out);
    } else {
        data.par_chunks(bytes)
            .zip(out.par_chunks_mut(n))
            .for_each(|(s, d)| quant::dequantize(dt, s, d));
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

#[cfg(test)]
mod tests {
    use super::super::ggml_type::QK_K;
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
