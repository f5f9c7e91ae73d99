// y[T, N] = x[T, K] W[N, K]^T (+ bias), four entry points sharing one reduction order.
//
// The canonical order (batch invariance, DESIGN.md §5): K is cut into chunks of KC
// elements; within chunk c an accumulator starts at 0 and takes fma(x[k], w[k], acc) for
// k ascending; the chunk sums are then added one by one, in chunk order, to a total that
// starts at 0; the bias is added last. Every kernel performs exactly this sequence of f32
// operations for every output element, so an element's bits depend only on its row of x,
// its row of W and K: never on T, on which kernel ran, or on the tiling. (A component-wise
// vec4 fma is four scalar fmas, so kernels may carry four rows or columns in one vec4.)
//
// - `gemv_wide` (decode path: T <= 16, K a multiple of 8): one invocation per (output
//   column, chunk), for the workgroup's (up to 16) rows at once. It loads its chunk's weights
//   with 16-byte loads issued back to back (16 packs = 128 f16/bf16 or 64 f32 weights held in
//   registers), widens them four at a time (`pack_quad`, no per-element select), and runs
//   the fma chains of four rows together (a vec4 accumulator), reading x as vec4. A warp
//   spans 32 (or 16, 8) columns of one chunk, so its x loads are (nearly) uniform; the
//   workgroup's lanes take consecutive chunks, and the chunk sums go through workgroup memory,
//   where each lane adds those of its rows in chunk order. Lanes per workgroup follow from K
//   only: 8 up to 8 chunks, then 16, then 32, so long rows (the MLP down projection) take
//   fewer rounds and more workgroups. (64 lanes, one round for Qwen2-0.5B's down projection,
//   measured no faster at T = 1 and 6% slower at batch 64 on the H200, 2026-12-02.)
// - `gemv_wide2` (T > 4): the same with two output columns per invocation and batches of 8
//   packs per column, so each x quad loaded serves both columns (x loads, not weight bytes,
//   limit `gemv_wide` when there are many rows).
// - `gemv` (few rows, any K): 256 invocations = 32 output columns x 8 chunk lanes, scalar
//   weight loads. Lane j computes chunk c0 + j of its column for up to 8 rows; the column's
//   lane 0 adds the chunk sums in order. The fallback for K not a multiple of 8.
// - `gemm` (many rows): a 64x64 output tile per workgroup, 4x4 per invocation, x and W
//   staged through workgroup memory BK = 16 columns of K at a time (KC is a multiple of BK,
//   so a tile step never straddles a chunk). Steps past K are skipped, not zero-padded, so
//   no extra operation enters an accumulator.
// - `gemm_big` (many rows and columns): 128x128 tiles, 8x8 per invocation, k-major vec4
//   staging, two buffers; see its own comment.
// - `gemv_q` (matmul_q.wgsl; weights in GGUF blocks, T <= 64): `gemv_wide`'s walk, each
//   weight decoded in registers from its block (exactly the value the CPU's dequantizer
//   gives) before its fma.
//
// Epilogues (`finish`): the bias, then a store, or with `accumulate` an update of y in place
// (`matmul_add`: the residual stream takes the o_proj / down_proj output without a separate
// add kernel). `gemv_wide2` with `silu_inner` = I computes a gate column and its up column
// (W rows n and I + n) as its two columns and stores silu(gate) * up (`matmul_silu_mul`);
// the launcher runs it for every T it serves, and above that a plain matmul + silu_mul,
// whose totals and expression are the same, so the bits do not depend on T.
//
// W may be one part of a weight split by rows (see `storage.rs`): its first row is output
// column `n_start`. The weight dtype comes from the prepended `dtype_*.wgsl` (`load_w`, and
// `pack_quad` for the wide kernels, which matmul_wide.wgsl appends for dense weights with
// `load_w_nk`), or for GGUF blocks from `quant_*.wgsl` + `quant.wgsl` (`load_w_nk`,
// `sub_slot`, `load_sub`, `sub_quad`), with matmul_q.wgsl appended in place of the wide
// kernels.

