//! `ModelConfig`: the hyper-parameters of a decoder, read from an HF `config.json` or from
//! GGUF metadata into one shape. Missing keys that have a standard default take it (as
//! transformers does); missing keys without one are errors naming the file and the key.

use std::path::Path;

use ingot_tensor::RopeStyle;
use serde_json::Value;

use crate::error::{ModelError, Result};
use crate::layers::rope::{RopeConfig, RopeScaling};
use crate::loader::WeightSource;
use crate::loader::gguf::GgufFile;
use crate::registry::{self, Arch};

#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub arch: Arch,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f32,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Biases on the Q/K/V projections (Qwen2; Llama with `attention_bias`).
    pub qkv_bias: bool,
    pub rope: RopeConfig,
    pub sliding_window: Option<usize>,
    /// Multiplier of attention scores: `1 / sqrt(head_dim)` unless the family says otherwise.
    pub attn_scale: f32,
}

fn cfg_err(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Config {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl ModelConfig {
    /// Parses an HF `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| cfg_err(path, format!("cannot read config: {e}")))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| cfg_err(path, format!("invalid JSON: {e}")))?;
        Self::from_hf_value(path, &v)
    }

    pub fn from_hf_value(path: &Path, v: &Value) -> Result<Self> {
        let arch_name = v
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .ok_or_else(|| cfg_err(path, "missing key 'architectures'"))?;
        let arch = registry::from_hf(arch_name).ok_or_else(|| ModelError::UnknownArchitecture {
            path: path.to_path_buf(),
            arch: arch_name.to_string(),
            supported: registry::supported_hf(),
        })?;
        let req = |key: &str| -> Result<usize> {
            v.get(key)
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| cfg_err(path, format!("missing or non-integer key '{key}'")))
        };
        let opt_usize = |key: &str| v.get(key).and_then(Value::as_u64).map(|x| x as usize);
        let opt_f64 = |key: &str| v.get(key).and_then(Value::as_f64);

        let hidden_size = req("hidden_size")?;
        let num_heads = req("num_attention_heads")?;
        let head_dim = opt_usize("head_dim").unwrap_or(hidden_size / num_heads);
        // transformers 5 moved rope settings into `rope_parameters`; 4.x used `rope_scaling`
        // and a top-level `rope_theta`.
        let rope_params = v.get("rope_parameters").or_else(|| v.get("rope_scaling"));
        let theta = rope_params
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
            .or_else(|| opt_f64("rope_theta"))
            .unwrap_or(10000.0);
        let scaling = hf_rope_scaling(path, rope_params)?;
        let sliding_window = match v.get("use_sliding_window").and_then(Value::as_bool) {
            Some(false) => None,
            _ => opt_usize("sliding_window"),
        };
        Ok(Self {
            arch,
            hidden_size,
            intermediate_size: req("intermediate_size")?,
            num_layers: req("num_hidden_layers")?,
            num_heads,
            num_kv_heads: opt_usize("num_key_value_heads").unwrap_or(num_heads),
            head_dim,
            vocab_size: req("vocab_size")?,
            rms_norm_eps: opt_f64("rms_norm_eps").unwrap_or(1e-6) as f32,
            max_position_embeddings: opt_usize("max_position_embeddings").unwrap_or(2048),
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            qkv_bias: arch == Arch::Qwen2
                || v.get("attention_bias")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            rope: RopeConfig {
                theta,
                rotary_dim: head_dim,
                scaling,
                style: RopeStyle::Neox,
            },
            sliding_window,
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
        })
    }

    /// Reads GGUF metadata (`general.architecture` and the `<arch>.*` keys llama.cpp writes).
    /// GGUF stores Llama-family Q/K weights permuted for interleaved RoPE, so those models
    /// rotate in the interleaved form; qwen2 GGUFs keep the HF layout (NeoX form).
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let path = file.path();
        let arch_name = file.get_str("general.architecture")?;
        let arch =
            registry::from_gguf(arch_name).ok_or_else(|| ModelError::UnknownArchitecture {
                path: path.to_path_buf(),
                arch: arch_name.to_string(),
                supported: registry::supported_gguf(),
            })?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let u = |k: &str| -> Result<usize> { Ok(file.get_u64(&key(k))? as usize) };
        let opt_u = |k: &str| file.get_u64(&key(k)).ok().map(|x| x as usize);
        let opt_f = |k: &str| file.get_f64(&key(k)).ok();

        let hidden_size = u("embedding_length")?;
        let num_heads = u("attention.head_count")?;
        let head_dim = opt_u("attention.key_length").unwrap_or(hidden_size / num_heads);
        let vocab_size = match opt_u("vocab_size") {
            Some(v) => v,
            None => file.shape("token_embd.weight")?[0],
        };
        let scaling = if file.contains("rope_freqs.weight") {
            RopeScaling::Factors(file.load_f32("rope_freqs.weight")?)
        } else {
            match file.get_str(&key("rope.scaling.type")).ok() {
                Some("linear") => RopeScaling::Linear {
                    factor: opt_f("rope.scaling.factor").unwrap_or(1.0),
                },
                Some("none") | None => RopeScaling::None,
                Some(other) => {
                    return Err(cfg_err(
                        path,
                        format!("unsupported rope scaling type '{other}'"),
                    ));
                }
            }
        };
        let style = match arch {
            Arch::Llama => RopeStyle::Interleaved,
            Arch::Qwen2 => RopeStyle::Neox,
        };
        Ok(Self {
            arch,
            hidden_size,
            intermediate_size: u("feed_forward_length")?,
            num_layers: u("block_count")?,
            num_heads,
            num_kv_heads: opt_u("attention.head_count_kv").unwrap_or(num_heads),
            head_dim,
            vocab_size,
            rms_norm_eps: opt_f("attention.layer_norm_rms_epsilon").unwrap_or(1e-5) as f32,
            max_position_embeddings: opt_u("context_length").unwrap_or(2048),
            tie_word_embeddings: !file.contains("output.weight"),
            qkv_bias: file.contains("blk.0.attn_q.bias"),
            rope: RopeConfig {
                theta: opt_f("rope.freq_base").unwrap_or(10000.0),
                rotary_dim: opt_u("rope.dimension_count").unwrap_or(head_dim),
                scaling,
                style,
            },
            sliding_window: None,
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
        })
    }
}

fn hf_rope_scaling(path: &Path, p: Option<&Value>) -> Result<RopeScaling> {
    let Some(p) = p.filter(|p| p.is_object()) else {
        return Ok(RopeScaling::None);
    };
    let kind = p
        .get("rope_type")
        .or_else(|| p.get("type"))
        .and_then(Value::as_str);
    let num = |k: &str| -> Result<f64> {
        p.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| cfg_err(path, format!("rope scaling lacks '{k}'")))
    };
    Ok(match kind {
        None | Some("default") => RopeScaling::None,
        Some("linear") => RopeScaling::Linear {
            factor: num("factor")?,
        },
        Some("llama3") => RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position: num("original_max_position_embeddings")?,
        },
        Some(other) => {
            return Err(cfg_err(
                path,
                format!("unsupported rope scaling type '{other}'"),
            ));
        }
    })
}
