// gemv_wide and gemv_wide2 of matmul.wgsl (see its header): the decode kernels that read
// dense weights 16 bytes at a time (`w_pack`, `pack_quad` of the dtype snippet). Appended
// to matmul.wgsl for the dense weight dtypes only; GGUF block formats have their own GEMV
// (matmul_q.wgsl).

const PACKS: u32 = 16u; // 16-byte weight loads held in registers at once

// Element k of row n of W (the GEMMs' staging; the block formats' twin is in quant.wgsl).
fn load_w_nk(n: u32, k: u32) -> f32 {
    return load_w(n * params.k + k);
}

var<workgroup> wide_part: array<f32, 4096>; // [WIDE_ROWS, lanes, cols]

// The 16 packs (16-byte loads) of one batch, as named values: they stay in registers,
// where an array indexed in a loop could land in local memory and serialize the loads.
struct Packs {
    p0: vec4<u32>, p1: vec4<u32>, p2: vec4<u32>, p3: vec4<u32>,
    p4: vec4<u32>, p5: vec4<u32>, p6: vec4<u32>, p7: vec4<u32>,
    p8: vec4<u32>, p9: vec4<u32>, p10: vec4<u32>, p11: vec4<u32>,
    p12: vec4<u32>, p13: vec4<u32>, p14: vec4<u32>, p15: vec4<u32>,
}

fn load_packs(i: u32) -> Packs {
    return Packs(
        w_pack[i], w_pack[i + 1u], w_pack[i + 2u], w_pack[i + 3u],
        w_pack[i + 4u], w_pack[i + 5u], w_pack[i + 6u], w_pack[i + 7u],
        w_pack[i + 8u], w_pack[i + 9u], w_pack[i + 10u], w_pack[i + 11u],
        w_pack[i + 12u], w_pack[i + 13u], w_pack[i + 14u], w_pack[i + 15u],
    );
}

// Four weights into four rows' chains (the components of `acc`); `i` is row 0's x quad.
fn quad4(w: vec4<f32>, i: u32, kq: u32, acc: vec4<f32>) -> vec4<f32> {
    let x0 = x4[i];
    let x1 = x4[i + kq];
    let x2 = x4[i + 2u * kq];
    let x3 = x4[i + 3u * kq];
    var a = fma(vec4<f32>(x0.x, x1.x, x2.x, x3.x), vec4<f32>(w.x), acc);
    a = fma(vec4<f32>(x0.y, x1.y, x2.y, x3.y), vec4<f32>(w.y), a);
    a = fma(vec4<f32>(x0.z, x1.z, x2.z, x3.z), vec4<f32>(w.z), a);
    return fma(vec4<f32>(x0.w, x1.w, x2.w, x3.w), vec4<f32>(w.w), a);
}

// Four weights into one row's chain.
fn quad1(w: vec4<f32>, i: u32, acc: f32) -> f32 {
    let xv = x4[i];
    var a = fma(xv.x, w.x, acc);
    a = fma(xv.y, w.y, a);
    a = fma(xv.z, w.z, a);
    return fma(xv.w, w.w, a);
}

// One pack (PACK_ELEMS weights from x quad `i` on) into four rows' / one row's chains.
fn pack4(v: vec4<u32>, i: u32, kq: u32, acc: vec4<f32>) -> vec4<f32> {
    var a = quad4(pack_quad(v, 0u), i, kq, acc);
    if PACK_QUADS == 2u {
        a = quad4(pack_quad(v, 1u), i + 1u, kq, a);
    }
    return a;
}

fn pack1(v: vec4<u32>, i: u32, acc: f32) -> f32 {
    var a = quad1(pack_quad(v, 0u), i, acc);
    if PACK_QUADS == 2u {
        a = quad1(pack_quad(v, 1u), i + 1u, a);
    }
    return a;
}

