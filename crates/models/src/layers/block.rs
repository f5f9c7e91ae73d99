//! Decoder layers. [`PreNormBlock`] is Llama's and that of the families built like it
//! (Mistral, SmolLM, Qwen2/3, Phi-3, and the MoE families through [`FeedForward`]):
//!
//! ```text
//! h = x + attn(norm1(x));  out = h + ffn(norm2(h))
//! ```
//!
//! [`SandwichNormBlock`] is Gemma 2/3's, which also normalises each branch's output before
//! adding it: `h = x + norm2(attn(norm1(x)));  out = h + norm4(ffn(norm3(h)))`.
//!
//! Both fold their additions into the next norm through [`Residual`] (the backend's fused
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

pub struct SandwichNormBlock<B: Backend> {
    pub attn_norm: RmsNorm<B>, // [H]
    pub attn: Attention<B>,
    pub post_attn_norm: RmsNorm<B>, // [H]
    pub ffn_norm: RmsNorm<B>,       // [H]
    pub ffn: FeedForward<B>,
    pub post_ffn_norm: RmsNorm<B>, // [H]
}

impl<B: Backend> SandwichNormBlock<B> {
    /// As [`PreNormBlock::forward`]; the returned branch output is already normalised.
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
        let a = self.post_attn_norm.forward(b, &a)?;
        let h = residual.add_norm(b, a, &self.ffn_norm)?;
        let m = self.ffn.forward(b, &h)?;
        self.post_ffn_norm.forward(b, &m)
    }
}
