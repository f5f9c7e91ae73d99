//! [`Grammars`]: one model's llguidance parser factory, and the compilation of a request's
//! [`StructuredOutput`] into a [`Constraint`].
//!
//! JSON schemas compile with compact separators (`, ` and `: `, no free whitespace) unless
//! the schema sets llguidance's own `x-guidance` options: a free-whitespace grammar lets a
//! small model spend its tokens on blank lines. Unknown schema keywords are errors, not
//! ignored (OpenAI's `strict`). A choice compiles to a regex of the escaped alternatives.

use std::sync::Arc;

use ingot_api::StructuredOutput;
use ingot_tokenizer::Tokenizer;
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};

use crate::constraint::Constraint;
use crate::vocab;

/// Why a constraint could not be compiled (the request's fault: a 400).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct GrammarError(pub String);

/// The compiler of one model's constraints. Built once per model (the token trie and the
/// lexer slices over the vocabulary: tens of milliseconds), shared behind an `Arc`.
pub struct Grammars {
    factory: ParserFactory,
    vocab_size: usize,
}

impl std::fmt::Debug for Grammars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammars")
            .field("vocab_size", &self.vocab_size)
            .finish()
    }
}

impl Grammars {
    /// The compiler for a model whose logits are `vocab_size` wide.
    pub fn new(tokenizer: Arc<Tokenizer>, vocab_size: usize) -> Result<Grammars, GrammarError> {
        let env = vocab::token_env(tokenizer, vocab_size).map_err(GrammarError)?;
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| {
            GrammarError(format!(
                "structured output is unavailable for this model: {e}"
            ))
        })?;
        factory.quiet();
        factory.limits_mut().verbose_errors = false;
        Ok(Grammars {
            factory,
            vocab_size,
        })
    }

    /// The width of the masks this compiler's constraints produce.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Compiles `spec` into a fresh constraint, or says what is wrong with it.
    pub fn compile(&self, spec: &StructuredOutput) -> Result<Constraint, GrammarError> {
        let grammar = top_level(spec)?;
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| GrammarError(format!("invalid {}: {e}", describe(spec))))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(GrammarError(format!("invalid {}: {e}", describe(spec))));
        }
        Ok(Constraint::new(matcher, self.vocab_size))
    }
}

fn describe(spec: &StructuredOutput) -> &'static str {
    match spec {
        StructuredOutput::JsonSchema(_) | StructuredOutput::JsonObject => "JSON schema",
        StructuredOutput::Regex(_) => "regex",
        StructuredOutput::Choice(_) => "choice",
        StructuredOutput::Grammar(_) => "grammar",
    }
}

/// The JSON layout options every schema gets unless it names its own.
fn compact(mut schema: Value) -> Value {
    if let Some(obj) = schema.as_object_mut()
        && !obj.contains_key("x-guidance")
    {
        obj.insert(
            "x-guidance".into(),
            json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    schema
}

fn top_level(spec: &StructuredOutput) -> Result<TopLevelGrammar, GrammarError> {
    Ok(match spec {
        StructuredOutput::JsonSchema(text) => {
            let schema: Value = serde_json::from_str(text)
                .map_err(|e| GrammarError(format!("the JSON schema is not valid JSON: {e}")))?;
            if !(schema.is_object() || schema.is_boolean()) {
                return Err(GrammarError(
                    "a JSON schema must be an object or a boolean".into(),
                ));
            }
            TopLevelGrammar::from_json_schema(compact(schema))
        }
        StructuredOutput::JsonObject => {
            TopLevelGrammar::from_json_schema(compact(json!({"type": "object"})))
        }
        StructuredOutput::Regex(rx) => {
            // llguidance's regex dialect is Rust's; check it with the same parser first so
            // the error names the problem the way the regex crate would.
            regex_syntax::Parser::new()
                .parse(rx)
                .map_err(|e| GrammarError(format!("invalid regex: {e}")))?;
            TopLevelGrammar::from_regex(rx)
        }
        StructuredOutput::Choice(choices) => {
            if choices.is_empty() {
                return Err(GrammarError("choice needs at least one string".into()));
            }
            let alternatives: Vec<String> =
                choices.iter().map(|c| regex_syntax::escape(c)).collect();
            TopLevelGrammar::from_regex(&format!("(?:{})", alternatives.join("|")))
        }
        StructuredOutput::Grammar(lark) => {
            if lark.trim().is_empty() {
                return Err(GrammarError("the grammar is empty".into()));
            }
            TopLevelGrammar::from_lark(lark.clone())
        }
    })
}