// A full batch of 16 packs into four rows' chains (`kq`: x quads per row) or one row's.
fn batch4(w: Packs, i: u32, kq: u32, acc: vec4<f32>) -> vec4<f32> {
    let s = PACK_QUADS;
    var a = pack4(w.p0, i, kq, acc);
    a = pack4(w.p1, i + s, kq, a);
    a = pack4(w.p2, i + 2u * s, kq, a);
    a = pack4(w.p3, i + 3u * s, kq, a);
    a = pack4(w.p4, i + 4u * s, kq, a);
    a = pack4(w.p5, i + 5u * s, kq, a);
    a = pack4(w.p6, i + 6u * s, kq, a);
    a = pack4(w.p7, i + 7u * s, kq, a);
    a = pack4(w.p8, i + 8u * s, kq, a);
    a = pack4(w.p9, i + 9u * s, kq, a);
    a = pack4(w.p10, i + 10u * s, kq, a);
    a = pack4(w.p11, i + 11u * s, kq, a);
    a = pack4(w.p12, i + 12u * s, kq, a);
    a = pack4(w.p13, i + 13u * s, kq, a);
    a = pack4(w.p14, i + 14u * s, kq, a);
    return pack4(w.p15, i + 15u * s, kq, a);
}

fn batch1(w: Packs, i: u32, acc: f32) -> f32 {
    let s = PACK_QUADS;
    var a = pack1(w.p0, i, acc);
    a = pack1(w.p1, i + s, a);
    a = pack1(w.p2, i + 2u * s, a);
    a = pack1(w.p3, i + 3u * s, a);
    a = pack1(w.p4, i + 4u * s, a);
    a = pack1(w.p5, i + 5u * s, a);
    a = pack1(w.p6, i + 6u * s, a);
    a = pack1(w.p7, i + 7u * s, a);
    a = pack1(w.p8, i + 8u * s, a);
    a = pack1(w.p9, i + 9u * s, a);
    a = pack1(w.p10, i + 10u * s, a);
    a = pack1(w.p11, i + 11u * s, a);
    a = pack1(w.p12, i + 12u * s, a);
    a = pack1(w.p13, i + 13u * s, a);
    a = pack1(w.p14, i + 14u * s, a);
    return pack1(w.p15, i + 15u * s, a);
}

// Runs the chains of rows 0..nrows (x quad `xq` for row 0) over `np` packs from pack `wb`;
// `first`: the chains start at 0, else from the running sums in `wide_part` (slot `slot0`
// for row 0, `step` apart), where they are left in either case.
fn wide_rows(wb: u32, np: u32, xq: u32, kq: u32, nrows: u32, first: bool, slot0: u32, step: u32) {
    if np == PACKS {
        // A full batch: 16 loads back to back, then every row's chain from registers.
        let w = load_packs(wb);
        var r = 0u;
        for (; r + 4u <= nrows; r += 4u) {
            let slot = slot0 + r * step;
            var acc = vec4<f32>(0.0);
            if !first {
                acc = vec4<f32>(wide_part[slot], wide_part[slot + step], wide_part[slot + 2u * step], wide_part[slot + 3u * step]);
            }
            acc = batch4(w, xq + r * kq, kq, acc);
            wide_part[slot] = acc.x;
            wide_part[slot + step] = acc.y;
            wide_part[slot + 2u * step] = acc.z;
            wide_part[slot + 3u * step] = acc.w;
        }
        for (; r < nrows; r++) {
            let slot = slot0 + r * step;
            var a = 0.0;
            if !first {
                a = wide_part[slot];
            }
            wide_part[slot] = batch1(w, xq + r * kq, a);
        }
    } else {
        // The short last batch of a chunk (K % 128 != 0): one row and one pack at a time.
        for (var r = 0u; r < nrows; r++) {
            let slot = slot0 + r * step;
            var a = 0.0;
            if !first {
                a = wide_part[slot];
            }
            let i = xq + r * kq;
            for (var p = 0u; p < np; p++) {
                a = pack1(w_pack[wb + p], i + p * PACK_QUADS, a);
            }
            wide_part[slot] = a;
        }
    }
}

