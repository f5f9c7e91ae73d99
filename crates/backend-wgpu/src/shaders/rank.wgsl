// Shared by argmax.wgsl, sample.wgsl and top_logprobs.wgsl (prepended to each): f32 values
// compared as unsigned integer keys, never as floats, so no driver's float mode (NaN
// handling, denormal flushing) changes a comparison, and the fixed-tree "best of 256 lanes".

// A key ordered as the f32 values are, NaN -> 0 (below every number: -inf maps to
// 0x007fffff), -0 and +0 -> the same key. The host sampler's argmax order.
fn order_key(bits: u32) -> u32 {
    if (bits & 0x7fffffffu) > 0x7f800000u {
        return 0u;
    }
    if bits == 0x80000000u {
        return 0x80000000u;
    }
    if (bits & 0x80000000u) != 0u {
        return ~bits;
    }
    return bits | 0x80000000u;
}

// The integer form of Rust's f32::total_cmp (the host's logprob ranking, `rank_cmp`).
fn rank_key(bits: u32) -> u32 {
    if (bits & 0x80000000u) != 0u {
        return ~bits;
    }
    return bits | 0x80000000u;
}

// Whether candidate (k, i) beats (bk, bi): larger key, or equal key and smaller index. A
// lane with no candidate holds (0, 0xffffffff): it beats nothing and loses to every filled
// lane (whose index is a column), so no separate "filled" flag is needed.
fn beats(k: u32, i: u32, bk: u32, bi: u32) -> bool {
    return k > bk || (k == bk && i < bi);
}

var<workgroup> tree_key: array<u32, 256>;
var<workgroup> tree_idx: array<u32, 256>;

// The best (key, index) of the 256 lanes' candidates, to every invocation: a fixed binary
// tree whose combine is a total order, so the winner does not depend on the tree's shape.
// Call in uniform control flow (it holds barriers).
fn tree_best(li: u32, k: u32, i: u32) -> vec2<u32> {
    tree_key[li] = k;
    tree_idx[li] = i;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if li < s && beats(tree_key[li + s], tree_idx[li + s], tree_key[li], tree_idx[li]) {
            tree_key[li] = tree_key[li + s];
            tree_idx[li] = tree_idx[li + s];
        }
        workgroupBarrier();
    }
    let best = vec2<u32>(tree_key[0], tree_idx[0]);
    workgroupBarrier();
    return best;
}
