//! A tokenizer built from GGUF metadata instead of a tokenizer.json.
//!
//! A GGUF file carries its vocabulary as plain arrays (`tokenizer.ggml.tokens`, `.token_type`, `.merges`)
//! and names the rest by convention: `tokenizer.ggml.model` says which algorithm ("gpt2" = byte-level
//! BPE, "llama" = SentencePiece, see [`crate::spm`]), `tokenizer.ggml.pre` which pre-tokenizer split the
//! text before BPE when the vocabulary was trained. [`GgufVocab`] holds those values; [`build`]
//! assembles the equivalent `tokenizers` pipeline, for "gpt2":
//!
//!   added-token matching (control tokens as special, user-defined as plain added tokens, as llama.cpp's
//!   `tokenizer_st_partition` matches both whole) -> pre-tokenizer chosen by `pre` -> byte-level BPE from
//!   vocab + merges (rank = position in the merges array) -> ByteLevel decoder.
//!
//! The pre-tokenizer regexes are those of the original tokenizer.json files, which llama.cpp
//! (`llama-vocab.cpp`) and transformers' GGUF converter also use; the tests check the pieces and ids
//! against transformers. Cost: building hashes every token and merge once (~100k entries for a 49k
//! vocabulary, a few tens of milliseconds).

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::error::{Error, Result};

/// The values of a GGUF file's tokenizer metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`).
/// `ingot-models` fills this from its GGUF reader; every field mirrors one key.
#[derive(Debug, Clone, Default)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: the algorithm, e.g. "gpt2" (byte-level BPE). See [`SUPPORTED_GGUF_MODELS`].
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer, e.g. "smollm", "qwen2", "llama-bpe". See [`SUPPORTED_GGUF_PRE`].
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`, indexed by token id. // [V]
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`: one [`TokenType`] code per token, or empty when the key is absent. // [V]
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges`: "left right" pairs, best first. // [M]
    pub merges: Vec<String>,
    /// `tokenizer.ggml.scores`: SentencePiece piece scores, or empty when the key is absent. // [V]
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece); absent means true, as in llama.cpp.
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.ggml.bos_token_id`
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`
    pub eos_token_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`
    pub unknown_token_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`
    pub padding_token_id: Option<u32>,
    /// `tokenizer.ggml.eot_token_id` (end of turn, e.g. Llama 3's `<|eot_id|>`)
    pub eot_token_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`; absent means the pre-tokenizer's default (true for "llama-bpe").
    pub add_bos_token: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`; absent means false.
    pub add_eos_token: Option<bool>,
    /// `tokenizer.chat_template`
    pub chat_template: Option<String>,
}

/// The meaning of a `tokenizer.ggml.token_type` code (llama.cpp's `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// 0 (undefined) or 1: an ordinary vocabulary entry.
    Normal,
    /// 2
    Unknown,
    /// 3: a special token such as `<|im_start|>`; matched whole in text, dropped by `skip_special_tokens`.
    Control,
    /// 4: an added token that is not special, such as `<think>`; matched whole in text, kept on decode.
    UserDefined,
    /// 5
    Unused,
    /// 6: a `<0xAB>` byte token (sentencepiece vocabularies).
    Byte,
}

