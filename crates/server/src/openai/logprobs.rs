//! Log-probabilities in OpenAI's two formats, built from the engine's per-token
//! [`TokenLogprobs`] (the sampled token's logprob plus the k best alternatives, best first):
//!
//! - chat: `{"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob",
//!   "bytes"}]}]}`, exactly k alternatives per position;
//! - completions: parallel lists `tokens`, `token_logprobs`, `top_logprobs` (a map token ->
//!   logprob holding the k best plus the sampled token, as vLLM does) and `text_offset` (the
//!   character offset of each token in the choice's text).
//!
//! A token's text is its own bytes. A byte-level BPE token can hold part of a UTF-8
//! character; its bytes are recovered from the vocabulary entry through the inverse of
//! GPT-2's byte-to-unicode map, and its text is then written `bytes:\xNN...` as OpenAI does.
//! Non-finite logprobs (JSON has no -inf) are clamped to -9999, as vLLM does.

use ingot_engine::api::TokenLogprobs;
use ingot_tokenizer::Tokenizer;
use serde::ser::{Serialize, SerializeMap, Serializer};

/// Whether byte `b` is one GPT-2's byte-level map keeps as its own code point.
fn printable(b: u32) -> bool {
    (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b)
}

/// The byte a byte-level BPE vocabulary character stands for.
fn byte_level_byte(c: char) -> Option<u8> {
    let u = c as u32;
    if u < 256 {
        return printable(u).then_some(u as u8);
    }
    // The other 68 bytes map, in ascending order, to 256, 257, ...
    (0..256u32)
        .filter(|&b| !printable(b))
        .nth((u - 256) as usize)
        .map(|b| b as u8)
}

/// The bytes token `id` contributes to a text.
pub fn token_bytes(tok: &Tokenizer, id: u32) -> Vec<u8> {
    let decoded = tok.decode(&[id], false).unwrap_or_default();
    if !decoded.contains('\u{FFFD}') {
        return decoded.into_bytes();
    }
    // Part of a multi-byte character: read the vocabulary entry as byte-level BPE.
    tok.id_to_token(id)
        .and_then(|piece| {
            piece
                .chars()
                .map(byte_level_byte)
                .collect::<Option<Vec<u8>>>()
        })
        .unwrap_or_else(|| decoded.into_bytes())
}

/// A token's text: its bytes if they are UTF-8, else `bytes:\xe2\x80` (OpenAI's spelling).
pub fn token_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => {
            let mut s = String::from("bytes:");
            for b in bytes {
                s.push_str(&format!("\\x{b:02x}"));
            }
            s
        }
    }
}

fn finite(lp: f32) -> f32 {
    if lp.is_finite() { lp } else { -9999.0 }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ChatTopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ChatTokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<ChatTopLogprob>,
}

/// A chat choice's `logprobs`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ChatLogprobs {
    pub content: Vec<ChatTokenLogprob>,
}

/// Chat entries for `lps`, with `top` alternatives each.
pub fn chat_entries(tok: &Tokenizer, lps: &[TokenLogprobs], top: usize) -> Vec<ChatTokenLogprob> {
    let entry = |id: u32, logprob: f32| {
        let bytes = token_bytes(tok, id);
        ChatTopLogprob {
            token: token_text(&bytes),
            logprob: finite(logprob),
            bytes,
        }
    };
    lps.iter()
        .map(|lp| {
            let sampled = entry(lp.token, lp.logprob);
            ChatTokenLogprob {
                token: sampled.token,
                logprob: sampled.logprob,
                bytes: sampled.bytes,
                top_logprobs: lp
                    .top
                    .iter()
                    .take(top)
                    .map(|&(id, l)| entry(id, l))
                    .collect(),
            }
        })
        .collect()
}

/// An ordered JSON object token -> logprob.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TopMap(pub Vec<(String, f32)>);

impl Serialize for TopMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A text completion choice's `logprobs` (or one chunk's share of them).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<Option<f32>>,
    pub top_logprobs: Vec<Option<TopMap>>,
    pub text_offset: Vec<usize>,
}

