//! The Llama-family decoder (Llama 2/3, Mistral, SmolLM, Qwen2), generic over the backend.
//!
//! One forward pass takes the flat token batch of a step (any mix of prefill chunks and
//! decode rows, DESIGN.md §2) and returns logits only for the rows that will be sampled.
//! Attention is always paged: K/V are written to the cache through the slot mapping and read
//! back through block tables, even for a single sequence, so batching changes nothing here.
//! Qwen2 differs only by Q/K/V biases, which [`ModelConfig::qkv_bias`] switches on.

use ingot_tensor::{AttentionMeta, AttentionParams, Backend, DType, Op, Shape, Tensor};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::loader::{WeightFormat, WeightSource};

/// Where each weight lives in a file: HF names or GGUF names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightNames {
    HuggingFace,
    Gguf,
}

impl WeightNames {
    /// The file's name for the weight Hugging Face calls `hf` (a name of [`weight_shapes`]).
    pub fn file_name(self, hf: &str) -> String {
        if self == WeightNames::HuggingFace {
            return hf.to_string();
        }
        match hf {
            "model.embed_tokens.weight" => return "token_embd.weight".into(),
            "model.norm.weight" => return "output_norm.weight".into(),
            "lm_head.weight" => return "output.weight".into(),
            _ => {}
        }
        let rest = hf
            .strip_prefix("model.layers.")
            .unwrap_or_else(|| unreachable!("no GGUF name for {hf}"));
        let (i, part) = rest
            .split_once('.')
            .unwrap_or_else(|| unreachable!("no GGUF name for {hf}"));
        let g = match part {
            "input_layernorm.weight" => "attn_norm.weight",
            "post_attention_layernorm.weight" => "ffn_norm.weight",
            "self_attn.q_proj.weight" => "attn_q.weight",
            "self_attn.k_proj.weight" => "attn_k.weight",
            "self_attn.v_proj.weight" => "attn_v.weight",
            "self_attn.q_proj.bias" => "attn_q.bias",
            "self_attn.k_proj.bias" => "attn_k.bias",
            "self_attn.v_proj.bias" => "attn_v.bias",
            "self_attn.o_proj.weight" => "attn_output.weight",
            "mlp.gate_proj.weight" => "ffn_gate.weight",
            "mlp.up_proj.weight" => "ffn_up.weight",
            "mlp.down_proj.weight" => "ffn_down.weight",
            other => unreachable!("no GGUF name for {other}"),
        };
        format!("blk.{i}.{g}")
    }
}

struct Layer<B: Backend> {
    attn_norm: Tensor<B>,  // [H]
    wq: Tensor<B>,         // [Hq*D, H]
    wk: Tensor<B>,         // [Hk*D, H]
    wv: Tensor<B>,         // [Hk*D, H]
    bq: Option<Tensor<B>>, // [Hq*D]
    bk: Option<Tensor<B>>, // [Hk*D]
    bv: Option<Tensor<B>>, // [Hk*D]
    wo: Tensor<B>,         // [H, Hq*D]
    mlp_norm: Tensor<B>,   // [H]
    w_gate_up: Tensor<B>,  // [2I, H]: gate rows then up rows
    w_down: Tensor<B>,     // [H, I]
}

/// The paged KV cache of one layer.
pub struct LayerCache<B: Backend> {
    pub k: Tensor<B>, // [num_blocks, Hk, block_size, D]
    pub v: Tensor<B>, // [num_blocks, Hk, block_size, D]
}

/// Device tensors describing one step's flat batch (built by the runner's InputBatch).
pub struct ForwardBatch<'a, B: Backend> {
    pub token_ids: &'a Tensor<B>,      // [T] u32
    pub positions: &'a Tensor<B>,      // [T] u32
    pub slot_mapping: &'a Tensor<B>,   // [T] u32
    pub logits_indices: &'a Tensor<B>, // [S'] u32: rows to sample
    pub attn: AttentionMeta<'a, B>,
}

pub struct LlamaModel<B: Backend> {
    pub config: ModelConfig,
    embed: Tensor<B>, // [V, H]
    layers: Vec<Layer<B>>,
    norm: Tensor<B>,            // [H]
    lm_head: Option<Tensor<B>>, // [V, H]; None when tied to `embed`
    inv_freq: Tensor<B>,        // [R/2]
}

