// Mixture of experts: routing, grouping by expert, the expert projections and the weighted
// sum. Prefixed with the expert weights' access `w_quad(i)`: a `dtype_*.wgsl` snippet and
// `moe_dense.wgsl` for f32/f16/bf16 stacks, or a GGUF block format's `quant_<format>.wgsl`,
// `quant.wgsl` and `moe_blocks.wgsl` for stacks kept in blocks (decoded in registers to the
// CPU dequantizer's exact values, so a projection over blocks gives the bits of the same
// projection over the dequantized weights stored as f32).
//
// - `moe_route`: one invocation per token, `ingot_tensor::moe::route_row` line for line:
//   slot j takes the largest logit ranking below slot j - 1's (ties to the lower expert),
//   weights from the softmax over all experts (sum in expert order) or a sigmoid, optionally
//   divided by their sum in slot order. Empty slots (fewer than k non-NaN logits) get id E.
// - `moe_group`: one workgroup. Counts each expert's slots, prefix-sums the counts into
//   `grouping[0..=E]` and lists each expert's slots (s = t * k + j) ascending after them, at
//   `grouping[E + 1 + offset]`. Everything later reads the grouping from the device, so no
//   count comes back to the host: the projections are launched for every expert and an
//   expert without slots returns at once.
// - `moe_project`: a workgroup per (64 output columns, expert), looping over all its slots
//   in tiles of 8 rows, so each expert's weights are read once per step. Gated (the stacked
//   gate/up rows, input row = the slot's token): `silu(gate) * up` per slot; plain (the down
//   rows, input row = the slot): the projection. Every output element is one fma chain over
//   k ascending from 0, whatever the tile or the other rows: batch invariant.
// - `moe_combine`: one invocation per (token, column): `acc = sum_j w_j * out_j` in slot
//   order, then the shared expert (`+ sigmoid(gate) * shared`), then `residual += acc`.
//
// Expert weights are [E, N, K]; the bound `w_data` may be one part of them holding experts
// `expert_start ..< expert_start + expert_count` (parts split at whole experts).

