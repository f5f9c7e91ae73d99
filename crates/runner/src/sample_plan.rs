//! `SamplePlan`: where each logits row of a step gets its token, and the one read-back that
//! brings the step's results to the host.
//!
//! The forward pass leaves logits [R, V] on the device. Every row's token follows one
//! definition (`ingot_tensor::sampling`) wherever it is chosen, so the plan routes rows only
//! by cost, never changing a result:
//! - plainly greedy rows (nothing to process, no log-probabilities) take `argmax` on the
//!   device: the step reads back one id per row instead of V floats;
//! - plainly sampled rows take the `sample` verb, on backends that sample on the device
//!   (`Backend::samples_on_device`);
//! - rows whose only host work would be per-token log-probabilities are gathered per kind
//!   (greedy, sampled) and take their token and `top_logprobs` on the gathered rows (row-wise
//!   verbs, so the same values as on the full batch), with the group's largest `k` (each row
//!   keeps its own first `k`, a prefix of the same ranking): 2 (1 + k) floats per row;
//! - everything else (prompt rows, rows with logit bias, penalties or `min_tokens`
//!   suppression, and on the CPU backend every sampled row) is gathered and read back as f32
//!   for the host sampler.
//!
//! - a constrained row whose grammar allows a single token takes it (forced): no verb runs
//!   for it and nothing is read back. (Other constrained rows arrive here already masked
//!   by `mask_logits` and are routed like any other.)
//!
//! All device work is recorded before the first read-back, so one submission carries it.

use std::collections::HashMap;

use ingot_models::Result;
use ingot_tensor::sampling::{SAMPLE_PARAM_WORDS, top_logprobs_width};
use ingot_tensor::{Backend, Shape, Tensor};

use crate::input_batch::LogitsRow;
use crate::sampler::{SamplingState, TokenLogprobs, from_device_row};

/// Where a logits row's token (or prompt log-probabilities) comes from this step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Read back to the host: the host sampler, or prompt log-probabilities.
    Host,
    /// The device's `argmax` (plainly greedy rows).
    Argmax,
    /// The device's `sample` (plainly sampled rows, on backends that sample on the device).
    Sample,
    /// Greedy rows whose only host work would be log-probabilities.
    ArgmaxLogprobs,
    /// Sampled rows whose only host work would be log-probabilities.
    SampleLogprobs,
    /// The one token the request's grammar allows (no device work, nothing read back).
    Forced(u32),
}

/// What a row brings back from the step.
pub(crate) enum RowResult<'a> {
    /// The token, chosen on the device.
    Token(u32),
    /// The token with its log-probabilities, computed on the device.
    TokenWithLogprobs(TokenLogprobs),
    /// The row's logits [V], for the host.
    Logits(&'a [f32]),
    /// The only token the row's grammar allowed.
    Forced(u32),
}

/// The routing of one step's logits rows.
pub(crate) struct SamplePlan {
    sources: Vec<Source>, // [R]
}

/// The step's results on the host.
pub(crate) struct Readback {
    sources: Vec<Source>,
    ids: Option<Vec<u32>>,   // [R] when any row took `argmax`
    drawn: Option<Vec<u32>>, // [R] when any row took `sample`
    logprobs: HashMap<usize, TokenLogprobs>,
    host: Vec<f32>,               // [H, V]
    host_index: Vec<Option<u32>>, // [R]: the row's place among the host rows
    v: usize,
}

impl SamplePlan {
    /// Routes `rows` [R], whose requests' states are `states` [R]; `forced` [R] holds the
    /// token of each row whose grammar allows only one.
    pub fn new(
        rows: &[LogitsRow],
        states: &[&SamplingState],
        forced: &[Option<u32>],
        on_device: bool,
    ) -> Self {
        let sources = rows
            .iter()
            .zip(states)
            .zip(forced)
            .map(|((row, state), forced)| {
                if let Some(t) = forced.filter(|_| row.sample && state.params.logprobs.is_none()) {
                    Source::Forced(t)
                } else if !row.sample {
                    Source::Host
                } else if !state.needs_logits() {
                    Source::Argmax
                } else if on_device && state.device_sampleable() {
                    Source::Sample
                } else if on_device && state.device_logprobs().is_some() {
                    if state.params.is_greedy() {
                        Source::ArgmaxLogprobs
                    } else {
                        Source::SampleLogprobs
                    }
                } else {
                    Source::Host
                }
            })
            .collect();
        Self { sources }
    }

    fn rows_of(&self, kind: Source) -> Vec<u32> {
        (0..self.sources.len() as u32)
            .filter(|&i| self.sources[i as usize] == kind)
            .collect()
    }

