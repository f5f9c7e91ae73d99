//! Weights kept in their GGUF blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) and
//! the kernels that multiply them without a dequantized copy in memory.
//!
//! Why: decoding one stream reads every weight once per token, so its speed is the bytes of
//! the weights over the memory bandwidth. A Q4_1 block is 5 bits a weight, f16 16: keeping
//! the blocks moves 3.2x fewer bytes (and holds 3.2x less memory) than the f16 copy the
//! loader used to make.
//!
//! Exact mode (the default): each element is the f32 dot product of an x row with the W row
//! as the reference dequantizer decodes it, in the crate's one order (`lanes.rs`), so it
//! equals `matmul(x, dequantize(W))` with f32 weights on the same path bit for bit. The
//! blocks are decoded in registers (`direct.rs`, few rows) or into a per-task f32 panel
//! (`matmul.rs`'s panel route, many rows); both give the same bits.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
pub(crate) mod blocks;
pub(crate) mod direct;
pub(crate) mod int8;
#[cfg(target_arch = "x86_64")]
pub(crate) mod int8_vnni;
#[cfg(target_arch = "x86_64")]
pub(crate) mod pair512;
#[cfg(target_arch = "x86_64")]
pub(crate) mod prefetch;

use crate::matmul::Isa;
use direct::QGemm;
use ingot_tensor::DType;
use int8::IGemm;
use std::ops::Range;

/// Runs `$body` with `$F` the [`blocks::Blocks`] type of the block dtype `$fmt`.
macro_rules! with_format {
    ($fmt:expr, $F:ident => $body:expr) => {
        match $fmt {
            DType::Q8_0 => {
                type $F = blocks::Q8_0;
                $body
            }
            DType::Q4_0 => {
                type $F = blocks::Q4_0;
                $body
            }
            DType::Q4_1 => {
                type $F = blocks::Q4_1;
                $body
            }
            DType::Q5_0 => {
                type $F = blocks::Q5_0;
                $body
            }
            DType::Q5_1 => {
                type $F = blocks::Q5_1;
                $body
            }
            DType::Q4_K => {
                type $F = blocks::Q4K;
                $body
            }
            DType::Q5_K => {
                type $F = blocks::Q5K;
                $body
            }
            DType::Q6_K => {
                type $F = blocks::Q6K;
                $body
            }
            other => unreachable!("{other} is not a block format"),
        }
    };
}

/// The small-T route: rows × cols of `g` decoded in registers.
/// Safety: the rectangle belongs to the caller; `isa` was detected on this CPU.
pub(crate) unsafe fn direct(
    isa: Isa,
    fmt: DType,
    g: &QGemm<'_>,
    rows: Range<usize>,
    cols: Range<usize>,
) {
    // SAFETY: forwarded; the ISA's features were detected.
    unsafe {
        with_format!(fmt, F => match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => direct::run_avx512::<F>(g, rows, cols),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => direct::run_avx2::<F>(g, rows, cols),
            _ => direct::run_portable::<F>(g, rows, cols),
        })
    }
}

/// Decodes W rows `cols` (blocks of `fmt`, rows of `k`) into row-major f32 `out`.
/// Safety: `isa` was detected on this CPU.
pub(crate) unsafe fn decode_rows(
    isa: Isa,
    fmt: DType,
    w: &[u8],
    k: usize,
    cols: Range<usize>,
    out: &mut [f32],
) {
    // SAFETY: the ISA's features were detected.
    unsafe {
        with_format!(fmt, F => match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => direct::decode_rows_avx512::<F>(w, k, cols, out),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => direct::decode_rows_avx2::<F>(w, k, cols, out),
            _ => direct::decode_rows_portable::<F>(w, k, cols, out),
        })
    }
}

/// How activations meet weights kept in blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activations {
    /// f32 activations times the weights decoded exactly (the reference dequantizer's
    /// values): the f32 matmul of the dequantized matrix, bit for bit.
    #[default]
    Exact,
    /// Activations quantized to 8 bits per chunk of 32, integer dot products
    /// (`int8.rs`): faster, and within a measured error of the exact mode.
    Int8,
}

/// The 8-bit route: rows × cols of `g`. Safety: the rectangle belongs to the caller;
/// `isa` was detected on this CPU.
pub(crate) unsafe fn int8(
    isa: Isa,
    fmt: DType,
    g: &IGemm<'_>,
    rows: Range<usize>,
    cols: Range<usize>,
) {
    // SAFETY: forwarded; the ISA's features were detected (VNNI here; AVX-512 and AVX2
    // imply F16C in `Isa::available`).
    unsafe {
        with_format!(fmt, F => match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if std::arch::is_x86_feature_detected!("avx512vnni") => {
                int8::run_vnni::<F>(g, rows, cols)
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Avx2Fma => int8::run_avx2::<F>(g, rows, cols),
            _ => int8::run_portable::<F>(g, rows, cols),
        })
    }
}
