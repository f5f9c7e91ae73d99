//! The default model (SmolLM2-135M-Instruct, Q4_1 GGUF) on the CPU backend with its weights
//! kept in their GGUF blocks, against float32 transformers on the same file
//! (`testdata/default-model/reference.json`, made by
//! `tools/make_default_model_reference.py`): 32 greedy tokens for each of 16 chat prompts.
//!
//! transformers multiplies the dequantized weights in float32, so the difference is
//! arithmetic only. The exact mode (f32 activations, weights decoded exactly) must give the
//! same 32 tokens on at least 15 of the 16 prompts; where a continuation diverges, Ingot's
//! token must be one of the reference's top 5 at that step (a near tie, not a bug). The
//! 8-bit mode's count is printed (7 of 16 measured; the floor is 5), with the same near-tie
//! check on its divergences.
//!
//! The GPU backend with the weights kept in their blocks (decoded in registers by
//! `gemv_q` and the block GEMMs) and an f32 KV cache is held to the exact mode's bar: 15 of
//! 16, near ties only (lavapipe here and in CI, a real GPU where one is present).

mod common;

use std::sync::Arc;

use ingot_backend_cpu::{Activations, CpuBackend};
use ingot_engine::{EngineConfig, EngineCore, offline};
use ingot_models::{ModelFiles, WeightFormat};
use ingot_runner::ModelRunner;
use ingot_scheduler::SamplingParams;
use ingot_tensor::{Backend, DType};
use serde_json::Value;

struct Prompt {
    ids: Vec<u32>,
    greedy: Vec<u32>,
    top5: Vec<Vec<u32>>, // [step][rank]
}

fn reference() -> Vec<Prompt> {
    let path = ingot_testkit::fixtures::testdata("default-model/reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    v["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Prompt {
            ids: ids(&p["token_ids"]),
            greedy: ids(&p["greedy_tokens"]),
            top5: p["top_logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|step| {
                    step.as_array()
                        .unwrap()
                        .iter()
                        .map(|pair| pair[0].as_u64().unwrap() as u32)
                        .collect()
                })
                .collect(),
        })
        .collect()
}

/// Runs every prompt (all at once, batched) in `mode`; returns how many continuations equal
/// the reference, checking that each divergence is a near tie.
fn agreement(mode: Activations) -> usize {
    agreement_on(
        CpuBackend::new().with_activations(mode),
        &format!("{mode:?}"),
    )
}

/// [`agreement`] on `backend`, weights in their blocks where it reads them.
fn agreement_on<B: Backend>(backend: B, mode: &str) -> usize {
    let prompts = reference();
    let source = ingot_models::spec::resolve(None).unwrap();
    let files = ModelFiles::open(source).expect("default model opens");
    let format = WeightFormat {
        dense: DType::F16,
        keep_blocks: true,
    };
    let model = files.load_model_as(&backend, format).expect("weights load");
    let eos = files.tokenizer.eos_token_ids().to_vec();
    let num_blocks = 256;
    let runner = ModelRunner::with_kv_dtype(backend, model, num_blocks, 16, eos, DType::F32)
        .expect("runner");
    let cfg = EngineConfig {
        max_num_seqs: 16,
        max_num_batched_tokens: 2048,
        max_model_len: 2048,
        block_size: 16,
        num_blocks,
        enable_prefix_caching: true,
    };
    let mut core = EngineCore::new(runner, Arc::new(files.tokenizer), cfg);
    let params = SamplingParams {
        ignore_eos: true,
        ..SamplingParams::greedy(32)
    };
    let requests = prompts
        .iter()
        .map(|p| (p.ids.clone(), params.clone()))
        .collect();
    let outs = offline::generate(&mut core, requests);
    let mut same = 0;
    for (i, (p, out)) in prompts.iter().zip(outs).enumerate() {
        let got = out.unwrap().remove(0).token_ids;
        assert_eq!(got.len(), 32, "prompt {i}: 32 tokens");
        match got.iter().zip(&p.greedy).position(|(a, b)| a != b) {
            None => same += 1,
            Some(s) => {
                eprintln!(
                    "{mode}: prompt {i} diverges at step {s}: {} vs reference {} (top 5 {:?})",
                    got[s], p.greedy[s], p.top5[s]
                );
                assert!(
                    p.top5[s].contains(&got[s]),
                    "{mode}: prompt {i} step {s}: token {} is not in the reference's top 5 {:?}",
                    got[s],
                    p.top5[s]
                );
            }
        }
    }
    eprintln!(
        "{mode}: {same} of {} prompts equal token for token",
        prompts.len()
    );
    same
}

#[test]
fn exact_mode_matches_float32_on_15_of_16_prompts() {
    let same = agreement(Activations::Exact);
    assert!(
        same >= 15,
        "exact mode: {same} of 16 prompts equal the reference"
    );
}

#[test]
fn int8_mode_agreement() {
    let same = agreement(Activations::Int8);
    // Measured: 7 of 16 (2026-12-02, x86), every divergence the reference's second choice.
    assert!(
        same >= 5,
        "8-bit mode: {same} of 16 prompts equal the reference"
    );
}

#[test]
fn gpu_with_blocks_matches_float32_on_15_of_16_prompts() {
    let Some(gpu) = common::gpu() else { return };
    let same = agreement_on(gpu, "GPU, blocks");
    assert!(same >= 15, "GPU: {same} of 16 prompts equal the reference");
}
