// y[T, N] = x[T, K] W[N, K]^T (+ bias) on cooperative matrices (tensor cores on NVIDIA via
// VK_KHR_cooperative_matrix, simdgroup matrices on Apple), for f16 weights.
//
// Numerics: the activations are rounded to f16 for the fragments (W is f16 already); the
// products are accumulated in f32 by the matrix unit, the chunk sums and the bias are added
// in f32. So a result differs from the f32 reference by about 2^-11 of sum_k |x_k w_k|, and
// an activation beyond the f16 range (|x| > 65504) becomes infinite: this path trades the
// activations' last 13 mantissa bits for the matrix units' throughput.
//
// The canonical order (batch invariance, DESIGN.md §5), for every output element (t, n):
// K is cut into chunks of KC elements. A chunk's partial sum starts from a zero accumulator
// and takes one fragment multiply-add per F-wide K tile of the chunk, in ascending k; the
// last tile of K is zero-padded, and no tile lies wholly past K. The chunk partials are
// then added one by one, in chunk order, to a total that starts at 0 (plain f32 adds), and
// the bias is added last. Both entry points perform exactly this sequence for every element;
// a fragment multiply-add computes each output from its own row of A and column of B only,
// so the other rows of a fragment (padding, or other requests) never change a bit. Hence an
// element's bits depend only on its row of x, its row of W and K: not on T, not on which
// entry point ran.
//
// - `coop_small` (few rows): a workgroup owns F rows (zero-padded past T) by F columns; its
//   8 subgroups are 8 chunk lanes, subgroup j taking chunks j, j + 8, ...; after each round
//   of 8 chunks the partials go through workgroup memory and invocation e adds them, in
//   chunk order, to the total of element e. Parallel over K, for decode.
// - `coop_tiled` (many rows): a workgroup owns a BM x BN output tile, each subgroup an
//   (RF F) x (CF F) block of it, RF x CF accumulators; x and W are staged through workgroup
//   memory BK columns of K at a time (KC is a multiple of BK, so a step never straddles a
//   chunk). At the end of each chunk the accumulators are stored to workgroup memory and
//   each invocation adds its elements to totals held in registers.
//
// Staging converts to f16 in the shader: x from f32, W from two halves per u32 word
// (`unpack2x16float`, exact). When K % 8 == 0 a step is read as 16-byte vectors, into
// registers one step ahead (its loads in flight while the previous step multiplies);
// otherwise element pairs, at the step itself. Both paths stage the same values. Fragments
// load from the staged tiles: A row-major (`coopLoadT`) from [rows][BK], B = W^T
// column-major (`coopLoad`) from [cols][BK], both with the padded stride BKP (80 bytes:
// 16-byte aligned rows).
//
// Fragment size: F = 16 here (NVIDIA's 16x16x16 f16 -> f32). The launcher derives the
// Apple variant by substituting the fragment type and F = 8 (Metal's simdgroup matrices are
// 8x8 only); everything else is written in terms of F. A subgroup is assumed 32 wide
// (8 subgroups of 256 invocations: NVIDIA, Apple); the launcher checks the adapter, and a
// workgroup that finds another count writes NaN rather than wrong numbers.
//
// Uniformity: naga wants cooperative-matrix operations in workgroup-uniform control flow,
// while the hardware needs only subgroup-uniform flow, which is what `coop_small`'s loops
// have (a subgroup's number of tiles depends on its chunk). The check is switched off for
// this module; every barrier here stays in workgroup-uniform flow.

enable f16;
enable wgpu_cooperative_matrix;
diagnostic(off, derivative_uniformity);

struct MatmulParams {
    rows: u32,
    k: u32,
    n_total: u32,
    n_start: u32,
    n_count: u32,
    has_bias: u32,
    accumulate: u32, // matmul.wgsl's epilogues; always 0 here (the launcher adds separately)
    silu_inner: u32,
}

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> w_data: array<u32>; // [n_count, K] f16, two a word
@group(0) @binding(2) var<storage, read> x: array<f32>; // [T, K]
@group(0) @binding(3) var<storage, read> bias: array<f32>; // [N], or a dummy word
@group(0) @binding(4) var<storage, read_write> y: array<f32>; // [T, N]
// The same W and x as 16-byte vectors (8 halves, 4 floats), read when K % 8 == 0 (rows then
// start on 16-byte boundaries); otherwise a 16-byte dummy is bound and never read.
@group(0) @binding(5) var<storage, read> w_vec: array<vec4<u32>>; // [n_count, K / 8]
@group(0) @binding(6) var<storage, read> x_vec: array<vec4<f32>>; // [T, K / 4]

