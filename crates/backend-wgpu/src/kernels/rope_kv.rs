//! Launcher of `rope_kv.wgsl` (`rope_kv_write`): one invocation per (token, query or key
//! head, cache word), one dispatch where rope + kv_write took two and the separate q/k/v
//! matmuls three more.

use ingot_tensor::backend::Result;
use ingot_tensor::{Op, QkvHeads, RopeStyle, Shape};

use super::attention::{cache_index, check_head_dim};
use super::{Pipelines, u32_of};
use crate::params::RopeKvParams;
use crate::{T, WgpuBackend};

#[allow(clippy::too_many_arguments)]
pub(crate) fn rope_kv_write(
    be: &WgpuBackend,
    p: &Pipelines,
    qkv: &T,
    heads: QkvHeads,
    positions: &T,
    inv_freq: &T,
    style: RopeStyle,
    k_cache: &mut T,
    v_cache: &mut T,
    slot_mapping: &T,
) -> Result<T> {
    let gpu = &be.gpu;
    let (t, hq, hk, d) = (
        qkv.dims()[0],
        heads.num_heads,
        heads.num_kv_heads,
        heads.head_dim,
    );
    let which = cache_index(Op::KvWrite, k_cache)?;
    check_head_dim(k_cache, d, "rope_kv_write")?;
    let q = be.output(Shape::new([t, hq, d]), "rope_kv_write q")?;
    let per_word = 4 / k_cache.dtype().size_in_bytes(); // f32: 1, f16: 2 dims per word
    let work = t * (hq + hk) * (d / per_word);
    if work == 0 {
        return Ok(q);
    }
    let c = k_cache.dims();
    let params = gpu.uniform(&RopeKvParams {
        tokens: u32_of("tokens", t)?,
        hq: u32_of("hq", hq)?,
        hk: u32_of("hk", hk)?,
        head_dim: u32_of("head_dim", d)?,
        half_rot: u32_of("rotary pairs", inv_freq.dims()[0])?,
        style: match style {
            RopeStyle::Neox => 0,
            RopeStyle::Interleaved => 1,
        },
        block_size: u32_of("block_size", c[2])?,
        num_blocks: u32_of("num_blocks", c[0])?,
    });
    let (gx, gy) = gpu.grid(work.div_ceil(256) as u64)?;
    gpu.dispatch(
        "rope_kv_write",
        &p.rope_kv_write[which],
        &[
            (0, &params),
            (1, positions.storage().buffer("rope_kv_write positions")?),
            (2, inv_freq.storage().buffer("rope_kv_write inv_freq")?),
            (3, qkv.storage().buffer("rope_kv_write qkv")?),
            (4, slot_mapping.storage().buffer("rope_kv_write slots")?),
            (5, q.storage().buffer("rope_kv_write q")?),
            (6, k_cache.storage().buffer("rope_kv_write k_cache")?),
            (7, v_cache.storage().buffer("rope_kv_write v_cache")?),
        ],
        (gx, gy, 1),
    )?;
    Ok(q)
}
