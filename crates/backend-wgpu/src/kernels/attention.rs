//! Launchers of `kv_write.wgsl` (one invocation per cache word) and `attention.wgsl`
//! (one 64-invocation workgroup per (query head, token), or the split path below), each
//! compiled per KV cache dtype: f32, or f16 packed two per word (no shader-f16 needed).
//!
//! Split-KV decode (FlashDecoding, Dao et al. 2023): a launch of few queries over long
//! contexts gives the single-pass kernel only Hq·T workgroups, each walking thousands of
//! positions while most of the GPU idles. The split path runs one workgroup per (query
//! head, token, 64-position group) into a scratch of group states
//! `[T, Hq, groups, 3 + D]` (O(T·Hq·context/64·D) floats), then merges them in group
//! order. Both paths run the same WGSL functions in the same order (see the shader's
//! header), so the choice, made here by [`use_split`], never changes a bit: it may depend
//! on the batch freely without breaking batch invariance.

use ingot_tensor::backend::Result;
use ingot_tensor::{AttentionMeta, AttentionParams, BackendError, DType, Shape};

use super::{Pipelines, kv_index, u32_of};
use crate::params;
use crate::{T, WgpuBackend};

/// Largest head dimension `attention.wgsl` holds (4 dims per invocation, 64 invocations).
pub const MAX_HEAD_DIM: usize = 256;

/// Positions per group of the canonical order: the unit of work of the split path
/// (`GROUP` in `attention.wgsl`).
pub const GROUP_POSITIONS: usize = 64;

/// The split path is taken only while the single-pass grid has fewer (query head, token)
/// workgroups than this: above it, the GPU is busy anyway.
const SPLIT_MAX_ROWS: usize = 2048;

/// Largest scratch of group states the split path allocates; beyond it, single pass.
const SPLIT_MAX_SCRATCH_BYTES: u64 = 64 << 20;

/// Which way `paged_attention` runs. The results are bit-identical; only speed differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AttentionSplit {
    /// By [`use_split`] (what the `Backend` verb does).
    #[default]
    Auto,
    /// Always the single-pass kernel.
    Never,
    /// Always the two-phase split kernels (if the scratch fits one binding).
    Always,
}

/// Bytes of the split path's scratch: `[T, Hq, groups, 3 + D]` f32.
fn scratch_bytes(tokens: usize, hq: usize, head_dim: usize, max_seq_len: usize) -> u64 {
    let groups = max_seq_len.div_ceil(GROUP_POSITIONS).max(1);
    (tokens * hq * groups * (3 + head_dim) * 4) as u64
}

/// The host rule for the split path: at least two groups of context, a single-pass grid of
/// fewer than 2048 workgroups, and a scratch of at most 64 MiB.
pub fn use_split(tokens: usize, hq: usize, head_dim: usize, max_seq_len: usize) -> bool {
    max_seq_len > GROUP_POSITIONS
        && tokens * hq < SPLIT_MAX_ROWS
        && scratch_bytes(tokens, hq, head_dim, max_seq_len) <= SPLIT_MAX_SCRATCH_BYTES
}

/// The pipeline index of a cache dtype, or `Unsupported`.
pub(super) fn cache_index(op: ingot_tensor::Op, cache: &T) -> Result<usize> {
    kv_index(cache.dtype()).ok_or(BackendError::Unsupported {
        op,
        dtype: cache.dtype(),
        backend: "wgpu",
    })
}

/// f16 words hold two dims of one row, so the head dim must be even.
pub(super) fn check_head_dim(cache: &T, d: usize, verb: &str) -> Result<()> {
    if cache.dtype() == DType::F16 && !d.is_multiple_of(2) {
        return Err(BackendError::Device(format!(
            "{verb}: an f16 KV cache needs an even head dim, got {d}"
        )));
    }
    Ok(())
}