const F: u32 = 16u; // fragment edge (M = N = K of one multiply-add)
const FF: u32 = F * F;
const KC: u32 = 256u; // reduction chunk: part of the numerical definition, never tuned per T
const BK: u32 = 32u; // K columns staged per step
const BKP: u32 = 40u; // staged row stride in halves
const SUBGROUPS: u32 = 8u;
const LANE_ELEMS: u32 = FF / 32u; // a fragment's elements per invocation of a subgroup
const RF: u32 = 2u; // coop_tiled: fragments per subgroup down...
const CF: u32 = 4u; // ...and across
const BM: u32 = 4u * RF * F; // coop_tiled: tile rows (4 x 2 subgroups)
const BN: u32 = 2u * CF * F; // coop_tiled: tile columns
const FLUSH: u32 = 2u; // coop_tiled: fragments per subgroup stored per flush round
// A staged step is 8 F rows of x and of W by BK columns (coop_tiled: the tile's rows;
// coop_small: 8 slabs of F rows, one per subgroup); per invocation, on the vector path:
const XV: u32 = 8u * F * (BK / 4u) / 256u; // vectors of 4 activations
const WV: u32 = 8u * F * (BK / 8u) / 256u; // vectors of 8 weights

// Staged operands, f16: coop_tiled [BM][BKP] (x) and [BN][BKP] (W); coop_small one [F][BKP]
// slab per subgroup, the same size.
var<workgroup> xs: array<f16, BM * BKP>;
var<workgroup> ws: array<f16, BN * BKP>;
// Accumulators on their way to the f32 totals: [SUBGROUPS][FLUSH][F][F] (coop_tiled),
// [SUBGROUPS][F][F] (coop_small).
var<workgroup> red: array<f32, SUBGROUPS * FLUSH * FF>;
// One zero fragment, the start of every chunk's accumulator.
var<workgroup> zero_frag: array<f32, FF>;

fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

// W element `e` of the bound part (flat index), widened exactly.
fn w_elem(e: u32) -> f32 {
    let pair = unpack2x16float(w_data[e >> 1u]);
    return select(pair.x, pair.y, (e & 1u) == 1u);
}

// W[row, k] and W[row, k + 1] (row local to the part, below n_count), zero past K. With K
// even the pair is one word.
fn w_pair(row: u32, k: u32) -> vec2<f32> {
    let kk = params.k;
    let e = row * kk + k;
    if (kk & 1u) == 0u {
        if k < kk {
            return unpack2x16float(w_data[e >> 1u]);
        }
        return vec2<f32>(0.0);
    }
    var v = vec2<f32>(0.0);
    if k < kk {
        v.x = w_elem(e);
    }
    if k + 1u < kk {
        v.y = w_elem(e + 1u);
    }
    return v;
}

// x[t, k] and x[t, k + 1], zero past K or past T.
fn x_pair(t: u32, k: u32) -> vec2<f32> {
    var v = vec2<f32>(0.0);
    if t < params.rows {
        let e = t * params.k + k;
        if k < params.k {
            v.x = x[e];
        }
        if k + 1u < params.k {
            v.y = x[e + 1u];
        }
    }
    return v;
}

// Staged row r (0 .. 8 F) of a step: its x row, its W row (local to the part) and its first
// k. coop_tiled: the tile's row r, every row at `kstep`. coop_small: row r % F of slab
// r / F, whose chunk starts KC after the previous slab's.
fn step_row(small: bool, a0: u32, n0: u32, kstep: u32, r: u32) -> vec3<u32> {
    if small {
        return vec3<u32>(a0 + r % F, n0 + r % F, kstep + (r / F) * KC);
    }
    return vec3<u32>(a0 + r, n0 + r, kstep);
}

