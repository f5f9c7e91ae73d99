//! [`Tokenizer`]: text <-> ids for one model, with the special tokens and chat template that go with it.
//!
//! The heavy lifting is Hugging Face's `tokenizers::Tokenizer` (added-token matching, pre-tokenizer,
//! BPE with a merge cache, decoder). This type adds what lives outside tokenizer.json: BOS/EOS from
//! tokenizer_config.json, generation_config.json or GGUF metadata, the set of ids that end generation,
//! and the chat template. Encoding is O(text length) plus BPE's merge loop per pre-token (cached).
//!
//! BOS rule. With a tokenizer.json, its post-processor decides, as in transformers 5; in addition, a
//! tokenizer_config.json `add_bos_token: true` whose BOS the post-processor does not add is honoured
//! (as transformers 4 and llama.cpp's converter read that flag). From GGUF, `add_bos_token`, defaulting
//! to llama.cpp's per-pre-tokenizer default.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::chat_template::ChatTemplate;
use crate::error::{Error, Result};
use crate::gguf_vocab::{self, GgufVocab};

/// A model's tokenizer. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Tokenizer {
    hf: tokenizers::Tokenizer,
    bos: Option<SpecialToken>,
    eos: Option<SpecialToken>,
    /// Every id that ends generation: EOS, EOT, generation_config.json's `eos_token_id`s. No duplicates.
    eos_ids: Vec<u32>,
    /// Whether encode(.., true) must insert BOS / EOS itself (not done by the tokenizers post-processor).
    prepend_bos: bool,
    append_eos: bool,
    /// Whether encode(.., true) starts with BOS, by either route.
    adds_bos: bool,
    vocab_size: usize,
    chat_template: Option<ChatTemplate>,
}

#[derive(Debug, Clone)]
struct SpecialToken {
    id: u32,
    text: String,
}