struct MatmulParams {
    rows: u32,
    k: u32,
    n_total: u32,
    n_start: u32,
    n_count: u32,
    has_bias: u32,
    accumulate: u32, // 1: y += result (matmul_add's residual), else y = result
    silu_inner: u32, // gemv_wide2: I > 0 for matmul_silu_mul (W = [gate | up] [2I, K])
}

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> w_data: array<WData>; // [n_count, K]
@group(0) @binding(2) var<storage, read> x: array<f32>; // [T, K]
@group(0) @binding(3) var<storage, read> bias: array<f32>; // [N], or a dummy word
@group(0) @binding(4) var<storage, read_write> y: array<f32>; // [T, N]
// The same W and x buffers seen 16 bytes at a time (gemv_wide only; K % 8 == 0 keeps every
// row of both on a 16-byte boundary).
@group(0) @binding(5) var<storage, read> w_pack: array<vec4<u32>>; // [n_count, K / PACK_ELEMS]
@group(0) @binding(6) var<storage, read> x4: array<vec4<f32>>; // [T, K / 4]

const KC: u32 = 128u; // reduction chunk: part of the numerical definition, never tuned per T
const GEMV_COLS: u32 = 32u;
const GEMV_LANES: u32 = 8u;
const GEMV_ROWS: u32 = 8u;
const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const BKP: u32 = 17u; // padded row stride of the staged tiles (avoids bank conflicts)

const WIDE_ROWS: u32 = 16u; // rows per gemv_wide workgroup
const WIDE_THREADS: u32 = 256u; // columns x lanes

var<workgroup> gemv_part: array<f32, 2048>; // [GEMV_ROWS, GEMV_LANES, GEMV_COLS]
var<workgroup> xs: array<f32, 1088>; // [BM, BKP]
var<workgroup> ws: array<f32, 1088>; // [BN, BKP]

// The epilogue of every kernel: the bias, then either a store or (matmul_add) an update of
// the residual in place, `y = y + v`: the operation `add(residual, matmul(..))` performs.
// Each element is read and written by the one invocation that computed it.
fn finish(t: u32, n: u32, total: f32) {
    var v = total;
    if params.has_bias == 1u {
        v = v + bias[params.n_start + n];
    }
    let i = t * params.n_total + params.n_start + n;
    if params.accumulate == 1u {
        v = y[i] + v;
    }
    y[i] = v;
}

// matmul_silu_mul's epilogue (gemv_wide2 with silu_inner = I): output column n of row t
// from the gate total (W row n) and the up total (W row I + n), with the expression of
// pointwise.wgsl's silu_mul, so fused and unfused give the same bits.
fn finish_silu(t: u32, n: u32, g: f32, u: f32) {
    y[t * params.silu_inner + n] = g / (1.0 + exp(-g)) * u;
}

// Rows and row length of the bound part of W ([n_count, K]): how the GGUF block snippets
// (quant.wgsl) find a row's blocks and their scale planes.
fn weight_rows() -> u32 {
    return params.n_count;
}

