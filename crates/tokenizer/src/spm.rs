//! SentencePiece vocabularies from GGUF (`tokenizer.ggml.model = "llama"`: Llama 2, Gemma,
//! Mistral v1): tokens with scores, no merges. llama.cpp's SPM tokenizer starts from single
//! characters and repeatedly joins the adjacent pair whose joined text is a token with the
//! highest score; text no token covers falls back to `<0xAB>` byte tokens. That is BPE whose
//! merge ranks are the scores of the merged tokens, so the pipeline is `tokenizers`' BPE over
//! merges derived here (as transformers' converter derives them), with byte fallback:
//!
//!   normalizer: " " -> "▁" (and a leading "▁" when `add_space_prefix`) -> BPE over the whole
//!   text (no pre-tokenizer) -> decoder: "▁" -> " ", byte tokens -> bytes, fuse (strip the
//!   leading space again when one was added).
//!
//! Where one token can be joined from two different pairs, SPM takes the leftmost pair and
//! this order the pair with the longer left part; both end in the same token, and only a
//! different intermediate segmentation of a longer text could tell them apart. Cost:
//! deriving the merges visits every split point of every token, two hash lookups each
//! (~2.5 M for Gemma's 262k tokens, a few hundred milliseconds).

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::{DecoderWrapper, NormalizerWrapper};

use crate::error::{Error, Result};
use crate::gguf_vocab::{GgufVocab, TokenType};

/// SentencePiece's visible space.
const SPACE: &str = "\u{2581}";

