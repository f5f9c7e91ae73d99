//! `POST /v1/completions`: the request as OpenAI (plus vLLM's extras) defines it, its
//! conversion into token prompts and [`SamplingParams`], and the response and chunk shapes.
//!
//! `prompt` may be a string, a list of strings, a list of token ids, or a list of such lists;
//! each prompt is its own engine request with `n` choices, numbered prompt-major as OpenAI
//! does. `echo` puts the prompt text before each choice's text. `max_tokens` defaults to 16.

use ingot_engine::api::SamplingParams;
use ingot_tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::errors::ApiError;
use crate::limits::RequestLimits;
use crate::openai::common::{self, SamplingFields, StreamOptions, UsageInfo};
use crate::openai::logprobs::{CompletionLogprobs, IdMap};

#[derive(Clone, Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: PromptInput,
    pub suffix: Option<String>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<usize>,
    /// Alternatives per token (0 = only the sampled token's logprob).
    pub logprobs: Option<usize>,
    pub echo: Option<bool>,
    /// vLLM: add the tokenizer's BOS; default true.
    pub add_special_tokens: Option<bool>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PromptInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

/// One prompt, tokenized, with the text `echo` shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    pub ids: Vec<u32>,
    pub text: String,
}

/// A validated completion request, ready for the engine.
#[derive(Clone, Debug)]
pub struct CompletionPlan {
    pub prompts: Vec<Prompt>,
    pub params: SamplingParams,
    pub stream: bool,
    pub stream_options: StreamOptions,
    pub logprobs: Option<usize>,
    pub echo: bool,
    /// `echo` with `logprobs`: the logprobs start with the prompt's tokens.
    pub echo_logprobs: bool,
    /// `echo` with `max_tokens: 0`: the response holds the prompt and nothing generated.
    pub prompt_only: bool,
    /// vLLM's `prompt_logprobs` was asked for: each choice carries that field.
    pub prompt_logprobs: bool,
    pub priority: i32,
}

pub const DEFAULT_MAX_TOKENS: usize = 16;

