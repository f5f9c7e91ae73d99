//! [`ChatTemplate`]: renders a conversation into the prompt text a chat model was trained on.
//!
//! Chat templates are Jinja2 programs written for transformers' `apply_chat_template`, so this is a
//! minijinja environment made to behave like the one transformers builds:
//! - `trim_blocks` and `lstrip_blocks` on, trailing newline of the template dropped (Jinja's default);
//! - Python's str/dict/list methods (`.strip()`, `.startswith()`, `.split()`, `.items()`, `.get()`, ...)
//!   through minijinja-contrib's `pycompat` callback;
//! - `raise_exception(msg)`, which fails the render with the template's own message
//!   ([`Error::TemplateRaised`]);
//! - `tojson` printing like Python's `json.dumps` (", " and ": " separators, non-ASCII kept, nothing
//!   HTML-escaped, `indent`, `ensure_ascii`, `separators`, `sort_keys`), see the `json` module;
//! - `strftime_now(fmt)` (UTC; see the `strftime` module);
//! - the variables `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, and `tools` and
//!   `documents` set to none unless given.
//!
//! Messages are OpenAI-style JSON objects. As transformers does, keys whose value is null are dropped.
//! A `content` given as a list of `{type: "text", text}` parts is joined with "\n" into a string, as
//! vLLM does, unless the template reads such lists itself (it loops over, or type-tests, a `content`),
//! in which case the list is passed as is. The template is parsed once, in [`ChatTemplate::new`].

mod json;
mod strftime;

use std::collections::BTreeMap;
use std::fmt;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, ErrorKind};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The name the template is stored under; it shows in error messages ("(in chat_template:3)").
const NAME: &str = "chat_template";

/// A parsed chat template, with the BOS/EOS strings it may reference.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
    /// Whether the template handles list-of-parts `content` itself (see the module header).
    reads_content_parts: bool,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("reads_content_parts", &self.reads_content_parts)
            .finish()
    }
}

impl ChatTemplate {
    /// Parses `source`. A syntax error is returned here, with its line.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::Template(describe(&e)))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", json::tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime::strftime_now);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| Error::Template(describe(&e)))?;
        Ok(ChatTemplate {
            env,
            source: source.to_owned(),
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
            reads_content_parts: reads_content_parts(source),
        })
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends with the header of an assistant turn.
    pub fn render(&self, messages: &[Value], add_generation_prompt: bool) -> Result<String> {
        self.render_with(messages, add_generation_prompt, &Map::new())
    }

    /// As [`render`](Self::render), with more template variables (e.g. `tools`, `enable_thinking`);
    /// they override the defaults of the same name.
    pub fn render_with(
        &self,
        messages: &[Value],
        add_generation_prompt: bool,
        extra: &Map<String, Value>,
    ) -> Result<String> {
        let messages = self.normalize(messages)?;
        let mut ctx: BTreeMap<String, minijinja::Value> = BTreeMap::new();
        ctx.insert("messages".into(), minijinja::Value::from(Serde(&messages)));
        ctx.insert("add_generation_prompt".into(), add_generation_prompt.into());
        ctx.insert("bos_token".into(), self.bos_token.clone().into());
        ctx.insert("eos_token".into(), self.eos_token.clone().into());
        ctx.insert("tools".into(), minijinja::Value::from(()));
        ctx.insert("documents".into(), minijinja::Value::from(()));
        for (key, value) in extra {
            ctx.insert(key.clone(), minijinja::Value::from(Serde(value)));
        }
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| Error::Template(describe(&e)))?;
        template.render(ctx).map_err(|e| match raised_message(&e) {
            Some(message) => Error::TemplateRaised(message),
            None => Error::Template(describe(&e)),
        })
    }

    /// Drops null-valued keys and joins text parts (see the module header).
    fn normalize(&self, messages: &[Value]) -> Result<Vec<Value>> {
        let mut out = Vec::with_capacity(messages.len());
        for (i, message) in messages.iter().enumerate() {
            let Value::Object(fields) = message else {
                return Err(Error::Template(format!(
                    "message {i} is not a JSON object: {message}"
                )));
            };
            let mut kept = Map::with_capacity(fields.len());
            for (key, value) in fields {
                match value {
                    Value::Null => {}
                    Value::Array(parts) if key == "content" && !self.reads_content_parts => {
                        kept.insert(key.clone(), Value::String(join_text_parts(i, parts)?));
                    }
                    _ => {
                        kept.insert(key.clone(), value.clone());
                    }
                }
            }
            out.push(Value::Object(kept));
        }
        Ok(out)
    }
}

fn join_text_parts(message: usize, parts: &[Value]) -> Result<String> {
    let mut texts = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let kind = part.get("type").and_then(Value::as_str);
        match (kind, part.get("text").and_then(Value::as_str)) {
            (Some("text"), Some(text)) => texts.push(text),
            (Some("text"), None) => {
                return Err(Error::Template(format!(
                    "message {message} content part {j} has no string \"text\""
                )));
            }
            _ => {
                return Err(Error::Template(format!(
                    "message {message} content part {j} is not a text part (type {}); only text is supported",
                    kind.map_or_else(|| "missing".to_owned(), |k| format!("{k:?}"))
                )));
            }
        }
    }
    Ok(texts.join("\n"))
}

