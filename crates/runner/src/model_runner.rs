//! `ModelRunner`: owns the model, its paged KV cache, the backend and each request's
//! sampling state. One call executes one [`SchedulerOutput`]: build the flat
//! [`InputBatch`], upload it, run one forward pass, read back what sampling needs and
//! sample. It knows nothing of queues or block allocation: block ids arrive in the output.
//!
//! Read-back: the forward pass leaves logits [R, V] on the device. Rows whose request is
//! plainly greedy at this step (temperature 0, no bias, penalties or `min_tokens`
//! suppression, no log-probabilities; see `SamplingState::needs_logits`) take their token
//! from the backend's `argmax` verb, so a greedy decode step reads back R u32 ids instead
//! of R x V floats. Only the other rows (sampled rows not sampled on the device,
//! processed, log-probability and prompt log-probability rows) are gathered on the device
//! and read back as f32 for the host sampler. `argmax` has exactly the host sampler's semantics, so tokens do not depend on
//! which path a row took.
//!
//! Sampled rows: on a backend that samples on the device (`Backend::samples_on_device`,
//! the GPU backends), a row whose request is sampled (temperature > 0, top-k / top-p /
//! min-p allowed) with nothing else to process (`SamplingState::device_sampleable`) takes
//! its token from the backend's `sample` verb too: Gumbel-max over noise hashed from the
//! request's seed (drawn once from its host RNG when unseeded) and its output position, so
//! a request's draws never depend on the batch, and the step reads back ids only. Rows
//! with penalties, bias or `min_tokens` suppression keep the host sampler (log-probability
//! rows: see below), and on the CPU backend every sampled row does, so CPU results are
//! those of the host sampler's ChaCha stream.
//!
//! Log-probability rows: on such a backend, a row whose only host work would be its
//! per-token log-probabilities (`SamplingState::device_logprobs`: `logprobs = Some(k)` and
//! nothing to process; prompt log-probabilities are not covered) stays on the device too.
//! Those rows are gathered into [L, V] per kind (greedy, sampled), take their token from
//! `argmax` or `sample` on the gathered rows (row-wise verbs, so the same token as on the
//! full batch), and their log-probabilities from the `top_logprobs` verb with the largest
//! `k` among them (each row keeps its own first `k`, a prefix of the same total ranking):
//! the step reads back 2 (1 + k) floats per such row instead of V. The cost on the device
//! is k + 2 passes over each gathered row.

use std::collections::HashMap;

use ingot_models::Result;
use ingot_models::llama::{ForwardBatch, LayerCache, LlamaModel};
use ingot_scheduler::{RequestId, SchedulerOutput};
use ingot_tensor::backend::{SAMPLE_PARAM_WORDS, top_logprobs_width};
use ingot_tensor::{AttentionMeta, Backend, DType, Shape, Tensor};

use crate::sampler::{Sampled, Sampler, SamplingState, TokenLogprobs};
use crate::{InputBatch, ScheduledSeq};

pub struct ModelRunner<B: Backend> {
    pub backend: B,
    pub model: LlamaModel<B>,
    caches: Vec<LayerCache<B>>,
    pub block_size: usize,
    pub num_blocks: usize,
    eos_token_ids: Vec<u32>,
    states: HashMap<RequestId, SamplingState>,
    sampler: Sampler,
}

impl<B: Backend> ModelRunner<B> {
    /// A runner with f32 KV caches of `num_blocks` blocks of `block_size` tokens per layer.
    pub fn new(
        backend: B,
        model: LlamaModel<B>,
        num_blocks: usize,
        block_size: usize,
        eos_token_ids: Vec<u32>,
    ) -> Result<Self> {
        Self::with_kv_dtype(
            backend,
            model,
            num_blocks,
            block_size,
            eos_token_ids,
            DType::F32,
        )
    }