@compute @workgroup_size(256)
fn gemv_wide(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let lanes = wide_lanes(params.k);
    let cols = WIDE_THREADS / lanes;
    let col = li % cols;
    let lane = li / cols;
    let n = wg.x * cols + col;
    let t0 = wg.y * WIDE_ROWS;
    let nrows = min(WIDE_ROWS, params.rows - t0);
    let nchunks = (params.k + KC - 1u) / KC;
    let kq = params.k / 4u; // x quads per row
    let wrow = n * (params.k / PACK_ELEMS); // first pack of this column's weights
    // This lane adds the chunk sums of rows `lane` and `lane + lanes` (lanes >= 8, rows <= 16).
    var total0 = 0.0;
    var total1 = 0.0;
    for (var c0 = 0u; c0 < nchunks; c0 += lanes) {
        let c = c0 + lane;
        if n < params.n_count && c < nchunks {
            let kb = c * KC;
            let ke = min(kb + KC, params.k);
            // f16/bf16: one batch of 16 packs is the whole chunk; f32: two batches, the
            // running sums kept in workgroup memory in between (exact).
            for (var b = kb; b < ke; b += PACKS * PACK_ELEMS) {
                let np = min(PACKS, (ke - b) / PACK_ELEMS);
                let xq = (t0 * params.k + b) / 4u;
                let slot0 = lane * cols + col;
                wide_rows(wrow + b / PACK_ELEMS, np, xq, kq, nrows, b == kb, slot0, lanes * cols);
            }
        }
        workgroupBarrier();
        let r0 = lane;
        let r1 = lane + lanes;
        for (var j = 0u; j < lanes; j++) {
            if c0 + j < nchunks {
                if r0 < nrows {
                    total0 = total0 + wide_part[(r0 * lanes + j) * cols + col];
                }
                if r1 < nrows {
                    total1 = total1 + wide_part[(r1 * lanes + j) * cols + col];
                }
            }
        }
        workgroupBarrier();
    }
    if n < params.n_count {
        if lane < nrows {
            finish(t0 + lane, n, total0);
        }
        if lane + lanes < nrows {
            finish(t0 + lane + lanes, n, total1);
        }
    }
}

// gemv_wide2: the same walk with two output columns per invocation (`col` and `col + cols`
// of the workgroup's 2 * cols), so each x quad loaded feeds eight fmas per row instead of
// four; batches of 8 packs per column keep the weights in registers. For T > 4, where x
// loads, not weight bytes, limit gemv_wide.
const PACKS2: u32 = 8u;

var<workgroup> wide_part2: array<f32, 8192>; // [WIDE_ROWS, lanes, 2 * cols]

struct Packs8 {
    p0: vec4<u32>, p1: vec4<u32>, p2: vec4<u32>, p3: vec4<u32>,
    p4: vec4<u32>, p5: vec4<u32>, p6: vec4<u32>, p7: vec4<u32>,
}

fn load_packs8(i: u32) -> Packs8 {
    return Packs8(
        w_pack[i], w_pack[i + 1u], w_pack[i + 2u], w_pack[i + 3u],
        w_pack[i + 4u], w_pack[i + 5u], w_pack[i + 6u], w_pack[i + 7u],
    );
}

// Four rows' chains of the two columns.
struct Acc4x2 {
    a: vec4<f32>,
    b: vec4<f32>,
}

fn quad4x2(wa: vec4<f32>, wb: vec4<f32>, i: u32, kq: u32, acc: Acc4x2) -> Acc4x2 {
    let x0 = x4[i];
    let x1 = x4[i + kq];
    let x2 = x4[i + 2u * kq];
    let x3 = x4[i + 3u * kq];
    let c0 = vec4<f32>(x0.x, x1.x, x2.x, x3.x);
    let c1 = vec4<f32>(x0.y, x1.y, x2.y, x3.y);
    let c2 = vec4<f32>(x0.z, x1.z, x2.z, x3.z);
    let c3 = vec4<f32>(x0.w, x1.w, x2.w, x3.w);
    var a = fma(c0, vec4<f32>(wa.x), acc.a);
    var b = fma(c0, vec4<f32>(wb.x), acc.b);
    a = fma(c1, vec4<f32>(wa.y), a);
    b = fma(c1, vec4<f32>(wb.y), b);
    a = fma(c2, vec4<f32>(wa.z), a);
    b = fma(c2, vec4<f32>(wb.z), b);
    a = fma(c3, vec4<f32>(wa.w), a);
    b = fma(c3, vec4<f32>(wb.w), b);
    return Acc4x2(a, b);
}

// One row's chains of the two columns (x: column a, y: column b).
fn quad1x2(wa: vec4<f32>, wb: vec4<f32>, i: u32, acc: vec2<f32>) -> vec2<f32> {
    let xv = x4[i];
    var a = fma(vec2<f32>(xv.x), vec2<f32>(wa.x, wb.x), acc);
    a = fma(vec2<f32>(xv.y), vec2<f32>(wa.y, wb.y), a);
    a = fma(vec2<f32>(xv.z), vec2<f32>(wa.z, wb.z), a);
    return fma(vec2<f32>(xv.w), vec2<f32>(wa.w, wb.w), a);
}

