// gather_rows: dst[r, :] = src[idx[r], :] for 32-bit or 16-bit elements, copied as u32
// words (one invocation per output word), so one kernel serves every dtype. With 16-bit
// elements a word holds two elements that may come from different rows (odd widths), so
// each half is fetched on its own. An index past the source rows yields all-ones bits:
// NaN for floats, u32::MAX for integers, as the CPU reference fills.

struct GatherParams {
    out_rows: u32,
    cols: u32,
    src_rows: u32,
    half: u32,
    out_words: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: GatherParams;
@group(0) @binding(1) var<storage, read> src: array<u32>; // [src_rows, cols] elements
@group(0) @binding(2) var<storage, read> idx: array<u32>; // [out_rows]
@group(0) @binding(3) var<storage, read_write> dst: array<u32>; // [out_rows, cols] elements

// The 16-bit element `e` of the output, fetched from its source row.
fn half_at(e: u32) -> u32 {
    if e >= params.out_rows * params.cols {
        return 0u;
    }
    let row = idx[e / params.cols];
    if row >= params.src_rows {
        return 0xffffu;
    }
    let se = row * params.cols + e % params.cols;
    return (src[se >> 1u] >> ((se & 1u) * 16u)) & 0xffffu;
}

@compute @workgroup_size(256)
fn gather_rows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = (wg.y * nwg.x + wg.x) * 256u + li;
    if i >= params.out_words {
        return;
    }
    if params.half == 1u {
        dst[i] = half_at(2u * i) | (half_at(2u * i + 1u) << 16u);
    } else {
        let row = idx[i / params.cols];
        if row >= params.src_rows {
            dst[i] = 0xffffffffu;
        } else {
            dst[i] = src[row * params.cols + i % params.cols];
        }
    }
}
