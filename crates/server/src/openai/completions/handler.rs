//! `POST /v1/completions`: plan the request (protocol.rs), submit each prompt, then either
//! collect every choice into one `text_completion`, or stream `text_completion` chunks (one
//! choice's new text each; the echoed prompt, with its logprobs when asked, leads a choice's
//! first chunk), with a last usage chunk when `stream_options.include_usage` asks for it.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use ingot_engine::RequestOutput;
use ingot_engine::api::TokenLogprobs;
use serde_json::Value;

use super::protocol::{Completion, CompletionChoice, CompletionPlan, CompletionRequest};
use crate::errors::ApiError;
use crate::openai::common::GenerationBody;
use crate::openai::generation::{self, ChunkWriter, Tracker};
use crate::openai::logprobs::{CompletionLogprobs, vllm_prompt_logprobs};
use crate::sse;
use crate::state::{AppState, response_id, unix_now};

pub async fn create(
    State(state): State<AppState>,
    GenerationBody {
        request: req,
        sampling,
    }: GenerationBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    state.check_model(req.model.as_deref())?;
    let plan = req.plan(
        &sampling,
        state.tokenizer(),
        state.max_model_len(),
        &state.limits,
    )?;
    let n = plan.params.n;
    let ids: Vec<Vec<u32>> = plan.prompts.iter().map(|p| p.ids.clone()).collect();
    let lens = ids.iter().map(Vec::len).collect();
    let streams = generation::submit(&state, ids, plan.params.clone(), plan.priority).await?;
    let mut tracker = Tracker::new(state.clone(), response_id("cmpl"), lens, n);
    let events = generation::merge(streams);
    let base = Completion {
        id: tracker.id().to_string(),
        object: "text_completion",
        created: unix_now(),
        model: state.model_name.clone(),
        choices: Vec::new(),
        usage: None,
        system_fingerprint: None,
    };
    let choices = plan.prompts.len() * n;
    if plan.stream {
        let writer = CompletionChunks {
            state: state.clone(),
            base,
            plan,
            started: vec![false; choices],
            offsets: vec![0; choices],
        };
        return Ok(sse::response(generation::pump(events, writer, tracker)));
    }
    let results = generation::collect(events, &mut tracker).await?;
    let tok = state.tokenizer();
    let mut out = Vec::with_capacity(results.len());
    for (index, r) in results.into_iter().enumerate() {
        let prompt = &plan.prompts[index / n];
        let scored = prompt_scores(&plan, r.prompt_logprobs.as_deref(), prompt.ids.len())?;
        let mut text = if plan.echo {
            prompt.text.clone()
        } else {
            String::new()
        };
        let generated = !plan.prompt_only;
        let logprobs = plan.logprobs.map(|k| {
            let mut lp = CompletionLogprobs::default();
            let mut offset = 0;
            match (plan.echo_logprobs, scored) {
                (true, Some(scores)) => lp.push_prompt(tok, &prompt.ids, scores, k, &mut offset),
                _ => offset = text.chars().count(),
            }
            if generated {
                lp.extend(tok, &r.logprobs, k, &mut offset);
            }
            lp
        });
        if generated {
            text.push_str(&r.text);
        }
        out.push(CompletionChoice {
            index,
            text,
            logprobs,
            finish_reason: r.finish.map(|f| f.as_str()),
            prompt_logprobs: scored
                .filter(|_| plan.prompt_logprobs)
                .map(|s| vllm_prompt_logprobs(tok, s)),
        });
    }
    let mut usage = tracker.usage();
    if plan.prompt_only {
        usage.completion_tokens = 0;
        usage.total_tokens = usage.prompt_tokens;
    }
    let body = Completion {
        choices: out,
        ..base
    }
    .with_usage(usage);
    Ok(axum::Json(body).into_response())
}

/// The prompt's scores when the request needs them (echo with logprobs, or vLLM's
/// `prompt_logprobs`), checked to cover the whole prompt.
fn prompt_scores<'a>(
    plan: &CompletionPlan,
    scores: Option<&'a [TokenLogprobs]>,
    prompt_len: usize,
) -> Result<Option<&'a [TokenLogprobs]>, ApiError> {
    if !(plan.echo_logprobs || plan.prompt_logprobs) {
        return Ok(None);
    }
    let scores = scores.unwrap_or_default();
    generation::check_prompt_logprobs(scores, prompt_len)?;
    Ok(Some(scores))
}

struct CompletionChunks {
    state: AppState,
    base: Completion,
    plan: CompletionPlan,
    /// Per choice: whether its first chunk (which carries the echo) went out.
    started: Vec<bool>,
    /// Per choice: character offset of its next token in its text.
    offsets: Vec<usize>,
}

impl CompletionChunks {
    fn chunk(&self, choices: Vec<CompletionChoice>, usage: Option<Value>) -> String {
        let c = Completion {
            choices,
            usage,
            ..self.base.clone()
        };
        serde_json::to_string(&c).unwrap_or_default()
    }
}

impl ChunkWriter for CompletionChunks {
    fn start(&mut self) -> Vec<String> {
        Vec::new()
    }

    fn output(
        &mut self,
        choice: usize,
        out: &RequestOutput,
        tracker: &Tracker,
    ) -> Result<Vec<String>, ApiError> {
        let tok = self.state.tokenizer();
        let plan = &self.plan;
        let Some(prompt) = plan.prompts.get(choice / plan.params.n.max(1)) else {
            return Ok(Vec::new());
        };
        let first = !std::mem::replace(&mut self.started[choice], true);
        let mut text = String::new();
        let mut logprobs = plan.logprobs.map(|_| CompletionLogprobs::default());
        if first && plan.echo {
            text.push_str(&prompt.text);
            let scored = prompt_scores(plan, out.prompt_logprobs.as_deref(), prompt.ids.len())?;
            match (logprobs.as_mut(), scored) {
                (Some(lp), Some(scores)) => {
                    let k = plan.logprobs.unwrap_or(0);
                    lp.push_prompt(tok, &prompt.ids, scores, k, &mut self.offsets[choice]);
                }
                _ => self.offsets[choice] += text.chars().count(),
            }
        }
        text.push_str(&out.text);
        if let (Some(lp), Some(k)) = (logprobs.as_mut(), plan.logprobs) {
            lp.extend(tok, &out.logprobs, k, &mut self.offsets[choice]);
        }
        let logprobs = logprobs.filter(|lp| !lp.is_empty());
        if text.is_empty() && logprobs.is_none() && out.finish_reason.is_none() {
            return Ok(Vec::new());
        }
        let c = CompletionChoice {
            index: choice,
            text,
            logprobs,
            finish_reason: out.finish_reason.map(|f| f.as_str()),
            prompt_logprobs: None,
        };
        let usage = if self.plan.stream_options.continuous_usage_stats {
            serde_json::to_value(tracker.choice_usage(choice)).ok()
        } else if self.plan.stream_options.include_usage {
            Some(Value::Null)
        } else {
            None
        };
        Ok(vec![self.chunk(vec![c], usage)])
    }

    fn end(&mut self, tracker: &Tracker) -> Vec<String> {
        if !self.plan.stream_options.include_usage {
            return Vec::new();
        }
        let usage = serde_json::to_value(tracker.usage()).ok();
        vec![self.chunk(Vec::new(), usage)]
    }
}
