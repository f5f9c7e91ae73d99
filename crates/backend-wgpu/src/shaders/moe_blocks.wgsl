// `moe.wgsl`'s weight access for expert weights kept in GGUF blocks (after a format's
// `quant_*.wgsl` snippet and `quant.wgsl`): the bound part holds `expert_count` experts of
// `n_out` rows (2 n_out for the stacked gate/up rows) of `k_in` weights, uploaded as one
// matrix of expert_count x rows rows in `quant.wgsl`'s row-tile order, and `w_quad(i)`
// decodes elements i .. i + 3 (i a multiple of 4, so inside one 32-element sub-block) to
// exactly the CPU dequantizer's values.
fn weight_k() -> u32 {
    return params.k_in;
}

fn weight_rows() -> u32 {
    let rows = select(params.n_out, 2u * params.n_out, params.gated != 0u);
    return params.expert_count * rows;
}

fn w_quad(i: u32) -> vec4<f32> {
    let n = i / params.k_in;
    let k = i % params.k_in;
    return sub_quad(load_sub(sub_slot(n, k / 32u)), (k % 32u) / 4u);
}
