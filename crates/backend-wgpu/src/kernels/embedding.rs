//! Launcher of `embedding.wgsl`: one dispatch per part of the table, 256 elements of the
//! output per workgroup; the table dense or in GGUF blocks (a variant per format).

use ingot_tensor::backend::Result;
use ingot_tensor::{BackendError, Op, Shape};

use super::{Pipelines, quant_index, u32_of, weight_index};
use crate::device::Gpu;
use crate::params::EmbeddingParams;
use crate::{T, WgpuBackend};

pub(crate) fn embedding(be: &WgpuBackend, p: &Pipelines, table: &T, ids: &T) -> Result<T> {
    let gpu: &Gpu = &be.gpu;
    let (v, h) = (table.dims()[0], table.dims()[1]);
    let t = ids.dims()[0];
    let pipeline = match (weight_index(table.dtype()), quant_index(table.dtype())) {
        (Some(wi), _) => &p.embedding[wi],
        (None, Some(qi)) => &p.quant(gpu, qi)?.embedding,
        (None, None) => {
            return Err(BackendError::Unsupported {
                op: Op::Embedding,
                dtype: table.dtype(),
                backend: "wgpu",
            });
        }
    };
    let out = be.output(Shape::new([t, h]), "embedding out")?;
    if t * h == 0 {
        return Ok(out);
    }
    let ids_buf = ids.storage().buffer("embedding ids")?;
    let parts = &table.storage().parts;
    let (gx, gy) = gpu.grid((t * h).div_ceil(256) as u64)?;
    for (i, part) in parts.iter().enumerate() {
        let params = gpu.uniform(&EmbeddingParams {
            tokens: u32_of("tokens", t)?,
            hidden: u32_of("hidden", h)?,
            row_start: u32_of("row", part.first_row)?,
            rows: u32_of("rows", part.rows)?,
            vocab: u32_of("vocab", v)?,
            last_part: (i + 1 == parts.len()) as u32,
            ..Default::default()
        });
        gpu.dispatch(
            "embedding",
            pipeline,
            &[
                (0, &params),
                (1, &part.buffer),
                (2, ids_buf),
                (3, out.storage().buffer("embedding out")?),
            ],
            (gx, gy, 1),
        )?;
    }
    Ok(out)
}
