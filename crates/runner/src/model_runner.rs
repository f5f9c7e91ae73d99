//! `ModelRunner`: owns the model, its paged KV cache, the backend and each request's
//! sampling state. One call executes one [`SchedulerOutput`]: build the flat
//! [`InputBatch`], upload it, run one forward pass, then let a [`SamplePlan`] choose where
//! each row's token comes from (device verbs or the host sampler, all following one
//! definition) and read back only what the host needs. It knows nothing of queues or block
//! allocation: block ids arrive in the output, one table per KV cache group.
//!
//! KV cache groups: the runner is built either with one group serving every layer (each
//! layer's cache has `num_blocks` blocks and keeps all of them) or with the model's groups
//! ([`ingot_models::kv_groups`]: full attention, and one group per sliding window), each
//! with its own number of blocks; every layer's cache is sized by its group.
//!
//! Structured output: a constrained request's grammar (`ingot_structured::Constraint`,
//! handed over by the engine with [`ModelRunner::constrain`]) computes its mask on the host
//! after the forward pass is recorded, so on a GPU the masks are built while the device
//! runs the step. Rows whose grammar allows one token take it (forced); the others' masks
//! go to the device as bits and `mask_logits` applies them before any token is chosen, so
//! the sample plan routes constrained rows like any other. A grammar that fails is reported
//! through [`ModelRunner::take_failures`] and the request gets no token.
//!
//! Jump-forward (on unless [`ModelRunner::set_jump_forward`] turns it off): after a
//! constrained row's token is committed, the tokens its grammar then forces (where it
//! allows exactly one) are taken at once, up to `max_tokens` and through the first stop
//! token, and returned in [`Sampled::forced`]; the scheduler appends them all and the next
//! step computes them as one chunk, like a piece of prompt. The tokens are the ones a step
//! per forced token would give: each is the only one its mask allows, and the chunk's
//! logits are those of one token at a time (batch invariance). Requests asking for
//! log-probabilities take forced tokens one per step, each reporting its own row's.

use std::collections::HashMap;

use ingot_models::{ForwardBatch, KvGroup, KvGroupBatch, LayerCache, Model, Result};
use ingot_scheduler::{KvGroupSpec, RequestId, SchedulerOutput};
use ingot_structured::{Constraint, Next};
use ingot_tensor::sampling::mask_words;
use ingot_tensor::{AttentionMeta, Backend, DType, Shape, Tensor};

use crate::sample_plan::{RowResult, SamplePlan};
use crate::sampler::{Sampled, Sampler, SamplingState};
use crate::{InputBatch, ScheduledSeq};

pub struct ModelRunner<B: Backend> {
    pub backend: B,
    pub model: Box<dyn Model<B>>,
    caches: Vec<LayerCache<B>>,
    pub block_size: usize,
    /// Blocks of KV cache group 0.
    pub num_blocks: usize,
    /// The KV cache groups with their blocks, in the scheduler's group order.
    kv_groups: Vec<(KvGroup, usize)>,
    eos_token_ids: Vec<u32>,
    states: HashMap<RequestId, SamplingState>,
    sampler: Sampler,
    /// Grammars of requests not yet announced to the runner (they join their state when it
    /// is created).
    pending: HashMap<RequestId, Constraint>,
    /// Requests whose grammar failed this step, with why.
    failures: Vec<(RequestId, String)>,
    mask_stats: MaskStats,
    /// Whether forced runs are taken in one step (see the module header).
    jump_forward: bool,
}

/// A step's logits after the constrained rows' masks, with what the masks decided.
struct Masked<B: Backend> {
    logits: Tensor<B>, // [R, V]
    /// Per row: the one token its grammar allows, if so.
    forced: Vec<Option<u32>>, // [R]
    /// Per row: its grammar failed, so it gets no token.
    failed: Vec<bool>, // [R]
}

