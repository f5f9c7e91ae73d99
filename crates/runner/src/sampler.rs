//! The host sampler: one next token (and, if asked, log-probabilities) from one row of
//! logits, for the rows whose token the device does not take (`sample_plan.rs`).
//!
//! There is one definition of token choice, `ingot_tensor::sampling`, and this sampler
//! follows it exactly as the backends' verbs do: greedy is [`argmax`]; sampling is
//! `sample_row` (Gumbel-max over noise hashed from the request's seed, its output position
//! and the token index, with exact top-k / top-p / min-p thresholds), so a request's draws
//! depend on nothing but its seed and its logits: not on the batch, and not on whether the
//! host or a GPU drew them. An unseeded request gets a random seed when it arrives.
//! Log-probabilities are `top_logprobs_row`'s (f32 sums in one fixed order), the model's
//! raw distribution (log-softmax of the unprocessed logits), as vLLM reports them by default.
//!
//! Processing order, as in vLLM: logit bias; suppression of stop tokens before
//! `min_tokens`; repetition, frequency and presence penalties; then the definition above on
//! what remains. A request with nothing to process needs no logits on the host at all:
//! the runner takes its token (and log-probabilities) from the device's verbs and records
//! it with [`SamplingState::accept`].
//!
//! A constrained request (structured output) has its grammar's mask applied to its logits
//! first (`mask_logits`, in `model_runner.rs`): everything above then sees only the
//! allowed tokens, log-probabilities included (as in vLLM).

use std::collections::HashMap;

pub use ingot_api::TokenLogprobs;
use ingot_scheduler::SamplingParams;
use ingot_structured::Constraint;
use ingot_tensor::sampling::{
    SAMPLE_PARAM_WORDS, SampleScratch, sample_params, sample_row_with, top_logprobs_row,
    top_logprobs_width,
};
use rand::Rng;

/// What the sampler needs to remember about one request between steps.
pub struct SamplingState {
    pub params: SamplingParams,
    /// The seed of the request's sampling noise: its own, or for an unseeded request a
    /// random one drawn when it arrived.
    pub seed: u64,
    /// Tokens that may end the request; masked while fewer than `min_tokens` exist.
    pub stop_ids: Vec<u32>,
    /// Every token seen (prompt and output), for the repetition penalty.
    seen: HashMap<u32, ()>,
    /// Output token counts, for frequency and presence penalties.
    counts: HashMap<u32, u32>,
    num_output: usize,
    /// The prompt, kept only when prompt log-probabilities are wanted.
    prompt: Vec<u32>,
    /// Log-probabilities of prompt tokens 1.. computed so far (token 0 has none).
    prompt_logprobs: Vec<TokenLogprobs>,
    /// The grammar the output must follow (structured output): its mask is applied to the
    /// request's logits before any of the above, and it follows each recorded token.
    pub constraint: Option<Constraint>,
}

impl SamplingState {
    pub fn new(params: SamplingParams, prompt: &[u32], eos_token_ids: &[u32]) -> Self {
        let mut stop_ids = params.stop_token_ids.clone();
        if !params.ignore_eos {
            stop_ids.extend_from_slice(eos_token_ids);
        }
        let seen = if params.repetition_penalty != 1.0 {
            prompt.iter().map(|&t| (t, ())).collect()
        } else {
            HashMap::new()
        };
        let keep_prompt = params.prompt_logprobs.is_some();
        let seed = params.seed.unwrap_or_else(|| rand::rng().next_u64());
        Self {
            seed,
            params,
            stop_ids,
            seen,
            counts: HashMap::new(),
            num_output: 0,
            prompt: if keep_prompt {
                prompt.to_vec()
            } else {
                Vec::new()
            },
            prompt_logprobs: Vec::new(),
            constraint: None,
        }
    }

    /// Whether rows of prompt positions from `num_computed` on still need logits.
    pub fn wants_prompt_logits(&self, num_computed: usize) -> bool {
        self.params.prompt_logprobs.is_some() && num_computed + 1 < self.prompt.len()
    }

