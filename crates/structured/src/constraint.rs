//! [`Constraint`]: one request's llguidance matcher, driven by the engine one token at a
//! time: before a step, [`Constraint::mask`] writes which tokens the grammar allows next
//! (one bit per token, the row layout of the `mask_logits` verb); after it,
//! [`Constraint::commit`] advances the matcher by the chosen token. Once the grammar is
//! complete the mask allows only the end-of-sequence tokens, so the request ends with
//! `stop`; if `max_tokens` comes first it ends with `length`, its output a prefix of a
//! sentence of the grammar.
//!
//! Jump-forward: [`Constraint::forced_next`] asks, right after a commit, whether the
//! grammar now allows exactly one token, so the engine can append a run of forced tokens
//! in one step. It only computes a mask where llguidance already knows the next bytes are
//! forced (its fast-forward tokens) or the grammar is complete; the mask it computes is
//! kept for the next [`Constraint::mask`], so no mask is computed twice. A forced token is
//! by definition the one the mask allows, so the tokens are those of one token per step.

use llguidance::Matcher;

/// What the grammar allows at the next position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Exactly this token: the step needs no logits for the row (a forced token).
    Forced(u32),
    /// Several tokens: the row's logits are masked and chosen from as usual.
    Masked,
}

/// A request's grammar state. Cloning copies the state (each of `n` choices gets its own).
#[derive(Clone)]
pub struct Constraint {
    matcher: Matcher,
    vocab_size: usize,
    /// The mask of the current position, when computed ahead by `forced_next` (words
    /// `mask_words(V)`, and what they decide); cleared by every commit.
    ready: Option<(Vec<u32>, Next)>,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("vocab_size", &self.vocab_size)
            .field("stopped", &self.matcher.is_stopped())
            .finish()
    }
}

impl Constraint {
    pub(crate) fn new(matcher: Matcher, vocab_size: usize) -> Self {
        Self {
            matcher,
            vocab_size,
            ready: None,
        }
    }

    /// Writes the allowed tokens into `words` [`ingot_tensor`'s `mask_words(V)`]: bit
    /// `i % 32` of word `i / 32` set when token `i` may come next. An error means the
    /// matcher failed (an llguidance limit hit, or a token it did not expect); the request
    /// cannot go on.
    pub fn mask(&mut self, words: &mut [u32]) -> Result<Next, String> {
        debug_assert_eq!(words.len(), self.vocab_size.div_ceil(32));
        if let Some((ready, next)) = self.ready.take() {
            words.copy_from_slice(&ready);
            return Ok(next);
        }
        let set = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| format!("the grammar matcher failed: {e}"))?;
        let src = set.as_slice();
        for (i, w) in words.iter_mut().enumerate() {
            *w = src.get(i).copied().unwrap_or(0);
        }
        if let Some(tail) = words.last_mut()
            && !self.vocab_size.is_multiple_of(32)
        {
            *tail &= (1u32 << (self.vocab_size % 32)) - 1;
        }
        let allowed: u32 = words.iter().map(|w| w.count_ones()).sum();
        match allowed {
            0 => Err("the grammar allows no token here".into()),
            1 => {
                let (i, w) = words
                    .iter()
                    .enumerate()
                    .find(|(_, w)| **w != 0)
                    .expect("one bit is set");
                Ok(Next::Forced(i as u32 * 32 + w.trailing_zeros()))
            }
            _ => Ok(Next::Masked),
        }
    }

    /// The one token the grammar allows next, if it is known cheaply: where llguidance's
    /// fast-forward tokens say the next bytes are forced, or the grammar is complete (then
    /// only EOS may follow, which is forced when the model has one EOS token). `None`
    /// means "choose as usual" (the mask is then computed during the next step, while its
    /// forward pass runs). Never computes a full mask over the vocabulary except where that
    /// mask is the one the next step needs.
    pub fn forced_next(&mut self) -> Result<Option<u32>, String> {
        if !self.matcher.is_stopped() && self.matcher.compute_ff_tokens().is_empty() {
            return Ok(None);
        }
        let mut words = vec![0u32; self.vocab_size.div_ceil(32)];
        let next = self.mask(&mut words)?;
        self.ready = Some((words, next));
        Ok(match next {
            Next::Forced(t) => Some(t),
            Next::Masked => None,
        })
    }

    /// Advances the matcher by the step's token (one the last mask allowed).
    pub fn commit(&mut self, token: u32) -> Result<(), String> {
        self.ready = None;
        if self.matcher.is_stopped() {
            // The grammar was complete and its mask allowed only EOS: nothing to follow.
            return Ok(());
        }
        self.matcher
            .consume_token(token)
            .map_err(|e| format!("the grammar matcher rejected token {token}: {e}"))
    }

    /// Whether the output so far is a complete sentence of the grammar.
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_stopped() || self.matcher.is_accepting().unwrap_or(false)
    }
}