/// Loads tensors by name, checking each shape against the config.
struct Loader<'a, B: Backend> {
    backend: &'a B,
    src: &'a dyn WeightSource,
    names: WeightNames,
    shapes: std::collections::HashMap<String, Vec<usize>>,
    format: WeightFormat,
    on_tensor: &'a mut dyn FnMut(),
}

impl<B: Backend> Loader<'_, B> {
    /// The file's name for weight `hf_name` (named as in [`weight_shapes`]) and its shape,
    /// after checking the file's shape against the table's.
    fn checked(&self, hf_name: &str) -> Result<(String, Vec<usize>)> {
        let expected = self
            .shapes
            .get(hf_name)
            .unwrap_or_else(|| unreachable!("{hf_name} is not in weight_shapes"))
            .clone();
        let name = self.names.file_name(hf_name);
        let shape = self.src.shape(&name)?;
        if shape != expected {
            return Err(crate::loader::LoadError::Tensor {
                path: self.src.file_of(&name).to_path_buf(),
                tensor: name,
                message: format!("shape {shape:?} does not match the config's {expected:?}"),
            }
            .into());
        }
        Ok((name, expected))
    }

    /// The elements of weight `hf_name` read from the file as f32.
    fn raw(&mut self, hf_name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let (name, shape) = self.checked(hf_name)?;
        let data = self.src.load_f32(&name)?;
        (self.on_tensor)();
        Ok((data, shape))
    }

    /// The matrices `hf_names` stacked by rows as one tensor of GGUF blocks, when blocks are
    /// kept, every part is stored in the same block format, and the backend supports each
    /// verb of `uses` for it; `None` otherwise (the caller loads a dense copy).
    fn blocks(&mut self, hf_names: &[&str], uses: &[Op]) -> Result<Option<Tensor<B>>> {
        if !self.format.keep_blocks {
            return Ok(None);
        }
        let mut parts = Vec::with_capacity(hf_names.len());
        for hf in hf_names {
            let (name, shape) = self.checked(hf)?;
            let Some((dt, bytes)) = self.src.blocks(&name)? else {
                return Ok(None);
            };
            let usable = uses.iter().all(|&op| self.backend.supports(op, dt));
            if !usable || parts.first().is_some_and(|&(d, _, _)| d != dt) {
                return Ok(None);
            }
            parts.push((dt, bytes, shape));
        }
        let (dt, k) = (parts[0].0, parts[0].2[1]);
        let n = parts.iter().map(|p| p.2[0]).sum::<usize>();
        let tensor = if let [(_, bytes, _)] = parts[..] {
            self.backend.from_blocks(bytes, Shape::new([n, k]), dt)?
        } else {
            let stacked: Vec<u8> = parts.iter().flat_map(|p| p.1.iter().copied()).collect();
            self.backend.from_blocks(&stacked, Shape::new([n, k]), dt)?
        };
        for _ in &parts {
            (self.on_tensor)();
        }
        Ok(Some(tensor))
    }

    /// Uploads one weight: vectors in f32; matrices serving `uses` as GGUF blocks where
    /// [`Self::blocks`] can, else in the dense weight dtype.
    fn load_for(&mut self, hf_name: &str, uses: &[Op]) -> Result<Tensor<B>> {
        if self.shapes.get(hf_name).is_some_and(|s| s.len() == 2)
            && let Some(t) = self.blocks(&[hf_name], uses)?
        {
            return Ok(t);
        }
        let (data, shape) = self.raw(hf_name)?;
        let dtype = if shape.len() == 1 {
            DType::F32
        } else {
            self.format.dense
        };
        Ok(self.backend.from_f32(&data, Shape::new(shape), dtype)?)
    }

    /// Uploads one weight that only matmul reads (or a vector).
    fn load(&mut self, hf_name: &str) -> Result<Tensor<B>> {
        self.load_for(hf_name, &[Op::Matmul])
    }

    fn load_opt(&mut self, hf_name: &str) -> Result<Option<Tensor<B>>> {
        if self.shapes.contains_key(hf_name) {
            self.load(hf_name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Rows of several [n_i, k] matrices stacked into one [sum n_i, k] tensor.
    fn stacked(&mut self, hf_names: &[&str]) -> Result<Tensor<B>> {
        if let Some(t) = self.blocks(hf_names, &[Op::Matmul])? {
            return Ok(t);
        }
        let mut data = Vec::new();
        let (mut n, mut k) = (0, 0);
        for name in hf_names {
            let (part, shape) = self.raw(name)?;
            data.extend(part);
            n += shape[0];
            k = shape[1];
        }
        Ok(self
            .backend
            .from_f32(&data, Shape::new([n, k]), self.format.dense)?)
    }
}

/// Every weight the decoder reads, by Hugging Face name, with its row-major shape: the one
/// place the shapes are written down. [`LlamaModel::load`] checks files against it and the
/// dummy loader ([`crate::loader::dummy`]) generates tensors from it.
pub fn weight_shapes(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (h, d, i) = (c.hidden_size, c.head_dim, c.intermediate_size);
    let (qd, kd) = (c.num_heads * d, c.num_kv_heads * d);
    let mut v = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![c.vocab_size, h],
    )];
    for l in 0..c.num_layers {
        let mut layer = |part: &str, shape: Vec<usize>| {
            v.push((format!("model.layers.{l}.{part}"), shape));
        };
        layer("input_layernorm.weight", vec![h]);
        layer("self_attn.q_proj.weight", vec![qd, h]);
        layer("self_attn.k_proj.weight", vec![kd, h]);
        layer("self_attn.v_proj.weight", vec![kd, h]);
        if c.qkv_bias {
            layer("self_attn.q_proj.bias", vec![qd]);
            layer("self_attn.k_proj.bias", vec![kd]);
            layer("self_attn.v_proj.bias", vec![kd]);
        }
        layer("self_attn.o_proj.weight", vec![h, qd]);
        layer("post_attention_layernorm.weight", vec![h]);
        layer("mlp.gate_proj.weight", vec![i, h]);
        layer("mlp.up_proj.weight", vec![i, h]);
        layer("mlp.down_proj.weight", vec![h, i]);
    }
    v.push(("model.norm.weight".to_string(), vec![h]));
    if !c.tie_word_embeddings {
        v.push(("lm_head.weight".to_string(), vec![c.vocab_size, h]));
    }
    v
}

