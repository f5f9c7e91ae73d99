//! `Linear`: a projection `x W^T + b`, the weight in the model's weight dtype and the
//! optional bias in f32. One matmul verb call; batch invariant because the verb is.

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
}
