//! `SchedulerOutput`: everything the runner is told about a step (DESIGN.md §4), as plain
//! data. The runner keeps per-request sampling state keyed by id: `new_requests` introduces
//! a request the first time it is scheduled, `finished` lets the runner drop it.

use crate::{RequestId, SamplingParams};

#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledRequest {
    pub id: RequestId,
    /// Tokens to compute this step (a prompt chunk, a recomputation, or the last sampled token).
    pub new_token_ids: Vec<u32>,
    /// Tokens already in the KV cache; the new ones follow them.
    pub num_computed_tokens: usize,
    /// The request's block table in each KV cache group, in logical order:
    /// `[groups][logical blocks]`, `u32::MAX` where a sliding window's block was freed.
    pub block_ids: Vec<Vec<u32>>,
    /// Whether this step completes the request's known tokens, so its last row is sampled.
    pub sample: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewRequest {
    pub id: RequestId,
    pub params: SamplingParams,
    /// The prompt (for repetition penalties and prompt logprobs).
    pub prompt: Vec<u32>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchedulerOutput {
    pub scheduled: Vec<ScheduledRequest>,
    /// Requests scheduled for the first time since they were added.
    pub new_requests: Vec<NewRequest>,
    /// Requests preempted this step (their blocks are gone; they will be recomputed).
    pub preempted: Vec<RequestId>,
    /// Requests that finished or were aborted since the last step.
    pub finished: Vec<RequestId>,
    pub num_batched_tokens: usize,
}

impl SchedulerOutput {
    pub fn is_empty(&self) -> bool {
        self.scheduled.is_empty()
    }
}
