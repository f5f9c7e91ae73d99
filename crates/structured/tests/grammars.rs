//! Constraints over a real tokenizer (the tiny-llama fixture's byte-level BPE, 381 tokens in
//! a model vocabulary of 384): masks allow exactly what the grammar allows, walks through
//! them produce matching text whichever allowed token is taken, the grammar's end forces
//! EOS, and invalid schemas, regexes and grammars are errors with the parser's message.

use std::path::PathBuf;
use std::sync::Arc;

use ingot_structured::{Constraint, Grammars, Next, StructuredOutput};
use ingot_tokenizer::Tokenizer;

const VOCAB: usize = 384; // the fixture model's logits width (3 padded ids)

fn tokenizer() -> Arc<Tokenizer> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tiny-llama");
    Arc::new(Tokenizer::from_hf_dir(&dir).expect("the tiny-llama tokenizer loads"))
}

fn allowed(words: &[u32]) -> Vec<u32> {
    (0..VOCAB as u32)
        .filter(|&t| words[t as usize / 32] >> (t % 32) & 1 == 1)
        .collect()
}

/// Walks `c` to its end taking the `pick`-th allowed token (mod the count) at each step;
/// returns the text before EOS, or None if it did not end within `limit` tokens.
fn walk(
    c: &mut Constraint,
    tok: &Tokenizer,
    limit: usize,
    mut pick: impl FnMut(usize) -> usize,
) -> Option<String> {
    let eos = tok.eos_token_ids().to_vec();
    let mut words = vec![0u32; VOCAB.div_ceil(32)];
    let mut out = Vec::new();
    for _ in 0..limit {
        let next = c.mask(&mut words).expect("mask");
        let ok = allowed(&words);
        assert!(
            ok.iter().all(|&t| (t as usize) < tok.vocab_size()),
            "padded ids allowed"
        );
        let t = match next {
            Next::Forced(t) => {
                assert_eq!(ok, vec![t]);
                t
            }
            Next::Masked => {
                assert!(ok.len() > 1);
                ok[pick(ok.len())]
            }
        };
        if eos.contains(&t) {
            return Some(tok.decode(&out, false).unwrap());
        }
        c.commit(t).expect("commit an allowed token");
        out.push(t);
    }
    None
}

fn lcg(seed: u64) -> impl FnMut(usize) -> usize {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd1b5_4a32_d192_ed03;
    move |n| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as usize) % n
    }
}

#[test]
fn regex_masks_allow_only_matching_tokens() {
    let tok = tokenizer();
    let g = Grammars::new(tok.clone(), VOCAB).unwrap();
    for seed in 0..20 {
        let mut c = g
            .compile(&StructuredOutput::Regex("[0-9]{3}-(ab|cd)".into()))
            .unwrap();
        let text = walk(&mut c, &tok, 50, lcg(seed)).expect("ends");
        let b = text.as_bytes();
        assert!(
            b.len() == 6
                && b[..3].iter().all(u8::is_ascii_digit)
                && b[3] == b'-'
                && (&b[4..] == b"ab" || &b[4..] == b"cd"),
            "{text:?}"
        );
    }
}

#[test]
fn choice_and_lark_grammar() {
    let tok = tokenizer();
    let g = Grammars::new(tok.clone(), VOCAB).unwrap();
    let choices = vec!["hello world".to_string(), "he said (a+b)*".to_string()];
    let mut seen = std::collections::HashSet::new();
    for seed in 0..40 {
        let mut c = g
            .compile(&StructuredOutput::Choice(choices.clone()))
            .unwrap();
        let text = walk(&mut c, &tok, 50, lcg(seed)).expect("ends");
        assert!(choices.contains(&text), "{text:?}");
        seen.insert(text);
    }
    assert_eq!(seen.len(), 2, "both choices are reachable");
    let lark = "start: item (\", \" item)*\nitem: \"red\" | \"green\" | /[0-9]/";
    for seed in 0..10 {
        let mut c = g.compile(&StructuredOutput::Grammar(lark.into())).unwrap();
        if let Some(text) = walk(&mut c, &tok, 60, lcg(seed)) {
            for item in text.split(", ") {
                assert!(
                    item == "red"
                        || item == "green"
                        || (item.len() == 1 && item.as_bytes()[0].is_ascii_digit()),
                    "{text:?}"
                );
            }
        }
    }
}

#[test]
fn json_schema_walks_give_valid_json() {
    let tok = tokenizer();
    let g = Grammars::new(tok.clone(), VOCAB).unwrap();
    let schema = r#"{"type": "object", "properties": {"ok": {"type": "boolean"},
        "color": {"enum": ["red", "green"]}, "n": {"type": "integer", "minimum": 0, "maximum": 99}},
        "required": ["ok", "color", "n"], "additionalProperties": false}"#;
    for seed in 0..20 {
        let mut c = g
            .compile(&StructuredOutput::JsonSchema(schema.into()))
            .unwrap();
        let text = walk(&mut c, &tok, 200, lcg(seed)).expect("ends");
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert!(v["ok"].is_boolean(), "{text}");
        assert!(v["color"] == "red" || v["color"] == "green", "{text}");
        assert!(v["n"].as_u64().is_some_and(|n| n <= 99), "{text}");
        assert_eq!(v.as_object().unwrap().len(), 3, "{text}");
    }
    // json_object: any object; the first token must open it.
    let mut c = g.compile(&StructuredOutput::JsonObject).unwrap();
    let mut words = vec![0u32; VOCAB.div_ceil(32)];
    c.mask(&mut words).unwrap();
    for t in allowed(&words) {
        let s = tok.decode(&[t], false).unwrap();
        assert!(s.starts_with('{'), "{s:?}");
    }
}

#[test]
fn a_single_allowed_token_is_forced() {
    let tok = tokenizer();
    let g = Grammars::new(tok.clone(), VOCAB).unwrap();
    // A one-string choice: every step allows exactly one token, at the end EOS.
    let mut c = g
        .compile(&StructuredOutput::Choice(vec!["x".into()]))
        .unwrap();
    let mut words = vec![0u32; VOCAB.div_ceil(32)];
    let Next::Forced(t) = c.mask(&mut words).unwrap() else {
        panic!("a one-token choice is forced")
    };
    assert_eq!(tok.decode(&[t], false).unwrap(), "x");
    c.commit(t).unwrap();
    let next = c.mask(&mut words).unwrap();
    assert!(matches!(next, Next::Forced(e) if tok.eos_token_ids().contains(&e)));
    assert!(c.is_accepting());
}

#[test]
fn invalid_constraints_are_errors_with_the_parsers_message() {
    let tok = tokenizer();
    let g = Grammars::new(tok, VOCAB).unwrap();
    let cases = [
        (
            StructuredOutput::JsonSchema("{not json".into()),
            "not valid JSON",
        ),
        (
            StructuredOutput::JsonSchema("5".into()),
            "object or a boolean",
        ),
        (
            StructuredOutput::JsonSchema(r#"{"type": "frobnicate"}"#.into()),
            "frobnicate",
        ),
        (StructuredOutput::Regex("a(b".into()), "invalid regex"),
        (
            StructuredOutput::Grammar("start: ( \"a\"".into()),
            "invalid grammar",
        ),
        (StructuredOutput::Grammar("   ".into()), "empty"),
        (StructuredOutput::Choice(vec![]), "at least one"),
    ];
    for (spec, needle) in cases {
        let e = g.compile(&spec).expect_err(&format!("{spec:?} compiles"));
        assert!(e.0.contains(needle), "{spec:?}: {}", e.0);
    }
}
