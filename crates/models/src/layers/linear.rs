//! `Linear`: a projection `x W^T + b`, the weight in the model's weight dtype and the
//! optional bias in f32. One matmul verb call (or `matmul_add`, which adds the result into
//! a residual stream); batch invariant because the verbs are.

use ingot_tensor::{Backend, Tensor};

use crate::error::Result;
use crate::weights::WeightLoader;

pub struct Linear<B: Backend> {
    pub weight: Tensor<B>,       // [N, K]
    pub bias: Option<Tensor<B>>, // [N]
}

impl<B: Backend> Linear<B> {
    /// The weight `{prefix}.weight` and, when the table holds one, the bias `{prefix}.bias`.
    pub fn load(w: &mut WeightLoader<'_, B>, prefix: &str) -> Result<Self> {
        Ok(Self {
            weight: w.tensor(&format!("{prefix}.weight"))?,
            bias: w.optional(&format!("{prefix}.bias"))?,
        })
    }

    /// `x` [T, K] -> [T, N].
    pub fn forward(&self, b: &B, x: &Tensor<B>) -> Result<Tensor<B>> {
        Ok(b.matmul(x, &self.weight, self.bias.as_ref())?)
    }

    /// `residual += x W^T + b` for `x` [T, K] and `residual` [T, N] (`matmul_add`).
    pub fn forward_add(&self, b: &B, x: &Tensor<B>, residual: &mut Tensor<B>) -> Result<()> {
        Ok(b.matmul_add(x, &self.weight, self.bias.as_ref(), residual)?)
    }
}