/// Whether a template reads list-valued `content` itself: some `{% %}`/`{{ }}` tag loops over an
/// expression mentioning `content`, or type-tests one (`content is string`, `is not string`, ...).
/// A textual check in the spirit of vLLM's content-format detection (which walks the Jinja AST).
fn reads_content_parts(source: &str) -> bool {
    const TYPE_TESTS: [&str; 5] = [
        "is string",
        "is not string",
        "is sequence",
        "is iterable",
        "is mapping",
    ];
    let mut rest = source;
    loop {
        let start = match (rest.find("{%"), rest.find("{{")) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return false,
        };
        let close = if rest[start..].starts_with("{%") {
            "%}"
        } else {
            "}}"
        };
        let body_start = start + 2;
        let Some(len) = rest[body_start..].find(close) else {
            return false;
        };
        let tag = rest[body_start..body_start + len]
            .trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        if tag.contains("content") {
            let loops = tag
                .strip_prefix("for ")
                .and_then(|head| head.split_once(" in "))
                .is_some_and(|(_, iterable)| iterable.contains("content"));
            if loops || TYPE_TESTS.iter().any(|t| tag.contains(t)) {
                return true;
            }
        }
        rest = &rest[body_start + len + 2..];
    }
}

/// The error `raise_exception` fails with; found again in the error's source chain after rendering.
#[derive(Debug)]
struct Raised(String);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn raise_exception(message: String) -> std::result::Result<minijinja::Value, minijinja::Error> {
    Err(
        minijinja::Error::new(ErrorKind::InvalidOperation, message.clone())
            .with_source(Raised(message)),
    )
}

fn raised_message(e: &minijinja::Error) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(raised) = err.downcast_ref::<Raised>() {
            return Some(raised.0.clone());
        }
        current = err.source();
    }
    None
}

/// A minijinja error with its causes, on one line ("... (in chat_template:3): caused by ...").
fn describe(e: &minijinja::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(source: &str, messages: Value) -> Result<String> {
        let t = ChatTemplate::new(source, "<s>", "</s>")?;
        t.render(messages.as_array().unwrap(), false)
    }

    #[test]
    fn content_parts_detection() {
        assert!(!reads_content_parts(
            "{{ message['content'] }}{% for m in messages %}{{ m.content }}{% endfor %}"
        ));
        assert!(reads_content_parts(
            "{% for part in message['content'] %}{{ part.text }}{% endfor %}"
        ));
        assert!(reads_content_parts(
            "{%- if message.content is string -%}x{% endif %}"
        ));
        assert!(reads_content_parts(
            "{{ m.content if m.content is string else m.content[0].text }}"
        ));
        assert!(!reads_content_parts("{{ unclosed"));
    }

    #[test]
    fn text_parts_are_joined_for_string_templates() {
        let msgs = json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]);
        assert_eq!(
            render(
                "{% for m in messages %}{{ m.content + '!' }}{% endfor %}",
                msgs.clone()
            )
            .unwrap(),
            "a\nb!"
        );
        // A template that handles lists sees the list.
        let t =
            "{% for m in messages %}{% for p in m.content %}[{{ p.text }}]{% endfor %}{% endfor %}";
        assert_eq!(render(t, msgs).unwrap(), "[a][b]");
        let image = json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]);
        let err = render("{{ messages[0].content }}", image)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"image_url\"") && err.contains("only text"),
            "{err}"
        );
    }

    #[test]
    fn null_keys_are_dropped_and_bad_messages_rejected() {
        let out = render(
            "{% for m in messages %}{{ m.content is defined }} {{ m.get('tool_calls', 'none') }}{% endfor %}",
            json!([{"role": "assistant", "content": null, "tool_calls": null}]),
        )
        .unwrap();
        assert_eq!(out, "False none");
        let err = render("x", json!(["just a string"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("message 0 is not a JSON object"), "{err}");
    }

    #[test]
    fn errors_name_the_problem() {
        let err = ChatTemplate::new("{% for m in messages %}{{ m }", "", "")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("chat template:") && err.contains("chat_template:1"),
            "{err}"
        );
        let err = render("{{ raise_exception('no ' + 'way') }}", json!([])).unwrap_err();
        assert!(
            matches!(&err, Error::TemplateRaised(m) if m == "no way"),
            "{err}"
        );
        // Raised from inside a macro too.
        let src = "{% macro check(m) %}{{ raise_exception('bad role ' + m.role) }}{% endmacro %}{% for m in messages %}{{ check(m) }}{% endfor %}";
        let err = render(src, json!([{"role": "x"}])).unwrap_err();
        assert!(
            matches!(&err, Error::TemplateRaised(m) if m == "bad role x"),
            "{err}"
        );
        let err = render(
            "{{ messages[0].content.nosuchmethod() }}",
            json!([{"content": "a"}]),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Template(m) if m.contains("nosuchmethod") || m.contains("unknown method")),
            "{err}"
        );
    }

    #[test]
    fn extra_variables_override_defaults() {
        let t = ChatTemplate::new(
            "{{ bos_token }}{{ tools is none }}{{ enable_thinking }}",
            "<s>",
            "</s>",
        )
        .unwrap();
        assert_eq!(t.render(&[], false).unwrap(), "<s>True");
        let extra = json!({"tools": [{"name": "f"}], "enable_thinking": false});
        assert_eq!(
            t.render_with(&[], false, extra.as_object().unwrap())
                .unwrap(),
            "<s>FalseFalse"
        );
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<ChatTemplate>();
    }
}
