//! `POST /v1/chat/completions`: plan the request (protocol.rs), submit it, then either wait
//! for every choice and answer one `chat.completion`, or stream `chat.completion.chunk`s:
//! first a role delta per choice, then content deltas (with logprobs when asked), the finish
//! reason on each choice's last chunk, and with `include_usage` a last chunk with empty
//! `choices` and the usage.
//!
//! With tools, each choice's text is read for calls (`tool_scan.rs`): a response with calls
//! carries them in `tool_calls` with `finish_reason: "tool_calls"`. Streaming, text that
//! may begin a call is held back; each call goes out as it is written: a first delta with
//! its `index` among the choice's calls, `id`, `type`, `function.name` and empty
//! `arguments`, then deltas with its `index` and the next piece of its arguments text.
//! Held text that turns out to be no call goes out as content.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use ingot_engine::RequestOutput;
use ingot_engine::api::FinishReason;
use serde_json::Value;

use super::protocol::{
    AssistantMessage, ChatChoice, ChatChunk, ChatCompletion, ChatRequest, ChunkChoice, Delta,
};
use super::tool_scan::{Piece, ToolStream};
use super::tools::{ToolCall, ToolPlan};
use crate::errors::ApiError;
use crate::openai::common::{GenerationBody, StreamOptions};
use crate::openai::generation::{self, ChunkWriter, Tracker};
use crate::openai::logprobs::{ChatLogprobs, chat_entries, vllm_prompt_logprobs};
use crate::sse;
use crate::state::{AppState, response_id, unix_now};

pub async fn create(
    State(state): State<AppState>,
    GenerationBody {
        request: req,
        sampling,
    }: GenerationBody<ChatRequest>,
) -> Result<Response, ApiError> {
    state.check_model(req.model.as_deref())?;
    let plan = req.plan(
        &sampling,
        state.tokenizer(),
        state.max_model_len(),
        &state.limits,
        state.tool_parser,
    )?;
    let n = plan.params.n;
    let prompt_len = plan.prompt.len();
    let streams = generation::submit(&state, vec![plan.prompt], plan.params, plan.priority).await?;
    let id = response_id("chatcmpl");
    let created = unix_now();
    let mut tracker = Tracker::new(state.clone(), id.clone(), vec![prompt_len], n);
    let events = generation::merge(streams);
    if plan.stream {
        let writer = ChatChunks {
            state: state.clone(),
            id,
            created,
            n,
            top_logprobs: plan.top_logprobs,
            options: plan.stream_options,
            texts: vec![String::new(); n],
            streams: vec![ToolStream::default(); n],
            tools: plan.tools.clone().filter(|t| t.active()),
        };
        return Ok(sse::response(generation::pump(events, writer, tracker)));
    }
    let results = generation::collect(events, &mut tracker).await?;
    let tok = state.tokenizer();
    let prompt_logprobs = match results.first().and_then(|r| r.prompt_logprobs.as_deref()) {
        Some(lps) if plan.prompt_logprobs => {
            generation::check_prompt_logprobs(lps, prompt_len)?;
            Some(vllm_prompt_logprobs(tok, lps))
        }
        _ => None,
    };
    let choices = results
        .into_iter()
        .enumerate()
        .map(|(index, r)| {
            let (content, calls) = match plan.tools.as_ref().filter(|t| t.active()) {
                Some(t) => t.parse(&r.text),
                None => (Some(r.text), Vec::new()),
            };
            ChatChoice {
                index,
                message: AssistantMessage {
                    role: "assistant",
                    content,
                    refusal: None,
                    tool_calls: calls.iter().map(ToolCall::to_json).collect(),
                },
                logprobs: plan.top_logprobs.map(|k| ChatLogprobs {
                    content: chat_entries(tok, &r.logprobs, k),
                }),
                finish_reason: finish_reason(r.finish, !calls.is_empty()),
            }
        })
        .collect();
    let body = ChatCompletion {
        id,
        object: "chat.completion",
        created,
        model: state.model_name.clone(),
        choices,
        usage: tracker.usage(),
        system_fingerprint: None,
        prompt_logprobs,
    };
    Ok(axum::Json(body).into_response())
}

/// OpenAI's finish reason of a choice: `tool_calls` when it ended by itself with calls.
fn finish_reason(finish: Option<FinishReason>, has_calls: bool) -> Option<&'static str> {
    match finish {
        Some(FinishReason::Stop) if has_calls => Some("tool_calls"),
        f => f.map(|f| f.as_str()),
    }
}

