// kv_write: scatters k, v [T, Hk, D] (f32) into the paged caches [num_blocks, Hk,
// block_size, D] at slot_mapping[t] = block * block_size + offset. Compiled once per cache
// dtype after a kv_*.wgsl prefix (`KvWord`, `KV_PER_WORD`, `kv_pack`). One invocation per
// cache word, KV_PER_WORD consecutive dims of one row: no two invocations write the same
// word (with f16, D is even, so a row is whole words). A slot outside the cache is skipped
// (the caller's bug; never a write out of bounds).

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
@group(0) @binding(4) var<storage, read_write> k_cache: array<KvWord>; // [blocks, Hk, bs, D / KV_PER_WORD]
@group(0) @binding(5) var<storage, read_write> v_cache: array<KvWord>; // [blocks, Hk, bs, D / KV_PER_WORD]

// The KV_PER_WORD elements of k (v) starting at element i.
fn k_elems(i: u32) -> vec2<f32> {
    var x = vec2<f32>(k[i], 0.0);
    if KV_PER_WORD == 2u {
        x.y = k[i + 1u];
    }
    return x;
}

fn v_elems(i: u32) -> vec2<f32> {
    var x = vec2<f32>(v[i], 0.0);
    if KV_PER_WORD == 2u {
        x.y = v[i + 1u];
    }
    return x;
}

@compute @workgroup_size(256)
fn kv_write(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = (wg.y * nwg.x + wg.x) * 256u + li; // word index in [T, Hk, D / KV_PER_WORD]
    let row_words = params.head_dim / KV_PER_WORD;
    let words = params.hk * row_words;
    if i >= params.tokens * words {
        return;
    }
    let t = i / words;
    let h = (i % words) / row_words;
    let w = i % row_words;
    let slot = slots[t];
    let block = slot / params.block_size;
    if block >= params.num_blocks {
        return;
    }
    let src = (t * params.hk + h) * params.head_dim + w * KV_PER_WORD;
    let dst = ((block * params.hk + h) * params.block_size + slot % params.block_size) * row_words + w;
    k_cache[dst] = kv_pack(k_elems(src));
    v_cache[dst] = kv_pack(v_elems(src));
}
