// Paged attention, varlen and causal, prefill and decode rows mixed in one launch, GQA.
// Compiled once per KV cache dtype after a kv_*.wgsl prefix (`KvWord`, `KV_PER_WORD`,
// `kv_unpack`: f32 caches, or f16 two per word, widened exactly). Scores, softmax and the
// output are f32 whatever the cache dtype.
//
// The token finds its sequence by binary search in query_start_loc; its position is
// seq_len - q_len + (t - query_start_loc[s]) and it attends to positions start..=pos
// (start > 0 only with a sliding window) of its sequence, read through the block table.
// Query head h reads KV head h / (Hq / Hk).
//
// The canonical order (Milakov & Gimelshein 2018; FlashAttention, and FlashDecoding's
// split of the context): positions are cut into chunks of CH = 64 and chunks into groups
// of GROUP positions (64 today: one chunk per group, so a decode over a long context
// splits into as many workgroups as it has chunks; on the H200 a 512-position decode took
// ~100 µs with 256-position groups), both aligned to multiples of their size in absolute
// position (the first starts at `start`, the last ends at `pos`).
// - Within a group (`attend_group`, one workgroup of 64 invocations), an online softmax
//   from an empty state, chunk by chunk: invocation j scores position p0 + j (a sequential
//   fma dot product over D), the chunk max and the chunk's sum of exponentials meet in
//   fixed trees in workgroup memory, the group's max, sum and output (invocation j owns
//   dims j, j + 64, ...; up to D = 256) are rescaled once, and the chunk's V rows are
//   added in position order.
// - Group states are then merged in group order into a running state (`merge`: the
//   larger max, both sides rescaled, fma), and the output is the running sum of weighted
//   V divided by the running sum of weights.
// Two ways to run it, bit-identical by construction (same functions, explicit fma, no
// arithmetic that a compiler could contract differently):
// - `paged_attention`: one workgroup per (query head, token) walks all its groups;
// - the split path for few queries over long contexts, which would leave most of the
//   GPU idle: `attention_partial` runs one workgroup per (query head, token, group) and
//   stores each group's state (max, sum, bad flag, weighted V [D]) in `partials`, then
//   `attention_merge` (one workgroup per (query head, token)) merges them in group order.
// The grid of chunks and groups is fixed by position, never a fixed count of splits, so a
// query's output depends only on its own context: the same bits alone, in any batch,
// inside a prompt processed whole or in chunks, split or not.
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
    groups: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: AttentionParams;
@group(0) @binding(1) var<storage, read> q: array<f32>; // [T, Hq, D]
@group(0) @binding(2) var<storage, read> k_cache: array<KvWord>; // [blocks, Hk, bs, D / KV_PER_WORD]
@group(0) @binding(3) var<storage, read> v_cache: array<KvWord>; // [blocks, Hk, bs, D / KV_PER_WORD]
@group(0) @binding(4) var<storage, read> block_tables: array<u32>; // [S, max_blocks]
@group(0) @binding(5) var<storage, read> seq_lens: array<u32>; // [S]
@group(0) @binding(6) var<storage, read> query_start_loc: array<u32>; // [S + 1]
@group(0) @binding(7) var<storage, read_write> dst: array<f32>; // [T, Hq, D]
// Split path: per (token, head, group) max, sum, bad flag (0 or 1) and weighted V.
@group(0) @binding(8) var<storage, read_write> partials: array<f32>; // [T, Hq, groups, 3 + D]

const CH: u32 = 64u;
const GROUP: u32 = 64u; // positions per group: one chunk
const MAX_D: u32 = 256u;
const DPI: u32 = 4u; // dims per invocation: MAX_D / CH
const NEG_BIG: f32 = -3.0e38;

var<workgroup> q_sh: array<f32, 256>; // [D]
var<workgroup> p_sh: array<f32, 64>; // [CH] exponentials of the chunk
var<workgroup> rows_sh: array<u32, 64>; // [CH] cache offsets (elements) of the chunk's positions
var<workgroup> bad_sh: array<u32, 64>; // [CH] 1 where a block id was out of range

// `tree_max` and `tree_sum` (reduce.wgsl) over the chunk's CH lanes, one per position.
const REDUCE_LANES: u32 = CH;

// Where token t's query sits: its context is positions start..=pos of sequence `seq`.
struct Query {
    seq: u32,
    pos: u32,
    start: u32,
    kvh: u32,
}

fn locate(t: u32, h: u32) -> Query {
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
    let q0 = query_start_loc[lo];
    let q_len = query_start_loc[lo + 1u] - q0;
    let pos = seq_lens[lo] - q_len + (t - q0);
    var start = 0u;
    if params.window > 0u && pos + 1u > params.window {
        start = pos + 1u - params.window;
    }
    return Query(lo, pos, start, h / (params.hq / params.hk));
}

