//! `RequestOutput`: what the engine streams back for a request (DESIGN.md §4), one message
//! per step that produced something for one of its choices.

use ingot_runner::TokenLogprobs;
use ingot_scheduler::FinishReason;

#[derive(Clone, Debug, PartialEq)]
pub struct RequestOutput {
    /// The id the caller got from `submit`.
    pub request_id: u64,
    /// Which of the request's `n` choices this is about.
    pub index: usize,
    /// Tokens produced since the last output of this choice.
    pub token_ids: Vec<u32>,
    /// Text those tokens completed (may be empty while a character or stop string is pending).
    pub text: String,
    /// One entry per token in `token_ids` when logprobs were asked for.
    pub logprobs: Vec<TokenLogprobs>,
    /// On a choice's first output, when asked: prompt tokens 1.. with their log-probabilities.
    pub prompt_logprobs: Option<Vec<TokenLogprobs>>,
    /// Set on the choice's last output.
    pub finish_reason: Option<FinishReason>,
    pub usage: Usage,
    /// The request failed (e.g. a device error); no further output follows for it.
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Tokens generated so far by this choice.
    pub completion_tokens: usize,
    /// Prompt tokens served from the prefix cache at admission.
    pub cached_tokens: usize,
}
