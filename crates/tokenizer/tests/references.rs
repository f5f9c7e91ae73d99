//! ingot-tokenizer against Hugging Face transformers.
//!
//! The references in testdata/tokenizer/ come from tools/gen_tokenizer_refs.py (transformers + tokenizers +
//! jinja2): token ids and decodes of tricky texts for SmolLM2's GGUF vocabulary (and the same vocabulary
//! under the "qwen2" and "llama-bpe" pre-tokenizers), chat-template renders, and a tiny tokenizer.json
//! directory. Every comparison is exact: ids are integers, and text is compared byte for byte.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ingot_tokenizer::{ChatTemplate, Error, GgufVocab, Tokenizer};
use serde_json::{Map, Value, json};
use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tokenizer")
}

fn read_json(name: &str) -> Value {
    let path = testdata().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap() as u32)
        .collect()
}

/// The GGUF metadata dump, in the form ingot-models hands over.
fn smollm2_vocab() -> GgufVocab {
    static META: OnceLock<Value> = OnceLock::new();
    let m = META.get_or_init(|| read_json("smollm2_vocab.json"));
    let id = |key: &str| m.get(key).map(|v| v.as_u64().unwrap() as u32);
    GgufVocab {
        model: m["tokenizer.ggml.model"].as_str().unwrap().to_owned(),
        pre: m
            .get("tokenizer.ggml.pre")
            .map(|v| v.as_str().unwrap().to_owned()),
        tokens: strings(&m["tokenizer.ggml.tokens"]),
        token_types: m["tokenizer.ggml.token_type"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_i64().unwrap() as i32)
            .collect(),
        merges: strings(&m["tokenizer.ggml.merges"]),
        scores: Vec::new(),
        add_space_prefix: None,
        bos_token_id: id("tokenizer.ggml.bos_token_id"),
        eos_token_id: id("tokenizer.ggml.eos_token_id"),
        unknown_token_id: id("tokenizer.ggml.unknown_token_id"),
        padding_token_id: id("tokenizer.ggml.padding_token_id"),
        eot_token_id: id("tokenizer.ggml.eot_token_id"),
        add_bos_token: m
            .get("tokenizer.ggml.add_bos_token")
            .map(|v| v.as_bool().unwrap()),
        add_eos_token: m
            .get("tokenizer.ggml.add_eos_token")
            .map(|v| v.as_bool().unwrap()),
        chat_template: m
            .get("tokenizer.chat_template")
            .map(|v| v.as_str().unwrap().to_owned()),
    }
}

fn smollm2() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| Tokenizer::from_gguf_vocab(smollm2_vocab()).unwrap())
}

fn refs() -> &'static Value {
    static REFS: OnceLock<Value> = OnceLock::new();
    REFS.get_or_init(|| read_json("smollm2_refs.json"))
}

#[test]
fn smollm2_ids_and_decodes_match_transformers() {
    let tok = smollm2();
    let texts = refs()["texts"].as_array().unwrap();
    assert!(texts.len() >= 20);
    let mut original_pre_rows = 0;
    for row in texts {
        let text = row["text"].as_str().unwrap();
        // Where transformers' GGUF converter lacks SmolLM2's digit split, the generator also recorded the ids
        // of SmolLM2's own tokenizer.json pre-tokenizer; this crate follows that one (and llama.cpp).
        let expected = match row.get("ids_hf_original_pre") {
            Some(v) => {
                original_pre_rows += 1;
                ids(v)
            }
            None => ids(&row["ids"]),
        };
        assert_eq!(
            tok.encode(text, false).unwrap(),
            expected,
            "ids of {text:?}"
        );
        // SmolLM2 adds no BOS, so add_special_tokens changes nothing (transformers agrees).
        assert_eq!(
            ids(&row["ids_with_special"]),
            ids(&row["ids"]),
            "reference for {text:?}"
        );
        assert_eq!(
            tok.encode(text, true).unwrap(),
            expected,
            "ids with special tokens of {text:?}"
        );
        let reference_ids = ids(&row["ids_with_special"]);
        assert_eq!(
            tok.decode(&reference_ids, false).unwrap(),
            row["decoded"].as_str().unwrap(),
            "decode of {text:?}"
        );
        assert_eq!(
            tok.decode(&reference_ids, true).unwrap(),
            row["decoded_skip_special"].as_str().unwrap(),
            "decode of {text:?} skipping special tokens"
        );
        assert_eq!(
            tok.decode(&expected, false).unwrap(),
            text,
            "round trip of {text:?}"
        );
    }
    assert_eq!(
        original_pre_rows, 1,
        "only the non-ASCII numerals text should differ between the pre-tokenizers"
    );
}

