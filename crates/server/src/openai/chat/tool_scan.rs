//! Reading tool calls out of a choice's text as far as it goes: [`scan`] finds the content
//! before the calls and each call's name and arguments, complete or not, so the same
//! reading serves the finished response (`ToolPlan::parse`) and the stream
//! ([`ToolStream`]), whose argument fragments are therefore pieces of exactly the final
//! arguments text.
//!
//! A call's `arguments` is the JSON object the model wrote, as it wrote it (the raw text of
//! the value; with the constrained forms that is `, ` / `: ` separated JSON); arguments
//! written as a JSON string holding JSON text are that text. Streaming sends a call's first
//! delta (`index`, `id`, `type`, `function.name`, `arguments: ""`) once its name is known
//! and its arguments have begun, then the arguments' new text with each output; arguments
//! given as a string go out whole when complete. Each scan re-reads the choice's text
//! from the start: a few kilobytes per output, cheaper than keeping a resumable parser.
//!
//! Where the calls are, per format and `tool_choice`:
//! - a named function: the whole output is the arguments object;
//! - `required`, and Mistral after `[TOOL_CALLS]`: a JSON list of `{"name", "arguments"}`;
//! - Hermes: `{"name", "arguments"}` inside each `<tool_call>` .. `</tool_call>`, text
//!   before the first block being content;
//! - Llama 3 JSON: output that begins (after optional `<|python_tag|>`) with `{`: objects
//!   with `name` and `parameters` (or `arguments`), separated by `;`.

use serde_json::{Value, json};

use super::tools::{ToolCall, ToolChoice, ToolFormat, ToolPlan};
use crate::state::response_id;

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const MISTRAL_MARKER: &str = "[TOOL_CALLS]";
const PYTHON_TAG: &str = "<|python_tag|>";

/// A call's arguments as far as the text shows them.
#[derive(Clone, Debug, PartialEq)]
pub enum Args<'a> {
    /// An object value: its raw text so far (from `{`), and whether it is complete.
    Object(&'a str, bool),
    /// A JSON string holding the arguments' JSON text; `None` until the string ends.
    Text(Option<String>),
    /// Anything else: not a call.
    Invalid,
}

/// One call as far as the text shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Partial<'a> {
    pub name: Option<String>,
    pub args: Option<Args<'a>>,
    /// The call's object (or block) is closed.
    pub complete: bool,
}

impl Partial<'_> {
    /// The arguments text known so far, if it may be sent: all of an object's text read
    /// so far (the name must be known); a string's text once complete.
    fn sendable(&self) -> Option<&str> {
        self.name.as_ref()?;
        match self.args.as_ref() {
            Some(Args::Object(raw, _)) => Some(raw),
            Some(Args::Text(Some(t))) => Some(t),
            // A finished call that has no arguments has an empty object.
            None if self.complete => Some("{}"),
            _ => None,
        }
    }

    /// The finished call, if it is a valid one.
    fn finish(&self) -> Option<(String, String)> {
        let name = self.name.clone()?;
        let args = match self.args.as_ref() {
            // A call without arguments has an empty object.
            None if self.complete => "{}".to_string(),
            Some(Args::Object(raw, true)) => raw.to_string(),
            Some(Args::Text(Some(t))) => t.clone(),
            _ => return None,
        };
        serde_json::from_str::<Value>(&args)
            .ok()
            .filter(Value::is_object)?;
        Some((name, args))
    }
}

/// What [`scan`] found in a choice's text.
#[derive(Clone, Debug, PartialEq)]
pub struct Scan<'a> {
    /// Text that is surely content (before any call, and no part of a marker).
    pub content: &'a str,
    pub calls: Vec<Partial<'a>>,
    /// Text around and after the calls that is no call (between Hermes blocks, after the
    /// list): content if the calls are valid.
    pub trailing: String,
    /// The text after `content` cannot be read as calls (malformed so far).
    pub malformed: bool,
}

