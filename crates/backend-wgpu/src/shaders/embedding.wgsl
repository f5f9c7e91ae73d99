// Embedding gather: dst[t, :] = table[ids[t], :], widened to f32.
//
// A table larger than the adapter's storage-binding limit is split into parts of whole
// rows (see `storage.rs`); the launcher dispatches once per part and each invocation writes
// its element only when the id falls in the bound part. The last part writes NaN rows for
// ids past the vocabulary, so a bad id is visible rather than a stale row. The table's
// element type comes from the `dtype_*.wgsl` snippet prepended to this file (`load_w`), or
// for a table in GGUF blocks from `quant_*.wgsl` + `quant.wgsl`: each element decoded to
// exactly the CPU dequantizer's value.

struct EmbeddingParams {
    tokens: u32,
    hidden: u32,
    row_start: u32,
    rows: u32,
    vocab: u32,
    last_part: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: EmbeddingParams;
@group(0) @binding(1) var<storage, read> w_data: array<WData>; // [rows, H] of this part
@group(0) @binding(2) var<storage, read> ids: array<u32>; // [T]
@group(0) @binding(3) var<storage, read_write> dst: array<f32>; // [T, H]

// Rows and row length of the bound part of the table: how the GGUF block snippets
// (quant.wgsl) find a row's blocks and their scale planes.
fn weight_rows() -> u32 {
    return params.rows;
}

fn weight_k() -> u32 {
    return params.hidden;
}

@compute @workgroup_size(256)
fn embedding(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = (wg.y * nwg.x + wg.x) * 256u + li;
    if i >= params.tokens * params.hidden {
        return;
    }
    let t = i / params.hidden;
    let c = i % params.hidden;
    let id = ids[t];
    if id >= params.row_start && id - params.row_start < params.rows {
        dst[i] = load_w((id - params.row_start) * params.hidden + c);
    } else if params.last_part == 1u && id >= params.vocab {
        dst[i] = bitcast<f32>(0x7fc00000u);
    }
}
