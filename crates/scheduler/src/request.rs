//! A request as the scheduler sees it: its tokens, how many have KV in the cache, its
//! blocks, and where it is in its life (waiting -> running -> finished, with preemption
//! sending a running request back to waiting).

use ingot_kv_cache::KvCacheBlocks;

use crate::SamplingParams;

pub use ingot_api::{FinishReason, RequestId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestStatus {
    Waiting,
    Running,
    /// Was running, lost its blocks to a newer request; waits to be recomputed.
    Preempted,
    Finished(FinishReason),
}

pub struct Request {
    pub id: RequestId,
    /// Lower runs first; ties by arrival.
    pub priority: i32,
    pub arrival: u64,
    pub prompt_len: usize,
    /// Prompt then generated tokens.
    pub tokens: Vec<u32>,
    /// Tokens whose KV is in the cache.
    pub num_computed: usize,
    pub params: SamplingParams,
    /// EOS ids of the model (ignored with `ignore_eos`).
    pub eos_token_ids: Vec<u32>,
    /// Prefix-cache namespace (e.g. a LoRA id); 0 for the base model.
    pub cache_key: u64,
    pub status: RequestStatus,
    pub blocks: Option<KvCacheBlocks>,
    pub num_preemptions: usize,
    /// Tokens that came from the prefix cache at the last admission.
    pub num_cached_tokens: usize,
}

impl Request {
    pub fn new(
        id: RequestId,
        prompt: Vec<u32>,
        params: SamplingParams,
        eos_token_ids: Vec<u32>,
    ) -> Self {
        Self {
            id,
            priority: 0,
            arrival: 0,
            prompt_len: prompt.len(),
            tokens: prompt,
            num_computed: 0,
            params,
            eos_token_ids,
            cache_key: 0,
            status: RequestStatus::Waiting,
            blocks: None,
            num_preemptions: 0,
            num_cached_tokens: 0,
        }
    }

    pub fn num_tokens(&self) -> usize {
        self.tokens.len()
    }

    pub fn output(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    pub fn num_output(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    /// Whether a just-appended token ends the request, and why.
    pub fn check_stop(&self, max_model_len: usize) -> Option<FinishReason> {
        let n = self.num_output();
        let last = *self.tokens.last()?;
        if n >= self.params.min_tokens {
            if !self.params.ignore_eos && self.eos_token_ids.contains(&last) {
                return Some(FinishReason::Stop);
            }
            if self.params.stop_token_ids.contains(&last) {
                return Some(FinishReason::Stop);
            }
        }
        if n >= self.params.max_tokens || self.num_tokens() >= max_model_len {
            return Some(FinishReason::Length);
        }
        None
    }
}