    /// Records the logits row of prompt position `position` (predicting `position + 1`).
    /// Rows seen again after a preemption are ignored.
    pub fn observe_prompt_row(&mut self, position: usize, logits: &[f32]) {
        let Some(k) = self.params.prompt_logprobs else {
            return;
        };
        if position + 1 < self.prompt.len() && position == self.prompt_logprobs.len() {
            self.prompt_logprobs
                .push(logprobs(logits, self.prompt[position + 1], k));
        }
    }

    /// Records a token the request produced.
    pub fn push(&mut self, token: u32) {
        self.num_output += 1;
        *self.counts.entry(token).or_default() += 1;
        if self.params.repetition_penalty != 1.0 {
            self.seen.insert(token, ());
        }
    }

    /// Whether this step's token needs the request's logits row on the host: false only
    /// for a greedy request with no logit processing at this step (no bias, penalties or
    /// `min_tokens` suppression) and no log-probabilities, whose token is plainly the argmax
    /// of the raw row.
    pub fn needs_logits(&self) -> bool {
        !self.params.is_greedy() || self.needs_processing() || self.params.logprobs.is_some()
    }

    /// Whether this step's token may come from the device's `sample` verb: a sampled
    /// request (temperature > 0; top-k, top-p and min-p allowed) with no logit processing
    /// at this step and no log-probabilities. The draw is the same wherever it is made.
    pub fn device_sampleable(&self) -> bool {
        self.params.temperature > 0.0 && !self.needs_processing() && self.params.logprobs.is_none()
    }

    /// `Some(k)` when this step's only reason to need the logits on the host is the
    /// request's per-token log-probabilities (`logprobs = Some(k)`, no logit processing):
    /// then a backend that samples on the device may take the token from `argmax` (greedy)
    /// or `sample`, and the log-probabilities from its `top_logprobs` verb.
    pub fn device_logprobs(&self) -> Option<usize> {
        self.params.logprobs.filter(|_| !self.needs_processing())
    }

    /// This step's row of the `sample` verb's params: the filters, the seed, and the
    /// number of tokens produced so far as the counter.
    pub fn device_params(&self) -> [u32; SAMPLE_PARAM_WORDS] {
        let p = &self.params;
        sample_params(
            p.temperature,
            u32::try_from(p.top_k).unwrap_or(0),
            p.top_p,
            p.min_p,
            self.seed,
            self.num_output as u32,
        )
    }

    /// Records `token`, chosen without the host seeing the logits (the device's argmax of
    /// the raw row, or its `sample` for a [`SamplingState::device_sampleable`] request),
    /// exactly as [`Sampler::sample`] records a token; only valid when
    /// [`SamplingState::needs_logits`] is false or the request is device-sampleable.
    pub fn accept(&mut self, token: u32) -> Sampled {
        debug_assert!(
            !self.needs_logits() || self.device_sampleable(),
            "accept() needs a plain greedy or device-sampleable request"
        );
        self.record(token, None)
    }

    /// Records `token` with log-probabilities computed on the device (a
    /// [`SamplingState::device_logprobs`] request), as [`Sampler::sample`] records a token
    /// with the host's.
    pub fn accept_with_logprobs(&mut self, token: u32, logprobs: TokenLogprobs) -> Sampled {
        debug_assert!(
            self.device_logprobs().is_some(),
            "accept_with_logprobs() needs a request whose only processing is logprobs"
        );
        self.record(token, Some(logprobs))
    }

    /// Records `token`, the only one the request's grammar allowed (a forced token: no
    /// logits were needed to choose it).
    pub fn accept_forced(&mut self, token: u32) -> Sampled {
        self.record(token, None)
    }

    /// Tokens the request produced so far (forced ones included).
    pub fn num_output(&self) -> usize {
        self.num_output
    }

    /// Records the step's token: hands over the prompt log-probabilities with the first
    /// output token, and updates the penalty counts.
    fn record(&mut self, token: u32, logprobs: Option<TokenLogprobs>) -> Sampled {
        let prompt_logprobs = (self.num_output == 0 && self.params.prompt_logprobs.is_some())
            .then(|| std::mem::take(&mut self.prompt_logprobs));
        self.push(token);
        Sampled {
            token,
            forced: Vec::new(),
            logprobs,
            prompt_logprobs,
        }
    }

