//! Feed-forward blocks. [`GatedMlp`] is `down(act(gate(x)) * up(x))` with gate and up as one
//! stacked [2I, H] matrix, so one matmul feeds the fused activation-times-up verb: SiLU
//! (Llama, Qwen, Phi-3) or GELU with the tanh approximation (Gemma). With SiLU the matmul
//! and the activation are one verb (`matmul_silu_mul`), and [`GatedMlp::forward_add`] adds
//! the down projection straight into the residual stream (`matmul_add`).
//!
//! [`FeedForward`] is what a decoder layer holds: the dense gated MLP, or the
//! mixture-of-experts block ([`crate::layers::moe`]: router, experts, shared expert), so MoE
//! families reuse the attention and the layer structure unchanged.

use ingot_tensor::{Backend, Tensor};

use crate::error::Result;
use crate::layers::linear::Linear;
use crate::layers::moe::MoeBlock;
use crate::weights::{WeightLoader, layer_name};

/// The gate activation of a gated MLP (config.json `hidden_act` / `hidden_activation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// GELU, tanh approximation (`gelu_pytorch_tanh`).
    GeluTanh,
}

impl Activation {
    /// `act(gate) * up` for `x` [T, 2I] = [gate | up] -> [T, I].
    pub fn gated<B: Backend>(self, b: &B, x: &Tensor<B>) -> Result<Tensor<B>> {
        match self {
            Activation::Silu => Ok(b.silu_mul(x)?),
            Activation::GeluTanh => Ok(b.gelu_tanh_mul(x)?),
        }
    }
}

pub struct GatedMlp<B: Backend> {
    pub gate_up: Linear<B>, // [2I, H]: gate rows then up rows
    pub down: Linear<B>,    // [H, I]
    pub act: Activation,
}

impl<B: Backend> GatedMlp<B> {
    /// Layer `l`'s `mlp.gate_proj` and `mlp.up_proj` (stacked) and `mlp.down_proj`.
    pub fn load(w: &mut WeightLoader<'_, B>, l: usize, act: Activation) -> Result<Self> {
        Self::load_at(w, &layer_name(l, "mlp"), act)
    }

    /// `{prefix}.gate_proj` and `{prefix}.up_proj` (stacked) and `{prefix}.down_proj`
    /// (Qwen2-MoE's shared expert: `model.layers.{l}.mlp.shared_expert`).
    pub fn load_at(w: &mut WeightLoader<'_, B>, prefix: &str, act: Activation) -> Result<Self> {
        let n = |part: &str| format!("{prefix}.{part}.weight");
        Ok(Self {
            gate_up: Linear {
                weight: w.stacked(&[&n("gate_proj"), &n("up_proj")])?,
                bias: None,
            },
            down: Linear {
                weight: w.tensor(&n("down_proj"))?,
                bias: None,
            },
            act,
        })
    }

    /// Layer `l`'s gate and up projections already fused in one [2I, H] matrix
    /// (`mlp.gate_up_proj`, Phi-3), and `mlp.down_proj`.
    pub fn load_fused(w: &mut WeightLoader<'_, B>, l: usize, act: Activation) -> Result<Self> {
        let n = |part: &str| layer_name(l, &format!("mlp.{part}.weight"));
        Ok(Self {
            gate_up: Linear {
                weight: w.tensor(&n("gate_up_proj"))?,
                bias: None,
            },
            down: Linear {
                weight: w.tensor(&n("down_proj"))?,
                bias: None,
            },
            act,
        })
    }

    /// `x` [T, H] -> [T, H].
    pub fn forward(&self, b: &B, x: &Tensor<B>) -> Result<Tensor<B>> {
        let h = self.hidden(b, x)?; // [T, I]
        self.down.forward(b, &h)
    }

    /// `residual += mlp(x)` for `x` and `residual` [T, H]: the down projection adds into
    /// the stream (`matmul_add`).
    pub fn forward_add(&self, b: &B, x: &Tensor<B>, residual: &mut Tensor<B>) -> Result<()> {
        let h = self.hidden(b, x)?; // [T, I]
        self.down.forward_add(b, &h, residual)
    }

    /// `act(gate(x)) * up(x)` [T, I]: one fused verb for SiLU (`matmul_silu_mul`).
    fn hidden(&self, b: &B, x: &Tensor<B>) -> Result<Tensor<B>> {
        match (self.act, &self.gate_up.bias) {
            (Activation::Silu, None) => Ok(b.matmul_silu_mul(x, &self.gate_up.weight)?),
            _ => {
                let gate_up = self.gate_up.forward(b, x)?; // [T, 2I]
                self.act.gated(b, &gate_up)
            }
        }
    }
}

/// The feed-forward part of a decoder layer.
pub enum FeedForward<B: Backend> {
    Dense(GatedMlp<B>),
    Moe(Box<MoeBlock<B>>),
}

impl<B: Backend> FeedForward<B> {
    /// `x` [T, H] -> [T, H].
    pub fn forward(&self, b: &B, x: &Tensor<B>) -> Result<Tensor<B>> {
        match self {
            FeedForward::Dense(mlp) => mlp.forward(b, x),
            FeedForward::Moe(moe) => moe.forward(b, x),
        }
    }

    /// `residual += ffn(x)`, both [T, H].
    pub fn forward_add(&self, b: &B, x: &Tensor<B>, residual: &mut Tensor<B>) -> Result<()> {
        match self {
            FeedForward::Dense(mlp) => mlp.forward_add(b, x, residual),
            FeedForward::Moe(moe) => moe.forward_add(b, x, residual),
        }
    }
}
