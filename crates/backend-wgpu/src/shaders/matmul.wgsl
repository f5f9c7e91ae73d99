// y[T, N] = x[T, K] W[N, K]^T (+ bias), two entry points sharing one reduction order.
//
// The canonical order (batch invariance, DESIGN.md §5): K is cut into chunks of KC
// elements; within chunk c an accumulator starts at 0 and takes fma(x[k], w[k], acc) for
// k ascending; the chunk sums are then added one by one, in chunk order, to a total that
// starts at 0; the bias is added last. Both kernels perform exactly this sequence of f32
// operations for every output element, so an element's bits depend only on its row of x,
// its row of W and K: never on T, on which kernel ran, or on the tiling.
//
// - `gemv` (few rows, up to 8 per workgroup): 256 invocations = 32 output columns x 8
//   chunk lanes. Lane j computes chunk c0 + j of its column for all rows at once, so a
//   weight is read once per 8 rows; the chunk sums go through workgroup memory and the
//   column's lane 0 adds them in order. Weight traffic dominates: this is the decode path.
// - `gemm` (many rows): a 64x64 output tile per workgroup, 4x4 per invocation, x and W
//   staged through workgroup memory BK = 16 columns of K at a time (KC is a multiple of BK,
//   so a tile step never straddles a chunk). Steps past K are skipped, not zero-padded, so
//   no extra operation enters an accumulator.
//
// W may be one part of a weight split by rows (see `storage.rs`): its first row is output
// column `n_start`. The weight dtype comes from the prepended `dtype_*.wgsl` (`load_w`).

