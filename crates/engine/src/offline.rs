//! Offline batch generation: every prompt submitted at once to an [`EngineCore`] driven on
//! the calling thread, outputs gathered per prompt. The Rust API behind
//! `ingot generate --prompts-file`.

use ingot_scheduler::{FinishReason, SamplingParams};
use ingot_tensor::Backend;
use tokio::sync::mpsc::unbounded_channel;

use crate::core::{EngineCore, EngineRequest, SubmitError};
use crate::output::{RequestOutput, Usage};

/// One finished choice of one prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub index: usize,
    pub text: String,
    pub token_ids: Vec<u32>,
    pub logprobs: Vec<ingot_runner::TokenLogprobs>,
    pub prompt_logprobs: Option<Vec<ingot_runner::TokenLogprobs>>,
    pub finish_reason: Option<FinishReason>,
    pub usage: Usage,
    pub error: Option<String>,
}

/// Generates for every (prompt, params); returns each prompt's choices in index order.
/// A prompt the engine rejects yields its error instead.
pub fn generate<B: Backend>(
    core: &mut EngineCore<B>,
    requests: Vec<(Vec<u32>, SamplingParams)>,
) -> Vec<Result<Vec<Completion>, SubmitError>> {
    let mut receivers = Vec::with_capacity(requests.len());
    for (i, (prompt, params)) in requests.into_iter().enumerate() {
        let (tx, rx) = unbounded_channel();
        let n = params.n;
        let id = u64::MAX - i as u64; // distinct from handle-assigned ids
        let res = core.add_request(
            EngineRequest {
                id,
                prompt,
                params,
                priority: 0,
            },
            tx,
        );
        receivers.push(res.map(|()| (rx, n)));
    }
    while core.has_unfinished() {
        core.step();
    }
    core.step(); // let the runner drop the finished requests' state
    receivers
        .into_iter()
        .map(|r| {
            let (mut rx, n) = r?;
            let mut choices: Vec<Completion> = (0..n)
                .map(|index| Completion {
                    index,
                    text: String::new(),
                    token_ids: Vec::new(),
                    logprobs: Vec::new(),
                    prompt_logprobs: None,
                    finish_reason: None,
                    usage: Usage::default(),
                    error: None,
                })
                .collect();
            while let Ok(o) = rx.try_recv() {
                absorb(&mut choices[o.index], o);
            }
            Ok(choices)
        })
        .collect()
}

fn absorb(c: &mut Completion, o: RequestOutput) {
    c.text.push_str(&o.text);
    c.token_ids.extend(o.token_ids);
    c.logprobs.extend(o.logprobs);
    if o.prompt_logprobs.is_some() {
        c.prompt_logprobs = o.prompt_logprobs;
    }
    c.usage = o.usage;
    if o.finish_reason.is_some() {
        c.finish_reason = o.finish_reason;
    }
    if o.error.is_some() {
        c.error = o.error;
    }
}
