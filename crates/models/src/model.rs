//! The `Model` trait: what the runner, the bundle and setup know of a decoder, whatever its
//! family. A model runs one forward pass over a step's flat, paged batch (any mix of prefill
//! chunks and decode rows, DESIGN.md §2) and says what KV cache each of its layers needs.
//!
//! The weight table of a family ([`crate::weights::WeightTable`]) is needed before a model
//! exists (to load it, or to generate `--load-format dummy` weights), so it is reached through
//! the registry ([`crate::registry::Arch::weight_table`]), as is the constructor
//! ([`crate::registry::Arch::load`]).

use ingot_tensor::{AttentionMeta, Backend, DType, Shape, Tensor};

use crate::config::ModelConfig;
use crate::error::Result;

/// Device tensors describing one step's flat batch (built by the runner's InputBatch).
pub struct ForwardBatch<'a, B: Backend> {
    pub token_ids: &'a Tensor<B>,      // [T] u32
    pub positions: &'a Tensor<B>,      // [T] u32
    pub slot_mapping: &'a Tensor<B>,   // [T] u32
    pub logits_indices: &'a Tensor<B>, // [S'] u32: rows to sample
    pub attn: AttentionMeta<'a, B>,
}

/// The paged KV cache of one layer.
pub struct LayerCache<B: Backend> {
    pub k: Tensor<B>, // [num_blocks, Hk, block_size, D]
    pub v: Tensor<B>, // [num_blocks, Hk, block_size, D]
}

/// What one layer keeps in the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerKv {
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// The layer attends to the last `w` positions only (sliding-window attention).
    pub sliding_window: Option<usize>,
}

impl LayerKv {
    /// Every layer of a decoder whose layers all keep `config`'s KV heads and head size,
    /// each with its own sliding window (if any).
    pub fn per_layer(config: &ModelConfig) -> Vec<LayerKv> {
        (0..config.num_layers)
            .map(|l| LayerKv {
                num_kv_heads: config.num_kv_heads,
                head_dim: config.head_dim,
                sliding_window: config.layer_window(l),
            })
            .collect()
    }

    /// Bytes one block of `block_size` tokens takes in this layer's K or V cache.
    pub fn bytes_per_block(&self, block_size: usize, dtype: DType) -> usize {
        self.num_kv_heads * block_size * self.head_dim * dtype.size_in_bytes()
    }
}

pub trait Model<B: Backend>: Send + Sync {
    /// The hyper-parameters the model was built from.
    fn config(&self) -> &ModelConfig;

    /// The KV cache of each layer, in layer order.
    fn kv_layout(&self) -> Vec<LayerKv>;

    /// One forward pass over the step's flat batch; returns logits [S', V] for the rows in
    /// `batch.logits_indices`. `caches` are those of [`Model::alloc_kv_cache`].
    fn forward(
        &self,
        b: &B,
        batch: &ForwardBatch<'_, B>,
        caches: &mut [LayerCache<B>],
    ) -> Result<Tensor<B>>;

    /// Allocates a zeroed paged KV cache of `num_blocks` blocks per layer.
    fn alloc_kv_cache(
        &self,
        b: &B,
        num_blocks: usize,
        block_size: usize,
        dtype: DType,
    ) -> Result<Vec<LayerCache<B>>> {
        self.kv_layout()
            .iter()
            .map(|l| {
                let shape = Shape::new([num_blocks, l.num_kv_heads, block_size, l.head_dim]);
                Ok(LayerCache {
                    k: b.zeros(shape.clone(), dtype)?,
                    v: b.zeros(shape, dtype)?,
                })
            })
            .collect()
    }

    /// Bytes of KV cache one block of `block_size` tokens takes across all layers (K and V).
    fn kv_bytes_per_block(&self, block_size: usize, dtype: DType) -> usize {
        self.kv_layout()
            .iter()
            .map(|l| 2 * l.bytes_per_block(block_size, dtype))
            .sum()
    }
}

/// Checks that the runner handed one cache per layer.
pub(crate) fn check_caches<B: Backend>(caches: &[LayerCache<B>], layers: usize) -> Result<()> {
    if caches.len() != layers {
        return Err(crate::ModelError::Resolve(format!(
            "KV cache has {} layers, model has {layers}",
            caches.len()
        )));
    }
    Ok(())
}
