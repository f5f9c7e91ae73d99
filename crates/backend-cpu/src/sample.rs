//! The `sample` verb on the host: temperature sampling with top-k, top-p and min-p filters,
//! by thresholds and Gumbel-max over counter-based noise (the definition is the doc of
//! `Backend::sample`). It mirrors `argmax.wgsl`-style GPU code step for step: the same
//! order keys, the same 32-step bisections on keys, and the same fixed 256-lane sum order,
//! so the two agree bit for bit wherever `/`, `exp` and `ln` round alike.
//!
//! Also the `top_logprobs` verb: per row a max, a sum of `exp` in the fixed 256-lane order
//! (the GPU's), and the top `k` by partial selection under the shared ranking
//! (`ingot_tensor::backend::rank_cmp`, the host sampler's), O(V + k log k) per row.
//!
//! Cost per row: one pass for the maximum, 32 counting passes for top-k and 33 summing
//! passes (each recomputing `exp`) for top-p when those filters are on, one final pass.
//! Rows are independent and run in parallel.

use ingot_tensor::backend::{SAMPLE_PARAM_WORDS, rank_cmp, sample_uniform, top_logprobs_width};
use rayon::prelude::*;

/// Lanes of the fixed reduction order (the GPU workgroup size).
const LANES: usize = 256;

