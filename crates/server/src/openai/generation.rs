//! Running a generation request through the engine, shared by chat and text completions:
//! submit each prompt, merge the outputs of every choice into one stream of [`Event`]s, and
//! either collect them into whole choices or pump them into SSE chunks through an endpoint's
//! [`ChunkWriter`]. A [`Tracker`] rides along to count usage, feed the latency histograms and
//! write the one log line per request.
//!
//! Ownership is the abort mechanism: the handler future (non-streaming) or the response body
//! (streaming) owns the merged stream, which owns the engine's `RequestStream`s. When the
//! client disconnects, hyper drops that future or body, the request streams drop, and the
//! engine aborts the requests and frees their KV blocks at once.

use std::time::{Duration, Instant};

use futures_util::stream::{self, BoxStream, SelectAll, Stream, StreamExt};
use ingot_engine::api::TokenLogprobs;
use ingot_engine::api::{FinishReason, SamplingParams};
use ingot_engine::{RequestOutput, RequestStream};

use crate::errors::ApiError;
use crate::metrics::RequestRecord;
use crate::openai::common::UsageInfo;
use crate::state::AppState;

/// One output of one choice, tagged with the prompt it belongs to.
pub struct Event {
    /// Index of the prompt in the request (completions may send several).
    pub prompt: usize,
    pub out: RequestOutput,
}

impl Event {
    /// OpenAI's choice index: prompts in order, `n` choices each.
    pub fn choice(&self, n: usize) -> usize {
        self.prompt * n + self.out.index
    }
}

pub type Events = SelectAll<BoxStream<'static, Event>>;

