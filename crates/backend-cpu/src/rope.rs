//! Rotary position embedding (Su et al. 2021), in place on q [T, Hq, D] and k [T, Hk, D].
//!
//! The first `R = 2 * len(inv_freq)` dims of each head are rotated in pairs, the rest pass
//! through. Pair `i` turns by `angle = position * inv_freq[i]`. The angle is the f32
//! product, as Hugging Face computes it (`inv_freq.float() @ position_ids.float()`), so the
//! reference logits match; its cosine and sine are evaluated in f64 and rounded to f32,
//! i.e. correctly rounded values of the f32 angle. The table of R/2 (cos, sin) is built
//! once per token and shared by all heads. Tokens run in parallel.
//!
//! Pairs: NeoX / rotate-half (HF Llama) rotates `(i, i + R/2)`; interleaved (GPT-J, GGUF)
//! rotates `(2i, 2i + 1)`. Both compute `(a·cos − b·sin, b·cos + a·sin)`.

use ingot_tensor::RopeStyle;
use rayon::prelude::*;

/// Rotates the heads of one token's rows `x` [H, D] with the table `cs` [R/2] of (cos, sin).
#[inline]
fn rotate_token(x: &mut [f32], d: usize, cs: &[(f32, f32)], style: RopeStyle) {
    let half = cs.len();
    for head in x.chunks_exact_mut(d) {
        for (i, &(c, s)) in cs.iter().enumerate() {
            let (ia, ib) = match style {
                RopeStyle::Neox => (i, i + half),
                RopeStyle::Interleaved => (2 * i, 2 * i + 1),
            };
            let (a, b) = (head[ia], head[ib]);
            head[ia] = a * c - b * s;
            head[ib] = b * c + a * s;
        }
    }
}

/// Applies rotary embedding to `q` [T, Hq, D] and `k` [T, Hk, D] at `positions` [T].
pub(crate) fn rope(
    q: &mut [f32], // [T, Hq, D]
    k: &mut [f32], // [T, Hk, D]
    d: usize,
    positions: &[u32], // [T]
    inv_freq: &[f32],  // [R/2]
    style: RopeStyle,
) {
    let t = positions.len();
    if t == 0 || d == 0 {
        return;
    }
    let (q_row, k_row) = (q.len() / t, k.len() / t);
    let min_len = (4096 / (q_row + k_row).max(1)).max(1);
    q.par_chunks_mut(q_row.max(1))
        .zip(k.par_chunks_mut(k_row.max(1)))
        .zip(positions.par_iter())
        .with_min_len(min_len)
        .for_each(|((qr, kr), &pos)| {
            let cs: Vec<(f32, f32)> = inv_freq
                .iter()
                .map(|&f| {
                    let angle = (pos as f32 * f) as f64;
                    (angle.cos() as f32, angle.sin() as f32)
                })
                .collect();
            if q_row > 0 {
                rotate_token(qr, d, &cs, style);
            }
            if k_row > 0 {
                rotate_token(kr, d, &cs, style);
            }
        });
}
