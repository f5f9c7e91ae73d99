//! The pre-norm decoder layer of Llama and the families built like it (Mistral, SmolLM,
//! Qwen2/3, Phi-3, and the MoE families through [`FeedForward`]):
//!
//! ```text
//! h = x + attn(norm1(x));  out = h + ffn(norm2(h))
//! ```
//!
//! with both additions folded into the next norm through [`Residual`] (the backend's fused
//! add + norm), so a layer returns the branch output and the stream lives outside it.

use ingot_tensor::{Backend, Tensor};

use crate::error::Result;
use crate::layers::attention::Attention;
use crate::layers::mlp::FeedForward;
use crate::layers::norm::{Residual, RmsNorm};
use crate::model::{ForwardBatch, LayerCache};

pub struct PreNormBlock<B: Backend> {
    pub attn_norm: RmsNorm<B>, // [H]
    pub attn: Attention<B>,
    pub ffn_norm: RmsNorm<B>, // [H]
    pub ffn: FeedForward<B>,
}

impl<B: Backend> PreNormBlock<B> {
    /// Takes the previous layer's branch output `x` [T, H] (or the embeddings), returns
    /// this layer's feed-forward output [T, H]; the residual stream is updated in place.
    pub fn forward(
        &self,
        b: &B,
        x: Tensor<B>,
        residual: &mut Residual<B>,
        batch: &ForwardBatch<'_, B>,
        cache: &mut LayerCache<B>,
    ) -> Result<Tensor<B>> {
        let h = residual.add_norm(b, x, &self.attn_norm)?;
        let a = self.attn.forward(b, &h, batch, cache)?;
        let h = residual.add_norm(b, a, &self.ffn_norm)?;
        self.ffn.forward(b, &h)
    }
}
