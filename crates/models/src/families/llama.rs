//! The Llama family: Llama 2/3, Mistral, SmolLM and Qwen2 (Q/K/V biases, switched on by
//! [`ModelConfig::qkv_bias`]). Pre-norm layers of attention and a SiLU-gated MLP, tied or
//! untied embeddings; everything it does is a shared layer. Qwen3 and Phi-3 are this
//! decoder too, with other weights ([`super::qwen3`], [`super::phi3`]).

use ingot_tensor::{Backend, Tensor};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::attention::Attention;
use crate::layers::block::PreNormBlock;
use crate::layers::embedding::{Embedding, LmHead};
use crate::layers::mlp::{FeedForward, GatedMlp};
use crate::layers::norm::RmsNorm;
use crate::layers::rope::Rope;
use crate::model::{ForwardBatch, LayerCache, LayerKv, Model, check_caches};
use crate::weights::{WeightLoader, WeightTable, layer_name};

/// Every weight of a Llama-family model, by Hugging Face and GGUF name, with its shape.
pub fn weight_table(c: &ModelConfig) -> WeightTable {
    let (h, d, i) = (c.hidden_size, c.head_dim, c.intermediate_size);
    let (qd, kd) = (c.num_heads * d, c.num_kv_heads * d);
    let mut t = WeightTable::default();
    t.global(
        "model.embed_tokens.weight",
        "token_embd.weight",
        &[c.vocab_size, h],
    );
    for l in 0..c.num_layers {
        t.layer(l, "input_layernorm.weight", "attn_norm.weight", &[h]);
        t.layer(l, "self_attn.q_proj.weight", "attn_q.weight", &[qd, h]);
        t.layer(l, "self_attn.k_proj.weight", "attn_k.weight", &[kd, h]);
        t.layer(l, "self_attn.v_proj.weight", "attn_v.weight", &[kd, h]);
        if c.qkv_bias {
            t.layer(l, "self_attn.q_proj.bias", "attn_q.bias", &[qd]);
            t.layer(l, "self_attn.k_proj.bias", "attn_k.bias", &[kd]);
            t.layer(l, "self_attn.v_proj.bias", "attn_v.bias", &[kd]);
        }
        t.layer(l, "self_attn.o_proj.weight", "attn_output.weight", &[h, qd]);
        t.layer(
            l,
            "post_attention_layernorm.weight",
            "ffn_norm.weight",
            &[h],
        );
        t.layer(l, "mlp.gate_proj.weight", "ffn_gate.weight", &[i, h]);
        t.layer(l, "mlp.up_proj.weight", "ffn_up.weight", &[i, h]);
        t.layer(l, "mlp.down_proj.weight", "ffn_down.weight", &[h, i]);
    }
    t.global("model.norm.weight", "output_norm.weight", &[h]);
    if !c.tie_word_embeddings {
        t.global("lm_head.weight", "output.weight", &[c.vocab_size, h]);
    }
    t
}

pub struct Llama<B: Backend> {
    config: ModelConfig,
    embed: Embedding<B>,
    layers: Vec<PreNormBlock<B>>,
    norm: RmsNorm<B>, // [H]
    head: LmHead<B>,
}

impl<B: Backend> Llama<B> {
    /// Builds the model from the weights of [`weight_table`].
    pub fn load(config: ModelConfig, w: &mut WeightLoader<'_, B>) -> Result<Self> {
        let c = &config;
        let rope = Rope::new(w.backend(), &c.rope)?;
        let mut layers = Vec::with_capacity(c.num_layers);
        for l in 0..c.num_layers {
            let n = |part: &str| layer_name(l, part);
            layers.push(PreNormBlock {
                attn_norm: RmsNorm::load(w, &n("input_layernorm.weight"), c.rms_norm_eps)?,
                attn: Attention::load(w, c, l, rope.clone(), c.layer_window(l))?,
                ffn_norm: RmsNorm::load(w, &n("post_attention_layernorm.weight"), c.rms_norm_eps)?,
                ffn: FeedForward::Dense(GatedMlp::load(w, l, c.hidden_act)?),
            });
        }
        Self::from_layers(config, layers, w)
    }

    /// The model around `layers`: the embedding, final norm and head of the weight table.
    pub fn from_layers(
        config: ModelConfig,
        layers: Vec<PreNormBlock<B>>,
        w: &mut WeightLoader<'_, B>,
    ) -> Result<Self> {
        let embed = Embedding::load(w, "model.embed_tokens.weight", config.tie_word_embeddings)?;
        let norm = RmsNorm::load(w, "model.norm.weight", config.rms_norm_eps)?;
        let head = LmHead::load(w)?;
        Ok(Self {
            config,
            embed,
            layers,
            norm,
            head,
        })
    }
}

impl<B: Backend> Model<B> for Llama<B> {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn kv_layout(&self) -> Vec<LayerKv> {
        LayerKv::per_layer(&self.config)
    }

    fn forward(
        &self,
        b: &B,
        batch: &ForwardBatch<'_, B>,
        caches: &mut [LayerCache<B>],
    ) -> Result<Tensor<B>> {
        check_caches(caches, self.layers.len())?;
        let mut residual = self.embed.forward(b, batch.token_ids)?; // [T, H]
        for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
            layer.forward(b, &mut residual, batch, cache)?;
        }
        let h = self.norm.forward(b, &residual)?; // [T, H]
        let rows = b.gather_rows(&h, batch.logits_indices)?; // [S', H]
        self.head.forward(b, &rows, &self.embed) // [S', V]
    }
}
