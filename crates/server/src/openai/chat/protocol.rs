//! `POST /v1/chat/completions`: the request as OpenAI (plus vLLM's extras) defines it, its
//! conversion into a prompt through the model's chat template and into [`SamplingParams`],
//! and the response and stream-chunk shapes.
//!
//! Messages may have the roles system (or developer), user, assistant and tool; content is a
//! string or a list of `{"type": "text", "text"}` parts (joined with newlines); assistant
//! messages may carry `tool_calls`. Images and audio are a 400 that says they are not
//! supported. Tools are in `tools.rs`; structured output in `openai::structured`.

use ingot_engine::api::SamplingParams;
use ingot_tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::errors::ApiError;
use crate::limits::{self, RequestLimits};
use crate::openai::chat::tools::{self, ToolChoice, ToolFormat, ToolPlan};
use crate::openai::common::{self, SamplingFields, StreamOptions, UsageInfo};
use crate::openai::logprobs::{ChatLogprobs, IdMap};

#[derive(Clone, Debug, Deserialize)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<usize>,
    /// OpenAI's newer name for `max_tokens`; wins when both are given.
    pub max_completion_tokens: Option<usize>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<usize>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    pub echo: Option<bool>,
    // vLLM's chat template controls.
    pub add_generation_prompt: Option<bool>,
    pub continue_final_message: Option<bool>,
    pub add_special_tokens: Option<bool>,
    pub chat_template_kwargs: Option<Map<String, Value>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: Option<MessageContent>,
    pub name: Option<String>,
    pub tool_calls: Option<Value>,
    pub tool_call_id: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Clone, Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

/// The messages as the chat template reads them (`{"role", "content"[, "name"]}`), checked.
pub fn template_messages(messages: &[ChatMessage]) -> Result<Vec<Value>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "at least one message is required",
        ));
    }
    if messages.len() > limits::MAX_MESSAGES {
        return Err(limits::too_many(
            "messages",
            messages.len(),
            limits::MAX_MESSAGES,
            "messages",
        ));
    }
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            "tool" => "tool",
            other => {
                return Err(ApiError::unsupported(
                    &format!("{param}.role"),
                    format!(
                        "role '{other}' is not supported (use system, user, assistant or tool)"
                    ),
                ));
            }
        };
        let tool_calls = m.tool_calls.as_ref().filter(|t| !t.is_null());
        if let Some(calls) = tool_calls
            && (role != "assistant" || !calls.is_array())
        {
            return Err(ApiError::invalid_param(
                &format!("{param}.tool_calls"),
                "tool_calls is a list, on assistant messages only",
            ));
        }
        let content = match &m.content {
            Some(MessageContent::Text(s)) => s.clone(),
            Some(MessageContent::Parts(parts)) => {
                if parts.len() > limits::MAX_CONTENT_PARTS {
                    return Err(limits::too_many(
                        &format!("{param}.content"),
                        parts.len(),
                        limits::MAX_CONTENT_PARTS,
                        "content parts",
                    ));
                }
                let mut texts = Vec::with_capacity(parts.len());
                for (j, p) in parts.iter().enumerate() {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => texts.push(t.as_str()),
                        ("text", None) => {
                            return Err(ApiError::invalid_param(
                                &format!("{param}.content[{j}].text"),
                                "a text part needs 'text'",
                            ));
                        }
                        (other, _) => {
                            return Err(ApiError::unsupported(
                                &format!("{param}.content[{j}].type"),
                                format!(
                                    "content parts of type '{other}' are not supported (only 'text')"
                                ),
                            ));
                        }
                    }
                }
                texts.join("\n")
            }
            None if role == "assistant" => String::new(),
            None => {
                return Err(ApiError::invalid_param(
                    &format!("{param}.content"),
                    "content is required",
                ));
            }
        };
        let mut v = json!({"role": role, "content": content});
        if let Some(name) = &m.name {
            v["name"] = json!(name);
        }
        if let Some(calls) = tool_calls {
            v["tool_calls"] = calls.clone();
        }
        if let Some(id) = &m.tool_call_id {
            v["tool_call_id"] = json!(id);
        }
        out.push(v);
    }
    Ok(out)
}

