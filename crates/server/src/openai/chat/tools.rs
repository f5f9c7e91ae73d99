//! Tool calling for `/v1/chat/completions`: the request's `tools`, `tool_choice` and
//! `parallel_tool_calls` ([`ToolPlan`]), how tools and tool messages reach the prompt, the
//! constraint that forces a call, and the parsing of calls out of what the model wrote.
//!
//! Formats ([`ToolFormat`]): Hermes/Qwen (`<tool_call>\n{"name", "arguments"}\n</tool_call>`,
//! one block per call), Llama 3.x JSON (`{"name", "parameters"}`, optionally after
//! `<|python_tag|>`, several separated by `;`) and Mistral (`[TOOL_CALLS]` then a JSON list).
//! The format is read from the chat template's text (what markers it writes), or named by
//! `--tool-call-parser`; a template that says nothing of tools (ChatML, like the default
//! model's) gets Hermes, the usual format of ChatML models, and then Ingot writes the tool
//! list and the Hermes instructions into the system message itself, and renders tool
//! messages and earlier calls as Qwen's template does.
//!
//! `tool_choice`:
//! - `none`: tools are left out of the prompt; nothing is parsed.
//! - `auto` (the default with tools): the model chooses; its text is parsed for calls and
//!   whatever does not parse as a call stays content.
//! - `required`: the output is constrained (llguidance) to a JSON list of one or more
//!   `{"name", "arguments"}` objects, each `arguments` valid for its function's schema
//!   (one call only when `parallel_tool_calls` is false).
//! - a named function: the output is constrained to that function's arguments schema.
//!
//! A response with calls has `finish_reason: "tool_calls"`; call ids are `call-` and 32
//! random hex digits; a call's `arguments` is the JSON object as the model wrote it. Where
//! the calls are in the text, and how they stream, is `tool_scan.rs`.

use ingot_engine::api::StructuredOutput;
use serde_json::{Map, Value, json};

use super::tool_scan::finished_calls;
use crate::errors::ApiError;

/// How a model writes tool calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolFormat {
    /// `<tool_call>\n{"name": .., "arguments": {..}}\n</tool_call>` (Hermes 2 Pro, Qwen 2.5+).
    Hermes,
    /// `{"name": .., "parameters": {..}}`, maybe after `<|python_tag|>` (Llama 3.1+).
    Llama3Json,
    /// `[TOOL_CALLS] [{"name": .., "arguments": {..}}]` (Mistral).
    Mistral,
}

impl ToolFormat {
    /// The `--tool-call-parser` names, vLLM's spelling.
    pub const NAMES: [&'static str; 3] = ["hermes", "llama3_json", "mistral"];

    pub fn from_name(name: &str) -> Option<ToolFormat> {
        match name {
            "hermes" | "qwen" => Some(ToolFormat::Hermes),
            "llama3_json" | "llama" | "llama3" => Some(ToolFormat::Llama3Json),
            "mistral" => Some(ToolFormat::Mistral),
            _ => None,
        }
    }

    /// The format a chat template writes calls in, from its text; Hermes when it shows none.
    pub fn detect(template: Option<&str>) -> ToolFormat {
        let t = template.unwrap_or_default();
        if t.contains("[TOOL_CALLS]") {
            ToolFormat::Mistral
        } else if t.contains("<|python_tag|>") || (t.contains("<|eot_id|>") && t.contains("tools"))
        {
            ToolFormat::Llama3Json
        } else {
            ToolFormat::Hermes
        }
    }
}

/// What `tool_choice` asks.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Named(String),
}

/// One function the model may call.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: String,
    /// The OpenAI tool object as given, for the template's `tools` variable.
    pub spec: Value,
    /// JSON schema of the arguments (an empty object schema when not given).
    pub parameters: Value,
}

/// A parsed call.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text of the arguments.
    pub arguments: String,
}

impl ToolCall {
    /// The OpenAI `tool_calls` entry.
    pub fn to_json(&self) -> Value {
        json!({"id": self.id, "type": "function",
               "function": {"name": self.name, "arguments": self.arguments}})
    }
}

/// A request's tool settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolPlan {
    pub tools: Vec<Tool>,
    pub choice: ToolChoice,
    pub parallel: bool,
    pub format: ToolFormat,
}