impl<B: Backend> LlamaModel<B> {
    /// Number of tensors [`Self::load`] reads, for progress bars.
    pub fn tensor_count(cfg: &ModelConfig) -> usize {
        weight_shapes(cfg).len()
    }

    /// Reads every weight of [`weight_shapes`] from `src`, checks shapes against `config`,
    /// and uploads them with matrices stored as `format` says. `on_tensor` is called after
    /// each tensor (progress).
    pub fn load(
        backend: &B,
        config: ModelConfig,
        src: &dyn WeightSource,
        names: WeightNames,
        format: WeightFormat,
        on_tensor: &mut dyn FnMut(),
    ) -> Result<Self> {
        let c = &config;
        let mut ld = Loader {
            backend,
            src,
            names,
            shapes: weight_shapes(c).into_iter().collect(),
            format,
            on_tensor,
        };
        // A tied lm_head is the embedding table, so the table must serve matmul too.
        let embed_uses: &[Op] = if c.tie_word_embeddings {
            &[Op::Embedding, Op::Matmul]
        } else {
            &[Op::Embedding]
        };
        let embed = ld.load_for("model.embed_tokens.weight", embed_uses)?;
        let mut layers = Vec::with_capacity(c.num_layers);
        for l in 0..c.num_layers {
            let n = |p: &str| format!("model.layers.{l}.{p}");
            layers.push(Layer {
                attn_norm: ld.load(&n("input_layernorm.weight"))?,
                wq: ld.load(&n("self_attn.q_proj.weight"))?,
                wk: ld.load(&n("self_attn.k_proj.weight"))?,
                wv: ld.load(&n("self_attn.v_proj.weight"))?,
                bq: ld.load_opt(&n("self_attn.q_proj.bias"))?,
                bk: ld.load_opt(&n("self_attn.k_proj.bias"))?,
                bv: ld.load_opt(&n("self_attn.v_proj.bias"))?,
                wo: ld.load(&n("self_attn.o_proj.weight"))?,
                mlp_norm: ld.load(&n("post_attention_layernorm.weight"))?,
                w_gate_up: ld.stacked(&[&n("mlp.gate_proj.weight"), &n("mlp.up_proj.weight")])?,
                w_down: ld.load(&n("mlp.down_proj.weight"))?,
            });
        }
        let norm = ld.load("model.norm.weight")?;
        let lm_head = ld.load_opt("lm_head.weight")?;
        let inv = c.rope.inv_freq();
        let inv_freq = backend.from_f32(&inv, Shape::new([inv.len()]), DType::F32)?;
        Ok(Self {
            config,
            embed,
            layers,
            norm,
            lm_head,
            inv_freq,
        })
    }

