//! Naive reference kernels on host slices, evaluated in f64 from the f32 inputs: the
//! obviously-correct definitions the backends' kernels are checked against. Each is the
//! textbook loop (no tiling, no online softmax), O(the math) with no care for speed.
//!
//! Definitions follow the kernels' contracts in `ingot-tensor` (DESIGN.md §4): RMSNorm as in
//! Llama, RoPE in the NeoX (split halves) or GPT-J (interleaved pairs) layout from f32 angles
//! `pos * inv_freq[i]`, SiLU-gated MLP input `[gate | up]`, causal (optionally windowed) GQA
//! attention.

use crate::paged::Scene;

/// RMSNorm of each row of `x` (row length `w.len()`): `x / sqrt(mean(x²) + eps) * w`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f64> {
    let h = w.len();
    x.chunks(h)
        .flat_map(|row| {
            let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / h as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            row.iter()
                .zip(w)
                .map(move |(&v, &w)| v as f64 * inv * w as f64)
        })
        .collect()
}

/// Llama-style inverse frequencies `theta^(-2i/rot)` for `i < rot / 2`, in f32.
pub fn inv_freq(theta: f32, rot: usize) -> Vec<f32> {
    (0..rot / 2)
        .map(|i| theta.powf(-((2 * i) as f32) / rot as f32))
        .collect()
}

/// Rotates one head at position `pos`: pairs `(i, i + rot/2)` when `interleaved` is false
/// (NeoX), `(2i, 2i + 1)` when true; dims past `2 * inv_freq.len()` pass through. The angle
/// is the f32 product `pos * inv_freq[i]` (as the kernels define it), then taken to f64.
pub fn rope_head(head: &[f32], pos: u32, inv_freq: &[f32], interleaved: bool) -> Vec<f64> {
    let mut out: Vec<f64> = head.iter().map(|&v| v as f64).collect();
    let half = inv_freq.len();
    for (i, &f) in inv_freq.iter().enumerate() {
        let angle = (pos as f32 * f) as f64;
        let (ia, ib) = if interleaved {
            (2 * i, 2 * i + 1)
        } else {
            (i, i + half)
        };
        let (a, b) = (head[ia] as f64, head[ib] as f64);
        out[ia] = a * angle.cos() - b * angle.sin();
        out[ib] = b * angle.cos() + a * angle.sin();
    }
    out
}

/// `silu(gate) * up` for rows `[gate (i) | up (i)]` of length `2 * i`; output `[T, i]`.
pub fn silu_mul(x: &[f32], i: usize) -> Vec<f64> {
    x.chunks(2 * i)
        .flat_map(|row| {
            (0..i).map(move |j| {
                let g = row[j] as f64;
                g / (1.0 + (-g).exp()) * row[i + j] as f64
            })
        })
        .collect()
}

/// `gelu_tanh(gate) * up` (GELU's tanh approximation, in f64) for rows `[gate (i) | up (i)]`
/// of length `2 * i`; output `[T, i]`.
pub fn gelu_tanh_mul(x: &[f32], i: usize) -> Vec<f64> {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    x.chunks(2 * i)
        .flat_map(|row| {
            (0..i).map(move |j| {
                let g = row[j] as f64;
                0.5 * g * (1.0 + (k * (g + 0.044715 * g * g * g)).tanh()) * row[i + j] as f64
            })
        })
        .collect()
}

/// Plain causal attention over each sequence's contiguous K/V, for `(sequence, context
/// length, query count)` triples: the queries are the last `query count` positions, each
/// attends to positions `max(0, pos + 1 - window)..=pos` with scale `1/sqrt(D)`; query head
/// `h` reads KV head `h / (Hq / Hk)`. Output `[sum of query counts, Hq, D]`, the layout of
/// the paged kernel's output.
pub fn attention(
    scene: &Scene,
    parts: &[(usize, usize, usize)],
    window: Option<usize>,
) -> Vec<f64> {
    let g = scene.geo;
    let group = g.hq / g.hk;
    let scale = 1.0 / (g.d as f64).sqrt();
    let mut out = Vec::new();
    for &(s, len, q_len) in parts {
        let seq = &scene.seqs[s];
        for pos in len - q_len..len {
            for h in 0..g.hq {
                let kvh = h / group;
                let q = &seq.q[(pos * g.hq + h) * g.d..][..g.d];
                let start = window.map_or(0, |w| (pos + 1).saturating_sub(w));
                let scores: Vec<f64> = (start..=pos)
                    .map(|p| {
                        let k = &seq.k[(p * g.hk + kvh) * g.d..][..g.d];
                        q.iter()
                            .zip(k)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for i in 0..g.d {
                    let acc: f64 = (start..=pos)
                        .zip(&e)
                        .map(|(p, w)| w * seq.v[(p * g.hk + kvh) * g.d + i] as f64)
                        .sum();
                    out.push(acc / z);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paged::{Geo, Scene};
    use crate::rng::Rng;

    #[test]
    fn hand_checked_values() {
        let n = rms_norm(&[3.0, 4.0], &[1.0, 2.0], 0.0);
        let inv = 1.0 / 12.5f64.sqrt();
        assert!((n[0] - 3.0 * inv).abs() < 1e-12 && (n[1] - 8.0 * inv).abs() < 1e-12);
        // A quarter turn at pos 1 with inv_freq pi/2 maps (1, 0) to (0, 1).
        let r = rope_head(&[1.0, 0.0], 1, &[std::f32::consts::FRAC_PI_2], false);
        assert!(r[0].abs() < 1e-6 && (r[1] - 1.0).abs() < 1e-6);
        let s = silu_mul(&[0.0, 5.0], 1);
        assert_eq!(s, vec![0.0]);
        let f = inv_freq(10000.0, 4);
        assert!(f.len() == 2 && f[0] == 1.0 && (f[1] - 0.01).abs() < 1e-7);
    }

    #[test]
    fn window_of_one_returns_own_value() {
        let mut rng = Rng::new(5);
        let geo = Geo::new(4, 2, 8, 3);
        let scene = Scene::new(&mut rng, geo, &[7]);
        let out = attention(&scene, &[(0, 7, 7)], Some(1));
        for pos in 0..7 {
            for h in 0..4 {
                let want = &scene.seqs[0].v[(pos * 2 + h / 2) * 8..][..8];
                let got = &out[(pos * 4 + h) * 8..][..8];
                for (g, w) in got.iter().zip(want) {
                    assert!((g - *w as f64).abs() < 1e-12);
                }
            }
        }
    }
}