/// Reads `text` (a choice's output so far; `done` when it is all of it) for `plan`'s calls.
pub fn scan<'a>(plan: &ToolPlan, text: &'a str, done: bool) -> Scan<'a> {
    let mut s = Scan {
        content: "",
        calls: Vec::new(),
        trailing: String::new(),
        malformed: false,
    };
    match (&plan.choice, plan.format) {
        (ToolChoice::None, _) => s.content = text,
        (ToolChoice::Named(name), _) => {
            let mut r = Reader::new(text, 0);
            r.ws();
            if r.at_end() {
                return s;
            }
            match r.value() {
                Step::Done(start, end) if text.as_bytes()[start] == b'{' => {
                    s.calls.push(Partial {
                        name: Some(name.clone()),
                        args: Some(Args::Object(&text[start..end], true)),
                        complete: true,
                    });
                    r.ws();
                    s.malformed = !r.at_end();
                }
                Step::More(start) if text.as_bytes()[start] == b'{' => s.calls.push(Partial {
                    name: Some(name.clone()),
                    args: Some(Args::Object(&text[start..], false)),
                    complete: false,
                }),
                _ => s.malformed = true,
            }
        }
        (ToolChoice::Required, _) => list(text, 0, &mut s),
        (ToolChoice::Auto, ToolFormat::Mistral) => match text.find(MISTRAL_MARKER) {
            Some(at) => {
                s.content = &text[..at];
                list(text, at + MISTRAL_MARKER.len(), &mut s);
            }
            None => s.content = &text[..held(text, MISTRAL_MARKER, done)],
        },
        (ToolChoice::Auto, ToolFormat::Hermes) => match text.find(HERMES_OPEN) {
            Some(at) => {
                s.content = &text[..at];
                hermes(text, at, &mut s);
            }
            None => s.content = &text[..held(text, HERMES_OPEN, done)],
        },
        (ToolChoice::Auto, ToolFormat::Llama3Json) => {
            let t = text.trim_start();
            let lead = text.len() - t.len();
            let body = if let Some(rest) = t.strip_prefix(PYTHON_TAG) {
                Some(lead + PYTHON_TAG.len() + (rest.len() - rest.trim_start().len()))
            } else if t.starts_with('{') {
                Some(lead)
            } else {
                None
            };
            match body {
                Some(at) => llama(text, at, &mut s),
                // Nothing yet, or a prefix of the tag: wait.
                None if !done && (t.is_empty() || PYTHON_TAG.starts_with(t)) => {}
                None => s.content = text,
            }
        }
    }
    s
}

/// How much of `text` may go out as content while `marker` is absent: all but a tail that
/// may be its beginning (all of it once the text is done).
fn held(text: &str, marker: &str, done: bool) -> usize {
    if done {
        return text.len();
    }
    for k in (1..marker.len()).rev() {
        if text.len() >= k
            && text.is_char_boundary(text.len() - k)
            && marker.starts_with(&text[text.len() - k..])
        {
            return text.len() - k;
        }
    }
    text.len()
}

/// A JSON list of call objects from byte `at`.
fn list<'a>(text: &'a str, at: usize, s: &mut Scan<'a>) {
    let mut r = Reader::new(text, at);
    r.ws();
    if r.at_end() {
        return;
    }
    if !r.eat(b'[') {
        s.malformed = true;
        return;
    }
    loop {
        r.ws();
        if r.at_end() {
            return;
        }
        if r.eat(b']') {
            s.malformed = true; // an empty list, or a trailing comma
            return;
        }
        let Some(call) = object_call(&mut r, s) else {
            return;
        };
        s.calls.push(call);
        r.ws();
        if r.at_end() {
            return;
        }
        if r.eat(b']') {
            s.trailing.push_str(text[r.i..].trim());
            return;
        }
        if !r.eat(b',') {
            s.malformed = true;
            return;
        }
    }
}

