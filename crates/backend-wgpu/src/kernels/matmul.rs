//! Launcher of `matmul.wgsl`: a GEMV kernel for few rows (`gemv_wide` up to
//! [`GEMV_WIDE_MAX_ROWS`] rows, `gemv_wide2` from [`GEMV_WIDE2_MIN_ROWS`] rows on, 16-byte
//! weight loads, when K is a multiple of 8; the scalar `gemv` up to [`GEMV_MAX_ROWS`]
//! otherwise), and above them the tiled GEMM (`gemm_big`'s 128x128 tiles where
//! [`gemm_big_pays`], else `gemm`'s 64x64); one dispatch per part of W. All kernels compute every element in the same
//! order (see the shader's header), so the switch between them never changes a bit: a row's
//! output is the same alone or in any batch.

use ingot_tensor::backend::Result;
use ingot_tensor::{BackendError, Op, Shape};

use super::{Pipelines, u32_of, weight_index};
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

pub(crate) fn matmul(be: &WgpuBackend, p: &Pipelines, x: &T, w: &T, bias: Option<&T>) -> Result<T> {
    // Cooperative matrices, where the adapter has them, for every T (see matmul_coop.rs).
    if let Some(y) = super::matmul_coop::matmul(be, p, x, w, bias)? {
        return Ok(y);
    }
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
    let wide = t <= GEMV_WIDE_MAX_ROWS && gemv_wide_fits(k);
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
    Ok(out)
}