// The softmax state of a span of positions: max score, sum of exponentials relative to
// it, weighted V rows (this invocation's dims li + i * CH), and whether a block id was bad.
struct State {
    m: f32,
    l: f32,
    o: array<f32, 4>,
    bad: u32,
}

fn empty_state() -> State {
    return State(NEG_BIG, 0.0, array<f32, 4>(0.0, 0.0, 0.0, 0.0), 0u);
}

// Copies the query row into workgroup memory (the caller then waits at a barrier).
fn load_q(li: u32, t: u32, h: u32) {
    for (var d = li; d < params.head_dim; d += CH) {
        q_sh[d] = q[(t * params.hq + h) * params.head_dim + d];
    }
}

// One cache word of K in the q.k chain: its one (f32) or two (f16) dims from `d`, in order.
fn qk_word(acc: f32, d: u32, w: KvWord) -> f32 {
    let kk = kv_unpack(w);
    var a = fma(q_sh[d], kk.x, acc);
    if KV_PER_WORD == 2u {
        a = fma(q_sh[d + 1u], kk.y, a);
    }
    return a;
}

// Dim `d` of the V row of the chunk's position `j` (offsets published in rows_sh).
fn v_at(j: u32, d: u32) -> f32 {
    let at = rows_sh[j] + d;
    let vv = kv_unpack(v_cache[at / KV_PER_WORD]);
    return select(vv.x, vv.y, at % KV_PER_WORD == 1u);
}

// Online softmax over positions p_from..=p_to, which lie in one group, chunk by chunk.
fn attend_group(li: u32, qr: Query, p_from: u32, p_to: u32) -> State {
    let d_len = params.head_dim;
    let table = qr.seq * params.max_blocks;
    var st = empty_state();
    var p0 = p_from;
    while p0 <= p_to {
        let p1 = min((p0 / CH + 1u) * CH, p_to + 1u);
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
            let row = ((min(blk, params.num_blocks - 1u) * params.hk + qr.kvh) * params.block_size + p % params.block_size) * d_len;
            rows_sh[li] = row;
            // Eight cache words loaded ahead (independent loads in flight), then applied in
            // dim order: the same operation sequence as one word at a time.
            let wbase = row / KV_PER_WORD;
            let words = d_len / KV_PER_WORD;
            var acc = 0.0;
            var i = 0u;
            for (; i + 8u <= words; i += 8u) {
                let w0 = k_cache[wbase + i];
                let w1 = k_cache[wbase + i + 1u];
                let w2 = k_cache[wbase + i + 2u];
                let w3 = k_cache[wbase + i + 3u];
                let w4 = k_cache[wbase + i + 4u];
                let w5 = k_cache[wbase + i + 5u];
                let w6 = k_cache[wbase + i + 6u];
                let w7 = k_cache[wbase + i + 7u];
                let d = i * KV_PER_WORD;
                acc = qk_word(acc, d, w0);
                acc = qk_word(acc, d + KV_PER_WORD, w1);
                acc = qk_word(acc, d + 2u * KV_PER_WORD, w2);
                acc = qk_word(acc, d + 3u * KV_PER_WORD, w3);
                acc = qk_word(acc, d + 4u * KV_PER_WORD, w4);
                acc = qk_word(acc, d + 5u * KV_PER_WORD, w5);
                acc = qk_word(acc, d + 6u * KV_PER_WORD, w6);
                acc = qk_word(acc, d + 7u * KV_PER_WORD, w7);
            }
            for (; i < words; i++) {
                acc = qk_word(acc, i * KV_PER_WORD, k_cache[wbase + i]);
            }
            score = acc * params.scale;
        }
        let m_new = max(st.m, tree_max(li, score));
        let corr = exp(st.m - m_new);
        var e = 0.0;
        if li < n {
            e = exp(score - m_new);
        }
        p_sh[li] = e;
        let chunk_sum = tree_sum(li, e); // its barriers also publish p_sh, rows_sh, bad_sh
        st.l = fma(st.l, corr, chunk_sum);
        st.m = m_new;
        for (var i = 0u; i < DPI; i++) {
            let d = li + i * CH;
            if d < d_len {
                var acc = st.o[i] * corr;
                // As for K: eight values loaded ahead, then added in position order.
                var j = 0u;
                for (; j + 8u <= n; j += 8u) {
                    let v0 = v_at(j, d);
                    let v1 = v_at(j + 1u, d);
                    let v2 = v_at(j + 2u, d);
                    let v3 = v_at(j + 3u, d);
                    let v4 = v_at(j + 4u, d);
                    let v5 = v_at(j + 5u, d);
                    let v6 = v_at(j + 6u, d);
                    let v7 = v_at(j + 7u, d);
                    acc = fma(p_sh[j], v0, acc);
                    acc = fma(p_sh[j + 1u], v1, acc);
                    acc = fma(p_sh[j + 2u], v2, acc);
                    acc = fma(p_sh[j + 3u], v3, acc);
                    acc = fma(p_sh[j + 4u], v4, acc);
                    acc = fma(p_sh[j + 5u], v5, acc);
                    acc = fma(p_sh[j + 6u], v6, acc);
                    acc = fma(p_sh[j + 7u], v7, acc);
                }
                for (; j < n; j++) {
                    acc = fma(p_sh[j], v_at(j, d), acc);
                }
                st.o[i] = acc;
            }
        }
        for (var j = 0u; j < n; j++) {
            st.bad = st.bad | bad_sh[j];
        }
        workgroupBarrier();
        p0 = p1;
    }
    return st;
}