/// Hermes blocks from byte `at` (the first `<tool_call>`).
fn hermes<'a>(text: &'a str, at: usize, s: &mut Scan<'a>) {
    let mut i = at;
    while let Some(k) = text[i..].find(HERMES_OPEN) {
        s.trailing.push_str(text[i..i + k].trim());
        let mut r = Reader::new(text, i + k + HERMES_OPEN.len());
        r.ws();
        if r.at_end() {
            return;
        }
        let Some(call) = object_call(&mut r, s) else {
            return;
        };
        if !call.complete {
            s.calls.push(call); // the text ends inside the object
            return;
        }
        r.ws();
        let rest = &text[r.i..];
        if rest.starts_with(HERMES_CLOSE) {
            s.calls.push(call);
            i = r.i + HERMES_CLOSE.len();
        } else if HERMES_CLOSE.starts_with(rest) {
            // The close tag is still coming (or never came: a call the model ended early
            // still counts, as it did before streaming).
            s.calls.push(call);
            return;
        } else {
            s.malformed = true;
            return;
        }
    }
    let rest = &text[i..];
    s.trailing
        .push_str(rest[..held(rest, HERMES_OPEN, false)].trim());
}

/// Llama 3 JSON calls from byte `at` (the first `{`), separated by `;`.
fn llama<'a>(text: &'a str, at: usize, s: &mut Scan<'a>) {
    let mut r = Reader::new(text, at);
    loop {
        r.ws();
        if r.at_end() {
            return;
        }
        let Some(call) = object_call(&mut r, s) else {
            return;
        };
        s.calls.push(call);
        r.ws();
        if r.at_end() {
            return;
        }
        if !r.eat(b';') {
            s.malformed = true;
            return;
        }
    }
}

/// One `{"name": .., "arguments" | "parameters": ..}` object at the reader: the call as far
/// as it goes (`None` if malformed or not even begun; `s.malformed` says which).
fn object_call<'a>(r: &mut Reader<'a>, s: &mut Scan<'a>) -> Option<Partial<'a>> {
    let text = r.text;
    let mut call = Partial {
        name: None,
        args: None,
        complete: false,
    };
    if !r.eat(b'{') {
        s.malformed = true;
        return None;
    }
    let mut members = 0;
    loop {
        r.ws();
        if r.at_end() {
            return Some(call);
        }
        if r.eat(b'}') {
            call.complete = true;
            return Some(call);
        }
        if members > 0 {
            if !r.eat(b',') {
                s.malformed = true;
                return None;
            }
            r.ws();
            if r.at_end() {
                return Some(call);
            }
        }
        let key = match r.value() {
            Step::Done(a, b) if text.as_bytes()[a] == b'"' => {
                match serde_json::from_str::<String>(&text[a..b]) {
                    Ok(k) => k,
                    Err(_) => {
                        s.malformed = true;
                        return None;
                    }
                }
            }
            Step::More(a) if text.as_bytes()[a] == b'"' => return Some(call),
            _ => {
                s.malformed = true;
                return None;
            }
        };
        r.ws();
        if r.at_end() {
            return Some(call);
        }
        if !r.eat(b':') {
            s.malformed = true;
            return None;
        }
        r.ws();
        if r.at_end() {
            return Some(call);
        }
        let is_args = key == "arguments" || key == "parameters";
        match r.value() {
            Step::Done(a, b) => {
                let v = &text[a..b];
                if key == "name" {
                    call.name = serde_json::from_str::<String>(v).ok();
                    if call.name.is_none() {
                        s.malformed = true;
                        return None;
                    }
                } else if is_args {
                    call.args = Some(args_of(v, true));
                }
                members += 1;
            }
            Step::More(a) => {
                if is_args {
                    call.args = Some(args_of(&text[a..], false));
                }
                return Some(call);
            }
            Step::Bad => {
                s.malformed = true;
                return None;
            }
        }
    }
}

fn args_of(raw: &str, done: bool) -> Args<'_> {
    match raw.as_bytes().first() {
        Some(b'{') => Args::Object(raw, done),
        Some(b'"') if done => match serde_json::from_str::<String>(raw) {
            Ok(t) => Args::Text(Some(t)),
            Err(_) => Args::Invalid,
        },
        Some(b'"') => Args::Text(None),
        _ => Args::Invalid,
    }
}