    fn needs_processing(&self) -> bool {
        let p = &self.params;
        !p.logit_bias.is_empty()
            || (self.num_output < p.min_tokens && !self.stop_ids.is_empty())
            || p.repetition_penalty != 1.0
            || p.frequency_penalty != 0.0
            || p.presence_penalty != 0.0
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    pub token: u32,
    /// Tokens the request's grammar forced right after `token` (jump-forward), in order:
    /// appended with it, computed together in the next step. Empty without a grammar.
    pub forced: Vec<u32>,
    pub logprobs: Option<TokenLogprobs>,
    /// With the request's first token, when asked: prompt tokens 1.. with their
    /// log-probabilities (the first prompt token has none).
    pub prompt_logprobs: Option<Vec<TokenLogprobs>>,
}

/// The list from one row of the `top_logprobs` verb's output (`[id_c, lp_c, id_1, lp_1, ..]`,
/// ids as f32 bits), keeping its first `k` top entries (at most the row's).
pub fn from_device_row(row: &[f32], k: usize) -> TokenLogprobs {
    let top = row[2..]
        .chunks_exact(2)
        .take(k)
        .map(|p| (p[0].to_bits(), p[1]))
        .collect();
    TokenLogprobs {
        token: row[0].to_bits(),
        logprob: row[1],
        top,
    }
}

/// Buffers reused across rows (no allocation in a steady step).
#[derive(Default)]
pub struct Sampler {
    row: Vec<f32>,
    scratch: SampleScratch,
}

/// The greedy choice on one row: the first index of its largest value, NaNs after index 0
/// ignored, 0 when the row starts with NaN (the definition shared with the backends'
/// `argmax` verb, so a token taken on the device equals the one taken here).
pub use ingot_tensor::sampling::argmax_row as argmax;

/// Log-probabilities of `token` and the `k` best tokens under softmax(`logits`): the
/// shared definition (`top_logprobs_row`), so the host and the devices report the same
/// values.
pub fn logprobs(logits: &[f32], token: u32, k: usize) -> TokenLogprobs {
    let k = k.min(logits.len());
    let mut out = vec![0.0f32; top_logprobs_width(k)];
    top_logprobs_row(logits, token, k, &mut out);
    from_device_row(&out, k)
}

impl Sampler {
    /// Samples one token for `state`'s request from `logits` [V] and records it.
    pub fn sample(&mut self, logits: &[f32], state: &mut SamplingState) -> Sampled {
        let token = if state.needs_processing() {
            let mut row = std::mem::take(&mut self.row);
            row.clear();
            row.extend_from_slice(logits);
            process(&mut row, state);
            let t = self.draw(&row, state);
            self.row = row;
            t
        } else {
            self.draw(logits, state)
        };
        let lps = state.params.logprobs.map(|k| logprobs(logits, token, k));
        state.record(token, lps)
    }