impl Tokenizer {
    /// Loads a Hugging Face model directory: `tokenizer.json` (required), `tokenizer_config.json`
    /// (chat template, `bos_token`, `eos_token`, `add_bos_token`, `add_eos_token`), the chat template from
    /// `chat_template.jinja` when the config has none, and `generation_config.json` (`eos_token_id`, an
    /// int or a list) when present.
    pub fn from_hf_dir(dir: &Path) -> Result<Tokenizer> {
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(Error::BadFile {
                path: tokenizer_path,
                message: "not found (a Hugging Face model directory needs tokenizer.json)".into(),
            });
        }
        let hf = tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| Error::BadFile {
            path: tokenizer_path.clone(),
            message: e.to_string(),
        })?;

        let config_path = dir.join("tokenizer_config.json");
        let config = read_json_if_present(&config_path)?.unwrap_or(Value::Null);
        let special = |key: &str| -> Result<Option<SpecialToken>> {
            let Some(text) = token_text(&config, key, &config_path)? else {
                return Ok(None);
            };
            let id = hf.token_to_id(&text).ok_or_else(|| Error::BadFile {
                path: config_path.clone(),
                message: format!("{key} {text:?} is not in the vocabulary of tokenizer.json"),
            })?;
            Ok(Some(SpecialToken { id, text }))
        };
        let bos = special("bos_token")?;
        let eos = special("eos_token")?;
        let flag = |key: &str| -> Result<Option<bool>> {
            match config.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(b)) => Ok(Some(*b)),
                Some(other) => Err(Error::BadFile {
                    path: config_path.clone(),
                    message: format!("{key} should be true or false, found {other}"),
                }),
            }
        };
        let (add_bos_token, add_eos_token) = (flag("add_bos_token")?, flag("add_eos_token")?);

        // What the post-processor already adds, seen on an empty text.
        let probe = hf.encode_fast("", true).map_err(|e| Error::BadFile {
            path: tokenizer_path.clone(),
            message: e.to_string(),
        })?;
        let probe = probe.get_ids();
        let post_bos = bos.as_ref().is_some_and(|b| probe.first() == Some(&b.id));
        let post_eos = eos.as_ref().is_some_and(|e| probe.last() == Some(&e.id));
        let prepend_bos = add_bos_token == Some(true) && !post_bos;
        let append_eos = add_eos_token == Some(true) && !post_eos;
        if prepend_bos && bos.is_none() {
            return Err(Error::BadFile {
                path: config_path,
                message: "add_bos_token is true but there is no bos_token".into(),
            });
        }
        if append_eos && eos.is_none() {
            return Err(Error::BadFile {
                path: config_path,
                message: "add_eos_token is true but there is no eos_token".into(),
            });
        }

        let mut eos_ids: Vec<u32> = eos.iter().map(|e| e.id).collect();
        let gen_path = dir.join("generation_config.json");
        if let Some(gen_config) = read_json_if_present(&gen_path)? {
            for id in ids_field(&gen_config, "eos_token_id", &gen_path)? {
                push_unique(&mut eos_ids, id);
            }
        }

        let template_source = chat_template_source(dir, &config, &config_path)?;
        let chat_template = template_source
            .map(|source| {
                ChatTemplate::new(
                    &source,
                    bos.as_ref().map_or("", |b| &b.text),
                    eos.as_ref().map_or("", |e| &e.text),
                )
            })
            .transpose()?;
        let vocab_size = hf.get_vocab_size(true);
        let adds_bos = prepend_bos || post_bos;
        Ok(Tokenizer {
            hf,
            bos,
            eos,
            eos_ids,
            prepend_bos,
            append_eos,
            adds_bos,
            vocab_size,
            chat_template,
        })
    }

    /// Builds the tokenizer a GGUF file describes (see [`GgufVocab`] and the `gguf_vocab` module).
    pub fn from_gguf_vocab(v: GgufVocab) -> Result<Tokenizer> {
        let built = gguf_vocab::build(&v)?;
        let special = |id: Option<u32>| {
            id.map(|id| SpecialToken {
                id,
                text: v.tokens[id as usize].clone(),
            })
        };
        let bos = special(v.bos_token_id);
        let eos = special(v.eos_token_id);
        let mut eos_ids = Vec::new();
        for id in [v.eos_token_id, v.eot_token_id].into_iter().flatten() {
            push_unique(&mut eos_ids, id);
        }
        let chat_template = v
            .chat_template
            .as_deref()
            .map(|source| {
                ChatTemplate::new(
                    source,
                    bos.as_ref().map_or("", |b| &b.text),
                    eos.as_ref().map_or("", |e| &e.text),
                )
            })
            .transpose()?;
        Ok(Tokenizer {
            hf: built.hf,
            bos,
            eos,
            eos_ids,
            prepend_bos: built.add_bos,
            append_eos: built.add_eos,
            adds_bos: built.add_bos,
            vocab_size: v.tokens.len(),
            chat_template,
        })
    }

    /// A stand-in vocabulary for models that come without a tokenizer (dummy weights for
    /// benchmarks, `--load-format dummy`): token `i` is the word `<i>`, words are split on
    /// whitespace, an unknown word reads as `<0>`, and decoding joins the words with spaces.
    /// No BOS, no chat template; `eos` (if any) ends generation.
    pub fn placeholder(vocab_size: usize, eos: Option<u32>) -> Result<Tokenizer> {
        let vocab: serde_json::Map<String, Value> = (0..vocab_size)
            .map(|i| (format!("<{i}>"), Value::from(i)))
            .collect();
        let spec = serde_json::json!({
            "version": "1.0",
            "added_tokens": [],
            "normalizer": null,
            "pre_tokenizer": {"type": "WhitespaceSplit"},
            "post_processor": null,
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<0>"},
        });
        let hf: tokenizers::Tokenizer = spec
            .to_string()
            .parse()
            .map_err(|e| Error::Tokenize(format!("placeholder vocabulary: {e}")))?;
        let eos = eos
            .filter(|&id| (id as usize) < vocab_size)
            .map(|id| SpecialToken {
                id,
                text: format!("<{id}>"),
            });
        Ok(Tokenizer {
            hf,
            bos: None,
            eos_ids: eos.iter().map(|e| e.id).collect(),
            eos,
            prepend_bos: false,
            append_eos: false,
            adds_bos: false,
            vocab_size,
            chat_template: None,
        })
    }

    /// Token ids of `text`. Special tokens written in the text (like `<|im_start|>`) become their ids
    /// either way; `add_special_tokens` adds the BOS (and EOS) the model wants around a prompt.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self
            .hf
            .encode_fast(text, add_special_tokens)
            .map_err(|e| Error::Tokenize(format!("encoding: {e}")))?;
        let core = encoding.get_ids();
        if !add_special_tokens {
            return Ok(core.to_vec());
        }
        let mut ids = Vec::with_capacity(core.len() + 2);
        if let (true, Some(bos)) = (self.prepend_bos, &self.bos) {
            ids.push(bos.id);
        }
        ids.extend_from_slice(core);
        if let (true, Some(eos)) = (self.append_eos, &self.eos) {
            ids.push(eos.id);
        }
        Ok(ids)
    }

    /// The text of `ids`. An id the tokenizer does not know is an error (not silently dropped).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        if let Some(&bad) = ids.iter().find(|&&id| self.hf.id_to_token(id).is_none()) {
            return Err(Error::Tokenize(format!(
                "cannot decode unknown token id {bad} (vocabulary size {})",
                self.vocab_size
            )));
        }
        self.hf
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenize(format!("decoding: {e}")))
    }

    /// The vocabulary entry of `id` as stored (byte-level BPE spells a space as "Ġ").
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.hf.id_to_token(id)
    }

    /// The id of a vocabulary entry or added token, spelled as stored.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.hf.token_to_id(token)
    }

    /// Number of token ids: the GGUF token count, or tokenizer.json's vocabulary plus added tokens.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos.as_ref().map(|b| b.id)
    }

    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos.as_ref().map(|e| e.id)
    }

    /// Every id that ends generation: EOS, EOT (GGUF), and generation_config.json's `eos_token_id`s.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos.as_ref().map(|b| b.text.as_str())
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos.as_ref().map(|e| e.text.as_str())
    }

    /// Whether `encode(.., true)` puts a BOS first.
    pub fn adds_bos(&self) -> bool {
        self.adds_bos
    }

    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// The wrapped Hugging Face tokenizer, for what this type does not expose (e.g. `decode_stream`).
    pub fn hf(&self) -> &tokenizers::Tokenizer {
        &self.hf
    }
}