    /// Records the plan's device work on `logits` [R, V] and reads its results back.
    pub fn run<B: Backend>(
        self,
        b: &B,
        logits: &Tensor<B>,
        states: &[&SamplingState],
    ) -> Result<Readback> {
        let (r, v) = (self.sources.len(), logits.dims()[1]);
        let params_of = |members: &[u32]| -> Result<Tensor<B>> {
            let mut p = Vec::with_capacity(members.len() * SAMPLE_PARAM_WORDS);
            for &i in members {
                p.extend_from_slice(&states[i as usize].device_params());
            }
            Ok(b.from_u32(&p, Shape::new([members.len(), SAMPLE_PARAM_WORDS]))?)
        };
        let ids = if self.sources.contains(&Source::Argmax) {
            Some(b.argmax(logits)?) // [R]: used only for the argmax rows
        } else {
            None
        };
        let drawn = if self.sources.contains(&Source::Sample) {
            // [R, 8]; rows that are not sampled here get temperature 0 (greedy, unused).
            let mut p = vec![0u32; r * SAMPLE_PARAM_WORDS];
            for i in self.rows_of(Source::Sample) {
                let at = i as usize * SAMPLE_PARAM_WORDS;
                p[at..at + SAMPLE_PARAM_WORDS].copy_from_slice(&states[i as usize].device_params());
            }
            let p = b.from_u32(&p, Shape::new([r, SAMPLE_PARAM_WORDS]))?;
            Some(b.sample(logits, &p)?) // [R]: used only for the sampled rows
        } else {
            None
        };
        let mut lp_groups = Vec::new();
        for kind in [Source::ArgmaxLogprobs, Source::SampleLogprobs] {
            let members = self.rows_of(kind);
            if members.is_empty() {
                continue;
            }
            let k_of = |i: u32| states[i as usize].device_logprobs().unwrap_or(0).min(v);
            let k = members.iter().map(|&i| k_of(i)).max().unwrap_or(0);
            let idx = b.from_u32(&members, Shape::new([members.len()]))?;
            let sub = b.gather_rows(logits, &idx)?; // [L, V]
            let tokens = if kind == Source::ArgmaxLogprobs {
                b.argmax(&sub)? // [L]
            } else {
                b.sample(&sub, &params_of(&members)?)? // [L]
            };
            let lps = b.top_logprobs(&sub, &tokens, k)?; // [L, 2 (1 + k)]
            lp_groups.push((members, k, lps));
        }
        let host_rows = self.rows_of(Source::Host);
        let host_logits = if host_rows.is_empty() || host_rows.len() == r {
            None
        } else {
            let idx = b.from_u32(&host_rows, Shape::new([host_rows.len()]))?;
            Some(b.gather_rows(logits, &idx)?) // [H, V]
        };

        let ids = ids.map(|t| b.to_u32(&t)).transpose()?;
        let drawn = drawn.map(|t| b.to_u32(&t)).transpose()?;
        let mut logprobs = HashMap::new();
        for (members, k, lps) in &lp_groups {
            let vals = b.to_f32(lps)?; // [L, 2 (1 + k)]
            let w = top_logprobs_width(*k);
            for (j, &i) in members.iter().enumerate() {
                let own_k = states[i as usize].device_logprobs().unwrap_or(0).min(v);
                let row = &vals[j * w..(j + 1) * w];
                logprobs.insert(i as usize, from_device_row(row, own_k));
            }
        }
        let host = match (&host_logits, host_rows.len()) {
            (Some(t), _) => b.to_f32(t)?,
            (None, 0) => Vec::new(),
            (None, _) => b.to_f32(logits)?,
        };
        if ids.is_none() && drawn.is_none() && lp_groups.is_empty() && host_rows.is_empty() {
            // Nothing was read back (every sequence is mid-prompt, or every token forced), so
            // nothing has waited for the step's work: wait here, so that device failures
            // surface in this step.
            b.sync()?;
        }
        let mut host_index = vec![None; r];
        for (j, &i) in host_rows.iter().enumerate() {
            host_index[i as usize] = Some(j as u32);
        }
        Ok(Readback {
            sources: self.sources,
            ids,
            drawn,
            logprobs,
            host,
            host_index,
            v,
        })
    }
}

impl Readback {
    /// Row `i`'s result (each row's device log-probabilities are handed out once).
    pub fn row(&mut self, i: usize) -> RowResult<'_> {
        match self.sources[i] {
            Source::Argmax => RowResult::Token(self.ids.as_ref().expect("argmax ran")[i]),
            Source::Sample => RowResult::Token(self.drawn.as_ref().expect("sample ran")[i]),
            Source::ArgmaxLogprobs | Source::SampleLogprobs => RowResult::TokenWithLogprobs(
                self.logprobs
                    .remove(&i)
                    .expect("top_logprobs ran for this row"),
            ),
            Source::Forced(t) => RowResult::Forced(t),
            Source::Host => {
                let j = self.host_index[i].expect("a host row") as usize;
                RowResult::Logits(&self.host[j * self.v..(j + 1) * self.v])
            }
        }
    }
}
