//! The one definition of token choice, shared by every backend's `argmax`, `sample` and
//! `top_logprobs` verbs (CPU code, WGSL kernels) and by the runner's host sampler, so a
//! request's tokens do not depend on where they were chosen: greedy ([`argmax_row`]),
//! sampling ([`sample_row`]: Gumbel-max over counter-based noise, so a draw depends only on
//! the request's seed, its output position and the token, never on the batch or on a
//! per-request RNG stream), and log-probabilities ([`top_logprobs_row`], ranked by
//! [`rank_cmp`]).
//!
//! GPU kernels restate these functions step for step (`argmax.wgsl`, `sample.wgsl`,
//! `top_logprobs.wgsl` with the shared `rank.wgsl`), using the same integer order keys, the
//! same 32-step bisections and the same fixed 256-lane sum order, so results agree bit for
//! bit wherever `/`, `exp` and `ln` round alike. The functions here are plain Rust, written
//! for clarity first; [`sample_row_with`] reuses its buffers and computes each `exp` once,
//! which changes no value.

/// The definition of the `argmax` verb on one row, shared by the CPU backend and the
/// runner's sampler so both pick the same token: the index of the largest value, the first
/// one among equal maxima, compared with IEEE `>` (so `-0.0` and `+0.0` tie). A NaN never
/// replaces the running best, so NaNs after index 0 are ignored; if `row[0]` is NaN nothing
/// can replace it and the answer is 0. A row of all `-inf` (or all NaN), or an empty row,
/// gives 0. Equivalently: 0 when `row[0]` is NaN, else the first index of the maximum over
/// the non-NaN values.
pub fn argmax_row(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best as u32
}

