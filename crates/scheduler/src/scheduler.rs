//! The step scheduler (vLLM v1's design, DESIGN.md §2).
//!
//! There is no prefill phase and no decode phase. Each request knows how many of its tokens
//! are computed (`num_computed`) and how many it has (`num_tokens`); each step hands out
//! new tokens to compute under a token budget (`max_num_batched_tokens`) and a sequence cap
//! (`max_num_seqs`): running requests first, in admission order (usually one token each, or
//! the next chunk of a long prompt), then waiting ones by (priority, arrival), whose prompts
//! are cut to the budget that remains (chunked prefill). When the KV cache cannot hold a
//! running request's next tokens, the most recently admitted running request is preempted:
//! its blocks are freed and it goes back to the waiting queue to be recomputed later (its
//! full blocks usually still sit in the prefix cache). No request is ever dropped; while a
//! step preempts, no waiting request is admitted.
//!
//! The KV cache may have several groups (full attention, sliding windows; see
//! `ingot_kv_cache::groups`): a request runs only if every group has room for it, and its
//! sliding-window blocks are returned as soon as its computed tokens leave them behind.

use std::collections::{HashMap, HashSet, VecDeque};

use ingot_kv_cache::{KvCacheEvent, KvCacheManager, KvCacheStats, KvGroupSpec};

use crate::output::{NewRequest, ScheduledRequest, SchedulerOutput};
use crate::request::{FinishReason, Request, RequestId, RequestStatus};
use ingot_api::AddError;

#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    pub max_model_len: usize,
    /// Blocks of the first KV cache group (the only one unless built with
    /// [`Scheduler::with_kv_groups`]).
    pub num_blocks: usize,
    pub block_size: usize,
    pub enable_prefix_caching: bool,
}

/// What one step did to one request.
#[derive(Clone, Debug, PartialEq)]
pub struct StepResult {
    pub id: RequestId,
    /// The tokens appended to it: the sampled one, then any its grammar forced, cut where
    /// the request finished; empty when the step did not sample it.
    pub tokens: Vec<u32>,
    pub finished: Option<FinishReason>,
}

pub struct Scheduler {
    cfg: SchedulerConfig,
    kv: KvCacheManager,
    requests: HashMap<RequestId, Request>,
    /// Sorted by (priority, arrival).
    waiting: VecDeque<RequestId>,
    /// In admission order; the last is preempted first.
    running: Vec<RequestId>,
    next_arrival: u64,
    /// Finished since the last `schedule`, reported in its output.
    finished: Vec<RequestId>,
    /// Requests already announced to the runner.
    announced: HashSet<RequestId>,
    /// Tokens computed over all steps (prefix-cache hits excluded).
    pub num_computed_total: u64,
}

impl Scheduler {
    /// One full-attention KV cache group of `cfg.num_blocks` blocks.
    pub fn new(cfg: SchedulerConfig) -> Self {
        let group = KvGroupSpec {
            sliding_window: None,
            num_blocks: cfg.num_blocks,
        };
        Self::with_kv_groups(cfg, &[group])
    }