// Stages a step straight from the scalar bindings (any K), zeros past T, N and K.
fn stage_scalar(small: bool, a0: u32, n0: u32, kstep: u32, li: u32) {
    for (var p = li; p < 8u * F * (BK / 2u); p += 256u) {
        let r = p / (BK / 2u);
        let kk = (p % (BK / 2u)) * 2u;
        let c = step_row(small, a0, n0, kstep, r);
        let xv = x_pair(c.x, c.z + kk);
        var wv = vec2<f32>(0.0);
        if c.y < params.n_count {
            wv = w_pair(c.y, c.z + kk);
        }
        let o = r * BKP + kk;
        xs[o] = f16(xv.x);
        xs[o + 1u] = f16(xv.y);
        ws[o] = f16(wv.x);
        ws[o + 1u] = f16(wv.y);
    }
}

// A step's operands in registers, loaded ahead of the step (vector path).
struct Staged {
    xv: array<vec4<f32>, XV>,
    wv: array<vec4<u32>, WV>,
}

// Loads a step through the vector bindings (K % 8 == 0: a vector is wholly inside K or
// wholly past it), zeros past T, N and K.
fn load_vec(small: bool, a0: u32, n0: u32, kstep: u32, li: u32) -> Staged {
    var st: Staged;
    for (var i = 0u; i < XV; i++) {
        let p = li + i * 256u;
        let c = step_row(small, a0, n0, kstep, p / (BK / 4u));
        let k = c.z + (p % (BK / 4u)) * 4u;
        var v = vec4<f32>(0.0);
        if c.x < params.rows && k < params.k {
            v = x_vec[(c.x * params.k + k) / 4u];
        }
        st.xv[i] = v;
    }
    for (var i = 0u; i < WV; i++) {
        let p = li + i * 256u;
        let c = step_row(small, a0, n0, kstep, p / (BK / 8u));
        let k = c.z + (p % (BK / 8u)) * 8u;
        var v = vec4<u32>(0u);
        if c.y < params.n_count && k < params.k {
            v = w_vec[(c.y * params.k + k) / 8u];
        }
        st.wv[i] = v;
    }
    return st;
}

// Writes a step loaded by `load_vec` to the staged tiles as f16.
fn store_vec(st: Staged, li: u32) {
    for (var i = 0u; i < XV; i++) {
        let p = li + i * 256u;
        let o = (p / (BK / 4u)) * BKP + (p % (BK / 4u)) * 4u;
        let v = st.xv[i];
        xs[o] = f16(v.x);
        xs[o + 1u] = f16(v.y);
        xs[o + 2u] = f16(v.z);
        xs[o + 3u] = f16(v.w);
    }
    for (var i = 0u; i < WV; i++) {
        let p = li + i * 256u;
        let o = (p / (BK / 8u)) * BKP + (p % (BK / 8u)) * 8u;
        let v = st.wv[i];
        for (var j = 0u; j < 4u; j++) {
            let h = unpack2x16float(v[j]);
            ws[o + 2u * j] = f16(h.x);
            ws[o + 2u * j + 1u] = f16(h.y);
        }
    }
}

// Writes one output element (t, n local to the part) with the bias, if inside the output.
fn finish(t: u32, n: u32, total: f32) {
    if t >= params.rows || n >= params.n_count {
        return;
    }
    var v = total;
    if params.has_bias == 1u {
        v = v + bias[params.n_start + n];
    }
    y[t * params.n_total + params.n_start + n] = v;
}

// A workgroup that does not have the 8 subgroups the kernels assume marks its outputs NaN.
fn poison(m0: u32, n0: u32, rows: u32, cols: u32, li: u32) {
    for (var e = li; e < rows * cols; e += 256u) {
        finish(m0 + e / cols, n0 + e % cols, nan());
    }
}

fn clear_zero_frag(li: u32) {
    for (var e = li; e < FF; e += 256u) {
        zero_frag[e] = 0.0;
    }
}

// Tiles of F columns in the step [k0, k0 + BK) of a chunk ending at `ke` (0 past it).
fn step_tiles(k0: u32, ke: u32) -> u32 {
    if k0 >= ke {
        return 0u;
    }
    return (min(BK, ke - k0) + F - 1u) / F;
}