/// How a JSON value at the reader ends.
enum Step {
    /// Complete: its byte range.
    Done(usize, usize),
    /// Begun at this byte, not finished by the end of the text.
    More(usize),
    /// Not JSON.
    Bad,
}

/// A cursor over the text for the scans above (bytes; JSON's structure is ASCII).
struct Reader<'a> {
    text: &'a str,
    i: usize,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str, i: usize) -> Self {
        Self { text, i }
    }

    fn at_end(&self) -> bool {
        self.i >= self.text.len()
    }

    fn ws(&mut self) {
        let b = self.text.as_bytes();
        while self.i < b.len() && matches!(b[self.i], b' ' | b'\n' | b'\r' | b'\t') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.text.as_bytes().get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Skips one JSON value: strings with escapes, nested objects and lists (checked only
    /// for balance; `serde_json` validates finished calls), scalars up to a delimiter.
    fn value(&mut self) -> Step {
        let b = self.text.as_bytes();
        let start = self.i;
        let Some(&first) = b.get(start) else {
            return Step::More(start);
        };
        match first {
            b'"' => {
                let mut j = start + 1;
                while j < b.len() {
                    match b[j] {
                        b'\\' => j += 2,
                        b'"' => {
                            self.i = j + 1;
                            return Step::Done(start, j + 1);
                        }
                        _ => j += 1,
                    }
                }
                self.i = b.len();
                Step::More(start)
            }
            b'{' | b'[' => {
                let mut stack = vec![first];
                let mut j = start + 1;
                let mut in_str = false;
                while j < b.len() {
                    let c = b[j];
                    if in_str {
                        match c {
                            b'\\' => j += 1,
                            b'"' => in_str = false,
                            _ => {}
                        }
                    } else {
                        match c {
                            b'"' => in_str = true,
                            b'{' | b'[' => stack.push(c),
                            b'}' | b']' => {
                                let open = if c == b'}' { b'{' } else { b'[' };
                                if stack.pop() != Some(open) {
                                    return Step::Bad;
                                }
                                if stack.is_empty() {
                                    self.i = j + 1;
                                    return Step::Done(start, j + 1);
                                }
                            }
                            _ => {}
                        }
                    }
                    j += 1;
                }
                self.i = b.len();
                Step::More(start)
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                let mut j = start;
                while j < b.len()
                    && !matches!(
                        b[j],
                        b',' | b'}' | b']' | b';' | b' ' | b'\n' | b'\r' | b'\t'
                    )
                {
                    j += 1;
                }
                self.i = j;
                if j == b.len() {
                    Step::More(start)
                } else {
                    Step::Done(start, j)
                }
            }
            _ => Step::Bad,
        }
    }
}

/// The calls of a finished choice and the content left around them, or `None` when the
/// text holds no valid call (then all of it is content).
pub fn finished_calls(plan: &ToolPlan, text: &str) -> Option<(Option<String>, Vec<ToolCall>)> {
    let s = scan(plan, text, true);
    if s.malformed || s.calls.is_empty() || s.calls.iter().any(|c| !c.complete) {
        return None;
    }
    let calls: Option<Vec<ToolCall>> = s
        .calls
        .iter()
        .map(|c| {
            let (name, arguments) = c.finish()?;
            Some(ToolCall {
                id: response_id("call"),
                name,
                arguments,
            })
        })
        .collect();
    let calls = calls?;
    let content = format!("{}{}", s.content, s.trailing);
    let content = Some(content.trim().to_string()).filter(|c| !c.is_empty());
    Some((content, calls))
}

/// One piece of a streamed choice with tools.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    Content(String),
    /// A `tool_calls` delta entry.
    Call(Value),
}

/// The streaming state of one choice with tools: what has gone out so far.
#[derive(Clone, Debug, Default)]
pub struct ToolStream {
    /// Bytes of the text sent as content.
    content_sent: usize,
    /// Per call begun: its id and the bytes of its arguments sent.
    calls: Vec<(String, usize)>,
}

impl ToolStream {
    /// Whether any call has gone out (so the choice ends with `tool_calls`).
    pub fn has_calls(&self) -> bool {
        !self.calls.is_empty()
    }