impl CompletionRequest {
    pub fn plan(
        &self,
        sampling: &SamplingFields,
        tok: &Tokenizer,
        max_model_len: usize,
        limits: &RequestLimits,
    ) -> Result<CompletionPlan, ApiError> {
        // Counts and sizes first, before any tokenizing.
        limits.check_sampling(sampling)?;
        let n = sampling.n.unwrap_or(1);
        let num_prompts = match &self.prompt {
            PromptInput::Text(_) | PromptInput::Tokens(_) => 1,
            PromptInput::Texts(v) => v.len(),
            PromptInput::TokenLists(v) => v.len(),
        };
        limits.check_seqs(num_prompts, n, if n > 1 { "n" } else { "prompt" })?;
        if self.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::unsupported("suffix", "suffix is not supported"));
        }
        let stream = self.stream.unwrap_or(false);
        let stream_options = common::stream_options(stream, self.stream_options)?;
        let echo = self.echo.unwrap_or(false);
        if stream && sampling.prompt_logprobs.is_some() {
            return Err(ApiError::unsupported(
                "prompt_logprobs",
                "prompt_logprobs cannot be streamed (echo with logprobs can)",
            ));
        }
        // `echo` with `max_tokens: 0` scores the prompt alone (as evaluation harnesses ask):
        // the engine generates one token, which the response leaves out.
        let prompt_only = echo && self.max_tokens == Some(0);
        if prompt_only && stream {
            return Err(ApiError::unsupported(
                "max_tokens",
                "max_tokens 0 cannot be streamed",
            ));
        }
        let add_special = self.add_special_tokens.unwrap_or(true);
        let vocab = tok.vocab_size();
        let encode = |text: &str| {
            limits.check_text(text.len(), "prompt")?;
            let ids = tok.encode(text, add_special).map_err(|e| {
                ApiError::invalid_param("prompt", format!("tokenizing failed: {e}"))
            })?;
            Ok::<_, ApiError>(Prompt {
                ids,
                text: text.to_string(),
            })
        };
        let from_ids = |ids: &[u32]| {
            common::check_length(ids.len(), 1, max_model_len, "prompt")?;
            common::check_token_ids(ids, vocab, "prompt")?;
            let text = if echo {
                tok.decode(ids, false).unwrap_or_default()
            } else {
                String::new()
            };
            Ok::<_, ApiError>(Prompt {
                ids: ids.to_vec(),
                text,
            })
        };
        let prompts = match &self.prompt {
            PromptInput::Text(s) => vec![encode(s)?],
            PromptInput::Texts(v) => v.iter().map(|s| encode(s)).collect::<Result<_, _>>()?,
            PromptInput::Tokens(ids) => vec![from_ids(ids)?],
            PromptInput::TokenLists(v) => v
                .iter()
                .map(|ids| from_ids(ids))
                .collect::<Result<_, _>>()?,
        };
        if prompts.is_empty() {
            return Err(ApiError::invalid_param(
                "prompt",
                "at least one prompt is required",
            ));
        }
        let max_tokens = if prompt_only {
            1
        } else {
            self.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)
        };
        for p in &prompts {
            common::check_length(p.ids.len(), max_tokens, max_model_len, "prompt")?;
        }
        let mut params = sampling.to_params(max_tokens, self.logprobs, vocab)?;
        let echo_logprobs = echo && self.logprobs.is_some();
        if echo_logprobs {
            let k = self
                .logprobs
                .unwrap_or(0)
                .max(params.prompt_logprobs.unwrap_or(0));
            params.prompt_logprobs = Some(k);
        }
        Ok(CompletionPlan {
            prompts,
            params,
            stream,
            stream_options,
            logprobs: self.logprobs,
            echo,
            echo_logprobs,
            prompt_only,
            prompt_logprobs: sampling.prompt_logprobs.is_some(),
            priority: sampling.priority.unwrap_or(0),
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CompletionChoice {
    pub index: usize,
    pub text: String,
    pub logprobs: Option<CompletionLogprobs>,
    pub finish_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_logprobs: Option<Vec<Option<IdMap>>>,
}

/// A whole response (`object: "text_completion"`); a stream chunk has the same shape with
/// one choice's new text, and `usage` only as `stream_options` asks.
#[derive(Clone, Debug, Serialize)]
pub struct Completion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
    pub system_fingerprint: Option<String>,
}

impl Completion {
    pub fn with_usage(mut self, usage: UsageInfo) -> Self {
        self.usage = serde_json::to_value(usage).ok();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn tokenizer() -> Tokenizer {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tiny-llama");
        Tokenizer::from_hf_dir(&dir).expect("the tiny-llama tokenizer loads")
    }

    fn plan(v: Value) -> Result<CompletionPlan, ApiError> {
        let r: CompletionRequest = serde_json::from_value(v.clone()).unwrap();
        let sampling: SamplingFields = serde_json::from_value(v).unwrap();
        let tok = tokenizer();
        let limits = RequestLimits::new(8, Some(16), &tok, 64);
        r.plan(&sampling, &tok, 64, &limits)
    }

    #[test]
    fn every_prompt_form_is_accepted() {
        let tok = tokenizer();
        let one = plan(json!({"prompt": "hello world"})).unwrap();
        assert_eq!(one.prompts.len(), 1);
        assert_eq!(one.prompts[0].ids, tok.encode("hello world", true).unwrap());
        assert_eq!(one.params.max_tokens, DEFAULT_MAX_TOKENS);
        let two = plan(json!({"prompt": ["a", "b c"], "n": 2})).unwrap();
        assert_eq!((two.prompts.len(), two.params.n), (2, 2));
        let ids = plan(json!({"prompt": [5, 6, 7], "echo": true})).unwrap();
        assert_eq!(ids.prompts[0].ids, vec![5, 6, 7]);
        assert_eq!(ids.prompts[0].text, tok.decode(&[5, 6, 7], false).unwrap());
        let lists = plan(json!({"prompt": [[5], [6, 7]]})).unwrap();
        assert_eq!(
            lists
                .prompts
                .iter()
                .map(|p| p.ids.len())
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        let raw = plan(json!({"prompt": "hello", "add_special_tokens": false})).unwrap();
        assert_eq!(raw.prompts[0].ids, tok.encode("hello", false).unwrap());
    }

    #[test]
    fn invalid_requests_are_400s_naming_the_field() {
        let cases = [
            (json!({"prompt": []}), "prompt"),
            (json!({"prompt": [100000]}), "prompt"),
            (json!({"prompt": "x", "max_tokens": 64}), "max_tokens"),
            (json!({"prompt": "x", "max_tokens": 0}), "max_tokens"),
            (json!({"prompt": "x", "logprobs": 21}), "logprobs"),
            (
                json!({"prompt": "x", "max_tokens": 0, "echo": true, "stream": true}),
                "max_tokens",
            ),
            (
                json!({"prompt": "x", "prompt_logprobs": 1, "stream": true}),
                "prompt_logprobs",
            ),
            (json!({"prompt": "x", "suffix": "y"}), "suffix"),
            (
                json!({"prompt": "x", "stream_options": {"include_usage": true}}),
                "stream_options",
            ),
            (json!({"prompt": "x", "n": 0}), "n"),
            (json!({"prompt": "x", "n": 9}), "n"),
            (json!({"prompt": "x", "n": 2, "best_of": 9}), "best_of"),
            (json!({"prompt": ["a", "b", "c"], "n": 6}), "n"),
            (json!({"prompt": vec!["a"; 17]}), "prompt"),
            (json!({"prompt": "word ".repeat(10_000)}), "prompt"),
            (json!({"prompt": vec![5; 64]}), "prompt"),
            (
                json!({"prompt": "x", "max_tokens": usize::MAX}),
                "max_tokens",
            ),
            (json!({"prompt": "x", "stop": vec!["s"; 65]}), "stop"),
        ];
        for (v, field) in cases {
            let e = plan(v.clone()).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{v}");
            assert_eq!(e.param.as_deref(), Some(field), "{v}: {}", e.message);
        }
        let e = plan(json!({"prompt": "x", "max_tokens": 64})).unwrap_err();
        assert!(e.message.contains("64"), "{}", e.message);
        assert!(serde_json::from_value::<CompletionRequest>(json!({"prompt": {"a": 1}})).is_err());
        assert!(serde_json::from_value::<CompletionRequest>(json!({"max_tokens": 3})).is_err());
    }

    #[test]
    fn options_reach_the_plan() {
        let p = plan(
            json!({"prompt": "x", "logprobs": 2, "stream": true, "seed": 3,
            "stream_options": {"include_usage": true}, "priority": -1, "stop": ["\n"]}),
        )
        .unwrap();
        assert_eq!(
            (p.logprobs, p.params.logprobs, p.params.seed),
            (Some(2), Some(2), Some(3))
        );
        assert!(p.stream && p.stream_options.include_usage && !p.echo);
        assert_eq!(
            (p.priority, p.params.stop.clone()),
            (-1, vec!["\n".to_string()])
        );
        assert!(!p.echo_logprobs && !p.prompt_only && !p.prompt_logprobs);
        assert_eq!(p.params.prompt_logprobs, None);
    }

    #[test]
    fn echo_with_logprobs_scores_the_prompt() {
        let p =
            plan(json!({"prompt": "x y", "echo": true, "logprobs": 2, "max_tokens": 0})).unwrap();
        assert!(p.echo && p.echo_logprobs && p.prompt_only && !p.prompt_logprobs);
        assert_eq!(
            (p.params.prompt_logprobs, p.params.max_tokens),
            (Some(2), 1)
        );
        let p = plan(json!({"prompt": "x", "echo": true, "logprobs": 1, "prompt_logprobs": 3}))
            .unwrap();
        assert_eq!(p.params.prompt_logprobs, Some(3));
        assert!(p.prompt_logprobs && !p.prompt_only);
        let p = plan(json!({"prompt": "x", "prompt_logprobs": 0})).unwrap();
        assert_eq!(
            (p.params.prompt_logprobs, p.echo_logprobs),
            (Some(0), false)
        );
    }
}
