// Weight element access for f16 weights, stored two per u32 word (element 2j in the low
// half). `unpack2x16float` needs no shader-f16 feature, so this runs on every adapter; the
// conversion to f32 is exact.
alias WData = u32;

fn load_w(i: u32) -> f32 {
    let pair = unpack2x16float(w_data[i >> 1u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
}

// Wide access (matmul's `gemv_wide`): one 16-byte pack = 8 weights, widened four at a time.
const PACK_ELEMS: u32 = 8u;
const PACK_QUADS: u32 = 2u;

fn pack_quad(v: vec4<u32>, q: u32) -> vec4<f32> {
    let j = 2u * q;
    return vec4<f32>(unpack2x16float(v[j]), unpack2x16float(v[j + 1u]));
}
