// RMS norm, one workgroup per row: y = w * (x * inv_rms), inv_rms = 1 / sqrt(mean(x^2) + eps).
//
// Each of the 256 invocations sums the squares of the columns c = li, li + 256, ... in
// order (fma), then the 256 partial sums meet in a fixed binary tree in workgroup memory.
// The order depends only on H, never on the number of rows: batch invariant.
// `rms_norm_residual` first adds x into the residual stream in place (vLLM's fused add +
// norm) and normalises the updated residual; each invocation reads back only the
// residual elements it wrote itself, so no barrier is needed between the two passes.

struct NormParams {
    rows: u32,
    hidden: u32,
    eps: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: NormParams;
@group(0) @binding(1) var<storage, read> x: array<f32>; // [T, H]
@group(0) @binding(2) var<storage, read> weight: array<f32>; // [H]
@group(0) @binding(3) var<storage, read_write> dst: array<f32>; // [T, H]
@group(0) @binding(4) var<storage, read_write> residual: array<f32>; // [T, H]

// `tree_sum` (reduce.wgsl) over the 256 invocations.
const REDUCE_LANES: u32 = 256u;

fn inv_rms(sum_sq: f32) -> f32 {
    let mean = sum_sq / f32(params.hidden);
    return 1.0 / sqrt(mean + params.eps);
}

@compute @workgroup_size(256)
fn rms_norm(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row = wg.y * nwg.x + wg.x;
    if row >= params.rows {
        return;
    }
    let base = row * params.hidden;
    var s = 0.0;
    for (var c = li; c < params.hidden; c += 256u) {
        let v = x[base + c];
        s = fma(v, v, s);
    }
    let inv = inv_rms(tree_sum(li, s));
    for (var c = li; c < params.hidden; c += 256u) {
        dst[base + c] = weight[c] * (x[base + c] * inv);
    }
}

@compute @workgroup_size(256)
fn rms_norm_residual(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row = wg.y * nwg.x + wg.x;
    if row >= params.rows {
        return;
    }
    let base = row * params.hidden;
    var s = 0.0;
    for (var c = li; c < params.hidden; c += 256u) {
        let v = residual[base + c] + x[base + c];
        residual[base + c] = v;
        s = fma(v, v, s);
    }
    let inv = inv_rms(tree_sum(li, s));
    for (var c = li; c < params.hidden; c += 256u) {
        dst[base + c] = weight[c] * (residual[base + c] * inv);
    }
}