    fn draw(&mut self, logits: &[f32], state: &SamplingState) -> u32 {
        if state.params.is_greedy() {
            argmax(logits)
        } else {
            sample_row_with(logits, &state.device_params(), &mut self.scratch)
        }
    }
}

fn process(row: &mut [f32], s: &SamplingState) {
    let p = &s.params;
    for &(id, bias) in &p.logit_bias {
        row[id as usize] += bias;
    }
    if s.num_output < p.min_tokens {
        for &id in &s.stop_ids {
            row[id as usize] = f32::NEG_INFINITY;
        }
    }
    if p.repetition_penalty != 1.0 {
        for &id in s.seen.keys() {
            let x = &mut row[id as usize];
            *x = if *x > 0.0 {
                *x / p.repetition_penalty
            } else {
                *x * p.repetition_penalty
            };
        }
    }
    if p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 {
        for (&id, &n) in &s.counts {
            row[id as usize] -= p.frequency_penalty * n as f32 + p.presence_penalty;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> SamplingState {
        let params = SamplingParams {
            temperature,
            top_k,
            top_p,
            seed: Some(seed),
            ..Default::default()
        };
        SamplingState::new(params, &[], &[])
    }

    #[test]
    fn greedy_takes_first_max() {
        assert_eq!(argmax(&[0.0, 3.0, 1.0, 3.0]), 1);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::default();
        let mut st = state(1.0, 1, 1.0, 1);
        for _ in 0..50 {
            assert_eq!(s.sample(&[0.3, 2.0, -1.0, 1.9], &mut st).token, 1);
        }
    }

    #[test]
    fn top_p_and_min_p_exclude_the_tail() {
        // probabilities ~ [0.64, 0.24, 0.09, 0.03]
        let logits = [3.0, 2.0, 1.0, 0.0];
        let mut s = Sampler::default();
        let mut st = state(1.0, 0, 0.8, 7);
        let mut st_min = state(1.0, 0, 1.0, 7);
        st_min.params.min_p = 0.2; // floor 0.128: keeps the first two
        let mut seen = [[0; 4]; 2];
        for _ in 0..2000 {
            seen[0][s.sample(&logits, &mut st).token as usize] += 1;
            seen[1][s.sample(&logits, &mut st_min).token as usize] += 1;
        }
        for row in seen {
            assert!(row[0] > 0 && row[1] > 0);
            assert_eq!(row[2] + row[3], 0);
        }
    }

    #[test]
    fn frequencies_follow_the_softmax() {
        let logits = [1.0f32, 0.0, -1.0];
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        let mut s = Sampler::default();
        let mut st = state(1.0, 0, 1.0, 3);
        let n = 20000;
        let mut seen = [0usize; 3];
        for _ in 0..n {
            seen[s.sample(&logits, &mut st).token as usize] += 1;
        }
        for i in 0..3 {
            let expect = (logits[i] as f64).exp() / z;
            let got = seen[i] as f64 / n as f64;
            assert!((got - expect).abs() < 0.02, "token {i}: {got} vs {expect}");
        }
    }

    #[test]
    fn same_seed_same_draws() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37 % 11) as f32) * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::default();
            let mut st = state(0.8, 0, 0.95, seed);
            (0..20)
                .map(|_| s.sample(&logits, &mut st).token)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn penalties_bias_and_min_tokens() {
        let mut s = Sampler::default();
        let params = SamplingParams {
            temperature: 0.0,
            min_tokens: 1,
            logit_bias: vec![(2, 5.0)],
            frequency_penalty: 2.0,
            ..Default::default()
        };
        // Token 0 is EOS and the most likely; min_tokens masks it for the first token.
        let logits = [10.0, 1.0, 0.0, 2.0];
        let mut st = SamplingState::new(params, &[], &[0]);
        assert_eq!(s.sample(&logits, &mut st).token, 2); // 0 + 5 bias beats 2
        // Now EOS is allowed again.
        assert_eq!(s.sample(&logits, &mut st).token, 0);
        // Repetition penalty 10 on a seen token with logit 10 brings it to 1.
        let params = SamplingParams {
            temperature: 0.0,
            repetition_penalty: 10.0,
            ..Default::default()
        };
        let mut st = SamplingState::new(params, &[0], &[]);
        assert_eq!(s.sample(&logits, &mut st).token, 3);
    }

    /// Which requests may skip the host logits, and that skipping changes nothing: for a
    /// plain greedy request `accept(argmax(row))` returns what `sample(row)` does, step
    /// after step, prompt log-probabilities handed over with the first token included.
    #[test]
    fn accept_equals_sample_for_plain_greedy() {
        let greedy = SamplingParams {
            temperature: 0.0,
            ..Default::default()
        };
        let with = |f: fn(&mut SamplingParams)| {
            let mut p = greedy.clone();
            f(&mut p);
            SamplingState::new(p, &[3, 1], &[0])
        };
        assert!(!with(|_| {}).needs_logits());
        assert!(!with(|p| p.prompt_logprobs = Some(2)).needs_logits());
        assert!(with(|p| p.temperature = 0.7).needs_logits());
        assert!(with(|p| p.logprobs = Some(0)).needs_logits());
        assert!(with(|p| p.logit_bias = vec![(1, 0.5)]).needs_logits());
        assert!(with(|p| p.repetition_penalty = 1.1).needs_logits());
        assert!(with(|p| p.frequency_penalty = 0.5).needs_logits());
        assert!(with(|p| p.presence_penalty = -0.5).needs_logits());
        // min_tokens suppresses EOS only until that many tokens exist.
        let mut st = with(|p| p.min_tokens = 1);
        assert!(st.needs_logits());
        st.push(5);
        assert!(!st.needs_logits());
        // With no stop ids there is nothing to suppress.
        let mut p = greedy.clone();
        p.min_tokens = 3;
        p.ignore_eos = true;
        assert!(!SamplingState::new(p, &[], &[0]).needs_logits());

        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut s = Sampler::default();
        let (mut a, mut b) = (
            with(|p| p.prompt_logprobs = Some(1)),
            with(|p| p.prompt_logprobs = Some(1)),
        );
        a.observe_prompt_row(0, &[0.5, -1.0, 2.0, 0.0]);
        b.observe_prompt_row(0, &[0.5, -1.0, 2.0, 0.0]);
        for step in 0..20 {
            // Values on a coarse grid: equal maxima are frequent.
            let row: Vec<f32> = (0..37)
                .map(|_| (rng.random::<f64>() * 7.0).floor() as f32)
                .collect();
            let want = s.sample(&row, &mut a);
            let got = b.accept(argmax(&row));
            assert_eq!(got, want, "step {step}");
            assert_eq!(got.prompt_logprobs.is_some(), step == 0);
        }
    }

    /// Which requests the device may sample, and the params row it gets.
    #[test]
    fn device_sampleable_requests() {
        let plain = SamplingParams {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.05,
            seed: Some(0x1234_5678_9abc_def0),
            ..Default::default()
        };
        let with = |f: fn(&mut SamplingParams)| {
            let mut p = plain.clone();
            f(&mut p);
            SamplingState::new(p, &[3, 1], &[0])
        };
        assert!(with(|_| {}).device_sampleable());
        assert!(with(|p| p.prompt_logprobs = Some(1)).device_sampleable());
        assert!(!with(|p| p.temperature = 0.0).device_sampleable());
        assert!(!with(|p| p.logprobs = Some(0)).device_sampleable());
        assert!(!with(|p| p.logit_bias = vec![(1, 0.5)]).device_sampleable());
        assert!(!with(|p| p.repetition_penalty = 1.1).device_sampleable());
        assert!(!with(|p| p.frequency_penalty = 0.5).device_sampleable());
        assert!(!with(|p| p.presence_penalty = 0.5).device_sampleable());
        let mut st = with(|p| p.min_tokens = 1);
        assert!(!st.device_sampleable());
        st.push(5);
        assert!(st.device_sampleable());
        // The params row: filters, the request's own seed, the output position as counter.
        let mut st = with(|_| {});
        assert_eq!(
            st.device_params(),
            [
                0.7f32.to_bits(),
                40,
                0.9f32.to_bits(),
                0.05f32.to_bits(),
                0x9abc_def0,
                0x1234_5678,
                0,
                0
            ]
        );
        st.accept(9);
        st.accept(4);
        assert_eq!(st.device_params()[6], 2);
        // Unseeded requests draw distinct device seeds.
        let a = with(|p| p.seed = None).seed;
        let b = with(|p| p.seed = None).seed;
        assert_ne!(a, b);
    }

    #[test]
    fn logprobs_are_normalised_and_ranked() {
        let logits = [1.0f32, 3.0, 2.0];
        let lp = logprobs(&logits, 2, 2);
        let total: f64 = logits.iter().map(|&x| (x as f64 - 3.0).exp()).sum();
        assert!((lp.logprob as f64 - (2.0 - 3.0 - total.ln())).abs() < 1e-6);
        assert_eq!(lp.top.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 2]);
    }

