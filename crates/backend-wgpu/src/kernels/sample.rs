//! Launcher of `argmax.wgsl`: the greedy token of each row of logits [rows, vocab] -> [rows]
//! u32, one workgroup per row for short rows, and for long ones (past [`ARGMAX_SPAN`]
//! columns) one workgroup per span of a row and then one per row over the spans' bests
//! (fixed 256-way trees; see the shader for why either answer is the CPU scan's, bit for
//! bit). It lets a decode step read back 4 bytes per row
//! instead of 4 x vocab. Also the launcher of `sample.wgsl`: temperature sampling with
//! top-k, top-p and min-p filters ([`ingot_tensor::Backend::sample`]), one workgroup per
//! row, so sampled rows read back ids too; penalties, bias and log-probabilities stay on
//! the host (see the runner's `model_runner.rs`). And the launcher of `top_logprobs.wgsl`
//! ([`ingot_tensor::Backend::top_logprobs`]): the chosen and `k` best tokens'
//! log-probabilities per row, one workgroup per row doing k + 2 passes over it, so a
//! log-probability row reads back 2 (1 + k) words instead of vocab.

use ingot_tensor::backend::Result;
use ingot_tensor::{DType, Shape};

use super::{Pipelines, u32_of};
use crate::params::{ArgmaxParams, SampleParams, TopLogprobsParams};
use crate::{T, WgpuBackend};

/// Columns per workgroup of the two-pass argmax: four loads per invocation, so a
/// 151,936-token row spreads over 149 workgroups instead of one.
pub(crate) const ARGMAX_SPAN: usize = 1024;

pub(crate) fn argmax(be: &WgpuBackend, p: &Pipelines, logits: &T) -> Result<T> {
    let gpu = &be.gpu;
    let (rows, vocab) = (logits.dims()[0], logits.dims()[1]);
    let out = be.output_typed(Shape::new([rows]), DType::U32, "argmax out")?;
    if rows == 0 {
        return Ok(out);
    }
    u32_of("logits elements", rows * vocab)?;
    // At most 256 spans (the merge's lanes), each a whole number of 256-wide sweeps.
    let span = ARGMAX_SPAN.max(vocab.div_ceil(256).next_multiple_of(256));
    let parts = vocab.div_ceil(span);
    let params = gpu.uniform(&ArgmaxParams {
        rows: u32_of("rows", rows)?,
        vocab: u32_of("vocab", vocab)?,
        parts: u32_of("argmax parts", parts)?,
        span: u32_of("argmax span", span)?,
    });
    let logits_buf = logits.storage().buffer("argmax logits")?;
    let out_buf = out.storage().buffer("argmax out")?;
    let (gx, gy) = gpu.grid(rows as u64)?;
    if parts == 1 {
        gpu.dispatch(
            "argmax",
            &p.argmax,
            &[(0, &params), (1, logits_buf), (2, out_buf)],
            (gx, gy, 1),
        )?;
        return Ok(out);
    }
    let partial = be.output_typed(Shape::new([rows, parts, 2]), DType::U32, "argmax parts")?;
    let partial_buf = partial.storage().buffer("argmax parts")?;
    let (px, py) = gpu.grid((rows * parts) as u64)?;
    gpu.dispatch(
        "argmax_partial",
        &p.argmax_partial,
        &[(0, &params), (1, logits_buf), (3, partial_buf)],
        (px, py, 1),
    )?;
    gpu.dispatch(
        "argmax_merge",
        &p.argmax_merge,
        &[
            (0, &params),
            (1, logits_buf),
            (2, out_buf),
            (3, partial_buf),
        ],
        (gx, gy, 1),
    )?;
    Ok(out)
}

pub(crate) fn sample(be: &WgpuBackend, p: &Pipelines, logits: &T, row_params: &T) -> Result<T> {
    let gpu = &be.gpu;
    let (rows, vocab) = (logits.dims()[0], logits.dims()[1]);
    let out = be.output_typed(Shape::new([rows]), DType::U32, "sample out")?;
    if rows == 0 {
        return Ok(out);
    }
    u32_of("logits elements", rows * vocab)?;
    let params = gpu.uniform(&SampleParams {
        rows: u32_of("rows", rows)?,
        vocab: u32_of("vocab", vocab)?,
        ..Default::default()
    });
    let (gx, gy) = gpu.grid(rows as u64)?;
    gpu.dispatch(
        "sample",
        &p.sample,
        &[
            (0, &params),
            (1, logits.storage().buffer("sample logits")?),
            (2, row_params.storage().buffer("sample params")?),
            (3, out.storage().buffer("sample out")?),
        ],
        (gx, gy, 1),
    )?;
    Ok(out)
}

pub(crate) fn top_logprobs(
    be: &WgpuBackend,
    p: &Pipelines,
    logits: &T,
    tokens: &T,
    k: usize,
) -> Result<T> {
    let gpu = &be.gpu;
    let (rows, vocab) = (logits.dims()[0], logits.dims()[1]);
    let width = ingot_tensor::sampling::top_logprobs_width(k);
    let out = be.output_typed(Shape::new([rows, width]), DType::F32, "top_logprobs out")?;
    if rows == 0 {
        return Ok(out);
    }
    u32_of("logits elements", rows * vocab)?;
    u32_of("top_logprobs elements", rows * width)?;
    let params = gpu.uniform(&TopLogprobsParams {
        rows: u32_of("rows", rows)?,
        vocab: u32_of("vocab", vocab)?,
        k: u32_of("k", k)?,
        ..Default::default()
    });
    let (gx, gy) = gpu.grid(rows as u64)?;
    gpu.dispatch(
        "top_logprobs",
        &p.top_logprobs,
        &[
            (0, &params),
            (1, logits.storage().buffer("top_logprobs logits")?),
            (2, tokens.storage().buffer("top_logprobs tokens")?),
            (3, out.storage().buffer("top_logprobs out")?),
        ],
        (gx, gy, 1),
    )?;
    Ok(out)
}
