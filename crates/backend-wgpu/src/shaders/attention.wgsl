// Paged attention, varlen and causal, prefill and decode rows mixed in one launch, GQA.
// One workgroup of CH = 64 invocations per (query head, token): dispatch (Hq, T).
//
// The token finds its sequence by binary search in query_start_loc; its position is
// seq_len - q_len + (t - query_start_loc[s]) and it attends to positions start..=pos
// (start > 0 only with a sliding window) of its sequence, read through the block table.
// Query head h reads KV head h / (Hq / Hk).
//
// Online softmax (Milakov & Gimelshein 2018; FlashAttention): the context is walked in
// chunks of CH positions aligned to multiples of CH in absolute position (the first chunk
// starts at `start`, the last ends at `pos`). Per chunk: invocation j scores position
// p0 + j (a sequential fma dot product over D), the chunk max and the chunk's sum of
// exponentials meet in fixed trees in workgroup memory, the running max, sum and output
// (invocation j owns dims j, j + 64, ...; up to D = 256) are rescaled once, and the chunk's
// V rows are added in position order. The chunk grid is fixed by position, never a fixed
// count of splits, so a query's output depends only on its own context: the same bits
// alone, in any batch, or inside a prompt processed whole or in chunks.
//
// A block-table entry outside the cache turns the query's output into NaN (visible),
// never into a read of another sequence's rows.

struct AttentionParams {
    tokens: u32,
    num_seqs: u32,
    hq: u32,
    hk: u32,
    head_dim: u32,
    block_size: u32,
    max_blocks: u32,
    num_blocks: u32,
    scale: f32,
    window: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: AttentionParams;
@group(0) @binding(1) var<storage, read> q: array<f32>; // [T, Hq, D]
@group(0) @binding(2) var<storage, read> k_cache: array<f32>; // [blocks, Hk, bs, D]
@group(0) @binding(3) var<storage, read> v_cache: array<f32>; // [blocks, Hk, bs, D]
@group(0) @binding(4) var<storage, read> block_tables: array<u32>; // [S, max_blocks]
@group(0) @binding(5) var<storage, read> seq_lens: array<u32>; // [S]
@group(0) @binding(6) var<storage, read> query_start_loc: array<u32>; // [S + 1]
@group(0) @binding(7) var<storage, read_write> dst: array<f32>; // [T, Hq, D]

const CH: u32 = 64u;
const MAX_D: u32 = 256u;
const DPI: u32 = 4u; // dims per invocation: MAX_D / CH
const NEG_BIG: f32 = -3.0e38;

var<workgroup> q_sh: array<f32, 256>; // [D]
var<workgroup> p_sh: array<f32, 64>; // [CH] exponentials of the chunk
var<workgroup> rows_sh: array<u32, 64>; // [CH] cache offsets of the chunk's positions
var<workgroup> red: array<f32, 64>; // [CH] reduction scratch
var<workgroup> bad_sh: array<u32, 64>; // [CH] 1 where a block id was out of range

fn tree_max(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = CH / 2u; s > 0u; s = s >> 1u) {
        if li < s {
            red[li] = max(red[li], red[li + s]);
        }
        workgroupBarrier();
    }
    let m = red[0];
    workgroupBarrier();
    return m;
}

fn tree_sum(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = CH / 2u; s > 0u; s = s >> 1u) {
        if li < s {
            red[li] = red[li] + red[li + s];
        }
        workgroupBarrier();
    }
    let m = red[0];
    workgroupBarrier();
    return m;
}

@compute @workgroup_size(64)
fn paged_attention(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let h = wg.x;
    let t = wg.y;
    let d_len = params.head_dim;
    // Largest s with query_start_loc[s] <= t (then t < query_start_loc[s + 1]).
    var lo = 0u;
    var hi = params.num_seqs;
    while lo + 1u < hi {
        let mid = (lo + hi) / 2u;
        if query_start_loc[mid] <= t {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let s = lo;
    let q0 = query_start_loc[s];
    let q_len = query_start_loc[s + 1u] - q0;
    let pos = seq_lens[s] - q_len + (t - q0);
    var start = 0u;
    if params.window > 0u && pos + 1u > params.window {
        start = pos + 1u - params.window;
    }
    let kvh = h / (params.hq / params.hk);
    let table = s * params.max_blocks;

    for (var d = li; d < d_len; d += CH) {
        q_sh[d] = q[(t * params.hq + h) * d_len + d];
    }
    var o: array<f32, 4>;
    for (var i = 0u; i < DPI; i++) {
        o[i] = 0.0;
    }
    var m = NEG_BIG;
    var l = 0.0;
    var bad = 0u;
    workgroupBarrier();

    var p0 = start;
    while p0 <= pos {
        let p1 = min((p0 / CH + 1u) * CH, pos + 1u);
        let n = p1 - p0;
        var score = NEG_BIG;
        if li < n {
            let p = p0 + li;
            let blk = block_tables[table + p / params.block_size];
            var b = 0u;
            if blk >= params.num_blocks {
                b = 1u;
            }
            bad_sh[li] = b;
            let row = ((min(blk, params.num_blocks - 1u) * params.hk + kvh) * params.block_size + p % params.block_size) * d_len;
            rows_sh[li] = row;
            var acc = 0.0;
            for (var d = 0u; d < d_len; d++) {
                acc = fma(q_sh[d], k_cache[row + d], acc);
            }
            score = acc * params.scale;
        }
        let m_new = max(m, tree_max(li, score));
        let corr = exp(m - m_new);
        var e = 0.0;
        if li < n {
            e = exp(score - m_new);
        }
        p_sh[li] = e;
        let chunk_sum = tree_sum(li, e); // its barriers also publish p_sh, rows_sh, bad_sh
        l = l * corr + chunk_sum;
        m = m_new;
        for (var i = 0u; i < DPI; i++) {
            let d = li + i * CH;
            if d < d_len {
                var acc = o[i] * corr;
                for (var j = 0u; j < n; j++) {
                    acc = fma(p_sh[j], v_cache[rows_sh[j] + d], acc);
                }
                o[i] = acc;
            }
        }
        for (var j = 0u; j < n; j++) {
            bad = bad | bad_sh[j];
        }
        workgroupBarrier();
        p0 = p1;
    }
    let inv = 1.0 / l;
    for (var i = 0u; i < DPI; i++) {
        let d = li + i * CH;
        if d < d_len {
            var v = o[i] * inv;
            if bad != 0u {
                v = bitcast<f32>(0x7fc00000u);
            }
            dst[(t * params.hq + h) * d_len + d] = v;
        }
    }
}
