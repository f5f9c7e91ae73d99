// Rotary position embedding in place on q [T, Hq, D] and k [T, Hk, D], one invocation per
// (token, head, rotated pair).
//
// The angle is the f32 product position * inv_freq[i] (as Hugging Face computes it and as
// the CPU reference defines it). Its cosine and sine are not taken from the built-ins,
// whose accuracy Vulkan and Metal bound only loosely (and not at all outside [-pi, pi]):
// the angle a is reduced by j = round(a * 2/pi) multiples of pi/2 (Cody and Waite), with
// pi/2 cut into four constants of 12 significant bits and j into a multiple of 4096 plus a
// rest below 4096, so every product j_part * C_part is exact in f32 without relying on a
// fused multiply-add (WGSL's `fma` may run unfused, e.g. on lavapipe), and the first five subtractions are
// exact too (the operands share a grid); the remainder is then within ~1e-7 of the true
// one for any angle below 2^24. sin and cos of the remainder in [-pi/4, pi/4] come from
// the minimax polynomials of Cephes' sinf/cosf, and the quadrant picks signs and order.
//
// The reduction (`cos_sin`) lives in rope_angle.wgsl, prepended to this file and to rope_kv.wgsl.
//
// Pairs: NeoX rotates (i, i + R/2); interleaved (GPT-J, GGUF) rotates (2i, 2i + 1).

struct RopeParams {
    tokens: u32,
    hq: u32,
    hk: u32,
    head_dim: u32,
    half_rot: u32,
    style: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: RopeParams;
@group(0) @binding(1) var<storage, read> positions: array<u32>; // [T]
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>; // [R/2]
@group(0) @binding(3) var<storage, read_write> q: array<f32>; // [T, Hq, D]
@group(0) @binding(4) var<storage, read_write> k: array<f32>; // [T, Hk, D]

@compute @workgroup_size(256)
fn rope(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let heads = params.hq + params.hk;
    let i = (wg.y * nwg.x + wg.x) * 256u + li;
    if i >= params.tokens * heads * params.half_rot {
        return;
    }
    let pair = i % params.half_rot;
    let th = i / params.half_rot;
    let head = th % heads;
    let t = th / heads;
    let cs = cos_sin(f32(positions[t]) * inv_freq[pair]);
    var ia = pair;
    var ib = pair + params.half_rot;
    if params.style == 1u {
        ia = 2u * pair;
        ib = 2u * pair + 1u;
    }
    if head < params.hq {
        let base = (t * params.hq + head) * params.head_dim;
        let a = q[base + ia];
        let b = q[base + ib];
        q[base + ia] = a * cs.x - b * cs.y;
        q[base + ib] = b * cs.x + a * cs.y;
    } else {
        let base = (t * params.hk + head - params.hq) * params.head_dim;
        let a = k[base + ia];
        let b = k[base + ib];
        k[base + ia] = a * cs.x - b * cs.y;
        k[base + ib] = b * cs.x + a * cs.y;
    }
}
