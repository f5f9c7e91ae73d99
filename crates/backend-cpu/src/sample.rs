//! The `sample` and `top_logprobs` verbs on the host: each row through the one definition
//! in `ingot_tensor::sampling` (`sample_row`, `top_logprobs_row`), rows in parallel. The
//! tests here pin that definition's behaviour (filters, frequencies, seeds, degenerate
//! rows); the GPU kernels are tested against these verbs.
//!
//! Cost per row: one pass for the maximum, 32 counting passes for top-k and 33 summing
//! passes for top-p when those filters are on, one final pass with two `ln` per kept token.

use ingot_tensor::sampling::{
    SAMPLE_PARAM_WORDS, SampleScratch, sample_row_with, top_logprobs_row, top_logprobs_width,
};
use rayon::prelude::*;

/// Every row of `logits` [R, V] with `params` [R, 8] -> [R].
pub(crate) fn sample(logits: &[f32], v: usize, params: &[u32]) -> Vec<u32> {
    logits
        .par_chunks(v)
        .zip(params.par_chunks(SAMPLE_PARAM_WORDS))
        .map_init(SampleScratch::default, |sc, (row, prm)| {
            sample_row_with(row, prm, sc)
        })
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

#[cfg(test)]
mod tests {
    use ingot_tensor::sampling::{argmax_row, sample_params, sample_row};

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
