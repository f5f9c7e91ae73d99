//! [`GrammarCell`]: the model's structured-output compiler (`ingot_structured::Grammars`),
//! built on first use (the token trie over the vocabulary costs tens of milliseconds, which
//! a server that never sees a constrained request should not pay) and shared by the engine
//! thread and every handle. Handles compile a request's grammar on the submitting thread,
//! so a constrained request's compile time slows only itself.

use std::sync::{Arc, OnceLock};

use ingot_api::SamplingParams;
use ingot_structured::{Constraint, Grammars};
use ingot_tokenizer::Tokenizer;

use crate::core::SubmitError;

#[derive(Clone)]
pub struct GrammarCell {
    cell: Arc<OnceLock<Result<Arc<Grammars>, String>>>,
    tokenizer: Arc<Tokenizer>,
    /// The model's vocabulary (logits width), which masks cover.
    vocab_size: usize,
}

impl GrammarCell {
    pub fn new(tokenizer: Arc<Tokenizer>, vocab_size: usize) -> Self {
        Self {
            cell: Arc::default(),
            tokenizer,
            vocab_size,
        }
    }

    /// The compiler, built now if this is the first use.
    pub fn grammars(&self) -> Result<&Arc<Grammars>, String> {
        self.cell
            .get_or_init(|| {
                Grammars::new(self.tokenizer.clone(), self.vocab_size)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The constraint of a request with these params, if it has one; an invalid grammar is
    /// [`SubmitError::InvalidGrammar`].
    pub fn compile(&self, params: &SamplingParams) -> Result<Option<Constraint>, SubmitError> {
        let Some(spec) = &params.structured else {
            return Ok(None);
        };
        let grammars = self.grammars().map_err(SubmitError::InvalidGrammar)?;
        grammars
            .compile(spec)
            .map(Some)
            .map_err(|e| SubmitError::InvalidGrammar(e.0))
    }
}
