//! Sliding-window KV cache groups through the whole engine, on the tiny Gemma 3 fixture
//! (5 sliding layers of window 8, 1 full-attention layer): prompts longer than the window,
//! chunked and among others, then generation, give the same greedy tokens as a cache with one
//! group keeping every block for every layer; while a long request runs, its sliding group
//! holds only the blocks of its window. On the CPU and on the GPU backend.

mod common;

use std::sync::Arc;

use ingot_backend_cpu::CpuBackend;
use ingot_engine::{EngineConfig, EngineCore, SamplingParams, offline};
use ingot_models::{ModelFiles, ModelSource, kv_groups};
use ingot_runner::ModelRunner;
use ingot_tensor::{Backend, DType};

const BS: usize = 16;
const WINDOW: usize = 8;

/// The tiny Gemma 3 on `backend`: with `sliding_blocks`, a KV cache group per attention type
/// (64 full-attention blocks, that many sliding ones); without, one group of 64 blocks for
/// every layer.
fn gemma<B: Backend>(backend: B, sliding_blocks: Option<usize>, chunk: usize) -> EngineCore<B> {
    let files = ModelFiles::open(ModelSource::HfDir(common::testdata("tiny-gemma3"))).unwrap();
    let model = files
        .load_model(&backend, DType::F32)
        .expect("weights load");
    let runner = match sliding_blocks {
        Some(n) => {
            let groups = kv_groups(&model.kv_layout());
            assert_eq!(groups.len(), 2, "one full and one sliding group");
            assert_eq!(groups[1].sliding_window, Some(WINDOW));
            let sized = groups.into_iter().zip([64, n]).collect();
            ModelRunner::with_kv_groups(backend, model, sized, BS, vec![], DType::F32)
        }
        None => ModelRunner::with_kv_dtype(backend, model, 64, BS, vec![], DType::F32),
    }
    .expect("runner");
    let cfg = EngineConfig {
        max_num_seqs: 8,
        max_num_batched_tokens: chunk,
        max_model_len: 512,
        block_size: BS,
        num_blocks: 64,
        enable_prefix_caching: true,
    };
    EngineCore::new(runner, Arc::new(files.tokenizer), cfg)
}

/// Prompts of 3 to 90 tokens (most far beyond the window; two share a long prefix), each
/// continued greedily for 40 tokens.
fn requests() -> Vec<(Vec<u32>, SamplingParams)> {
    let prompt = |len: usize, seed: u32| -> Vec<u32> {
        (0..len as u32)
            .map(|i| 1 + (i * 37 + seed * 101 + i * i * seed) % 390)
            .collect()
    };
    let mut shared = prompt(70, 5);
    shared.extend([11, 12, 13]);
    [
        prompt(3, 1),
        prompt(90, 2),
        prompt(33, 3),
        prompt(70, 5),
        shared,
    ]
    .into_iter()
    .map(|p| {
        let params = SamplingParams {
            ignore_eos: true,
            ..SamplingParams::greedy(40)
        };
        (p, params)
    })
    .collect()
}

fn tokens<B: Backend>(core: &mut EngineCore<B>) -> Vec<Vec<u32>> {
    offline::generate(core, requests())
        .into_iter()
        .map(|r| r.expect("request runs")[0].token_ids.clone())
        .collect()
}

fn same_tokens_as_one_group<B: Backend + Clone>(backend: B) {
    let want = tokens(&mut gemma(backend.clone(), None, 2048));
    assert!(want.iter().all(|t| t.len() == 40));
    // Whole prompts in one step, then prompts in chunks of 24 (longer than the window) and
    // of 5 (shorter), with a sliding pool so small that requests are preempted.
    for (sliding, chunk) in [(64, 2048), (64, 24), (12, 5)] {
        let mut core = gemma(backend.clone(), Some(sliding), chunk);
        // The second round finds the first's blocks in the prefix cache, as far as the
        // sliding group still holds their windows.
        for round in 0..2 {
            assert_eq!(
                tokens(&mut core),
                want,
                "{sliding} sliding blocks, chunks of {chunk}, round {round}"
            );
            let s = core.stats();
            assert_eq!(s.num_sliding_blocks, sliding);
            assert_eq!(s.num_free_sliding_blocks, sliding, "sliding blocks leaked");
            assert_eq!(s.num_free_blocks, s.num_blocks, "full blocks leaked");
        }
        assert!(core.stats().prefix_cache_hits > 0, "round 2 hit the cache");
    }
}

#[test]
fn sliding_groups_give_the_same_tokens_on_the_cpu() {
    same_tokens_as_one_group(CpuBackend::new());
}

#[test]
fn sliding_groups_give_the_same_tokens_on_the_gpu() {
    if let Some(gpu) = common::gpu() {
        same_tokens_as_one_group(gpu);
    }
}

#[test]
fn a_long_request_holds_only_its_window() {
    let chunk = 24;
    let mut core = gemma(CpuBackend::new(), Some(64), chunk);
    let (prompt, params) = requests().swap_remove(1);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let req = ingot_engine::EngineRequest {
        id: 1,
        prompt,
        params,
        priority: 0,
    };
    core.add_request(req, tx).unwrap();
    let bound = (WINDOW - 1 + chunk).div_ceil(BS) + 1;
    let mut steps = 0;
    let mut most_full = 0;
    while core.has_unfinished() {
        core.step();
        steps += 1;
        let s = core.stats();
        let held = s.num_sliding_blocks - s.num_free_sliding_blocks;
        assert!(held <= bound, "step {steps}: {held} sliding blocks held");
        most_full = most_full.max(s.num_blocks - s.num_free_blocks);
    }
    // 130 tokens: the full-attention group holds all their blocks.
    assert!(
        most_full >= 7,
        "the full group keeps every block: {most_full}"
    );
    assert!(steps > 40);
}
