//! The tiny random-weight fixtures (`testdata/tiny-*`, made by `tools/` with transformers in
//! float32) run on the GPU backend:
//!
//! - logits at every prompt position against the transformers reference: the top-1 token
//!   equal at every position, and max |gpu − ref| / max |ref| ≤ 1e-2 (DESIGN.md §9.3), with
//!   f32 weights and with f16 weights;
//! - 16 greedy tokens through the whole engine equal to the reference's (f32 weights).
//!
//! Batch invariance through the engine on the GPU backend is the engine's own suite
//! (crates/engine/tests/invariance.rs, `*_on_gpu`).

mod common;

use std::sync::Arc;

use ingot_backend_wgpu::WgpuBackend;
use ingot_engine::{EngineConfig, EngineCore, offline};
use ingot_models::{ModelFiles, ModelSource};
use ingot_runner::{InputBatch, ModelRunner, SamplingParams, ScheduledSeq};
use ingot_tensor::DType;
use ingot_testkit::fixtures::{
    References, argmax, max_rel_error, references, scattered_blocks, testdata,
};

fn engine(be: &WgpuBackend, source: ModelSource, budget: usize) -> EngineCore<WgpuBackend> {
    let files = ModelFiles::open(source).expect("model opens");
    let model = files.load_model(be, DType::F32).expect("weights load");
    let max_model_len = model.config().max_position_embeddings;
    let eos = files.tokenizer.eos_token_ids().to_vec();
    let runner = ModelRunner::new(be.clone(), model, 256, 16, eos).expect("runner");
    let cfg = EngineConfig {
        max_num_seqs: 64,
        max_num_batched_tokens: budget,
        max_model_len,
        block_size: 16,
        num_blocks: 256,
        enable_prefix_caching: true,
    };
    EngineCore::new(runner, Arc::new(files.tokenizer), cfg)
}

fn check(dir: &str) {
    let Some(be) = common::gpu() else { return };
    let References {
        vocab_size: vocab,
        prompts,
    } = references(&testdata(dir)).unwrap();
    let source = ModelSource::HfDir(testdata(dir));
    let files = ModelFiles::open(source.clone()).unwrap();
    for dtype in [DType::F32, DType::F16] {
        let model = files.load_model(&be, dtype).unwrap();
        assert_eq!(model.config().vocab_size, vocab);
        let mut runner = ModelRunner::new(be.clone(), model, 64, 16, vec![]).unwrap();
        for p in &prompts {
            // One prefill of the whole prompt through a shuffled block table.
            let blocks = scattered_blocks(p.ids.len(), 16);
            let seq = ScheduledSeq {
                new_tokens: &p.ids,
                num_computed: 0,
                block_table: &blocks,
                sample: true,
                all_logits: true,
            };
            let mut batch = InputBatch::build(&[seq], 16);
            batch.logits_indices = (0..p.ids.len() as u32).collect();
            let before = be.dispatch_count();
            let ours = runner.forward(&batch).unwrap();
            eprintln!(
                "{dir} {dtype}: {} dispatches for a forward of {} tokens",
                be.dispatch_count() - before,
                p.ids.len()
            );
            let what = format!("{dir} {dtype} weights, prompt '{}'", p.name);
            assert_eq!(ours.len(), p.logits.len(), "{what}: logits shape");
            for (pos, (o, r)) in ours.chunks(vocab).zip(p.logits.chunks(vocab)).enumerate() {
                assert_eq!(argmax(o), argmax(r), "{what}: top-1 at position {pos}");
            }
            let rel = max_rel_error(&ours, &p.logits);
            eprintln!("{what}: max relative logit error {rel:e}");
            assert!(
                rel <= 1e-2,
                "{what}: logits off by {rel:e} (tolerance 1e-2)"
            );
        }
    }
    let mut core = engine(&be, source, 2048);
    let params = SamplingParams {
        ignore_eos: true,
        ..SamplingParams::greedy(16)
    };
    let requests = prompts
        .iter()
        .map(|p| (p.ids.clone(), params.clone()))
        .collect();
    for (p, r) in prompts.iter().zip(offline::generate(&mut core, requests)) {
        assert_eq!(
            r.unwrap()[0].token_ids,
            p.greedy,
            "{dir}: greedy tokens of prompt '{}'",
            p.name
        );
    }
}

#[test]
fn tiny_llama_matches_transformers() {
    check("tiny-llama");
}

#[test]
fn tiny_qwen2_matches_transformers() {
    check("tiny-qwen2");
}

#[test]
fn tiny_qwen3_matches_transformers() {
    check("tiny-qwen3");
}

#[test]
fn tiny_gemma3_matches_transformers() {
    check("tiny-gemma3");
}

#[test]
fn tiny_phi3_matches_transformers() {
    check("tiny-phi3");
}
