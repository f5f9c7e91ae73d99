//! Loading a resolved model: its config, tokenizer and weights, from a GGUF file or a
//! Hugging Face directory, with a progress bar over the tensors on stderr. With
//! [`LoadFormat::Dummy`] only the config (and the tokenizer, when there is one) is read and the
//! weights are generated ([`crate::loader::dummy`]).

use std::path::Path;

use ingot_tensor::{Backend, DType};
use ingot_tokenizer::{GgufVocab, Tokenizer};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::loader::gguf::GgufFile;
use crate::loader::safetensors::SafetensorsDir;
use crate::loader::{DummyWeights, WeightFormat, WeightSource};
use crate::model::Model;
use crate::spec::ModelSource;
use crate::weights::{WeightLoader, WeightNames};

/// Where the weights come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadFormat {
    /// The model's own files.
    #[default]
    Auto,
    /// Random weights of the config's shapes, for benchmarks (vLLM's `--load-format dummy`).
    /// A Hugging Face directory without tokenizer.json gets [`Tokenizer::placeholder`].
    Dummy,
}

/// Everything a model needs before weights go to a device.
pub struct ModelFiles {
    pub source: ModelSource,
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    weights: Box<dyn WeightSource>,
    names: WeightNames,
}

impl ModelFiles {
    /// Opens the files, parses the config and builds the tokenizer (weights stay mapped).
    pub fn open(source: ModelSource) -> Result<Self> {
        Self::open_as(source, LoadFormat::Auto)
    }

    /// [`Self::open`], with the weights from `format`.
    pub fn open_as(source: ModelSource, format: LoadFormat) -> Result<Self> {
        if format == LoadFormat::Dummy {
            return Self::open_dummy(source);
        }
        match &source {
            ModelSource::Gguf(path) => {
                let file = GgufFile::open(path)?;
                let config = ModelConfig::from_gguf(&file)?;
                let tokenizer = tokenizer_from_gguf(&file)?;
                Ok(Self {
                    source,
                    config,
                    tokenizer,
                    weights: Box::new(file),
                    names: WeightNames::Gguf,
                })
            }
            ModelSource::HfDir(dir) => {
                let config = ModelConfig::from_hf_json(&dir.join("config.json"))?;
                let tokenizer = Tokenizer::from_hf_dir(dir).map_err(|e| tok_err(dir, e))?;
                let weights = SafetensorsDir::open(dir)?;
                Ok(Self {
                    source,
                    config,
                    tokenizer,
                    weights: Box::new(weights),
                    names: WeightNames::HuggingFace,
                })
            }
        }
    }

    fn open_dummy(source: ModelSource) -> Result<Self> {
        let (config, tokenizer, config_path) = match &source {
            ModelSource::Gguf(path) => {
                let file = GgufFile::open(path)?;
                (
                    ModelConfig::from_gguf(&file)?,
                    tokenizer_from_gguf(&file)?,
                    path.clone(),
                )
            }
            ModelSource::HfDir(dir) => {
                let path = dir.join("config.json");
                let config = ModelConfig::from_hf_json(&path)?;
                let tokenizer = if dir.join("tokenizer.json").is_file() {
                    Tokenizer::from_hf_dir(dir).map_err(|e| tok_err(dir, e))?
                } else {
                    let eos = hf_eos_id(&path);
                    tracing::warn!(
                        "{}: no tokenizer.json; token i reads as `<i>`",
                        dir.display()
                    );
                    Tokenizer::placeholder(config.vocab_size, eos).map_err(|e| tok_err(dir, e))?
                };
                (config, tokenizer, path)
            }
        };
        tracing::info!(
            "dummy weights: random values of {}'s shapes",
            config_path.display()
        );
        let weights = DummyWeights::new(&config, &config_path);
        Ok(Self {
            source,
            config,
            tokenizer,
            weights: Box::new(weights),
            names: WeightNames::HuggingFace,
        })
    }

    /// Uploads the weights to `backend` with every matrix a dense copy in `weight_dtype`,
    /// showing progress.
    pub fn load_model<B: Backend>(
        &self,
        backend: &B,
        weight_dtype: DType,
    ) -> Result<Box<dyn Model<B>>> {
        self.load_model_as(backend, WeightFormat::dense(weight_dtype))
    }

    /// Uploads the weights to `backend`, matrices stored as `format` says, showing
    /// progress.
    pub fn load_model_as<B: Backend>(
        &self,
        backend: &B,
        format: WeightFormat,
    ) -> Result<Box<dyn Model<B>>> {
        let arch = self.config.arch;
        let table = arch.weight_table(&self.config);
        let bar = indicatif::ProgressBar::new(table.len() as u64).with_message("loading weights");
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} tensors")
                .expect("static template"),
        );
        let mut tick = || bar.inc(1);
        let mut loader = WeightLoader::new(
            backend,
            &table,
            self.weights.as_ref(),
            self.names,
            format,
            &mut tick,
        );
        let model = arch.load(self.config.clone(), &mut loader);
        bar.finish_and_clear();
        let (blocks, dense) = loader.bytes_stored();
        tracing::info!(
            "weights: {:.1} MiB on the {} backend ({:.1} MiB as GGUF blocks, {:.1} MiB dense)",
            (blocks + dense) as f64 / 1048576.0,
            backend.name(),
            blocks as f64 / 1048576.0,
            dense as f64 / 1048576.0,
        );
        model
    }
}

/// The first `eos_token_id` of a config.json (an integer or a list), if any.
fn hf_eos_id(config_path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(config_path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let eos = v.get("eos_token_id")?;
    let first = eos.as_array().and_then(|a| a.first()).unwrap_or(eos);
    first.as_u64().map(|id| id as u32)
}

fn tok_err(path: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Builds the tokenizer described by a GGUF's `tokenizer.*` metadata.
fn tokenizer_from_gguf(f: &GgufFile) -> Result<Tokenizer> {
    let opt_u32 = |k: &str| f.get_u64(k).ok().map(|x| x as u32);
    let opt_bool = |k: &str| f.get_bool(k).ok();
    let vocab = GgufVocab {
        model: f.get_str("tokenizer.ggml.model")?.to_string(),
        pre: f.get_str("tokenizer.ggml.pre").ok().map(str::to_string),
        tokens: f.get_str_array("tokenizer.ggml.tokens")?,
        token_types: f
            .get_i32_array("tokenizer.ggml.token_type")
            .unwrap_or_default(),
        merges: f.get_str_array("tokenizer.ggml.merges").unwrap_or_default(),
        scores: f.get_f32_array("tokenizer.ggml.scores").unwrap_or_default(),
        add_space_prefix: opt_bool("tokenizer.ggml.add_space_prefix"),
        bos_token_id: opt_u32("tokenizer.ggml.bos_token_id"),
        eos_token_id: opt_u32("tokenizer.ggml.eos_token_id"),
        unknown_token_id: opt_u32("tokenizer.ggml.unknown_token_id"),
        padding_token_id: opt_u32("tokenizer.ggml.padding_token_id"),
        eot_token_id: opt_u32("tokenizer.ggml.eot_token_id"),
        add_bos_token: opt_bool("tokenizer.ggml.add_bos_token"),
        add_eos_token: opt_bool("tokenizer.ggml.add_eos_token"),
        chat_template: f
            .get_str("tokenizer.chat_template")
            .ok()
            .map(str::to_string),
    };
    Tokenizer::from_gguf_vocab(vocab).map_err(|e| tok_err(f.path(), e))
}
