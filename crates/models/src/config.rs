//! `ModelConfig`: the hyper-parameters of a decoder, read from an HF `config.json` or from
//! GGUF metadata into one shape. Missing keys that have a standard default take it (as
//! transformers does); missing keys without one are errors naming the file and the key.

use std::path::Path;

use ingot_tensor::RopeStyle;
use serde_json::Value;

use crate::error::{ModelError, Result};
use crate::layers::mlp::Activation;
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
    /// RoPE of the global layers (of every layer, without `rope_local`).
    pub rope: RopeConfig,
    /// RoPE of the sliding-window layers where it differs (Gemma 3's local base of 1e4).
    pub rope_local: Option<RopeConfig>,
    pub sliding_window: Option<usize>,
    /// Per layer: whether it attends over `sliding_window` only. All true unless the family
    /// interleaves sliding and global layers (Gemma 3). // [num_layers]
    pub sliding_layers: Vec<bool>,
    /// The gate activation of the MLP.
    pub hidden_act: Activation,
    /// Multiplier of attention scores: `1 / sqrt(head_dim)` unless the family says otherwise
    /// (Gemma 3: `1 / sqrt(query_pre_attn_scalar)`).
    pub attn_scale: f32,
    /// The mixture-of-experts MLP of the MoE families; `None` for dense models.
    pub moe: Option<MoeConfig>,
}

/// The mixture-of-experts hyper-parameters (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE).
#[derive(Clone, Debug, PartialEq)]
pub struct MoeConfig {
    pub num_experts: usize,
    /// Experts per token.
    pub top_k: usize,
    /// Width I of one expert's gated MLP.
    pub expert_size: usize,
    /// Divide the chosen experts' weights by their sum (`norm_topk_prob`; Mixtral always).
    pub renormalize: bool,
    /// Width of the always-on shared expert (Qwen2-MoE), with its sigmoid gate.
    pub shared_expert_size: Option<usize>,
    /// Per layer: whether its MLP is the MoE block (else the dense MLP of
    /// `intermediate_size`: Qwen2/3-MoE's `mlp_only_layers`, `decoder_sparse_step`).
    /// // [num_layers]
    pub sparse_layers: Vec<bool>,
}

impl MoeConfig {
    /// The routing rule of `moe_route`: softmax scores, top-k, renormalised or not.
    pub fn routing(&self) -> ingot_tensor::moe::MoeRouting {
        ingot_tensor::moe::MoeRouting {
            top_k: self.top_k,
            scoring: ingot_tensor::moe::MoeScoring::Softmax,
            renormalize: self.renormalize,
        }
    }
}

/// Gemma 3 makes every sixth layer global when the config does not list layer types (and
/// llama.cpp always does, GGUF files carrying no pattern).
const GEMMA3_SLIDING_PATTERN: usize = 6;
/// Gemma 3's RoPE base on sliding layers when the config does not name one (llama.cpp's too).
const GEMMA3_LOCAL_ROPE_THETA: f64 = 10000.0;

/// Layer `l` of an interleaving with one global layer in every `pattern`: sliding unless
/// `(l + 1) % pattern == 0`.
fn sliding_pattern(layers: usize, pattern: usize) -> Vec<bool> {
    (0..layers).map(|l| (l + 1) % pattern != 0).collect()
}

impl ModelConfig {
    /// The sliding window of layer `l`, if it has one.
    pub fn layer_window(&self, l: usize) -> Option<usize> {
        self.sliding_window.filter(|_| self.sliding_layers[l])
    }
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