/// Renders `messages` through the model's chat template and tokenizes the text.
/// With `continue_final_message` the text ends inside the last (assistant) message, so the
/// model continues it instead of starting a new turn. With `tools`, a template that knows
/// tools gets them as its `tools` variable (and tool turns as they are); any other template
/// gets tool turns and instructions written out in the plan's format (`tools.rs`).
pub fn render_chat(
    tok: &Tokenizer,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    continue_final_message: bool,
    add_special_tokens: bool,
    kwargs: Option<&Map<String, Value>>,
    tool_plan: Option<&ToolPlan>,
) -> Result<Vec<u32>, ApiError> {
    if add_generation_prompt && continue_final_message {
        return Err(ApiError::invalid_param(
            "continue_final_message",
            "continue_final_message and add_generation_prompt cannot both be true",
        ));
    }
    let mut values = template_messages(messages)?;
    let template = tok.chat_template().ok_or_else(|| {
        ApiError::bad_request("this model has no chat template; use /v1/completions instead")
    })?;
    let mut vars = kwargs.cloned().unwrap_or_default();
    let has_tool_turns = values
        .iter()
        .any(|v| v["role"] == "tool" || v.get("tool_calls").is_some());
    if tool_plan.is_some() || has_tool_turns {
        let fallback;
        let plan = match tool_plan {
            Some(p) => p,
            None => {
                fallback = ToolPlan {
                    tools: Vec::new(),
                    choice: ToolChoice::None,
                    parallel: true,
                    format: ToolFormat::detect(Some(template.source())),
                };
                &fallback
            }
        };
        if tools::template_knows_tools(template.source()) {
            tools::normalize_calls(&mut values);
            vars = tools::template_vars(plan, Some(&vars));
        } else {
            values = tools::lower_messages(plan, values);
        }
    }
    let mut text = template
        .render_with(&values, add_generation_prompt, &vars)
        .map_err(|e| {
            ApiError::invalid_param("messages", format!("the chat template failed: {e}"))
        })?;
    if continue_final_message {
        let last = values
            .last()
            .and_then(|v| v["content"].as_str())
            .unwrap_or_default();
        match text.rfind(last) {
            Some(pos) if !last.is_empty() => text.truncate(pos + last.len()),
            _ => {
                return Err(ApiError::invalid_param(
                    "continue_final_message",
                    "the final message's content is empty or not in the rendered prompt",
                ));
            }
        }
    }
    tok.encode(&text, add_special_tokens).map_err(|e| {
        ApiError::invalid_param("messages", format!("tokenizing the prompt failed: {e}"))
    })
}

/// A validated chat request, ready for the engine.
#[derive(Clone, Debug)]
pub struct ChatPlan {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    pub stream: bool,
    pub stream_options: StreamOptions,
    /// Alternatives per token when logprobs were asked for.
    pub top_logprobs: Option<usize>,
    /// vLLM's `prompt_logprobs` was asked for: the response carries that field.
    pub prompt_logprobs: bool,
    pub priority: i32,
    /// The request's tools, when it has any.
    pub tools: Option<ToolPlan>,
}

impl ChatRequest {
    /// Bytes of message text (the rendered prompt is longer: the template adds its markup).
    fn text_bytes(&self) -> usize {
        let content = |c: &MessageContent| match c {
            MessageContent::Text(s) => s.len(),
            MessageContent::Parts(p) => p
                .iter()
                .map(|p| p.text.as_ref().map_or(0, String::len))
                .sum(),
        };
        self.messages
            .iter()
            .map(|m| m.content.as_ref().map_or(0, content))
            .fold(0, usize::saturating_add)
    }