/// Host time spent computing structured-output masks, since the runner started.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MaskStats {
    /// Steps that had at least one constrained row.
    pub steps: u64,
    /// Constrained rows masked (forced rows included).
    pub rows: u64,
    /// Seconds spent in the matchers computing masks, jump-forward's look-ahead included
    /// (commits are not counted: they are a few microseconds).
    pub seconds: f64,
    /// Tokens taken because the grammar allowed only them (no choice from logits): forced
    /// rows, and the runs jump-forward appended.
    pub forced_tokens: u64,
}

impl<B: Backend> ModelRunner<B> {
    /// A runner with f32 KV caches of `num_blocks` blocks of `block_size` tokens per layer.
    pub fn new(
        backend: B,
        model: Box<dyn Model<B>>,
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
        model: Box<dyn Model<B>>,
        num_blocks: usize,
        block_size: usize,
        eos_token_ids: Vec<u32>,
        kv_dtype: DType,
    ) -> Result<Self> {
        let groups = ingot_models::single_kv_group(&model.kv_layout());
        Self::with_kv_groups(
            backend,
            model,
            groups.into_iter().map(|g| (g, num_blocks)).collect(),
            block_size,
            eos_token_ids,
            kv_dtype,
        )
    }

    /// A runner whose KV cache has the given groups, each with its number of blocks (every
    /// layer in exactly one group).
    pub fn with_kv_groups(
        backend: B,
        model: Box<dyn Model<B>>,
        kv_groups: Vec<(KvGroup, usize)>,
        block_size: usize,
        eos_token_ids: Vec<u32>,
        kv_dtype: DType,
    ) -> Result<Self> {
        let layers = model.kv_layout().len();
        let mut blocks_per_layer = vec![None; layers];
        for (g, n) in &kv_groups {
            for &l in &g.layers {
                let slot = blocks_per_layer.get_mut(l).filter(|s| s.is_none());
                *slot.ok_or_else(|| {
                    ingot_models::ModelError::Resolve(format!(
                        "layer {l} is in two KV groups or none"
                    ))
                })? = Some(*n);
            }
        }
        let blocks_per_layer: Vec<usize> = blocks_per_layer
            .into_iter()
            .collect::<Option<_>>()
            .ok_or_else(|| ingot_models::ModelError::Resolve("a layer in no KV group".into()))?;
        let caches = model.alloc_kv_cache(&backend, &blocks_per_layer, block_size, kv_dtype)?;
        Ok(Self {
            backend,
            model,
            caches,
            block_size,
            num_blocks: kv_groups[0].1,
            kv_groups,
            eos_token_ids,
            states: HashMap::new(),
            sampler: Sampler::default(),
            pending: HashMap::new(),
            failures: Vec::new(),
            mask_stats: MaskStats::default(),
            jump_forward: true,
        })
    }

    /// The KV cache groups as the scheduler's cache manager needs them, in order.
    pub fn kv_group_specs(&self) -> Vec<KvGroupSpec> {
        self.kv_groups
            .iter()
            .map(|(g, n)| KvGroupSpec {
                sliding_window: g.sliding_window,
                num_blocks: *n,
            })
            .collect()
    }