    /// A KV cache of the given groups (group 0's size must be `cfg.num_blocks`).
    pub fn with_kv_groups(cfg: SchedulerConfig, groups: &[KvGroupSpec]) -> Self {
        assert_eq!(
            groups[0].num_blocks, cfg.num_blocks,
            "group 0 is cfg.num_blocks"
        );
        let kv = KvCacheManager::with_groups(groups, cfg.block_size, cfg.enable_prefix_caching);
        Self {
            cfg,
            kv,
            requests: HashMap::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            next_arrival: 0,
            finished: Vec::new(),
            announced: HashSet::new(),
            num_computed_total: 0,
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    pub fn kv_stats(&self) -> KvCacheStats {
        self.kv.stats()
    }

    pub fn kv(&self) -> &KvCacheManager {
        &self.kv
    }

    /// Starts logging KV cache events (blocks cached and evicted).
    pub fn enable_kv_events(&mut self) {
        self.kv.enable_events();
    }

    /// KV cache events since the last call (empty unless enabled).
    pub fn take_kv_events(&mut self) -> Vec<KvCacheEvent> {
        self.kv.take_events()
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    pub fn has_unfinished(&self) -> bool {
        !self.requests.is_empty()
    }

    pub fn request(&self, id: RequestId) -> Option<&Request> {
        self.requests.get(&id)
    }

    /// Checks that `req` could ever run and queues it.
    pub fn add_request(&mut self, mut req: Request) -> Result<(), AddError> {
        if self.requests.contains_key(&req.id) {
            return Err(AddError::Duplicate(req.id));
        }
        if req.tokens.is_empty() {
            return Err(AddError::EmptyPrompt);
        }
        let total = req.num_tokens().saturating_add(req.params.max_tokens);
        if req.num_tokens() >= self.cfg.max_model_len {
            return Err(AddError::TooLong {
                prompt: req.num_tokens(),
                max_tokens: req.params.max_tokens,
                max_model_len: self.cfg.max_model_len,
            });
        }
        let tokens = total.min(self.cfg.max_model_len);
        if let Some((needed, available)) =
            self.kv.never_fits(tokens, self.cfg.max_num_batched_tokens)
        {
            return Err(AddError::CannotFit {
                tokens,
                needed,
                available,
            });
        }
        req.arrival = self.next_arrival;
        self.next_arrival += 1;
        req.status = RequestStatus::Waiting;
        let id = req.id;
        self.requests.insert(id, req);
        self.enqueue_waiting(id);
        Ok(())
    }

    fn enqueue_waiting(&mut self, id: RequestId) {
        let key = |r: &Request| (r.priority, r.arrival);
        let k = key(&self.requests[&id]);
        let pos = self
            .waiting
            .partition_point(|w| key(&self.requests[w]) <= k);
        self.waiting.insert(pos, id);
    }

    /// Ends a request (abort, or a stop string found by the detokenizer) and frees its
    /// blocks at once. Returns false if it was not active.
    pub fn finish_request(&mut self, id: RequestId, reason: FinishReason) -> bool {
        let Some(mut req) = self.requests.remove(&id) else {
            return false;
        };
        self.waiting.retain(|&w| w != id);
        self.running.retain(|&r| r != id);
        if let Some(blocks) = req.blocks.take() {
            self.kv.free(blocks);
        }
        req.status = RequestStatus::Finished(reason);
        self.finished.push(id);
        self.announced.remove(&id);
        true
    }

    fn preempt(&mut self, id: RequestId) {
        let req = self.requests.get_mut(&id).expect("running request exists");
        if let Some(blocks) = req.blocks.take() {
            self.kv.free(blocks);
        }
        req.num_computed = 0;
        req.status = RequestStatus::Preempted;
        req.num_preemptions += 1;
        self.enqueue_waiting(id);
    }

    /// Decides the next step.
    pub fn schedule(&mut self) -> SchedulerOutput {
        let mut out = SchedulerOutput {
            finished: std::mem::take(&mut self.finished),
            ..Default::default()
        };
        let mut budget = self.cfg.max_num_batched_tokens;
        let mut chosen: Vec<(RequestId, usize)> = Vec::new();

        // Running requests, oldest first; preempt from the newest end when blocks run out.
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            let req = &self.requests[&id];
            let num_new = (req.num_tokens() - req.num_computed).min(budget);
            let computed = req.num_computed;
            let target = computed + num_new;
            loop {
                let req = self.requests.get_mut(&id).expect("running request exists");
                let blocks = req.blocks.as_mut().expect("running request has blocks");
                if self.kv.allocate_slots(blocks, computed, target) {
                    chosen.push((id, num_new));
                    budget -= num_new;
                    i += 1;
                    break;
                }
                let victim = self
                    .running
                    .pop()
                    .expect("at least the current request runs");
                self.preempt(victim);
                out.preempted.push(victim);
                if victim == id {
                    break;
                }
            }
        }

        // Waiting requests, unless this step had to preempt.
        while out.preempted.is_empty()
            && budget > 0
            && self.running.len() < self.cfg.max_num_seqs
            && !self.waiting.is_empty()
        {
            let id = self.waiting[0];
            let req = self.requests.get_mut(&id).expect("waiting request exists");
            // Prompt log-probabilities need every prompt position computed, so such requests
            // skip the prefix cache (as in vLLM).
            let cacheable: &[u32] = if req.params.prompt_logprobs.is_some() {
                &[]
            } else {
                &req.tokens
            };
            let (mut blocks, hit) = self.kv.admit(cacheable, req.cache_key);
            let num_new = (req.tokens.len() - hit).min(budget);
            if !self.kv.allocate_slots(&mut blocks, hit, hit + num_new) {
                self.kv.free(blocks);
                break;
            }
            self.waiting.pop_front();
            req.num_computed = hit;
            req.num_cached_tokens = hit;
            req.blocks = Some(blocks);
            req.status = RequestStatus::Running;
            self.running.push(id);
            chosen.push((id, num_new));
            budget -= num_new;
            if self.announced.insert(id) {
                out.new_requests.push(NewRequest {
                    id,
                    params: req.params.clone(),
                    prompt: req.tokens[..req.prompt_len].to_vec(),
                });
            }
        }

        for (id, num_new) in chosen {
            let req = &self.requests[&id];
            let start = req.num_computed;
            out.scheduled.push(ScheduledRequest {
                id,
                new_token_ids: req.tokens[start..start + num_new].to_vec(),
                num_computed_tokens: start,
                block_ids: {
                    let blocks = req.blocks.as_ref().expect("scheduled request has blocks");
                    (0..blocks.num_groups())
                        .map(|g| blocks.group_ids(g).collect())
                        .collect()
                },
                sample: start + num_new == req.num_tokens(),
            });
            out.num_batched_tokens += num_new;
        }
        out
    }

    /// Applies a step's results: advances computed counts, caches newly full blocks, appends
    /// the sampled tokens and applies stop conditions. `sampled` holds, for each scheduled
    /// request with `sample` set, its sampled token followed by the tokens its grammar
    /// forced (jump-forward). They are appended one at a time with the stop checks after
    /// each, so EOS, a stop token, `max_tokens` or `max_model_len` cut a forced run exactly
    /// where a step per token would have stopped; the appended tokens not yet computed are
    /// scheduled as one chunk in the next step.
    pub fn update(
        &mut self,
        out: &SchedulerOutput,
        sampled: &HashMap<RequestId, Vec<u32>>,
    ) -> Vec<StepResult> {
        let mut results = Vec::with_capacity(out.scheduled.len());
        for s in &out.scheduled {
            let Some(req) = self.requests.get_mut(&s.id) else {
                continue;
            };
            req.num_computed += s.new_token_ids.len();
            self.num_computed_total += s.new_token_ids.len() as u64;
            let blocks = req.blocks.as_mut().expect("scheduled request has blocks");
            self.kv
                .cache_full_blocks(blocks, &req.tokens, req.num_computed, req.cache_key);
            self.kv.free_out_of_window(blocks, req.num_computed);
            if !s.sample {
                continue;
            }
            let run = sampled
                .get(&s.id)
                .expect("a sampled token for every sampled request");
            assert!(!run.is_empty(), "a sampled request got no token");
            let mut tokens = Vec::with_capacity(run.len());
            let mut finished = None;
            for &token in run {
                req.tokens.push(token);
                tokens.push(token);
                finished = req.check_stop(self.cfg.max_model_len);
                if finished.is_some() {
                    break;
                }
            }
            if let Some(reason) = finished {
                self.finish_request(s.id, reason);
            }
            results.push(StepResult {
                id: s.id,
                tokens,
                finished,
            });
        }
        results
    }

    /// Bookkeeping invariants, for tests: in every KV cache group, every block reference is
    /// held by exactly one running request's table (shared blocks once per holder), and a
    /// sliding group's table holds blocks exactly from the window of the request's next token
    /// on; waiting requests hold none; free + referenced blocks account for each whole pool.
    pub fn check_invariants(&self) {
        for g in 0..self.kv.num_groups() {
            self.check_group(g);
        }
        assert!(self.running.len() <= self.cfg.max_num_seqs);
    }

    fn check_group(&self, g: usize) {
        let pool = self.kv.group_pool(g);
        let spec = self.kv.group_spec(g);
        let mut refs: HashMap<u32, u32> = HashMap::new();
        for (id, req) in &self.requests {
            match req.status {
                RequestStatus::Running => {
                    assert!(
                        self.running.contains(id),
                        "request {id} runs but is not in the running list"
                    );
                    let blocks = req.blocks.as_ref().expect("running request has blocks");
                    let skip = spec.num_skipped(req.num_computed, self.cfg.block_size);
                    let mut seen = HashSet::new();
                    for (j, b) in blocks.table(g).iter().enumerate() {
                        assert_eq!(
                            b.is_null(),
                            j < skip,
                            "request {id}, group {g}: entry {j} with {} computed",
                            req.num_computed
                        );
                        if b.is_null() {
                            continue;
                        }
                        assert!(seen.insert(b.0), "request {id} holds block {} twice", b.0);
                        *refs.entry(b.0).or_default() += 1;
                    }
                    assert!(blocks.len() * self.cfg.block_size >= req.num_computed);
                }
                RequestStatus::Waiting | RequestStatus::Preempted => {
                    assert!(req.blocks.is_none(), "waiting request {id} holds blocks");
                    assert!(
                        self.waiting.contains(id),
                        "request {id} waits but is not queued"
                    );
                }
                RequestStatus::Finished(_) => panic!("finished request {id} still tracked"),
            }
        }
        let mut in_use = 0;
        for b in 0..pool.num_blocks() as u32 {
            let rc = pool.ref_cnt(ingot_kv_cache::BlockId(b));
            assert_eq!(
                rc,
                refs.get(&b).copied().unwrap_or(0),
                "group {g} block {b} refcount"
            );
            if rc > 0 {
                in_use += 1;
            }
        }
        assert_eq!(
            in_use + pool.num_free(),
            pool.num_blocks(),
            "group {g}: free + used != total"
        );
    }
}