#[test]
fn smollm2_special_tokens() {
    let tok = smollm2();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_token(), refs()["bos_token"].as_str());
    assert_eq!(tok.eos_token(), refs()["eos_token"].as_str());
    assert_eq!((tok.bos_token_id(), tok.eos_token_id()), (Some(1), Some(2)));
    assert_eq!(tok.eos_token_ids(), &[2]);
    assert!(!tok.adds_bos());
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
    assert_eq!(tok.id_to_token(216).as_deref(), Some("Ġ"));
    let err = tok.decode(&[5, 49152], false).unwrap_err().to_string();
    assert!(err.contains("unknown token id 49152"), "{err}");
}

#[test]
fn smollm2_chat_template_matches_transformers() {
    let template = smollm2()
        .chat_template()
        .expect("the GGUF carries a chat template");
    let chats = refs()["chats"].as_array().unwrap();
    assert!(chats.len() >= 6);
    for chat in chats {
        let messages = chat["messages"].as_array().unwrap();
        let add = chat["add_generation_prompt"].as_bool().unwrap();
        assert_eq!(
            template.render(messages, add).unwrap(),
            chat["rendered"].as_str().unwrap(),
            "{chat}"
        );
    }
    // OpenAI-style text parts render as the joined string (this template only concatenates strings).
    let parts = json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]}]);
    let joined = json!([{"role": "user", "content": "Hi\nthere"}]);
    assert_eq!(
        template.render(parts.as_array().unwrap(), true).unwrap(),
        template.render(joined.as_array().unwrap(), true).unwrap()
    );
}

/// The pieces the tokenizer's pre-tokenizer cuts `text` into, byte-level spelled.
fn pieces(tok: &Tokenizer, text: &str) -> Vec<String> {
    let mut pre = PreTokenizedString::from(text);
    tok.hf()
        .get_pre_tokenizer()
        .expect("a pre-tokenizer")
        .pre_tokenize(&mut pre)
        .unwrap();
    pre.get_splits(OffsetReferential::Original, OffsetType::Byte)
        .into_iter()
        .map(|(s, _, _)| s.to_owned())
        .collect()
}

#[test]
fn qwen2_and_llama_bpe_pre_tokenizers_match_transformers() {
    for pre in ["qwen2", "llama-bpe"] {
        let mut vocab = smollm2_vocab();
        vocab.pre = Some(pre.to_owned());
        let tok = Tokenizer::from_gguf_vocab(vocab).unwrap();
        let rows = refs()["pre_variants"][pre].as_array().unwrap();
        assert!(rows.len() >= 20);
        for row in rows {
            let text = row["text"].as_str().unwrap();
            assert_eq!(
                pieces(&tok, text),
                strings(&row["pieces"]),
                "{pre} pieces of {text:?}"
            );
            assert_eq!(
                tok.encode(text, false).unwrap(),
                ids(&row["ids"]),
                "{pre} ids of {text:?}"
            );
        }
        // The file says add_bos_token = false; without that key llama.cpp adds BOS for "llama-bpe" only.
        assert!(!tok.adds_bos());
        let vocab = GgufVocab {
            pre: Some(pre.to_owned()),
            add_bos_token: None,
            ..smollm2_vocab()
        };
        let tok = Tokenizer::from_gguf_vocab(vocab).unwrap();
        assert_eq!(tok.adds_bos(), pre == "llama-bpe");
        let with_special = tok.encode("hi", true).unwrap();
        assert_eq!(
            with_special[0] == 1,
            pre == "llama-bpe",
            "{pre}: {with_special:?}"
        );
        assert_eq!(
            with_special[with_special.len() - 1..],
            tok.encode("hi", false).unwrap()[..]
        );
    }
    // The smollm rows of the same texts: digits are cut out one by one before GPT-2's regex.
    assert_eq!(pieces(smollm2(), "ab 123"), ["ab", "Ġ", "1", "2", "3"]);
}

#[test]
fn gguf_errors_name_the_key_and_the_choices() {
    let mut vocab = smollm2_vocab();
    vocab.pre = Some("no-such-pre".into());
    let err = Tokenizer::from_gguf_vocab(vocab).unwrap_err().to_string();
    assert!(err.contains("tokenizer.ggml.pre \"no-such-pre\""), "{err}");
    for name in ingot_tokenizer::SUPPORTED_GGUF_PRE {
        assert!(err.contains(name), "{err} lacks {name}");
    }
    let mut vocab = smollm2_vocab();
    vocab.model = "bert".into();
    let err = Tokenizer::from_gguf_vocab(vocab).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.ggml.model \"bert\"") && err.contains("gpt2"),
        "{err}"
    );
    let mut vocab = smollm2_vocab();
    vocab.chat_template = Some("{% if %}".into());
    let err = Tokenizer::from_gguf_vocab(vocab).unwrap_err();
    assert!(
        matches!(&err, Error::Template(m) if m.contains("chat_template:1")),
        "{err}"
    );
}