@compute @workgroup_size(256)
fn coop_small(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) nsg: u32,
) {
    let n0 = wg.x * F;
    let t0 = wg.y * F;
    if nsg != SUBGROUPS {
        poison(t0, n0, F, F, li);
        return;
    }
    clear_zero_frag(li);
    let vec = (params.k & 7u) == 0u;
    let nchunks = (params.k + KC - 1u) / KC;
    let rounds = (nchunks + SUBGROUPS - 1u) / SUBGROUPS;
    // This subgroup's slab in xs / ws, and the element of the output this invocation sums.
    let slab = sg * F * BKP;
    let zs = 0u;
    let fs = F;
    let stride = BKP;
    let mine = sg * FF;
    var total = 0.0;
    var st: Staged;
    for (var r = 0u; r < rounds; r++) {
        // The chunk of this subgroup in this round, and where it ends; slab 0's chunk.
        let c = r * SUBGROUPS + sg;
        let kb = c * KC;
        let ke = min(kb + KC, params.k);
        let kround = r * SUBGROUPS * KC;
        workgroupBarrier(); // zero_frag written; the previous round's partials read
        var acc = coopLoadT<coop_mat16x16<f32, C>>(&zero_frag[zs], fs);
        if vec {
            st = load_vec(true, t0, n0, kround, li);
        }
        for (var s = 0u; s < KC / BK; s++) {
            if vec {
                store_vec(st, li);
            } else {
                stage_scalar(true, t0, n0, kround + s * BK, li);
            }
            workgroupBarrier();
            // The next step's loads fly while this one multiplies.
            if vec && s + 1u < KC / BK {
                st = load_vec(true, t0, n0, kround + (s + 1u) * BK, li);
            }
            let tiles = step_tiles(kb + s * BK, ke);
            for (var kt = 0u; kt < tiles; kt++) {
                let o = slab + kt * F;
                let a = coopLoadT<coop_mat16x16<f16, A>>(&xs[o], stride);
                let b = coopLoad<coop_mat16x16<f16, B>>(&ws[o], stride);
                acc = coopMultiplyAdd(a, b, acc);
            }
            workgroupBarrier();
        }
        coopStoreT(acc, &red[mine], fs);
        workgroupBarrier();
        if li < FF {
            for (var j = 0u; j < SUBGROUPS; j++) {
                if r * SUBGROUPS + j < nchunks {
                    total = total + red[j * FF + li];
                }
            }
        }
    }
    if li < FF {
        finish(t0 + li / F, n0 + li % F, total);
    }
}