impl TokenType {
    /// The type of a GGUF code, or `None` for a code outside 0..=6.
    pub fn from_gguf(code: i32) -> Option<TokenType> {
        Some(match code {
            0 | 1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }
}

/// Values of `tokenizer.ggml.model` this crate builds.
pub const SUPPORTED_GGUF_MODELS: &[&str] = &["gpt2", "llama"];

/// Values of `tokenizer.ggml.pre` this crate builds (a missing key means "default").
pub const SUPPORTED_GGUF_PRE: &[&str] = &[
    "default",
    "gpt-2",
    "smollm",
    "qwen2",
    "deepseek-r1-qwen",
    "llama-bpe",
    "llama3",
    "llama-v3",
];

/// Qwen2's split regex (its tokenizer.json): single digits, letters with one leading non-letter,
/// punctuation runs with trailing newlines, newline runs with their leading blanks.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Llama 3's split regex: as Qwen2's, but numbers in groups of up to three digits.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer families behind the supported `pre` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreKind {
    /// GPT-2's regex inside ByteLevel. llama.cpp's "default" adds three more regexes, but a file that
    /// says "default" (or nothing) is an old conversion whose HF tokenizer was GPT-2's.
    Gpt2,
    /// Every numeral on its own, then GPT-2's regex (SmolLM's tokenizer.json; llama.cpp "smollm").
    Smollm,
    /// [`QWEN2_SPLIT`], then ByteLevel without a regex.
    Qwen2,
    /// [`LLAMA3_SPLIT`], then ByteLevel without a regex; BPE skips merges for words in the vocabulary.
    Llama3,
}

fn pre_kind(pre: Option<&str>) -> Result<PreKind> {
    Ok(match pre {
        None | Some("default") | Some("gpt-2") => PreKind::Gpt2,
        Some("smollm") => PreKind::Smollm,
        Some("qwen2") | Some("deepseek-r1-qwen") => PreKind::Qwen2,
        Some("llama-bpe") | Some("llama3") | Some("llama-v3") => PreKind::Llama3,
        Some(other) => {
            return Err(Error::BadVocab(format!(
                "unsupported tokenizer.ggml.pre {other:?}; supported: {}",
                SUPPORTED_GGUF_PRE.join(", ")
            )));
        }
    })
}

fn pre_tokenizer(kind: PreKind) -> Result<PreTokenizerWrapper> {
    // add_prefix_space = false everywhere: these models do not prepend a space to the text.
    let split = |regex: &str| -> Result<PreTokenizerWrapper> {
        let split = Split::new(
            SplitPattern::Regex(regex.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| Error::BadVocab(format!("split regex does not compile: {e}")))?;
        Ok(Sequence::new(vec![
            split.into(),
            ByteLevel::new(false, false, false).into(),
        ])
        .into())
    };
    Ok(match kind {
        PreKind::Gpt2 => ByteLevel::new(false, true, true).into(),
        PreKind::Smollm => Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])
        .into(),
        PreKind::Qwen2 => split(QWEN2_SPLIT)?,
        PreKind::Llama3 => split(LLAMA3_SPLIT)?,
    })
}

/// What [`build`] hands to [`crate::Tokenizer`].
pub(crate) struct Built {
    pub hf: tokenizers::Tokenizer,
    /// Whether `encode(.., add_special_tokens = true)` starts with BOS / ends with EOS.
    pub add_bos: bool,
    pub add_eos: bool,
}

