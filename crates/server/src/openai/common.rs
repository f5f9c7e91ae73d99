//! Protocol pieces both generation endpoints share: the sampling fields (OpenAI's and vLLM's
//! extras) and their conversion into the engine's [`SamplingParams`], `stop`,
//! `stream_options`, and `usage`.
//!
//! Conversion is where a request is validated: every range check happens here or in
//! `SamplingParams::validate`, before anything reaches the engine, and every error names
//! the field.

use std::collections::HashMap;

use axum::extract::{FromRequest, Request};
use ingot_engine::api::{MAX_LOGPROBS, SamplingParams};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::errors::{ApiError, parse_json, read_body, too_long};
use crate::openai::structured::StructuredFields;
use crate::state::AppState;

/// A generation request body: the endpoint's own fields and the shared [`SamplingFields`],
/// each parsed from the same JSON. (Two passes rather than `#[serde(flatten)]`, which would
/// lose the path of a wrongly typed field, so the error could not name it.)
pub struct GenerationBody<T> {
    pub request: T,
    pub sampling: SamplingFields,
}

impl<T: DeserializeOwned> FromRequest<AppState> for GenerationBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        Ok(Self {
            request: parse_json(&bytes)?,
            sampling: parse_json(&bytes)?,
        })
    }
}

/// `stop`: one string or a list.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum StopSpec {
    One(String),
    Many(Vec<String>),
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
pub struct StreamOptions {
    /// Send a last chunk with empty `choices` and the request's `usage`.
    #[serde(default)]
    pub include_usage: bool,
    /// vLLM: put the running `usage` in every chunk.
    #[serde(default)]
    pub continuous_usage_stats: bool,
}

/// Sampling fields common to chat and text completions (read from the same body as each request).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SamplingFields {
    pub n: Option<usize>,
    pub best_of: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// Token id (as a string key) -> bias in [-100, 100].
    pub logit_bias: Option<HashMap<String, f32>>,
    /// Any JSON integer; negative seeds are taken modulo 2^64.
    pub seed: Option<serde_json::Number>,
    pub stop: Option<StopSpec>,
    // vLLM's extra sampling parameters.
    /// -1 or 0 disables.
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub ignore_eos: Option<bool>,
    pub min_tokens: Option<usize>,
    pub stop_token_ids: Option<Vec<u32>>,
    pub include_stop_str_in_output: Option<bool>,
    pub skip_special_tokens: Option<bool>,
    pub prompt_logprobs: Option<usize>,
    /// Lower is scheduled first.
    pub priority: Option<i32>,
    // Structured output (`openai::structured`).
    pub response_format: Option<serde_json::Value>,
    pub structured_outputs: Option<serde_json::Value>,
    pub guided_json: Option<serde_json::Value>,
    pub guided_regex: Option<String>,
    pub guided_choice: Option<Vec<String>>,
    pub guided_grammar: Option<String>,
}

impl SamplingFields {
    /// The structured-output fields, for `openai::structured`.
    pub fn structured_fields(&self) -> StructuredFields {
        StructuredFields {
            response_format: self.response_format.clone(),
            structured_outputs: self.structured_outputs.clone(),
            guided_json: self.guided_json.clone(),
            guided_regex: self.guided_regex.clone(),
            guided_choice: self.guided_choice.clone(),
            guided_grammar: self.guided_grammar.clone(),
        }
    }

