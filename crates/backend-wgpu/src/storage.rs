//! Device storage of one tensor: one buffer, or several "parts" of whole outer rows when
//! the tensor is larger than one storage binding may be (lavapipe binds at most 128 MiB; a
//! 151,936 x 896 f16 embedding is 272 MB). Only the weight-reading verbs (matmul's W,
//! embedding's table) and data movement accept split tensors; they dispatch once per part.
//! Elements are packed little-endian, 16-bit dtypes two per 32-bit word; each part starts
//! at a word boundary because it is its own buffer, and is padded to a whole word. A matrix
//! of GGUF blocks is split the same way, by whole rows, each part in `blocks.rs`'s layout.

use std::sync::Arc;

use ingot_tensor::backend::Result;
use ingot_tensor::{BackendError, DType, Shape};

use crate::device::Gpu;

/// One buffer holding rows `first_row .. first_row + rows` of the tensor's outer dimension.
pub struct Part {
    pub buffer: wgpu::Buffer,
    pub first_row: usize,
    pub rows: usize,
}

/// A GPU tensor's elements: usually one part. Dropping it returns its buffers to the
/// device's pool (see `device/buffers.rs`).
pub struct WgpuStorage {
    pub(crate) parts: Vec<Part>,
    pub(crate) home: Arc<Gpu>,
}

impl Drop for WgpuStorage {
    fn drop(&mut self) {
        for part in self.parts.drain(..) {
            self.home.recycle(part.buffer);
        }
    }
}

impl WgpuStorage {
    pub(crate) fn single(home: Arc<Gpu>, buffer: wgpu::Buffer, rows: usize) -> Self {
        Self {
            parts: vec![Part {
                buffer,
                first_row: 0,
                rows,
            }],
            home,
        }
    }

    /// How many buffers hold the tensor.
    pub fn num_parts(&self) -> usize {
        self.parts.len()
    }

    /// Device bytes of the tensor's buffers.
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.buffer.size()).sum()
    }

    /// The one buffer of an unsplit tensor, or an error naming `what`.
    pub(crate) fn buffer(&self, what: &str) -> Result<&wgpu::Buffer> {
        match self.parts.as_slice() {
            [p] => Ok(&p.buffer),
            parts => Err(BackendError::Device(format!(
                "{what}: a tensor split into {} parts (larger than one storage binding) is \
                 accepted only as a matmul weight or an embedding table",
                parts.len()
            ))),
        }
    }
}

/// Outer rows and elements per row of `shape` (a scalar or vector is one row).
pub(crate) fn rows_of(shape: &Shape) -> (usize, usize) {
    match shape.dims() {
        [] => (1, 1),
        [n] => (1, *n),
        [outer, ..] => (*outer, shape.numel() / (*outer).max(1)),
    }
}

/// Row ranges of the parts for a tensor of `shape` and `dtype` under `max_bytes` per part.
pub(crate) fn plan(shape: &Shape, dtype: DType, max_bytes: u64) -> Result<Vec<(usize, usize)>> {
    let (rows, per_row) = rows_of(shape);
    plan_rows(
        shape,
        rows,
        (per_row * dtype.size_in_bytes()) as u64,
        max_bytes,
    )
}

/// [`plan`] for `rows` rows of `row_bytes` each (a matrix of GGUF blocks: `blocks.rs`
/// stores a part in as many bytes as its blocks take, padded to 16).
pub(crate) fn plan_rows(
    shape: &Shape,
    rows: usize,
    row_bytes: u64,
    max_bytes: u64,
) -> Result<Vec<(usize, usize)>> {
    let total = rows as u64 * row_bytes;
    // A buffer's size is rounded up to a word.
    let padded = total.div_ceil(4) * 4;
    if padded <= max_bytes || rows <= 1 {
        if padded > max_bytes {
            return Err(BackendError::Device(format!(
                "a tensor of shape {shape} ({total} bytes) exceeds the adapter's storage \
                 binding limit of {max_bytes} bytes and has no rows to split"
            )));
        }
        return Ok(vec![(0, rows)]);
    }
    let per_part = ((max_bytes - 4) / row_bytes.max(1)) as usize;
    if per_part == 0 {
        return Err(BackendError::Device(format!(
            "one row of a tensor of shape {shape} ({row_bytes} bytes) exceeds the adapter's \
             storage binding limit of {max_bytes} bytes"
        )));
    }
    Ok((0..rows)
        .step_by(per_part)
        .map(|r| (r, per_part.min(rows - r)))
        .collect())
}

/// Host values in `dtype`'s little-endian encoding.
pub(crate) fn encode(data: &[f32], dtype: DType) -> Vec<u8> {
    match dtype {
        DType::F32 => bytemuck::cast_slice(data).to_vec(),
        DType::F16 => data
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        DType::BF16 => data
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        DType::U32 => panic!("encode: cannot make a u32 tensor from floats (use from_u32)"),
        q => panic!("encode: cannot make {q} blocks from floats (use from_blocks)"),
    }
}

/// Floats from `dtype`'s little-endian encoding.
pub(crate) fn decode(bytes: &[u8], dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::U32 => panic!("decode: a u32 tensor is not a float tensor (use to_u32)"),
        q => panic!("decode: reading {q} blocks back is not supported"),
    }
}
