//! Launcher of `rms_norm.wgsl`: one workgroup per row.

use ingot_tensor::backend::Result;

use super::{Pipelines, u32_of};
use crate::params::NormParams;
use crate::{T, WgpuBackend};

pub(crate) fn rms_norm(
    be: &WgpuBackend,
    p: &Pipelines,
    x: &T,
    residual: Option<&mut T>,
    weight: &T,
    eps: f32,
) -> Result<T> {
    let gpu = &be.gpu;
    let (rows, h) = (x.dims()[0], x.dims()[1]);
    let out = be.output(x.shape().clone(), "rms_norm out")?;
    if rows * h == 0 {
        return Ok(out);
    }
    let params = gpu.uniform(&NormParams {
        rows: u32_of("rows", rows)?,
        hidden: u32_of("hidden", h)?,
        eps,
        _pad0: 0,
    });
    let (gx, gy) = gpu.grid(rows as u64)?;
    let xb = x.storage().buffer("rms_norm x")?;
    let wb = weight.storage().buffer("rms_norm weight")?;
    let ob = out.storage().buffer("rms_norm out")?;
    match residual {
        None => gpu.dispatch(
            "rms_norm",
            &p.rms_norm,
            &[(0, &params), (1, xb), (2, wb), (3, ob)],
            (gx, gy, 1),
        )?,
        Some(r) => gpu.dispatch(
            "rms_norm_residual",
            &p.rms_norm_residual,
            &[
                (0, &params),
                (1, xb),
                (2, wb),
                (3, ob),
                (4, r.storage().buffer("rms_norm residual")?),
            ],
            (gx, gy, 1),
        )?,
    }
    Ok(out)
}