// The running state followed by group state g (the canonical merge step).
fn merge(run: State, g: State) -> State {
    let m = max(run.m, g.m);
    let a = exp(run.m - m);
    let b = exp(g.m - m);
    var r: State;
    r.m = m;
    r.l = fma(g.l, b, run.l * a);
    for (var i = 0u; i < DPI; i++) {
        r.o[i] = fma(g.o[i], b, run.o[i] * a);
    }
    r.bad = run.bad | g.bad;
    return r;
}

// The output row of (t, h): weighted V over the sum of weights, NaN if a block was bad.
fn write_out(li: u32, t: u32, h: u32, st: State) {
    let inv = 1.0 / st.l;
    for (var i = 0u; i < DPI; i++) {
        let d = li + i * CH;
        if d < params.head_dim {
            var v = st.o[i] * inv;
            if st.bad != 0u {
                v = bitcast<f32>(0x7fc00000u);
            }
            dst[(t * params.hq + h) * params.head_dim + d] = v;
        }
    }
}

// Single pass: one workgroup of CH invocations per (query head, token): dispatch (Hq, T).
@compute @workgroup_size(64)
fn paged_attention(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let h = wg.x;
    let t = wg.y;
    let qr = locate(t, h);
    load_q(li, t, h);
    workgroupBarrier();
    var run = empty_state();
    for (var g = qr.start / GROUP; g <= qr.pos / GROUP; g++) {
        let p_from = max(qr.start, g * GROUP);
        let p_to = min(qr.pos, g * GROUP + GROUP - 1u);
        run = merge(run, attend_group(li, qr, p_from, p_to));
    }
    write_out(li, t, h, run);
}

// Split path, phase 1: the state of group start / GROUP + z of (query head h, token t);
// dispatch (Hq, T, groups). Workgroups past the query's last group exit at once.
@compute @workgroup_size(64)
fn attention_partial(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let h = wg.x;
    let t = wg.y;
    let qr = locate(t, h);
    let g = qr.start / GROUP + wg.z;
    if g > qr.pos / GROUP {
        return;
    }
    load_q(li, t, h);
    workgroupBarrier();
    let p_from = max(qr.start, g * GROUP);
    let p_to = min(qr.pos, g * GROUP + GROUP - 1u);
    let st = attend_group(li, qr, p_from, p_to);
    let base = ((t * params.hq + h) * params.groups + wg.z) * (3u + params.head_dim);
    if li == 0u {
        partials[base] = st.m;
        partials[base + 1u] = st.l;
        partials[base + 2u] = f32(st.bad);
    }
    for (var i = 0u; i < DPI; i++) {
        let d = li + i * CH;
        if d < params.head_dim {
            partials[base + 3u + d] = st.o[i];
        }
    }
}

// Split path, phase 2: merges the group states of (query head, token) in group order;
// dispatch (Hq, T). More groups than `params.groups` (a seq_len above the host's
// max_seq_len) give NaN rather than reads of states never written.
@compute @workgroup_size(64)
fn attention_merge(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let h = wg.x;
    let t = wg.y;
    let qr = locate(t, h);
    let n = qr.pos / GROUP - qr.start / GROUP + 1u;
    var run = empty_state();
    if n > params.groups {
        run.bad = 1u;
    } else {
        for (var z = 0u; z < n; z++) {
            let base = ((t * params.hq + h) * params.groups + z) * (3u + params.head_dim);
            var g: State;
            g.m = partials[base];
            g.l = partials[base + 1u];
            g.bad = select(0u, 1u, partials[base + 2u] != 0.0);
            for (var i = 0u; i < DPI; i++) {
                let d = li + i * CH;
                g.o[i] = 0.0;
                if d < params.head_dim {
                    g.o[i] = partials[base + 3u + d];
                }
            }
            run = merge(run, g);
        }
    }
    write_out(li, t, h, run);
}
