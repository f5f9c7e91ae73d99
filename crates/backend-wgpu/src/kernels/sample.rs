//! Launcher of `argmax.wgsl`: the greedy token of each row of logits [rows, vocab] -> [rows]
//! u32, one workgroup per row (a fixed 256-way reduction tree; see the shader for why the
//! answer is the CPU scan's, bit for bit). It lets a decode step read back 4 bytes per row
//! instead of 4 x vocab. The sampling family lives here; temperature sampling still runs
//! on the host (see the runner's `model_runner.rs`).

use ingot_tensor::backend::Result;
use ingot_tensor::{DType, Shape};

use super::{Pipelines, u32_of};
use crate::params::ArgmaxParams;
use crate::{T, WgpuBackend};

pub(crate) fn argmax(be: &WgpuBackend, p: &Pipelines, logits: &T) -> Result<T> {
    let gpu = &be.gpu;
    let (rows, vocab) = (logits.dims()[0], logits.dims()[1]);
    let out = be.output_typed(Shape::new([rows]), DType::U32, "argmax out")?;
    if rows == 0 {
        return Ok(out);
    }
    u32_of("logits elements", rows * vocab)?;
    let params = gpu.uniform(&ArgmaxParams {
        rows: u32_of("rows", rows)?,
        vocab: u32_of("vocab", vocab)?,
        ..Default::default()
    });
    let (gx, gy) = gpu.grid(rows as u64)?;
    gpu.dispatch(
        "argmax",
        &p.argmax,
        &[
            (0, &params),
            (1, logits.storage().buffer("argmax logits")?),
            (2, out.storage().buffer("argmax out")?),
        ],
        (gx, gy, 1),
    )?;
    Ok(out)
}
