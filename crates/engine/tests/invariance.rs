//! Batch invariance (DESIGN.md §5, §9.4): a request's tokens do not depend on what else
//! runs with it. A target request is run alone, then (b) among 32 concurrent requests of
//! random lengths, (c) under token budgets of 16, 64 and 2048 (different prefill chunkings),
//! (d) under a KV budget so small that requests are preempted and recomputed, and (e) after
//! an earlier request has put its prompt's prefix in the cache. Greedy and seeded sampling
//! (temperature 0.8) must give identical tokens in every setting.
//!
//! The suite runs on the CPU backend (f32 weights and KV) and on the GPU backend (f16
//! weights, f16 KV, as `ingot serve --backend gpu` runs): identical within each backend.
//! The tiny models are tiny-llama and the mixture-of-experts tiny-qwen2moe.
//! CI runs the GPU cases on lavapipe with the tiny models; the default model's GPU cases
//! are for a real GPU (`INGOT_GPU_DEFAULT_MODEL=1`), lavapipe being too slow for them.

mod common;

use common::Knobs;
use ingot_backend_cpu::CpuBackend;
use ingot_engine::offline;
use ingot_models::ModelSource;
use ingot_scheduler::SamplingParams;
use ingot_tensor::{Backend, DType};

/// Where the suite runs: a backend and the storage types of weights and KV cache.
struct On<B: Backend + Clone> {
    backend: B,
    weights: DType,
    kv: DType,
}

fn cpu() -> On<CpuBackend> {
    On {
        backend: CpuBackend::new(),
        weights: DType::F32,
        kv: DType::F32,
    }
}

fn gpu() -> Option<On<ingot_backend_wgpu::WgpuBackend>> {
    common::gpu().map(|backend| On {
        backend,
        weights: DType::F16,
        kv: DType::F16,
    })
}

/// Deterministic pseudo-random numbers (a 64-bit LCG), so the mixes are reproducible.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

struct Suite {
    source: ModelSource,
    vocab: u64,
    target: Vec<u32>,
    others: Vec<Vec<u32>>,
    max_tokens: usize,
}

impl Suite {
    fn new(
        source: ModelSource,
        vocab: u64,
        target_len: usize,
        other_max: u64,
        max_tokens: usize,
    ) -> Self {
        let mut rng = Lcg(0x5eed);
        let target = (0..target_len).map(|_| rng.next(vocab) as u32).collect();
        let others = (0..32)
            .map(|_| {
                let len = 1 + rng.next(other_max) as usize;
                (0..len).map(|_| rng.next(vocab) as u32).collect()
            })
            .collect();
        Self {
            source,
            vocab,
            target,
            others,
            max_tokens,
        }
    }

    /// Runs the target (at position 17 of the mix when `with_others`) and returns its tokens,
    /// with the engine's stats.
    fn run<B: Backend + Clone>(
        &self,
        on: &On<B>,
        knobs: Knobs,
        params: &SamplingParams,
        with_others: bool,
        warm_prefix: bool,
    ) -> (Vec<u32>, ingot_engine::EngineStats) {
        let mut core = common::core_on(
            on.backend.clone(),
            self.source.clone(),
            knobs,
            on.weights,
            on.kv,
        );
        if warm_prefix {
            // Same first 48 tokens as the target, then something else.
            let mut p: Vec<u32> = self.target[..48].to_vec();
            p.extend([1, 2, 3, 4, 5].map(|x| (x * 7) % self.vocab as u32));
            let r = offline::generate(&mut core, vec![(p, SamplingParams::greedy(2))]);
            assert!(r[0].is_ok());
        }
        let other_params = SamplingParams {
            seed: Some(99),
            ignore_eos: true,
            ..SamplingParams::default()
        };
        let mut reqs: Vec<(Vec<u32>, SamplingParams)> = Vec::new();
        if with_others {
            for (i, o) in self.others.iter().enumerate() {
                let p = SamplingParams {
                    max_tokens: 1 + i % self.max_tokens,
                    ..other_params.clone()
                };
                reqs.push((o.clone(), p));
            }
        }
        let at = if with_others { 17 } else { 0 };
        reqs.insert(at, (self.target.clone(), params.clone()));
        let mut results = offline::generate(&mut core, reqs);
        let target = results.remove(at).expect("target accepted");
        for r in results {
            let c = r.expect("other accepted");
            assert!(c[0].error.is_none());
        }
        assert_eq!(
            core.stats().num_free_blocks,
            core.stats().num_blocks,
            "blocks leaked"
        );
        assert_eq!(core.runner_tracked(), 0, "runner state leaked");
        (target[0].token_ids.clone(), core.stats())
    }

