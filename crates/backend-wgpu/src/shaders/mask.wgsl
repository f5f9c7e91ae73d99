// `mask_logits` (structured output): dst = logits with every token whose bit is clear in
// its row's mask set to -inf (`ingot_tensor::sampling::mask_row`). One invocation per
// element, 2-D grids for large tensors. Allowed values are copied bit for bit.
// logits [R, V] f32, mask [R, ceil(V / 32)] u32 (bit i % 32 of word i / 32 = token i).

struct PointwiseParams {
    n: u32,     // R * V
    inner: u32, // V
    scale: f32, // the value of a masked token: -inf (a uniform: WGSL has no infinite constant)
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: PointwiseParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>; // [R, V]
@group(0) @binding(2) var<storage, read> allowed: array<u32>; // [R, ceil(V / 32)]
@group(0) @binding(3) var<storage, read_write> dst: array<f32>; // [R, V]

@compute @workgroup_size(256)
fn mask_logits(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = (wg.y * nwg.x + wg.x) * 256u + li;
    if i >= params.n {
        return;
    }
    let r = i / params.inner;
    let j = i % params.inner;
    let words = (params.inner + 31u) / 32u;
    let keep = (allowed[r * words + j / 32u] >> (j % 32u)) & 1u;
    dst[i] = select(params.scale, logits[i], keep == 1u);
}