fn pack4x2(va: vec4<u32>, vb: vec4<u32>, i: u32, kq: u32, acc: Acc4x2) -> Acc4x2 {
    var a = quad4x2(pack_quad(va, 0u), pack_quad(vb, 0u), i, kq, acc);
    if PACK_QUADS == 2u {
        a = quad4x2(pack_quad(va, 1u), pack_quad(vb, 1u), i + 1u, kq, a);
    }
    return a;
}

fn pack1x2(va: vec4<u32>, vb: vec4<u32>, i: u32, acc: vec2<f32>) -> vec2<f32> {
    var a = quad1x2(pack_quad(va, 0u), pack_quad(vb, 0u), i, acc);
    if PACK_QUADS == 2u {
        a = quad1x2(pack_quad(va, 1u), pack_quad(vb, 1u), i + 1u, a);
    }
    return a;
}

fn batch4x2(wa: Packs8, wb: Packs8, i: u32, kq: u32, acc: Acc4x2) -> Acc4x2 {
    let s = PACK_QUADS;
    var a = pack4x2(wa.p0, wb.p0, i, kq, acc);
    a = pack4x2(wa.p1, wb.p1, i + s, kq, a);
    a = pack4x2(wa.p2, wb.p2, i + 2u * s, kq, a);
    a = pack4x2(wa.p3, wb.p3, i + 3u * s, kq, a);
    a = pack4x2(wa.p4, wb.p4, i + 4u * s, kq, a);
    a = pack4x2(wa.p5, wb.p5, i + 5u * s, kq, a);
    a = pack4x2(wa.p6, wb.p6, i + 6u * s, kq, a);
    return pack4x2(wa.p7, wb.p7, i + 7u * s, kq, a);
}

fn batch1x2(wa: Packs8, wb: Packs8, i: u32, acc: vec2<f32>) -> vec2<f32> {
    let s = PACK_QUADS;
    var a = pack1x2(wa.p0, wb.p0, i, acc);
    a = pack1x2(wa.p1, wb.p1, i + s, a);
    a = pack1x2(wa.p2, wb.p2, i + 2u * s, a);
    a = pack1x2(wa.p3, wb.p3, i + 3u * s, a);
    a = pack1x2(wa.p4, wb.p4, i + 4u * s, a);
    a = pack1x2(wa.p5, wb.p5, i + 5u * s, a);
    a = pack1x2(wa.p6, wb.p6, i + 6u * s, a);
    return pack1x2(wa.p7, wb.p7, i + 7u * s, a);
}

// `wide_rows` for two columns (packs from `wa` and `wb`); column b's running sums sit
// `cols` after column a's in `wide_part2`.
fn wide2_rows(wa: u32, wb: u32, np: u32, xq: u32, kq: u32, nrows: u32, first: bool, slot0: u32, step: u32, cols: u32) {
    if np == PACKS2 {
        let pa = load_packs8(wa);
        let pb = load_packs8(wb);
        var r = 0u;
        for (; r + 4u <= nrows; r += 4u) {
            let s = slot0 + r * step;
            var acc = Acc4x2(vec4<f32>(0.0), vec4<f32>(0.0));
            if !first {
                acc.a = vec4<f32>(wide_part2[s], wide_part2[s + step], wide_part2[s + 2u * step], wide_part2[s + 3u * step]);
                let t = s + cols;
                acc.b = vec4<f32>(wide_part2[t], wide_part2[t + step], wide_part2[t + 2u * step], wide_part2[t + 3u * step]);
            }
            acc = batch4x2(pa, pb, xq + r * kq, kq, acc);
            let t = s + cols;
            wide_part2[s] = acc.a.x;
            wide_part2[s + step] = acc.a.y;
            wide_part2[s + 2u * step] = acc.a.z;
            wide_part2[s + 3u * step] = acc.a.w;
            wide_part2[t] = acc.b.x;
            wide_part2[t + step] = acc.b.y;
            wide_part2[t + 2u * step] = acc.b.z;
            wide_part2[t + 3u * step] = acc.b.w;
        }
        for (; r < nrows; r++) {
            let s = slot0 + r * step;
            var a = vec2<f32>(0.0);
            if !first {
                a = vec2<f32>(wide_part2[s], wide_part2[s + cols]);
            }
            a = batch1x2(pa, pb, xq + r * kq, a);
            wide_part2[s] = a.x;
            wide_part2[s + cols] = a.y;
        }
    } else {
        // The short last batch of a chunk: one row and one pack at a time.
        for (var r = 0u; r < nrows; r++) {
            let s = slot0 + r * step;
            var a = vec2<f32>(0.0);
            if !first {
                a = vec2<f32>(wide_part2[s], wide_part2[s + cols]);
            }
            let i = xq + r * kq;
            for (var p = 0u; p < np; p++) {
                a = pack1x2(w_pack[wa + p], w_pack[wb + p], i + p * PACK_QUADS, a);
            }
            wide_part2[s] = a.x;
            wide_part2[s + cols] = a.y;
        }
    }
}

