//! Shared test setup: build an engine core from a model source, on the CPU backend or on
//! the GPU backend (opened once per test binary; a loud skip when there is no adapter,
//! a failure instead when `INGOT_REQUIRE_GPU=1`, as CI sets with lavapipe installed).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use std::sync::OnceLock;

use ingot_backend_cpu::CpuBackend;
use ingot_backend_wgpu::{WgpuBackend, WgpuOptions};
use ingot_engine::{EngineConfig, EngineCore};
use ingot_models::{ModelFiles, ModelSource};
use ingot_runner::ModelRunner;
use ingot_tensor::{Backend, DType};

/// `testdata/<rel>` of the repository (see `ingot_testkit::fixtures::testdata`).
pub fn testdata(rel: &str) -> PathBuf {
    ingot_testkit::fixtures::testdata(rel)
}

pub struct Knobs {
    pub num_blocks: usize,
    pub max_num_batched_tokens: usize,
    pub max_num_seqs: usize,
    pub prefix_caching: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            num_blocks: 512,
            max_num_batched_tokens: 2048,
            max_num_seqs: 64,
            prefix_caching: true,
        }
    }
}

pub fn core(source: ModelSource, k: Knobs) -> EngineCore<CpuBackend> {
    core_on(CpuBackend::new(), source, k, DType::F32, DType::F32)
}

/// An engine core on `backend` with weights stored as `weights` and a KV cache of `kv`.
pub fn core_on<B: Backend>(
    backend: B,
    source: ModelSource,
    k: Knobs,
    weights: DType,
    kv: DType,
) -> EngineCore<B> {
    let files = ModelFiles::open(source).expect("model opens");
    let model = files.load_model(&backend, weights).expect("weights load");
    let max_model_len = model.config().max_position_embeddings;
    let eos = files.tokenizer.eos_token_ids().to_vec();
    let runner =
        ModelRunner::with_kv_dtype(backend, model, k.num_blocks, 16, eos, kv).expect("runner");
    let cfg = EngineConfig {
        max_num_seqs: k.max_num_seqs,
        max_num_batched_tokens: k.max_num_batched_tokens,
        max_model_len,
        block_size: 16,
        num_blocks: k.num_blocks,
        enable_prefix_caching: k.prefix_caching,
    };
    EngineCore::new(runner, Arc::new(files.tokenizer), cfg)
}

/// The default model on the CPU and on the GPU with the same settings (f16 weights, f32 KV
/// cache, 64 blocks), for tests that compare the two backends; `None` as [`gpu`] says.
pub fn default_model_on_cpu_and_gpu() -> Option<(EngineCore<CpuBackend>, EngineCore<WgpuBackend>)> {
    let gpu = gpu()?;
    let source = ingot_models::spec::resolve(None).expect("default model");
    let knobs = || Knobs {
        num_blocks: 64,
        ..Knobs::default()
    };
    let cpu = core_on(
        CpuBackend::new(),
        source.clone(),
        knobs(),
        DType::F16,
        DType::F32,
    );
    let gpu = core_on(gpu, source, knobs(), DType::F16, DType::F32);
    Some((cpu, gpu))
}

/// The GPU backend for engine tests (software adapters accepted), or `None` with a
/// SKIPPED line when there is none and `INGOT_REQUIRE_GPU` is not `1`.
pub fn gpu() -> Option<WgpuBackend> {
    static BE: OnceLock<Option<WgpuBackend>> = OnceLock::new();
    BE.get_or_init(|| {
        let opts = WgpuOptions {
            allow_software: true,
            ..WgpuOptions::default()
        };
        match WgpuBackend::new(opts) {
            Ok(be) => {
                eprintln!("engine tests on {}", be.adapter());
                Some(be)
            }
            Err(e) if std::env::var("INGOT_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
                panic!("INGOT_REQUIRE_GPU=1 but the GPU backend cannot open: {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED: no GPU adapter, GPU engine tests not run: {e}");
                None
            }
        }
    })
    .clone()
}
