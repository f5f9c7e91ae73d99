//! Paged self-attention, as every family here runs it: project Q/K/V (biases optional),
//! normalise Q and K when the family does (per head: Qwen3, Gemma 3; across all heads:
//! OLMoE), rotate them
//! (each layer holds its own [`Rope`], so per-layer bases are free), write K/V into the
//! layer's paged cache through the slot mapping, attend over the cache through the block
//! tables (sliding window and scale per layer), project back.
//!
//! Attention is always paged, even for a single sequence, so batching changes nothing here.
//!
//! Q, K and V are one stacked matrix ([`Qkv::Stacked`], with the stacked bias) where the
//! family has no Q/K norms and the three are stored alike: then a step is one matmul, one
//! `rope_kv_write` (rotation and the cache write in one verb), attention, and the output
//! projection, which [`Attention::forward_add`] folds into the residual stream
//! (`matmul_add`): four verbs. Otherwise ([`Qkv::Split`]: Q4_K_M files whose V is Q6_K, or
//! QK-norm families) three matmuls, the norms, rope and kv_write. A family with fused QKV
//! weights (Phi-3) uses them as they are stored, as [`Qkv::Stacked`].

use ingot_tensor::{AttentionParams, Backend, QkvHeads, Tensor};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::linear::Linear;
use crate::layers::norm::RmsNorm;
use crate::layers::rope::Rope;
use crate::model::{ForwardBatch, LayerCache};
use crate::weights::{WeightLoader, layer_name};

/// The query, key and value projections.
pub enum Qkv<B: Backend> {
    /// One matrix of q, k and v rows: [(Hq + 2 Hk) * D, H], its bias [(Hq + 2 Hk) * D].
    Stacked(Linear<B>),
    Split {
        q: Linear<B>, // [Hq*D, H]
        k: Linear<B>, // [Hk*D, H]
        v: Linear<B>, // [Hk*D, H]
    },
}

pub struct Attention<B: Backend> {
    pub qkv: Qkv<B>,
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
        let q_norm = norm(w, "q_norm.weight")?;
        let k_norm = norm(w, "k_norm.weight")?;
        let qkv = if q_norm.is_none() && k_norm.is_none() {
            load_stacked(w, &n)?
        } else {
            None
        };
        let qkv = match qkv {
            Some(q) => q,
            None => Qkv::Split {
                q: Linear::load(w, &n("q_proj"))?,
                k: Linear::load(w, &n("k_proj"))?,
                v: Linear::load(w, &n("v_proj"))?,
            },
        };
        Ok(Self {
            qkv,
            q_norm,
            k_norm,
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

    /// `x` [T, H] -> [T, H], the branch output; writes this step's K/V into `cache`.
    pub fn forward(
        &self,
        b: &B,
        x: &Tensor<B>,
        batch: &ForwardBatch<'_, B>,
        cache: &mut LayerCache<B>,
    ) -> Result<Tensor<B>> {
        let o = self.attend(b, x, batch, cache)?;
        self.o_proj.forward(b, &o)
    }

    /// `residual += attention(x)` for `x` [T, H] and the stream `residual` [T, H]: the
    /// output projection adds into the stream (`matmul_add`), no branch output is made.
    pub fn forward_add(
        &self,
        b: &B,
        x: &Tensor<B>,
        batch: &ForwardBatch<'_, B>,
        cache: &mut LayerCache<B>,
        residual: &mut Tensor<B>,
    ) -> Result<()> {
        let o = self.attend(b, x, batch, cache)?;
        self.o_proj.forward_add(b, &o, residual)
    }

    /// Everything before the output projection: `x` [T, H] -> [T, Hq*D].
    fn attend(
        &self,
        b: &B,
        x: &Tensor<B>,
        batch: &ForwardBatch<'_, B>,
        cache: &mut LayerCache<B>,
    ) -> Result<Tensor<B>> {
        let t = x.dims()[0];
        let (hq, hk, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let group = batch.kv_group(self.params.sliding_window)?;
        let q = match &self.qkv {
            Qkv::Stacked(proj) => {
                let qkv = proj.forward(b, x)?; // [T, (Hq + 2Hk) D]
                let heads = QkvHeads {
                    num_heads: hq,
                    num_kv_heads: hk,
                    head_dim: d,
                };
                b.rope_kv_write(
                    &qkv,
                    heads,
                    batch.positions,
                    &self.rope.inv_freq,
                    self.rope.style,
                    &mut cache.k,
                    &mut cache.v,
                    group.slot_mapping,
                )? // [T, Hq, D]
            }
            Qkv::Split { q, k, v } => {
                let q = q.forward(b, x)?; // [T, Hq*D]
                let k = k.forward(b, x)?; // [T, Hk*D]
                let v = v.forward(b, x)?.reshape([t, hk, d]);
                let mut q = qk_norm(b, q, self.q_norm.as_ref())?.reshape([t, hq, d]);
                let mut k = qk_norm(b, k, self.k_norm.as_ref())?.reshape([t, hk, d]);
                self.rope.apply(b, &mut q, &mut k, batch.positions)?;
                b.kv_write(&k, &v, &mut cache.k, &mut cache.v, group.slot_mapping)?;
                q
            }
        };
        let o = b.paged_attention(&q, &cache.k, &cache.v, &group.attn, self.params)?;
        Ok(o.reshape([t, hq * d]))
    }
}

/// Q, K and V as one stacked matrix (and bias) when they are stored alike and their biases
/// are all present or all absent; `None` otherwise.
fn load_stacked<B: Backend>(
    w: &mut WeightLoader<'_, B>,
    n: &dyn Fn(&str) -> String,
) -> Result<Option<Qkv<B>>> {
    let parts = ["q_proj", "k_proj", "v_proj"];
    let weights: Vec<String> = parts.iter().map(|p| n(&format!("{p}.weight"))).collect();
    let biases: Vec<String> = parts.iter().map(|p| n(&format!("{p}.bias"))).collect();
    let with_bias = biases.iter().filter(|b| w.has(b)).count();
    if with_bias != 0 && with_bias != 3 {
        return Ok(None);
    }
    let names: Vec<&str> = weights.iter().map(String::as_str).collect();
    let Some(weight) = w.stacked_if_alike(&names)? else {
        return Ok(None);
    };
    let bias = if with_bias == 3 {
        let names: Vec<&str> = biases.iter().map(String::as_str).collect();
        Some(w.stacked_vector(&names)?)
    } else {
        None
    };
    Ok(Some(Qkv::Stacked(Linear { weight, bias })))
}

/// The QK-norm of `x` [T, heads * D]: an RMSNorm over each stretch as wide as its weight,
/// each head ([D]: Qwen3, Gemma 3) or the whole projection ([heads * D]: OLMoE); `x` itself
/// without a norm.
fn qk_norm<B: Backend>(b: &B, x: Tensor<B>, norm: Option<&RmsNorm<B>>) -> Result<Tensor<B>> {
    match norm {
        Some(n) => {
            let width = n.weight.dims()[0];
            let rows = x.numel() / width.max(1);
            n.forward(b, &x.reshape([rows, width]))
        }
        None => Ok(x),
    }
}