/// The ranking of log-probability lists, shared by the runner's host sampler (its top-k
/// candidates and `logprobs`) and every backend's [`Backend::top_logprobs`]: descending by
/// value under IEEE `totalOrder` ([`f32::total_cmp`]: `-NaN < -inf < .. < -0 < +0 < .. <
/// +inf < +NaN`), equal values by ascending index. A total order on `(index, value)`, so a
/// top-k list is reproducible whatever the sort. GPU code compares the u32 key
/// [`rank_key`], which orders values exactly as `total_cmp` does.
pub fn rank_cmp(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// An unsigned key ordered as [`f32::total_cmp`] orders the values (negative values have
/// all bits flipped, non-negative ones the sign bit set): the integer form of [`rank_cmp`].
pub fn rank_key(x: f32) -> u32 {
    let bits = x.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// Words per row of the `top_logprobs` verb's output for `k` top tokens.
pub fn top_logprobs_width(k: usize) -> usize {
    2 * (1 + k)
}

/// The "lowbias32" 32-bit integer hash (C. Wellons' hash-prospector constants), the mixing
/// step of [`sample_row`]'s counter-based noise.
pub fn sample_hash(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The uniform number in (0, 1) of [`sample_row`] for token `index` of a row whose params
/// hold `seed` (lo, hi) and `counter`: 23 hashed bits, offset by half a step, with
/// `h = mix(mix(mix(mix(index ^ 0x9e3779b9) ^ counter) ^ seed_hi) ^ seed_lo)`.
pub fn sample_uniform(seed_lo: u32, seed_hi: u32, counter: u32, index: u32) -> f32 {
    let h = sample_hash(
        sample_hash(sample_hash(sample_hash(index ^ 0x9e37_79b9) ^ counter) ^ seed_hi) ^ seed_lo,
    );
    ((h >> 9) as f32 + 0.5) * (1.0 / 8_388_608.0)
}

/// Words per row of the `sample` verb's params.
pub const SAMPLE_PARAM_WORDS: usize = 8;

/// One row of the `sample` verb's params (what [`sample_row`] reads).
pub fn sample_params(
    temperature: f32,
    top_k: u32,
    top_p: f32,
    min_p: f32,
    seed: u64,
    counter: u32,
) -> [u32; SAMPLE_PARAM_WORDS] {
    [
        temperature.to_bits(),
        top_k,
        top_p.to_bits(),
        min_p.to_bits(),
        seed as u32,
        (seed >> 32) as u32,
        counter,
        0,
    ]
}

/// Lanes of the fixed reduction order of [`sample_row`] and [`top_logprobs_row`] (the GPU
/// kernels' workgroup size).
pub const SUM_LANES: usize = 256;

/// An unsigned key ordered as the f32 values are for [`sample_row`]: NaN -> 0, below every
/// number; `-0` and `+0` -> the same key (`argmax.wgsl`'s order).
pub fn order_key(x: f32) -> u32 {
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
/// turn, then the lanes meet in a binary tree (`lane[l] += lane[l + h]`, h = 128 .. 1).
pub fn fixed_sum(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut lanes = [0.0f32; SUM_LANES];
    let mut base = 0;
    while base < n {
        let len = SUM_LANES.min(n - base);
        for (l, acc) in lanes[..len].iter_mut().enumerate() {
            *acc += f(base + l);
        }
        base += SUM_LANES;
    }
    let mut h = SUM_LANES / 2;
    while h > 0 {
        for l in 0..h {
            lanes[l] += lanes[l + h];
        }
        h /= 2;
    }
    lanes[0]
}

/// The largest key `t` for which `pred(t)` holds, for a predicate that holds at 0 and is
/// monotone (true below some key, false above): 32 halvings of `[0, u32::MAX)`.
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

/// Buffers [`sample_row_with`] reuses between rows: per token its scaled value, order key
/// and unnormalised probability.
#[derive(Default)]
pub struct SampleScratch {
    s: Vec<f32>,
    keys: Vec<u32>,
    p: Vec<f32>,
}

/// The token of one row of logits (`row` [V], V >= 1) under `prm` ([`sample_params`]): the
/// one definition of sampling, which every backend's `sample` verb and the host sampler
/// follow:
///
/// 1. `s[i] = logits[i] / temperature` (f32). Values compare through [`order_key`] (NaN
///    lowest, `-0 == +0`). If `temperature` is not `> 0` the row is greedy: `s = logits`,
///    and the answer is step 2's index.
/// 2. `(m, j)` = the largest non-NaN `s` and its first index (0 if every `s` is NaN). If the
///    row is greedy or `m` is not finite, the answer is `j`.
/// 3. `p[i] = exp(s[i] - m)` (0 for NaN), unnormalised, so `p[j] = 1`.
/// 4. top-k (when `0 < top_k < V`): `t_k` = the `top_k`-th largest key of `s`, found by 32
///    bisection steps on the u32 key (each an exact count of keys `>= mid`); tokens with key
///    `>= t_k` stay (ties at the threshold all stay). Otherwise `t_k = 0`.
/// 5. top-p (when `0 < top_p < 1`): `Z = sum p[i]` over keys `>= t_k`; `t_p` = the largest
///    key `t` with `sum p[i]` over keys `>= max(t, t_k)` `>= top_p * Z`, by 32 bisection
///    steps on the key. Otherwise `t_p = 0`. Sums use [`fixed_sum`]'s order.
/// 6. min-p (when `min_p > 0`, clamped to 1): tokens with `p[i] >= min_p` stay.
/// 7. Among tokens that stay and have `p[i] > 0`, the answer is the argmax of `s[i] + g[i]`
///    (ties -> lowest index), with Gumbel noise `g = -ln(-ln(u))`, `u` =
///    [`sample_uniform`]`(seed, counter, i)`. Token `j` always stays, so the answer is well
///    defined.
///
/// Gumbel-max draws token `i` with probability proportional to `p[i]` among those that
/// stay. A row's token depends only on its own logits and params (batch invariant), and the
/// same (seed, counter) gives the same token.
pub fn sample_row(row: &[f32], prm: &[u32]) -> u32 {
    sample_row_with(row, prm, &mut SampleScratch::default())
}

/// [`sample_row`] with caller-owned buffers (no allocation once they have grown).
pub fn sample_row_with(row: &[f32], prm: &[u32], sc: &mut SampleScratch) -> u32 {
    let v = row.len();
    let temperature = f32::from_bits(prm[0]);
    let greedy = temperature.is_nan() || temperature <= 0.0;
    sc.s.clear();
    if greedy {
        sc.s.extend_from_slice(row);
    } else {
        sc.s.extend(row.iter().map(|&x| x / temperature));
    }
    sc.keys.clear();
    sc.keys.extend(sc.s.iter().map(|&x| order_key(x)));
    let (s, keys) = (&sc.s[..], &sc.keys[..]);
    // Step 2: the largest key and its first index.
    let (mut best_key, mut best) = (0u32, 0usize);
    for (i, &k) in keys.iter().enumerate() {
        if k > best_key {
            (best_key, best) = (k, i);
        }
    }
    let m = s[best];
    if greedy || !m.is_finite() {
        return best as u32;
    }
    // Step 3.
    sc.p.clear();
    sc.p.extend(
        s.iter()
            .map(|&x| if x.is_nan() { 0.0 } else { (x - m).exp() }),
    );
    let p = &sc.p[..];
    // Step 4: top-k threshold.
    let top_k = prm[1] as usize;
    let t_k = if top_k > 0 && top_k < v {
        bisect(|t| keys.iter().filter(|&&k| k >= t).count() >= top_k)
    } else {
        0
    };
    // Step 5: top-p threshold.
    let top_p = f32::from_bits(prm[2]);
    let t_p = if top_p > 0.0 && top_p < 1.0 {
        let mass = |t: u32| fixed_sum(v, |i| if keys[i] >= t { p[i] } else { 0.0 });
        let need = top_p * mass(t_k);
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
        let pi = p[i];
        let keep = keys[i] >= t && pi > 0.0 && (min_p <= 0.0 || pi >= min_p);
        if !keep {
            continue;
        }
        let u = sample_uniform(seed_lo, seed_hi, counter, i as u32);
        let g = -(-u.ln()).ln();
        let k = order_key(s[i] + g);
        if k > best_key || best_i == u32::MAX {
            (best_key, best_i) = (k, i as u32);
        }
    }
    best_i
}

/// Log-probabilities of `token` and of the `k` most likely tokens of `row` [V] into `out`
/// [`top_logprobs_width`]`(k)`: `[id_c, lp_c, id_1, lp_1, .., id_k, lp_k]`, ids stored by
/// bit cast. The one definition, which every backend's `top_logprobs` verb and the host
/// sampler follow:
///
/// 1. `m` = the row's largest value (f32 `max`; rows holding NaN give unspecified
///    log-probabilities, ids stay defined).
/// 2. `s = sum exp(x - m)` in f32 in [`fixed_sum`]'s order; `lse = m + ln(s)`; a token's
///    log-probability is `x - lse` (f32).
/// 3. The top `k` are the first `k` of the row ranked by [`rank_cmp`] (descending
///    `total_cmp`, ties to the lower index).
///
/// A chosen token `>= V` gets log-probability NaN.
pub fn top_logprobs_row(row: &[f32], token: u32, k: usize, out: &mut [f32]) {
    assert_eq!(
        out.len(),
        top_logprobs_width(k),
        "top_logprobs_row: output width"
    );
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = m + fixed_sum(row.len(), |c| (row[c] - m).exp()).ln();
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

/// Words of one row of a token mask over a vocabulary of `v` tokens (the `mask_logits`
/// verb's mask [R, `mask_words(V)`]): one bit per token, 32 to a word.
pub fn mask_words(v: usize) -> usize {
    v.div_ceil(32)
}

/// The definition of the `mask_logits` verb on one row (structured output): token `i` of
/// `row` [V] keeps its value when bit `i % 32` of word `i / 32` of `bits`
/// [[`mask_words`]`(V)`] is set, and becomes `-inf` otherwise. Bits past `V` are ignored.
/// A masked token then has probability 0 under every rule of this module: [`sample_row`]
/// drops tokens whose `p` is 0, [`argmax_row`] never picks `-inf` over a finite value.
pub fn mask_row(row: &mut [f32], bits: &[u32]) {
    for (i, x) in row.iter_mut().enumerate() {
        if bits[i / 32] >> (i % 32) & 1 == 0 {
            *x = f32::NEG_INFINITY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The integer key orders random values (specials included) exactly as `total_cmp`.
    #[test]
    fn rank_key_is_total_cmp() {
        let specials = [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::MIN_POSITIVE,
            -1e-45,
            1.0,
            -1.0,
        ];
        let mut s = 0x1234_5678u32;
        let mut vals: Vec<f32> = specials.to_vec();
        for _ in 0..2000 {
            s = sample_hash(s);
            vals.push(f32::from_bits(s));
        }
        for &a in &vals {
            for &b in vals.iter().step_by(37) {
                assert_eq!(rank_key(a).cmp(&rank_key(b)), a.total_cmp(&b), "{a} vs {b}");
                // Descending by value, then ascending by index.
                assert_eq!(
                    rank_cmp(&(0, a), &(1, b)),
                    b.total_cmp(&a).then(std::cmp::Ordering::Less)
                );
            }
        }
    }

    /// The stated semantics of the verb, case by case.
    #[test]
    fn argmax_row_semantics() {
        let (inf, nan) = (f32::INFINITY, f32::NAN);
        assert_eq!(argmax_row(&[0.0, 3.0, 1.0, 3.0]), 1); // first of equal maxima
        assert_eq!(argmax_row(&[-0.0, 0.0]), 0); // -0 ties +0
        assert_eq!(argmax_row(&[0.0, -0.0]), 0);
        assert_eq!(argmax_row(&[-inf, -inf, -inf]), 0);
        assert_eq!(argmax_row(&[-inf, -5.0, -inf]), 1);
        assert_eq!(argmax_row(&[1.0, nan, 2.0, nan]), 2); // later NaNs ignored
        assert_eq!(argmax_row(&[nan, 5.0, inf]), 0); // a leading NaN wins
        assert_eq!(argmax_row(&[nan, nan]), 0);
        assert_eq!(argmax_row(&[-inf, nan, -inf]), 0);
        assert_eq!(argmax_row(&[2.0, inf, inf]), 1);
        assert_eq!(argmax_row(&[]), 0);
    }

    /// The buffered form equals the plain one, and both equal a direct restatement of the
    /// definition that recomputes every value (the GPU kernel's arithmetic).
    #[test]
    fn sample_row_with_reused_buffers() {
        let mut sc = SampleScratch::default();
        let mut state = 0x2545_f491u32;
        let mut next = move || {
            state = sample_hash(state);
            (state >> 8) as f32 / (1u32 << 24) as f32
        };
        for (v, case) in [(5usize, 0u32), (300, 1), (1000, 2), (1, 3), (700, 4)] {
            let row: Vec<f32> = (0..v).map(|_| (next() - 0.5) * 12.0).collect();
            for c in 0..20 {
                let prm = sample_params(
                    0.8,
                    [0, 40, 1][case as usize % 3],
                    [1.0, 0.9, 0.5][c as usize % 3],
                    [0.0, 0.05][c as usize % 2],
                    77 + u64::from(case),
                    c,
                );
                assert_eq!(sample_row_with(&row, &prm, &mut sc), sample_row(&row, &prm));
            }
        }
    }
}
