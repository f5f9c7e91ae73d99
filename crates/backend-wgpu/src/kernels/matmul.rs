//! Launcher of `matmul.wgsl`: the GEMV kernel for up to [`GEMV_MAX_ROWS`] rows, the tiled
//! GEMM above; one dispatch per part of W. Both kernels compute every element in the same
//! order (see the shader's header), so the switch between them never changes a bit: a row's
//! output is the same alone or in any batch.

use ingot_tensor::backend::Result;
use ingot_tensor::{BackendError, Op, Shape};

use super::{Pipelines, u32_of, weight_index};
use crate::params::MatmulParams;
use crate::{T, WgpuBackend};

/// Largest T for which the GEMV kernel runs (it reads W once per 8 rows).
pub const GEMV_MAX_ROWS: usize = 16;

pub(crate) fn matmul(be: &WgpuBackend, p: &Pipelines, x: &T, w: &T, bias: Option<&T>) -> Result<T> {
    let gpu = &be.gpu;
    let (t, k, n) = (x.dims()[0], x.dims()[1], w.dims()[0]);
    let wi = weight_index(w.dtype()).ok_or(BackendError::Unsupported {
        op: Op::Matmul,
        dtype: w.dtype(),
        backend: "wgpu",
    })?;
    let out = be.output(Shape::new([t, n]), "matmul out")?;
    if t * n == 0 {
        return Ok(out);
    }
    let xb = x.storage().buffer("matmul x")?;
    let bb = match bias {
        Some(b) => b.storage().buffer("matmul bias")?,
        None => &gpu.dummy,
    };
    let ob = out.storage().buffer("matmul out")?;
    let gemv = t <= GEMV_MAX_ROWS;
    for part in &w.storage().parts {
        let params = gpu.uniform(&MatmulParams {
            rows: u32_of("rows", t)?,
            k: u32_of("k", k)?,
            n_total: u32_of("n", n)?,
            n_start: u32_of("n", part.first_row)?,
            n_count: u32_of("n", part.rows)?,
            has_bias: bias.is_some() as u32,
            ..Default::default()
        });
        let (pipeline, groups) = if gemv {
            (&p.gemv[wi], (part.rows.div_ceil(32), t.div_ceil(8)))
        } else {
            (&p.gemm[wi], (part.rows.div_ceil(64), t.div_ceil(64)))
        };
        gpu.dispatch(
            if gemv { "gemv" } else { "gemm" },
            pipeline,
            &[(0, &params), (1, &part.buffer), (2, xb), (3, bb), (4, ob)],
            (u32_of("groups", groups.0)?, u32_of("groups", groups.1)?, 1),
        )?;
    }
    Ok(out)
}
