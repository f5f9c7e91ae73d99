//! Launchers of `pointwise.wgsl` (silu_mul, gelu_tanh_mul, scale, add) and `gather.wgsl`
//! (gather_rows).

use ingot_tensor::backend::Result;
use ingot_tensor::{DType, Shape};

use super::{Pipelines, u32_of};
use crate::params::{GatherParams, PointwiseParams};
use crate::{T, WgpuBackend};

pub(crate) fn silu_mul(be: &WgpuBackend, p: &Pipelines, x: &T) -> Result<T> {
    gated(be, &p.silu_mul, "silu_mul", x)
}

pub(crate) fn gelu_tanh_mul(be: &WgpuBackend, p: &Pipelines, x: &T) -> Result<T> {
    gated(be, &p.gelu_tanh_mul, "gelu_tanh_mul", x)
}

/// `act(gate) * up` for `x` [T, 2I] with the pipeline of one activation.
fn gated(be: &WgpuBackend, pipeline: &wgpu::ComputePipeline, name: &str, x: &T) -> Result<T> {
    let gpu = &be.gpu;
    let (t, i) = (x.dims()[0], x.dims()[1] / 2);
    let out = be.output(Shape::new([t, i]), name)?;
    if t * i == 0 {
        return Ok(out);
    }
    let params = gpu.uniform(&PointwiseParams {
        n: u32_of("elements", t * i)?,
        inner: u32_of("inner", i)?,
        ..Default::default()
    });
    let (gx, gy) = gpu.grid((t * i).div_ceil(256) as u64)?;
    gpu.dispatch(
        name,
        pipeline,
        &[
            (0, &params),
            (1, x.storage().buffer(name)?),
            (3, out.storage().buffer(name)?),
        ],
        (gx, gy, 1),
    )?;
    Ok(out)
}

pub(crate) fn scale(be: &WgpuBackend, p: &Pipelines, x: &T, s: f32) -> Result<T> {
    let gpu = &be.gpu;
    let n = x.numel();
    let out = be.output(x.shape().clone(), "scale out")?;
    if n == 0 {
        return Ok(out);
    }
    let params = gpu.uniform(&PointwiseParams {
        n: u32_of("elements", n)?,
        scale: s,
        ..Default::default()
    });
    let (gx, gy) = gpu.grid(n.div_ceil(256) as u64)?;
    gpu.dispatch(
        "scale",
        &p.scale,
        &[
            (0, &params),
            (1, x.storage().buffer("scale x")?),
            (3, out.storage().buffer("scale out")?),
        ],
        (gx, gy, 1),
    )?;
    Ok(out)
}

pub(crate) fn add(be: &WgpuBackend, p: &Pipelines, a: &T, b: &T) -> Result<T> {
    let gpu = &be.gpu;
    let n = a.numel();
    let out = be.output(a.shape().clone(), "add out")?;
    if n == 0 {
        return Ok(out);
    }
    let params = gpu.uniform(&PointwiseParams {
        n: u32_of("elements", n)?,
        ..Default::default()
    });
    let (gx, gy) = gpu.grid(n.div_ceil(256) as u64)?;
    gpu.dispatch(
        "add",
        &p.add,
        &[
            (0, &params),
            (1, a.storage().buffer("add a")?),
            (2, b.storage().buffer("add b")?),
            (3, out.storage().buffer("add out")?),
        ],
        (gx, gy, 1),
    )?;
    Ok(out)
}

pub(crate) fn gather_rows(be: &WgpuBackend, p: &Pipelines, x: &T, idx: &T) -> Result<T> {
    let gpu = &be.gpu;
    let (src_rows, cols) = (x.dims()[0], x.dims()[1]);
    let s = idx.dims()[0];
    let dtype = x.dtype();
    let out = be.output_typed(Shape::new([s, cols]), dtype, "gather_rows out")?;
    let half = dtype.size_in_bytes() == 2;
    let words = if half {
        (s * cols).div_ceil(2)
    } else {
        s * cols
    };
    if words == 0 {
        return Ok(out);
    }
    debug_assert!(dtype != DType::U32 || !half);
    let params = gpu.uniform(&GatherParams {
        out_rows: u32_of("rows", s)?,
        cols: u32_of("cols", cols)?,
        src_rows: u32_of("rows", src_rows)?,
        half: half as u32,
        out_words: u32_of("words", words)?,
        ..Default::default()
    });
    let (gx, gy) = gpu.grid(words.div_ceil(256) as u64)?;
    gpu.dispatch(
        "gather_rows",
        &p.gather_rows,
        &[
            (0, &params),
            (1, x.storage().buffer("gather_rows x")?),
            (2, idx.storage().buffer("gather_rows idx")?),
            (3, out.storage().buffer("gather_rows out")?),
        ],
        (gx, gy, 1),
    )?;
    Ok(out)
}