        for key in ["final_logit_softcapping", "attn_logit_softcapping"] {
            if v.get(key).is_some_and(|x| !x.is_null()) {
                return Err(cfg_err(path, format!("'{key}' is not supported yet")));
            }
        }
        let hidden_size = req("hidden_size")?;
        let num_layers = req("num_hidden_layers")?;
        let num_heads = req("num_attention_heads")?;
        let head_dim = opt_usize("head_dim").unwrap_or(hidden_size / num_heads);
        // transformers 5 moved rope settings into `rope_parameters` (per layer type for
        // Gemma 3: `full_attention`, `sliding_attention`); 4.x used `rope_scaling` and
        // top-level `rope_theta` (and `rope_local_base_freq`).
        let params = v.get("rope_parameters");
        let per_type = |kind: &str| params.and_then(|p| p.get(kind)).filter(|p| p.is_object());
        let global = per_type("full_attention")
            .or(params)
            .or_else(|| v.get("rope_scaling"));
        let theta_of =
            |p: Option<&Value>| p.and_then(|p| p.get("rope_theta")).and_then(Value::as_f64);
        let theta = theta_of(global)
            .or_else(|| opt_f64("rope_theta"))
            .unwrap_or(10000.0);
        let scaling = hf_rope_scaling(path, global)?;
        let partial = global
            .and_then(|p| p.get("partial_rotary_factor"))
            .and_then(Value::as_f64)
            .or_else(|| opt_f64("partial_rotary_factor"))
            .unwrap_or(1.0);
        let rotary_dim = (head_dim as f64 * partial) as usize;
        let rope = RopeConfig {
            theta,
            rotary_dim,
            scaling,
            style: RopeStyle::Neox,
        };
        let rope_local = (arch == Arch::Gemma3).then(|| RopeConfig {
            theta: theta_of(per_type("sliding_attention"))
                .or_else(|| opt_f64("rope_local_base_freq"))
                .unwrap_or(GEMMA3_LOCAL_ROPE_THETA),
            scaling: RopeScaling::None,
            ..rope.clone()
        });
        let sliding_window = match v.get("use_sliding_window").and_then(Value::as_bool) {
            Some(false) => None,
            _ => opt_usize("sliding_window"),
        };
        let sliding_layers = hf_sliding_layers(path, v, arch, num_layers)?;
        let act = v
            .get("hidden_activation")
            .or_else(|| v.get("hidden_act"))
            .and_then(Value::as_str);
        let hidden_act = match act {
            None | Some("silu") => Activation::Silu,
            Some("gelu_pytorch_tanh") => Activation::GeluTanh,
            Some(other) => {
                return Err(cfg_err(
                    path,
                    format!(
                        "unsupported activation '{other}' (supported: silu, gelu_pytorch_tanh)"
                    ),
                ));
            }
        };
        let attn_scale = opt_f64("query_pre_attn_scalar").unwrap_or(head_dim as f64);
        let moe = hf_moe(path, v, arch, num_layers)?;
        Ok(Self {
            arch,
            hidden_size,
            intermediate_size: req("intermediate_size")?,
            num_layers,
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
            qkv_bias: matches!(arch, Arch::Qwen2 | Arch::Qwen2Moe)
                || v.get("attention_bias")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            rope,
            rope_local,
            sliding_window,
            sliding_layers,
            hidden_act,
            attn_scale: (1.0 / attn_scale.sqrt()) as f32,
            moe,
        })
    }

    /// Reads GGUF metadata (`general.architecture` and the `<arch>.*` keys llama.cpp writes).
    /// GGUF stores Llama-family Q/K weights permuted for interleaved RoPE, so those models
    /// rotate in the interleaved form; the other families' GGUFs keep the HF layout (NeoX).
    ///
    /// Gemma 3 as llama.cpp reads it: every sixth layer global unless the file lists a
    /// pattern, sliding layers on RoPE base 1e4 unless `rope.freq_base_swa` says otherwise,
    /// scores scaled by `1 / sqrt(key_length)` (the 27B model, whose `query_pre_attn_scalar`
    /// differs, is not handled), GELU-tanh MLP.
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
        // llama.cpp writes Mixtral as `llama` with experts.
        let experts = file.get_u64(&key("expert_count")).unwrap_or(0) as usize;
        let arch = if arch == Arch::Llama && experts > 0 {
            Arch::Mixtral
        } else {
            arch
        };
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
            Arch::Llama | Arch::Mixtral => RopeStyle::Interleaved,
            Arch::Qwen2
            | Arch::Qwen3
            | Arch::Gemma3
            | Arch::Phi3
            | Arch::Qwen2Moe
            | Arch::Qwen3Moe
            | Arch::Olmoe => RopeStyle::Neox,
        };
        let num_layers = u("block_count")?;
        let rope = RopeConfig {
            theta: opt_f("rope.freq_base").unwrap_or(10000.0),
            rotary_dim: opt_u("rope.dimension_count").unwrap_or(head_dim),
            scaling,
            style,
        };
        let gemma = arch == Arch::Gemma3;
        let rope_local = gemma.then(|| RopeConfig {
            theta: opt_f("rope.freq_base_swa").unwrap_or(GEMMA3_LOCAL_ROPE_THETA),
            scaling: RopeScaling::None,
            ..rope.clone()
        });
        let sliding_layers = match opt_u("attention.sliding_window_pattern") {
            Some(0) => return Err(cfg_err(path, "attention.sliding_window_pattern is 0")),
            Some(p) => sliding_pattern(num_layers, p),
            None if gemma => sliding_pattern(num_layers, GEMMA3_SLIDING_PATTERN),
            None => vec![true; num_layers],
        };
        Ok(Self {
            arch,
            hidden_size,
            // MoE files may carry only the expert width.
            intermediate_size: match opt_u("feed_forward_length") {
                Some(i) => i,
                None => u("expert_feed_forward_length")?,
            },
            num_layers,
            num_heads,
            num_kv_heads: opt_u("attention.head_count_kv").unwrap_or(num_heads),
            head_dim,
            vocab_size,
            rms_norm_eps: opt_f("attention.layer_norm_rms_epsilon").unwrap_or(1e-5) as f32,
            max_position_embeddings: opt_u("context_length").unwrap_or(2048),
            tie_word_embeddings: !file.contains("output.weight"),
            qkv_bias: file.contains("blk.0.attn_q.bias"),
            rope,
            rope_local,
            // Read where llama.cpp reads it: for llama and qwen2 files the key is not a window.
            sliding_window: opt_u("attention.sliding_window")
                .filter(|&w| w > 0 && matches!(arch, Arch::Gemma3 | Arch::Phi3)),
            sliding_layers,
            hidden_act: if gemma {
                Activation::GeluTanh
            } else {
                Activation::Silu
            },
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            moe: gguf_moe(file, arch, arch_name, experts, num_layers)?,
        })
    }
}

