//! Mixture-of-experts verbs on the CPU. `moe_route` is [`ingot_tensor::moe::route_row`] per
//! token. `moe_experts_add` groups the step's (token, slot) pairs by expert, in slot order,
//! so each expert runs once over all its rows: two matmuls (the stacked gate/up rows of
//! expert e, then its down rows) through the same kernels as every projection, dense or in
//! GGUF blocks; experts without rows are not touched. Each output row of a matmul has one
//! reduction order whatever the rows around it (`matmul.rs`), and the weighted sum then runs
//! per token over its slots in order, so a token's result never depends on the others in
//! the step.

use ingot_tensor::moe::{MoeRouting, route_row};
use rayon::prelude::*;

use crate::matmul::{self, Isa, Weights};
use crate::pointwise;
use crate::quant::Activations;

/// Tokens per rayon task of routing and of the weighted sum.
const TOKENS_PER_TASK: usize = 16;

/// `logits` [T, E] -> (ids [T, k], weights [T, k]).
pub(crate) fn route(logits: &[f32], e: usize, routing: MoeRouting) -> (Vec<u32>, Vec<f32>) {
    let k = routing.top_k;
    let t = logits.len() / e;
    let mut ids = vec![u32::MAX; t * k]; // poisoned
    let mut weights = vec![f32::NAN; t * k];
    ids.par_chunks_mut(k)
        .zip(weights.par_chunks_mut(k))
        .zip(logits.par_chunks(e))
        .with_min_len(TOKENS_PER_TASK)
        .for_each(|((ids, w), row)| route_row(row, routing, ids, w));
    (ids, weights)
}

/// The shapes of one `moe_experts_add`.
pub(crate) struct Dims {
    pub tokens: usize,
    pub top_k: usize,
    pub experts: usize,
    pub hidden: usize,
    pub inner: usize,
}

/// The stacked expert weights as the matmul kernels read them.
pub(crate) struct Stack<'a> {
    pub gate_up: Weights<'a>, // [E, 2I, H]
    pub down: Weights<'a>,    // [E, H, I]
}

/// The always-on expert's output [T, H] and its gate logits [T] (sigmoid), if gated.
pub(crate) struct Shared<'a> {
    pub out: &'a [f32],
    pub gate: Option<&'a [f32]>,
}

/// `residual += moe(x)`, as `Backend::moe_experts_add` defines it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn experts_add(
    isa: Isa,
    mode: Activations,
    d: &Dims,
    x: &[f32],       // [T, H]
    ids: &[u32],     // [T, k]
    weights: &[f32], // [T, k]
    w: &Stack<'_>,
    shared: Option<Shared<'_>>,
    residual: &mut [f32], // [T, H]
) {
    let (h, i, k) = (d.hidden, d.inner, d.top_k);
    // Slots of each expert, ascending: slot s = t * k + j.
    let mut by_expert: Vec<Vec<usize>> = vec![Vec::new(); d.experts];
    for (s, &e) in ids.iter().enumerate() {
        if let Some(list) = by_expert.get_mut(e as usize) {
            list.push(s);
        }
    }
    let mut out = vec![f32::NAN; d.tokens * k * h]; // [T * k, H] by slot, poisoned
    for (e, slots) in by_expert.iter().enumerate() {
        if slots.is_empty() {
            continue;
        }
        let n = slots.len();
        let mut xe = Vec::with_capacity(n * h); // [n, H]
        for &s in slots {
            let t = s / k;
            xe.extend_from_slice(&x[t * h..(t + 1) * h]);
        }
        let gu_w = w.gate_up.rows(e * 2 * i..(e + 1) * 2 * i, h);
        let gu = matmul::matmul(isa, mode, &xe, gu_w, None, n, h, 2 * i); // [n, 2I]
        let act = pointwise::silu_mul(&gu, 2 * i); // [n, I]
        let down_w = w.down.rows(e * h..(e + 1) * h, i);
        let y = matmul::matmul(isa, mode, &act, down_w, None, n, i, h); // [n, H]
        for (r, &s) in slots.iter().enumerate() {
            out[s * h..(s + 1) * h].copy_from_slice(&y[r * h..(r + 1) * h]);
        }
    }
    // The weighted sum, per token, slots in order.
    let e_count = d.experts as u32;
    residual
        .par_chunks_mut(h)
        .enumerate()
        .with_min_len(TOKENS_PER_TASK)
        .for_each(|(t, res)| {
            let gate = shared.as_ref().map(|s| match s.gate {
                Some(g) => 1.0 / (1.0 + (-g[t]).exp()),
                None => 1.0,
            });
            for (c, r) in res.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for j in 0..k {
                    let s = t * k + j;
                    if ids[s] < e_count {
                        acc += weights[s] * out[s * h + c];
                    }
                }
                if let (Some(s), Some(g)) = (&shared, gate) {
                    acc += g * s.out[t * h + c];
                }
                *r += acc;
            }
        });
}