/// Reads `tools`, `tool_choice` and `parallel_tool_calls`. None when the request has no
/// tools (then only `tool_choice` `none` or `auto` is allowed).
pub fn plan(
    tools: Option<&[Value]>,
    tool_choice: Option<&Value>,
    parallel: Option<bool>,
    format: ToolFormat,
) -> Result<Option<ToolPlan>, ApiError> {
    let tools = tools.unwrap_or_default();
    let choice = match tool_choice {
        None | Some(Value::Null) => {
            if tools.is_empty() {
                ToolChoice::None
            } else {
                ToolChoice::Auto
            }
        }
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(ApiError::invalid_param(
                    "tool_choice",
                    format!("'{other}' is not a tool choice (none, auto, required, or a function)"),
                ));
            }
        },
        Some(v @ Value::Object(_)) => {
            let name = v
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "tool_choice",
                        "a named tool choice is {\"type\": \"function\", \"function\": {\"name\": ..}}",
                    )
                })?;
            ToolChoice::Named(name.to_string())
        }
        Some(other) => {
            return Err(ApiError::invalid_param(
                "tool_choice",
                format!("must be a string or an object, got {other}"),
            ));
        }
    };
    if tools.is_empty() {
        return match choice {
            ToolChoice::None | ToolChoice::Auto => Ok(None),
            _ => Err(ApiError::invalid_param(
                "tool_choice",
                "tool_choice needs 'tools' to choose from",
            )),
        };
    }
    let mut parsed = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        let param = format!("tools[{i}]");
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(ApiError::unsupported(
                &format!("{param}.type"),
                "only tools of type 'function' are supported",
            ));
        }
        let f = t
            .get("function")
            .filter(|f| f.is_object())
            .ok_or_else(|| ApiError::invalid_param(&format!("{param}.function"), "is required"))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::invalid_param(&format!("{param}.function.name"), "is required")
            })?;
        if parsed.iter().any(|p: &Tool| p.name == name) {
            return Err(ApiError::invalid_param(
                &format!("{param}.function.name"),
                format!("two tools are named '{name}'"),
            ));
        }
        let parameters = match f.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                return Err(ApiError::invalid_param(
                    &format!("{param}.function.parameters"),
                    "must be a JSON schema object",
                ));
            }
        };
        parsed.push(Tool {
            name: name.to_string(),
            spec: t.clone(),
            parameters,
        });
    }
    if let ToolChoice::Named(name) = &choice
        && !parsed.iter().any(|t| &t.name == name)
    {
        return Err(ApiError::invalid_param(
            "tool_choice",
            format!("no tool is named '{name}'"),
        ));
    }
    Ok(Some(ToolPlan {
        tools: parsed,
        choice,
        parallel: parallel.unwrap_or(true),
        format,
    }))
}

impl ToolPlan {
    /// Whether the prompt shows the tools and the output is read for calls.
    pub fn active(&self) -> bool {
        self.choice != ToolChoice::None
    }

    /// The constraint that forces a call (`required`, a named function); None for `auto`.
    pub fn constraint(&self) -> Option<StructuredOutput> {
        let schema = match &self.choice {
            ToolChoice::None | ToolChoice::Auto => return None,
            ToolChoice::Named(name) => self
                .tools
                .iter()
                .find(|t| &t.name == name)?
                .parameters
                .clone(),
            ToolChoice::Required => {
                let calls: Vec<Value> = self
                    .tools
                    .iter()
                    .map(|t| {
                        json!({"type": "object",
                               "properties": {"name": {"const": t.name}, "arguments": t.parameters},
                               "required": ["name", "arguments"],
                               "additionalProperties": false})
                    })
                    .collect();
                let mut list = json!({"type": "array", "minItems": 1, "items": {"anyOf": calls}});
                if !self.parallel {
                    list["maxItems"] = json!(1);
                }
                list
            }
        };
        Some(StructuredOutput::JsonSchema(schema.to_string()))
    }

    /// The calls of a finished output and the content left around them (all of it
    /// content when it holds no valid call). Reading is `tool_scan.rs`'s, shared with
    /// streaming.
    pub fn parse(&self, text: &str) -> (Option<String>, Vec<ToolCall>) {
        if self.choice == ToolChoice::None {
            return (Some(text.to_string()), Vec::new());
        }
        finished_calls(self, text).unwrap_or_else(|| (Some(text.to_string()), Vec::new()))
    }

    /// The template variables for the prompt: `tools` for templates that read it.
    pub fn template_tools(&self) -> Value {
        Value::Array(self.tools.iter().map(|t| t.spec.clone()).collect())
    }

    /// The system-message text that describes the tools, for templates that do not
    /// mention tools themselves.
    pub fn instructions(&self) -> String {
        let list: Vec<String> = self
            .tools
            .iter()
            .map(|t| serde_json::to_string(&t.spec).unwrap_or_default())
            .collect();
        match self.format {
            ToolFormat::Hermes => format!(
                "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
                 You are provided with function signatures within <tools></tools> XML tags:\n\
                 <tools>\n{}\n</tools>\n\nFor each function call, return a json object with \
                 function name and arguments within <tool_call></tool_call> XML tags:\n\
                 <tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n\
                 </tool_call>",
                list.join("\n")
            ),
            ToolFormat::Llama3Json => format!(
                "You have access to the following functions. To call a function, respond with \
                 JSON of the form {{\"name\": function name, \"parameters\": dictionary of \
                 argument name and its value}}. Do not use variables.\n\n{}",
                list.join("\n\n")
            ),
            ToolFormat::Mistral => format!(
                "[AVAILABLE_TOOLS] [{}][/AVAILABLE_TOOLS]\nTo call tools, answer [TOOL_CALLS] \
                 followed by a JSON list of {{\"name\", \"arguments\"}} objects.",
                list.join(", ")
            ),
        }
    }

