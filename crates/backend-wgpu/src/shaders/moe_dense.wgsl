// `moe.wgsl`'s weight access for dense expert weights (after a `dtype_*.wgsl` snippet): four
// consecutive weights from element `i` of the bound part.
fn w_quad(i: u32) -> vec4<f32> {
    return vec4<f32>(load_w(i), load_w(i + 1u), load_w(i + 2u), load_w(i + 3u));
}
