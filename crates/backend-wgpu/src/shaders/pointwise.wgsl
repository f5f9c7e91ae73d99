// Elementwise kernels, one invocation per output element, 2-D grids for large tensors.
// `silu_mul` / `gelu_tanh_mul`: x [T, 2I] = [gate | up] -> act(gate) * up [T, I].
// `scale`: a * params.scale. `add`: a + b.

struct PointwiseParams {
    n: u32,
    inner: u32,
    scale: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: PointwiseParams;
@group(0) @binding(1) var<storage, read> a: array<f32>; // silu_mul: [T, 2I]; add: [n]
@group(0) @binding(2) var<storage, read> b: array<f32>; // add: [n]
@group(0) @binding(3) var<storage, read_write> dst: array<f32>; // [n]

@compute @workgroup_size(256)
fn silu_mul(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = (wg.y * nwg.x + wg.x) * 256u + li;
    if i >= params.n {
        return;
    }
    let t = i / params.inner;
    let j = i % params.inner;
    let g = a[t * 2u * params.inner + j];
    let u = a[t * 2u * params.inner + params.inner + j];
    dst[i] = g / (1.0 + exp(-g)) * u;
}

// GELU, tanh approximation (PyTorch's `gelu(approximate="tanh")`). The tanh argument is
// clamped to +-15, where tanh is 1 to f32 precision, so no backend's tanh (some compute it
// through exp) can overflow into NaN.
fn gelu_tanh(g: f32) -> f32 {
    let inner = 0.7978846 * (g + 0.044715 * g * g * g);
    return 0.5 * g * (1.0 + tanh(clamp(inner, -15.0, 15.0)));
}

@compute @workgroup_size(256)
fn gelu_tanh_mul(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = (wg.y * nwg.x + wg.x) * 256u + li;
    if i >= params.n {
        return;
    }
    let t = i / params.inner;
    let j = i % params.inner;
    let g = a[t * 2u * params.inner + j];
    let u = a[t * 2u * params.inner + params.inner + j];
    dst[i] = gelu_tanh(g) * u;
}

@compute @workgroup_size(256)
fn scale(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = (wg.y * nwg.x + wg.x) * 256u + li;
    if i >= params.n {
        return;
    }
    dst[i] = a[i] * params.scale;
}

@compute @workgroup_size(256)
fn add(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = (wg.y * nwg.x + wg.x) * 256u + li;
    if i >= params.n {
        return;
    }
    dst[i] = a[i] + b[i];
}
