//! The uniform structs each kernel family reads at `@group(0) @binding(0)`, mirrored
//! field for field in its WGSL file. Every struct is `#[repr(C)]` + `Pod`, all fields are
//! 4-byte scalars, and each is padded to a multiple of 16 bytes (the uniform address space
//! rounds a struct's size up to 16). `tests/shaders.rs` checks size and every member offset
//! against naga's layout of the WGSL struct, so the two cannot drift apart silently.

use bytemuck::{Pod, Zeroable};

/// `embedding.wgsl`: gathers rows `row_start..row_start + rows` of one part of a table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct EmbeddingParams {
    pub tokens: u32,
    pub hidden: u32,
    /// First table row held by the bound part.
    pub row_start: u32,
    /// Rows held by the bound part.
    pub rows: u32,
    /// Rows of the whole table; ids at or past it produce NaN rows.
    pub vocab: u32,
    /// 1 for the part that writes NaN rows for out-of-range ids.
    pub last_part: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// `rms_norm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct NormParams {
    pub rows: u32,
    pub hidden: u32,
    pub eps: f32,
    pub _pad0: u32,
}

/// `matmul.wgsl` (GEMV and GEMM entry points): `y[:, n_start..n_start + n_count] = x W^T`
/// for the bound part of W, whose first row is output column `n_start`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MatmulParams {
    pub rows: u32,
    pub k: u32,
    pub n_total: u32,
    pub n_start: u32,
    pub n_count: u32,
    pub has_bias: u32,
    /// 1: `y += x W^T (+ bias)` (the residual epilogue of `matmul_add`), else `y =`.
    pub accumulate: u32,
    /// `gemv_wide2` only: I > 0 makes it `matmul_silu_mul` over W = [gate | up] [2I, K],
    /// `y [T, I] = silu(x Wg^T) * (x Wu^T)`; 0 for a plain matmul.
    pub silu_inner: u32,
}

/// `rope.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct RopeParams {
    pub tokens: u32,
    pub hq: u32,
    pub hk: u32,
    pub head_dim: u32,
    /// R/2: the number of rotated pairs per head.
    pub half_rot: u32,
    /// 0 NeoX (rotate-half), 1 interleaved.
    pub style: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// `kv_write.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct KvWriteParams {
    pub tokens: u32,
    pub hk: u32,
    pub head_dim: u32,
    pub block_size: u32,
    pub num_blocks: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

/// `rope_kv.wgsl`: rope on the q and k heads of a stacked QKV row, k and v into the caches.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct RopeKvParams {
    pub tokens: u32,
    pub hq: u32,
    pub hk: u32,
    pub head_dim: u32,
    /// R/2: the number of rotated pairs per head.
    pub half_rot: u32,
    /// 0 NeoX (rotate-half), 1 interleaved.
    pub style: u32,
    pub block_size: u32,
    pub num_blocks: u32,
}

/// `attention.wgsl`, all entry points.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct AttentionParams {
    pub tokens: u32,
    pub num_seqs: u32,
    pub hq: u32,
    pub hk: u32,
    pub head_dim: u32,
    pub block_size: u32,
    pub max_blocks: u32,
    pub num_blocks: u32,
    pub scale: f32,
    /// Sliding window in positions; 0 = none.
    pub window: u32,
    /// Split path: 256-position groups per query in the partials scratch (its stride).
    pub groups: u32,
    pub _pad1: u32,
}

/// `pointwise.wgsl` (`silu_mul`, `gelu_tanh_mul`, `scale`, `add`), and `mask.wgsl`
/// (`mask_logits`: `inner` = V, `scale` = the masked value, -inf).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct PointwiseParams {
    /// Output elements.
    pub n: u32,
    /// `silu_mul`, `gelu_tanh_mul`: I, the width of the gate (and of the output row).
    pub inner: u32,
    /// `scale`: the factor.
    pub scale: f32,
    pub _pad0: u32,
}

/// `gather.wgsl`: rows of a 32-bit or 16-bit tensor, copied word by word.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct GatherParams {
    pub out_rows: u32,
    pub cols: u32,
    pub src_rows: u32,
    /// 1 when elements are 16-bit (two per word).
    pub half: u32,
    /// Words of the output buffer to write.
    pub out_words: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

/// `argmax.wgsl`: the greedy token of each row of logits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ArgmaxParams {
    pub rows: u32,
    pub vocab: u32,
    /// Spans per row of the two-pass form (1 for the one-pass `argmax`).
    pub parts: u32,
    /// Columns per span, a multiple of the 256-wide workgroup.
    pub span: u32,
}

/// `sample.wgsl`: temperature / top-k / top-p / min-p sampling of each row of logits (the
/// per-row parameters travel in a storage buffer).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct SampleParams {
    pub rows: u32,
    pub vocab: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// `top_logprobs.wgsl`: the chosen and the `k` best tokens' log-probabilities per row.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct TopLogprobsParams {
    pub rows: u32,
    pub vocab: u32,
    pub k: u32,
    pub _pad0: u32,
}

/// `moe.wgsl` (all four entry points; each reads the fields it needs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MoeParams {
    pub tokens: u32,
    pub experts: u32,
    pub top_k: u32,
    /// 0 softmax, 1 sigmoid (`MoeRouting::scoring_code`).
    pub scoring: u32,
    pub renormalize: u32,
    /// The projection's reduction length: H (gate/up) or I (down).
    pub k_in: u32,
    /// Outputs per row: I (gate/up) or H (down).
    pub n_out: u32,
    pub hidden: u32,
    /// First expert held by the bound part of the weights, and how many it holds.
    pub expert_start: u32,
    pub expert_count: u32,
    /// 1: the stacked gate/up rows with `silu(gate) * up`; 0: plain rows (down).
    pub gated: u32,
    pub has_shared: u32,
    pub shared_gate: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}
