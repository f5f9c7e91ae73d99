//! Gemma 3 (text; Gemma3ForCausalLM, GGUF `gemma3`). What sets it apart from Llama, each a
//! shared layer or a config value:
//!
//! - layers interleave sliding-window attention (window `sliding_window`, RoPE base 1e4) and
//!   global attention (RoPE base `rope_theta`, scaled where the config says), five to one
//!   by default ([`ModelConfig::layer_window`], [`ModelConfig::rope_local`]);
//! - norms before and after attention and MLP ([`SandwichNormBlock`]), QK-norm, every RMSNorm
//!   in the `x * (1 + w)` form (the weight table adds the 1 to Hugging Face weights; GGUF
//!   files hold the sum already);
//! - embeddings multiplied by sqrt(H), the tied head reading the table unscaled;
//! - GELU-tanh gated MLP; scores scaled by `1 / sqrt(query_pre_attn_scalar)`.

use ingot_tensor::{Backend, Tensor};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::attention::Attention;
use crate::layers::block::SandwichNormBlock;
use crate::layers::embedding::{Embedding, LmHead};
use crate::layers::mlp::{FeedForward, GatedMlp};
use crate::layers::norm::{Residual, RmsNorm};
use crate::layers::rope::Rope;
use crate::model::{ForwardBatch, LayerCache, LayerKv, Model, check_caches};
use crate::weights::{WeightLoader, WeightTable, layer_name};

/// Every weight of a Gemma 3 model, by Hugging Face and GGUF name, with its shape. Norm
/// weights get `hf_offset` 1.
pub fn weight_table(c: &ModelConfig) -> WeightTable {
    let (h, d, i) = (c.hidden_size, c.head_dim, c.intermediate_size);
    let (qd, kd) = (c.num_heads * d, c.num_kv_heads * d);
    let mut t = WeightTable::default();
    t.global(
        "model.embed_tokens.weight",
        "token_embd.weight",
        &[c.vocab_size, h],
    );
    let norms = [
        ("input_layernorm", "attn_norm", h),
        ("self_attn.q_norm", "attn_q_norm", d),
        ("self_attn.k_norm", "attn_k_norm", d),
        ("post_attention_layernorm", "post_attention_norm", h),
        ("pre_feedforward_layernorm", "ffn_norm", h),
        ("post_feedforward_layernorm", "post_ffw_norm", h),
    ];
    for l in 0..c.num_layers {
        for (hf, gguf, n) in norms {
            t.layer(l, &format!("{hf}.weight"), &format!("{gguf}.weight"), &[n])
                .hf_offset = 1.0;
        }
        t.layer(l, "self_attn.q_proj.weight", "attn_q.weight", &[qd, h]);
        t.layer(l, "self_attn.k_proj.weight", "attn_k.weight", &[kd, h]);
        t.layer(l, "self_attn.v_proj.weight", "attn_v.weight", &[kd, h]);
        t.layer(l, "self_attn.o_proj.weight", "attn_output.weight", &[h, qd]);
        t.layer(l, "mlp.gate_proj.weight", "ffn_gate.weight", &[i, h]);
        t.layer(l, "mlp.up_proj.weight", "ffn_up.weight", &[i, h]);
        t.layer(l, "mlp.down_proj.weight", "ffn_down.weight", &[h, i]);
    }
    t.global("model.norm.weight", "output_norm.weight", &[h])
        .hf_offset = 1.0;
    if !c.tie_word_embeddings {
        t.global("lm_head.weight", "output.weight", &[c.vocab_size, h]);
    }
    t
}

pub struct Gemma3<B: Backend> {
    config: ModelConfig,
    embed: Embedding<B>, // rows scaled by sqrt(H)
    layers: Vec<SandwichNormBlock<B>>,
    norm: RmsNorm<B>, // [H]
    head: LmHead<B>,
}

impl<B: Backend> Gemma3<B> {
    /// Builds the model from the weights of [`weight_table`].
    pub fn load(config: ModelConfig, w: &mut WeightLoader<'_, B>) -> Result<Self> {
        let c = &config;
        let global = Rope::new(w.backend(), &c.rope)?;
        let local = match &c.rope_local {
            Some(r) => Rope::new(w.backend(), r)?,
            None => global.clone(),
        };
        let eps = c.rms_norm_eps;
        let mut layers = Vec::with_capacity(c.num_layers);
        for l in 0..c.num_layers {
            let n = |part: &str| layer_name(l, &format!("{part}.weight"));
            let window = c.layer_window(l);
            let rope = if window.is_some() { &local } else { &global };
            layers.push(SandwichNormBlock {
                attn_norm: RmsNorm::load(w, &n("input_layernorm"), eps)?,
                attn: Attention::load(w, c, l, rope.clone(), window)?,
                post_attn_norm: RmsNorm::load(w, &n("post_attention_layernorm"), eps)?,
                ffn_norm: RmsNorm::load(w, &n("pre_feedforward_layernorm"), eps)?,
                ffn: FeedForward::Dense(GatedMlp::load(w, l, c.hidden_act)?),
                post_ffn_norm: RmsNorm::load(w, &n("post_feedforward_layernorm"), eps)?,
            });
        }
        // transformers multiplies by sqrt(H) rounded to the weight dtype (f32 here).
        let scale = (c.hidden_size as f64).sqrt() as f32;
        let embed =
            Embedding::load(w, "model.embed_tokens.weight", c.tie_word_embeddings)?.scaled(scale);
        let norm = RmsNorm::load(w, "model.norm.weight", eps)?;
        let head = LmHead::load(w)?;
        Ok(Self {
            config,
            embed,
            layers,
            norm,
            head,
        })
    }
}

impl<B: Backend> Model<B> for Gemma3<B> {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn kv_layout(&self) -> Vec<LayerKv> {
        LayerKv::per_layer(&self.config)
    }

    fn forward(
        &self,
        b: &B,
        batch: &ForwardBatch<'_, B>,
        caches: &mut [LayerCache<B>],
    ) -> Result<Tensor<B>> {
        check_caches(caches, self.layers.len())?;
        let mut x = self.embed.forward(b, batch.token_ids)?; // [T, H]
        let mut residual = Residual::default();
        for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
            x = layer.forward(b, x, &mut residual, batch, cache)?;
        }
        let h = residual.add_norm(b, x, &self.norm)?; // [T, H]
        let rows = b.gather_rows(&h, batch.logits_indices)?; // [S', H]
        self.head.forward(b, &rows, &self.embed) // [S', V]
    }
}
