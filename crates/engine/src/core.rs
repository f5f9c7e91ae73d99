//! `EngineCore`: the step loop's body (DESIGN.md §2), owned by one thread.
//!
//! `step()` = `scheduler.schedule()` -> `runner.execute()` -> `scheduler.update()` -> turn each
//! sampled token into output (incremental detokenization, stop strings) and send it to the
//! request's sink. A request with `n > 1` becomes `n` scheduler requests (its choices) that
//! share the prompt's blocks through the prefix cache; choice `i` of a seeded request draws
//! from seed + i. A runner failure fails every request of that step with an error and emits
//! no token for it; the engine keeps serving the others, unless the device stays broken
//! (lost): then every request fails and the engine refuses new ones (`fault`).
//!
//! With KV events on ([`EngineCore::publish_kv_events`]), each step that cached or evicted
//! blocks ends by handing one [`KvEventBatch`] to a bounded channel with `try_send`: a full
//! channel drops the batch (counted, and visible to subscribers as a gap in `seq`) rather
//! than ever making the step wait for the publisher.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use ingot_kv_cache::KvEventBatch;
use ingot_runner::ModelRunner;
use ingot_scheduler::{
    AddError, FinishReason, Request, RequestId, RequestStatus, SamplingParams, SamplingParamsError,
    Scheduler, SchedulerConfig, SchedulerOutput,
};
use ingot_tensor::Backend;
use ingot_tokenizer::Tokenizer;
use tokio::sync::mpsc::{Sender, UnboundedSender};

use crate::config::EngineConfig;
use crate::detokenizer::IncrementalDecoder;
use crate::output::{RequestOutput, Usage};
use crate::stop::StopMatcher;
use crate::structured::GrammarCell;

pub type Sink = UnboundedSender<RequestOutput>;