    /// An earlier assistant turn's calls as this format writes them (for templates that do
    /// not render `tool_calls` themselves).
    pub fn render_calls(&self, calls: &[(String, Value)]) -> String {
        match self.format {
            ToolFormat::Hermes => calls
                .iter()
                .map(|(name, args)| {
                    format!(
                        "<tool_call>\n{}\n</tool_call>",
                        json!({"name": name, "arguments": args})
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            ToolFormat::Llama3Json => calls
                .iter()
                .map(|(name, args)| json!({"name": name, "parameters": args}).to_string())
                .collect::<Vec<_>>()
                .join("; "),
            ToolFormat::Mistral => {
                let list: Vec<Value> = calls
                    .iter()
                    .map(|(name, args)| json!({"name": name, "arguments": args}))
                    .collect();
                format!("[TOOL_CALLS] {}", Value::Array(list))
            }
        }
    }

    /// A tool result as this format feeds it back (for templates without a `tool` role).
    pub fn render_result(&self, content: &str) -> (&'static str, String) {
        match self.format {
            ToolFormat::Hermes => (
                "user",
                format!("<tool_response>\n{content}\n</tool_response>"),
            ),
            ToolFormat::Llama3Json => ("ipython", content.to_string()),
            ToolFormat::Mistral => ("user", format!("[TOOL_RESULTS] {content}[/TOOL_RESULTS]")),
        }
    }
}

/// Whether a chat template renders tools, tool messages and assistant `tool_calls` itself.
pub fn template_knows_tools(template: &str) -> bool {
    template.contains("tool_calls") || template.contains("tools")
}

/// The messages as the template should see them when it does not know tools: assistant
/// `tool_calls` written into the content in `plan`'s format, `tool` messages as that format
/// returns results, and the tool instructions in the system message.
pub fn lower_messages(plan: &ToolPlan, messages: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(messages.len() + 1);
    for mut m in messages {
        let role = m["role"].as_str().unwrap_or_default().to_string();
        if role == "tool" {
            let (r, content) = plan.render_result(m["content"].as_str().unwrap_or_default());
            out.push(json!({"role": r, "content": content}));
            continue;
        }
        if let Some(Value::Array(calls)) = m.as_object_mut().and_then(|o| o.remove("tool_calls")) {
            let calls: Vec<(String, Value)> = calls.iter().filter_map(call_of_message).collect();
            let text = m["content"].as_str().unwrap_or_default().to_string();
            let rendered = plan.render_calls(&calls);
            m["content"] = json!(if text.is_empty() {
                rendered
            } else {
                format!("{text}\n{rendered}")
            });
        }
        out.push(m);
    }
    if plan.active() {
        let text = plan.instructions();
        match out.first_mut() {
            Some(first) if first["role"] == "system" => {
                let sys = first["content"].as_str().unwrap_or_default().to_string();
                first["content"] = json!(if sys.is_empty() {
                    text
                } else {
                    format!("{sys}\n\n{text}")
                });
            }
            _ => out.insert(0, json!({"role": "system", "content": text})),
        }
    }
    out
}

/// For templates that render `tool_calls` themselves: arguments given as JSON text become
/// objects, as Hugging Face templates expect.
pub fn normalize_calls(messages: &mut [Value]) {
    for m in messages {
        let Some(Value::Array(calls)) = m.get_mut("tool_calls") else {
            continue;
        };
        for c in calls {
            if let Some(args) = c.pointer_mut("/function/arguments")
                && let Some(s) = args.as_str()
                && let Ok(v) = serde_json::from_str::<Value>(s)
            {
                *args = v;
            }
        }
    }
}

/// `(name, arguments)` of an assistant message's `tool_calls` entry.
fn call_of_message(c: &Value) -> Option<(String, Value)> {
    let f = c.get("function")?;
    let name = f.get("name")?.as_str()?.to_string();
    let args = match f.get("arguments") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        Some(v) => v.clone(),
        None => json!({}),
    };
    Some((name, args))
}

/// The extra template variables of a request with tools.
pub fn template_vars(plan: &ToolPlan, extra: Option<&Map<String, Value>>) -> Map<String, Value> {
    let mut vars = extra.cloned().unwrap_or_default();
    if plan.active() {
        vars.insert("tools".into(), plan.template_tools());
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Vec<Value> {
        vec![
            json!({"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}}),
        ]
    }

    fn plan_of(choice: Value, format: ToolFormat) -> ToolPlan {
        plan(Some(weather().as_slice()), Some(&choice), None, format)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn formats_are_detected_from_the_template() {
        assert_eq!(ToolFormat::detect(None), ToolFormat::Hermes);
        assert_eq!(
            ToolFormat::detect(Some("{{ '<tool_call>' }}")),
            ToolFormat::Hermes
        );
        assert_eq!(
            ToolFormat::detect(Some("{{ '[TOOL_CALLS]' }}")),
            ToolFormat::Mistral
        );
        assert_eq!(
            ToolFormat::detect(Some("<|python_tag|>")),
            ToolFormat::Llama3Json
        );
    }

    #[test]
    fn hermes_calls_parse_with_content_around() {
        let p = plan_of(json!("auto"), ToolFormat::Hermes);
        let (content, calls) = p.parse(
            "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>",
        );
        assert_eq!(content.as_deref(), Some("Let me look."));
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].arguments, "{\"city\": \"Oslo\"}");
        assert!(calls[0].id.starts_with("call-") && calls[0].id != calls[1].id);
        let (content, calls) = p.parse("No tools needed.");
        assert_eq!(
            (content.as_deref(), calls.len()),
            (Some("No tools needed."), 0)
        );
        // A malformed call stays content.
        let (content, calls) = p.parse("<tool_call>{not json</tool_call>");
        assert_eq!(
            (content.as_deref(), calls.len()),
            (Some("<tool_call>{not json</tool_call>"), 0)
        );
    }

    #[test]
    fn llama_and_mistral_calls_parse() {
        let p = plan_of(json!("auto"), ToolFormat::Llama3Json);
        let (c, calls) = p.parse(
            "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}",
        );
        assert_eq!((c, calls[0].name.as_str()), (None, "get_weather"));
        let p = plan_of(json!("auto"), ToolFormat::Mistral);
        let (_, calls) = p.parse(
            "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]",
        );
        assert_eq!(calls[0].arguments, "{\"city\": \"Rome\"}");
    }

    #[test]
    fn forced_choices_constrain_and_parse_json() {
        let named = plan_of(
            json!({"type": "function", "function": {"name": "get_weather"}}),
            ToolFormat::Hermes,
        );
        assert!(
            matches!(named.constraint(), Some(StructuredOutput::JsonSchema(s)) if s.contains("city"))
        );
        let (_, calls) = named.parse("{\"city\": \"Lima\"}");
        assert_eq!(calls[0].name, "get_weather");
        let required = plan(
            Some(weather().as_slice()),
            Some(&json!("required")),
            Some(false),
            ToolFormat::Hermes,
        )
        .unwrap()
        .unwrap();
        let Some(StructuredOutput::JsonSchema(s)) = required.constraint() else {
            panic!()
        };
        let schema: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            (schema["minItems"].as_u64(), schema["maxItems"].as_u64()),
            (Some(1), Some(1))
        );
        let (_, calls) =
            required.parse("[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\"}}]");
        assert_eq!(calls.len(), 1);
    }

    #[test]
    fn bad_tool_requests_are_400s() {
        for (tools, choice, param) in [
            (weather(), json!("sometimes"), "tool_choice"),
            (
                weather(),
                json!({"type": "function", "function": {"name": "nope"}}),
                "tool_choice",
            ),
            (
                vec![json!({"type": "code_interpreter"})],
                json!("auto"),
                "tools[0].type",
            ),
            (
                vec![json!({"type": "function", "function": {}})],
                json!("auto"),
                "tools[0].function.name",
            ),
            (vec![], json!("required"), "tool_choice"),
        ] {
            let e = plan(
                Some(tools.as_slice()),
                Some(&choice),
                None,
                ToolFormat::Hermes,
            )
            .unwrap_err();
            assert_eq!(e.to_json()["error"]["param"], param);
        }
    }

    #[test]
    fn tool_turns_lower_into_plain_messages() {
        let p = plan_of(json!("auto"), ToolFormat::Hermes);
        let msgs = vec![
            json!({"role": "user", "content": "Weather in Paris?"}),
            json!({"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}),
            json!({"role": "tool", "tool_call_id": "call_1", "content": "18C"}),
        ];
        let out = lower_messages(&p, msgs);
        assert_eq!(out[0]["role"], "system");
        assert!(out[0]["content"].as_str().unwrap().contains("<tools>"));
        assert_eq!(
            out[2]["content"],
            "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n</tool_call>"
        );
        assert_eq!(
            out[3],
            json!({"role": "user", "content": "<tool_response>\n18C\n</tool_response>"})
        );
    }
}
