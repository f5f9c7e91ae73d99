// top_logprobs: for each row of logits [rows, vocab] f32 and its chosen token tokens[row],
// the chosen token's log-probability and the k best tokens' -> [rows, 2 (1 + k)] words of
// (id, logprob) pairs, the chosen token first: [id_c, lp_c, id_1, lp_1, .., id_k, lp_k].
// Ids are written as raw u32 words (the host reads the f32 tensor's bits back); logprobs as
// f32 bits. The definition is the doc of `Backend::top_logprobs`; the CPU reference is
// `ingot_backend_cpu`'s `sample::top_logprobs`.
//
// One 256-invocation workgroup per row:
// 1. m = max of the row: lane li scans columns li, li + 256, .., then a fixed binary tree.
// 2. s = sum exp(x - m): lane li adds its columns in turn, then the tree
//    lane[l] += lane[l + h] for h = 128, .., 1 (the CPU reference's order exactly);
//    lse = m + log(s), logprob = x - lse.
// 3. k rounds of a fixed-tree argmax over (rank key, index), where the rank key orders
//    values as Rust's f32::total_cmp (negative bits flipped, non-negative with the sign bit
//    set) and equal keys prefer the lower index: the host's ranking (`rank_cmp`). Round r
//    considers only candidates ranked strictly below round r - 1's pick, which excludes
//    every index already picked without a list. The tree's combine is a total order, so the
//    winner does not depend on the tree's shape.

struct TopLogprobsParams {
    rows: u32,
    vocab: u32,
    k: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: TopLogprobsParams;
@group(0) @binding(1) var<storage, read> logits: array<u32>; // [rows, vocab] f32 bits
@group(0) @binding(2) var<storage, read> tokens: array<u32>; // [rows]
@group(0) @binding(3) var<storage, read_write> dst: array<u32>; // [rows, 2 (1 + k)]

// `tree_max` and `tree_sum` (reduce.wgsl) over the 256 invocations.
const REDUCE_LANES: u32 = 256u;

@compute @workgroup_size(256)
fn top_logprobs(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    // Uniform control flow: every invocation of a workgroup shares `row`, so the early
    // return is taken by the whole group or by none.
    let row = wg.y * nwg.x + wg.x;
    if row >= params.rows {
        return;
    }
    let vocab = params.vocab;
    let base = row * vocab;
    let width = 2u * (1u + params.k);
    let out = row * width;

    // 1. The maximum.
    var m = bitcast<f32>(0xff800000u); // -inf
    for (var c = li; c < vocab; c += 256u) {
        m = max(m, bitcast<f32>(logits[base + c]));
    }
    let mx = tree_max(li, m);

    // 2. The sum of exp(x - m) in the fixed order.
    var s = 0.0;
    for (var c = li; c < vocab; c += 256u) {
        s += exp(bitcast<f32>(logits[base + c]) - mx);
    }
    let lse = mx + log(tree_sum(li, s));

    if li == 0u {
        let t = tokens[row];
        dst[out] = t;
        if t < vocab {
            dst[out + 1u] = bitcast<u32>(bitcast<f32>(logits[base + t]) - lse);
        } else {
            dst[out + 1u] = 0x7fc00000u; // NaN
        }
    }

    // 3. k rounds of argmax (k <= vocab, so each round finds a column). Round 0 has no
    // bound; round r > 0 admits only columns ranked after round r - 1's pick. A lane that
    // admitted nothing holds index 0xffffffff and loses every combine.
    var prev_key = 0u;
    var prev_idx = 0u;
    for (var r = 0u; r < params.k; r++) {
        var bk = 0u;
        var bi = 0xffffffffu;
        var found = false;
        for (var c = li; c < vocab; c += 256u) {
            let k = rank_key(logits[base + c]);
            let allowed = r == 0u || beats(prev_key, prev_idx, k, c);
            if allowed && (!found || beats(k, c, bk, bi)) {
                bk = k;
                bi = c;
                found = true;
            }
        }
        let best = tree_best(li, bk, select(0xffffffffu, bi, found));
        prev_key = best.x;
        prev_idx = best.y;
        if li == 0u {
            dst[out + 2u + 2u * r] = prev_idx;
            dst[out + 3u + 2u * r] = bitcast<u32>(bitcast<f32>(logits[base + prev_idx]) - lse);
        }
        workgroupBarrier();
    }
}