@compute @workgroup_size(256)
fn gemv_wide2(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let lanes = wide_lanes(params.k);
    let cols = WIDE_THREADS / lanes;
    let col = li % cols;
    let lane = li / cols;
    // Plain: columns `col` and `col + cols` of the workgroup's 2 * cols. silu_mul: output
    // column na of the workgroup's cols, its gate row na and its up row I + na.
    let silu = params.silu_inner > 0u;
    var na = wg.x * 2u * cols + col;
    var nb = na + cols;
    var n_end = params.n_count;
    if silu {
        na = wg.x * cols + col;
        nb = na + params.silu_inner;
        n_end = params.silu_inner;
    }
    let t0 = wg.y * WIDE_ROWS;
    let nrows = min(WIDE_ROWS, params.rows - t0);
    let nchunks = (params.k + KC - 1u) / KC;
    let kq = params.k / 4u;
    let kp = params.k / PACK_ELEMS;
    // Column b past the end repeats column a's work (not stored), so no branch splits the
    // pair.
    let rowa = na * kp;
    let rowb = select(rowa, nb * kp, nb < params.n_count);
    let step = lanes * 2u * cols;
    var ta0 = 0.0;
    var ta1 = 0.0;
    var tb0 = 0.0;
    var tb1 = 0.0;
    for (var c0 = 0u; c0 < nchunks; c0 += lanes) {
        let c = c0 + lane;
        if na < n_end && c < nchunks {
            let kb = c * KC;
            let ke = min(kb + KC, params.k);
            for (var b = kb; b < ke; b += PACKS2 * PACK_ELEMS) {
                let np = min(PACKS2, (ke - b) / PACK_ELEMS);
                let xq = (t0 * params.k + b) / 4u;
                let slot0 = lane * 2u * cols + col;
                let off = b / PACK_ELEMS;
                wide2_rows(rowa + off, rowb + off, np, xq, kq, nrows, b == kb, slot0, step, cols);
            }
        }
        workgroupBarrier();
        let r0 = lane;
        let r1 = lane + lanes;
        for (var j = 0u; j < lanes; j++) {
            if c0 + j < nchunks {
                let s0 = (r0 * lanes + j) * 2u * cols + col;
                let s1 = (r1 * lanes + j) * 2u * cols + col;
                if r0 < nrows {
                    ta0 = ta0 + wide_part2[s0];
                    tb0 = tb0 + wide_part2[s0 + cols];
                }
                if r1 < nrows {
                    ta1 = ta1 + wide_part2[s1];
                    tb1 = tb1 + wide_part2[s1 + cols];
                }
            }
        }
        workgroupBarrier();
    }
    if silu {
        for (var i = 0u; i < 2u; i++) {
            let r = lane + i * lanes;
            if r < nrows && na < n_end {
                finish_silu(t0 + r, na, select(ta0, ta1, i == 1u), select(tb0, tb1, i == 1u));
            }
        }
        return;
    }
    for (var i = 0u; i < 2u; i++) {
        let r = lane + i * lanes;
        if r < nrows {
            if na < params.n_count {
                finish(t0 + r, na, select(ta0, ta1, i == 1u));
            }
            if nb < params.n_count {
                finish(t0 + r, nb, select(tb0, tb1, i == 1u));
            }
        }
    }
}