struct MoeParams {
    tokens: u32,
    experts: u32,
    top_k: u32,
    scoring: u32, // 0 softmax, 1 sigmoid
    renormalize: u32,
    k_in: u32, // the projection's reduction length: H (gate/up) or I (down)
    n_out: u32, // outputs per row: I (gate/up) or H (down)
    hidden: u32, // H
    expert_start: u32,
    expert_count: u32,
    gated: u32, // 1: gate/up rows and silu(gate) * up; 0: plain rows (down)
    has_shared: u32,
    shared_gate: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: MoeParams;
@group(0) @binding(1) var<storage, read> w_data: array<WData>; // [experts of the part, N, K]
// route: logits [T, E]; project: x [T, H] (gated) or act [T * k, I]; combine: out [T * k, H]
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> ids: array<u32>; // [T * k]
@group(0) @binding(4) var<storage, read_write> weights: array<f32>; // [T * k]
@group(0) @binding(5) var<storage, read_write> grouping: array<u32>; // [E + 1 + T * k]
@group(0) @binding(6) var<storage, read_write> dst: array<f32>; // [T * k, n_out]
@group(0) @binding(7) var<storage, read> shared_out: array<f32>; // [T, H] or a dummy word
@group(0) @binding(8) var<storage, read> shared_gate: array<f32>; // [T] or a dummy word
@group(0) @binding(9) var<storage, read_write> residual: array<f32>; // [T, H]

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

@compute @workgroup_size(64)
fn moe_route(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let t = (wg.y * nwg.x + wg.x) * 64u + li;
    if t >= params.tokens {
        return;
    }
    let ne = params.experts;
    let k = params.top_k;
    let base = t * ne;
    var prev_l = 0.0;
    var prev_e = 0u;
    var exhausted = false;
    for (var j = 0u; j < k; j++) {
        var best = ne;
        var best_l = 0.0;
        if !exhausted {
            for (var e = 0u; e < ne; e++) {
                let l = src[base + e];
                let eligible = j == 0u || l < prev_l || (l == prev_l && e > prev_e);
                if eligible && l == l && (best == ne || l > best_l) {
                    best = e;
                    best_l = l;
                }
            }
        }
        ids[t * k + j] = best;
        if best == ne {
            exhausted = true;
        } else {
            prev_l = best_l;
            prev_e = best;
        }
    }
    var max_l = -3.40282347e38;
    var sum = 0.0;
    if params.scoring == 0u {
        for (var e = 0u; e < ne; e++) {
            max_l = max(max_l, src[base + e]);
        }
        for (var e = 0u; e < ne; e++) {
            sum = sum + exp(src[base + e] - max_l);
        }
    }
    var total = 0.0;
    for (var j = 0u; j < k; j++) {
        let e = ids[t * k + j];
        var w = 0.0;
        if e < ne {
            let l = src[base + e];
            if params.scoring == 0u {
                w = exp(l - max_l) / sum;
            } else {
                w = sigmoid(l);
            }
        }
        weights[t * k + j] = w;
        total = total + w;
    }
    if params.renormalize != 0u {
        for (var j = 0u; j < k; j++) {
            weights[t * k + j] = weights[t * k + j] / total;
        }
    }
}

@compute @workgroup_size(256)
fn moe_group(@builtin(local_invocation_index) li: u32) {
    let ne = params.experts;
    let slots = params.tokens * params.top_k;
    for (var e = li; e < ne; e += 256u) {
        var c = 0u;
        for (var s = 0u; s < slots; s++) {
            c += select(0u, 1u, ids[s] == e);
        }
        grouping[e + 1u] = c;
    }
    storageBarrier();
    if li == 0u {
        grouping[0] = 0u;
        for (var e = 0u; e < ne; e++) {
            grouping[e + 1u] = grouping[e + 1u] + grouping[e];
        }
    }
    storageBarrier();
    for (var e = li; e < ne; e += 256u) {
        var at = grouping[e];
        for (var s = 0u; s < slots; s++) {
            if ids[s] == e {
                grouping[ne + 1u + at] = s;
                at++;
            }
        }
    }
}

const PM: u32 = 8u; // rows (slots) per tile
const PN: u32 = 64u; // output columns per workgroup, one per invocation
const PK: u32 = 64u; // k staged per step

var<workgroup> xs: array<f32, 512>; // [PM, PK]
var<workgroup> span: vec2<u32>; // the expert's slots: [begin, end) in the slot list

@compute @workgroup_size(64)
fn moe_project(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let e_local = wg.y;
    let e = params.expert_start + e_local;
    let ne = params.experts;
    if li == 0u {
        span = vec2<u32>(grouping[e], grouping[e + 1u]);
    }
    let bounds = workgroupUniformLoad(&span);
    let kk_len = params.k_in;
    let n_out = params.n_out;
    let n = wg.x * PN + li;
    let live = n < n_out;
    let gated = params.gated != 0u;
    // Rows of this invocation's weights within the bound part.
    var row_a = e_local * n_out + n;
    var row_b = 0u;
    if gated {
        row_a = e_local * 2u * n_out + n;
        row_b = row_a + n_out;
    }
    let list = ne + 1u;
    for (var r0 = bounds.x; r0 < bounds.y; r0 += PM) {
        let rows = min(PM, bounds.y - r0);
        var acc_a: array<f32, 8>;
        var acc_b: array<f32, 8>;
        for (var r = 0u; r < PM; r++) {
            acc_a[r] = 0.0;
            acc_b[r] = 0.0;
        }
        for (var k0 = 0u; k0 < kk_len; k0 += PK) {
            workgroupBarrier();
            for (var q = 0u; q < PM; q++) {
                let idx = q * PK + li;
                let kk = k0 + li;
                var v = 0.0;
                if q < rows && kk < kk_len {
                    let slot = grouping[list + r0 + q];
                    var row = slot;
                    if gated {
                        row = slot / params.top_k;
                    }
                    v = src[row * kk_len + kk];
                }
                xs[idx] = v;
            }
            workgroupBarrier();
            if live {
                let steps = min(PK, kk_len - k0);
                if kk_len % 4u == 0u {
                    // Four weights per load (always so for blocks: K is whole sub-blocks);
                    // each row's chain still takes them one fma at a time, k ascending.
                    for (var kk = 0u; kk < steps; kk += 4u) {
                        let wa = w_quad(row_a * kk_len + k0 + kk);
                        var wb = vec4<f32>(0.0);
                        if gated {
                            wb = w_quad(row_b * kk_len + k0 + kk);
                        }
                        for (var r = 0u; r < PM; r++) {
                            let o = r * PK + kk;
                            let xv = vec4<f32>(xs[o], xs[o + 1u], xs[o + 2u], xs[o + 3u]);
                            var a = acc_a[r];
                            a = fma(wa.x, xv.x, a);
                            a = fma(wa.y, xv.y, a);
                            a = fma(wa.z, xv.z, a);
                            acc_a[r] = fma(wa.w, xv.w, a);
                            if gated {
                                var b = acc_b[r];
                                b = fma(wb.x, xv.x, b);
                                b = fma(wb.y, xv.y, b);
                                b = fma(wb.z, xv.z, b);
                                acc_b[r] = fma(wb.w, xv.w, b);
                            }
                        }
                    }
                } else {
                    for (var kk = 0u; kk < steps; kk++) {
                        let wa = load_w(row_a * kk_len + k0 + kk);
                        var wb = 0.0;
                        if gated {
                            wb = load_w(row_b * kk_len + k0 + kk);
                        }
                        for (var r = 0u; r < PM; r++) {
                            let xv = xs[r * PK + kk];
                            acc_a[r] = fma(wa, xv, acc_a[r]);
                            acc_b[r] = fma(wb, xv, acc_b[r]);
                        }
                    }
                }
            }
        }
        if live {
            for (var r = 0u; r < rows; r++) {
                let slot = grouping[list + r0 + r];
                var y = acc_a[r];
                if gated {
                    y = acc_a[r] / (1.0 + exp(-acc_a[r])) * acc_b[r];
                }
                dst[slot * n_out + n] = y;
            }
        }
    }
}

@compute @workgroup_size(256)
fn moe_combine(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = (wg.y * nwg.x + wg.x) * 256u + li;
    let h = params.hidden;
    if i >= params.tokens * h {
        return;
    }
    let t = i / h;
    let c = i % h;
    let k = params.top_k;
    var acc = 0.0;
    for (var j = 0u; j < k; j++) {
        let s = t * k + j;
        if ids[s] < params.experts {
            acc = acc + weights[s] * src[s * h + c];
        }
    }
    if params.has_shared != 0u {
        var g = 1.0;
        if params.shared_gate != 0u {
            g = sigmoid(shared_gate[t]);
        }
        acc = acc + g * shared_out[i];
    }
    residual[i] = residual[i] + acc;
}
