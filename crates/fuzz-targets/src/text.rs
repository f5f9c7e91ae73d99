//! Tokenizers and chat templates on arbitrary input. The tokenizers are those of the tiny
//! test models: one built from GGUF metadata (as for every `.gguf` model) and one from a
//! Hugging Face `tokenizer.json`. Templates are those models' own plus the test templates
//! of testdata/tokenizer/templates.json (Python string methods, `tojson`, namespaces,
//! `raise_exception`).

use std::sync::OnceLock;

use ingot_models::{ModelFiles, ModelSource};
use ingot_server::openai::chat::protocol::{ChatMessage, render_chat};
use ingot_tokenizer::{ChatTemplate, Tokenizer};
use serde_json::{Map, Value, json};

use crate::testdata;

fn tokenizers() -> &'static [Tokenizer] {
    static TOKS: OnceLock<Vec<Tokenizer>> = OnceLock::new();
    TOKS.get_or_init(|| {
        let gguf = testdata("tiny-llama/tiny-llama-q8_0.gguf");
        let from_gguf = ModelFiles::open(ModelSource::Gguf(gguf))
            .expect("the tiny GGUF opens")
            .tokenizer;
        let hf = Tokenizer::from_hf_dir(&testdata("tiny-qwen2")).expect("the tiny tokenizer loads");
        vec![from_gguf, hf]
    })
}

fn test_templates() -> &'static [ChatTemplate] {
    static TEMPLATES: OnceLock<Vec<ChatTemplate>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let path = testdata("tokenizer/templates.json");
        let text = std::fs::read_to_string(&path).expect("templates.json reads");
        let v: Value = serde_json::from_str(&text).expect("templates.json parses");
        v["templates"]
            .as_object()
            .expect("a 'templates' object")
            .values()
            .map(|t| {
                let source = t["source"].as_str().expect("a template source");
                ChatTemplate::new(source, "<s>", "</s>").expect("the test template compiles")
            })
            .collect()
    })
}

/// Encodes `data` as text (with and without special tokens) and decodes the result; decodes
/// `data` read as token ids, in and out of the vocabulary.
pub fn tokenizer(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for tok in tokenizers() {
        for special in [false, true] {
            if let Ok(ids) = tok.encode(&text, special) {
                let _ = tok.decode(&ids, true);
                let _ = tok.decode(&ids, false);
            }
        }
        let span = tok.vocab_size() as u32 + 16;
        let ids: Vec<u32> = data
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32 % span)
            .collect();
        let _ = tok.decode(&ids, false);
        let _ = tok.decode(&ids, true);
        for &id in ids.iter().take(32) {
            let _ = tok.id_to_token(id);
        }
        let _ = tok.token_to_id(&text);
    }
}

/// Renders messages made from `data` through every template. JSON input is used as is:
/// an array as the messages (typed, as the server parses them, and raw, as a template
/// could be handed them), an object's `messages` and `kwargs`; other input is cut at NUL
/// bytes into messages of rotating roles.
pub fn chat_template(data: &[u8]) {
    let flags = data.first().copied().unwrap_or(0);
    let (messages, kwargs) = match serde_json::from_slice::<Value>(data) {
        Ok(Value::Array(items)) => (items, Map::new()),
        Ok(Value::Object(o)) => (
            o.get("messages")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            o.get("kwargs")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        ),
        _ => {
            let roles = ["system", "user", "assistant", "tool", "developer"];
            let items = String::from_utf8_lossy(data)
                .split('\0')
                .enumerate()
                .map(|(i, c)| json!({"role": roles[(i + flags as usize) % roles.len()], "content": c}))
                .collect();
            (items, Map::new())
        }
    };
    let add_generation_prompt = flags & 1 == 1;
    for template in test_templates() {
        let _ = template.render_with(&messages, add_generation_prompt, &kwargs);
    }
    let Ok(typed) = serde_json::from_value::<Vec<ChatMessage>>(Value::Array(messages)) else {
        return;
    };
    for tok in tokenizers() {
        let _ = render_chat(
            tok,
            &typed,
            add_generation_prompt,
            flags & 2 == 2,
            flags & 4 == 4,
            Some(&kwargs),
            None,
        );
    }
}
