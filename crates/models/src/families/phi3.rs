//! Phi-3 (Phi3ForCausalLM: Phi-3, Phi-3.5 and Phi-4 mini): the Llama decoder with its Q/K/V
//! projections fused in one `qkv_proj` [(Hq + 2 Hk) D, H] and its gate/up projections in one
//! `gate_up_proj` [2I, H] (gate rows first), in Hugging Face and GGUF files alike (GGUF:
//! `attn_qkv`, and `ffn_up` for the fused gate/up). Both are used as stored: they already
//! have the stacked layouts attention and the gated MLP read. Partial rotary embedding
//! (`partial_rotary_factor`) comes from the config.

use ingot_tensor::Backend;

use crate::config::ModelConfig;
use crate::error::Result;
use crate::families::llama::Llama;
use crate::layers::attention::{Attention, Qkv};
use crate::layers::block::PreNormBlock;
use crate::layers::linear::Linear;
use crate::layers::mlp::{FeedForward, GatedMlp};
use crate::layers::norm::RmsNorm;
use crate::layers::rope::Rope;
use crate::weights::{WeightLoader, WeightTable, layer_name};

/// Every weight of a Phi-3 model, by Hugging Face and GGUF name, with its shape.
pub fn weight_table(c: &ModelConfig) -> WeightTable {
    let (h, d, i) = (c.hidden_size, c.head_dim, c.intermediate_size);
    let (qd, kd) = (c.num_heads * d, c.num_kv_heads * d);
    let mut t = WeightTable::default();
    t.global(
        "model.embed_tokens.weight",
        "token_embd.weight",
        &[c.vocab_size, h],
    );
    for l in 0..c.num_layers {
        t.layer(l, "input_layernorm.weight", "attn_norm.weight", &[h]);
        t.layer(
            l,
            "self_attn.qkv_proj.weight",
            "attn_qkv.weight",
            &[qd + 2 * kd, h],
        );
        t.layer(l, "self_attn.o_proj.weight", "attn_output.weight", &[h, qd]);
        t.layer(
            l,
            "post_attention_layernorm.weight",
            "ffn_norm.weight",
            &[h],
        );
        t.layer(l, "mlp.gate_up_proj.weight", "ffn_up.weight", &[2 * i, h]);
        t.layer(l, "mlp.down_proj.weight", "ffn_down.weight", &[h, i]);
    }
    t.global("model.norm.weight", "output_norm.weight", &[h]);
    if !c.tie_word_embeddings {
        t.global("lm_head.weight", "output.weight", &[c.vocab_size, h]);
    }
    t
}

/// Builds a Phi-3 model (a [`Llama`] decoder) from the weights of [`weight_table`].
pub fn load<B: Backend>(config: ModelConfig, w: &mut WeightLoader<'_, B>) -> Result<Llama<B>> {
    let c = &config;
    let rope = Rope::new(w.backend(), &c.rope)?;
    let mut layers = Vec::with_capacity(c.num_layers);
    for l in 0..c.num_layers {
        let n = |part: &str| layer_name(l, part);
        // Phi-3 stores q, k and v stacked already: [(Hq + 2 Hk) * D, H], the layout of
        // `Qkv::Stacked`, so the tensor is used as it is.
        let qkv = w.tensor(&n("self_attn.qkv_proj.weight"))?;
        let linear = |weight| Linear { weight, bias: None };
        let attn = Attention {
            qkv: Qkv::Stacked(linear(qkv)),
            q_norm: None,
            k_norm: None,
            o_proj: linear(w.tensor(&n("self_attn.o_proj.weight"))?),
            rope: rope.clone(),
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            params: ingot_tensor::AttentionParams {
                scale: c.attn_scale,
                sliding_window: c.layer_window(l),
            },
        };
        layers.push(PreNormBlock {
            attn_norm: RmsNorm::load(w, &n("input_layernorm.weight"), c.rms_norm_eps)?,
            attn,
            ffn_norm: RmsNorm::load(w, &n("post_attention_layernorm.weight"), c.rms_norm_eps)?,
            ffn: FeedForward::Dense(GatedMlp::load_fused(w, l, c.hidden_act)?),
        });
    }
    Llama::from_layers(config, layers, w)
}
