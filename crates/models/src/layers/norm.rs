//! RMSNorm and the residual stream.
//!
//! `RmsNorm` is `x / rms(x) * w`. Gemma's `x / rms(x) * (1 + w)` is the same layer: its
//! weight table marks those tensors ([`crate::weights::WeightSpec::hf_offset`]) so that the
//! loader stores `1 + w`, computed in f32 as transformers does (GGUF files hold the sum).
//!
//! [`Residual`] carries the residual stream through a decoder whose branch outputs must
//! exist on their own before they join the stream (a family that norms them first), with
//! the backend's fused `residual += x; y = norm(residual)`: the first norm of a forward pass
//! starts the stream from its input, every later one folds its input into it. The plain
//! pre-norm block needs none of it: its projections add into the stream themselves
//! (`crate::layers::block`).

use ingot_tensor::{Backend, Tensor};

use crate::error::Result;
use crate::weights::WeightLoader;

pub struct RmsNorm<B: Backend> {
    pub weight: Tensor<B>, // [H]
    pub eps: f32,
}

impl<B: Backend> RmsNorm<B> {
    pub fn load(w: &mut WeightLoader<'_, B>, name: &str, eps: f32) -> Result<Self> {
        Ok(Self {
            weight: w.vector(name)?,
            eps,
        })
    }

    /// Norm of each row of `x` [T, H] (or of each head, given [T * heads, D]).
    pub fn forward(&self, b: &B, x: &Tensor<B>) -> Result<Tensor<B>> {
        Ok(b.rms_norm(x, None, &self.weight, self.eps)?)
    }
}

/// The residual stream of one forward pass.
pub struct Residual<B: Backend> {
    stream: Option<Tensor<B>>, // [T, H]
}

impl<B: Backend> Default for Residual<B> {
    fn default() -> Self {
        Self { stream: None }
    }
}

impl<B: Backend> Residual<B> {
    /// Adds `x` [T, H] to the stream (or starts it with `x`) and returns `norm(stream)`.
    pub fn add_norm(&mut self, b: &B, x: Tensor<B>, norm: &RmsNorm<B>) -> Result<Tensor<B>> {
        match &mut self.stream {
            Some(r) => Ok(b.rms_norm(&x, Some(r), &norm.weight, norm.eps)?),
            None => {
                let y = norm.forward(b, &x)?;
                self.stream = Some(x);
                Ok(y)
            }
        }
    }
}