/// The MoE hyper-parameters of an HF config: `num_local_experts` (Mixtral) or
/// `num_experts`, `num_experts_per_tok`, the expert width (`moe_intermediate_size` for
/// Qwen2/3-MoE, `intermediate_size` for Mixtral and OLMoE), `norm_topk_prob` (Mixtral always
/// renormalises), Qwen2-MoE's shared expert, and which layers are sparse.
fn hf_moe(path: &Path, v: &Value, arch: Arch, layers: usize) -> Result<Option<MoeConfig>> {
    if !arch.is_moe() {
        return Ok(None);
    }
    let get = |k: &str| v.get(k).and_then(Value::as_u64).map(|x| x as usize);
    let num_experts = get("num_local_experts")
        .or_else(|| get("num_experts"))
        .ok_or_else(|| cfg_err(path, "missing key 'num_experts' / 'num_local_experts'"))?;
    let top_k = get("num_experts_per_tok")
        .ok_or_else(|| cfg_err(path, "missing key 'num_experts_per_tok'"))?;
    if top_k == 0 || top_k > num_experts {
        return Err(cfg_err(
            path,
            format!("num_experts_per_tok = {top_k} for {num_experts} experts"),
        ));
    }
    let expert_size = match arch {
        Arch::Qwen2Moe | Arch::Qwen3Moe => get("moe_intermediate_size"),
        _ => get("intermediate_size"),
    }
    .ok_or_else(|| cfg_err(path, "missing the expert width (moe_intermediate_size)"))?;
    let renormalize = arch == Arch::Mixtral
        || v.get("norm_topk_prob")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    let shared_expert_size = match arch {
        Arch::Qwen2Moe => get("shared_expert_intermediate_size").filter(|&s| s > 0),
        _ => None,
    };
    if v.get("clip_qkv").is_some_and(|x| !x.is_null()) {
        return Err(cfg_err(path, "'clip_qkv' is not supported yet"));
    }
    let step = get("decoder_sparse_step").unwrap_or(1).max(1);
    let dense: Vec<usize> = v
        .get("mlp_only_layers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_u64().map(|x| x as usize))
                .collect()
        })
        .unwrap_or_default();
    let sparse_layers = (0..layers)
        .map(|l| !dense.contains(&l) && (l + 1) % step == 0)
        .collect();
    Ok(Some(MoeConfig {
        num_experts,
        top_k,
        expert_size,
        renormalize,
        shared_expert_size,
        sparse_layers,
    }))
}