/// An unsigned key ordered as the f32 values are: NaN -> 0, below every number; -0 and +0
/// -> the same key (as in `argmax.wgsl`).
pub(crate) fn order_key(x: f32) -> u32 {
    let bits = x.to_bits();
    if x.is_nan() {
        0
    } else if bits == 0x8000_0000 {
        0x8000_0000
    } else if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// The sum of `f(i)` over `0..n` in the fixed order: lane `l` adds `l, l + 256, ...` in
/// turn, then the lanes meet in a binary tree.
fn fixed_sum(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    for (l, acc) in lanes.iter_mut().enumerate() {
        let mut c = l;
        while c < n {
            *acc += f(c);
            c += LANES;
        }
    }
    let mut h = LANES / 2;
    while h > 0 {
        for l in 0..h {
            lanes[l] += lanes[l + h];
        }
        h /= 2;
    }
    lanes[0]
}

/// The largest key `t` for which `pred(t)` holds, for a predicate that holds at 0 and
/// never at `u32::MAX` and is monotone (true below some key, false above): 32 halvings of
/// `[lo, hi)`.
fn bisect(pred: impl Fn(u32) -> bool) -> u32 {
    let (mut lo, mut hi) = (0u32, u32::MAX);
    for _ in 0..32 {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// One row of `Backend::sample`: `row` [V] (V >= 1) with its params [8].
pub fn sample_row(row: &[f32], prm: &[u32]) -> u32 {
    let v = row.len();
    let temperature = f32::from_bits(prm[0]);
    let greedy = temperature.is_nan() || temperature <= 0.0;
    let scaled = |i: usize| {
        if greedy { row[i] } else { row[i] / temperature }
    };
    // Step 2: the largest key and its first index.
    let (mut best_key, mut best) = (0u32, 0usize);
    for i in 0..v {
        let k = order_key(scaled(i));
        if k > best_key {
            (best_key, best) = (k, i);
        }
    }
    let m = scaled(best);
    if greedy || !m.is_finite() {
        return best as u32;
    }
    let p = |i: usize| {
        let s = scaled(i);
        if s.is_nan() { 0.0 } else { (s - m).exp() }
    };
    let key = |i: usize| order_key(scaled(i));
    // Step 4: top-k threshold.
    let top_k = prm[1] as usize;
    let t_k = if top_k > 0 && top_k < v {
        bisect(|t| (0..v).filter(|&i| key(i) >= t).count() >= top_k)
    } else {
        0
    };
    // Step 5: top-p threshold.
    let top_p = f32::from_bits(prm[2]);
    let t_p = if top_p > 0.0 && top_p < 1.0 {
        let mass = |t: u32| fixed_sum(v, |i| if key(i) >= t { p(i) } else { 0.0 });
        let z = mass(t_k);
        let need = top_p * z;
        bisect(|t| mass(t.max(t_k)) >= need)
    } else {
        0
    };
    let t = t_k.max(t_p);
    let min_p = f32::from_bits(prm[3]).min(1.0);
    let (seed_lo, seed_hi, counter) = (prm[4], prm[5], prm[6]);
    // Step 7: Gumbel-max over what stays.
    let (mut best_key, mut best_i) = (0u32, u32::MAX);
    for i in 0..v {
        let pi = p(i);
        let keep = key(i) >= t && pi > 0.0 && (min_p <= 0.0 || pi >= min_p);
        if !keep {
            continue;
        }
        let u = sample_uniform(seed_lo, seed_hi, counter, i as u32);
        let g = -(-u.ln()).ln();
        let k = order_key(scaled(i) + g);
        if k > best_key || best_i == u32::MAX {
            (best_key, best_i) = (k, i as u32);
        }
    }
    best_i
}

/// Every row of `logits` [R, V] with `params` [R, 8] -> [R].
pub(crate) fn sample(logits: &[f32], v: usize, params: &[u32]) -> Vec<u32> {
    logits
        .par_chunks(v)
        .zip(params.par_chunks(SAMPLE_PARAM_WORDS))
        .map(|(row, prm)| sample_row(row, prm))
        .collect()
}

/// `top_logprobs` of every row of `logits` [rows, v] for `tokens` [rows] -> [rows, 2 (1 + k)]
/// (the layout and arithmetic are the doc of `Backend::top_logprobs`).
pub(crate) fn top_logprobs(logits: &[f32], v: usize, tokens: &[u32], k: usize) -> Vec<f32> {
    let w = top_logprobs_width(k);
    let mut out = vec![0.0f32; tokens.len() * w];
    out.par_chunks_mut(w)
        .zip(logits.par_chunks(v))
        .zip(tokens.par_iter())
        .for_each(|((o, row), &token)| top_logprobs_row(row, token, k, o));
    out
}

/// One row of [`top_logprobs`] into `out` [2 (1 + k)].
fn top_logprobs_row(row: &[f32], token: u32, k: usize, out: &mut [f32]) {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut lanes = [0.0f32; LANES];
    for (c, &x) in row.iter().enumerate() {
        lanes[c % LANES] += (x - m).exp();
    }
    let mut h = LANES / 2;
    while h > 0 {
        for l in 0..h {
            lanes[l] += lanes[l + h];
        }
        h /= 2;
    }
    let lse = m + lanes[0].ln();
    out[0] = f32::from_bits(token);
    out[1] = row.get(token as usize).map_or(f32::NAN, |&x| x - lse);
    let mut top: Vec<(u32, f32)> = row
        .iter()
        .enumerate()
        .map(|(i, &x)| (i as u32, x))
        .collect();
    if k > 0 && k < top.len() {
        top.select_nth_unstable_by(k - 1, rank_cmp);
    }
    top.truncate(k);
    top.sort_unstable_by(rank_cmp);
    for (j, (i, x)) in top.into_iter().enumerate() {
        out[2 + 2 * j] = f32::from_bits(i);
        out[3 + 2 * j] = x - lse;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingot_tensor::backend::{argmax_row, sample_params};

    fn prm(t: f32, k: u32, top_p: f32, min_p: f32, seed: u64, counter: u32) -> [u32; 8] {
        sample_params(t, k, top_p, min_p, seed, counter)
    }

    /// Random rows from a small deterministic generator.
    fn rows(n: usize, v: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = ingot_testkit::rng::Rng::new(seed);
        (0..n)
            .map(|_| rng.vec(v).iter().map(|x| x * 4.0).collect())
            .collect()
    }

    #[test]
    fn top_k_one_is_argmax() {
        for (r, row) in rows(50, 300, 1).iter().enumerate() {
            for counter in 0..5 {
                let got = sample_row(row, &prm(0.9, 1, 1.0, 0.0, r as u64, counter));
                assert_eq!(got, argmax_row(row));
            }
        }
        // Greedy rows (temperature 0) are the argmax too.
        let row = [0.5, 2.0, -1.0, 2.0];
        assert_eq!(sample_row(&row, &prm(0.0, 0, 1.0, 0.0, 1, 2)), 1);
    }

    #[test]
    fn frequencies_follow_the_softmax() {
        let logits = [1.0f32, 0.3, -0.5, 2.0, 0.0];
        for t in [0.7f32, 1.3] {
            let z: f64 = logits.iter().map(|&x| (x as f64 / t as f64).exp()).sum();
            let n = 20_000;
            let mut seen = [0usize; 5];
            for c in 0..n {
                seen[sample_row(&logits, &prm(t, 0, 1.0, 0.0, 99, c)) as usize] += 1;
            }
            for i in 0..5 {
                let expect = (logits[i] as f64 / t as f64).exp() / z;
                let got = seen[i] as f64 / n as f64;
                assert!(
                    (got - expect).abs() < 0.015,
                    "T {t} token {i}: {got} vs {expect}"
                );
            }
        }
    }

    #[test]
    fn top_p_and_min_p_exclude_the_tail() {
        // Probabilities ~ [0.64, 0.24, 0.09, 0.03] (T = 1).
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let cases = [
            prm(1.0, 0, 0.8, 0.0, 5, 0), // nucleus: the first two reach 0.88
            prm(1.0, 0, 1.0, 0.2, 5, 0), // min-p floor 0.2 * p_max: e^-1 = 0.37 stays
            prm(1.0, 2, 1.0, 0.0, 5, 0), // top-2
            prm(1.0, 3, 0.7, 0.3, 5, 0), // combined
        ];
        for base in cases {
            let mut seen = [0; 4];
            for c in 0..3000 {
                let mut q = base;
                q[6] = c;
                seen[sample_row(&logits, &q) as usize] += 1;
            }
            assert!(seen[0] > 0 && seen[1] > 0, "{base:?}: {seen:?}");
            assert_eq!(seen[2] + seen[3], 0, "{base:?}: {seen:?}");
        }
        // top_p just under the first token's mass keeps only it.
        for c in 0..200 {
            assert_eq!(sample_row(&logits, &prm(1.0, 0, 0.6, 0.0, 1, c)), 0);
        }
    }

    #[test]
    fn top_k_keeps_ties_at_the_threshold() {
        let logits = [1.0f32, 3.0, 2.0, 2.0, 0.0];
        let mut seen = [0; 5];
        for c in 0..3000 {
            seen[sample_row(&logits, &prm(1.0, 2, 1.0, 0.0, 3, c)) as usize] += 1;
        }
        assert!(seen[1] > 0 && seen[2] > 0 && seen[3] > 0, "{seen:?}");
        assert_eq!(seen[0] + seen[4], 0, "{seen:?}");
    }

    #[test]
    fn same_seed_and_counter_same_token() {
        let rs = rows(4, 1000, 7);
        for row in &rs {
            let draw = |seed, c| sample_row(row, &prm(1.0, 0, 0.95, 0.0, seed, c));
            let a: Vec<u32> = (0..40).map(|c| draw(42, c)).collect();
            let b: Vec<u32> = (0..40).map(|c| draw(42, c)).collect();
            let other: Vec<u32> = (0..40).map(|c| draw(43 << 32, c)).collect();
            assert_eq!(a, b);
            assert_ne!(a, other);
        }
    }

    #[test]
    fn degenerate_rows() {
        let (inf, nan) = (f32::INFINITY, f32::NAN);
        let q = prm(0.8, 0, 0.9, 0.1, 1, 1);
        assert_eq!(sample_row(&[-inf, -inf, -inf], &q), 0);
        assert_eq!(sample_row(&[nan, nan], &q), 0);
        assert_eq!(sample_row(&[1.0, inf, inf], &q), 1);
        // NaNs and -inf never win while a finite value exists.
        for c in 0..100 {
            let q = prm(1.5, 0, 1.0, 0.0, 2, c);
            let got = sample_row(&[nan, -inf, 0.0, nan, -1.0], &q);
            assert!(got == 2 || got == 4, "{got}");
        }
    }
}