impl CompletionLogprobs {
    /// Appends `lps`; `offset` is the character offset in the choice's text where the first
    /// of them starts, and is advanced past each token.
    pub fn extend(
        &mut self,
        tok: &Tokenizer,
        lps: &[TokenLogprobs],
        top: usize,
        offset: &mut usize,
    ) {
        for lp in lps {
            let text = token_text(&token_bytes(tok, lp.token));
            let mut map: Vec<(String, f32)> = lp
                .top
                .iter()
                .take(top)
                .map(|&(id, l)| (token_text(&token_bytes(tok, id)), finite(l)))
                .collect();
            if !lp.top.iter().take(top).any(|&(id, _)| id == lp.token) {
                map.push((text.clone(), finite(lp.logprob)));
            }
            self.text_offset.push(*offset);
            *offset += text.chars().count();
            self.tokens.push(text);
            self.token_logprobs.push(Some(finite(lp.logprob)));
            self.top_logprobs.push(Some(TopMap(map)));
        }
    }

    /// Appends the first prompt token of an echoed prompt, which has no logprob.
    pub fn push_unscored(&mut self, tok: &Tokenizer, id: u32, offset: &mut usize) {
        let text = token_text(&token_bytes(tok, id));
        self.text_offset.push(*offset);
        *offset += text.chars().count();
        self.tokens.push(text);
        self.token_logprobs.push(None);
        self.top_logprobs.push(None);
    }

    /// Appends an echoed prompt (`prompt_lps` scores its tokens 1..), then nothing else.
    pub fn push_prompt(
        &mut self,
        tok: &Tokenizer,
        prompt: &[u32],
        prompt_lps: &[TokenLogprobs],
        top: usize,
        offset: &mut usize,
    ) {
        if let Some(&first) = prompt.first() {
            self.push_unscored(tok, first, offset);
        }
        self.extend(tok, prompt_lps, top, offset);
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// vLLM's `Logprob`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RankedLogprob {
    pub logprob: f32,
    /// 1-based rank in the distribution; None when the token is not among the alternatives
    /// asked for (the engine does not compute ranks beyond them).
    pub rank: Option<usize>,
    pub decoded_token: String,
}

/// One prompt position in vLLM's `prompt_logprobs`: token id (a JSON key) -> logprob, the
/// prompt's own token first, then the alternatives best first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdMap(pub Vec<(u32, RankedLogprob)>);

impl Serialize for IdMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(&k.to_string(), v)?;
        }
        m.end()
    }
}

