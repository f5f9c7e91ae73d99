// argmax: for each row of logits [rows, vocab] f32, the index of its largest value -> [rows]
// u32, with exactly the semantics of the CPU reference (`ingot_tensor::backend::argmax_row`,
// a left-to-right scan that replaces the best only on a strict `>`): the first index among
// equal maxima, -0.0 tying +0.0, NaNs ignored except that a NaN in column 0 makes the
// answer 0; a row of all -inf gives 0.
//
// Values are compared as integers, never as floats, so no driver's float mode (NaN
// handling, denormal flushing) can change the answer: the logits are bound as raw u32 bits
// and mapped to order-preserving keys (NaN -> 0, below every number; -0 -> +0). The combine
// (larger key wins, equal keys -> smaller index) is a total order on (key, index), so the
// winner is the first column of the largest key whatever the grouping: the scan's answer,
// bit for bit, from either form below.
//
// - `argmax`: one workgroup per row (short rows): invocation li scans columns li, li + 256,
//   ... keeping its first maximum, then the 256 candidates meet in a fixed binary tree.
// - `argmax_partial` + `argmax_merge` (long rows, e.g. a 151,936-token vocabulary, where one
//   workgroup per row left the GPU idle for ~230 us on an H200): the row is cut into
//   `parts` (<= 256) spans of `span` columns, each span's best found by its own workgroup
//   into `partial` [rows, parts, 2] (key, index); then one workgroup per row takes the best
//   of the parts' bests.

struct ArgmaxParams {
    rows: u32,
    vocab: u32,
    parts: u32, // spans per row (two-pass form; 1 for `argmax`)
    span: u32,  // columns per span, a multiple of 256
}

@group(0) @binding(0) var<uniform> params: ArgmaxParams;
@group(0) @binding(1) var<storage, read> logits: array<u32>; // [rows, vocab] f32 bits
@group(0) @binding(2) var<storage, read_write> dst: array<u32>; // [rows]
@group(0) @binding(3) var<storage, read_write> partial: array<u32>; // [rows, parts, 2]

@compute @workgroup_size(256)
fn argmax(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row = wg.y * nwg.x + wg.x;
    if row >= params.rows {
        return;
    }
    let base = row * params.vocab;
    // No column yet: index u32::MAX loses every tie, key 0 ties only NaN.
    var bk = 0u;
    var bi = 0xffffffffu;
    for (var c = li; c < params.vocab; c += 256u) {
        let k = order_key(logits[base + c]);
        if beats(k, c, bk, bi) {
            bk = k;
            bi = c;
        }
    }
    let best = tree_best(li, bk, bi);
    if li == 0u {
        // A NaN in column 0 is never replaced by the scan: the answer is 0. (An all-NaN row
        // lands here too; its tree winner is column 0 anyway.)
        if order_key(logits[base]) == 0u {
            dst[row] = 0u;
        } else {
            dst[row] = best.y;
        }
    }
}

// The best (key, index) of span `part` of row `row` -> partial[(row * parts + part) * 2 ..].
@compute @workgroup_size(256)
fn argmax_partial(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let w = wg.y * nwg.x + wg.x;
    if w >= params.rows * params.parts {
        return;
    }
    let row = w / params.parts;
    let part = w % params.parts;
    let base = row * params.vocab;
    let end = min(params.vocab, (part + 1u) * params.span);
    var bk = 0u;
    var bi = 0xffffffffu;
    for (var c = part * params.span + li; c < end; c += 256u) {
        let k = order_key(logits[base + c]);
        if beats(k, c, bk, bi) {
            bk = k;
            bi = c;
        }
    }
    let best = tree_best(li, bk, bi);
    if li == 0u {
        partial[w * 2u] = best.x;
        partial[w * 2u + 1u] = best.y;
    }
}

// Each row's answer from its parts' bests (lanes past `parts` hold no candidate).
@compute @workgroup_size(256)
fn argmax_merge(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row = wg.y * nwg.x + wg.x;
    if row >= params.rows {
        return;
    }
    var bk = 0u;
    var bi = 0xffffffffu;
    if li < params.parts {
        let at = (row * params.parts + li) * 2u;
        bk = partial[at];
        bi = partial[at + 1u];
    }
    let best = tree_best(li, bk, bi);
    if li == 0u {
        // Column 0 holding NaN makes the answer 0, as in `argmax`.
        if order_key(logits[row * params.vocab]) == 0u {
            dst[row] = 0u;
        } else {
            dst[row] = best.y;
        }
    }
}
