//! Decoder layers. [`PreNormBlock`] is Llama's and that of the families built like it
//! (Mistral, SmolLM, Qwen2/3, Phi-3, and the MoE families through [`FeedForward`]):
//!
//! ```text
//! h = x + attn(norm1(x));  out = h + ffn(norm2(h))
//! ```
//!
//! with both additions done by the projections that end each branch (`matmul_add` in
//! [`Attention::forward_add`] and [`FeedForward::forward_add`]): the stream is one [T, H]
//! tensor updated in place, and each norm is a plain RMSNorm of it. On the GPU a layer is
//! then 8 dispatches (norm, QKV, rope + KV write, attention, o_proj + add, norm, gate/up +
//! SiLU·mul, down + add), 9 when attention splits the context.
//!
//! [`SandwichNormBlock`] is Gemma 2/3's, which also normalises each branch's output before
//! adding it: `h = x + norm2(attn(norm1(x)));  out = h + norm4(ffn(norm3(h)))`.
//!
//! It folds its additions into the next norm through [`Residual`] (the backend's fused
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
    /// Runs the layer on the residual stream `residual` [T, H] (the embeddings before the
    /// first layer), in place.
    pub fn forward(
        &self,
        b: &B,
        residual: &mut Tensor<B>,
        batch: &ForwardBatch<'_, B>,
        cache: &mut LayerCache<B>,
    ) -> Result<()> {
        let h = self.attn_norm.forward(b, residual)?;
        self.attn.forward_add(b, &h, batch, cache, residual)?;
        let h = self.ffn_norm.forward(b, residual)?;
        self.ffn.forward_add(b, &h, residual)
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
