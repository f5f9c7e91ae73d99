//! Paged self-attention, as every family here runs it: project Q/K/V (biases optional),
//! normalise each head of Q and K when the family does (Qwen3, Gemma 3), rotate them
//! (each layer holds its own [`Rope`], so per-layer bases are free), write K/V into the
//! layer's paged cache through the slot mapping, attend over the cache through the block
//! tables (sliding window and scale per layer), project back.
//!
//! Attention is always paged, even for a single sequence, so batching changes nothing here.
//! Q, K and V stay three matrices for now; a family with fused QKV weights (Phi-3) cuts
//! them into these three at load ([`crate::weights::WeightLoader::split_rows`]).

use ingot_tensor::{AttentionParams, Backend, Tensor};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::linear::Linear;
use crate::layers::norm::RmsNorm;
use crate::layers::rope::Rope;
use crate::model::{ForwardBatch, LayerCache};
use crate::weights::{WeightLoader, layer_name};

pub struct Attention<B: Backend> {
    pub q_proj: Linear<B>,          // [Hq*D, H]
    pub k_proj: Linear<B>,          // [Hk*D, H]
    pub v_proj: Linear<B>,          // [Hk*D, H]
    pub q_norm: Option<RmsNorm<B>>, // [D], applied per head
    pub k_norm: Option<RmsNorm<B>>, // [D], applied per head
    pub o_proj: Linear<B>,          // [H, Hq*D]
    pub rope: Rope<B>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Score scale and sliding window of this layer.
    pub params: AttentionParams,
}

impl<B: Backend> Attention<B> {
    /// Layer `l`'s `self_attn.{q,k,v,o}_proj` (with biases and `q_norm`/`k_norm` when the
    /// weight table lists them), rotated by `rope`, attending over `sliding_window`.
    pub fn load(
        w: &mut WeightLoader<'_, B>,
        c: &ModelConfig,
        l: usize,
        rope: Rope<B>,
        sliding_window: Option<usize>,
    ) -> Result<Self> {
        let n = |part: &str| layer_name(l, &format!("self_attn.{part}"));
        let norm = |w: &mut WeightLoader<'_, B>, part: &str| -> Result<Option<RmsNorm<B>>> {
            let name = n(part);
            if w.has(&name) {
                RmsNorm::load(w, &name, c.rms_norm_eps).map(Some)
            } else {
                Ok(None)
            }
        };
        Ok(Self {
            q_proj: Linear::load(w, &n("q_proj"))?,
            k_proj: Linear::load(w, &n("k_proj"))?,
            v_proj: Linear::load(w, &n("v_proj"))?,
            q_norm: norm(w, "q_norm.weight")?,
            k_norm: norm(w, "k_norm.weight")?,
            o_proj: Linear::load(w, &n("o_proj"))?,
            rope,
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            params: AttentionParams {
                scale: c.attn_scale,
                sliding_window,
            },
        })
    }

    /// `x` [T, H] -> [T, H]; writes this step's K/V into `cache`.
    pub fn forward(
        &self,
        b: &B,
        x: &Tensor<B>,
        batch: &ForwardBatch<'_, B>,
        cache: &mut LayerCache<B>,
    ) -> Result<Tensor<B>> {
        let t = x.dims()[0];
        let (hq, hk, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let q = self.q_proj.forward(b, x)?; // [T, Hq*D]
        let k = self.k_proj.forward(b, x)?; // [T, Hk*D]
        let v = self.v_proj.forward(b, x)?.reshape([t, hk, d]);
        let mut q = per_head_norm(b, q, self.q_norm.as_ref(), t * hq, d)?.reshape([t, hq, d]);
        let mut k = per_head_norm(b, k, self.k_norm.as_ref(), t * hk, d)?.reshape([t, hk, d]);
        self.rope.apply(b, &mut q, &mut k, batch.positions)?;
        b.kv_write(&k, &v, &mut cache.k, &mut cache.v, batch.slot_mapping)?;
        let o = b.paged_attention(&q, &cache.k, &cache.v, &batch.attn, self.params)?;
        self.o_proj.forward(b, &o.reshape([t, hq * d]))
    }
}

/// RMSNorm of each head of `x` ([rows, D] viewed), or `x` itself without a norm.
fn per_head_norm<B: Backend>(
    b: &B,
    x: Tensor<B>,
    norm: Option<&RmsNorm<B>>,
    rows: usize,
    d: usize,
) -> Result<Tensor<B>> {
    match norm {
        Some(n) => n.forward(b, &x.reshape([rows, d])),
        None => Ok(x),
    }
}