pub(crate) fn kv_write(
    be: &WgpuBackend,
    p: &Pipelines,
    k: &T,
    v: &T,
    k_cache: &mut T,
    v_cache: &mut T,
    slot_mapping: &T,
) -> Result<()> {
    let gpu = &be.gpu;
    let (t, hk, d) = (k.dims()[0], k.dims()[1], k.dims()[2]);
    let c = k_cache.dims();
    let which = cache_index(ingot_tensor::Op::KvWrite, k_cache)?;
    check_head_dim(k_cache, d, "kv_write")?;
    let words = t * hk * d / (4 / k_cache.dtype().size_in_bytes()); // f32: 1, f16: 2 per word
    if words == 0 {
        return Ok(());
    }
    let params = gpu.uniform(&params::KvWriteParams {
        tokens: u32_of("tokens", t)?,
        hk: u32_of("hk", hk)?,
        head_dim: u32_of("head_dim", d)?,
        block_size: u32_of("block_size", c[2])?,
        num_blocks: u32_of("num_blocks", c[0])?,
        ..Default::default()
    });
    let (gx, gy) = gpu.grid(words.div_ceil(256) as u64)?;
    gpu.dispatch(
        "kv_write",
        &p.kv_write[which],
        &[
            (0, &params),
            (1, k.storage().buffer("kv_write k")?),
            (2, v.storage().buffer("kv_write v")?),
            (3, slot_mapping.storage().buffer("kv_write slot_mapping")?),
            (4, k_cache.storage().buffer("kv_write k_cache")?),
            (5, v_cache.storage().buffer("kv_write v_cache")?),
        ],
        (gx, gy, 1),
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn paged_attention(
    be: &WgpuBackend,
    p: &Pipelines,
    q: &T,
    k_cache: &T,
    v_cache: &T,
    meta: &AttentionMeta<'_, WgpuBackend>,
    attn: AttentionParams,
    split: AttentionSplit,
) -> Result<T> {
    let gpu = &be.gpu;
    let (t, hq, d) = (q.dims()[0], q.dims()[1], q.dims()[2]);
    let c = k_cache.dims();
    if d > MAX_HEAD_DIM {
        return Err(BackendError::Device(format!(
            "paged_attention: head dim {d} above the kernel's maximum of {MAX_HEAD_DIM}"
        )));
    }
    let which = cache_index(ingot_tensor::Op::PagedAttention, k_cache)?;
    check_head_dim(k_cache, d, "paged_attention")?;
    let out = be.output(q.shape().clone(), "paged_attention out")?;
    if t * hq * d == 0 {
        return Ok(out);
    }
    let groups = meta.max_seq_len.div_ceil(GROUP_POSITIONS).max(1);
    let split = match split {
        AttentionSplit::Auto => {
            use_split(t, hq, d, meta.max_seq_len)
                && scratch_bytes(t, hq, d, meta.max_seq_len) <= gpu.max_binding
        }
        AttentionSplit::Never => false,
        AttentionSplit::Always => true,
    };
    let params = gpu.uniform(&params::AttentionParams {
        tokens: u32_of("tokens", t)?,
        num_seqs: u32_of("sequences", meta.seq_lens.dims()[0])?,
        hq: u32_of("hq", hq)?,
        hk: u32_of("hk", c[1])?,
        head_dim: u32_of("head_dim", d)?,
        block_size: u32_of("block_size", c[2])?,
        max_blocks: u32_of("max_blocks", meta.block_tables.dims()[1])?,
        num_blocks: u32_of("num_blocks", c[0])?,
        scale: attn.scale,
        window: u32_of("sliding window", attn.sliding_window.unwrap_or(0))?,
        groups: u32_of("attention groups", groups)?,
        ..Default::default()
    });
    let grid = (u32_of("heads", hq)?, u32_of("tokens", t)?, 1);
    let q_buf = q.storage().buffer("paged_attention q")?;
    let k_buf = k_cache.storage().buffer("paged_attention k_cache")?;
    let v_buf = v_cache.storage().buffer("paged_attention v_cache")?;
    let tables = meta.block_tables.storage().buffer("block_tables")?;
    let lens = meta.seq_lens.storage().buffer("seq_lens")?;
    let starts = meta.query_start_loc.storage().buffer("query_start_loc")?;
    let out_buf = out.storage().buffer("paged_attention out")?;
    if !split {
        gpu.dispatch(
            "paged_attention",
            &p.paged_attention[which],
            &[
                (0, &params),
                (1, q_buf),
                (2, k_buf),
                (3, v_buf),
                (4, tables),
                (5, lens),
                (6, starts),
                (7, out_buf),
            ],
            grid,
        )?;
        return Ok(out);
    }
    // Dropped (and pooled) once both phases are recorded: later work that reuses the
    // buffer is ordered after them.
    let partials = be.output(
        Shape::new([t, hq, groups, 3 + d]),
        "paged_attention partials",
    )?;
    let partials_buf = partials.storage().buffer("paged_attention partials")?;
    gpu.dispatch(
        "attention_partial",
        &p.attention_partial[which],
        &[
            (0, &params),
            (1, q_buf),
            (2, k_buf),
            (3, v_buf),
            (4, tables),
            (5, lens),
            (6, starts),
            (8, partials_buf),
        ],
        (grid.0, grid.1, u32_of("attention groups", groups)?),
    )?;
    gpu.dispatch(
        "attention_merge",
        &p.attention_merge[which],
        &[
            (0, &params),
            (5, lens),
            (6, starts),
            (7, out_buf),
            (8, partials_buf),
        ],
        grid,
    )?;
    Ok(out)
}
