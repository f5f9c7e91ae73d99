// argmax: for each row of logits [rows, vocab] f32, the index of its largest value -> [rows]
// u32, with exactly the semantics of the CPU reference (`ingot_tensor::backend::argmax_row`,
// a left-to-right scan that replaces the best only on a strict `>`): the first index among
// equal maxima, -0.0 tying +0.0, NaNs ignored except that a NaN in column 0 makes the
// answer 0; a row of all -inf gives 0.
//
// Values are compared as integers, never as floats, so no driver's float mode (NaN
// handling, denormal flushing) can change the answer: the logits are bound as raw u32 bits
// and mapped to order-preserving keys (NaN -> 0, below every number; -0 -> +0). One
// workgroup per row: invocation li scans columns li, li + 256, ... keeping its first
// maximum, then the 256 candidates meet in a fixed binary tree. The combine (larger key
// wins, equal keys -> smaller index) is a total order on (key, index), so the winner is the
// first column of the largest key whatever the tree: the scan's answer, bit for bit.

struct ArgmaxParams {
    rows: u32,
    vocab: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: ArgmaxParams;
@group(0) @binding(1) var<storage, read> logits: array<u32>; // [rows, vocab] f32 bits
@group(0) @binding(2) var<storage, read_write> dst: array<u32>; // [rows]

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
