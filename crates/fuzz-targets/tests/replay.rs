//! The fuzz targets in the normal suite: every input of the committed corpora
//! (fuzz/corpus/<target>/, grown by `cargo fuzz run` and minimized with `-merge=1`) replayed
//! through the same bodies libFuzzer drives, then a short proptest run per target that
//! mutates those inputs (bit flips, byte overwrites, truncation) or builds structured ones
//! (JSON requests, chat messages) where blind mutation rarely gets past the first check.
//! Passing means no input panicked.

use std::path::PathBuf;

use ingot_fuzz_targets::{model_file, request, text};
use proptest::prelude::*;
use serde_json::{Value, json};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn replay(target: &str, body: fn(&[u8])) {
    let inputs = corpus(target);
    for input in &inputs {
        body(input);
    }
    eprintln!("{target}: {} corpus inputs replayed", inputs.len());
}

#[test]
fn corpora_replay_without_panics() {
    replay("gguf", model_file::gguf);
    replay("safetensors", model_file::safetensors);
    replay("tokenizer", text::tokenizer);
    replay("chat_template", text::chat_template);
    replay("request", request::request);
}

/// A corpus input with `edits` applied: (position, byte) overwrites, then a truncation.
fn mutated(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let inputs = corpus(target);
    let n = inputs.len();
    (
        0..n,
        prop::collection::vec((any::<u32>(), any::<u8>()), 0..8),
        any::<Option<u32>>(),
    )
        .prop_map(move |(i, edits, cut)| {
            let mut data = inputs[i].clone();
            if !data.is_empty() {
                for (pos, byte) in edits {
                    let at = pos as usize % data.len();
                    data[at] = byte;
                }
            }
            if let Some(cut) = cut {
                data.truncate(cut as usize % (data.len() + 1));
            }
            data
        })
}

/// Any JSON value, nested a few levels, with numbers at the edges of every type.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            0i64,
            -1,
            1,
            2,
            128,
            129,
            1024,
            1025,
            1_000_000,
            i64::MAX
        ])
        .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::hash_map("[a-z_0-9]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A request body: known fields (of every endpoint) with arbitrary values.
fn request_body() -> impl Strategy<Value = Vec<u8>> {
    let keys = vec![
        "model",
        "prompt",
        "messages",
        "n",
        "best_of",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "stop",
        "stop_token_ids",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "prompt_logprobs",
        "seed",
        "echo",
        "stream",
        "stream_options",
        "min_tokens",
        "presence_penalty",
        "repetition_penalty",
        "tokens",
        "add_special_tokens",
        "continue_final_message",
        "add_generation_prompt",
        "chat_template_kwargs",
        "ignore_eos",
        "priority",
        "suffix",
        "response_format",
        "structured_outputs",
        "guided_json",
        "guided_regex",
        "guided_choice",
        "guided_grammar",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
    ];
    prop::collection::vec((prop::sample::select(keys), json_value()), 0..8).prop_map(|fields| {
        let o: serde_json::Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        serde_json::to_vec(&o).unwrap()
    })
}

/// Chat messages of known and unknown roles, string or part-list content.
fn messages() -> impl Strategy<Value = Vec<u8>> {
    let role = prop::sample::select(vec!["system", "user", "assistant", "tool", "developer", ""]);
    let content = prop_oneof![
        ".{0,60}".prop_map(Value::from),
        prop::collection::vec(
            ".{0,20}".prop_map(|t| json!({"type": "text", "text": t})),
            0..3
        )
        .prop_map(Value::from),
        json_value(),
    ];
    prop::collection::vec((role, content), 0..6).prop_map(|ms| {
        let v: Vec<Value> = ms
            .into_iter()
            .map(|(r, c)| json!({"role": r, "content": c}))
            .collect();
        serde_json::to_vec(&v).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_gguf_files(data in mutated("gguf")) {
        model_file::gguf(&data);
    }

    #[test]
    fn mutated_safetensors_files(data in mutated("safetensors")) {
        model_file::safetensors(&data);
    }

    #[test]
    fn arbitrary_text_and_ids(data in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        ".{0,200}".prop_map(String::into_bytes),
        mutated("tokenizer"),
    ]) {
        text::tokenizer(&data);
    }

    #[test]
    fn arbitrary_chat_messages(data in prop_oneof![messages(), mutated("chat_template")]) {
        text::chat_template(&data);
    }

    #[test]
    fn arbitrary_request_bodies(data in prop_oneof![request_body(), mutated("request")]) {
        request::request(&data);
    }
}
