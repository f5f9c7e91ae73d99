// gemv_q: matmul over weights kept in GGUF blocks for few rows (the decode path, T <= 64),
// appended to matmul.wgsl after a block format's snippets (`quant_*.wgsl`, `quant.wgsl`).
//
// `gemv_wide`'s walk with the weights decoded in registers: an invocation takes one output
// column (two with `silu_inner`: the gate row n and the up row I + n) and one chunk of KC =
// 128 weights (four 32-element sub-blocks; a K-quant super-block spans two chunks) for the
// workgroup's up to 16 rows. Neighbouring invocations take neighbouring columns at the same
// chunk, so a warp's x loads are one broadcast and, with the blocks in row tiles
// (quant.wgsl), its weight loads one contiguous run. It loads its four sub-blocks' fields
// up front (`load_sub`), decodes their weights four at a time (`sub_quad`) once for all
// rows, and runs every row's fma chain over them in ascending k, four rows in one vec4.
// The chunk sums meet in workgroup memory, where each lane adds those of its two rows in
// chunk order, from 0, then `finish` / `finish_silu`: matmul.wgsl's canonical order, so
// `gemv_q`, `gemm` and `gemm_big` (which read the same blocks through `load_w_nk`) agree
// bit for bit at every T, and with the dense kernels on the dequantized weights. Lanes per workgroup follow from K (`wide_lanes`), the grid is [columns / cols,
// T / 16].

var<workgroup> q_part: array<f32, 8192>; // [gate | up, WIDE_ROWS, lanes, cols]

// Four rows' chains (`acc`'s components) over four weights; `i` is the first row's x quad.
fn q_rows4(w: vec4<f32>, i: u32, kq: u32, acc: vec4<f32>) -> vec4<f32> {
    let x0 = x4[i];
    let x1 = x4[i + kq];
    let x2 = x4[i + 2u * kq];
    let x3 = x4[i + 3u * kq];
    var a = fma(vec4<f32>(x0.x, x1.x, x2.x, x3.x), vec4<f32>(w.x), acc);
    a = fma(vec4<f32>(x0.y, x1.y, x2.y, x3.y), vec4<f32>(w.y), a);
    a = fma(vec4<f32>(x0.z, x1.z, x2.z, x3.z), vec4<f32>(w.z), a);
    return fma(vec4<f32>(x0.w, x1.w, x2.w, x3.w), vec4<f32>(w.w), a);
}

// One row's chains (`acc`) over a sub-block's 32 weights, from x quad `i`.
fn q_sub1(b: Sub, i: u32, acc: f32) -> f32 {
    var a = acc;
    for (var j = 0u; j < 8u; j++) {
        let w = sub_quad(b, j);
        let xv = x4[i + j];
        a = fma(xv.x, w.x, a);
        a = fma(xv.y, w.y, a);
        a = fma(xv.z, w.z, a);
        a = fma(xv.w, w.w, a);
    }
    return a;
}

// Up to 16 rows' chains (four rows per accumulator) over a sub-block's 32 weights, each
// quad decoded once for all rows; `i` is the first row's x quad.
fn q_sub_rows(
    b: Sub,
    i: u32,
    kq: u32,
    nrows: u32,
    a0: ptr<function, vec4<f32>>,
    a1: ptr<function, vec4<f32>>,
    a2: ptr<function, vec4<f32>>,
    a3: ptr<function, vec4<f32>>,
) {
    for (var j = 0u; j < 8u; j++) {
        let w = sub_quad(b, j);
        *a0 = q_rows4(w, i + j, kq, *a0);
        if nrows > 4u {
            *a1 = q_rows4(w, i + j + 4u * kq, kq, *a1);
        }
        if nrows > 8u {
            *a2 = q_rows4(w, i + j + 8u * kq, kq, *a2);
        }
        if nrows > 12u {
            *a3 = q_rows4(w, i + j + 12u * kq, kq, *a3);
        }
    }
}

