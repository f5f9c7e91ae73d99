//! Mixture-of-experts routing: the one definition of how a token chooses its experts and
//! how much each counts, shared by every backend's `moe_route` and by the tests (as
//! `sampling` is for token choice).
//!
//! A router row holds one logit per expert. [`route_row`] picks the `top_k` experts with the
//! largest logits, best first; equal logits go to the lower expert index. Choosing on the
//! logits rather than on the scores makes the choice exact on every backend (scores pass
//! through `exp`, whose last bit differs between devices; the scorings are monotonic, so the
//! same experts win). Slot `j` of a row is then the `j`-th best expert, and its weight is
//! the expert's score:
//!
//! - [`MoeScoring::Softmax`]: `exp(l_e - max) / sum_e exp(l_e - max)` over all experts, the
//!   sum taken in expert order (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE);
//! - [`MoeScoring::Sigmoid`]: `1 / (1 + exp(-l_e))` per expert;
//!
//! and with `renormalize`, each chosen weight divided by the sum of the chosen weights (in
//! slot order): Mixtral and Qwen3-MoE renormalize (`norm_topk_prob`), Qwen2-MoE and OLMoE
//! do not. Everything depends on the row alone, so routing is batch invariant.
//!
//! NaN logits are never chosen; a row with fewer than `top_k` other logits leaves its last
//! slots empty: expert id `E` (one past the last) and weight 0, which the expert verb skips.

/// How router logits become expert weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoeScoring {
    /// Softmax over all experts.
    Softmax,
    /// A sigmoid per expert.
    Sigmoid,
}

/// A family's routing rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MoeRouting {
    /// Experts per token, 1 ..= E.
    pub top_k: usize,
    pub scoring: MoeScoring,
    /// Divide the chosen weights by their sum.
    pub renormalize: bool,
}

impl MoeRouting {
    /// The `u32` code of the scoring in kernel parameters.
    pub fn scoring_code(&self) -> u32 {
        match self.scoring {
            MoeScoring::Softmax => 0,
            MoeScoring::Sigmoid => 1,
        }
    }
}

/// Whether `(l, e)` ranks strictly below `(prev_l, prev_e)` in the routing order (larger
/// logit first, then lower index): the experts still eligible after `prev` was chosen.
#[inline]
pub fn ranks_below(l: f32, e: usize, prev_l: f32, prev_e: usize) -> bool {
    l < prev_l || (l == prev_l && e > prev_e)
}

/// The experts and weights of one router row `logits` [E]: writes `ids` and `weights`
/// (each `top_k` long) as the module header defines them.
pub fn route_row(logits: &[f32], routing: MoeRouting, ids: &mut [u32], weights: &mut [f32]) {
    let e_count = logits.len();
    let k = routing.top_k;
    assert!(ids.len() == k && weights.len() == k, "route_row: slots");
    // Selection: slot j takes the best expert ranking below slot j - 1's.
    let mut prev: Option<(f32, usize)> = None;
    for id in ids.iter_mut() {
        let mut best: Option<usize> = None;
        for (e, &l) in logits.iter().enumerate() {
            let eligible = match prev {
                None => true,
                Some((pl, pe)) => ranks_below(l, e, pl, pe),
            };
            if eligible && !l.is_nan() && best.is_none_or(|b| l > logits[b]) {
                best = Some(e);
            }
        }
        match best {
            Some(b) => {
                *id = b as u32;
                prev = Some((logits[b], b));
            }
            None => {
                *id = e_count as u32;
                prev = Some((f32::NAN, e_count));
            }
        }
    }
    // Scores of the chosen experts.
    let denom = match routing.scoring {
        MoeScoring::Softmax => {
            let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l));
            let mut sum = 0.0f32;
            for &l in logits {
                sum += (l - max).exp();
            }
            Some((max, sum))
        }
        MoeScoring::Sigmoid => None,
    };
    for j in 0..k {
        let e = ids[j] as usize;
        weights[j] = if e >= e_count {
            0.0
        } else {
            let l = logits[e];
            match denom {
                Some((max, sum)) => (l - max).exp() / sum,
                None => 1.0 / (1.0 + (-l).exp()),
            }
        };
    }
    if routing.renormalize {
        let mut total = 0.0f32;
        for &w in weights.iter() {
            total += w;
        }
        for w in weights.iter_mut() {
            *w /= total;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(logits: &[f32], k: usize, scoring: MoeScoring, renorm: bool) -> (Vec<u32>, Vec<f32>) {
        let mut ids = vec![0; k];
        let mut w = vec![0.0; k];
        let r = MoeRouting {
            top_k: k,
            scoring,
            renormalize: renorm,
        };
        route_row(logits, r, &mut ids, &mut w);
        (ids, w)
    }

    #[test]
    fn ties_go_to_the_lower_index_and_slots_are_best_first() {
        let (ids, _) = route(&[1.0, 3.0, 2.0, 3.0, 2.0], 4, MoeScoring::Softmax, false);
        assert_eq!(ids, [1, 3, 2, 4]);
        let (ids, w) = route(&[0.5; 4], 2, MoeScoring::Softmax, false);
        assert_eq!(ids, [0, 1]);
        assert_eq!(w, [0.25, 0.25]);
    }

    #[test]
    fn softmax_renormalized_weights_sum_to_one() {
        let (ids, w) = route(&[0.1, -2.0, 1.5, 0.7], 2, MoeScoring::Softmax, true);
        assert_eq!(ids, [2, 3]);
        let (a, b) = ((1.5f64).exp(), (0.7f64).exp());
        assert!((w[0] as f64 - a / (a + b)).abs() < 1e-6);
        assert!((w[0] + w[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn sigmoid_scores_each_expert_alone() {
        let (ids, w) = route(&[0.0, 2.0, -1.0], 2, MoeScoring::Sigmoid, false);
        assert_eq!(ids, [1, 0]);
        assert!((w[0] - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-7);
        assert_eq!(w[1], 0.5);
    }

    #[test]
    fn nan_rows_leave_slots_empty() {
        let (ids, w) = route(&[f32::NAN, 1.0, f32::NAN], 3, MoeScoring::Sigmoid, false);
        assert_eq!(ids, [1, 3, 3]);
        assert_eq!(&w[1..], [0.0, 0.0]);
    }
}
