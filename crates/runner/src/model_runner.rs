//! `ModelRunner`: owns the model, its paged KV cache, the backend and each request's
//! sampling state. One call executes one [`SchedulerOutput`]: build the flat
//! [`InputBatch`], upload it, run one forward pass, read back the sampled rows' logits and
//! sample. It knows nothing of queues or block allocation: block ids arrive in the output.

use std::collections::HashMap;

use ingot_models::Result;
use ingot_models::llama::{ForwardBatch, LayerCache, LlamaModel};
use ingot_scheduler::{RequestId, SchedulerOutput};
use ingot_tensor::{AttentionMeta, Backend, DType, Shape};

use crate::sampler::{Sampled, Sampler, SamplingState};
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
    pub fn new(
        backend: B,
        model: LlamaModel<B>,
        num_blocks: usize,
        block_size: usize,
        eos_token_ids: Vec<u32>,
    ) -> Result<Self> {
        let caches = model.alloc_kv_cache(&backend, num_blocks, block_size, DType::F32)?;
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
    /// sampled rows.
    pub fn forward(&mut self, batch: &InputBatch) -> Result<Vec<f32>> {
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
        let logits = self.model.forward(b, &fb, &mut self.caches)?;
        Ok(b.to_f32(&logits)?)
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
        let logits = self.forward(&batch)?;
        let v = self.vocab_size();
        for (i, row) in batch.logits_rows.iter().enumerate() {
            let id = out.scheduled[row.seq].id;
            let state = self
                .states
                .get_mut(&id)
                .expect("a scheduled request was announced");
            let logits = &logits[i * v..(i + 1) * v];
            if row.sample {
                sampled.insert(id, self.sampler.sample(logits, state));
            } else {
                state.observe_prompt_row(row.position, logits);
            }
        }
        Ok(sampled)
    }
}
