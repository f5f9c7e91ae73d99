//! Launchers of `kv_write.wgsl` (one invocation per written element) and
//! `attention.wgsl` (one 64-invocation workgroup per (query head, token)).

use ingot_tensor::backend::Result;
use ingot_tensor::{AttentionMeta, AttentionParams, BackendError};

use super::{Pipelines, u32_of};
use crate::params;
use crate::{T, WgpuBackend};

/// Largest head dimension `attention.wgsl` holds (4 dims per invocation, 64 invocations).
pub const MAX_HEAD_DIM: usize = 256;

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
    let n = t * hk * d;
    if n == 0 {
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
    let (gx, gy) = gpu.grid(n.div_ceil(256) as u64)?;
    gpu.dispatch(
        "kv_write",
        &p.kv_write,
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

pub(crate) fn paged_attention(
    be: &WgpuBackend,
    p: &Pipelines,
    q: &T,
    k_cache: &T,
    v_cache: &T,
    meta: &AttentionMeta<'_, WgpuBackend>,
    attn: AttentionParams,
) -> Result<T> {
    let gpu = &be.gpu;
    let (t, hq, d) = (q.dims()[0], q.dims()[1], q.dims()[2]);
    let c = k_cache.dims();
    if d > MAX_HEAD_DIM {
        return Err(BackendError::Device(format!(
            "paged_attention: head dim {d} above the kernel's maximum of {MAX_HEAD_DIM}"
        )));
    }
    let out = be.output(q.shape().clone(), "paged_attention out")?;
    if t * hq * d == 0 {
        return Ok(out);
    }
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
        ..Default::default()
    });
    gpu.dispatch(
        "paged_attention",
        &p.paged_attention,
        &[
            (0, &params),
            (1, q.storage().buffer("paged_attention q")?),
            (2, k_cache.storage().buffer("paged_attention k_cache")?),
            (3, v_cache.storage().buffer("paged_attention v_cache")?),
            (4, meta.block_tables.storage().buffer("block_tables")?),
            (5, meta.seq_lens.storage().buffer("seq_lens")?),
            (6, meta.query_start_loc.storage().buffer("query_start_loc")?),
            (7, out.storage().buffer("paged_attention out")?),
        ],
        (u32_of("heads", hq)?, u32_of("tokens", t)?, 1),
    )?;
    Ok(out)
}