    /// Allocates a zeroed paged KV cache of `num_blocks` blocks per layer.
    pub fn alloc_kv_cache(
        &self,
        backend: &B,
        num_blocks: usize,
        block_size: usize,
        dtype: DType,
    ) -> Result<Vec<LayerCache<B>>> {
        let c = &self.config;
        let shape = Shape::new([num_blocks, c.num_kv_heads, block_size, c.head_dim]);
        (0..c.num_layers)
            .map(|_| {
                Ok(LayerCache {
                    k: backend.zeros(shape.clone(), dtype)?,
                    v: backend.zeros(shape.clone(), dtype)?,
                })
            })
            .collect()
    }

    /// Bytes of KV cache one block of `block_size` tokens takes across all layers.
    pub fn kv_bytes_per_block(&self, block_size: usize, dtype: DType) -> usize {
        let c = &self.config;
        2 * c.num_layers * c.num_kv_heads * block_size * c.head_dim * dtype.size_in_bytes()
    }

    /// One forward pass over the step's flat batch; returns logits [S', V] for the rows in
    /// `batch.logits_indices`.
    pub fn forward(
        &self,
        b: &B,
        batch: &ForwardBatch<'_, B>,
        caches: &mut [LayerCache<B>],
    ) -> Result<Tensor<B>> {
        let c = &self.config;
        if caches.len() != self.layers.len() {
            return Err(ModelError::Resolve(format!(
                "KV cache has {} layers, model has {}",
                caches.len(),
                self.layers.len()
            )));
        }
        let t = batch.token_ids.numel();
        let (hq, hk, d) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let params = AttentionParams {
            scale: 1.0 / (d as f32).sqrt(),
            sliding_window: c.sliding_window,
        };

        let mut x = b.embedding(&self.embed, batch.token_ids)?; // [T, H]
        let mut residual: Option<Tensor<B>> = None; // [T, H]
        for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
            let h = norm_step(b, x, &mut residual, &layer.attn_norm, c.rms_norm_eps)?;
            let mut q = b
                .matmul(&h, &layer.wq, layer.bq.as_ref())?
                .reshape([t, hq, d]);
            let mut k = b
                .matmul(&h, &layer.wk, layer.bk.as_ref())?
                .reshape([t, hk, d]);
            let v = b
                .matmul(&h, &layer.wv, layer.bv.as_ref())?
                .reshape([t, hk, d]);
            b.rope(
                &mut q,
                &mut k,
                batch.positions,
                &self.inv_freq,
                c.rope.style,
            )?;
            b.kv_write(&k, &v, &mut cache.k, &mut cache.v, batch.slot_mapping)?;
            let attn = b.paged_attention(&q, &cache.k, &cache.v, &batch.attn, params)?;
            let attn = b.matmul(&attn.reshape([t, hq * d]), &layer.wo, None)?; // [T, H]

            let h = norm_step(b, attn, &mut residual, &layer.mlp_norm, c.rms_norm_eps)?;
            let gate_up = b.matmul(&h, &layer.w_gate_up, None)?; // [T, 2I]
            let act = b.silu_mul(&gate_up)?; // [T, I]
            x = b.matmul(&act, &layer.w_down, None)?; // [T, H]
        }
        let h = norm_step(b, x, &mut residual, &self.norm, c.rms_norm_eps)?;
        let rows = b.gather_rows(&h, batch.logits_indices)?; // [S', H]
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        Ok(b.matmul(&rows, head, None)?) // [S', V]
    }
}

/// The pre-norm of a block: the first one starts the residual stream from `x`, later ones
/// fold `x` into it (fused add + norm).
fn norm_step<B: Backend>(
    b: &B,
    x: Tensor<B>,
    residual: &mut Option<Tensor<B>>,
    weight: &Tensor<B>,
    eps: f32,
) -> Result<Tensor<B>> {
    match residual {
        Some(r) => Ok(b.rms_norm(&x, Some(r), weight, eps)?),
        None => {
            let y = b.rms_norm(&x, None, weight, eps)?;
            *residual = Some(x);
            Ok(y)
        }
    }
}