/// Checks `v` and assembles its tokenizer (see the module header).
pub(crate) fn build(v: &GgufVocab) -> Result<Built> {
    if !SUPPORTED_GGUF_MODELS.contains(&v.model.as_str()) {
        return Err(Error::BadVocab(format!(
            "unsupported tokenizer.ggml.model {:?}; supported: {}",
            v.model,
            SUPPORTED_GGUF_MODELS.join(", ")
        )));
    }
    let kind = pre_kind(v.pre.as_deref())?;
    if v.tokens.is_empty() {
        return Err(Error::BadVocab("tokenizer.ggml.tokens is empty".into()));
    }
    let n = v.tokens.len();
    if u32::try_from(n).is_err() {
        return Err(Error::BadVocab(format!("{n} tokens do not fit u32 ids")));
    }
    if !v.token_types.is_empty() && v.token_types.len() != n {
        return Err(Error::BadVocab(format!(
            "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {n}",
            v.token_types.len()
        )));
    }
    let mut types = Vec::with_capacity(n); // [V]
    for (i, &code) in v.token_types.iter().enumerate() {
        let t = TokenType::from_gguf(code).ok_or_else(|| {
            Error::BadVocab(format!(
                "token {i} ({:?}) has unknown token_type {code}",
                v.tokens[i]
            ))
        })?;
        types.push(t);
    }
    types.resize(n, TokenType::Normal);
    for (key, id) in [
        ("bos_token_id", v.bos_token_id),
        ("eos_token_id", v.eos_token_id),
        ("unknown_token_id", v.unknown_token_id),
        ("padding_token_id", v.padding_token_id),
        ("eot_token_id", v.eot_token_id),
    ] {
        if let Some(id) = id
            && id as usize >= n
        {
            return Err(Error::BadVocab(format!(
                "tokenizer.ggml.{key} = {id} is outside the {n} tokens"
            )));
        }
    }

    let spm = v.model == "llama";
    let mut hf = if spm {
        crate::spm::tokenizer(v, &types)?
    } else {
        byte_level_bpe(v, kind)?
    };
    let added = |wanted: TokenType, special: bool| -> Vec<AddedToken> {
        v.tokens
            .iter()
            .zip(&types)
            .filter(|&(_, &t)| t == wanted)
            .map(|(token, _)| AddedToken::from(token.clone(), special).normalized(false))
            .collect()
    };
    hf.add_special_tokens(added(TokenType::Control, true))
        .map_err(|e| Error::BadVocab(format!("registering control tokens: {e}")))?;
    hf.add_tokens(added(TokenType::UserDefined, false))
        .map_err(|e| Error::BadVocab(format!("registering user-defined tokens: {e}")))?;
    // Both calls reuse the vocabulary's ids; anything else would shift ids away from the model's rows.
    let (with_added, without) = (hf.get_vocab_size(true), hf.get_vocab_size(false));
    if with_added != without {
        return Err(Error::BadVocab(format!(
            "added tokens grew the vocabulary from {without} to {with_added} entries"
        )));
    }

    // llama.cpp's defaults: BOS for SentencePiece and "llama-bpe" vocabularies.
    let add_bos = v.add_bos_token.unwrap_or(spm || kind == PreKind::Llama3);
    let add_eos = v.add_eos_token.unwrap_or(false);
    if add_bos && v.bos_token_id.is_none() {
        return Err(Error::BadVocab(
            "add_bos_token is set but there is no bos_token_id".into(),
        ));
    }
    if add_eos && v.eos_token_id.is_none() {
        return Err(Error::BadVocab(
            "add_eos_token is set but there is no eos_token_id".into(),
        ));
    }
    Ok(Built {
        hf,
        add_bos,
        add_eos,
    })
}

