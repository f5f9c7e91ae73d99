//! Structured output (DESIGN.md §8): a request's [`StructuredOutput`] compiled by llguidance
//! into a matcher over the model's vocabulary, which each step says which tokens may come
//! next (a bitmask the runner applies to the row's logits before choosing) and then
//! follows the chosen token.
//!
//! - [`vocab`]: the token trie llguidance walks, built once per model from the tokenizer
//!   (each token's bytes; special tokens marked so that no grammar string can spell them).
//! - [`Grammars`]: compiles a request's constraint (JSON schema, `json_object`, regex,
//!   choice, Lark grammar) into a [`Constraint`]; an invalid one is an error carrying the
//!   parser's message, for a 400.
//! - [`Constraint`]: one request's matcher: `mask` before a step, `commit` after it.
//!
//! Cost: compiling is lazy in llguidance (the lexer grows as it is used), so a schema
//! compiles in about a millisecond; a mask costs tens of microseconds to a millisecond per
//! row and step, paid on the engine thread only for constrained rows.

mod constraint;
mod grammars;
pub mod vocab;

pub use constraint::{Constraint, Next};
pub use grammars::{GrammarError, Grammars};
pub use ingot_api::StructuredOutput;