    /// The engine's parameters for this request; `max_tokens` and `logprobs` (alternatives
    /// per token, None for no logprobs) are decided by each endpoint.
    pub fn to_params(
        &self,
        max_tokens: usize,
        logprobs: Option<usize>,
        vocab_size: usize,
    ) -> Result<SamplingParams, ApiError> {
        let d = SamplingParams::default();
        let n = self.n.unwrap_or(1);
        if let Some(best_of) = self.best_of
            && best_of != n
        {
            return Err(ApiError::unsupported(
                "best_of",
                format!("best_of ({best_of}) different from n ({n}) is not supported"),
            ));
        }
        let top_k = match self.top_k {
            None | Some(-1) | Some(0) => 0,
            Some(k) if k > 0 => k as usize,
            Some(k) => {
                return Err(ApiError::invalid_param(
                    "top_k",
                    format!("must be -1 or 0 (disabled) or at least 1, got {k}"),
                ));
            }
        };
        let seed = match &self.seed {
            None => None,
            Some(s) => Some(
                s.as_u64()
                    .or_else(|| s.as_i64().map(|v| v as u64))
                    .ok_or_else(|| {
                        ApiError::invalid_param("seed", format!("must be an integer, got {s}"))
                    })?,
            ),
        };
        let mut logit_bias = Vec::new();
        for (key, &bias) in self.logit_bias.iter().flatten() {
            let id: u32 = key.parse().map_err(|_| {
                ApiError::invalid_param(
                    "logit_bias",
                    format!("keys must be token ids, got '{key}'"),
                )
            })?;
            logit_bias.push((id, bias));
        }
        logit_bias.sort_by_key(|&(id, _)| id);
        let stop = match &self.stop {
            None => Vec::new(),
            Some(StopSpec::One(s)) => vec![s.clone()],
            Some(StopSpec::Many(v)) => v.clone(),
        };
        if let Some(k) = logprobs
            && k > MAX_LOGPROBS
        {
            return Err(ApiError::invalid_param(
                "logprobs",
                format!("at most {MAX_LOGPROBS} alternatives per token, got {k}"),
            ));
        }
        let params = SamplingParams {
            n,
            temperature: self.temperature.unwrap_or(d.temperature),
            top_p: self.top_p.unwrap_or(d.top_p),
            top_k,
            min_p: self.min_p.unwrap_or(d.min_p),
            presence_penalty: self.presence_penalty.unwrap_or(d.presence_penalty),
            frequency_penalty: self.frequency_penalty.unwrap_or(d.frequency_penalty),
            repetition_penalty: self.repetition_penalty.unwrap_or(d.repetition_penalty),
            logit_bias,
            seed,
            max_tokens,
            min_tokens: self.min_tokens.unwrap_or(0),
            stop,
            stop_token_ids: self.stop_token_ids.clone().unwrap_or_default(),
            include_stop_str_in_output: self.include_stop_str_in_output.unwrap_or(false),
            ignore_eos: self.ignore_eos.unwrap_or(false),
            logprobs,
            prompt_logprobs: self.prompt_logprobs,
            skip_special_tokens: self.skip_special_tokens.unwrap_or(true),
            structured: self.structured_fields().constraint()?,
        };
        params.validate(vocab_size)?;
        Ok(params)
    }
}

/// Checks that the prompt plus the output budget fit the model length. A prompt that
/// alone fills the context is the fault of `prompt_param` (`prompt`, `messages`); one that
/// leaves too little room for `max_tokens`, of `max_tokens`.
pub fn check_length(
    prompt: usize,
    max_tokens: usize,
    max_model_len: usize,
    prompt_param: &str,
) -> Result<(), ApiError> {
    if prompt == 0 {
        return Err(ApiError::invalid_param(prompt_param, "the prompt is empty"));
    }
    if prompt >= max_model_len {
        return Err(ApiError::invalid_param(
            prompt_param,
            format!(
                "the prompt is {prompt} tokens; this model's maximum context length is \
                 {max_model_len} tokens, which must also hold at least one generated token"
            ),
        ));
    }
    if prompt.saturating_add(max_tokens) > max_model_len {
        return Err(too_long(prompt, max_tokens, max_model_len));
    }
    Ok(())
}

/// Token ids given by a client must exist in the vocabulary.
pub fn check_token_ids(ids: &[u32], vocab_size: usize, param: &str) -> Result<(), ApiError> {
    match ids.iter().find(|&&t| t as usize >= vocab_size) {
        Some(bad) => Err(ApiError::invalid_param(
            param,
            format!("token id {bad} is outside the vocabulary of {vocab_size}"),
        )),
        None => Ok(()),
    }
}

/// `stream_options` is only meaningful with `stream: true` (vLLM rejects it otherwise).
pub fn stream_options(
    stream: bool,
    opts: Option<StreamOptions>,
) -> Result<StreamOptions, ApiError> {
    match opts {
        Some(_) if !stream => Err(ApiError::invalid_param(
            "stream_options",
            "stream_options can only be given with stream: true",
        )),
        o => Ok(o.unwrap_or_default()),
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: usize,
}

/// OpenAI's `usage`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UsageInfo {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptTokensDetails,
}