/// Byte-level BPE from tokens and merges, with the pre-tokenizer `kind` ("gpt2" vocabularies).
fn byte_level_bpe(v: &GgufVocab, kind: PreKind) -> Result<tokenizers::Tokenizer> {
    let n = v.tokens.len();
    // A token spelled twice keeps its first id for text -> id, as a vocabulary map can hold only one.
    let mut vocab = Vocab::with_capacity(n);
    for (id, token) in v.tokens.iter().enumerate() {
        vocab.entry(token.clone()).or_insert(id as u32);
    }
    let mut merges = Vec::with_capacity(v.merges.len()); // [M]
    for (i, merge) in v.merges.iter().enumerate() {
        // The separator is the first space after the first character (llama.cpp: find(' ', 1)).
        let cut = merge
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == ' ')
            .map(|(at, _)| at);
        let Some(cut) = cut else {
            return Err(Error::BadVocab(format!(
                "merge {i} ({merge:?}) is not two tokens separated by a space"
            )));
        };
        merges.push((merge[..cut].to_owned(), merge[cut + 1..].to_owned()));
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(kind == PreKind::Llama3)
        .build()
        .map_err(|e| Error::BadVocab(format!("building BPE from tokens and merges: {e}")))?;

    let mut hf = tokenizers::Tokenizer::new(bpe);
    hf.with_pre_tokenizer(Some(pre_tokenizer(kind)?));
    hf.with_decoder(Some(ByteLevel::default()));
    Ok(hf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(pre: Option<&str>) -> GgufVocab {
        // 256 byte-level symbols would be needed for arbitrary text; a handful suffices for these inputs.
        let tokens: Vec<String> = [
            "<s>", "a", "b", "ab", "Ġ", "Ġab", "1", "2", "3", "12", "<think>",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut token_types = vec![1; tokens.len()];
        token_types[0] = 3;
        token_types[10] = 4;
        GgufVocab {
            model: "gpt2".into(),
            pre: pre.map(str::to_owned),
            tokens,
            token_types,
            merges: vec!["a b".into(), "Ġ ab".into(), "1 2".into()],
            bos_token_id: Some(0),
            eos_token_id: Some(0),
            ..Default::default()
        }
    }

    fn ids(v: &GgufVocab, text: &str) -> Vec<u32> {
        let built = build(v).unwrap();
        built
            .hf
            .encode_fast(text, false)
            .unwrap()
            .get_ids()
            .to_vec()
    }

    #[test]
    fn gpt2_keeps_digit_runs_smollm_splits_them() {
        // GPT-2's regex keeps "12" together so the merge "1 2" applies; smollm cuts digits apart first.
        assert_eq!(ids(&tiny(None), "12"), vec![9]);
        assert_eq!(ids(&tiny(Some("smollm")), "12"), vec![6, 7]);
        // Llama 3 groups up to three digits, Qwen2 one.
        assert_eq!(ids(&tiny(Some("llama-bpe")), "12"), vec![9]);
        assert_eq!(ids(&tiny(Some("qwen2")), "12"), vec![6, 7]);
    }

    #[test]
    fn control_and_user_defined_tokens_match_whole() {
        let v = tiny(Some("qwen2"));
        assert_eq!(ids(&v, "<s>ab<think> ab"), vec![0, 3, 10, 5]);
        let built = build(&v).unwrap();
        // Control tokens are special (skipped), user-defined ones are not.
        assert_eq!(
            built.hf.decode(&[0, 3, 10, 5], true).unwrap(),
            "ab<think> ab"
        );
        assert_eq!(
            built.hf.decode(&[0, 3, 10, 5], false).unwrap(),
            "<s>ab<think> ab"
        );
    }

    #[test]
    fn bos_defaults_follow_llama_cpp() {
        assert!(build(&tiny(Some("llama-bpe"))).unwrap().add_bos);
        assert!(!build(&tiny(Some("qwen2"))).unwrap().add_bos);
        let mut v = tiny(Some("llama-bpe"));
        v.add_bos_token = Some(false);
        assert!(!build(&v).unwrap().add_bos);
    }

    #[test]
    fn bad_metadata_is_an_error_not_a_panic() {
        let err = |v: GgufVocab| match build(&v) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("expected an error"),
        };
        let mut v = tiny(None);
        v.model = "bert".into();
        assert!(err(v).contains("supported: gpt2, llama"));
        let mut v = tiny(None);
        v.pre = Some("tekken".into());
        let msg = err(v);
        assert!(
            msg.contains("\"tekken\"") && msg.contains("smollm") && msg.contains("llama-bpe"),
            "{msg}"
        );
        let mut v = tiny(None);
        v.token_types.pop();
        assert!(err(v).contains("token_type has 10 entries"));
        let mut v = tiny(None);
        v.token_types[2] = 9;
        assert!(err(v).contains("token 2 (\"b\") has unknown token_type 9"));
        let mut v = tiny(None);
        v.merges.push("nospace".into());
        assert!(err(v).contains("merge 3"));
        let mut v = tiny(None);
        v.merges.push("x y".into());
        assert!(err(v).contains("building BPE"));
        let mut v = tiny(None);
        v.eos_token_id = Some(11);
        assert!(err(v).contains("eos_token_id = 11"));
        let mut v = tiny(None);
        v.tokens.clear();
        v.token_types.clear();
        assert!(err(v).contains("empty"));
    }
}
