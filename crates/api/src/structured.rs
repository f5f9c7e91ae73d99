//! [`StructuredOutput`]: the constraint a request puts on its output (structured output,
//! tool calls), as plain data. The grammar behind it is compiled by `ingot-structured`
//! (llguidance) when the request is submitted; an invalid schema, regex or grammar is
//! refused there with the parser's message.

/// What a constrained request's output must match, whole.
#[derive(Clone, Debug, PartialEq)]
pub enum StructuredOutput {
    /// A JSON value valid for this JSON schema (the schema's JSON text).
    JsonSchema(String),
    /// Any JSON object (OpenAI's `json_object`).
    JsonObject,
    /// A match of this regular expression (Rust `regex` syntax), whole.
    Regex(String),
    /// Exactly one of these strings.
    Choice(Vec<String>),
    /// A sentence of this grammar, in llguidance's Lark dialect (which can embed JSON
    /// schemas with `%json { .. }`).
    Grammar(String),
}

impl StructuredOutput {
    /// A short name for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            StructuredOutput::JsonSchema(_) => "json",
            StructuredOutput::JsonObject => "json_object",
            StructuredOutput::Regex(_) => "regex",
            StructuredOutput::Choice(_) => "choice",
            StructuredOutput::Grammar(_) => "grammar",
        }
    }
}
