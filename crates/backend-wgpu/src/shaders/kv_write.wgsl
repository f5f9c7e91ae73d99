// kv_write: scatters k, v [T, Hk, D] into the paged caches [num_blocks, Hk, block_size, D]
// at slot_mapping[t] = block * block_size + offset, one invocation per element. A slot
// outside the cache is skipped (the caller's bug; never a write out of bounds).

struct KvWriteParams {
    tokens: u32,
    hk: u32,
    head_dim: u32,
    block_size: u32,
    num_blocks: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: KvWriteParams;
@group(0) @binding(1) var<storage, read> k: array<f32>; // [T, Hk, D]
@group(0) @binding(2) var<storage, read> v: array<f32>; // [T, Hk, D]
@group(0) @binding(3) var<storage, read> slots: array<u32>; // [T]
@group(0) @binding(4) var<storage, read_write> k_cache: array<f32>; // [blocks, Hk, bs, D]
@group(0) @binding(5) var<storage, read_write> v_cache: array<f32>; // [blocks, Hk, bs, D]

@compute @workgroup_size(256)
fn kv_write(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = (wg.y * nwg.x + wg.x) * 256u + li;
    let row = params.hk * params.head_dim;
    if i >= params.tokens * row {
        return;
    }
    let t = i / row;
    let h = (i % row) / params.head_dim;
    let d = i % params.head_dim;
    let slot = slots[t];
    let block = slot / params.block_size;
    if block >= params.num_blocks {
        return;
    }
    let dst = ((block * params.hk + h) * params.block_size + slot % params.block_size) * params.head_dim + d;
    k_cache[dst] = k[i];
    v_cache[dst] = v[i];
}