struct ChatChunks {
    state: AppState,
    id: String,
    created: u64,
    n: usize,
    top_logprobs: Option<usize>,
    options: StreamOptions,
    /// With tools: each choice's text so far, and what of it went out.
    texts: Vec<String>, // [n]
    streams: Vec<ToolStream>, // [n]
    tools: Option<ToolPlan>,
}

impl ChatChunks {
    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<Value>) -> String {
        let c = ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.state.model_name.clone(),
            choices,
            usage,
        };
        serde_json::to_string(&c).unwrap_or_default()
    }

    /// `usage` of an ordinary chunk: absent, null, or running counts.
    fn running_usage(&self, tracker: &Tracker, choice: usize) -> Option<Value> {
        if self.options.continuous_usage_stats {
            serde_json::to_value(tracker.choice_usage(choice)).ok()
        } else if self.options.include_usage {
            Some(Value::Null)
        } else {
            None
        }
    }
}

impl ChatChunks {
    /// The chunks of one output of a choice whose text is read for tool calls: content
    /// and call deltas as the choice's text now allows, then its finish reason if it ended.
    fn tool_output(
        &mut self,
        choice: usize,
        out: &RequestOutput,
        tracker: &Tracker,
    ) -> Vec<String> {
        let (Some(tools), Some(text), Some(stream)) = (
            self.tools.as_ref(),
            self.texts.get_mut(choice),
            self.streams.get_mut(choice),
        ) else {
            return Vec::new();
        };
        text.push_str(&out.text);
        let pieces = stream.advance(tools, text, out.finish_reason.is_some());
        let mut deltas: Vec<(Delta, Option<&'static str>)> = pieces
            .into_iter()
            .map(|piece| {
                let delta = match piece {
                    Piece::Content(c) => Delta {
                        content: Some(c),
                        ..Delta::default()
                    },
                    Piece::Call(entry) => Delta {
                        tool_calls: Some(vec![entry]),
                        ..Delta::default()
                    },
                };
                (delta, None)
            })
            .collect();
        if let Some(finish) = out.finish_reason {
            deltas.push((
                Delta::default(),
                finish_reason(Some(finish), stream.has_calls()),
            ));
        }
        let usage = self.running_usage(tracker, choice);
        deltas
            .into_iter()
            .map(|(delta, finish_reason)| {
                let c = ChunkChoice {
                    index: choice,
                    delta,
                    logprobs: None,
                    finish_reason,
                };
                self.chunk(vec![c], usage.clone())
            })
            .collect()
    }
}

impl ChunkWriter for ChatChunks {
    fn start(&mut self) -> Vec<String> {
        let usage = self.options.include_usage.then_some(Value::Null);
        (0..self.n)
            .map(|index| {
                let delta = Delta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                    tool_calls: None,
                };
                let choice = ChunkChoice {
                    index,
                    delta,
                    logprobs: None,
                    finish_reason: None,
                };
                self.chunk(vec![choice], usage.clone())
            })
            .collect()
    }

    fn output(
        &mut self,
        choice: usize,
        out: &RequestOutput,
        tracker: &Tracker,
    ) -> Result<Vec<String>, ApiError> {
        let logprobs = self
            .top_logprobs
            .filter(|_| !out.logprobs.is_empty())
            .map(|k| ChatLogprobs {
                content: chat_entries(self.state.tokenizer(), &out.logprobs, k),
            });
        if self.tools.is_some() {
            return Ok(self.tool_output(choice, out, tracker));
        }
        if out.text.is_empty() && logprobs.is_none() && out.finish_reason.is_none() {
            return Ok(Vec::new()); // held back: half a character or a possible stop string
        }
        let content = (!out.text.is_empty() || logprobs.is_some()).then(|| out.text.clone());
        let c = ChunkChoice {
            index: choice,
            delta: Delta {
                role: None,
                content,
                tool_calls: None,
            },
            logprobs,
            finish_reason: out.finish_reason.map(|f| f.as_str()),
        };
        Ok(vec![
            self.chunk(vec![c], self.running_usage(tracker, choice)),
        ])
    }

    fn end(&mut self, tracker: &Tracker) -> Vec<String> {
        if !self.options.include_usage {
            return Vec::new();
        }
        vec![self.chunk(Vec::new(), serde_json::to_value(tracker.usage()).ok())]
    }
}