@compute @workgroup_size(256)
fn coop_tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) nsg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let m0 = wg.y * BM;
    let n0 = wg.x * BN;
    if nsg != SUBGROUPS {
        poison(m0, n0, BM, BN, li);
        return;
    }
    clear_zero_frag(li);
    let vec = (params.k & 7u) == 0u;
    // This subgroup's block: rows ar.. and columns bc.. of the tile, as staged offsets.
    let ar = (sg / 2u) * RF * F;
    let bc = (sg % 2u) * CF * F;
    let a0o = ar * BKP;
    let a1o = (ar + F) * BKP;
    let b0o = bc * BKP;
    let b1o = (bc + F) * BKP;
    let b2o = (bc + 2u * F) * BKP;
    let b3o = (bc + 3u * F) * BKP;
    let zs = 0u;
    let fs = F;
    let stride = BKP;
    let f0 = (sg * FLUSH) * FF;
    let f1 = (sg * FLUSH + 1u) * FF;
    // Totals of the RF x CF fragments, LANE_ELEMS elements each: fragment i's element
    // lane + 32 e (row-major in the fragment) is tot[i * LANE_ELEMS + e].
    var tot: array<f32, RF * CF * LANE_ELEMS>; // zero-initialised
    workgroupBarrier(); // zero_frag written
    var acc0 = coopLoadT<coop_mat16x16<f32, C>>(&zero_frag[zs], fs);
    var acc1 = acc0;
    var acc2 = acc0;
    var acc3 = acc0;
    var acc4 = acc0;
    var acc5 = acc0;
    var acc6 = acc0;
    var acc7 = acc0;
    // One loop over the steps of K; a chunk ends every KC / BK steps and at the last.
    let steps = (params.k + BK - 1u) / BK;
    var st: Staged;
    if vec {
        st = load_vec(false, m0, n0, 0u, li);
    }
    for (var s = 0u; s < steps; s++) {
        let k0 = s * BK;
        let ke = min((k0 / KC + 1u) * KC, params.k);
        if vec {
            store_vec(st, li);
        } else {
            stage_scalar(false, m0, n0, k0, li);
        }
        workgroupBarrier();
        // The next step's loads fly while this one multiplies.
        if vec && s + 1u < steps {
            st = load_vec(false, m0, n0, k0 + BK, li);
        }
        let tiles = step_tiles(k0, ke);
        for (var kt = 0u; kt < tiles; kt++) {
            // Every index a `let` of its own (naga's SPIR-V for cooperative loads).
            let ko = kt * F;
            let ia0 = a0o + ko;
            let ia1 = a1o + ko;
            let ib0 = b0o + ko;
            let ib1 = b1o + ko;
            let ib2 = b2o + ko;
            let ib3 = b3o + ko;
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[ia0], stride);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[ia1], stride);
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&ws[ib0], stride);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&ws[ib1], stride);
            let b2 = coopLoad<coop_mat16x16<f16, B>>(&ws[ib2], stride);
            let b3 = coopLoad<coop_mat16x16<f16, B>>(&ws[ib3], stride);
            acc0 = coopMultiplyAdd(a0, b0, acc0);
            acc1 = coopMultiplyAdd(a0, b1, acc1);
            acc2 = coopMultiplyAdd(a0, b2, acc2);
            acc3 = coopMultiplyAdd(a0, b3, acc3);
            acc4 = coopMultiplyAdd(a1, b0, acc4);
            acc5 = coopMultiplyAdd(a1, b1, acc5);
            acc6 = coopMultiplyAdd(a1, b2, acc6);
            acc7 = coopMultiplyAdd(a1, b3, acc7);
        }
        workgroupBarrier();
        if k0 + BK < ke {
            continue;
        }
        // The chunk ends: its partials into the totals, FLUSH fragments a round, then the
        // accumulators start again from zero.
        coopStoreT(acc0, &red[f0], fs);
        coopStoreT(acc1, &red[f1], fs);
        workgroupBarrier();
        for (var e = 0u; e < LANE_ELEMS; e++) {
            tot[e] = tot[e] + red[f0 + lane + 32u * e];
            tot[LANE_ELEMS + e] = tot[LANE_ELEMS + e] + red[f1 + lane + 32u * e];
        }
        workgroupBarrier();
        coopStoreT(acc2, &red[f0], fs);
        coopStoreT(acc3, &red[f1], fs);
        workgroupBarrier();
        for (var e = 0u; e < LANE_ELEMS; e++) {
            tot[2u * LANE_ELEMS + e] = tot[2u * LANE_ELEMS + e] + red[f0 + lane + 32u * e];
            tot[3u * LANE_ELEMS + e] = tot[3u * LANE_ELEMS + e] + red[f1 + lane + 32u * e];
        }
        workgroupBarrier();
        coopStoreT(acc4, &red[f0], fs);
        coopStoreT(acc5, &red[f1], fs);
        workgroupBarrier();
        for (var e = 0u; e < LANE_ELEMS; e++) {
            tot[4u * LANE_ELEMS + e] = tot[4u * LANE_ELEMS + e] + red[f0 + lane + 32u * e];
            tot[5u * LANE_ELEMS + e] = tot[5u * LANE_ELEMS + e] + red[f1 + lane + 32u * e];
        }
        workgroupBarrier();
        coopStoreT(acc6, &red[f0], fs);
        coopStoreT(acc7, &red[f1], fs);
        workgroupBarrier();
        for (var e = 0u; e < LANE_ELEMS; e++) {
            tot[6u * LANE_ELEMS + e] = tot[6u * LANE_ELEMS + e] + red[f0 + lane + 32u * e];
            tot[7u * LANE_ELEMS + e] = tot[7u * LANE_ELEMS + e] + red[f1 + lane + 32u * e];
        }
        acc0 = coopLoadT<coop_mat16x16<f32, C>>(&zero_frag[zs], fs);
        acc1 = acc0;
        acc2 = acc0;
        acc3 = acc0;
        acc4 = acc0;
        acc5 = acc0;
        acc6 = acc0;
        acc7 = acc0;
    }
    // Fragment i = (i / CF, i % CF) of the block; its element lane + 32 e.
    for (var i = 0u; i < RF * CF; i++) {
        let fr = m0 + ar + (i / CF) * F;
        let fc = n0 + bc + (i % CF) * F;
        for (var e = 0u; e < LANE_ELEMS; e++) {
            let idx = lane + 32u * e;
            finish(fr + idx / F, fc + idx % F, tot[i * LANE_ELEMS + e]);
        }
    }
}
