//! HTTP request bodies as each endpoint handles them before the engine: JSON parsing with
//! errors that name the field, the request limits, tokenizing, and the conversion into
//! sampling parameters with their validation. Everything a handler does short of
//! submitting, on the tiny GGUF model's tokenizer and a 512-token context.

use std::sync::OnceLock;

use ingot_models::{ModelFiles, ModelSource};
use ingot_server::errors::parse_json;
use ingot_server::limits::{DEFAULT_MAX_N, RequestLimits};
use ingot_server::openai::chat::protocol::ChatRequest;
use ingot_server::openai::common::SamplingFields;
use ingot_server::openai::completions::protocol::CompletionRequest;
use ingot_server::openai::tokenize::protocol::{DetokenizeRequest, TokenizeRequest};
use ingot_tokenizer::Tokenizer;

use crate::testdata;

const MAX_MODEL_LEN: usize = 512;

fn setup() -> &'static (Tokenizer, RequestLimits) {
    static SETUP: OnceLock<(Tokenizer, RequestLimits)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let gguf = testdata("tiny-llama/tiny-llama-q8_0.gguf");
        let tok = ModelFiles::open(ModelSource::Gguf(gguf))
            .expect("the tiny GGUF opens")
            .tokenizer;
        let limits = RequestLimits::new(DEFAULT_MAX_N, Some(1024), &tok, MAX_MODEL_LEN);
        (tok, limits)
    })
}

/// `data` as the body of `/v1/completions`, `/v1/chat/completions`, `/tokenize` and
/// `/detokenize`.
pub fn request(data: &[u8]) {
    let (tok, limits) = setup();
    let sampling = parse_json::<SamplingFields>(data);
    if let (Ok(req), Ok(s)) = (parse_json::<CompletionRequest>(data), &sampling) {
        let _ = req.plan(s, tok, MAX_MODEL_LEN, limits);
    }
    if let (Ok(req), Ok(s)) = (parse_json::<ChatRequest>(data), &sampling) {
        let _ = req.plan(s, tok, MAX_MODEL_LEN, limits, None);
    }
    if let Ok(req) = parse_json::<TokenizeRequest>(data) {
        let _ = req.run(tok, MAX_MODEL_LEN);
    }
    if let Ok(req) = parse_json::<DetokenizeRequest>(data) {
        let _ = req.run(tok);
    }
}