    /// A runner whose KV caches hold `kv_dtype` (f32, or f16 where the backend supports it:
    /// half the memory, K/V rounded to f16 when written, attention math still f32).
    pub fn with_kv_dtype(
        backend: B,
        model: LlamaModel<B>,
        num_blocks: usize,
        block_size: usize,
        eos_token_ids: Vec<u32>,
        kv_dtype: DType,
    ) -> Result<Self> {
        let caches = model.alloc_kv_cache(&backend, num_blocks, block_size, kv_dtype)?;
        Ok(Self {
            backend,
            model,
            caches,
            block_size,
            num_blocks,
            eos_token_ids,
            states: HashMap::new(),
            sampler: Sampler::default(),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.model.config.vocab_size
    }

    /// Number of requests whose sampling state the runner holds (for leak checks).
    pub fn num_tracked(&self) -> usize {
        self.states.len()
    }

    /// Runs one forward pass over `batch`; returns logits [S', V] (row-major) of its
    /// sampled rows, read back to the host.
    pub fn forward(&mut self, batch: &InputBatch) -> Result<Vec<f32>> {
        let logits = self.forward_logits(batch)?;
        Ok(self.backend.to_f32(&logits)?)
    }

    /// Runs one forward pass over `batch`; returns logits [S', V] of its sampled rows, left
    /// on the device.
    pub fn forward_logits(&mut self, batch: &InputBatch) -> Result<Tensor<B>> {
        let b = &self.backend;
        let t = batch.num_tokens();
        let s = batch.num_seqs();
        let token_ids = b.from_u32(&batch.token_ids, Shape::new([t]))?;
        let positions = b.from_u32(&batch.positions, Shape::new([t]))?;
        let slot_mapping = b.from_u32(&batch.slot_mapping, Shape::new([t]))?;
        let logits_indices = b.from_u32(
            &batch.logits_indices,
            Shape::new([batch.logits_indices.len()]),
        )?;
        let block_tables = b.from_u32(&batch.block_tables, Shape::new([s, batch.max_blocks]))?;
        let seq_lens = b.from_u32(&batch.seq_lens, Shape::new([s]))?;
        let query_start_loc = b.from_u32(&batch.query_start_loc, Shape::new([s + 1]))?;
        let fb = ForwardBatch {
            token_ids: &token_ids,
            positions: &positions,
            slot_mapping: &slot_mapping,
            logits_indices: &logits_indices,
            attn: AttentionMeta {
                block_tables: &block_tables,
                seq_lens: &seq_lens,
                query_start_loc: &query_start_loc,
                max_seq_len: batch.max_seq_len,
            },
        };
        self.model.forward(b, &fb, &mut self.caches)
    }

    /// Executes one scheduler step and samples a token for every request that completes
    /// its known tokens this step.
    pub fn execute(&mut self, out: &SchedulerOutput) -> Result<HashMap<RequestId, Sampled>> {
        for id in &out.finished {
            self.states.remove(id);
        }
        for r in &out.new_requests {
            self.states.insert(
                r.id,
                SamplingState::new(r.params.clone(), &r.prompt, &self.eos_token_ids),
            );
        }
        let mut sampled = HashMap::new();
        if out.scheduled.is_empty() {
            return Ok(sampled);
        }
        let block_ids: Vec<&[u32]> = out
            .scheduled
            .iter()
            .map(|r| r.block_ids.as_slice())
            .collect();
        let states = &self.states;
        let seqs: Vec<ScheduledSeq> = out
            .scheduled
            .iter()
            .zip(&block_ids)
            .map(|(r, blocks)| ScheduledSeq {
                new_tokens: &r.new_token_ids,
                num_computed: r.num_computed_tokens,
                block_table: blocks,
                sample: r.sample,
                all_logits: states
                    .get(&r.id)
                    .is_some_and(|s| s.wants_prompt_logits(r.num_computed_tokens)),
            })
            .collect();
        let batch = InputBatch::build(&seqs, self.block_size);
        let logits = self.forward_logits(&batch)?; // [R, V] on the device
        let rows = &batch.logits_rows; // [R]
        let state_of = |seq: usize| {
            self.states
                .get(&out.scheduled[seq].id)
                .expect("a scheduled request was announced")
        };
        // Where each row's token comes from: the host sampler (prompt rows, and sampled
        // rows that need processing or log-probabilities), the device argmax (plainly
        // greedy rows) or the device sampler (plainly sampled rows, on backends that
        // sample on the device).
        let on_device = self.backend.samples_on_device();
        let source: Vec<Source> = rows
            .iter()
            .map(|row| {
                let state = state_of(row.seq);
                if !row.sample {
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
        let host_rows: Vec<u32> = (0..rows.len())
            .filter(|&i| source[i] == Source::Host)
            .map(|i| i as u32)
            .collect();
        let b = &self.backend;
        let ids = if source.contains(&Source::Argmax) {
            Some(b.argmax(&logits)?) // [R]: used only for the argmax rows
        } else {
            None
        };
        let drawn = if source.contains(&Source::Sample) {
            // [R, 8]; the other rows get temperature 0 (a cheap greedy pass, unused).
            let mut params = vec![0u32; rows.len() * SAMPLE_PARAM_WORDS];
            for (i, row) in rows.iter().enumerate() {
                if source[i] == Source::Sample {
                    params[i * SAMPLE_PARAM_WORDS..(i + 1) * SAMPLE_PARAM_WORDS]
                        .copy_from_slice(&state_of(row.seq).device_params());
                }
            }
            let params = b.from_u32(&params, Shape::new([rows.len(), SAMPLE_PARAM_WORDS]))?;
            Some(b.sample(&logits, &params)?) // [R]: used only for the sampled rows
        } else {
            None
        };
        // Log-probability rows, per kind: gathered, their tokens and `top_logprobs` taken on
        // the gathered rows. `k` is the largest of the group's, clamped to the vocabulary.
        let v = self.vocab_size();
        let mut lp_groups = Vec::new();
        for kind in [Source::ArgmaxLogprobs, Source::SampleLogprobs] {
            let members: Vec<u32> = (0..rows.len())
                .filter(|&i| source[i] == kind)
                .map(|i| i as u32)
                .collect();
            if members.is_empty() {
                continue;
            }
            let k = members
                .iter()
                .filter_map(|&i| state_of(rows[i as usize].seq).device_logprobs())
                .max()
                .unwrap_or(0)
                .min(v);
            let idx = b.from_u32(&members, Shape::new([members.len()]))?;
            let sub = b.gather_rows(&logits, &idx)?; // [L, V]
            let tokens = if kind == Source::ArgmaxLogprobs {
                b.argmax(&sub)? // [L]
            } else {
                let mut params = Vec::with_capacity(members.len() * SAMPLE_PARAM_WORDS);
                for &i in &members {
                    params.extend_from_slice(&state_of(rows[i as usize].seq).device_params());
                }
                let params =
                    b.from_u32(&params, Shape::new([members.len(), SAMPLE_PARAM_WORDS]))?;
                b.sample(&sub, &params)? // [L]
            };
            let lps = b.top_logprobs(&sub, &tokens, k)?; // [L, 2 (1 + k)]
            lp_groups.push((members, k, lps));
        }
        let host_logits = if host_rows.is_empty() || host_rows.len() == rows.len() {
            None
        } else {
            let idx = b.from_u32(&host_rows, Shape::new([host_rows.len()]))?;
            Some(b.gather_rows(&logits, &idx)?) // [host_rows, V]
        };
        // argmax, sample and the gather are all recorded before the first read-back, so one
        // submission carries them.
        let ids = ids.map(|t| b.to_u32(&t)).transpose()?;
        let drawn = drawn.map(|t| b.to_u32(&t)).transpose()?;
        // Per row index: its device log-probabilities (chosen token first), from the groups.
        let mut device_lps: HashMap<usize, TokenLogprobs> = HashMap::new();
        for (members, k, lps) in &lp_groups {
            let vals = b.to_f32(lps)?; // [L, 2 (1 + k)]
            let w = top_logprobs_width(*k);
            for (j, &i) in members.iter().enumerate() {
                let own_k = state_of(rows[i as usize].seq)
                    .device_logprobs()
                    .expect("a log-probability row")
                    .min(v);
                let row = &vals[j * w..(j + 1) * w];
                device_lps.insert(i as usize, TokenLogprobs::from_device_row(row, own_k));
            }
        }
        let host: Vec<f32> = match (&host_logits, host_rows.len()) {
            (Some(t), _) => b.to_f32(t)?,
            (None, 0) => Vec::new(),
            (None, _) => b.to_f32(&logits)?,
        };
        if rows.is_empty() {
            // Nothing was read back (every sequence is mid-prompt), so nothing has waited
            // for the step's work yet: wait here, so that device failures surface in this
            // step. Otherwise the read-backs above already waited and reported them.
            b.sync()?;
        }
        let mut next_host = 0;
        for (i, row) in rows.iter().enumerate() {
            let id = out.scheduled[row.seq].id;
            let state = self
                .states
                .get_mut(&id)
                .expect("a scheduled request was announced");
            match source[i] {
                Source::Argmax => {
                    let ids = ids.as_ref().expect("argmax ran for greedy rows");
                    sampled.insert(id, state.accept(ids[i]));
                    continue;
                }
                Source::Sample => {
                    let drawn = drawn.as_ref().expect("sample ran for sampled rows");
                    sampled.insert(id, state.accept(drawn[i]));
                    continue;
                }
                Source::ArgmaxLogprobs | Source::SampleLogprobs => {
                    let lps = device_lps
                        .remove(&i)
                        .expect("top_logprobs ran for this row");
                    sampled.insert(id, state.accept_with_logprobs(lps.token, lps));
                    continue;
                }
                Source::Host => {}
            }
            let logits = &host[next_host * v..(next_host + 1) * v];
            next_host += 1;
            if row.sample {
                sampled.insert(id, self.sampler.sample(logits, state));
            } else {
                state.observe_prompt_row(row.position, logits);
            }
        }
        Ok(sampled)
    }
}

/// Where a logits row's token (or prompt log-probabilities) comes from this step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Read back to the host: the host sampler, or prompt log-probabilities.
    Host,
    /// The device's `argmax` (plainly greedy rows).
    Argmax,
    /// The device's `sample` (plainly sampled rows, on backends that sample on the device).
    Sample,
    /// Greedy rows whose only host work would be log-probabilities: gathered, `argmax`
    /// and `top_logprobs` on the device.
    ArgmaxLogprobs,
    /// Sampled rows whose only host work would be log-probabilities: gathered, `sample`
    /// and `top_logprobs` on the device.
    SampleLogprobs,
}