/// vLLM's `prompt_logprobs`: `null` for the first prompt token, then one map per token.
pub fn vllm_prompt_logprobs(tok: &Tokenizer, lps: &[TokenLogprobs]) -> Vec<Option<IdMap>> {
    let entry = |id: u32, logprob: f32, rank: Option<usize>| RankedLogprob {
        logprob: finite(logprob),
        rank,
        decoded_token: token_text(&token_bytes(tok, id)),
    };
    let positions = lps.iter().map(|lp| {
        let rank = lp
            .top
            .iter()
            .position(|&(t, _)| t == lp.token)
            .map(|i| i + 1);
        let mut map = vec![(lp.token, entry(lp.token, lp.logprob, rank))];
        for (i, &(id, l)) in lp.top.iter().enumerate() {
            if id != lp.token {
                map.push((id, entry(id, l, Some(i + 1))));
            }
        }
        Some(IdMap(map))
    });
    std::iter::once(None).chain(positions).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_map_is_a_bijection_over_all_bytes() {
        let mut seen = [false; 256];
        for u in 0..(256 + 68) {
            let Some(c) = char::from_u32(u) else { continue };
            if let Some(b) = byte_level_byte(c) {
                assert!(!seen[b as usize], "byte {b} reached twice");
                seen[b as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s), "every byte is reachable");
        assert_eq!(byte_level_byte('Ġ'), Some(b' ')); // U+0120 is the space
        assert_eq!(byte_level_byte('Ċ'), Some(b'\n'));
        assert_eq!(byte_level_byte('a'), Some(b'a'));
        assert_eq!(byte_level_byte('€'), None);
    }

    #[test]
    fn non_utf8_token_text_is_spelled_as_bytes() {
        assert_eq!(token_text(b"hi"), "hi");
        assert_eq!(token_text(&[0xe2, 0x82]), "bytes:\\xe2\\x82");
        assert_eq!(finite(f32::NEG_INFINITY), -9999.0);
        assert_eq!(finite(-0.5), -0.5);
    }

    fn tokenizer() -> Tokenizer {
        let dir =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tiny-llama");
        Tokenizer::from_hf_dir(&dir).expect("the tiny-llama tokenizer loads")
    }

    #[test]
    fn partial_characters_keep_their_bytes() {
        let tok = tokenizer();
        // Byte-level BPE spells byte 0xC3 (the first byte of "é") as 'Ã'.
        let id = tok.token_to_id("Ã").expect("every byte has a token");
        assert_eq!(token_bytes(&tok, id), vec![0xc3]);
        assert_eq!(token_text(&token_bytes(&tok, id)), "bytes:\\xc3");
        let space = tok.token_to_id("Ġ").expect("the space byte");
        assert_eq!(token_bytes(&tok, space), b" ".to_vec());
    }

    #[test]
    fn completion_logprobs_offsets_and_top_maps() {
        let tok = tokenizer();
        let ids = tok.encode("ab cd", false).unwrap();
        assert!(ids.len() >= 2);
        let lps: Vec<TokenLogprobs> = ids
            .iter()
            .map(|&t| TokenLogprobs {
                token: t,
                logprob: -1.5,
                top: vec![(ids[0], -0.5), (ids[1], -1.0)],
            })
            .collect();
        let mut out = CompletionLogprobs::default();
        let mut offset = 3;
        out.extend(&tok, &lps, 1, &mut offset);
        assert_eq!(out.tokens.concat(), "ab cd");
        assert_eq!(offset, 3 + "ab cd".len());
        assert_eq!(out.text_offset[0], 3);
        for (i, t) in out.tokens.iter().enumerate().skip(1) {
            assert_eq!(
                out.text_offset[i],
                out.text_offset[i - 1] + out.tokens[i - 1].len(),
                "{t}"
            );
        }
        // k = 1: the best alternative, plus the sampled token when it is not that one.
        let first = out.top_logprobs[0].as_ref().unwrap();
        assert_eq!(first.0.len(), 1, "the sampled token is the best one");
        let second = out.top_logprobs[1].as_ref().unwrap();
        assert_eq!(second.0.len(), if ids[1] == ids[0] { 1 } else { 2 });
        assert_eq!(out.token_logprobs, vec![Some(-1.5); ids.len()]);
        let chat = chat_entries(&tok, &lps, 2);
        assert_eq!(chat.len(), ids.len());
        assert_eq!(chat[0].top_logprobs.len(), 2);
        assert_eq!(chat[0].bytes, chat[0].token.as_bytes());
    }

    #[test]
    fn prompt_logprobs_in_vllm_and_echo_formats() {
        let tok = tokenizer();
        let prompt = tok.encode("ab cd", false).unwrap();
        let lps: Vec<TokenLogprobs> = prompt[1..]
            .iter()
            .map(|&t| TokenLogprobs {
                token: t,
                logprob: -2.0,
                top: vec![(prompt[0], -0.1)],
            })
            .collect();
        let v = serde_json::to_value(vllm_prompt_logprobs(&tok, &lps)).unwrap();
        let v = v.as_array().unwrap();
        assert_eq!(v.len(), prompt.len());
        assert!(v[0].is_null());
        let second = &v[1][prompt[1].to_string()];
        assert_eq!(second["logprob"], -2.0);
        assert_eq!(
            second["decoded_token"],
            token_text(&token_bytes(&tok, prompt[1]))
        );
        let rank = if prompt[1] == prompt[0] {
            serde_json::json!(1)
        } else {
            serde_json::Value::Null
        };
        assert_eq!(second["rank"], rank);

        let mut echo = CompletionLogprobs::default();
        let mut offset = 0;
        echo.push_prompt(&tok, &prompt, &lps, 1, &mut offset);
        assert_eq!(echo.tokens.concat(), "ab cd");
        assert_eq!(echo.token_logprobs[0], None);
        assert_eq!(echo.top_logprobs[0], None);
        assert_eq!(echo.token_logprobs[1..], vec![Some(-2.0); prompt.len() - 1]);
        assert_eq!(offset, 5);
    }

    #[test]
    fn top_map_keeps_order_in_json() {
        let m = TopMap(vec![("b".into(), -0.1), ("a".into(), -2.0)]);
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"b":-0.1,"a":-2.0}"#);
    }
}