fn push_unique(ids: &mut Vec<u32>, id: u32) {
    if !ids.contains(&id) {
        ids.push(id);
    }
}

fn read_json_if_present(path: &Path) -> Result<Option<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::BadFile {
            path: path.to_owned(),
            message: format!("invalid JSON: {e}"),
        })
}

/// A special token in tokenizer_config.json: a string, or an object whose `content` is the string
/// (the AddedToken form), or null/absent.
fn token_text(config: &Value, key: &str, path: &Path) -> Result<Option<String>> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(bad(
                path,
                format!("{key} is an object without a string \"content\""),
            )),
        },
        Some(other) => Err(bad(
            path,
            format!("{key} should be a string or an object with \"content\", found {other}"),
        )),
    }
}

/// An id field that may be an integer or a list of integers (generation_config.json `eos_token_id`).
fn ids_field(config: &Value, key: &str, path: &Path) -> Result<Vec<u32>> {
    let one = |v: &Value| -> Result<u32> {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(path, format!("{key} should hold token ids, found {v}")))
    };
    match config.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(one).collect(),
        Some(v) => Ok(vec![one(v)?]),
    }
}

/// The chat template: tokenizer_config.json's `chat_template` (a string, or a list of {name, template}
/// from which "default" is taken, else the first), else the file chat_template.jinja.
fn chat_template_source(dir: &Path, config: &Value, config_path: &Path) -> Result<Option<String>> {
    match config.get("chat_template") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => return Ok(Some(s.clone())),
        Some(Value::Array(list)) => {
            let mut named = Vec::with_capacity(list.len());
            for item in list {
                let name = item.get("name").and_then(Value::as_str);
                let template = item.get("template").and_then(Value::as_str);
                match (name, template) {
                    (Some(name), Some(template)) => named.push((name, template)),
                    _ => {
                        return Err(bad(
                            config_path,
                            "chat_template list entries need string \"name\" and \"template\""
                                .into(),
                        ));
                    }
                }
            }
            let chosen = named
                .iter()
                .find(|(name, _)| *name == "default")
                .or(named.first());
            return Ok(chosen.map(|(_, template)| template.to_string()));
        }
        Some(other) => {
            return Err(bad(
                config_path,
                format!(
                    "chat_template should be a string or a list, found {}",
                    kind_of(other)
                ),
            ));
        }
    }
    let jinja: PathBuf = dir.join("chat_template.jinja");
    match std::fs::read_to_string(&jinja) {
        Ok(source) => Ok(Some(source)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            path: jinja,
            source,
        }),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn bad(path: &Path, message: String) -> Error {
    Error::BadFile {
        path: path.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::Tokenizer;

    #[test]
    fn placeholder_round_trips_every_id_and_knows_its_eos() {
        let tok = Tokenizer::placeholder(1000, Some(999)).unwrap();
        assert_eq!(tok.vocab_size(), 1000);
        assert_eq!(tok.eos_token_ids(), &[999]);
        assert_eq!(tok.bos_token_id(), None);
        let ids: Vec<u32> = vec![0, 7, 998, 999, 42, 42];
        let text = tok.decode(&ids, false).unwrap();
        assert_eq!(text, "<0> <7> <998> <999> <42> <42>");
        assert_eq!(tok.encode(&text, true).unwrap(), ids);
        assert_eq!(tok.encode("hello <5>", false).unwrap(), vec![0, 5]);
        assert!(tok.decode(&[1000], false).is_err());
        assert!(
            Tokenizer::placeholder(10, Some(10))
                .unwrap()
                .eos_token_ids()
                .is_empty()
        );
    }
}
