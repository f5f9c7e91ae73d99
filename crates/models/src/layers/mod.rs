//! Building blocks shared by every decoder family. Each is a value that owns its device
//! weights and knows its shapes; a family file builds them from its weight table (through
//! [`crate::weights::WeightLoader`]) and composes them in its forward pass. Nothing here
//! names a file format or a family.
//!
//! - [`embedding`]: token embedding (optionally scaled, Gemma) and the LM head;
//! - [`linear`]: `x W^T + b`;
//! - [`norm`]: RMSNorm and the residual stream with its fused add + norm;
//! - [`rope`]: rotary-embedding frequencies and their application;
//! - [`attention`]: paged self-attention (QKV bias, QK-norm, sliding window, per-layer RoPE);
//! - [`mlp`]: gated MLPs (SiLU, GELU-tanh) and [`mlp::FeedForward`], dense or MoE;
//! - [`moe`]: the mixture-of-experts block (router, stacked experts, shared expert);
//! - [`block`]: the pre-norm decoder layer most families share.

pub mod attention;
pub mod block;
pub mod embedding;
pub mod linear;
pub mod mlp;
pub mod moe;
pub mod norm;
pub mod rope;