impl UsageInfo {
    pub fn new(prompt_tokens: usize, completion_tokens: usize, cached_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: PromptTokensDetails { cached_tokens },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> SamplingFields {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_follow_openai() {
        let p = parse("{}").to_params(16, None, 100).unwrap();
        assert_eq!(
            p,
            SamplingParams {
                max_tokens: 16,
                ..SamplingParams::default()
            }
        );
        assert_eq!((p.n, p.temperature, p.top_p, p.top_k), (1, 1.0, 1.0, 0));
    }

    #[test]
    fn every_field_reaches_the_params() {
        let f = parse(
            r#"{"n": 3, "best_of": 3, "temperature": 0.5, "top_p": 0.9, "presence_penalty": 0.1,
                "frequency_penalty": -0.2, "logit_bias": {"7": 5.5, "2": -100}, "seed": -1,
                "stop": "END", "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1,
                "ignore_eos": true, "min_tokens": 2, "stop_token_ids": [9],
                "include_stop_str_in_output": true, "skip_special_tokens": false,
                "prompt_logprobs": 4}"#,
        );
        let p = f.to_params(10, Some(3), 100).unwrap();
        assert_eq!(p.n, 3);
        assert_eq!(
            (p.temperature, p.top_p, p.top_k, p.min_p),
            (0.5, 0.9, 40, 0.05)
        );
        assert_eq!(
            (
                p.presence_penalty,
                p.frequency_penalty,
                p.repetition_penalty
            ),
            (0.1, -0.2, 1.1)
        );
        assert_eq!(p.logit_bias, vec![(2, -100.0), (7, 5.5)]);
        assert_eq!(p.seed, Some(u64::MAX));
        assert_eq!(p.stop, vec!["END".to_string()]);
        assert!(p.ignore_eos && p.include_stop_str_in_output && !p.skip_special_tokens);
        assert_eq!((p.min_tokens, p.max_tokens, p.logprobs), (2, 10, Some(3)));
        assert_eq!(
            (p.stop_token_ids.clone(), p.prompt_logprobs),
            (vec![9], Some(4))
        );
        let p = parse(r#"{"stop": ["a", "b"], "top_k": -1, "seed": 18446744073709551615}"#)
            .to_params(1, None, 100)
            .unwrap();
        assert_eq!((p.stop.len(), p.top_k, p.seed), (2, 0, Some(u64::MAX)));
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let cases = [
            (r#"{"temperature": -1}"#, "temperature"),
            (r#"{"top_p": 1.5}"#, "top_p"),
            (r#"{"top_p": 0}"#, "top_p"),
            (r#"{"n": 0}"#, "n"),
            (r#"{"top_k": -5}"#, "top_k"),
            (r#"{"min_p": 2}"#, "min_p"),
            (r#"{"presence_penalty": 3}"#, "presence_penalty"),
            (r#"{"frequency_penalty": -2.5}"#, "frequency_penalty"),
            (r#"{"repetition_penalty": 0}"#, "repetition_penalty"),
            (r#"{"logit_bias": {"x": 1}}"#, "logit_bias"),
            (r#"{"logit_bias": {"500": 1}}"#, "logit_bias"),
            (r#"{"logit_bias": {"5": 101}}"#, "logit_bias"),
            (r#"{"stop_token_ids": [100]}"#, "stop_token_ids"),
            (r#"{"stop": [""]}"#, "stop"),
            (r#"{"min_tokens": 20}"#, "min_tokens"),
            (r#"{"seed": 1.5}"#, "seed"),
            (r#"{"best_of": 4}"#, "best_of"),
            (r#"{"prompt_logprobs": 21}"#, "prompt_logprobs"),
        ];
        for (json, field) in cases {
            let e = parse(json).to_params(10, None, 100).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{json}");
            assert_eq!(e.param.as_deref(), Some(field), "{json}: {}", e.message);
        }
        let e = parse("{}").to_params(10, Some(21), 100).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("logprobs"));
        let e = parse("{}").to_params(0, None, 100).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
    }

    #[test]
    fn a_wrongly_typed_field_is_named() {
        let e = parse_json::<SamplingFields>(br#"{"n": 1, "temperature": "hot"}"#).unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.param.as_deref()),
            (400, Some("temperature"))
        );
        let e = parse_json::<SamplingFields>(br#"{"stop": 5}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("stop"));
    }

    #[test]
    fn length_and_stream_option_checks() {
        assert!(check_length(10, 6, 16, "prompt").is_ok());
        let e = check_length(10, 7, 16, "prompt").unwrap_err();
        assert!(
            e.message.contains("16") && e.message.contains("17"),
            "{}",
            e.message
        );
        assert_eq!(
            check_length(0, 1, 16, "prompt")
                .unwrap_err()
                .param
                .as_deref(),
            Some("prompt")
        );
        let e = check_length(16, 1, 16, "messages").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        assert!(e.message.contains("16 tokens"), "{}", e.message);
        let e = check_length(3, usize::MAX, 16, "prompt").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
        assert!(check_token_ids(&[0, 99], 100, "prompt").is_ok());
        assert!(check_token_ids(&[100], 100, "prompt").is_err());
        let opts = StreamOptions {
            include_usage: true,
            continuous_usage_stats: false,
        };
        assert!(stream_options(false, Some(opts)).is_err());
        assert_eq!(stream_options(true, Some(opts)).unwrap(), opts);
        assert_eq!(
            stream_options(false, None).unwrap(),
            StreamOptions::default()
        );
    }
}
