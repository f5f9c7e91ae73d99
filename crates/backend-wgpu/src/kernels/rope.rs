//! Launcher of `rope.wgsl`: one invocation per (token, head, rotated pair).

use ingot_tensor::RopeStyle;
use ingot_tensor::backend::Result;

use super::{Pipelines, u32_of};
use crate::params::RopeParams;
use crate::{T, WgpuBackend};

pub(crate) fn rope(
    be: &WgpuBackend,
    p: &Pipelines,
    q: &mut T,
    k: &mut T,
    positions: &T,
    inv_freq: &T,
    style: RopeStyle,
) -> Result<()> {
    let gpu = &be.gpu;
    let (t, hq, d) = (q.dims()[0], q.dims()[1], q.dims()[2]);
    let hk = k.dims()[1];
    let half = inv_freq.dims()[0];
    let work = t * (hq + hk) * half;
    if work == 0 {
        return Ok(());
    }
    let params = gpu.uniform(&RopeParams {
        tokens: u32_of("tokens", t)?,
        hq: u32_of("hq", hq)?,
        hk: u32_of("hk", hk)?,
        head_dim: u32_of("head_dim", d)?,
        half_rot: u32_of("rotary pairs", half)?,
        style: match style {
            RopeStyle::Neox => 0,
            RopeStyle::Interleaved => 1,
        },
        ..Default::default()
    });
    let (gx, gy) = gpu.grid(work.div_ceil(256) as u64)?;
    gpu.dispatch(
        "rope",
        &p.rope,
        &[
            (0, &params),
            (1, positions.storage().buffer("rope positions")?),
            (2, inv_freq.storage().buffer("rope inv_freq")?),
            (3, q.storage().buffer("rope q")?),
            (4, k.storage().buffer("rope k")?),
        ],
        (gx, gy, 1),
    )
}
