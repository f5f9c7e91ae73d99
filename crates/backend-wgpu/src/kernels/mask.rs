//! Launcher of `mask.wgsl` (`mask_logits`, structured output): the per-row token masks
//! computed on the host by the grammar matchers are uploaded as bits (V / 32 words a row)
//! and applied on the device, so a constrained row is then chosen by `argmax` / `sample`
//! like any other and never read back as full logits.

use ingot_tensor::backend::Result;

use super::{Pipelines, u32_of};
use crate::params::PointwiseParams;
use crate::{T, WgpuBackend};

pub(crate) fn mask_logits(be: &WgpuBackend, p: &Pipelines, logits: &T, mask: &T) -> Result<T> {
    let gpu = &be.gpu;
    let n = logits.numel();
    let out = be.output(logits.shape().clone(), "mask_logits out")?;
    if n == 0 {
        return Ok(out);
    }
    let params = gpu.uniform(&PointwiseParams {
        n: u32_of("elements", n)?,
        inner: u32_of("vocabulary", logits.dims()[1])?,
        scale: f32::NEG_INFINITY,
        ..Default::default()
    });
    let (gx, gy) = gpu.grid(n.div_ceil(256) as u64)?;
    gpu.dispatch(
        "mask_logits",
        &p.mask_logits,
        &[
            (0, &params),
            (1, logits.storage().buffer("mask_logits logits")?),
            (2, mask.storage().buffer("mask_logits mask")?),
            (3, out.storage().buffer("mask_logits out")?),
        ],
        (gx, gy, 1),
    )?;
    Ok(out)
}