// One column's chunk: `nsub` sub-blocks from sub-block `b0` of row `n` of the part, against
// x quads from `xq0` (the first row's), for `nrows` rows; row r's sum goes to
// q_part[slot + r * step]. A whole chunk (four sub-blocks) loads all its fields before the
// first fma, so four 16-byte loads per lane are in flight at once. Rows are taken four at
// a time; a group past the last row reads some x quads it never uses (bounds-checked, so
// never outside x).
fn q_chunk(n: u32, b0: u32, nsub: u32, xq0: u32, kq: u32, nrows: u32, slot: u32, step: u32) {
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    if nsub == 4u {
        let s0 = load_sub(sub_slot(n, b0));
        let s1 = load_sub(sub_slot(n, b0 + 1u));
        let s2 = load_sub(sub_slot(n, b0 + 2u));
        let s3 = load_sub(sub_slot(n, b0 + 3u));
        if nrows == 1u {
            var a = q_sub1(s0, xq0, 0.0);
            a = q_sub1(s1, xq0 + 8u, a);
            a = q_sub1(s2, xq0 + 16u, a);
            q_part[slot] = q_sub1(s3, xq0 + 24u, a);
            return;
        }
        q_sub_rows(s0, xq0, kq, nrows, &a0, &a1, &a2, &a3);
        q_sub_rows(s1, xq0 + 8u, kq, nrows, &a0, &a1, &a2, &a3);
        q_sub_rows(s2, xq0 + 16u, kq, nrows, &a0, &a1, &a2, &a3);
        q_sub_rows(s3, xq0 + 24u, kq, nrows, &a0, &a1, &a2, &a3);
    } else {
        // The short last chunk of a row (K % 128 != 0).
        for (var u = 0u; u < nsub; u++) {
            q_sub_rows(load_sub(sub_slot(n, b0 + u)), xq0 + 8u * u, kq, nrows, &a0, &a1, &a2, &a3);
        }
    }
    for (var r = 0u; r < 4u; r++) {
        if r < nrows {
            q_part[slot + r * step] = a0[r];
        }
        if r + 4u < nrows {
            q_part[slot + (r + 4u) * step] = a1[r];
        }
        if r + 8u < nrows {
            q_part[slot + (r + 8u) * step] = a2[r];
        }
        if r + 12u < nrows {
            q_part[slot + (r + 12u) * step] = a3[r];
        }
    }
}

@compute @workgroup_size(256)
fn gemv_q(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let lanes = wide_lanes(params.k);
    let cols = WIDE_THREADS / lanes;
    let col = li % cols;
    let lane = li / cols;
    let silu = params.silu_inner > 0u;
    let n = wg.x * cols + col;
    let n_end = select(params.n_count, params.silu_inner, silu);
    let t0 = wg.y * WIDE_ROWS;
    let nrows = min(WIDE_ROWS, params.rows - t0);
    let nchunks = (params.k + KC - 1u) / KC;
    let kq = params.k / 4u;
    let step = lanes * cols; // between one row's sums and the next's
    let up = WIDE_ROWS * step; // where the up column's sums start (silu)
    let r0 = lane;
    let r1 = lane + lanes;
    var ta0 = 0.0;
    var ta1 = 0.0;
    var tb0 = 0.0;
    var tb1 = 0.0;
    for (var c0 = 0u; c0 < nchunks; c0 += lanes) {
        let c = c0 + lane;
        if n < n_end && c < nchunks {
            let kb = c * KC;
            let nsub = (min(kb + KC, params.k) - kb) / 32u;
            let xq0 = (t0 * params.k + kb) / 4u;
            let slot = lane * cols + col;
            q_chunk(n, kb / 32u, nsub, xq0, kq, nrows, slot, step);
            if silu {
                q_chunk(n + params.silu_inner, kb / 32u, nsub, xq0, kq, nrows, up + slot, step);
            }
        }
        workgroupBarrier();
        for (var j = 0u; j < lanes; j++) {
            if c0 + j < nchunks {
                let s0 = (r0 * lanes + j) * cols + col;
                let s1 = (r1 * lanes + j) * cols + col;
                if r0 < nrows {
                    ta0 = ta0 + q_part[s0];
                    if silu {
                        tb0 = tb0 + q_part[up + s0];
                    }
                }
                if r1 < nrows {
                    ta1 = ta1 + q_part[s1];
                    if silu {
                        tb1 = tb1 + q_part[up + s1];
                    }
                }
            }
        }
        workgroupBarrier();
    }
    if n < n_end {
        if r0 < nrows {
            if silu {
                finish_silu(t0 + r0, n, ta0, tb0);
            } else {
                finish(t0 + r0, n, ta0);
            }
        }
        if r1 < nrows {
            if silu {
                finish_silu(t0 + r1, n, ta1, tb1);
            } else {
                finish(t0 + r1, n, ta1);
            }
        }
    }
}