    /// The requests whose only host work is log-probabilities.
    #[test]
    fn device_logprobs_requests() {
        let with = |f: fn(&mut SamplingParams)| {
            let mut p = SamplingParams {
                logprobs: Some(3),
                ..Default::default()
            };
            f(&mut p);
            SamplingState::new(p, &[3, 1], &[0])
        };
        assert_eq!(with(|_| {}).device_logprobs(), Some(3));
        assert_eq!(with(|p| p.temperature = 0.8).device_logprobs(), Some(3));
        assert_eq!(with(|p| p.logprobs = None).device_logprobs(), None);
        assert_eq!(
            with(|p| p.logit_bias = vec![(1, 0.5)]).device_logprobs(),
            None
        );
        assert_eq!(with(|p| p.repetition_penalty = 1.1).device_logprobs(), None);
        assert_eq!(with(|p| p.presence_penalty = 0.5).device_logprobs(), None);
        let mut st = with(|p| p.min_tokens = 1);
        assert_eq!(st.device_logprobs(), None);
        st.push(5);
        assert_eq!(st.device_logprobs(), Some(3));
    }

    /// The CPU backend's `top_logprobs` verb, read back through `from_device_row`, gives
    /// what the host reports (`logprobs`, the same definition) on random rows with ties and
    /// specials, and both are within 1e-5 of log-probabilities computed in f64, with the
    /// top list ranked by value then index.
    #[test]
    fn top_logprobs_verb_matches_host_logprobs() {
        use ingot_backend_cpu::CpuBackend;
        use ingot_tensor::{Backend, DType, Shape};
        use rand::{RngExt, SeedableRng};
        let be = CpuBackend::new();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for (v, k) in [
            (1usize, 0usize),
            (1, 1),
            (7, 7),
            (300, 5),
            (1000, 20),
            (5000, 0),
        ] {
            let rows = 4;
            let mut logits: Vec<f32> = (0..rows * v)
                .map(|_| rng.random_range(-8.0f32..8.0))
                .collect();
            // Row 1: heavy ties (few distinct values); row 2: ties at the top, signed zeros
            // and -inf.
            for x in &mut logits[v..2 * v] {
                *x = (*x).round() / 2.0;
            }
            for (j, x) in logits[2 * v..3 * v].iter_mut().enumerate() {
                *x = match j % 5 {
                    0 => 4.0,
                    1 => 0.0,
                    2 => -0.0,
                    3 => f32::NEG_INFINITY,
                    _ => *x,
                };
            }
            let tokens: Vec<u32> = (0..rows).map(|_| rng.random_range(0..v as u32)).collect();
            let lt = be
                .from_f32(&logits, Shape::new([rows, v]), DType::F32)
                .unwrap();
            let tt = be.from_u32(&tokens, Shape::new([rows])).unwrap();
            let out = be.to_f32(&be.top_logprobs(&lt, &tt, k).unwrap()).unwrap();
            let w = 2 * (1 + k);
            assert_eq!(out.len(), rows * w);
            for r in 0..rows {
                let got = from_device_row(&out[r * w..(r + 1) * w], k);
                let row = &logits[r * v..(r + 1) * v];
                let want = logprobs(row, tokens[r], k);
                assert_eq!(got, want, "v {v} k {k} row {r}");
                // Against f64 arithmetic and a plain sort.
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                let lse = max
                    + row
                        .iter()
                        .map(|&x| (x as f64 - max).exp())
                        .sum::<f64>()
                        .ln();
                let lp64 = |i: u32| row[i as usize] as f64 - lse;
                assert!(
                    (got.logprob as f64 - lp64(tokens[r])).abs() <= 1e-5,
                    "v {v} row {r}"
                );
                let mut ranked: Vec<u32> = (0..v as u32).collect();
                ranked
                    .sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
                let ids: Vec<u32> = got.top.iter().map(|p| p.0).collect();
                assert_eq!(ids, ranked[..k], "v {v} k {k} row {r}");
                for &(i, lp) in &got.top {
                    let want = lp64(i);
                    assert!(
                        (lp as f64 - want).abs() <= 1e-5 || lp as f64 == want,
                        "v {v} row {r}: {lp} vs {want}"
                    );
                }
            }
        }
    }
}
