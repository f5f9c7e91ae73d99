//! RMS norm (Zhang & Sennrich 2019) with vLLM's fused residual add: per row of `x` [T, H],
//! `y = x / sqrt(mean(x²) + eps) * w`, the sum of squares reduced in the crate's fixed lane
//! order (`lanes.rs`) so a row's result never depends on the batch. The fused form first
//! adds `x` into the residual stream in place and normalises the updated residual, saving
//! one pass over [T, H] per layer. Rows run in parallel when the tensor is large.

use crate::lanes::sum_sq;
use rayon::prelude::*;

/// Rows per rayon task, chosen so a task touches at least ~16k elements.
fn rows_per_task(h: usize) -> usize {
    (16 * 1024 / h.max(1)).max(1)
}

/// Normalises one row: `y = w * (x * inv_rms)`, the order of HF Llama's `LlamaRMSNorm`.
#[inline]
fn norm_row(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let mean = sum_sq(x) / x.len() as f32;
    let inv = 1.0 / (mean + eps).sqrt();
    for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
        *y = w * (x * inv);
    }
}

/// `x` [T, H], `w` [H] -> [T, H]; with `residual` [T, H]: `residual += x` first and the
/// updated residual is normalised.
pub(crate) fn rms_norm(x: &[f32], residual: Option<&mut [f32]>, w: &[f32], eps: f32) -> Vec<f32> {
    let h = w.len();
    let mut out = vec![f32::NAN; x.len()]; // [T, H], poisoned
    if h == 0 {
        return out;
    }
    let min_len = rows_per_task(h);
    match residual {
        None => out
            .par_chunks_mut(h)
            .zip(x.par_chunks(h))
            .with_min_len(min_len)
            .for_each(|(y, x)| norm_row(x, w, eps, y)),
        Some(res) => out
            .par_chunks_mut(h)
            .zip(x.par_chunks(h))
            .zip(res.par_chunks_mut(h))
            .with_min_len(min_len)
            .for_each(|((y, x), r)| {
                for (r, &x) in r.iter_mut().zip(x) {
                    *r += x;
                }
                norm_row(r, w, eps, y);
            }),
    }
    out
}