/// A request as submitted to the engine.
#[derive(Clone, Debug)]
pub struct EngineRequest {
    pub id: u64,
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    /// Lower is scheduled first.
    pub priority: i32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SubmitError {
    #[error(transparent)]
    InvalidParams(#[from] SamplingParamsError),
    #[error(transparent)]
    Rejected(#[from] AddError),
    /// The request's structured-output schema, regex or grammar does not compile.
    #[error("{0}")]
    InvalidGrammar(String),
    #[error("the engine has stopped")]
    EngineStopped,
    #[error("the waiting queue is full ({0} sequences)")]
    QueueFull(usize),
    /// The device failed; the engine refuses all work until restarted.
    #[error("{0}")]
    DeviceFailed(String),
}

/// Cumulative counters and current gauges, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EngineStats {
    pub num_running: usize,
    pub num_waiting: usize,
    pub kv_usage: f64,
    /// Blocks of KV cache group 0 (full attention, or the only group).
    pub num_free_blocks: usize,
    pub num_blocks: usize,
    /// Blocks of the sliding-window groups, summed (0 without them).
    pub num_free_sliding_blocks: usize,
    pub num_sliding_blocks: usize,
    /// Tokens per KV cache block.
    pub block_size: usize,
    pub prefix_cache_queries: u64,
    pub prefix_cache_hits: u64,
    pub prompt_tokens_total: u64,
    pub generation_tokens_total: u64,
    /// Tokens run through the model (prefix-cache hits excluded).
    pub computed_tokens_total: u64,
    pub num_preemptions_total: u64,
    pub steps_total: u64,
    /// Structured output: steps with constrained rows, rows masked, and host seconds
    /// spent computing masks.
    pub structured_steps_total: u64,
    pub structured_rows_total: u64,
    pub structured_mask_seconds_total: f64,
    /// Structured output: tokens taken because the grammar allowed only them (forced rows
    /// and jump-forward runs).
    pub structured_forced_tokens_total: u64,
    /// KV event batches made (one per step that cached or evicted blocks), and those of
    /// them dropped because the publisher's queue was full or gone.
    pub kv_event_batches_total: u64,
    pub kv_event_batches_dropped_total: u64,
}

struct Choice {
    parent: u64,
    index: usize,
    prompt_tokens: usize,
    completion_tokens: usize,
    cached_tokens: Option<usize>,
    skip_special: bool,
    detok: IncrementalDecoder,
    stop: StopMatcher,
}

pub struct EngineCore<B: Backend> {
    scheduler: Scheduler,
    runner: ModelRunner<B>,
    tokenizer: Arc<Tokenizer>,
    cfg: EngineConfig,
    choices: HashMap<RequestId, Choice>,
    /// Parent id -> (its sink, its live choices).
    parents: HashMap<u64, (Sink, Vec<RequestId>)>,
    next_child: RequestId,
    stats: EngineStats,
    /// Set (once) when a step failed and the device stays broken: why the engine refuses
    /// work. Shared so that the handle sees it before the failed requests hear of it.
    fault: Arc<OnceLock<String>>,
    /// The structured-output compiler, shared with the handles.
    grammars: GrammarCell,
    /// Where each step's KV events go, when published.
    kv_events: Option<Sender<KvEventBatch>>,
}

impl<B: Backend> EngineCore<B> {
    pub fn new(runner: ModelRunner<B>, tokenizer: Arc<Tokenizer>, cfg: EngineConfig) -> Self {
        // The runner's caches are the truth about each KV cache group's size.
        let groups = runner.kv_group_specs();
        let scheduler = Scheduler::with_kv_groups(
            SchedulerConfig {
                max_num_seqs: cfg.max_num_seqs,
                max_num_batched_tokens: cfg.max_num_batched_tokens,
                max_model_len: cfg.max_model_len,
                num_blocks: groups[0].num_blocks,
                block_size: cfg.block_size,
                enable_prefix_caching: cfg.enable_prefix_caching,
            },
            &groups,
        );
        let grammars = GrammarCell::new(tokenizer.clone(), runner.vocab_size());
        Self {
            grammars,
            scheduler,
            runner,
            tokenizer,
            cfg,
            choices: HashMap::new(),
            parents: HashMap::new(),
            next_child: 0,
            stats: EngineStats::default(),
            fault: Arc::default(),
            kv_events: None,
        }
    }

    /// From now on, send the KV cache events of each step to `tx` (never waiting on it: a
    /// batch that does not fit is dropped and counted).
    pub fn publish_kv_events(&mut self, tx: Sender<KvEventBatch>) {
        self.scheduler.enable_kv_events();
        self.kv_events = Some(tx);
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// The backend the model runs on (for its counters, in benchmarks).
    pub fn backend(&self) -> &B {
        &self.runner.backend
    }

    pub fn has_unfinished(&self) -> bool {
        self.scheduler.has_unfinished()
    }

    pub fn stats(&self) -> EngineStats {
        let kv = self.scheduler.kv_stats();
        EngineStats {
            num_running: self.scheduler.num_running(),
            num_waiting: self.scheduler.num_waiting(),
            kv_usage: kv.usage(),
            num_free_blocks: kv.num_free_blocks,
            num_blocks: kv.num_blocks,
            num_free_sliding_blocks: kv.num_free_sliding_blocks,
            num_sliding_blocks: kv.num_sliding_blocks,
            block_size: self.cfg.block_size,
            prefix_cache_queries: kv.prefix_cache_queries,
            prefix_cache_hits: kv.prefix_cache_hits,
            computed_tokens_total: self.scheduler.num_computed_total,
            structured_steps_total: self.runner.mask_stats().steps,
            structured_rows_total: self.runner.mask_stats().rows,
            structured_mask_seconds_total: self.runner.mask_stats().seconds,
            structured_forced_tokens_total: self.runner.mask_stats().forced_tokens,
            ..self.stats
        }
    }

    /// Sequences (choices) waiting to be scheduled, preempted ones included.
    pub fn num_waiting(&self) -> usize {
        self.scheduler.num_waiting()
    }

    /// Why the engine refuses work for good, once its device failed.
    pub fn fault(&self) -> Option<&str> {
        self.fault.get().map(String::as_str)
    }

    /// The cell [`EngineCore::fault`] reads, for a handle on another thread.
    pub fn fault_cell(&self) -> Arc<OnceLock<String>> {
        self.fault.clone()
    }

    /// Where each live choice of request `parent` is in its life, by choice index (empty
    /// once the request ended). For tests and debugging.
    pub fn choice_statuses(&self, parent: u64) -> Vec<RequestStatus> {
        let mut live: Vec<(usize, RequestStatus)> = self
            .choices
            .iter()
            .filter(|(_, c)| c.parent == parent)
            .filter_map(|(id, c)| Some((c.index, self.scheduler.request(*id)?.status)))
            .collect();
        live.sort_by_key(|&(i, _)| i);
        live.into_iter().map(|(_, s)| s).collect()
    }

    /// Number of requests the runner still tracks (0 once everything finished).
    pub fn runner_tracked(&self) -> usize {
        self.runner.num_tracked()
    }

    /// Turns structured output's jump-forward on or off (on by default): a run of tokens
    /// the grammar forces is appended in one step and computed as one chunk in the next,
    /// instead of one step per token. The tokens are the same either way.
    pub fn set_jump_forward(&mut self, on: bool) {
        self.runner.set_jump_forward(on);
    }

    /// The structured-output compiler (handles compile on their own thread with it).
    pub fn grammar_cell(&self) -> GrammarCell {
        self.grammars.clone()
    }

    /// Queues a request; its outputs go to `sink`. A structured-output request's grammar is
    /// compiled here (see [`EngineCore::add_compiled`] to compile it elsewhere).
    pub fn add_request(&mut self, req: EngineRequest, sink: Sink) -> Result<(), SubmitError> {
        self.add_compiled(req, sink, None)
    }

    /// [`EngineCore::add_request`] with the request's grammar already compiled (from
    /// [`EngineCore::grammar_cell`]); None compiles it here if the request has one.
    pub fn add_compiled(
        &mut self,
        req: EngineRequest,
        sink: Sink,
        constraint: Option<ingot_structured::Constraint>,
    ) -> Result<(), SubmitError> {
        if let Some(fault) = self.fault.get() {
            return Err(SubmitError::DeviceFailed(fault.clone()));
        }
        req.params.validate(self.runner.vocab_size())?;
        let constraint = match constraint {
            Some(c) => Some(c),
            None => self.grammars.compile(&req.params)?,
        };
        if self.parents.contains_key(&req.id) {
            return Err(AddError::Duplicate(req.id).into());
        }
        let eos = self.tokenizer.eos_token_ids().to_vec();
        let mut children = Vec::with_capacity(req.params.n);
        for index in 0..req.params.n {
            let id = self.next_child;
            self.next_child += 1;
            let params = SamplingParams {
                n: 1,
                seed: req.params.seed.map(|s| s.wrapping_add(index as u64)),
                ..req.params.clone()
            };
            let choice = Choice {
                parent: req.id,
                index,
                prompt_tokens: req.prompt.len(),
                completion_tokens: 0,
                cached_tokens: None,
                skip_special: params.skip_special_tokens,
                detok: IncrementalDecoder::new(&req.prompt),
                stop: StopMatcher::new(params.stop.clone(), params.include_stop_str_in_output),
            };
            let mut r = Request::new(id, req.prompt.clone(), params, eos.clone());
            r.priority = req.priority;
            if let Err(e) = self.scheduler.add_request(r) {
                for c in children {
                    self.scheduler.finish_request(c, FinishReason::Abort);
                    self.choices.remove(&c);
                }
                return Err(e.into());
            }
            if let Some(c) = &constraint {
                self.runner.constrain(id, c.clone());
            }
            self.choices.insert(id, choice);
            children.push(id);
        }
        self.stats.prompt_tokens_total += req.prompt.len() as u64;
        self.parents.insert(req.id, (sink, children));
        Ok(())
    }

    /// Ends every choice of `parent` now, freeing its blocks. Sends nothing.
    pub fn abort(&mut self, parent: u64) {
        if let Some((_, children)) = self.parents.remove(&parent) {
            for c in children {
                self.scheduler.finish_request(c, FinishReason::Abort);
                self.choices.remove(&c);
            }
        }
    }

    /// Runs one step. Returns whether there was anything to do.
    pub fn step(&mut self) -> bool {
        let worked = self.run_step();
        self.send_kv_events();
        worked
    }

    /// The step's KV events as one batch, if it had any and they are published.
    fn send_kv_events(&mut self) {
        let Some(tx) = &self.kv_events else {
            return;
        };
        let events = self.scheduler.take_kv_events();
        if events.is_empty() {
            return;
        }
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let batch = KvEventBatch {
            seq: self.stats.kv_event_batches_total,
            ts,
            events,
        };
        self.stats.kv_event_batches_total += 1;
        // Full (the publisher is behind) or closed (it stopped, and said why): either way
        // the batch is lost, and the hole in `seq` tells subscribers so.
        if tx.try_send(batch).is_err() {
            self.stats.kv_event_batches_dropped_total += 1;
        }
    }

    fn run_step(&mut self) -> bool {
        let out = self.scheduler.schedule();
        let worked = !out.scheduled.is_empty();
        self.stats.num_preemptions_total += out.preempted.len() as u64;
        let mut sampled = match self.runner.execute(&out) {
            Ok(s) => s,
            Err(e) => {
                self.step_failed(&out, &e.to_string());
                return worked;
            }
        };
        if worked {
            self.stats.steps_total += 1;
        }
        // Requests whose grammar failed got no token: they end with the error, before the
        // scheduler looks for their tokens.
        for (id, error) in self.runner.take_failures() {
            tracing::warn!(error, "structured output failed; failing its request");
            self.fail_choice(id, &format!("structured output failed: {error}"));
        }
        // A request's prefix-cache hit is read while the scheduler still holds it: `update`
        // drops the requests that finish in this step (e.g. on their first token).
        for r in &out.scheduled {
            if let Some(choice) = self.choices.get_mut(&r.id)
                && choice.cached_tokens.is_none()
            {
                choice.cached_tokens = self.scheduler.request(r.id).map(|q| q.num_cached_tokens);
            }
        }
        // Each request's sampled token, then the run its grammar forced (jump-forward).
        let tokens: HashMap<RequestId, Vec<u32>> = sampled
            .iter()
            .map(|(&id, s)| (id, [&[s.token][..], &s.forced[..]].concat()))
            .collect();
        for r in self.scheduler.update(&out, &tokens) {
            if r.tokens.is_empty() {
                continue;
            }
            let s = sampled
                .remove(&r.id)
                .expect("the runner sampled every reported token");
            self.emit(r.id, s, &r.tokens, r.finished);
        }
        worked
    }

    /// A failed step fails the requests it ran; none of them gets a token from it. If the
    /// device is still broken afterwards (lost, or its error is sticky), every later step
    /// would fail too: then every request in flight fails now, and the engine refuses new
    /// ones with the reason, which `/health` reports.
    fn step_failed(&mut self, out: &SchedulerOutput, error: &str) {
        let (failed, message): (Vec<RequestId>, String) = match self.runner.backend.sync() {
            Ok(()) => {
                tracing::error!(error, "step failed; failing its requests");
                let ids = out.scheduled.iter().map(|r| r.id).collect();
                (
                    ids,
                    format!("the engine failed to run this request: {error}"),
                )
            }
            Err(still) => {
                let fault = format!(
                    "the device failed and cannot run requests (restart the server): {still}"
                );
                tracing::error!(error, "{fault}; failing every request in flight");
                let _ = self.fault.set(fault.clone());
                (self.choices.keys().copied().collect(), fault)
            }
        };
        for id in failed {
            self.fail_choice(id, &message);
        }
    }

    /// Puts the engine out of service after a step panicked (its bookkeeping may be half
    /// updated, so the scheduler is not touched): every request in flight gets `message`
    /// as its error, and every later submission is refused with it.
    pub fn fail_all(&mut self, message: &str) {
        tracing::error!("{message}; failing every request in flight");
        let _ = self.fault.set(message.to_string());
        for (_, choice) in self.choices.drain() {
            if let Some((sink, _)) = self.parents.get(&choice.parent) {
                let _ = sink.send(choice.error_output(message));
            }
        }
        self.parents.clear();
    }

    /// Sends the output of the step's `tokens` for choice `id`: the sampled token, then any
    /// tokens its grammar forced, each through the detokenizer and the stop strings in
    /// turn (a stop string ends the choice at the token that completed it; later ones are
    /// dropped).
    fn emit(
        &mut self,
        id: RequestId,
        sampled: ingot_runner::Sampled,
        tokens: &[u32],
        mut finished: Option<FinishReason>,
    ) {
        let ingot_runner::Sampled {
            logprobs,
            prompt_logprobs,
            ..
        } = sampled;
        let Some(choice) = self.choices.get_mut(&id) else {
            return;
        };
        let tok = &self.tokenizer;
        let skip = choice.skip_special;
        let mut text = String::new();
        let mut stop_string = false;
        let mut taken = 0;
        for (k, &token) in tokens.iter().enumerate() {
            taken += 1;
            let last = k + 1 == tokens.len() && finished.is_some();
            match choice.detok.push(token, |ids| tok.decode(ids, skip), last) {
                Ok(Some(delta)) => {
                    let released = choice.stop.push(&delta);
                    text.push_str(&released.text);
                    stop_string = released.stopped;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "detokenization failed"),
            }
            if stop_string {
                break;
            }
        }
        choice.completion_tokens += taken;
        self.stats.generation_tokens_total += taken as u64;
        if stop_string {
            // Text past the stop string is dropped, whatever else ended the request.
            if finished.is_none() {
                self.scheduler.finish_request(id, FinishReason::Stop);
            }
            finished = Some(FinishReason::Stop);
        } else if finished.is_some() {
            text.push_str(&choice.stop.flush());
        }
        let out = RequestOutput {
            request_id: choice.parent,
            index: choice.index,
            token_ids: tokens[..taken].to_vec(),
            text,
            logprobs: logprobs.into_iter().collect(),
            prompt_logprobs,
            finish_reason: finished,
            usage: Usage {
                prompt_tokens: choice.prompt_tokens,
                completion_tokens: choice.completion_tokens,
                cached_tokens: choice.cached_tokens.unwrap_or(0),
            },
            error: None,
        };
        let parent = choice.parent;
        if finished.is_some() {
            self.choices.remove(&id);
        }
        self.deliver(parent, id, out);
    }

    /// Sends `out`; a closed sink means the client left, so the whole request is aborted.
    fn deliver(&mut self, parent: u64, child: RequestId, out: RequestOutput) {
        let done = out.finish_reason.is_some() || out.error.is_some();
        let Some((sink, children)) = self.parents.get_mut(&parent) else {
            return;
        };
        if sink.send(out).is_err() {
            self.abort(parent);
            return;
        }
        if done {
            children.retain(|&c| c != child);
            if children.is_empty() {
                self.parents.remove(&parent);
            }
        }
    }

    fn fail_choice(&mut self, id: RequestId, message: &str) {
        self.scheduler.finish_request(id, FinishReason::Abort);
        let Some(choice) = self.choices.remove(&id) else {
            return;
        };
        self.deliver(choice.parent, id, choice.error_output(message));
    }
}

impl Choice {
    /// The last output of a choice that failed: no token, the error, its usage so far.
    fn error_output(&self, message: &str) -> RequestOutput {
        RequestOutput {
            request_id: self.parent,
            index: self.index,
            token_ids: Vec::new(),
            text: String::new(),
            logprobs: Vec::new(),
            prompt_logprobs: None,
            finish_reason: None,
            usage: Usage {
                prompt_tokens: self.prompt_tokens,
                completion_tokens: self.completion_tokens,
                cached_tokens: self.cached_tokens.unwrap_or(0),
            },
            error: Some(message.to_string()),
        }
    }
}