/// The MoE hyper-parameters of a GGUF file, as llama.cpp reads them: `expert_count`,
/// `expert_used_count`, the expert width (`expert_feed_forward_length`, else
/// `feed_forward_length`), the shared expert's width, and the renormalisation llama.cpp
/// applies per architecture (Mixtral and Qwen3-MoE yes, Qwen2-MoE and OLMoE no) unless the
/// file says (`expert_weights_norm`). Every layer is sparse.
fn gguf_moe(
    file: &GgufFile,
    arch: Arch,
    arch_name: &str,
    experts: usize,
    layers: usize,
) -> Result<Option<MoeConfig>> {
    if !arch.is_moe() {
        return Ok(None);
    }
    let path = file.path();
    let key = |k: &str| format!("{arch_name}.{k}");
    let opt_u = |k: &str| file.get_u64(&key(k)).ok().map(|x| x as usize);
    if experts == 0 {
        return Err(cfg_err(
            path,
            format!("{} is missing or 0", key("expert_count")),
        ));
    }
    let top_k = opt_u("expert_used_count").unwrap_or(0);
    if top_k == 0 || top_k > experts {
        return Err(cfg_err(
            path,
            format!(
                "{} = {top_k} for {experts} experts",
                key("expert_used_count")
            ),
        ));
    }
    let expert_size = opt_u("expert_feed_forward_length")
        .or_else(|| opt_u("feed_forward_length"))
        .ok_or_else(|| cfg_err(path, "no expert width (expert_feed_forward_length)"))?;
    let renormalize = file
        .get_bool(&key("expert_weights_norm"))
        .unwrap_or(matches!(arch, Arch::Mixtral | Arch::Qwen3Moe));
    Ok(Some(MoeConfig {
        num_experts: experts,
        top_k,
        expert_size,
        renormalize,
        shared_expert_size: opt_u("expert_shared_feed_forward_length").filter(|&s| s > 0),
        sparse_layers: vec![true; layers],
    }))
}

/// Which layers of an HF config slide: `layer_types` when listed, else Gemma 3's pattern
/// (`sliding_window_pattern`, default 6), else all.
fn hf_sliding_layers(path: &Path, v: &Value, arch: Arch, layers: usize) -> Result<Vec<bool>> {
    if let Some(types) = v.get("layer_types").and_then(Value::as_array) {
        if types.len() != layers {
            return Err(cfg_err(
                path,
                format!(
                    "'layer_types' lists {} layers, the model has {layers}",
                    types.len()
                ),
            ));
        }
        return types
            .iter()
            .map(|t| match t.as_str() {
                Some("sliding_attention") => Ok(true),
                Some("full_attention") => Ok(false),
                _ => Err(cfg_err(
                    path,
                    format!("unknown layer type {t} in 'layer_types'"),
                )),
            })
            .collect();
    }
    if arch != Arch::Gemma3 {
        return Ok(vec![true; layers]);
    }
    let pattern = ["sliding_window_pattern", "_sliding_window_pattern"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_u64))
        .map_or(GEMMA3_SLIDING_PATTERN, |p| p as usize);
    if pattern == 0 {
        return Err(cfg_err(path, "'sliding_window_pattern' is 0"));
    }
    Ok(sliding_pattern(layers, pattern))
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
