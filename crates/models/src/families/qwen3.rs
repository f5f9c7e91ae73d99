//! Qwen3 (dense): the Llama decoder without Q/K/V biases, with QK-norm, an RMSNorm over each
//! head of q and k (weights [D] shared by the heads) before RoPE. The attention layer applies
//! the norms wherever the weight table lists them, so Qwen3 is
//! [`Llama`](crate::families::llama::Llama) over this table.

use crate::config::ModelConfig;
use crate::families::llama;
use crate::weights::WeightTable;

/// Llama's weights plus `self_attn.{q,k}_norm.weight` [D] per layer (GGUF `attn_{q,k}_norm`).
pub fn weight_table(c: &ModelConfig) -> WeightTable {
    let mut t = llama::weight_table(c);
    for l in 0..c.num_layers {
        t.layer(
            l,
            "self_attn.q_norm.weight",
            "attn_q_norm.weight",
            &[c.head_dim],
        );
        t.layer(
            l,
            "self_attn.k_norm.weight",
            "attn_k_norm.weight",
            &[c.head_dim],
        );
    }
    t
}