/// A small deterministic generator (SplitMix64) for the random texts below.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[test]
fn random_texts_round_trip_and_specials_stay_whole() {
    // Byte-level BPE without a normalizer is lossless: decode(encode(s)) == s for any string.
    let pool: Vec<char> = "aZ09 \t\n\r.,'!?-_<|>éßøΩЖ中文日本한ا١½²🦀👍🏽\u{200d}\u{301}\u{feff}"
        .chars()
        .collect();
    let fragments = ["<|im_start|>", "<|im_end|>", "<|im_", "'s", "   ", "1234"];
    let mut rng = SplitMix(0x1234_5678);
    for tok in [
        smollm2(),
        &Tokenizer::from_gguf_vocab(GgufVocab {
            pre: Some("qwen2".into()),
            ..smollm2_vocab()
        })
        .unwrap(),
    ] {
        for _ in 0..300 {
            let len = (rng.next() % 40) as usize;
            let mut text = String::new();
            for _ in 0..len {
                if rng.next().is_multiple_of(8) {
                    text.push_str(fragments[(rng.next() % fragments.len() as u64) as usize]);
                } else {
                    text.push(pool[(rng.next() % pool.len() as u64) as usize]);
                }
            }
            let encoded = tok.encode(&text, false).unwrap();
            assert_eq!(tok.decode(&encoded, false).unwrap(), text);
            let specials =
                text.matches("<|im_start|>").count() + text.matches("<|im_end|>").count();
            let special_ids = encoded.iter().filter(|&&id| id == 1 || id == 2).count();
            assert_eq!(special_ids, specials, "{text:?} -> {encoded:?}");
        }
    }
}

fn tiny_dir() -> PathBuf {
    testdata().join("tiny_hf")
}

#[test]
fn tiny_hf_dir_matches_transformers() {
    let tok = Tokenizer::from_hf_dir(&tiny_dir()).unwrap();
    let r = read_json("tiny_hf_refs.json");
    assert_eq!(tok.vocab_size() as u64, r["vocab_size"].as_u64().unwrap());
    assert_eq!(tok.bos_token(), r["bos_token"].as_str());
    assert_eq!(tok.eos_token(), r["eos_token"].as_str());
    // eos_token first, then generation_config.json's list [2, 0] without repeating 2.
    assert_eq!(tok.eos_token_ids(), &[2, 0]);
    assert!(tok.adds_bos());
    for row in r["texts"].as_array().unwrap() {
        let text = row["text"].as_str().unwrap();
        assert_eq!(
            tok.encode(text, false).unwrap(),
            ids(&row["ids"]),
            "ids of {text:?}"
        );
        let with_special = ids(&row["ids_with_special"]);
        assert_eq!(
            tok.encode(text, true).unwrap(),
            with_special,
            "ids with special tokens of {text:?}"
        );
        assert_eq!(
            tok.decode(&with_special, false).unwrap(),
            row["decoded"].as_str().unwrap()
        );
        assert_eq!(
            tok.decode(&with_special, true).unwrap(),
            row["decoded_skip_special"].as_str().unwrap()
        );
    }
    let template = tok.chat_template().unwrap();
    for chat in r["chats"].as_array().unwrap() {
        let add = chat["add_generation_prompt"].as_bool().unwrap();
        assert_eq!(
            template
                .render(chat["messages"].as_array().unwrap(), add)
                .unwrap(),
            chat["rendered"].as_str().unwrap()
        );
    }
}

#[test]
fn hand_written_templates_match_transformers() {
    let t = read_json("templates.json");
    let templates = t["templates"].as_object().unwrap();
    assert_eq!(templates.len(), 5);
    for (name, entry) in templates {
        let template = ChatTemplate::new(
            entry["source"].as_str().unwrap(),
            "<|endoftext|>",
            "<|im_end|>",
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        for render in entry["renders"].as_array().unwrap() {
            let mut extra = Map::new();
            if let Some(tools) = render.get("tools") {
                extra.insert("tools".into(), tools.clone());
            }
            let got = template
                .render_with(
                    render["messages"].as_array().unwrap(),
                    render["add_generation_prompt"].as_bool().unwrap(),
                    &extra,
                )
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, render["rendered"].as_str().unwrap(), "template {name}");
        }
    }
    let tiny = Tokenizer::from_hf_dir(&tiny_dir()).unwrap();
    for case in t["errors"].as_array().unwrap() {
        let name = case["template"].as_str().unwrap();
        let template = match name {
            "tiny" => tiny.chat_template().unwrap().clone(),
            _ => ChatTemplate::new(templates[name]["source"].as_str().unwrap(), "", "").unwrap(),
        };
        let err = template
            .render(case["messages"].as_array().unwrap(), false)
            .unwrap_err();
        let expected = case["message"].as_str().unwrap();
        assert!(
            matches!(&err, Error::TemplateRaised(m) if m == expected),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(expected));
    }
}