    pub fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }

    /// Number of requests whose sampling state the runner holds (for leak checks).
    pub fn num_tracked(&self) -> usize {
        self.states.len() + self.pending.len()
    }

    /// Constrains request `id`'s output to `constraint`'s grammar (before its first step).
    pub fn constrain(&mut self, id: RequestId, constraint: Constraint) {
        match self.states.get_mut(&id) {
            Some(state) => state.constraint = Some(constraint),
            None => {
                self.pending.insert(id, constraint);
            }
        }
    }

    /// Turns jump-forward (forced runs in one step) on or off; on by default. Either way
    /// gives the same tokens; off takes one step per forced token.
    pub fn set_jump_forward(&mut self, on: bool) {
        self.jump_forward = on;
    }

    /// Structured-output mask counters, for metrics and benchmarks.
    pub fn mask_stats(&self) -> MaskStats {
        self.mask_stats
    }

    /// The requests whose grammar failed in the last step (they got no token), with why.
    pub fn take_failures(&mut self) -> Vec<(RequestId, String)> {
        std::mem::take(&mut self.failures)
    }

    /// Computes the masks of the constrained rows among `rows` [R] (requests `ids`) and
    /// applies them to `logits` [R, V]: returns the logits to choose from, each row's forced
    /// token, and the rows whose grammar failed (they must get no token).
    fn apply_constraints(
        &mut self,
        rows: &[crate::input_batch::LogitsRow],
        ids: &[RequestId],
        logits: Tensor<B>,
    ) -> Result<Masked<B>> {
        let r = rows.len();
        let mut forced = vec![None; r];
        let mut failed = vec![false; r];
        if !rows.iter().zip(ids).any(|(row, id)| {
            row.sample && self.states.get(id).is_some_and(|s| s.constraint.is_some())
        }) {
            return Ok(Masked {
                logits,
                forced,
                failed,
            });
        }
        // The forward pass runs on the device while the matchers compute.
        self.backend.flush()?;
        let started = std::time::Instant::now();
        self.mask_stats.steps += 1;
        let w = mask_words(logits.dims()[1]);
        let mut bits = vec![u32::MAX; r * w]; // [R, W]: unconstrained rows allow every token
        let mut masked = false;
        for (i, (row, id)) in rows.iter().zip(ids).enumerate() {
            let Some(state) = self.states.get_mut(id).filter(|_| row.sample) else {
                continue;
            };
            // A forced row reads no logits, unless it wants log-probabilities.
            let reads_logits = state.params.logprobs.is_some();
            let Some(c) = state.constraint.as_mut() else {
                continue;
            };
            self.mask_stats.rows += 1;
            match c.mask(&mut bits[i * w..(i + 1) * w]) {
                Ok(Next::Forced(t)) => {
                    forced[i] = Some(t);
                    masked |= reads_logits;
                }
                Ok(Next::Masked) => masked = true,
                Err(e) => {
                    failed[i] = true;
                    self.failures.push((*id, e));
                }
            }
        }
        self.mask_stats.seconds += started.elapsed().as_secs_f64();
        if !masked {
            return Ok(Masked {
                logits,
                forced,
                failed,
            });
        }
        let b = &self.backend;
        let mask = b.from_u32(&bits, Shape::new([r, w]))?;
        Ok(Masked {
            logits: b.mask_logits(&logits, &mask)?,
            forced,
            failed,
        })
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
        if batch.groups.len() != self.kv_groups.len() {
            return Err(ingot_models::ModelError::Resolve(format!(
                "the batch has {} KV cache groups, the runner {}",
                batch.groups.len(),
                self.kv_groups.len()
            )));
        }
        let token_ids = b.from_u32(&batch.token_ids, Shape::new([t]))?;
        let positions = b.from_u32(&batch.positions, Shape::new([t]))?;
        let logits_indices = b.from_u32(
            &batch.logits_indices,
            Shape::new([batch.logits_indices.len()]),
        )?;
        let seq_lens = b.from_u32(&batch.seq_lens, Shape::new([s]))?;
        let query_start_loc = b.from_u32(&batch.query_start_loc, Shape::new([s + 1]))?;
        let group_tensors = batch
            .groups
            .iter()
            .map(|g| {
                Ok((
                    b.from_u32(&g.slot_mapping, Shape::new([t]))?, // [T]
                    b.from_u32(&g.block_tables, Shape::new([s, g.max_blocks]))?, // [S, max_blocks]
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let fb = ForwardBatch {
            token_ids: &token_ids,
            positions: &positions,
            logits_indices: &logits_indices,
            kv: group_tensors
                .iter()
                .zip(&self.kv_groups)
                .map(|((slot_mapping, block_tables), (group, _))| KvGroupBatch {
                    sliding_window: group.sliding_window,
                    slot_mapping,
                    attn: AttentionMeta {
                        block_tables,
                        seq_lens: &seq_lens,
                        query_start_loc: &query_start_loc,
                        max_seq_len: batch.max_seq_len,
                    },
                })
                .collect(),
        };
        self.model.forward(b, &fb, &mut self.caches)
    }

    /// Executes one scheduler step and samples a token for every request that completes
    /// its known tokens this step.
    pub fn execute(&mut self, out: &SchedulerOutput) -> Result<HashMap<RequestId, Sampled>> {
        for id in &out.finished {
            self.states.remove(id);
            self.pending.remove(id);
        }
        for r in &out.new_requests {
            let mut state = SamplingState::new(r.params.clone(), &r.prompt, &self.eos_token_ids);
            state.constraint = self.pending.remove(&r.id);
            self.states.insert(r.id, state);
        }
        let mut sampled = HashMap::new();
        if out.scheduled.is_empty() {
            return Ok(sampled);
        }
        let states = &self.states;
        let seqs: Vec<ScheduledSeq> = out
            .scheduled
            .iter()
            .map(|r| ScheduledSeq {
                new_tokens: &r.new_token_ids,
                num_computed: r.num_computed_tokens,
                block_tables: &r.block_ids,
                sample: r.sample,
                all_logits: states
                    .get(&r.id)
                    .is_some_and(|s| s.wants_prompt_logits(r.num_computed_tokens)),
            })
            .collect();
        let batch = InputBatch::build(&seqs, self.block_size);
        let logits = self.forward_logits(&batch)?; // [R, V] on the device
        let rows = &batch.logits_rows; // [R]
        let ids: Vec<RequestId> = rows.iter().map(|r| out.scheduled[r.seq].id).collect();
        let Masked {
            logits,
            forced,
            failed,
        } = self.apply_constraints(rows, &ids, logits)?;
        let states: Vec<&SamplingState> = ids.iter().map(|id| &self.states[id]).collect();
        let plan = SamplePlan::new(rows, &states, &forced, self.backend.samples_on_device());
        let mut back = plan.run(&self.backend, &logits, &states)?;
        for (i, (row, id)) in rows.iter().zip(ids).enumerate() {
            if failed[i] {
                continue;
            }
            let state = self
                .states
                .get_mut(&id)
                .expect("a scheduled request was announced");
            let mut s = match back.row(i) {
                RowResult::Token(t) => state.accept(t),
                RowResult::Forced(t) => {
                    self.mask_stats.forced_tokens += 1;
                    state.accept_forced(t)
                }
                RowResult::TokenWithLogprobs(lps) => state.accept_with_logprobs(lps.token, lps),
                RowResult::Logits(l) if row.sample => self.sampler.sample(l, state),
                RowResult::Logits(l) => {
                    state.observe_prompt_row(row.position, l);
                    continue;
                }
            };
            if let Some(c) = state.constraint.as_mut()
                && let Err(e) = c.commit(s.token)
            {
                self.failures.push((id, e));
                continue;
            }
            if self.jump_forward {
                s.forced = forced_run(state, s.token, &mut self.mask_stats);
            }
            sampled.insert(id, s);
        }
        Ok(sampled)
    }
}

/// Takes the run of tokens `state`'s grammar forces after `token` (jump-forward),
/// recording each as a forced token: until the grammar allows a choice, `max_tokens` is
/// reached, or a stop token is taken. Empty without a grammar, after a stop token, and for
/// requests asking for log-probabilities. A matcher error ends the run; the next step's
/// mask reports it.
fn forced_run(state: &mut SamplingState, token: u32, stats: &mut MaskStats) -> Vec<u32> {
    let mut run = Vec::new();
    if state.params.logprobs.is_some() || state.stop_ids.contains(&token) {
        return run;
    }
    let Some(mut c) = state.constraint.take() else {
        return run;
    };
    let started = std::time::Instant::now();
    while state.num_output() < state.params.max_tokens {
        let Ok(Some(t)) = c.forced_next() else {
            break;
        };
        if c.commit(t).is_err() {
            break;
        }
        state.accept_forced(t);
        run.push(t);
        if state.stop_ids.contains(&t) {
            break;
        }
    }
    stats.seconds += started.elapsed().as_secs_f64();
    stats.forced_tokens += run.len() as u64;
    state.constraint = Some(c);
    run
}
