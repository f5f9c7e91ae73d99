//! The `Model` trait: what the runner, the bundle and setup know of a decoder, whatever its
//! family. A model runs one forward pass over a step's flat, paged batch (any mix of prefill
//! chunks and decode rows, DESIGN.md §2) and says what KV cache each of its layers needs.
//!
//! Layers of one attention type form a KV cache group ([`kv_groups`]): each group has its
//! own number of cache blocks, and each step its own slot mapping and block tables
//! ([`KvGroupBatch`]); a layer finds its group's by its sliding window.
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
    pub logits_indices: &'a Tensor<B>, // [S'] u32: rows to sample
    /// One per KV cache group, in the order of the runner's groups.
    pub kv: Vec<KvGroupBatch<'a, B>>,
}

/// Where one KV cache group's layers write and read this step.
pub struct KvGroupBatch<'a, B: Backend> {
    /// The attention type the group serves (see [`KvGroup::sliding_window`]).
    pub sliding_window: Option<usize>,
    pub slot_mapping: &'a Tensor<B>, // [T] u32: cache slot of each new token
    pub attn: AttentionMeta<'a, B>,  // block tables [S, max_blocks] of this group
}

impl<'a, B: Backend> ForwardBatch<'a, B> {
    /// The group serving layers of sliding window `window` (None: full attention). A single
    /// group serves every layer: the cache then keeps every block for every layer.
    pub fn kv_group(&self, window: Option<usize>) -> Result<&KvGroupBatch<'a, B>> {
        if let [only] = self.kv.as_slice() {
            return Ok(only);
        }
        self.kv
            .iter()
            .find(|g| g.sliding_window == window)
            .ok_or_else(|| {
                crate::ModelError::Resolve(format!("no KV cache group for window {window:?}"))
            })
    }
}

/// The layers of one attention type, which share a KV cache group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvGroup {
    /// None: full attention; Some(w): the layers attend to the last `w` positions.
    pub sliding_window: Option<usize>,
    pub layers: Vec<usize>,
}

/// The KV cache groups of `layout`: full-attention layers first (the group whose prefix-cache
/// events are published), then one group per sliding window, smallest window first.
pub fn kv_groups(layout: &[LayerKv]) -> Vec<KvGroup> {
    let mut windows: Vec<Option<usize>> = layout.iter().map(|l| l.sliding_window).collect();
    windows.sort();
    windows.dedup();
    windows
        .into_iter()
        .map(|w| KvGroup {
            sliding_window: w,
            layers: (0..layout.len())
                .filter(|&l| layout[l].sliding_window == w)
                .collect(),
        })
        .collect()
}

/// One full-attention group holding every layer: no block is ever freed early.
pub fn single_kv_group(layout: &[LayerKv]) -> Vec<KvGroup> {
    vec![KvGroup {
        sliding_window: None,
        layers: (0..layout.len()).collect(),
    }]
}

impl KvGroup {
    /// Bytes one block takes across the group's layers (K and V).
    pub fn bytes_per_block(&self, layout: &[LayerKv], block_size: usize, dtype: DType) -> usize {
        self.layers
            .iter()
            .map(|&l| 2 * layout[l].bytes_per_block(block_size, dtype))
            .sum()
    }
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

    /// Allocates a zeroed paged KV cache of `num_blocks[l]` blocks for each layer `l`.
    fn alloc_kv_cache(
        &self,
        b: &B,
        num_blocks: &[usize],
        block_size: usize,
        dtype: DType,
    ) -> Result<Vec<LayerCache<B>>> {
        let layout = self.kv_layout();
        check_caches_len(num_blocks.len(), layout.len())?;
        layout
            .iter()
            .zip(num_blocks)
            .map(|(l, &n)| {
                let shape = Shape::new([n, l.num_kv_heads, block_size, l.head_dim]);
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
    check_caches_len(caches.len(), layers)
}

fn check_caches_len(caches: usize, layers: usize) -> Result<()> {
    if caches != layers {
        return Err(crate::ModelError::Resolve(format!(
            "KV cache has {caches} layers, model has {layers}"
        )));
    }
    Ok(())
}