    /// Checks the request, renders and tokenizes the prompt and builds the sampling
    /// parameters. Without a limit, the output may fill the model length.
    /// `tool_parser` overrides the tool-call format read from the chat template
    /// (`--tool-call-parser`).
    pub fn plan(
        &self,
        sampling: &SamplingFields,
        tok: &Tokenizer,
        max_model_len: usize,
        limits: &RequestLimits,
        tool_parser: Option<ToolFormat>,
    ) -> Result<ChatPlan, ApiError> {
        limits.check_sampling(sampling)?;
        limits.check_seqs(1, sampling.n.unwrap_or(1), "n")?;
        limits.check_text(self.text_bytes(), "messages")?;
        let format = tool_parser
            .unwrap_or_else(|| ToolFormat::detect(tok.chat_template().map(|t| t.source())));
        let tool_plan = tools::plan(
            self.tools.as_deref(),
            self.tool_choice.as_ref(),
            self.parallel_tool_calls,
            format,
        )?;
        if self.echo == Some(true) {
            return Err(ApiError::unsupported(
                "echo",
                "echo is not supported for chat completions",
            ));
        }
        let stream = self.stream.unwrap_or(false);
        let stream_options = common::stream_options(stream, self.stream_options)?;
        if stream && sampling.prompt_logprobs.is_some() {
            return Err(ApiError::unsupported(
                "prompt_logprobs",
                "prompt_logprobs cannot be streamed",
            ));
        }
        let top_logprobs = match (self.logprobs.unwrap_or(false), self.top_logprobs) {
            (true, top) => Some(top.unwrap_or(0)),
            (false, None | Some(0)) => None,
            (false, Some(_)) => {
                return Err(ApiError::invalid_param(
                    "top_logprobs",
                    "top_logprobs requires logprobs: true",
                ));
            }
        };
        let prompt = render_chat(
            tok,
            &self.messages,
            self.add_generation_prompt.unwrap_or(true),
            self.continue_final_message.unwrap_or(false),
            self.add_special_tokens.unwrap_or(false),
            self.chat_template_kwargs.as_ref(),
            tool_plan.as_ref(),
        )?;
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            Some(m) => m,
            None => max_model_len.saturating_sub(prompt.len()).max(1),
        };
        common::check_length(prompt.len(), max_tokens, max_model_len, "messages")?;
        let mut params = sampling.to_params(max_tokens, top_logprobs, tok.vocab_size())?;
        if let Some(p) = &tool_plan {
            if let Some(c) = p.constraint() {
                if params.structured.is_some() {
                    return Err(ApiError::invalid_param(
                        "tool_choice",
                        "a required or named tool choice cannot be combined with structured output",
                    ));
                }
                params.structured = Some(c);
            }
            if p.choice == ToolChoice::Auto && p.format != ToolFormat::Hermes {
                // Their call markers may be special tokens, which the parser must see.
                params.skip_special_tokens = false;
            }
        }
        Ok(ChatPlan {
            tools: tool_plan,
            prompt,
            params,
            stream,
            stream_options,
            top_logprobs,
            prompt_logprobs: sampling.prompt_logprobs.is_some(),
            priority: sampling.priority.unwrap_or(0),
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    /// Null when the message is only tool calls.
    pub content: Option<String>,
    pub refusal: Option<String>,
    pub tool_calls: Vec<Value>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChatChoice {
    pub index: usize,
    pub message: AssistantMessage,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: UsageInfo,
    pub system_fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_logprobs: Option<Vec<Option<IdMap>>>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChunkChoice {
    pub index: usize,
    pub delta: Delta,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChatChunk {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    /// Absent unless `stream_options.include_usage` (then null except in the last chunk) or
    /// `continuous_usage_stats`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tokenizer() -> Tokenizer {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tiny-llama");
        Tokenizer::from_hf_dir(&dir).expect("the tiny-llama tokenizer loads")
    }

    /// A request body as the handler receives it: the chat fields and the sampling fields.
    struct Body(ChatRequest, SamplingFields);

    impl Body {
        fn plan(&self, tok: &Tokenizer, max_model_len: usize) -> Result<ChatPlan, ApiError> {
            let limits = RequestLimits::new(8, Some(16), tok, max_model_len);
            self.0.plan(&self.1, tok, max_model_len, &limits, None)
        }
    }

    fn request(json: Value) -> Body {
        Body(
            serde_json::from_value(json.clone()).unwrap(),
            serde_json::from_value(json).unwrap(),
        )
    }

    #[test]
    fn messages_render_through_the_template() {
        let tok = tokenizer();
        let r = request(json!({"model": "m", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]}
        ], "max_tokens": 5, "temperature": 0}));
        let plan = r.plan(&tok, 2048).unwrap();
        let text = tok.decode(&plan.prompt, false).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi\nthere<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!((plan.params.max_tokens, plan.params.temperature), (5, 0.0));
        assert!(!plan.stream && plan.top_logprobs.is_none());
    }

    #[test]
    fn continue_final_message_stops_inside_the_last_turn() {
        let tok = tokenizer();
        let r = request(json!({"messages": [
            {"role": "user", "content": "Count"}, {"role": "assistant", "content": "1, 2,"}
        ], "add_generation_prompt": false, "continue_final_message": true, "max_tokens": 3}));
        let text = tok
            .decode(&r.plan(&tok, 2048).unwrap().prompt, false)
            .unwrap();
        assert!(text.ends_with("<|im_start|>assistant\n1, 2,"), "{text:?}");
    }

    #[test]
    fn default_max_tokens_fills_the_model_length() {
        let tok = tokenizer();
        let r = request(json!({"messages": [{"role": "user", "content": "Hi"}]}));
        let plan = r.plan(&tok, 100).unwrap();
        assert_eq!(plan.prompt.len() + plan.params.max_tokens, 100);
        let r = request(json!({"messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 5, "max_completion_tokens": 7}));
        assert_eq!(r.plan(&tok, 100).unwrap().params.max_tokens, 7);
    }

    #[test]
    fn logprob_options() {
        let tok = tokenizer();
        let msgs = json!([{"role": "user", "content": "Hi"}]);
        let plan = |extra: Value| {
            let mut v = json!({"messages": msgs, "max_tokens": 2});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            request(v).plan(&tok, 100)
        };
        let p = plan(json!({"logprobs": true, "top_logprobs": 3})).unwrap();
        assert_eq!((p.top_logprobs, p.params.logprobs), (Some(3), Some(3)));
        let p = plan(json!({"logprobs": true})).unwrap();
        assert_eq!(p.params.logprobs, Some(0));
        assert_eq!(
            plan(json!({"top_logprobs": 2}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("top_logprobs")
        );
        assert_eq!(
            plan(json!({"logprobs": true, "top_logprobs": 21}))
                .unwrap_err()
                .status
                .as_u16(),
            400
        );
        let p = plan(json!({"prompt_logprobs": 2})).unwrap();
        assert!(p.prompt_logprobs && p.params.prompt_logprobs == Some(2));
        assert!(plan(json!({"prompt_logprobs": 2, "stream": true})).is_err());
        let p = plan(json!({"stream": true, "stream_options": {"include_usage": true}})).unwrap();
        assert!(p.stream && p.stream_options.include_usage);
        assert!(plan(json!({"stream_options": {"include_usage": true}})).is_err());
    }

    #[test]
    fn unsupported_and_invalid_requests_are_400s_naming_the_field() {
        let tok = tokenizer();
        let cases = [
            (json!({"messages": []}), "messages"),
            (
                json!({"messages": [{"role": "function", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"messages": [{"role": "user"}]}),
                "messages[0].content",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}),
                "tools[0].function",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}}),
                "response_format",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1000}),
                "max_tokens",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "temperature": -0.5}),
                "temperature",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "n": 9}),
                "n",
            ),
            (
                json!({"messages": vec![json!({"role": "user", "content": "x"}); limits::MAX_MESSAGES + 1]}),
                "messages",
            ),
            (
                json!({"messages": [{"role": "user", "content": vec![json!({"type": "text", "text": "x"}); limits::MAX_CONTENT_PARTS + 1]}]}),
                "messages[0].content",
            ),
            (
                json!({"messages": [{"role": "user", "content": "word ".repeat(20_000)}]}),
                "messages",
            ),
            (
                json!({"messages": [{"role": "user", "content": "word ".repeat(150)}], "max_tokens": 1}),
                "messages",
            ),
        ];
        for (json, field) in cases {
            let e = request(json.clone()).plan(&tok, 100).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{json}");
            assert_eq!(e.param.as_deref(), Some(field), "{json}: {}", e.message);
        }
        let r = request(
            json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "text"},
            "tool_choice": "none", "max_tokens": 3}),
        );
        assert!(r.plan(&tok, 100).is_ok());
    }

    #[test]
    fn chunks_serialize_like_openai() {
        let chunk = ChatChunk {
            id: "chatcmpl-1".into(),
            object: "chat.completion.chunk",
            created: 5,
            model: "m".into(),
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                    tool_calls: None,
                },
                logprobs: None,
                finish_reason: None,
            }],
            usage: None,
        };
        let v = serde_json::to_value(&chunk).unwrap();
        assert_eq!(
            v,
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5, "model": "m",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                "logprobs": null, "finish_reason": null}]})
        );
    }
}