struct MatmulParams {
    rows: u32,
    k: u32,
    n_total: u32,
    n_start: u32,
    n_count: u32,
    has_bias: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> w_data: array<WData>; // [n_count, K]
@group(0) @binding(2) var<storage, read> x: array<f32>; // [T, K]
@group(0) @binding(3) var<storage, read> bias: array<f32>; // [N], or a dummy word
@group(0) @binding(4) var<storage, read_write> y: array<f32>; // [T, N]

const KC: u32 = 128u; // reduction chunk: part of the numerical definition, never tuned per T
const GEMV_COLS: u32 = 32u;
const GEMV_LANES: u32 = 8u;
const GEMV_ROWS: u32 = 8u;
const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const BKP: u32 = 17u; // padded row stride of the staged tiles (avoids bank conflicts)

var<workgroup> gemv_part: array<f32, 2048>; // [GEMV_ROWS, GEMV_LANES, GEMV_COLS]
var<workgroup> xs: array<f32, 1088>; // [BM, BKP]
var<workgroup> ws: array<f32, 1088>; // [BN, BKP]

fn finish(t: u32, n: u32, total: f32) {
    var v = total;
    if params.has_bias == 1u {
        v = v + bias[params.n_start + n];
    }
    y[t * params.n_total + params.n_start + n] = v;
}

@compute @workgroup_size(256)
fn gemv(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let col = li % GEMV_COLS;
    let lane = li / GEMV_COLS;
    let n = wg.x * GEMV_COLS + col;
    let t0 = wg.y * GEMV_ROWS;
    let nrows = min(GEMV_ROWS, params.rows - t0);
    let nchunks = (params.k + KC - 1u) / KC;
    // Row loops run to the constant GEMV_ROWS (guarded by nrows) so that they unroll and
    // the per-row accumulators stay in registers.
    var total: array<f32, 8>;
    for (var r = 0u; r < GEMV_ROWS; r++) {
        total[r] = 0.0;
    }
    for (var c0 = 0u; c0 < nchunks; c0 += GEMV_LANES) {
        let c = c0 + lane;
        var acc: array<f32, 8>;
        for (var r = 0u; r < GEMV_ROWS; r++) {
            acc[r] = 0.0;
        }
        if n < params.n_count && c < nchunks {
            let kb = c * KC;
            let ke = min(kb + KC, params.k);
            let wrow = n * params.k;
            var k = kb;
            // Eight weights loaded ahead (independent loads in flight), then applied in
            // ascending k: the same operation sequence as one k at a time.
            for (; k + 8u <= ke; k += 8u) {
                var wv: array<f32, 8>;
                for (var u = 0u; u < 8u; u++) {
                    wv[u] = load_w(wrow + k + u);
                }
                for (var r = 0u; r < GEMV_ROWS; r++) {
                    if r < nrows {
                        let xb = (t0 + r) * params.k + k;
                        var a = acc[r];
                        for (var u = 0u; u < 8u; u++) {
                            a = fma(x[xb + u], wv[u], a);
                        }
                        acc[r] = a;
                    }
                }
            }
            for (; k < ke; k++) {
                let wv = load_w(wrow + k);
                for (var r = 0u; r < GEMV_ROWS; r++) {
                    if r < nrows {
                        acc[r] = fma(x[(t0 + r) * params.k + k], wv, acc[r]);
                    }
                }
            }
        }
        for (var r = 0u; r < GEMV_ROWS; r++) {
            gemv_part[(r * GEMV_LANES + lane) * GEMV_COLS + col] = acc[r];
        }
        workgroupBarrier();
        if lane == 0u {
            for (var j = 0u; j < GEMV_LANES; j++) {
                if c0 + j < nchunks {
                    for (var r = 0u; r < GEMV_ROWS; r++) {
                        total[r] = total[r] + gemv_part[(r * GEMV_LANES + j) * GEMV_COLS + col];
                    }
                }
            }
        }
        workgroupBarrier();
    }
    if lane == 0u && n < params.n_count {
        for (var r = 0u; r < GEMV_ROWS; r++) {
            if r < nrows {
                finish(t0 + r, n, total[r]);
            }
        }
    }
}

// Writes row `m` of the tile's 4 columns starting at `n` (those inside the output).
fn store4(m: u32, n: u32, v: vec4<f32>) {
    if m >= params.rows {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        if n + j < params.n_count {
            finish(m, n + j, v[j]);
        }
    }
}

@compute @workgroup_size(256)
fn gemm(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let tr = li / 16u; // rows tr*4 .. tr*4+3 of the tile
    let tc = li % 16u; // columns tc*4 .. tc*4+3 of the tile
    let m0 = wg.y * BM;
    let n0 = wg.x * BN;
    // The 4x4 accumulators as four vec4 rows (registers, no dynamic indexing). A
    // component-wise vec4 fma is four scalar fmas: the same per-element sequence as gemv.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var tot0 = vec4<f32>(0.0);
    var tot1 = vec4<f32>(0.0);
    var tot2 = vec4<f32>(0.0);
    var tot3 = vec4<f32>(0.0);
    let nchunks = (params.k + KC - 1u) / KC;
    for (var c = 0u; c < nchunks; c++) {
        let kb = c * KC;
        let ke = min(kb + KC, params.k);
        for (var k0 = kb; k0 < ke; k0 += BK) {
            for (var e = li; e < BM * BK; e += 256u) {
                let r = e / BK;
                let kk = e % BK;
                let k = k0 + kk;
                var xv = 0.0;
                if m0 + r < params.rows && k < ke {
                    xv = x[(m0 + r) * params.k + k];
                }
                xs[r * BKP + kk] = xv;
                var wv = 0.0;
                if n0 + r < params.n_count && k < ke {
                    wv = load_w((n0 + r) * params.k + k);
                }
                ws[r * BKP + kk] = wv;
            }
            workgroupBarrier();
            let kn = min(BK, ke - k0);
            let xr = tr * 4u * BKP;
            let wr = tc * 4u * BKP;
            for (var kk = 0u; kk < kn; kk++) {
                let w = vec4<f32>(ws[wr + kk], ws[wr + BKP + kk], ws[wr + 2u * BKP + kk], ws[wr + 3u * BKP + kk]);
                acc0 = fma(vec4<f32>(xs[xr + kk]), w, acc0);
                acc1 = fma(vec4<f32>(xs[xr + BKP + kk]), w, acc1);
                acc2 = fma(vec4<f32>(xs[xr + 2u * BKP + kk]), w, acc2);
                acc3 = fma(vec4<f32>(xs[xr + 3u * BKP + kk]), w, acc3);
            }
            workgroupBarrier();
        }
        tot0 = tot0 + acc0;
        tot1 = tot1 + acc1;
        tot2 = tot2 + acc2;
        tot3 = tot3 + acc3;
        acc0 = vec4<f32>(0.0);
        acc1 = vec4<f32>(0.0);
        acc2 = vec4<f32>(0.0);
        acc3 = vec4<f32>(0.0);
    }
    let m = m0 + tr * 4u;
    let n = n0 + tc * 4u;
    store4(m, n, tot0);
    store4(m + 1u, n, tot1);
    store4(m + 2u, n, tot2);
    store4(m + 3u, n, tot3);
}
