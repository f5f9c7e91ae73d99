//! Building an engine from command-line settings: resolve and load the model, size the KV
//! cache from a memory budget, start the core. Shared by every subcommand that runs a model.

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use ingot_engine::{EngineConfig, EngineCore, config};
use ingot_models::{LoadFormat, ModelFiles, ModelSource, WeightFormat, spec};
use ingot_runner::ModelRunner;
use ingot_tensor::{Backend, DType};
use ingot_tokenizer::Tokenizer;

use crate::backend::BackendChoice;

#[derive(Args, Clone, Debug)]
pub struct EngineArgs {
    /// A .gguf file, a Hugging Face model folder, or a cached repo id (default: SmolLM2-135M-Instruct).
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub backend: BackendChoice,
    /// The GPU adapter to run on, by index or name as `ingot devices` lists them (one
    /// replica per GPU); implies the GPU backend.
    #[arg(long, value_name = "N|NAME")]
    pub device: Option<String>,
    /// Most sequences in one step.
    #[arg(long, default_value_t = 64)]
    pub max_num_seqs: usize,
    /// Token budget of one step (prompts beyond it are chunked).
    #[arg(long, default_value_t = 2048)]
    pub max_num_batched_tokens: usize,
    /// Memory for the KV cache, e.g. 2GiB (default: a fifth of available memory, at most 4 GiB).
    #[arg(long)]
    pub kv_cache_memory: Option<String>,
    /// Longest prompt + output (default: the model's own limit).
    #[arg(long)]
    pub max_model_len: Option<usize>,
    /// Turn automatic prefix caching off.
    #[arg(long)]
    pub no_prefix_caching: bool,
    /// Storage type of weight matrices on the device (activations and accumulation stay f32).
    /// `auto`: on the CPU, GGUF block formats (Q4_0, Q4_K, ...) stay in their blocks; on a
    /// GPU, GGUF matrices become f16 (the GPU's block kernels are not yet faster); Hugging
    /// Face checkpoints f32. `blocks`: GGUF blocks kept wherever the backend's kernels read
    /// them (on a GPU about a quarter of the f16 copy's memory for Q4 files), other matrices
    /// f16. `f32`/`f16`/`bf16`: a dense copy of every matrix in that type.
    #[arg(long, value_enum, default_value_t)]
    pub dtype: WeightDtype,
    /// Storage type of the KV cache. `auto`: f16 on the GPU backend (half the memory and
    /// bandwidth; attention math stays f32), f32 on the CPU backend (its reference results).
    #[arg(long, value_enum, default_value_t)]
    pub kv_cache_dtype: KvCacheDtype,
    /// `dummy`: random weights of the model's shapes (config.json or GGUF metadata), for
    /// benchmarks of models whose weights are not here.
    #[arg(long, value_enum, default_value_t)]
    pub load_format: LoadFormatArg,
    /// CPU backend, weights kept in GGUF blocks: `exact` multiplies f32 activations by the
    /// exactly decoded weights; `int8` quantizes activations to 8 bits per 32 values and
    /// uses integer dot products (faster, slightly less accurate; as llama.cpp does).
    #[arg(long, value_enum, default_value_t)]
    pub cpu_activations: CpuActivations,
    /// Structured output: take each token the grammar forces in a step of its own, instead
    /// of appending a run of forced tokens at once and computing it as one chunk
    /// (jump-forward). The tokens are the same either way.
    #[arg(long)]
    pub no_jump_forward: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CpuActivations {
    #[default]
    Exact,
    Int8,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadFormatArg {
    #[default]
    Auto,
    Dummy,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightDtype {
    #[default]
    Auto,
    Blocks,
    F32,
    F16,
    Bf16,
}

impl WeightDtype {
    /// The load format on the backend named `backend` (`Backend::name`).
    fn resolve(self, source: &ModelSource, backend: &str) -> WeightFormat {
        match (self, source) {
            (WeightDtype::Auto, ModelSource::Gguf(_)) => WeightFormat {
                dense: DType::F16,
                keep_blocks: backend == "cpu",
            },
            (WeightDtype::Blocks, _) => WeightFormat {
                dense: DType::F16,
                keep_blocks: true,
            },
            (WeightDtype::Auto, ModelSource::HfDir(_)) | (WeightDtype::F32, _) => {
                WeightFormat::dense(DType::F32)
            }
            (WeightDtype::F16, _) => WeightFormat::dense(DType::F16),
            (WeightDtype::Bf16, _) => WeightFormat::dense(DType::BF16),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KvCacheDtype {
    #[default]
    Auto,
    F32,
    F16,
}

impl KvCacheDtype {
    /// The cache dtype on the backend named `backend` (`Backend::name`).
    fn resolve(self, backend: &str) -> DType {
        match self {
            KvCacheDtype::Auto if backend == "wgpu" => DType::F16,
            KvCacheDtype::Auto | KvCacheDtype::F32 => DType::F32,
            KvCacheDtype::F16 => DType::F16,
        }
    }
}

pub const BLOCK_SIZE: usize = 16;

/// Loads the model named by `args` and builds an engine core on `backend`.
pub fn build_core<B: Backend>(args: &EngineArgs, backend: B) -> Result<EngineCore<B>> {
    let source = spec::resolve(args.model.as_deref())?;
    let dtype = args.dtype.resolve(&source, backend.name());
    let format = match args.load_format {
        LoadFormatArg::Auto => LoadFormat::Auto,
        LoadFormatArg::Dummy => LoadFormat::Dummy,
    };
    let files = ModelFiles::open_as(source, format)?;
    let model = files.load_model_as(&backend, dtype)?;
    let tokenizer = Arc::new(files.tokenizer);

    let budget = match &args.kv_cache_memory {
        Some(s) => config::parse_size(s)
            .map_err(anyhow::Error::msg)
            .context("--kv-cache-memory")?,
        None => config::default_kv_budget(),
    };
    let kv_dtype = args.kv_cache_dtype.resolve(backend.name());
    anyhow::ensure!(
        backend.supports(ingot_tensor::Op::KvWrite, kv_dtype)
            && backend.supports(ingot_tensor::Op::PagedAttention, kv_dtype),
        "--kv-cache-dtype {kv_dtype} is not supported on the {} backend",
        backend.name()
    );
    let model_len = model.config().max_position_embeddings;
    let max_model_len = args.max_model_len.unwrap_or(model_len).min(model_len);
    // One KV cache group per attention type (full, each sliding window): each gets its
    // share of the budget and its own pool (engine::config::split_kv_budget says how).
    let layout = model.kv_layout();
    let groups = ingot_models::kv_groups(&layout);
    let group_bytes: Vec<(Option<usize>, u64)> = groups
        .iter()
        .map(|g| {
            let bytes = g.bytes_per_block(&layout, BLOCK_SIZE, kv_dtype) as u64;
            (g.sliding_window, bytes)
        })
        .collect();
    let sizing = config::KvSizing {
        budget,
        block_size: BLOCK_SIZE,
        max_num_seqs: args.max_num_seqs,
        max_num_batched_tokens: args.max_num_batched_tokens,
        max_model_len,
    };
    let mut blocks = config::split_kv_budget(&group_bytes, &sizing);
    let per_block: u64 = group_bytes.iter().map(|g| g.1).sum();
    anyhow::ensure!(
        blocks.iter().all(|&n| n > 0),
        "--kv-cache-memory {budget} bytes is less than one KV block ({per_block} bytes)"
    );
    for ((group, n), (window, bytes)) in groups.iter().zip(&mut blocks).zip(&group_bytes) {
        // Each layer's K (and V) cache is one tensor: it must fit the backend's largest.
        let per_block_tensor = group
            .layers
            .iter()
            .map(|&l| layout[l].bytes_per_block(BLOCK_SIZE, kv_dtype) as u64)
            .max()
            .unwrap_or(1);
        let max_blocks = (backend.max_tensor_bytes() / per_block_tensor) as usize;
        if *n > max_blocks {
            tracing::warn!(
                "KV cache group capped at {max_blocks} blocks: one layer's cache may not \
                 exceed the {} backend's {} MiB tensor limit",
                backend.name(),
                backend.max_tensor_bytes() >> 20
            );
            *n = max_blocks;
        }
        tracing::info!(
            sliding_window = ?window,
            layers = group.layers.len(),
            blocks = *n,
            block_size = BLOCK_SIZE,
            bytes = *n as u64 * bytes,
            max_tokens = *n * BLOCK_SIZE,
            dtype = %kv_dtype,
            "KV cache group"
        );
    }
    let num_blocks = blocks[0];
    let eos = tokenizer.eos_token_ids().to_vec();
    let runner = ModelRunner::with_kv_groups(
        backend,
        model,
        groups.into_iter().zip(blocks).collect(),
        BLOCK_SIZE,
        eos,
        kv_dtype,
    )?;
    let cfg = EngineConfig {
        max_num_seqs: args.max_num_seqs,
        max_num_batched_tokens: args.max_num_batched_tokens,
        max_model_len,
        block_size: BLOCK_SIZE,
        num_blocks,
        enable_prefix_caching: !args.no_prefix_caching,
    };
    let mut core = EngineCore::new(runner, tokenizer, cfg);
    core.set_jump_forward(!args.no_jump_forward);
    Ok(core)
}

/// Token ids of `prompt`: through the chat template unless `raw`.
pub fn encode_prompt(tok: &Tokenizer, prompt: &str, raw: bool) -> Result<Vec<u32>> {
    if raw {
        return Ok(tok.encode(prompt, true)?);
    }
    let template = tok
        .chat_template()
        .context("the model has no chat template; pass --raw")?;
    let messages = [serde_json::json!({"role": "user", "content": prompt})];
    let text = template.render(&messages, true)?;
    Ok(tok.encode(&text, false)?)
}

/// Stops the engine thread before the process exits: drops the last handle (the thread then
/// ends its loop) and waits up to `patience` for it. A device still being dropped on another
/// thread while `exit` runs the driver's static destructors crashes some Vulkan drivers
/// (seen as a segfault after the output on NVIDIA; gfx-rs/wgpu#8365), so the backend is
/// always released on the engine thread before `main` returns.
pub fn stop_engine(
    engine: ingot_engine::EngineHandle,
    thread: std::thread::JoinHandle<()>,
    patience: std::time::Duration,
) {
    drop(engine);
    let deadline = std::time::Instant::now() + patience;
    while !thread.is_finished() {
        if std::time::Instant::now() >= deadline {
            tracing::warn!("the engine thread did not stop in time; exiting without it");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if thread.join().is_err() {
        tracing::warn!("the engine thread panicked while stopping");
    }
}
