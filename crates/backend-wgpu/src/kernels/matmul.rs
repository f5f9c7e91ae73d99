//! Launcher of `matmul.wgsl`: a GEMV kernel for few rows (`gemv_wide` up to
//! [`GEMV_WIDE_MAX_ROWS`] rows, `gemv_wide2` from [`GEMV_WIDE2_MIN_ROWS`] rows on, 16-byte
//! weight loads, when K is a multiple of 8; the scalar `gemv` up to [`GEMV_MAX_ROWS`]
//! otherwise), and above them the tiled GEMM (`gemm_big`'s 128x128 tiles where
//! [`gemm_big_pays`], else `gemm`'s 64x64); one dispatch per part of W. All kernels compute every element in the same
//! order (see the shader's header), so the switch between them never changes a bit: a row's
//! output is the same alone or in any batch.
//!
//! The fused verbs share these kernels through their epilogue: `matmul_add` updates the
//! residual in place (every kernel), `matmul_silu_mul` runs `gemv_wide2` in its gate/up mode
//! up to [`GEMV_WIDE_MAX_ROWS`] rows and the plain matmul + `silu_mul` above.
//!
//! Weights kept in GGUF blocks (`blocks.rs`) take `gemv_q` up to [`GEMV_WIDE_MAX_ROWS`] rows
//! (its gate/up mode for `matmul_silu_mul`) and the same two GEMMs above, compiled with the
//! format's decoding: the same order again, so the bits do not depend on T either.

use ingot_tensor::backend::Result;
use ingot_tensor::{BackendError, Op, Shape};

use super::{Pipelines, QuantPipelines, quant_index, u32_of, weight_index};
use crate::params::MatmulParams;
use crate::{T, WgpuBackend};

/// Largest T for which the scalar `gemv` runs.
pub const GEMV_MAX_ROWS: usize = 16;

/// Largest T for which `gemv_wide`/`gemv_wide2` run (one pass over W per 16 rows). On the
/// H200 (2026-11-27) four passes of `gemv_wide2` at T=64 beat the tiled GEMM on every
/// Qwen2-0.5B shape (e.g. W[896, 4864]: ~150 µs vs 668 µs); by T=512 the GEMM wins.
pub const GEMV_WIDE_MAX_ROWS: usize = 64;

/// Output columns per `gemv_wide` workgroup for rows of `k` elements: 256 invocations split
/// into chunk lanes (the chunk count's next power of two, clamped to 8..=32) and columns.
/// Mirrors `wide_lanes` in `matmul.wgsl`.
pub(crate) fn gemv_wide_cols(k: usize) -> usize {
    let lanes = k.div_ceil(128).next_power_of_two().clamp(8, 32);
    256 / lanes
}

/// Smallest T for which `gemv_wide2` (two columns per invocation) runs instead of
/// `gemv_wide`: with more rows, x loads rather than weight bytes limit `gemv_wide`.
pub(crate) const GEMV_WIDE2_MIN_ROWS: usize = 5;

/// Whether the 128x128-tile `gemm_big` runs instead of `gemm` (64x64 tiles) for T rows and
/// N output columns: when it still gives at least 256 workgroups. On the H100
/// (2026-11-27, kernels_bench) it ran 1.3-1.6x faster at T=8192 on the Qwen2-0.5B shapes
/// with N >= 896 and f32 or f16 weights, and slower where its grid is small (T=512 with
/// N=896, N=128). Both compute the same per-element sequence, so the rule never changes a
/// bit.
pub(crate) fn gemm_big_pays(t: usize, n: usize) -> bool {
    t.div_ceil(128) * n.div_ceil(128) >= 256
}

/// Whether `gemv_wide` can run: both W's and x's rows must start on 16-byte boundaries.
pub(crate) fn gemv_wide_fits(k: usize) -> bool {
    k > 0 && k.is_multiple_of(8)
}

/// Whether the cooperative-matrix matmul serves `w` (then it serves every T, and the fused
/// epilogues run as its output followed by the pointwise kernel).
fn coop_serves(p: &Pipelines, w: &T) -> bool {
    p.coop.is_some() && w.dtype() == ingot_tensor::DType::F16
}

