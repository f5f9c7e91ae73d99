//! The `Backend` trait: the small set of verbs (DESIGN.md §5) that model code calls.
//!
//! Verbs return new tensors, except where the point of the verb is to update state in place
//! (rope, kv_write, the residual of rms_norm). A backend is free to pool the allocations
//! behind returned tensors. Every verb checks its preconditions with [`crate::check`] first.
//!
//! Paged KV cache: per layer, K and V caches are `[num_blocks, num_kv_heads, block_size,
//! head_dim]`. Token `t` of a step is written to slot `slot_mapping[t]` =
//! `block_id * block_size + offset`. Sequence `s` reads its context through
//! `block_tables[s]`; its queries are the last `q_len = query_start_loc[s+1] -
//! query_start_loc[s]` tokens of its `seq_lens[s]` tokens, so query `i` sits at position
//! `seq_lens[s] - q_len + i` and attends causally to positions `0..=` that.

use crate::{DType, Shape, Tensor};

/// An error raised by a backend while executing a verb: a device failure, never a shape
/// mistake (those are asserted in [`crate::check`]).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("out of device memory allocating {bytes} bytes")]
    OutOfMemory { bytes: usize },
    #[error("device error: {0}")]
    Device(String),
    #[error("{op} is not supported for {dtype} on the {backend} backend")]
    Unsupported {
        op: Op,
        dtype: DType,
        backend: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// The verbs, named for `Backend::supports` and error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Embedding,
    RmsNorm,
    Matmul,
    Rope,
    KvWrite,
    PagedAttention,
    SiluMul,
    GatherRows,
    Add,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Which pairs of a head's dimensions rotary embedding rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Rotate-half (GPT-NeoX, HF Llama): pairs `(i, i + rot_dim/2)`.
    Neox,
    /// Interleaved (GPT-J, original Llama / GGUF layout): pairs `(2i, 2i + 1)`.
    Interleaved,
}

/// Per-step metadata describing how the flat token batch maps onto sequences and blocks.
pub struct AttentionMeta<'a, B: Backend + ?Sized> {
    pub block_tables: &'a Tensor<B>,    // [S, max_blocks] u32
    pub seq_lens: &'a Tensor<B>,        // [S] u32: context length including this step
    pub query_start_loc: &'a Tensor<B>, // [S + 1] u32: prefix sums of per-sequence query counts
    /// Host copy of the largest `seq_lens` entry, for launch sizing.
    pub max_seq_len: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct AttentionParams {
    /// Multiplier of q·k, usually `1 / sqrt(head_dim)`.
    pub scale: f32,
    /// Attend only to the last `w` positions (inclusive of the query's own), when set.
    pub sliding_window: Option<usize>,
}

pub trait Backend: Send + Sync + 'static {
    /// Where a tensor's elements live.
    type Storage: Send + Sync;

    fn name(&self) -> &'static str;

    /// Whether `op` is implemented for tensors of `dtype` (the weight dtype for matmul and
    /// embedding).
    fn supports(&self, op: Op, dtype: DType) -> bool;

    // ---- data movement ----

    /// Copies host floats to a new tensor of `dtype` (converted if not f32).
    #[allow(clippy::wrong_self_convention)] // a constructor on the backend, not a conversion of self
    fn from_f32(&self, data: &[f32], shape: Shape, dtype: DType) -> Result<Tensor<Self>>;
    /// Copies host integers (ids, positions, tables) to a new u32 tensor.
    #[allow(clippy::wrong_self_convention)]
    fn from_u32(&self, data: &[u32], shape: Shape) -> Result<Tensor<Self>>;
    /// A new zero-filled tensor (KV caches).
    fn zeros(&self, shape: Shape, dtype: DType) -> Result<Tensor<Self>>;
    /// Copies a float tensor back to the host as f32.
    fn to_f32(&self, t: &Tensor<Self>) -> Result<Vec<f32>>;
    /// Copies a u32 tensor back to the host.
    fn to_u32(&self, t: &Tensor<Self>) -> Result<Vec<u32>>;

    // ---- verbs ----

    /// Gathers rows of `table` [V, H] for `ids` [T] -> [T, H].
    fn embedding(&self, table: &Tensor<Self>, ids: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// RMS norm of each row of `x` [T, H] times `weight` [H].
    /// With `residual` [T, H]: first `residual += x`, then the norm is taken of the updated
    /// residual (vLLM's fused add + norm). Returns the normed rows.
    fn rms_norm(
        &self,
        x: &Tensor<Self>,
        residual: Option<&mut Tensor<Self>>,
        weight: &Tensor<Self>,
        eps: f32,
    ) -> Result<Tensor<Self>>;

    /// `x` [T, K] times `w` [N, K] transposed, plus `bias` [N] -> [T, N].
    /// Each output element's reduction order depends only on K, never on T (batch invariance).
    fn matmul(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        bias: Option<&Tensor<Self>>,
    ) -> Result<Tensor<Self>>;

    /// Rotates `q` [T, Hq, D] and `k` [T, Hk, D] in place by `positions` [T] with the
    /// frequencies `inv_freq` [R/2] (R = rotated dims <= D; the rest pass through).
    fn rope(
        &self,
        q: &mut Tensor<Self>,
        k: &mut Tensor<Self>,
        positions: &Tensor<Self>,
        inv_freq: &Tensor<Self>,
        style: RopeStyle,
    ) -> Result<()>;

    /// Writes `k`, `v` [T, Hk, D] into the paged caches at `slot_mapping` [T].
    fn kv_write(
        &self,
        k: &Tensor<Self>,
        v: &Tensor<Self>,
        k_cache: &mut Tensor<Self>,
        v_cache: &mut Tensor<Self>,
        slot_mapping: &Tensor<Self>,
    ) -> Result<()>;

    /// Causal attention of `q` [T, Hq, D] over the paged caches -> [T, Hq, D].
    /// Varlen: sequences of any query and context lengths in one call (prefill chunks and
    /// decode rows mixed). GQA: query head `h` reads KV head `h / (Hq / Hk)`.
    fn paged_attention(
        &self,
        q: &Tensor<Self>,
        k_cache: &Tensor<Self>,
        v_cache: &Tensor<Self>,
        meta: &AttentionMeta<'_, Self>,
        params: AttentionParams,
    ) -> Result<Tensor<Self>>;

    /// `silu(gate) * up` for `x` [T, 2I] = [gate | up] -> [T, I].
    fn silu_mul(&self, x: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// Rows `idx` [S] of `x` [T, H] -> [S, H].
    fn gather_rows(&self, x: &Tensor<Self>, idx: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// Elementwise `a + b`, same shapes.
    fn add(&self, a: &Tensor<Self>, b: &Tensor<Self>) -> Result<Tensor<Self>>;
}
