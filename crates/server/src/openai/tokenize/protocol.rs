//! vLLM's `POST /tokenize` and `POST /detokenize`.
//!
//! `/tokenize` takes either `prompt` (text; `add_special_tokens` defaults to true) or
//! `messages` (rendered through the chat template as chat completions would; then
//! `add_special_tokens` defaults to false) and answers `{count, max_model_len, tokens,
//! token_strs}`, `token_strs` being the vocabulary entries when `return_token_strs` is set.
//! `/detokenize` takes `tokens` and answers `{prompt}`.

use ingot_tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::errors::ApiError;
use crate::openai::chat::protocol::{ChatMessage, render_chat};
use crate::openai::common::check_token_ids;

#[derive(Clone, Debug, Deserialize)]
pub struct TokenizeRequest {
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub messages: Option<Vec<ChatMessage>>,
    pub add_special_tokens: Option<bool>,
    pub add_generation_prompt: Option<bool>,
    pub continue_final_message: Option<bool>,
    pub chat_template_kwargs: Option<Map<String, Value>>,
    pub return_token_strs: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokenizeResponse {
    pub count: usize,
    pub max_model_len: usize,
    pub tokens: Vec<u32>,
    pub token_strs: Option<Vec<String>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct DetokenizeRequest {
    pub model: Option<String>,
    pub tokens: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DetokenizeResponse {
    pub prompt: String,
}

impl TokenizeRequest {
    pub fn run(&self, tok: &Tokenizer, max_model_len: usize) -> Result<TokenizeResponse, ApiError> {
        let tokens = match (&self.prompt, &self.messages) {
            (Some(text), None) => tok
                .encode(text, self.add_special_tokens.unwrap_or(true))
                .map_err(|e| {
                    ApiError::invalid_param("prompt", format!("tokenizing failed: {e}"))
                })?,
            (None, Some(messages)) => render_chat(
                tok,
                messages,
                self.add_generation_prompt.unwrap_or(true),
                self.continue_final_message.unwrap_or(false),
                self.add_special_tokens.unwrap_or(false),
                self.chat_template_kwargs.as_ref(),
                None,
            )?,
            _ => {
                return Err(ApiError::bad_request(
                    "give exactly one of 'prompt' or 'messages'",
                ));
            }
        };
        let token_strs = self.return_token_strs.unwrap_or(false).then(|| {
            tokens
                .iter()
                .map(|&t| tok.id_to_token(t).unwrap_or_default())
                .collect()
        });
        Ok(TokenizeResponse {
            count: tokens.len(),
            max_model_len,
            tokens,
            token_strs,
        })
    }
}

impl DetokenizeRequest {
    pub fn run(&self, tok: &Tokenizer) -> Result<DetokenizeResponse, ApiError> {
        check_token_ids(&self.tokens, tok.vocab_size(), "tokens")?;
        let prompt = tok
            .decode(&self.tokens, false)
            .map_err(|e| ApiError::invalid_param("tokens", e.to_string()))?;
        Ok(DetokenizeResponse { prompt })
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

    #[test]
    fn tokenize_then_detokenize_round_trips() {
        let tok = tokenizer();
        let req: TokenizeRequest =
            serde_json::from_value(json!({"prompt": "hello world", "return_token_strs": true}))
                .unwrap();
        let r = req.run(&tok, 128).unwrap();
        assert_eq!(r.tokens, tok.encode("hello world", true).unwrap());
        assert_eq!((r.count, r.max_model_len), (r.tokens.len(), 128));
        assert_eq!(r.token_strs.as_ref().map(Vec::len), Some(r.count));
        let back = DetokenizeRequest {
            model: None,
            tokens: r.tokens.clone(),
        }
        .run(&tok)
        .unwrap();
        assert_eq!(back.prompt, tok.decode(&r.tokens, false).unwrap());
        assert!(back.prompt.contains("hello world"));
    }

    #[test]
    fn messages_use_the_chat_template() {
        let tok = tokenizer();
        let req: TokenizeRequest =
            serde_json::from_value(json!({"messages": [{"role": "user", "content": "Hi"}]}))
                .unwrap();
        let r = req.run(&tok, 128).unwrap();
        assert_eq!(
            tok.decode(&r.tokens, false).unwrap(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(r.token_strs.is_none());
    }

    #[test]
    fn bad_requests() {
        let tok = tokenizer();
        let both: TokenizeRequest = serde_json::from_value(
            json!({"prompt": "x", "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .unwrap();
        assert_eq!(both.run(&tok, 128).unwrap_err().status.as_u16(), 400);
        let none: TokenizeRequest = serde_json::from_value(json!({})).unwrap();
        assert_eq!(none.run(&tok, 128).unwrap_err().status.as_u16(), 400);
        let bad = DetokenizeRequest {
            model: None,
            tokens: vec![1_000_000],
        };
        assert_eq!(bad.run(&tok).unwrap_err().param.as_deref(), Some("tokens"));
    }
}
