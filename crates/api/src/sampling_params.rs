//! `SamplingParams`: how one request's tokens are chosen and when it stops (DESIGN.md §4).
//! Plain data, validated once at the edge ([`SamplingParams::validate`]) with an error that
//! names the parameter; everything downstream trusts validated params.

use crate::StructuredOutput;

#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Completions to generate for the prompt (each its own request sharing the prompt's
    /// cached blocks).
    pub n: usize,
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus mass in (0, 1]; 1 disables it.
    pub top_p: f32,
    /// Keep the k most likely tokens; 0 disables it.
    pub top_k: usize,
    /// Drop tokens whose probability is below `min_p` times the top one's; 0 disables it.
    pub min_p: f32,
    /// OpenAI penalties in [-2, 2], over the tokens generated so far.
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// Divides positive (multiplies negative) logits of tokens seen in prompt or output; 1 disables it.
    pub repetition_penalty: f32,
    /// Added to the logits of the given token ids.
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed of the request's own RNG stream; None draws one from the OS.
    pub seed: Option<u64>,
    pub max_tokens: usize,
    /// EOS and stop tokens are ignored until this many tokens exist.
    pub min_tokens: usize,
    pub stop: Vec<String>,
    pub stop_token_ids: Vec<u32>,
    pub include_stop_str_in_output: bool,
    pub ignore_eos: bool,
    /// Log-probabilities of the sampled token plus this many top alternatives.
    pub logprobs: Option<usize>,
    /// Same for every prompt token.
    pub prompt_logprobs: Option<usize>,
    pub skip_special_tokens: bool,
    /// A grammar the output must match (structured output, constrained tool calls): each
    /// step's token is chosen among the tokens the grammar allows.
    pub structured: Option<StructuredOutput>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            n: 1,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            logit_bias: Vec::new(),
            seed: None,
            max_tokens: 16,
            min_tokens: 0,
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            include_stop_str_in_output: false,
            ignore_eos: false,
            logprobs: None,
            prompt_logprobs: None,
            skip_special_tokens: true,
            structured: None,
        }
    }
}

/// A parameter out of range: names the parameter (OpenAI's `param`) and says why.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{param}: {message}")]
pub struct SamplingParamsError {
    pub param: &'static str,
    pub message: String,
}

/// Most alternatives a request may ask log-probabilities for.
pub const MAX_LOGPROBS: usize = 20;

impl SamplingParams {
    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            max_tokens,
            ..Default::default()
        }
    }

    pub fn validate(&self, vocab_size: usize) -> Result<(), SamplingParamsError> {
        let fail = |param, message: String| Err(SamplingParamsError { param, message });
        if self.n == 0 {
            return fail("n", "must be at least 1".into());
        }
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return fail(
                "temperature",
                format!("must be >= 0, got {}", self.temperature),
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return fail("top_p", format!("must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return fail("min_p", format!("must be in [0, 1], got {}", self.min_p));
        }
        for (param, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return fail(param, format!("must be in [-2, 2], got {v}"));
            }
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return fail(
                "repetition_penalty",
                format!("must be > 0, got {}", self.repetition_penalty),
            );
        }
        if self.max_tokens == 0 {
            return fail("max_tokens", "must be at least 1".into());
        }
        if self.min_tokens > self.max_tokens {
            return fail(
                "min_tokens",
                format!("{} exceeds max_tokens {}", self.min_tokens, self.max_tokens),
            );
        }
        for &(id, bias) in &self.logit_bias {
            if id as usize >= vocab_size {
                return fail(
                    "logit_bias",
                    format!("token id {id} is outside the vocabulary of {vocab_size}"),
                );
            }
            if !(-100.0..=100.0).contains(&bias) {
                return fail(
                    "logit_bias",
                    format!("bias {bias} for token {id} is outside [-100, 100]"),
                );
            }
        }
        for &id in &self.stop_token_ids {
            if id as usize >= vocab_size {
                return fail(
                    "stop_token_ids",
                    format!("token id {id} is outside the vocabulary"),
                );
            }
        }
        if self.stop.iter().any(String::is_empty) {
            return fail("stop", "stop strings must not be empty".into());
        }
        if self.structured.is_some() && self.min_tokens > 0 {
            // min_tokens suppresses EOS, which a finished grammar allows alone.
            return fail(
                "min_tokens",
                "cannot be combined with structured output (the grammar decides the end)".into(),
            );
        }
        for (param, v) in [
            ("logprobs", self.logprobs),
            ("prompt_logprobs", self.prompt_logprobs),
        ] {
            if v.is_some_and(|k| k > MAX_LOGPROBS) {
                return fail(param, format!("at most {MAX_LOGPROBS} alternatives"));
            }
        }
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}