fn weight_k() -> u32 {
    return params.k;
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

// Chunk lanes of a gemv_wide workgroup for rows of K elements: the next power of two of the
// chunk count, clamped to 8..32 (mirrored by the launcher, which sizes the grid with it).
fn wide_lanes(k: u32) -> u32 {
    let nchunks = (k + KC - 1u) / KC;
    var lanes = 8u;
    while lanes < nchunks && lanes < 32u {
        lanes = lanes * 2u;
    }
    return lanes;
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
                    wv = load_w_nk(n0 + r, k);
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

// gemm_big: `gemm` for large outputs (the launcher's `gemm_big_pays`: 1.3-1.6x faster on
// the H100 at T=8192, slower on small grids; `examples/kernels_bench.rs` times both). The same
// per-element operations as `gemm`, on a 128x128 output tile per workgroup, 8x8 sums per
// invocation: rows tr*4.. and 64 + tr*4.., columns tc*4.. and 64 + tc*4.., four of each, so
// that a warp's vec4 reads of the staged tiles are contiguous. x and W are staged BK2 = 8
// columns of K per step, transposed (k-major: row kk holds the tile's 128 values of
// k0 + kk), so an invocation reads four rows or columns as one vec4; the rows are padded to
// 132 values, so that a warp's staging writes (8 k x 4 rows) hit 32 distinct banks. Two
// buffers: while the tile computes from one, the next step's values, loaded into registers
// before the arithmetic, go into the other; one barrier per step. 2 x 2 x 8 x 132 x 4 B =
// 16.5 KiB of workgroup memory.
//
// The sums are plain vec4 variables on purpose: the same kernel with the 4x4 blocks held
// in structs passed through helper functions ran at 6-12 TFLOP/s on the H200 (2026-11-27),
// and `gemm` itself fell from 14.5 to 6.5 TFLOP/s when its accumulators became such a
// struct: the driver seems to keep them in memory, not registers.
const TILE2: u32 = 128u;
const BK2: u32 = 8u; // a divisor of KC: a step never straddles a chunk
const LD2: u32 = 33u; // vec4s per staged k row (128 values + 4 of padding)
const STAGE2: u32 = 264u; // vec4s per staging buffer: BK2 * LD2

var<workgroup> xq: array<vec4<f32>, 528>; // [2, BK2, LD2] x tile, k-major: x[m0 + 4j + c] in [.][.][j][c]
var<workgroup> wq: array<vec4<f32>, 528>; // [2, BK2, LD2] W tile, k-major

// Element k of tile row `r` (0 outside the output or past K: such values are never used in
// a sum, since the sums stop at K and the stores at the output's edge).
fn x_at(m0: u32, r: u32, k: u32) -> f32 {
    if m0 + r < params.rows && k < params.k {
        return x[(m0 + r) * params.k + k];
    }
    return 0.0;
}

fn w_at(n0: u32, r: u32, k: u32) -> f32 {
    if n0 + r < params.n_count && k < params.k {
        return load_w_nk(n0 + r, k);
    }
    return 0.0;
}

@compute @workgroup_size(256)
fn gemm_big(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let m0 = wg.y * TILE2;
    let n0 = wg.x * TILE2;
    // A warp covers 4 x 8 invocations, so its vec4 reads of a k row touch 4 (x) and 8 (W)
    // consecutive quads: one bank wavefront each.
    let warp = li / 32u;
    let lane = li % 32u;
    let tr = (warp / 2u) * 4u + lane / 8u; // 0..15
    let tc = (warp % 2u) * 8u + lane % 8u; // 0..15
    // Staging: this invocation loads column sk of tile rows sr, sr + 32, sr + 64, sr + 96
    // (8 invocations read 32 consecutive bytes of a row) and writes them to component
    // sr % 4 of quads sr / 4 + 8i of k row sk.
    let sk = li % BK2;
    let sr = li / BK2;
    let sq = sk * LD2 + sr / 4u;
    let sc = sr % 4u;
    // Sums of this step's chunk (a: rows 0-3 x columns 0-3, b: rows 0-3 x columns 64-67,
    // c: rows 64-67 x columns 0-3, d: rows 64-67 x columns 64-67; digit: the row) and the
    // totals of the chunks before (t*).
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0);
    var b1 = vec4<f32>(0.0);
    var b2 = vec4<f32>(0.0);
    var b3 = vec4<f32>(0.0);
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var d0 = vec4<f32>(0.0);
    var d1 = vec4<f32>(0.0);
    var d2 = vec4<f32>(0.0);
    var d3 = vec4<f32>(0.0);
    var ta0 = vec4<f32>(0.0);
    var ta1 = vec4<f32>(0.0);
    var ta2 = vec4<f32>(0.0);
    var ta3 = vec4<f32>(0.0);
    var tb0 = vec4<f32>(0.0);
    var tb1 = vec4<f32>(0.0);
    var tb2 = vec4<f32>(0.0);
    var tb3 = vec4<f32>(0.0);
    var tc0 = vec4<f32>(0.0);
    var tc1 = vec4<f32>(0.0);
    var tc2 = vec4<f32>(0.0);
    var tc3 = vec4<f32>(0.0);
    var td0 = vec4<f32>(0.0);
    var td1 = vec4<f32>(0.0);
    var td2 = vec4<f32>(0.0);
    var td3 = vec4<f32>(0.0);
    // Step 0 into buffer 0.
    xq[sq][sc] = x_at(m0, sr, sk);
    xq[sq + 8u][sc] = x_at(m0, sr + 32u, sk);
    xq[sq + 16u][sc] = x_at(m0, sr + 64u, sk);
    xq[sq + 24u][sc] = x_at(m0, sr + 96u, sk);
    wq[sq][sc] = w_at(n0, sr, sk);
    wq[sq + 8u][sc] = w_at(n0, sr + 32u, sk);
    wq[sq + 16u][sc] = w_at(n0, sr + 64u, sk);
    wq[sq + 24u][sc] = w_at(n0, sr + 96u, sk);
    workgroupBarrier();
    let nsteps = (params.k + BK2 - 1u) / BK2;
    for (var s = 0u; s < nsteps; s++) {
        let k0 = s * BK2;
        let next = s + 1u < nsteps;
        // The next step's values, loaded before the arithmetic hides their latency.
        var xn = vec4<f32>(0.0);
        var wn = vec4<f32>(0.0);
        if next {
            let k = k0 + BK2 + sk;
            xn = vec4<f32>(x_at(m0, sr, k), x_at(m0, sr + 32u, k), x_at(m0, sr + 64u, k), x_at(m0, sr + 96u, k));
            wn = vec4<f32>(w_at(n0, sr, k), w_at(n0, sr + 32u, k), w_at(n0, sr + 64u, k), w_at(n0, sr + 96u, k));
        }
        let kn = min(BK2, params.k - k0); // 8 but in a short last step
        let buf = (s % 2u) * STAGE2;
        for (var kk = 0u; kk < BK2; kk++) {
            if kk < kn {
                let o = buf + kk * LD2;
                let x0 = xq[o + tr];
                let x1 = xq[o + 16u + tr];
                let w0 = wq[o + tc];
                let w1 = wq[o + 16u + tc];
                a0 = fma(vec4<f32>(x0.x), w0, a0);
                a1 = fma(vec4<f32>(x0.y), w0, a1);
                a2 = fma(vec4<f32>(x0.z), w0, a2);
                a3 = fma(vec4<f32>(x0.w), w0, a3);
                b0 = fma(vec4<f32>(x0.x), w1, b0);
                b1 = fma(vec4<f32>(x0.y), w1, b1);
                b2 = fma(vec4<f32>(x0.z), w1, b2);
                b3 = fma(vec4<f32>(x0.w), w1, b3);
                c0 = fma(vec4<f32>(x1.x), w0, c0);
                c1 = fma(vec4<f32>(x1.y), w0, c1);
                c2 = fma(vec4<f32>(x1.z), w0, c2);
                c3 = fma(vec4<f32>(x1.w), w0, c3);
                d0 = fma(vec4<f32>(x1.x), w1, d0);
                d1 = fma(vec4<f32>(x1.y), w1, d1);
                d2 = fma(vec4<f32>(x1.z), w1, d2);
                d3 = fma(vec4<f32>(x1.w), w1, d3);
            }
        }
        if next {
            let q = ((s + 1u) % 2u) * STAGE2 + sq;
            xq[q][sc] = xn.x;
            xq[q + 8u][sc] = xn.y;
            xq[q + 16u][sc] = xn.z;
            xq[q + 24u][sc] = xn.w;
            wq[q][sc] = wn.x;
            wq[q + 8u][sc] = wn.y;
            wq[q + 16u][sc] = wn.z;
            wq[q + 24u][sc] = wn.w;
        }
        workgroupBarrier();
        // End of a chunk (or of K): its sums join the totals, in chunk order.
        if (k0 + BK2) % KC == 0u || !next {
            ta0 = ta0 + a0;
            ta1 = ta1 + a1;
            ta2 = ta2 + a2;
            ta3 = ta3 + a3;
            tb0 = tb0 + b0;
            tb1 = tb1 + b1;
            tb2 = tb2 + b2;
            tb3 = tb3 + b3;
            tc0 = tc0 + c0;
            tc1 = tc1 + c1;
            tc2 = tc2 + c2;
            tc3 = tc3 + c3;
            td0 = td0 + d0;
            td1 = td1 + d1;
            td2 = td2 + d2;
            td3 = td3 + d3;
            a0 = vec4<f32>(0.0);
            a1 = vec4<f32>(0.0);
            a2 = vec4<f32>(0.0);
            a3 = vec4<f32>(0.0);
            b0 = vec4<f32>(0.0);
            b1 = vec4<f32>(0.0);
            b2 = vec4<f32>(0.0);
            b3 = vec4<f32>(0.0);
            c0 = vec4<f32>(0.0);
            c1 = vec4<f32>(0.0);
            c2 = vec4<f32>(0.0);
            c3 = vec4<f32>(0.0);
            d0 = vec4<f32>(0.0);
            d1 = vec4<f32>(0.0);
            d2 = vec4<f32>(0.0);
            d3 = vec4<f32>(0.0);
        }
    }
    let m = m0 + tr * 4u;
    let n = n0 + tc * 4u;
    store4(m, n, ta0);
    store4(m + 1u, n, ta1);
    store4(m + 2u, n, ta2);
    store4(m + 3u, n, ta3);
    store4(m, n + 64u, tb0);
    store4(m + 1u, n + 64u, tb1);
    store4(m + 2u, n + 64u, tb2);
    store4(m + 3u, n + 64u, tb3);
    store4(m + 64u, n, tc0);
    store4(m + 65u, n, tc1);
    store4(m + 66u, n, tc2);
    store4(m + 67u, n, tc3);
    store4(m + 64u, n + 64u, td0);
    store4(m + 65u, n + 64u, td1);
    store4(m + 66u, n + 64u, td2);
    store4(m + 67u, n + 64u, td3);
}
