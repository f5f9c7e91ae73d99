// Weight element access for bf16 weights, stored two per u32 word (element 2j in the low
// half). A bf16 is the top half of an f32, so widening is a shift: exact.
alias WData = u32;

fn load_w(i: u32) -> f32 {
    let word = w_data[i >> 1u];
    let bits = select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u);
    return bitcast<f32>(bits);
}

// Wide access (matmul's `gemv_wide`): one 16-byte pack = 8 weights, widened four at a time.
const PACK_ELEMS: u32 = 8u;
const PACK_QUADS: u32 = 2u;

fn pack_quad(v: vec4<u32>, q: u32) -> vec4<f32> {
    let a = v[2u * q];
    let b = v[2u * q + 1u];
    let hi = vec4<u32>(a << 16u, a & 0xffff0000u, b << 16u, b & 0xffff0000u);
    return bitcast<vec4<f32>>(hi);
}