/// A copy of tiny_hf/ in a temporary directory, with `edit` applied to its tokenizer_config.json.
fn tiny_variant(edit: impl FnOnce(&mut Map<String, Value>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["tokenizer.json", "generation_config.json"] {
        std::fs::copy(tiny_dir().join(name), dir.path().join(name)).unwrap();
    }
    let mut config = read_json("tiny_hf/tokenizer_config.json");
    edit(config.as_object_mut().unwrap());
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    dir
}

#[test]
fn hf_dir_chat_template_forms() {
    // A list of named templates: "default" is taken, wherever it stands.
    let dir = tiny_variant(|c| {
        c.insert(
            "chat_template".into(),
            json!([{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "default {{ eos_token }}"}]),
        );
    });
    let tok = Tokenizer::from_hf_dir(dir.path()).unwrap();
    assert_eq!(
        tok.chat_template().unwrap().render(&[], false).unwrap(),
        "default <|im_end|>"
    );
    // No template in the config: chat_template.jinja.
    let dir = tiny_variant(|c| {
        c.remove("chat_template");
    });
    assert!(
        Tokenizer::from_hf_dir(dir.path())
            .unwrap()
            .chat_template()
            .is_none()
    );
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "from file {{ bos_token }}\n",
    )
    .unwrap();
    let tok = Tokenizer::from_hf_dir(dir.path()).unwrap();
    assert_eq!(
        tok.chat_template().unwrap().render(&[], false).unwrap(),
        "from file <|endoftext|>"
    );
    // A template that fails to parse names the template and line.
    let dir = tiny_variant(|c| {
        c.insert("chat_template".into(), json!("line one\n{% for x in %}"));
    });
    let err = Tokenizer::from_hf_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("chat_template:2"), "{err}");
}

#[test]
fn hf_dir_bos_and_eos_settings() {
    // Without a post-processor, add_bos_token: true makes encode prepend BOS itself.
    let dir = tiny_variant(|_| {});
    let mut tokenizer_json = read_json("tiny_hf/tokenizer.json");
    tokenizer_json["post_processor"] = Value::Null;
    std::fs::write(
        dir.path().join("tokenizer.json"),
        tokenizer_json.to_string(),
    )
    .unwrap();
    let tok = Tokenizer::from_hf_dir(dir.path()).unwrap();
    assert_eq!(
        tok.encode("hello world", true).unwrap(),
        [0, 270, 223, 89, 268, 78, 70]
    );
    assert_eq!(
        tok.encode("hello world", false).unwrap(),
        [270, 223, 89, 268, 78, 70]
    );
    // ... and add_bos_token: false leaves it out; add_eos_token appends EOS.
    let mut config = read_json("tiny_hf/tokenizer_config.json");
    config["add_bos_token"] = json!(false);
    config["add_eos_token"] = json!(true);
    config["eos_token"] = json!({"content": "<|im_end|>", "special": true});
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": 1}"#,
    )
    .unwrap();
    let tok = Tokenizer::from_hf_dir(dir.path()).unwrap();
    assert!(!tok.adds_bos());
    assert_eq!(
        tok.encode("hello world", true).unwrap(),
        [270, 223, 89, 268, 78, 70, 2]
    );
    assert_eq!(tok.eos_token_ids(), &[2, 1]);
}

#[test]
fn hf_dir_errors_name_the_file() {
    let empty = tempfile::tempdir().unwrap();
    let err = Tokenizer::from_hf_dir(empty.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&empty.path().join("tokenizer.json").display().to_string())
            && err.contains("not found"),
        "{err}"
    );

    let dir = tiny_variant(|c| {
        c.insert("bos_token".into(), json!("<|nope|>"));
    });
    let err = Tokenizer::from_hf_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer_config.json")
            && err.contains("\"<|nope|>\" is not in the vocabulary"),
        "{err}"
    );

    let dir = tiny_variant(|c| {
        c.insert("chat_template".into(), json!(42));
    });
    let err = Tokenizer::from_hf_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("chat_template should be a string or a list, found a number"),
        "{err}"
    );

    let dir = tiny_variant(|_| {});
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": "two"}"#,
    )
    .unwrap();
    let err = Tokenizer::from_hf_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("generation_config.json")
            && err.contains("eos_token_id should hold token ids"),
        "{err}"
    );

    std::fs::write(dir.path().join("generation_config.json"), "{not json").unwrap();
    let err = Tokenizer::from_hf_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("generation_config.json: invalid JSON"),
        "{err}"
    );

    std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
    let err = Tokenizer::from_hf_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json:"), "{err}");
}

#[test]
fn tokenizer_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tokenizer>();
}
