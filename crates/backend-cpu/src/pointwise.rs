//! Elementwise verbs: `silu_mul` and `gelu_tanh_mul` (the gated MLPs' `act(gate) * up`),
//! `scale` and `add`, plus the
//! row-wise `argmax` (one sequential scan per row, [`ingot_tensor::sampling::argmax_row`],
//! the same definition the runner's sampler uses). No reduction crosses rows, so batch
//! invariance is automatic; rows run in parallel when large.

use ingot_tensor::sampling::argmax_row;
use rayon::prelude::*;

/// Elements per rayon task.
const MIN_TASK: usize = 16 * 1024;

/// `x` [T, 2I] = [gate | up] -> `silu(gate) * up` [T, I].
pub(crate) fn silu_mul(x: &[f32], two_i: usize) -> Vec<f32> {
    // silu(g) = g * sigmoid(g) = g / (1 + e^-g); e^-g = inf gives -0, as it should.
    gated(x, two_i, |g| g / (1.0 + (-g).exp()))
}

/// `x` [T, 2I] = [gate | up] -> `gelu_tanh(gate) * up` [T, I].
pub(crate) fn gelu_tanh_mul(x: &[f32], two_i: usize) -> Vec<f32> {
    gated(x, two_i, gelu_tanh)
}

/// GELU with the tanh approximation, in f32 as PyTorch's CPU kernel evaluates it:
/// `0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3)))`. `tanh` saturates to +-1 for large
/// arguments, so no input overflows.
pub(crate) fn gelu_tanh(g: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let inner = SQRT_2_OVER_PI * (g + 0.044715 * g * g * g);
    0.5 * g * (1.0 + inner.tanh())
}

/// `act(gate) * up` row by row.
fn gated(x: &[f32], two_i: usize, act: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let i = two_i / 2;
    let mut out = vec![f32::NAN; x.len() / 2]; // [T, I], poisoned
    if i == 0 {
        return out;
    }
    out.par_chunks_mut(i)
        .zip(x.par_chunks(two_i))
        .with_min_len((MIN_TASK / two_i).max(1))
        .for_each(|(y, x)| {
            let (gate, up) = x.split_at(i);
            for ((y, &g), &u) in y.iter_mut().zip(gate).zip(up) {
                *y = act(g) * u;
            }
        });
    out
}

/// `x * s`.
pub(crate) fn scale(x: &[f32], s: f32) -> Vec<f32> {
    let mut out = vec![f32::NAN; x.len()]; // poisoned
    out.par_chunks_mut(MIN_TASK)
        .zip(x.par_chunks(MIN_TASK))
        .for_each(|(y, x)| {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = x * s;
            }
        });
    out
}

/// `a + b`, same lengths.
pub(crate) fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut out = vec![f32::NAN; a.len()]; // poisoned
    out.par_chunks_mut(MIN_TASK)
        .zip(a.par_chunks(MIN_TASK).zip(b.par_chunks(MIN_TASK)))
        .for_each(|(y, (a, b))| {
            for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
                *y = a + b;
            }
        });
    out
}

/// Per row of `x` [T, V] (V >= 1), the index of its largest value -> [T].
pub(crate) fn argmax(x: &[f32], v: usize) -> Vec<u32> {
    let mut out = vec![u32::MAX; x.len() / v]; // [T], poisoned
    out.par_iter_mut()
        .zip(x.par_chunks(v))
        .with_min_len((MIN_TASK / v).max(1))
        .for_each(|(y, row)| *y = argmax_row(row));
    out
}
