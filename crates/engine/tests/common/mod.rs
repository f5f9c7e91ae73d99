//! Shared test setup: build an engine core on the CPU backend from a model source.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use ingot_backend_cpu::CpuBackend;
use ingot_engine::{EngineConfig, EngineCore};
use ingot_models::{ModelFiles, ModelSource};
use ingot_runner::ModelRunner;
use ingot_tensor::DType;

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
    let files = ModelFiles::open(source).expect("model opens");
    let backend = CpuBackend::new();
    let model = files
        .load_model(&backend, DType::F32)
        .expect("weights load");
    let max_model_len = model.config.max_position_embeddings;
    let eos = files.tokenizer.eos_token_ids().to_vec();
    let runner = ModelRunner::new(backend, model, k.num_blocks, 16, eos).expect("runner");
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
