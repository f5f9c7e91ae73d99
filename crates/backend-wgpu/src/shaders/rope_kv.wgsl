// rope_kv_write: one kernel for what rope + kv_write do to a stacked QKV projection.
// qkv [T, (Hq + 2 Hk) D] holds per token Hq query heads, Hk key heads, Hk value heads. The
// query heads are rotated into q_out [T, Hq, D]; the key heads are rotated and, with the
// value heads, written into the paged caches [num_blocks, Hk, block_size, D] at
// slot_mapping[t] (a slot outside the cache is skipped, as in kv_write.wgsl). qkv is only
// read. Compiled once per cache dtype after a kv_*.wgsl prefix (`KvWord`, `KV_PER_WORD`,
// `kv_pack`) and rope_angle.wgsl (`cos_sin`).
//
// One invocation per (token, head of the Hq + Hk query and key heads, cache word of
// KV_PER_WORD dims): a key invocation writes one word of each cache, a query invocation the
// same KV_PER_WORD dims of q_out. Each rotated element is computed on its own from its pair
// partner, with the angle and the two expressions of rope.wgsl (`a cos - b sin` for the
// pair's first element, `b cos + a sin` for its second), so q and the cached k hold what
// rope followed by kv_write would give; no element depends on another token.

struct RopeKvParams {
    tokens: u32,
    hq: u32,
    hk: u32,
    head_dim: u32,
    half_rot: u32,
    style: u32,
    block_size: u32,
    num_blocks: u32,
}

@group(0) @binding(0) var<uniform> params: RopeKvParams;
@group(0) @binding(1) var<storage, read> positions: array<u32>; // [T]
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>; // [R/2]
@group(0) @binding(3) var<storage, read> qkv: array<f32>; // [T, (Hq + 2 Hk) D]
@group(0) @binding(4) var<storage, read> slots: array<u32>; // [T]
@group(0) @binding(5) var<storage, read_write> q_out: array<f32>; // [T, Hq, D]
@group(0) @binding(6) var<storage, read_write> k_cache: array<KvWord>; // [blocks, Hk, bs, D / KV_PER_WORD]
@group(0) @binding(7) var<storage, read_write> v_cache: array<KvWord>; // [blocks, Hk, bs, D / KV_PER_WORD]

// Dim e of the head starting at qkv[base], rotated by `pos` (dims past R pass through).
fn rotated(base: u32, e: u32, pos: f32) -> f32 {
    let half = params.half_rot;
    if e >= 2u * half {
        return qkv[base + e];
    }
    var pair = e;
    var partner = e + half;
    var first = true;
    if params.style == 1u {
        pair = e / 2u;
        partner = e ^ 1u;
        first = (e & 1u) == 0u;
    } else if e >= half {
        pair = e - half;
        partner = e - half;
        first = false;
    }
    let cs = cos_sin(pos * inv_freq[pair]);
    if first {
        let a = qkv[base + e];
        let b = qkv[base + partner];
        return a * cs.x - b * cs.y;
    }
    let a = qkv[base + partner];
    let b = qkv[base + e];
    return b * cs.x + a * cs.y;
}

@compute @workgroup_size(256)
fn rope_kv_write(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = (wg.y * nwg.x + wg.x) * 256u + li;
    let d = params.head_dim;
    let row_words = d / KV_PER_WORD;
    let heads = params.hq + params.hk;
    if i >= params.tokens * heads * row_words {
        return;
    }
    let w = i % row_words;
    let th = i / row_words;
    let h = th % heads;
    let t = th / heads;
    let row = t * (params.hq + 2u * params.hk) * d;
    let pos = f32(positions[t]);
    let e = w * KV_PER_WORD;
    if h < params.hq {
        let base = row + h * d;
        let dst = (t * params.hq + h) * d + e;
        q_out[dst] = rotated(base, e, pos);
        if KV_PER_WORD == 2u {
            q_out[dst + 1u] = rotated(base, e + 1u, pos);
        }
        return;
    }
    let kh = h - params.hq;
    let slot = slots[t];
    let block = slot / params.block_size;
    if block >= params.num_blocks {
        return;
    }
    let kbase = row + (params.hq + kh) * d;
    let vbase = row + (params.hq + params.hk + kh) * d;
    var kx = vec2<f32>(rotated(kbase, e, pos), 0.0);
    var vx = vec2<f32>(qkv[vbase + e], 0.0);
    if KV_PER_WORD == 2u {
        kx.y = rotated(kbase, e + 1u, pos);
        vx.y = qkv[vbase + e + 1u];
    }
    let dst = ((block * params.hk + kh) * params.block_size + slot % params.block_size) * row_words + w;
    k_cache[dst] = kv_pack(kx);
    v_cache[dst] = kv_pack(vx);
}