pub(crate) fn matmul(be: &WgpuBackend, p: &Pipelines, x: &T, w: &T, bias: Option<&T>) -> Result<T> {
    // Cooperative matrices, where the adapter has them, for every T (see matmul_coop.rs).
    if let Some(y) = super::matmul_coop::matmul(be, p, x, w, bias)? {
        return Ok(y);
    }
    let out = be.output(Shape::new([x.dims()[0], w.dims()[0]]), "matmul out")?;
    record(be, p, x, w, bias, &out, false)?;
    Ok(out)
}

/// `residual += x W^T (+ bias)`: the SIMT kernels' accumulating epilogue, one dispatch.
pub(crate) fn matmul_add(
    be: &WgpuBackend,
    p: &Pipelines,
    x: &T,
    w: &T,
    bias: Option<&T>,
    residual: &mut T,
) -> Result<()> {
    if coop_serves(p, w) {
        let y = matmul(be, p, x, w, bias)?;
        *residual = super::pointwise::add(be, p, residual, &y)?;
        return Ok(());
    }
    record(be, p, x, w, bias, residual, true)
}

/// `silu(x Wg^T) * (x Wu^T)` for W = [gate | up] [2I, K]: `gemv_wide2` with both columns of
/// an output in one invocation, where it serves T (and W is one buffer); elsewhere the
/// matmul then `silu_mul`, which give the same bits (see `matmul.wgsl`).
pub(crate) fn matmul_silu_mul(be: &WgpuBackend, p: &Pipelines, x: &T, w: &T) -> Result<T> {
    let gpu = &be.gpu;
    let (t, k, inner) = (x.dims()[0], x.dims()[1], w.dims()[0] / 2);
    let fused = !coop_serves(p, w)
        && t <= GEMV_WIDE_MAX_ROWS
        && gemv_wide_fits(k)
        && w.storage().parts.len() == 1;
    let kernel = match (weight_index(w.dtype()), quant_index(w.dtype())) {
        (Some(wi), _) => Some(("gemv_wide2 silu_mul", &p.gemv_wide2[wi], 5, 6)),
        (None, Some(qi)) => Some(("gemv_q silu_mul", &p.quant(gpu, qi)?.gemv_q, 1, 6)),
        (None, None) => None,
    };
    let (true, Some((label, pipeline, wslot, xslot))) = (fused, kernel) else {
        let gate_up = matmul(be, p, x, w, None)?;
        return super::pointwise::silu_mul(be, p, &gate_up);
    };
    let out = be.output(Shape::new([t, inner]), "matmul_silu_mul out")?;
    if t * inner == 0 {
        return Ok(out);
    }
    let params = gpu.uniform(&MatmulParams {
        rows: u32_of("rows", t)?,
        k: u32_of("k", k)?,
        n_total: u32_of("n", 2 * inner)?,
        n_start: 0,
        n_count: u32_of("n", 2 * inner)?,
        has_bias: 0,
        accumulate: 0,
        silu_inner: u32_of("n", inner)?,
    });
    let groups = (inner.div_ceil(gemv_wide_cols(k)), t.div_ceil(16));
    gpu.dispatch(
        label,
        pipeline,
        &[
            (0, &params),
            (wslot, &w.storage().parts[0].buffer),
            (xslot, x.storage().buffer("matmul_silu_mul x")?),
            (3, &gpu.dummy),
            (4, out.storage().buffer("matmul_silu_mul out")?),
        ],
        (u32_of("groups", groups.0)?, u32_of("groups", groups.1)?, 1),
    )?;
    Ok(out)
}