/// Submits every prompt with the same parameters. If one is refused, those already
/// submitted are dropped here, which aborts them. `EngineHandle::submit` waits for the
/// engine thread to acknowledge between two steps, so it runs on the blocking pool.
pub async fn submit(
    state: &AppState,
    prompts: Vec<Vec<u32>>,
    params: SamplingParams,
    priority: i32,
) -> Result<Vec<RequestStream>, ApiError> {
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || {
        prompts
            .into_iter()
            .map(|p| {
                engine
                    .submit(p, params.clone(), priority)
                    .map_err(ApiError::from)
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ApiError::internal(format!("submitting the request failed: {e}")))?
}

/// All outputs of all `streams`, in arrival order.
pub fn merge(streams: Vec<RequestStream>) -> Events {
    stream::select_all(streams.into_iter().enumerate().map(|(prompt, s)| {
        stream::unfold(s, move |mut s| async move {
            let out = s.next().await?;
            Some((Event { prompt, out }, s))
        })
        .boxed()
    }))
}

/// Per-request accounting: usage, latencies, and the log line written when it is dropped
/// (so a request whose client left is logged too, as `abort`).
pub struct Tracker {
    state: AppState,
    id: String,
    start: Instant,
    first: Option<Duration>,
    /// Per choice: when its last output arrived.
    last: Vec<Option<Instant>>, // [num_choices]
    /// Per choice: tokens generated so far, and how it ended.
    tokens: Vec<usize>, // [num_choices]
    finish: Vec<Option<FinishReason>>, // [num_choices]
    /// Per prompt: length and tokens served from the prefix cache.
    prompt_tokens: Vec<usize>, // [num_prompts]
    cached_tokens: Vec<usize>,         // [num_prompts]
    n: usize,
    failed: bool,
}

impl Tracker {
    pub fn new(state: AppState, id: String, prompt_lens: Vec<usize>, n: usize) -> Self {
        let choices = prompt_lens.len() * n;
        Self {
            state,
            id,
            start: Instant::now(),
            first: None,
            last: vec![None; choices],
            tokens: vec![0; choices],
            finish: vec![None; choices],
            cached_tokens: vec![0; prompt_lens.len()],
            prompt_tokens: prompt_lens,
            n,
            failed: false,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Records one output of choice `choice` of prompt `prompt`.
    pub fn observe(&mut self, prompt: usize, choice: usize, out: &RequestOutput) {
        let now = Instant::now();
        if out.error.is_some() {
            self.failed = true;
        }
        if choice >= self.tokens.len() || out.token_ids.is_empty() {
            return;
        }
        let metrics = &self.state.metrics;
        if self.first.is_none() {
            let ttft = now - self.start;
            self.first = Some(ttft);
            metrics.observe_first_token(ttft.as_secs_f64());
        }
        if let Some(prev) = self.last[choice] {
            metrics.observe_inter_token((now - prev).as_secs_f64());
        }
        self.last[choice] = Some(now);
        self.tokens[choice] = out.usage.completion_tokens;
        self.finish[choice] = out.finish_reason;
        if let Some(c) = self.cached_tokens.get_mut(prompt) {
            *c = (*c).max(out.usage.cached_tokens);
        }
    }

    /// `usage` as of now: each prompt counted once, completions summed over choices.
    pub fn usage(&self) -> UsageInfo {
        UsageInfo::new(
            self.prompt_tokens.iter().sum(),
            self.tokens.iter().sum(),
            self.cached_tokens.iter().sum(),
        )
    }

    /// Usage of choice `choice` alone (vLLM's `continuous_usage_stats` per chunk).
    pub fn choice_usage(&self, choice: usize) -> UsageInfo {
        let prompt = self
            .prompt_tokens
            .get(choice / self.n.max(1))
            .copied()
            .unwrap_or(0);
        UsageInfo::new(prompt, self.tokens.get(choice).copied().unwrap_or(0), 0)
    }

    /// Whether every choice has reported its finish reason.
    pub fn all_finished(&self) -> bool {
        self.finish.iter().all(Option::is_some)
    }

    /// The request's overall outcome: abort if any choice did not finish, else length if
    /// any ran out of tokens, else stop.
    fn outcome(&self) -> FinishReason {
        if self.failed || !self.all_finished() {
            FinishReason::Abort
        } else if self.finish.contains(&Some(FinishReason::Length)) {
            FinishReason::Length
        } else {
            FinishReason::Stop
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let total = self.start.elapsed();
        let outcome = self.outcome();
        let usage = self.usage();
        let longest = self.tokens.iter().copied().max().unwrap_or(0);
        let tpot = match self.first {
            Some(first) if longest > 1 => {
                Some((total - first).as_secs_f64() / (longest - 1) as f64)
            }
            _ => None,
        };
        self.state.metrics.observe_request(RequestRecord {
            e2e_secs: total.as_secs_f64(),
            tpot_secs: tpot,
            prompt_tokens: usage.prompt_tokens,
            generation_tokens: usage.completion_tokens,
            finish: outcome,
        });
        let finish = if self.failed {
            "error"
        } else {
            outcome.as_str()
        };
        let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
        tracing::info!(
            id = %self.id,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            ttft_ms = self.first.map(ms),
            total_ms = ms(total),
            finish,
            "request"
        );
    }
}

/// One choice, collected whole.
#[derive(Clone, Debug, Default)]
pub struct ChoiceResult {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub logprobs: Vec<TokenLogprobs>,
    /// Prompt tokens 1.. scored, when prompt logprobs were asked for.
    pub prompt_logprobs: Option<Vec<TokenLogprobs>>,
    pub finish: Option<FinishReason>,
}

/// Waits for every choice to finish. An engine error fails the whole request (the other
/// choices are aborted when `events` drops).
pub async fn collect(
    mut events: Events,
    tracker: &mut Tracker,
) -> Result<Vec<ChoiceResult>, ApiError> {
    let mut results = vec![ChoiceResult::default(); tracker.tokens.len()];
    while let Some(ev) = events.next().await {
        let i = ev.choice(tracker.n);
        tracker.observe(ev.prompt, i, &ev.out);
        if let Some(e) = ev.out.error {
            return Err(ApiError::internal(e));
        }
        let Some(r) = results.get_mut(i) else {
            continue;
        };
        r.text.push_str(&ev.out.text);
        r.token_ids.extend_from_slice(&ev.out.token_ids);
        r.logprobs.extend(ev.out.logprobs);
        if ev.out.prompt_logprobs.is_some() {
            r.prompt_logprobs = ev.out.prompt_logprobs;
        }
        if ev.out.finish_reason.is_some() {
            r.finish = ev.out.finish_reason;
        }
    }
    if !tracker.all_finished() {
        return Err(ApiError::internal(ENGINE_STOPPED));
    }
    Ok(results)
}

/// Prompt logprobs must score every prompt token after the first. The engine does not
/// recompute positions served from the prefix cache, so a long prompt seen before comes
/// back unscored; that is an error rather than a silently short list.
pub fn check_prompt_logprobs(lps: &[TokenLogprobs], prompt_len: usize) -> Result<(), ApiError> {
    let want = prompt_len.saturating_sub(1);
    if lps.len() == want {
        return Ok(());
    }
    Err(ApiError::internal(format!(
        "prompt logprobs cover {} of the {want} prompt tokens after the first: the rest came from \
         the prefix cache, which the engine does not rescore (start the server with \
         --no-prefix-caching to get them for repeated prompts)",
        lps.len()
    )))
}

/// What a request is told when its outputs end without a finish reason.
const ENGINE_STOPPED: &str = "the engine stopped before the request finished";

/// Turns engine outputs into an endpoint's SSE chunks (JSON texts).
pub trait ChunkWriter: Send + 'static {
    /// Chunks sent before any output (chat's role deltas).
    fn start(&mut self) -> Vec<String>;
    /// Chunks for one output of choice `choice`; an error ends the stream with an error chunk.
    fn output(
        &mut self,
        choice: usize,
        out: &RequestOutput,
        tracker: &Tracker,
    ) -> Result<Vec<String>, ApiError>;
    /// Chunks after every choice finished (the usage chunk).
    fn end(&mut self, tracker: &Tracker) -> Vec<String>;
}

/// The chunk stream of a streaming request. An engine error becomes an error chunk in
/// OpenAI's error shape and ends the stream.
pub fn pump<W: ChunkWriter>(
    events: Events,
    writer: W,
    tracker: Tracker,
) -> impl Stream<Item = String> + Send {
    struct Pump<W> {
        events: Events,
        writer: W,
        tracker: Tracker,
        started: bool,
        done: bool,
    }
    let p = Pump {
        events,
        writer,
        tracker,
        started: false,
        done: false,
    };
    stream::unfold(p, |mut p| async move {
        if p.done {
            return None;
        }
        if !p.started {
            p.started = true;
            let chunks = p.writer.start();
            return Some((chunks, p));
        }
        let chunks = match p.events.next().await {
            Some(ev) => {
                let i = ev.choice(p.tracker.n);
                p.tracker.observe(ev.prompt, i, &ev.out);
                let result = match &ev.out.error {
                    Some(e) => Err(ApiError::internal(e.clone())),
                    None => p.writer.output(i, &ev.out, &p.tracker),
                };
                result.unwrap_or_else(|e| {
                    p.done = true;
                    vec![e.to_json().to_string()]
                })
            }
            None if !p.tracker.all_finished() => {
                p.done = true;
                vec![ApiError::internal(ENGINE_STOPPED).to_json().to_string()]
            }
            None => {
                p.done = true;
                p.writer.end(&p.tracker)
            }
        };
        Some((chunks, p))
    })
    .flat_map(stream::iter)
}
