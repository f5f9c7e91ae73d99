//! Numerics against transformers: the tiny random-weight fixtures of every family (Llama and
//! Qwen2 from `tools/make_tiny_models.py`; Qwen3, Gemma 3 and Phi-3 from
//! `tools/make_tiny_families.py`; float32), loaded from their HF directories and from their
//! GGUFs. Checks the chat template's rendering of the chat prompt, the tokenizer ids, the
//! logits at every prompt position (within 1e-4 of the largest reference logit:
//! max |ours - ref| / max |ref|) and 16 greedy tokens through the whole engine. The Q8_0
//! GGUF is checked against the same f32 reference with the quantization tolerance (6e-2).

mod common;

use ingot_backend_cpu::CpuBackend;
use ingot_models::{ModelFiles, ModelSource};
use ingot_runner::{InputBatch, ModelRunner, SamplingParams, ScheduledSeq};
use ingot_tensor::DType;
use ingot_testkit::fixtures::{References, max_rel_error, references, scattered_blocks};

/// Logits at every position of `ids`, computed in one prefill through a shuffled block table.
fn all_logits(runner: &mut ModelRunner<CpuBackend>, ids: &[u32]) -> Vec<f32> {
    let blocks = scattered_blocks(ids.len(), 16);
    let seq = ScheduledSeq {
        new_tokens: ids,
        num_computed: 0,
        block_table: &blocks,
        sample: true,
        all_logits: true,
    };
    let mut batch = InputBatch::build(&[seq], 16);
    batch.logits_indices = (0..ids.len() as u32).collect();
    runner.forward(&batch).unwrap()
}

/// The user message of every fixture's "chat" prompt (the tools' `PROMPTS`).
const CHAT_USER: &str = "What is 7 + 5?";

fn check(dir: &str, source: ModelSource, tolerance: f32, check_greedy: bool) {
    let References {
        vocab_size: vocab,
        prompts,
    } = references(&common::testdata(dir)).unwrap();
    let label = source.path().display().to_string();
    let files = ModelFiles::open(source.clone()).unwrap();
    let template = files.tokenizer.chat_template().expect("a chat template");
    let user = serde_json::json!({"role": "user", "content": CHAT_USER});
    let chat = prompts.iter().find(|p| p.name == "chat").unwrap();
    assert_eq!(
        template.render(&[user], true).unwrap(),
        chat.text,
        "{label}: chat template"
    );
    for p in &prompts {
        let ids = files.tokenizer.encode(&p.text, p.add_special).unwrap();
        assert_eq!(ids, p.ids, "{label}: tokenizer ids of prompt '{}'", p.name);
    }
    let backend = CpuBackend::new();
    let model = files.load_model(&backend, DType::F32).unwrap();
    assert_eq!(model.config().vocab_size, vocab);
    let mut runner = ModelRunner::new(backend, model, 64, 16, vec![]).unwrap();
    for p in &prompts {
        let ours = all_logits(&mut runner, &p.ids);
        let rel = max_rel_error(&ours, &p.logits);
        eprintln!(
            "{label}: prompt '{}': max relative logit error {rel:e}",
            p.name
        );
        assert!(
            rel <= tolerance,
            "{label}: prompt '{}': logits off by {rel:e} (tolerance {tolerance:e})",
            p.name
        );
    }
    if !check_greedy {
        return;
    }
    let mut core = common::core(source, common::Knobs::default());
    let params = SamplingParams {
        ignore_eos: true,
        ..SamplingParams::greedy(16)
    };
    let requests = prompts
        .iter()
        .map(|p| (p.ids.clone(), params.clone()))
        .collect();
    for (p, r) in prompts
        .iter()
        .zip(ingot_engine::offline::generate(&mut core, requests))
    {
        assert_eq!(
            r.unwrap()[0].token_ids,
            p.greedy,
            "{label}: greedy tokens of prompt '{}'",
            p.name
        );
    }
}

#[test]
fn tiny_llama_from_hf_dir() {
    check(
        "tiny-llama",
        ModelSource::HfDir(common::testdata("tiny-llama")),
        1e-4,
        true,
    );
}

#[test]
fn tiny_llama_from_gguf() {
    let path = common::testdata("tiny-llama/tiny-llama-f32.gguf");
    check("tiny-llama", ModelSource::Gguf(path), 1e-4, true);
}

#[test]
fn tiny_llama_from_q8_0_gguf() {
    let path = common::testdata("tiny-llama/tiny-llama-q8_0.gguf");
    check("tiny-llama", ModelSource::Gguf(path), 6e-2, false);
}

#[test]
fn tiny_qwen2_from_hf_dir() {
    check(
        "tiny-qwen2",
        ModelSource::HfDir(common::testdata("tiny-qwen2")),
        1e-4,
        true,
    );
}

#[test]
fn tiny_qwen2_from_gguf() {
    let path = common::testdata("tiny-qwen2/tiny-qwen2-f32.gguf");
    check("tiny-qwen2", ModelSource::Gguf(path), 1e-4, true);
}

#[test]
fn tiny_qwen3_from_hf_dir() {
    check(
        "tiny-qwen3",
        ModelSource::HfDir(common::testdata("tiny-qwen3")),
        1e-4,
        true,
    );
}

#[test]
fn tiny_qwen3_from_gguf() {
    let path = common::testdata("tiny-qwen3/tiny-qwen3-f32.gguf");
    check("tiny-qwen3", ModelSource::Gguf(path), 1e-4, true);
}

#[test]
fn tiny_gemma3_from_hf_dir() {
    check(
        "tiny-gemma3",
        ModelSource::HfDir(common::testdata("tiny-gemma3")),
        1e-4,
        true,
    );
}

#[test]
fn tiny_gemma3_from_gguf() {
    let path = common::testdata("tiny-gemma3/tiny-gemma3-f32.gguf");
    check("tiny-gemma3", ModelSource::Gguf(path), 1e-4, true);
}

#[test]
fn tiny_phi3_from_hf_dir() {
    check(
        "tiny-phi3",
        ModelSource::HfDir(common::testdata("tiny-phi3")),
        1e-4,
        true,
    );
}

#[test]
fn tiny_phi3_from_gguf() {
    let path = common::testdata("tiny-phi3/tiny-phi3-f32.gguf");
    check("tiny-phi3", ModelSource::Gguf(path), 1e-4, true);
}