/// Records `out = x W^T (+ bias)`, or `out +=` with `accumulate`, on the SIMT kernel that
/// suits T and K; one dispatch per part of W.
fn record(
    be: &WgpuBackend,
    p: &Pipelines,
    x: &T,
    w: &T,
    bias: Option<&T>,
    out: &T,
    accumulate: bool,
) -> Result<()> {
    let gpu = &be.gpu;
    let (t, k, n) = (x.dims()[0], x.dims()[1], w.dims()[0]);
    let quant = match quant_index(w.dtype()) {
        Some(qi) => Some(p.quant(gpu, qi)?),
        None => None,
    };
    let wi = weight_index(w.dtype());
    if wi.is_none() && quant.is_none() {
        return Err(BackendError::Unsupported {
            op: Op::Matmul,
            dtype: w.dtype(),
            backend: "wgpu",
        });
    }
    if t * n == 0 {
        return Ok(());
    }
    let xb = x.storage().buffer("matmul x")?;
    let bb = match bias {
        Some(b) => b.storage().buffer("matmul bias")?,
        None => &gpu.dummy,
    };
    let ob = out.storage().buffer("matmul out")?;
    let wide = t <= GEMV_WIDE_MAX_ROWS && gemv_wide_fits(k);
    let gemv = t <= GEMV_MAX_ROWS;
    for part in &w.storage().parts {
        if let Some(q) = quant {
            record_quant(
                be,
                q,
                (t, k, n),
                part,
                bias.is_some(),
                accumulate,
                [xb, bb, ob],
            )?;
            continue;
        }
        let wi = wi.expect("a dense weight dtype (checked above)");
        let params = gpu.uniform(&MatmulParams {
            rows: u32_of("rows", t)?,
            k: u32_of("k", k)?,
            n_total: u32_of("n", n)?,
            n_start: u32_of("n", part.first_row)?,
            n_count: u32_of("n", part.rows)?,
            has_bias: bias.is_some() as u32,
            accumulate: accumulate as u32,
            silu_inner: 0,
        });
        let weights = if wide { 5 } else { 1 };
        let acts = if wide { 6 } else { 2 };
        let buffers = [
            (0, &params),
            (weights, &part.buffer),
            (acts, xb),
            (3, bb),
            (4, ob),
        ];
        let (label, pipeline, groups) = if wide && t >= GEMV_WIDE2_MIN_ROWS {
            let cols = 2 * gemv_wide_cols(k);
            let g = (part.rows.div_ceil(cols), t.div_ceil(16));
            ("gemv_wide2", &p.gemv_wide2[wi], g)
        } else if wide {
            let cols = gemv_wide_cols(k);
            let g = (part.rows.div_ceil(cols), t.div_ceil(16));
            ("gemv_wide", &p.gemv_wide[wi], g)
        } else if gemv {
            ("gemv", &p.gemv[wi], (part.rows.div_ceil(32), t.div_ceil(8)))
        } else if gemm_big_pays(t, part.rows) {
            let g = (part.rows.div_ceil(128), t.div_ceil(128));
            ("gemm_big", &p.gemm_big[wi], g)
        } else {
            (
                "gemm",
                &p.gemm[wi],
                (part.rows.div_ceil(64), t.div_ceil(64)),
            )
        };
        gpu.dispatch(
            label,
            pipeline,
            &buffers,
            (u32_of("groups", groups.0)?, u32_of("groups", groups.1)?, 1),
        )?;
    }
    Ok(())
}

/// One part of a weight in GGUF blocks: `gemv_q` up to [`GEMV_WIDE_MAX_ROWS`] rows, the
/// format's `gemm_big` / `gemm` above (their choice as for dense weights). `[x, bias, out]`.
fn record_quant(
    be: &WgpuBackend,
    q: &QuantPipelines,
    (t, k, n): (usize, usize, usize),
    part: &crate::storage::Part,
    has_bias: bool,
    accumulate: bool,
    [xb, bb, ob]: [&wgpu::Buffer; 3],
) -> Result<()> {
    let gpu = &be.gpu;
    let params = gpu.uniform(&MatmulParams {
        rows: u32_of("rows", t)?,
        k: u32_of("k", k)?,
        n_total: u32_of("n", n)?,
        n_start: u32_of("n", part.first_row)?,
        n_count: u32_of("n", part.rows)?,
        has_bias: has_bias as u32,
        accumulate: accumulate as u32,
        silu_inner: 0,
    });
    let (label, pipeline, xslot, groups) = if t <= GEMV_WIDE_MAX_ROWS {
        let g = (part.rows.div_ceil(gemv_wide_cols(k)), t.div_ceil(16));
        ("gemv_q", &q.gemv_q, 6, g)
    } else if gemm_big_pays(t, part.rows) {
        let g = (part.rows.div_ceil(128), t.div_ceil(128));
        ("gemm_big blocks", &q.gemm_big, 2, g)
    } else {
        let g = (part.rows.div_ceil(64), t.div_ceil(64));
        ("gemm blocks", &q.gemm, 2, g)
    };
    gpu.dispatch(
        label,
        pipeline,
        &[
            (0, &params),
            (1, &part.buffer),
            (xslot, xb),
            (3, bb),
            (4, ob),
        ],
        (u32_of("groups", groups.0)?, u32_of("groups", groups.1)?, 1),
    )
}
