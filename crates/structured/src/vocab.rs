//! The model's vocabulary as llguidance sees it: a `TokTrie` of every token's bytes, and a
//! `TokenizerEnv` that tokenizes text with the model's own tokenizer (llguidance uses it
//! for forced text and grammar literals).
//!
//! The bytes come from the tokenizer's tokenizer.json form (`tokenizers` serialises the
//! pipeline Ingot built, from a tokenizer.json or from GGUF metadata), read by llguidance's
//! `token_bytes_from_tokenizer_json`: byte-level BPE pieces mapped back through GPT-2's byte
//! table, SentencePiece pieces with `▁` as a space and `<0xNN>` byte tokens; special tokens
//! get llguidance's 0xFF marker, so only a grammar that names them can produce them. Ids
//! past the tokenizer's vocabulary (embedding rows padded to a round size) have no bytes
//! and are never allowed. The trie covers the model's vocabulary `V`, the width of its
//! logits, so a mask is exactly one row of the `mask_logits` verb.

use std::sync::Arc;

use ingot_tokenizer::Tokenizer;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

/// llguidance's view of one model's tokenizer.
struct ModelTokEnv {
    trie: TokTrie,
    tokenizer: Arc<Tokenizer>,
}

impl TokenizerEnv for ModelTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        // Text that is not UTF-8 (a grammar literal cut inside a character) falls back to
        // the trie's greedy tokenization, as llguidance's own environments do.
        match std::str::from_utf8(s) {
            Ok(text) => self
                .tokenizer
                .encode(text, false)
                .unwrap_or_else(|_| self.trie.greedy_tokenize(s)),
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

/// Every token's bytes, indexed by id, `vocab_size` entries (ids the tokenizer lacks are
/// empty).
pub fn token_bytes(tokenizer: &Tokenizer, vocab_size: usize) -> Result<Vec<Vec<u8>>, String> {
    let json = tokenizer
        .hf()
        .to_string(false)
        .map_err(|e| format!("serialising the tokenizer failed: {e}"))?;
    let json: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| format!("reading the tokenizer failed: {e}"))?;
    // llguidance asserts on a few malformed pieces; a panic there must not reach a user.
    let bytes = std::panic::catch_unwind(|| llguidance::token_bytes_from_tokenizer_json(&json))
        .map_err(|_| "llguidance could not read this tokenizer's vocabulary".to_string())?
        .map_err(|e| format!("llguidance cannot use this tokenizer: {e}"))?;
    let mut bytes = bytes;
    if bytes.len() > vocab_size {
        return Err(format!(
            "the tokenizer has {} tokens but the model's vocabulary is {vocab_size}",
            bytes.len()
        ));
    }
    bytes.resize(vocab_size, Vec::new());
    Ok(bytes)
}

/// The llguidance environment of a model whose logits are `vocab_size` wide; its EOS set
/// is the tokenizer's end-of-generation ids.
pub fn token_env(tokenizer: Arc<Tokenizer>, vocab_size: usize) -> Result<TokEnv, String> {
    let words = token_bytes(&tokenizer, vocab_size)?;
    let eos = tokenizer.eos_token_ids().to_vec();
    let Some(&first) = eos.first() else {
        return Err(
            "structured output needs an end-of-sequence token, and this tokenizer has none".into(),
        );
    };
    let mut info = TokRxInfo::new(vocab_size as u32, first);
    info.tok_bos = tokenizer.bos_token_id();
    let trie = TokTrie::from(&info, &words).with_eos_tokens(&eos);
    Ok(Arc::new(ModelTokEnv { trie, tokenizer }))
}
