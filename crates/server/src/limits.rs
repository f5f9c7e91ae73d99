//! Bounds on every dimension of a generation request, checked before any work is done for
//! it, so no single request can take the server down (docs/RELIABILITY.md lists them).
//!
//! Each limit is a clear 400 naming the field. The numbers are chosen to sit above what a
//! legitimate client sends: `n` follows OpenAI's documented maximum (128), `messages` its
//! array limit (2048); stop strings, `logit_bias` and `stop_token_ids` allow well beyond
//! OpenAI's few entries. Text is bounded by what could ever fit the context: a prompt of
//! more than `max_model_len x` (the longest vocabulary entry, in bytes) `x 4` (a margin for
//! normalizers) cannot tokenize to fewer than `max_model_len` tokens, so it is refused
//! before the tokenizer spends time on it. The request body (`--max-request-body`) and the queue (`--max-queue`, counted in
//! sequences: each of `n` choices of each prompt is one) bound the rest.

use ingot_tokenizer::Tokenizer;

use crate::errors::ApiError;
use crate::openai::common::{SamplingFields, StopSpec};

/// OpenAI's maximum for `n`; the default of `--max-n`.
pub const DEFAULT_MAX_N: usize = 128;
/// Stop strings per request, and bytes per stop string.
pub const MAX_STOP_STRINGS: usize = 64;
pub const MAX_STOP_BYTES: usize = 1024;
/// Entries of `logit_bias`, and of `stop_token_ids`.
pub const MAX_LOGIT_BIAS: usize = 1024;
pub const MAX_STOP_TOKEN_IDS: usize = 1024;
/// Messages of one chat request (OpenAI's limit), and content parts of one message.
pub const MAX_MESSAGES: usize = 2048;
pub const MAX_CONTENT_PARTS: usize = 1024;

/// Normalizers (NFKC and the like) may shorten text before it is split into tokens; no
/// common one shrinks it by more than this factor, so text beyond it never fits.
const NORMALIZER_MARGIN: usize = 4;

/// The limits of one server: the configured ones and those derived from the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLimits {
    /// Most choices per prompt (`n`, `best_of`).
    pub max_n: usize,
    /// Most sequences one request may queue (prompts x n): the engine's queue limit.
    pub max_seqs: usize,
    /// Longest prompt text, in bytes, that could still fit the context.
    pub max_prompt_bytes: usize,
}

impl RequestLimits {
    /// Limits for a model with `tok`'s vocabulary and a context of `max_model_len` tokens.
    pub fn new(
        max_n: usize,
        max_queue: Option<usize>,
        tok: &Tokenizer,
        max_model_len: usize,
    ) -> Self {
        Self {
            max_n,
            max_seqs: max_queue.unwrap_or(usize::MAX),
            max_prompt_bytes: max_model_len
                .saturating_mul(longest_token_bytes(tok))
                .saturating_mul(NORMALIZER_MARGIN),
        }
    }

    /// `n`, `best_of`, stop strings, `logit_bias`, `stop_token_ids`: counts and sizes.
    pub fn check_sampling(&self, s: &SamplingFields) -> Result<(), ApiError> {
        for (param, v) in [("n", s.n), ("best_of", s.best_of)] {
            if let Some(v) = v
                && v > self.max_n
            {
                return Err(ApiError::invalid_param(
                    param,
                    format!(
                        "{param} is {v}, above this server's limit of {} (--max-n)",
                        self.max_n
                    ),
                ));
            }
        }
        let stops: &[String] = match &s.stop {
            None => &[],
            Some(StopSpec::One(one)) => std::slice::from_ref(one),
            Some(StopSpec::Many(v)) => v,
        };
        if stops.len() > MAX_STOP_STRINGS {
            return Err(too_many(
                "stop",
                stops.len(),
                MAX_STOP_STRINGS,
                "stop strings",
            ));
        }
        if let Some(long) = stops.iter().find(|s| s.len() > MAX_STOP_BYTES) {
            return Err(ApiError::invalid_param(
                "stop",
                format!(
                    "a stop string of {} bytes is longer than the limit of {MAX_STOP_BYTES}",
                    long.len()
                ),
            ));
        }
        let bias = s.logit_bias.as_ref().map_or(0, |m| m.len());
        if bias > MAX_LOGIT_BIAS {
            return Err(too_many("logit_bias", bias, MAX_LOGIT_BIAS, "entries"));
        }
        let ids = s.stop_token_ids.as_ref().map_or(0, Vec::len);
        if ids > MAX_STOP_TOKEN_IDS {
            return Err(too_many(
                "stop_token_ids",
                ids,
                MAX_STOP_TOKEN_IDS,
                "token ids",
            ));
        }
        Ok(())
    }

