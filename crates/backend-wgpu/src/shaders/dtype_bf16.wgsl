// Weight element access for bf16 weights, stored two per u32 word (element 2j in the low
// half). A bf16 is the top half of an f32, so widening is a shift: exact.
alias WData = u32;

fn load_w(i: u32) -> f32 {
    let word = w_data[i >> 1u];
    let bits = select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u);
    return bitcast<f32>(bits);
}