    fn check<B: Backend + Clone>(&self, on: &On<B>, params: SamplingParams, tight_blocks: usize) {
        let params = SamplingParams {
            max_tokens: self.max_tokens,
            ignore_eos: true,
            ..params
        };
        let (alone, _) = self.run(on, Knobs::default(), &params, false, false);
        assert_eq!(alone.len(), self.max_tokens);
        let (mixed, _) = self.run(on, Knobs::default(), &params, true, false);
        assert_eq!(mixed, alone, "(b) among 32 concurrent requests");
        for budget in [16, 64, 2048] {
            let knobs = Knobs {
                max_num_batched_tokens: budget,
                ..Knobs::default()
            };
            let (chunked, _) = self.run(on, knobs, &params, true, false);
            assert_eq!(chunked, alone, "(c) max_num_batched_tokens {budget}");
        }
        let knobs = Knobs {
            num_blocks: tight_blocks,
            max_num_batched_tokens: 64,
            ..Knobs::default()
        };
        let (preempted, stats) = self.run(on, knobs, &params, true, false);
        assert!(
            stats.num_preemptions_total > 0,
            "(d) the KV budget must force preemption"
        );
        assert_eq!(preempted, alone, "(d) under preemption");
        let (cached, stats) = self.run(on, Knobs::default(), &params, false, true);
        assert!(
            stats.prefix_cache_hits >= 48,
            "(e) the prefix must come from the cache"
        );
        assert_eq!(cached, alone, "(e) with a cached prefix");
    }
}

fn tiny() -> Suite {
    Suite::new(
        ModelSource::HfDir(common::testdata("tiny-llama")),
        381,
        70,
        60,
        12,
    )
}

fn seeded(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 0.8,
        seed: Some(seed),
        ..Default::default()
    }
}

#[test]
fn tiny_greedy_is_batch_invariant() {
    tiny().check(&cpu(), SamplingParams::greedy(1), 12);
}

#[test]
fn tiny_seeded_sampling_is_batch_invariant() {
    tiny().check(&cpu(), seeded(1234), 12);
}

#[test]
fn tiny_greedy_is_batch_invariant_on_gpu() {
    if let Some(on) = gpu() {
        tiny().check(&on, SamplingParams::greedy(1), 12);
    }
}

#[test]
fn tiny_seeded_sampling_is_batch_invariant_on_gpu() {
    if let Some(on) = gpu() {
        tiny().check(&on, seeded(1234), 12);
    }
}

/// A mixture-of-experts model (Qwen2-MoE: routed experts and the gated shared expert): a
/// token's experts, their grouping with the other tokens of a step and the weighted sum must
/// leave its tokens unchanged.
fn tiny_moe() -> Suite {
    Suite::new(
        ModelSource::HfDir(common::testdata("tiny-qwen2moe")),
        410,
        70,
        60,
        12,
    )
}

#[test]
fn tiny_moe_greedy_is_batch_invariant() {
    tiny_moe().check(&cpu(), SamplingParams::greedy(1), 12);
}

#[test]
fn tiny_moe_seeded_sampling_is_batch_invariant() {
    tiny_moe().check(&cpu(), seeded(1234), 12);
}

#[test]
fn tiny_moe_greedy_is_batch_invariant_on_gpu() {
    if let Some(on) = gpu() {
        tiny_moe().check(&on, SamplingParams::greedy(1), 12);
    }
}

#[test]
fn tiny_moe_seeded_sampling_is_batch_invariant_on_gpu() {
    if let Some(on) = gpu() {
        tiny_moe().check(&on, seeded(1234), 12);
    }
}

fn default_model() -> Suite {
    let source = ingot_models::spec::resolve(None).expect("default model");
    Suite::new(source, 49000, 64, 40, 6)
}

#[test]
fn default_model_greedy_is_batch_invariant() {
    default_model().check(&cpu(), SamplingParams::greedy(1), 7);
}

#[test]
fn default_model_seeded_sampling_is_batch_invariant() {
    default_model().check(&cpu(), seeded(7), 7);
}

/// The default model on the GPU backend, when `INGOT_GPU_DEFAULT_MODEL=1` (a real GPU).
fn default_on_gpu() -> Option<On<ingot_backend_wgpu::WgpuBackend>> {
    if std::env::var("INGOT_GPU_DEFAULT_MODEL").is_ok_and(|v| v == "1") {
        gpu()
    } else {
        eprintln!("SKIPPED: set INGOT_GPU_DEFAULT_MODEL=1 to run the default model on the GPU");
        None
    }
}

#[test]
fn default_model_greedy_is_batch_invariant_on_gpu() {
    if let Some(on) = default_on_gpu() {
        default_model().check(&on, SamplingParams::greedy(1), 7);
    }
}

#[test]
fn default_model_seeded_sampling_is_batch_invariant_on_gpu() {
    if let Some(on) = default_on_gpu() {
        default_model().check(&on, seeded(7), 7);
    }
}