/// Merges implied by `scores`: for each token that splits into two tokens, the pair, ranked
/// by the joined token's score (highest first; ties by token id, then by the longer left
/// part). Only normal (and byte) tokens take part, as control and user-defined tokens are
/// matched whole before the model runs.
fn merges_from_scores(
    tokens: &[String],
    scores: &[f32],
    types: &[TokenType],
    vocab: &Vocab,
) -> Vec<(String, String)> {
    let mergeable = |id: u32| matches!(types[id as usize], TokenType::Normal | TokenType::Byte);
    let mut ranked: Vec<(f32, u32, usize, &str, &str)> = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        if !mergeable(id as u32) || vocab.get(token) != Some(&(id as u32)) {
            continue;
        }
        for (cut, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(cut);
            let known = |t: &str| vocab.get(t).is_some_and(|&i| mergeable(i));
            if known(left) && known(right) {
                ranked.push((scores[id], id as u32, usize::MAX - cut, left, right));
            }
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    ranked
        .into_iter()
        .map(|(.., l, r)| (l.to_owned(), r.to_owned()))
        .collect()
}

/// The BPE model, normalizer and decoder of a SentencePiece vocabulary (see the module
/// header). `types` has one entry per token.
pub(crate) fn tokenizer(v: &GgufVocab, types: &[TokenType]) -> Result<tokenizers::Tokenizer> {
    let n = v.tokens.len();
    if v.scores.len() != n {
        return Err(Error::BadVocab(format!(
            "tokenizer.ggml.scores has {} entries but tokenizer.ggml.tokens has {n}",
            v.scores.len()
        )));
    }
    let mut vocab = Vocab::with_capacity(n);
    for (id, token) in v.tokens.iter().enumerate() {
        vocab.entry(token.clone()).or_insert(id as u32);
    }
    if !(0..=255u8).all(|b| vocab.contains_key(&format!("<0x{b:02X}>"))) {
        return Err(Error::BadVocab(
            "a SentencePiece vocabulary needs the 256 byte tokens <0x00>..<0xFF>".into(),
        ));
    }
    let merges = merges_from_scores(&v.tokens, &v.scores, types, &vocab);
    let mut bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = v.unknown_token_id {
        bpe = bpe.unk_token(v.tokens[unk as usize].clone());
    }
    let bpe = bpe
        .build()
        .map_err(|e| Error::BadVocab(format!("building BPE from tokens and scores: {e}")))?;

    let prefix = v.add_space_prefix.unwrap_or(true);
    let replace = |from: &str, to: &str| {
        Replace::new(from, to).map_err(|e| Error::BadVocab(format!("normalizer: {e}")))
    };
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if prefix {
        normalizers.push(Prepend::new(SPACE.to_owned()).into());
    }
    normalizers.push(replace(" ", SPACE)?.into());
    let mut decoders: Vec<DecoderWrapper> = vec![
        replace(SPACE, " ")?.into(),
        ByteFallback::default().into(),
        Fuse::default().into(),
    ];
    if prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    let mut hf = tokenizers::Tokenizer::new(bpe);
    hf.with_normalizer(Some(NormalizerSequence::new(normalizers)))
        .map_err(|e| Error::BadVocab(format!("normalizer: {e}")))?;
    hf.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(hf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte tokens, then a few pieces with scores (higher joins first).
    fn vocab(add_space_prefix: bool) -> GgufVocab {
        let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into()];
        let mut types = vec![2, 3];
        let mut scores = vec![0.0, 0.0];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
            scores.push(0.0);
        }
        for (piece, score) in [
            ("▁", -1.0),
            ("a", -2.0),
            ("b", -3.0),
            ("ab", -4.0),
            ("▁ab", -5.0),
            ("▁a", -6.0),
            ("c", -7.0),
        ] {
            tokens.push(piece.into());
            types.push(1);
            scores.push(score);
        }
        GgufVocab {
            model: "llama".into(),
            tokens,
            token_types: types,
            scores,
            bos_token_id: Some(1),
            unknown_token_id: Some(0),
            add_space_prefix: Some(add_space_prefix),
            ..Default::default()
        }
    }

    fn encode(v: &GgufVocab, text: &str) -> Vec<u32> {
        let types: Vec<TokenType> = v
            .token_types
            .iter()
            .map(|&t| TokenType::from_gguf(t).unwrap())
            .collect();
        let hf = tokenizer(v, &types).unwrap();
        hf.encode_fast(text, false).unwrap().get_ids().to_vec()
    }

    #[test]
    fn joins_by_score_and_falls_back_to_bytes() {
        let v = vocab(false);
        let id = |p: &str| v.tokens.iter().position(|t| t == p).unwrap() as u32;
        // "ab" (-4) joins before "▁a" (-6) could; then "▁" + "ab" -> "▁ab".
        assert_eq!(encode(&v, "ab ab"), vec![id("ab"), id("▁ab")]);
        // "é" is not a token: its two UTF-8 bytes.
        assert_eq!(encode(&v, "cé"), vec![id("c"), id("<0xC3>"), id("<0xA9>")]);
    }

    #[test]
    fn space_prefix_is_added_and_removed() {
        let v = vocab(true);
        let id = |p: &str| v.tokens.iter().position(|t| t == p).unwrap() as u32;
        assert_eq!(encode(&v, "ab"), vec![id("▁ab")]);
        let types: Vec<TokenType> = v
            .token_types
            .iter()
            .map(|&t| TokenType::from_gguf(t).unwrap())
            .collect();
        let hf = tokenizer(&v, &types).unwrap();
        assert_eq!(hf.decode(&[id("▁ab"), id("▁a")], false).unwrap(), "ab a");
    }

    #[test]
    fn missing_scores_or_bytes_are_errors() {
        let mut v = vocab(false);
        v.scores.pop();
        let types = vec![TokenType::Normal; v.tokens.len()];
        let e = tokenizer(&v, &types).unwrap_err().to_string();
        assert!(e.contains("scores has"), "{e}");
        let mut v = vocab(false);
        v.tokens[2] = "x".into();
        let e = tokenizer(&v, &types).unwrap_err().to_string();
        assert!(e.contains("256 byte tokens"), "{e}");
    }
}
