// Weight element access for f16 weights, stored two per u32 word (element 2j in the low
// half). `unpack2x16float` needs no shader-f16 feature, so this runs on every adapter; the
// conversion to f32 is exact.
alias WData = u32;

fn load_w(i: u32) -> f32 {
    let pair = unpack2x16float(w_data[i >> 1u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
}
