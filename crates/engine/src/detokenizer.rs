//! Incremental detokenization: turns a growing token list into text deltas without ever
//! emitting half a UTF-8 character. The tail since the last emitted text is decoded together
//! with a few tokens of context before it (so tokenizers that strip a leading space decode
//! consistently); text is emitted only when the decode does not end in U+FFFD, the mark of
//! an incomplete byte sequence. The idea is the one used by HF text-generation-inference.

pub struct IncrementalDecoder {
    tokens: Vec<u32>,
    /// Start of the context window that is decoded but not emitted.
    prefix_offset: usize,
    /// Tokens before this index have been emitted.
    read_offset: usize,
}

impl IncrementalDecoder {
    /// `prompt` provides context only; nothing of it is emitted.
    pub fn new(prompt: &[u32]) -> Self {
        let context = prompt.len().saturating_sub(5);
        Self {
            tokens: prompt.to_vec(),
            prefix_offset: context,
            read_offset: prompt.len(),
        }
    }

    /// Adds a token; returns the new text it completes, if any. With `last`, text that still
    /// ends in an incomplete character is released too (as U+FFFD): nothing will complete it.
    pub fn push<E>(
        &mut self,
        token: u32,
        decode: impl Fn(&[u32]) -> Result<String, E>,
        last: bool,
    ) -> Result<Option<String>, E> {
        self.tokens.push(token);
        let prefix = decode(&self.tokens[self.prefix_offset..self.read_offset])?;
        let full = decode(&self.tokens[self.prefix_offset..])?;
        let complete = last || !full.ends_with('\u{FFFD}');
        if full.len() > prefix.len() && complete && full.starts_with(&prefix) {
            let delta = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.tokens.len();
            Ok(Some(delta))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level "tokenizer": each token is one byte; invalid UTF-8 decodes lossily.
    fn decode(ids: &[u32]) -> Result<String, ()> {
        let bytes: Vec<u8> = ids.iter().map(|&i| i as u8).collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    #[test]
    fn multibyte_characters_wait_for_their_last_byte() {
        let text = "a€b😀";
        let mut d = IncrementalDecoder::new(&[]);
        let mut out = String::new();
        let mut deltas = 0;
        for &b in text.as_bytes() {
            if let Some(s) = d.push(b as u32, decode, false).unwrap() {
                assert!(!s.contains('\u{FFFD}'));
                out.push_str(&s);
                deltas += 1;
            }
        }
        assert_eq!(out, text);
        assert_eq!(deltas, 4);
    }

    #[test]
    fn a_last_token_releases_an_incomplete_character() {
        let mut d = IncrementalDecoder::new(&[]);
        assert_eq!(
            d.push(b'a' as u32, decode, false).unwrap().as_deref(),
            Some("a")
        );
        // The first two bytes of "€" never get their third.
        assert_eq!(d.push(0xE2, decode, false).unwrap(), None);
        let tail = d.push(0x82, decode, true).unwrap().unwrap();
        assert_eq!(tail, "\u{FFFD}");
    }
}