    /// The pieces to send now that the choice's text is `text` (`done`: it is complete).
    pub fn advance(&mut self, plan: &ToolPlan, text: &str, done: bool) -> Vec<Piece> {
        let s = scan(plan, text, done);
        let mut out = Vec::new();
        if s.calls.is_empty() && (s.malformed || done) {
            // No call: everything not yet sent is content.
            if self.calls.is_empty() && text.len() > self.content_sent {
                out.push(Piece::Content(text[self.content_sent..].to_string()));
                self.content_sent = text.len();
            }
            return out;
        }
        if s.content.len() > self.content_sent && self.calls.is_empty() {
            out.push(Piece::Content(s.content[self.content_sent..].to_string()));
            self.content_sent = s.content.len();
        }
        for (index, call) in s.calls.iter().enumerate() {
            let Some(args) = call.sendable() else {
                break; // later calls wait for this one's name
            };
            if index == self.calls.len() {
                let id = response_id("call");
                let name = call.name.clone().unwrap_or_default();
                out.push(Piece::Call(
                    json!({"index": index, "id": id, "type": "function",
                    "function": {"name": name, "arguments": ""}}),
                ));
                self.calls.push((id, 0));
            }
            let sent = &mut self.calls[index].1;
            if args.len() > *sent {
                out.push(Piece::Call(json!({"index": index,
                    "function": {"arguments": &args[*sent..]}})));
                *sent = args.len();
            }
        }
        if done && !self.calls.is_empty() && !s.malformed {
            let trailing = s.trailing.trim();
            if !trailing.is_empty() {
                out.push(Piece::Content(trailing.to_string()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::chat::tools::plan;

    fn tools() -> Vec<Value> {
        ["get_weather", "get_time"]
            .iter()
            .map(|n| {
                json!({"type": "function", "function": {"name": n,
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})
            })
            .collect()
    }

    fn plan_of(choice: Value, format: ToolFormat) -> ToolPlan {
        plan(Some(tools().as_slice()), Some(&choice), None, format)
            .unwrap()
            .unwrap()
    }

    /// Streams `text` in pieces of `step` bytes (on char boundaries); returns the content,
    /// each call's (index, id, name, concatenated arguments) and how many argument deltas
    /// each call got.
    fn stream(
        p: &ToolPlan,
        text: &str,
        step: usize,
    ) -> (String, Vec<(String, String)>, Vec<usize>) {
        let mut st = ToolStream::default();
        let mut content = String::new();
        let mut calls: Vec<(String, String)> = Vec::new();
        let mut deltas: Vec<usize> = Vec::new();
        let mut end = 0;
        loop {
            end = (end + step).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            let done = end == text.len();
            for piece in st.advance(p, &text[..end], done) {
                match piece {
                    Piece::Content(c) => content.push_str(&c),
                    Piece::Call(v) => {
                        let i = v["index"].as_u64().unwrap() as usize;
                        if let Some(name) = v.pointer("/function/name") {
                            assert_eq!(i, calls.len(), "calls begin in order");
                            assert_eq!(v["function"]["arguments"], "");
                            assert!(v["id"].as_str().unwrap().starts_with("call-"));
                            calls.push((name.as_str().unwrap().to_string(), String::new()));
                            deltas.push(0);
                        } else {
                            assert!(v.get("id").is_none() && v.pointer("/function/name").is_none());
                            calls[i]
                                .1
                                .push_str(v["function"]["arguments"].as_str().unwrap());
                            deltas[i] += 1;
                        }
                    }
                }
            }
            if done {
                return (content, calls, deltas);
            }
        }
    }

    /// Streamed in small pieces, a text gives the finished parse's content and calls (the
    /// first call's arguments in several pieces when `pieces`).
    fn agrees(p: &ToolPlan, text: &str, n_calls: usize, pieces: bool) {
        let (content, calls) = finished_calls(p, text).expect("calls parse");
        assert_eq!(calls.len(), n_calls);
        for step in [1, 3, 7, 1000] {
            let (c, streamed, deltas) = stream(p, text, step);
            assert_eq!(streamed.len(), n_calls, "step {step}: {text}");
            for (s, f) in streamed.iter().zip(&calls) {
                assert_eq!(s.0, f.name);
                assert_eq!(s.1, f.arguments, "step {step}");
                serde_json::from_str::<Value>(&s.1).unwrap();
            }
            if step == 1 && pieces {
                assert!(deltas[0] > 1, "{deltas:?}");
            }
            assert_eq!(c.trim(), content.clone().unwrap_or_default(), "step {step}");
        }
    }

    #[test]
    fn every_format_streams_the_final_arguments() {
        let hermes = plan_of(json!("auto"), ToolFormat::Hermes);
        agrees(
            &hermes,
            "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris \\\"centre\\\"\"}}\n</tool_call>\n<tool_call>\n{\"arguments\": {\"city\": \"Oslo\"}, \"name\": \"get_time\"}\n</tool_call>",
            2,
            true,
        );
        agrees(
            &plan_of(json!("auto"), ToolFormat::Llama3Json),
            "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}; {\"name\": \"get_time\", \"parameters\": {\"city\": \"Oslo\"}}",
            2,
            true,
        );
        agrees(
            &plan_of(json!("auto"), ToolFormat::Llama3Json),
            "{\"name\": \"get_time\", \"arguments\": \"{\\\"city\\\": \\\"Lima\\\"}\"}",
            1,
            false,
        );
        agrees(
            &plan_of(json!("auto"), ToolFormat::Mistral),
            "Sure. [TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}, {\"name\": \"get_time\", \"arguments\": {\"city\": \"Kyiv\"}}]",
            2,
            true,
        );
        agrees(
            &plan_of(json!("required"), ToolFormat::Hermes),
            "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}, {\"name\": \"get_time\", \"arguments\": {\"city\": \"Kyiv\"}}]",
            2,
            true,
        );
        agrees(
            &plan_of(
                json!({"type": "function", "function": {"name": "get_time"}}),
                ToolFormat::Mistral,
            ),
            "{\"city\": \"Ulaanbaatar\"}",
            1,
            true,
        );
    }

    #[test]
    fn text_without_calls_is_content_and_markup_never_leaks() {
        let hermes = plan_of(json!("auto"), ToolFormat::Hermes);
        let (c, calls, _) = stream(&hermes, "No <tool> needed, thanks.", 1);
        assert_eq!((c.as_str(), calls.len()), ("No <tool> needed, thanks.", 0));
        // Held back while it may be a marker; content once it cannot be.
        let mut st = ToolStream::default();
        assert_eq!(
            st.advance(&hermes, "Hi <tool_c", false),
            [Piece::Content("Hi ".into())]
        );
        let pieces = st.advance(&hermes, "Hi <tool_call>\n{\"na", false);
        assert!(pieces.is_empty(), "{pieces:?}");
        // A malformed call is content when the choice ends.
        let text = "<tool_call>{not json</tool_call>";
        assert!(finished_calls(&hermes, text).is_none());
        let (c, calls, _) = stream(&hermes, text, 4);
        assert_eq!((c.as_str(), calls.len()), (text, 0));
        let llama = plan_of(json!("auto"), ToolFormat::Llama3Json);
        let (c, calls, _) = stream(&llama, "Rome is sunny.", 2);
        assert_eq!((c.as_str(), calls.len()), ("Rome is sunny.", 0));
    }

    #[test]
    fn an_unfinished_call_streams_as_far_as_it_went() {
        let required = plan_of(json!("required"), ToolFormat::Hermes);
        let text = "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Ro";
        assert!(finished_calls(&required, text).is_none());
        let mut st = ToolStream::default();
        let pieces = st.advance(&required, text, true);
        assert_eq!(pieces.len(), 2, "{pieces:?}");
        assert_eq!(
            pieces[1],
            Piece::Call(json!({"index": 0, "function": {"arguments": "{\"city\": \"Ro"}}))
        );
    }
}
