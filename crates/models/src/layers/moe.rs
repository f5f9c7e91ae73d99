//! The mixture-of-experts block: a router picks each token's experts (`moe_route`), the
//! experts run grouped by expert and their outputs are summed with the router's weights
//! straight into the residual stream (`moe_experts_add`), together with an always-on shared
//! expert behind a sigmoid gate where the family has one (Qwen2-MoE). Routing and grouping
//! stay on the device: nothing is read back, and a token's result never depends on the
//! other tokens of the step (the verbs' contract, DESIGN.md §5).
//!
//! Expert weights are stacks [E, N, K]: the gate and up rows of each expert stacked per
//! expert ([E, 2I, H]) so one projection feeds SiLU·mul, and the down rows [E, H, I]. GGUF
//! files hold such stacks (`ffn_{gate,up,down}_exps`), Hugging Face checkpoints one matrix
//! per expert; [`WeightLoader::experts`] makes either into the stack.

use ingot_tensor::moe::MoeRouting;
use ingot_tensor::{Backend, MoeExperts, MoeShared, Tensor};

use crate::error::Result;
use crate::layers::linear::Linear;
use crate::layers::mlp::GatedMlp;
use crate::weights::WeightLoader;

/// The always-on expert of Qwen2-MoE and its gate.
pub struct SharedExpert<B: Backend> {
    pub mlp: GatedMlp<B>,
    pub gate: Option<Linear<B>>, // [1, H]: sigmoid gate logits
}

pub struct MoeBlock<B: Backend> {
    pub router: Linear<B>,  // [E, H], always f32
    pub gate_up: Tensor<B>, // [E, 2I, H]
    pub down: Tensor<B>,    // [E, H, I]
    pub routing: MoeRouting,
    pub shared: Option<SharedExpert<B>>,
}

/// The weight-table names of one layer's MoE block (keys of [`WeightLoader`]).
pub struct MoeNames {
    pub router: String,
    pub gate: String,
    pub up: String,
    pub down: String,
}

impl<B: Backend> MoeBlock<B> {
    /// The router and expert stacks named by `names` (the shared expert is the family's to
    /// add).
    pub fn load(
        w: &mut WeightLoader<'_, B>,
        names: &MoeNames,
        routing: MoeRouting,
    ) -> Result<Self> {
        Ok(Self {
            router: Linear {
                weight: w.f32_matrix(&names.router)?,
                bias: None,
            },
            gate_up: w.experts(&[&names.gate, &names.up])?,
            down: w.experts(&[&names.down])?,
            routing,
            shared: None,
        })
    }

    /// `residual += moe(x)` for `x` and `residual` [T, H].
    pub fn forward_add(&self, b: &B, x: &Tensor<B>, residual: &mut Tensor<B>) -> Result<()> {
        let logits = self.router.forward(b, x)?; // [T, E]
        let routes = b.moe_route(&logits, self.routing)?; // [T, k] ids and weights
        let shared_out = match &self.shared {
            Some(s) => Some(s.mlp.forward(b, x)?), // [T, H]
            None => None,
        };
        let shared_gate = match self.shared.as_ref().and_then(|s| s.gate.as_ref()) {
            Some(g) => Some(g.forward(b, x)?), // [T, 1]
            None => None,
        };
        let shared = shared_out.as_ref().map(|out| MoeShared {
            out,
            gate: shared_gate.as_ref(),
        });
        let experts = MoeExperts {
            gate_up: &self.gate_up,
            down: &self.down,
        };
        Ok(b.moe_experts_add(x, &routes, experts, shared, residual)?)
    }

    /// `moe(x)` [T, H] on its own (added to zeros).
    pub fn forward(&self, b: &B, x: &Tensor<B>) -> Result<Tensor<B>> {
        let mut out = b.zeros(x.shape().clone(), ingot_tensor::DType::F32)?;
        self.forward_add(b, x, &mut out)?;
        Ok(out)
    }
}
