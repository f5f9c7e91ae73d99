//! The request and response types of Ingot, in one small home below the scheduler, the
//! runner and the engine (DESIGN.md §4): what a client asks for ([`SamplingParams`], with an optional [`StructuredOutput`]) and
//! what it gets back besides text ([`FinishReason`], [`TokenLogprobs`], [`AddError`] when a
//! request cannot be accepted). The engine re-exports them, so the server depends on the
//! engine and the tokenizer alone. Plain data, no behaviour beyond validation.

mod sampling_params;
mod structured;

pub use sampling_params::{MAX_LOGPROBS, SamplingParams, SamplingParamsError};
pub use structured::StructuredOutput;

/// A request's id inside the engine.
pub type RequestId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// EOS, a stop token or a stop string.
    Stop,
    /// `max_tokens` or the model length reached.
    Length,
    /// Aborted by the client (or the engine).
    Abort,
}

impl FinishReason {
    /// OpenAI's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
        }
    }
}

/// Log-probabilities of one position: the chosen (or given) token's, and the most likely
/// tokens'.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprobs {
    pub token: u32,
    pub logprob: f32,
    /// The most likely tokens with their log-probabilities, best first.
    pub top: Vec<(u32, f32)>,
}

/// Why a request cannot be accepted at all.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AddError {
    #[error("request {0} already exists")]
    Duplicate(RequestId),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error(
        "prompt of {prompt} tokens plus max_tokens {max_tokens} exceeds the model length of {max_model_len} tokens"
    )]
    TooLong {
        prompt: usize,
        max_tokens: usize,
        max_model_len: usize,
    },
    #[error(
        "request needs {needed} KV blocks for {tokens} tokens, but the whole cache has {available}; \
         it could never run (raise --kv-cache-memory or lower max_tokens)"
    )]
    CannotFit {
        tokens: usize,
        needed: usize,
        available: usize,
    },
}
