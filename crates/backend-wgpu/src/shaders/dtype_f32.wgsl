// Weight element access for f32 weights: one element per array entry.
alias WData = f32;

fn load_w(i: u32) -> f32 {
    return w_data[i];
}

// Wide access (matmul's `gemv_wide`): one 16-byte pack = 4 weights, a single quad.
const PACK_ELEMS: u32 = 4u;
const PACK_QUADS: u32 = 1u;

fn pack_quad(v: vec4<u32>, q: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(v);
}
