//! The mixture-of-experts families: Mixtral, Qwen2-MoE, Qwen3-MoE and OLMoE. Each is the
//! [`Llama`] decoder (its attention variant included) whose MLP is the MoE block
//! ([`crate::layers::moe`]) on its sparse layers; they differ only in what this file holds:
//!
//! | family | attention | MoE names (HF) | shared expert | renormalised top-k |
//! |---|---|---|---|---|
//! | Mixtral | Llama | `block_sparse_moe.{gate, experts.N.w1/w3/w2}` | - | always |
//! | Qwen2-MoE | Q/K/V biases | `mlp.{gate, experts.N.*_proj}` | `mlp.shared_expert`, sigmoid `shared_expert_gate` | `norm_topk_prob` |
//! | Qwen3-MoE | QK-norm per head | as Qwen2-MoE | - | `norm_topk_prob` |
//! | OLMoE | QK-norm over all heads | as Qwen2-MoE | - | `norm_topk_prob` |
//!
//! GGUF names are llama.cpp's: `ffn_gate_inp` (router), `ffn_{gate,up,down}_exps` (expert
//! stacks), `ffn_{gate,up,down}_shexp` and `ffn_gate_inp_shexp` (shared expert and gate).
//! One file for the four: their tables share every line but these names.

use ingot_tensor::Backend;

use crate::config::{ModelConfig, MoeConfig};
use crate::error::Result;
use crate::families::llama::{self, Llama};
use crate::families::qwen3;
use crate::layers::attention::Attention;
use crate::layers::block::PreNormBlock;
use crate::layers::linear::Linear;
use crate::layers::mlp::{FeedForward, GatedMlp};
use crate::layers::moe::{MoeBlock, MoeNames, SharedExpert};
use crate::layers::norm::RmsNorm;
use crate::layers::rope::Rope;
use crate::registry::Arch;
use crate::weights::{WeightLoader, WeightTable, layer_name};

fn moe_of(c: &ModelConfig) -> &MoeConfig {
    c.moe
        .as_ref()
        .unwrap_or_else(|| unreachable!("{:?} without an MoE config", c.arch))
}

/// The Hugging Face part names of a layer's router and expert matrices: (block prefix,
/// gate, up, down).
fn hf_parts(arch: Arch) -> (&'static str, &'static str, &'static str, &'static str) {
    match arch {
        Arch::Mixtral => ("block_sparse_moe", "w1", "w3", "w2"),
        _ => ("mlp", "gate_proj", "up_proj", "down_proj"),
    }
}

/// The weight-table keys of layer `l`'s MoE block.
fn names(arch: Arch, l: usize) -> MoeNames {
    let (block, gate, up, down) = hf_parts(arch);
    let stack = |part: &str| layer_name(l, &format!("{block}.experts.{part}.weight"));
    MoeNames {
        router: layer_name(l, &format!("{block}.gate.weight")),
        gate: stack(gate),
        up: stack(up),
        down: stack(down),
    }
}

/// Every weight of an MoE model: the decoder's (with the family's attention extras), the
/// dense MLP only on dense layers, and per sparse layer the router, the expert stacks and
/// the shared expert.
pub fn weight_table(c: &ModelConfig) -> WeightTable {
    let moe = moe_of(c);
    let (h, d) = (c.hidden_size, c.head_dim);
    let mut t = match c.arch {
        Arch::Qwen3Moe => qwen3::weight_table(c),
        _ => llama::weight_table(c),
    };
    if c.arch == Arch::Olmoe {
        for l in 0..c.num_layers {
            let (q, k) = (c.num_heads * d, c.num_kv_heads * d);
            t.layer(l, "self_attn.q_norm.weight", "attn_q_norm.weight", &[q]);
            t.layer(l, "self_attn.k_norm.weight", "attn_k_norm.weight", &[k]);
        }
    }
    let (e, i) = (moe.num_experts, moe.expert_size);
    let (block, gate, up, down) = hf_parts(c.arch);
    for l in (0..c.num_layers).filter(|&l| moe.sparse_layers[l]) {
        let dense: Vec<String> = ["gate_proj", "up_proj", "down_proj"]
            .iter()
            .map(|p| layer_name(l, &format!("mlp.{p}.weight")))
            .collect();
        t.specs.retain(|s| !dense.contains(&s.hf));
        t.layer(
            l,
            &format!("{block}.gate.weight"),
            "ffn_gate_inp.weight",
            &[e, h],
        );
        for (part, gguf, shape) in [
            (gate, "ffn_gate_exps", [e, i, h]),
            (up, "ffn_up_exps", [e, i, h]),
            (down, "ffn_down_exps", [e, h, i]),
        ] {
            t.layer_experts(
                l,
                &format!("{block}.experts.{part}.weight"),
                &format!("{block}.experts.{{e}}.{part}.weight"),
                &format!("{gguf}.weight"),
                shape,
            );
        }
        if let Some(s) = moe.shared_expert_size {
            let n = |p: &str| format!("mlp.shared_expert.{p}.weight");
            t.layer(l, &n("gate_proj"), "ffn_gate_shexp.weight", &[s, h]);
            t.layer(l, &n("up_proj"), "ffn_up_shexp.weight", &[s, h]);
            t.layer(l, &n("down_proj"), "ffn_down_shexp.weight", &[h, s]);
            t.layer(
                l,
                "mlp.shared_expert_gate.weight",
                "ffn_gate_inp_shexp.weight",
                &[1, h],
            );
        }
    }
    t
}

/// Builds an MoE model (a [`Llama`] decoder) from the weights of [`weight_table`].
pub fn load<B: Backend>(config: ModelConfig, w: &mut WeightLoader<'_, B>) -> Result<Llama<B>> {
    let c = &config;
    let moe = moe_of(c);
    let rope = Rope::new(w.backend(), &c.rope)?;
    let mut layers = Vec::with_capacity(c.num_layers);
    for l in 0..c.num_layers {
        let n = |part: &str| layer_name(l, part);
        let attn_norm = RmsNorm::load(w, &n("input_layernorm.weight"), c.rms_norm_eps)?;
        let attn = Attention::load(w, c, l, rope.clone(), c.layer_window(l))?;
        let ffn_norm = RmsNorm::load(w, &n("post_attention_layernorm.weight"), c.rms_norm_eps)?;
        let ffn = if moe.sparse_layers[l] {
            let mut block = MoeBlock::load(w, &names(c.arch, l), moe.routing())?;
            if moe.shared_expert_size.is_some() {
                block.shared = Some(SharedExpert {
                    mlp: GatedMlp::load_at(w, &n("mlp.shared_expert"), c.hidden_act)?,
                    gate: Some(Linear::load(w, &n("mlp.shared_expert_gate"))?),
                });
            }
            FeedForward::Moe(Box::new(block))
        } else {
            FeedForward::Dense(GatedMlp::load(w, l, c.hidden_act)?)
        };
        layers.push(PreNormBlock {
            attn_norm,
            attn,
            ffn_norm,
            ffn,
        });
    }
    Llama::from_layers(config, layers, w)
}