    /// A request of `prompts` prompts with `n` choices each must fit the queue.
    pub fn check_seqs(&self, prompts: usize, n: usize, param: &str) -> Result<(), ApiError> {
        let seqs = prompts.saturating_mul(n);
        if seqs > self.max_seqs {
            return Err(ApiError::invalid_param(
                param,
                format!(
                    "this request asks for {seqs} sequences ({prompts} prompt(s) x n = {n}), \
                     more than the server queues at once ({}, --max-queue)",
                    self.max_seqs
                ),
            ));
        }
        Ok(())
    }

    /// A prompt text of `bytes` bytes must be able to fit the context.
    pub fn check_text(&self, bytes: usize, param: &str) -> Result<(), ApiError> {
        if bytes > self.max_prompt_bytes {
            return Err(ApiError::invalid_param(
                param,
                format!(
                    "the prompt text is {bytes} bytes; no text over {} bytes can fit this \
                     model's context",
                    self.max_prompt_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// 400 for a list with more than `max` entries.
pub fn too_many(param: &str, got: usize, max: usize, what: &str) -> ApiError {
    ApiError::invalid_param(
        param,
        format!("{got} {what} given; at most {max} are allowed"),
    )
}

/// Bytes of the longest vocabulary entry as the tokenizer spells it (byte-level BPE and
/// SentencePiece spell every byte with at least one byte), at least 1.
fn longest_token_bytes(tok: &Tokenizer) -> usize {
    (0..tok.vocab_size() as u32)
        .filter_map(|id| tok.id_to_token(id))
        .map(|t| t.len())
        .max()
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> RequestLimits {
        RequestLimits {
            max_n: 4,
            max_seqs: 10,
            max_prompt_bytes: 100,
        }
    }

    fn fields(v: serde_json::Value) -> SamplingFields {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn each_limit_names_its_field() {
        let l = limits();
        let many = |k: usize| (0..k).map(|i| i.to_string()).collect::<Vec<_>>();
        let bias: serde_json::Map<_, _> = (0..=MAX_LOGIT_BIAS)
            .map(|i| (i.to_string(), json!(1)))
            .collect();
        let cases = [
            (json!({"n": 5}), "n"),
            (json!({"best_of": 5}), "best_of"),
            (json!({"stop": many(MAX_STOP_STRINGS + 1)}), "stop"),
            (json!({"stop": "x".repeat(MAX_STOP_BYTES + 1)}), "stop"),
            (
                json!({"stop": ["a", "x".repeat(MAX_STOP_BYTES + 1)]}),
                "stop",
            ),
            (json!({"logit_bias": bias}), "logit_bias"),
            (
                json!({"stop_token_ids": vec![1; MAX_STOP_TOKEN_IDS + 1]}),
                "stop_token_ids",
            ),
        ];
        for (v, param) in cases {
            let e = l.check_sampling(&fields(v.clone())).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.param.as_deref()),
                (400, Some(param)),
                "{v}"
            );
        }
        let ok = json!({"n": 4, "best_of": 4, "stop": many(MAX_STOP_STRINGS),
                        "stop_token_ids": vec![1; MAX_STOP_TOKEN_IDS]});
        assert!(l.check_sampling(&fields(ok)).is_ok());
        assert!(l.check_seqs(2, 5, "n").is_ok());
        let e = l.check_seqs(3, 4, "n").unwrap_err();
        assert!(
            e.message.contains("12") && e.message.contains("--max-queue"),
            "{}",
            e.message
        );
        assert!(l.check_seqs(usize::MAX, 2, "n").is_err());
        assert!(l.check_text(100, "prompt").is_ok());
        assert_eq!(
            l.check_text(101, "prompt").unwrap_err().param.as_deref(),
            Some("prompt")
        );
    }
}
