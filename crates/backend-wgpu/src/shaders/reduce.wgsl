// Fixed-tree reductions over one workgroup, shared by every family that sums or takes the
// maximum across its invocations (rms_norm, attention, sample, top_logprobs): prefixed to
// the family's source like rank.wgsl. The including module defines
// `const REDUCE_LANES: u32`, its workgroup size (a power of two).
//
// The tree is lane[l] = lane[l] op lane[l + s] for s = REDUCE_LANES / 2, .., 1, so a
// result depends only on the lanes' inputs, never on which rows share the dispatch (batch
// invariance); the CPU backend reproduces this order where it must agree bit for bit.
// Every function holds barriers: call it in uniform control flow. Each ends with a
// barrier after reading the result, so the scratch can be reused at once.

var<workgroup> reduce_scratch: array<f32, REDUCE_LANES>;

// Sum of `v` over the workgroup in the fixed tree order; every invocation gets the result.
fn tree_sum(li: u32, v: f32) -> f32 {
    reduce_scratch[li] = v;
    workgroupBarrier();
    for (var s = REDUCE_LANES / 2u; s > 0u; s = s >> 1u) {
        if li < s {
            reduce_scratch[li] = reduce_scratch[li] + reduce_scratch[li + s];
        }
        workgroupBarrier();
    }
    let total = reduce_scratch[0];
    workgroupBarrier();
    return total;
}

// Maximum of `v` over the workgroup (WGSL `max`), in the same tree; to every invocation.
fn tree_max(li: u32, v: f32) -> f32 {
    reduce_scratch[li] = v;
    workgroupBarrier();
    for (var s = REDUCE_LANES / 2u; s > 0u; s = s >> 1u) {
        if li < s {
            reduce_scratch[li] = max(reduce_scratch[li], reduce_scratch[li + s]);
        }
        workgroupBarrier();
    }
    let m = reduce_scratch[0];
    workgroupBarrier();
    return m;
}
