// sample: one token per row of logits [rows, vocab] f32 by temperature, top-k, top-p and
// min-p, with per-row params [rows, 8] u32 (temperature bits, top_k, top_p bits, min_p bits,
// seed lo, seed hi, counter, pad) -> [rows] u32. The definition is the doc of
// `Backend::sample`; the CPU backend's `sample.rs` runs the same steps on the host.
//
// One 256-invocation workgroup per row. Filters are thresholds on order keys (as in
// argmax.wgsl: NaN lowest, -0 == +0), found by 32-step bisections on the u32 key: top-k
// counts keys >= mid (an exact integer reduction), top-p sums unnormalised probabilities
// exp(s - max) of keys >= mid in one fixed order (invocation li adds columns li, li + 256,
// ... in turn, then a binary tree), the order the CPU reproduces. The token is the
// Gumbel-max of the kept tokens, with noise hashed from (seed, counter, column): no state,
// so a row's token depends only on its logits and params.

struct SampleParams {
    rows: u32,
    vocab: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: SampleParams;
@group(0) @binding(1) var<storage, read> logits: array<u32>; // [rows, vocab] f32 bits
@group(0) @binding(2) var<storage, read> row_params: array<u32>; // [rows, 8]
@group(0) @binding(3) var<storage, read_write> dst: array<u32>; // [rows]

var<workgroup> red_key: array<u32, 256>;
var<workgroup> row_prm: array<u32, 8>;
var<workgroup> wg_flag: u32;

// "lowbias32" (C. Wellons' hash-prospector constants).
fn mix(x0: u32) -> u32 {
    var x = x0;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

fn uniform01(seed_lo: u32, seed_hi: u32, counter: u32, index: u32) -> f32 {
    let h = mix(mix(mix(mix(index ^ 0x9e3779b9u) ^ counter) ^ seed_hi) ^ seed_lo);
    return (f32(h >> 9u) + 0.5) * (1.0 / 8388608.0);
}

fn is_nan_bits(bits: u32) -> bool {
    return (bits & 0x7fffffffu) > 0x7f800000u;
}

// The scaled value of column c (greedy rows: the raw value).
fn scaled(base: u32, c: u32, temperature: f32, greedy: bool) -> f32 {
    let x = bitcast<f32>(logits[base + c]);
    if greedy {
        return x;
    }
    return x / temperature;
}

// exp(s - m), 0 for NaN.
fn prob(s: f32, m: f32) -> f32 {
    if is_nan_bits(bitcast<u32>(s)) {
        return 0.0;
    }
    return exp(s - m);
}

// `tree_sum` (reduce.wgsl) over the 256 invocations.
const REDUCE_LANES: u32 = 256u;

fn tree_count(li: u32, v: u32) -> u32 {
    red_key[li] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if li < s {
            red_key[li] = red_key[li] + red_key[li + s];
        }
        workgroupBarrier();
    }
    let total = red_key[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn sample(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row = wg.y * nwg.x + wg.x;
    if row >= params.rows {
        return;
    }
    let vocab = params.vocab;
    let base = row * vocab;
    if li < 8u {
        row_prm[li] = row_params[row * 8u + li];
    }
    let temperature = bitcast<f32>(workgroupUniformLoad(&row_prm[0]));
    let top_k = workgroupUniformLoad(&row_prm[1]);
    let top_p = bitcast<f32>(workgroupUniformLoad(&row_prm[2]));
    let min_p = min(bitcast<f32>(workgroupUniformLoad(&row_prm[3])), 1.0);
    let seed_lo = workgroupUniformLoad(&row_prm[4]);
    let seed_hi = workgroupUniformLoad(&row_prm[5]);
    let counter = workgroupUniformLoad(&row_prm[6]);
    let greedy = !(temperature > 0.0);

    // Step 2: the largest key and its first column.
    var bk = 0u;
    var bi = 0xffffffffu;
    for (var c = li; c < vocab; c += 256u) {
        let k = order_key(bitcast<u32>(scaled(base, c, temperature, greedy)));
        if beats(k, c, bk, bi) {
            bk = k;
            bi = c;
        }
    }
    let best = tree_best(li, bk, bi).y;
    let m = scaled(base, best, temperature, greedy);
    // Every invocation sees the same m; the flag makes the branch uniform for naga.
    if li == 0u {
        wg_flag = select(0u, 1u, greedy || (bitcast<u32>(m) & 0x7f800000u) == 0x7f800000u);
    }
    if workgroupUniformLoad(&wg_flag) != 0u {
        if li == 0u {
            dst[row] = best;
        }
        return;
    }

    // Step 4: top-k threshold.
    var t_k = 0u;
    if top_k > 0u && top_k < vocab {
        var lo = 0u;
        var hi = 0xffffffffu;
        for (var step = 0u; step < 32u; step++) {
            let mid = lo + (hi - lo) / 2u;
            var n = 0u;
            for (var c = li; c < vocab; c += 256u) {
                let k = order_key(bitcast<u32>(scaled(base, c, temperature, false)));
                n += select(0u, 1u, k >= mid);
            }
            let total = tree_count(li, n);
            if total >= top_k {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        t_k = lo;
    }

    // Step 5: top-p threshold.
    var t_p = 0u;
    if top_p > 0.0 && top_p < 1.0 {
        var z = 0.0;
        for (var c = li; c < vocab; c += 256u) {
            let s = scaled(base, c, temperature, false);
            if order_key(bitcast<u32>(s)) >= t_k {
                z += prob(s, m);
            }
        }
        let need = top_p * tree_sum(li, z);
        var lo = 0u;
        var hi = 0xffffffffu;
        for (var step = 0u; step < 32u; step++) {
            let mid = lo + (hi - lo) / 2u;
            let t = max(mid, t_k);
            var acc = 0.0;
            for (var c = li; c < vocab; c += 256u) {
                let s = scaled(base, c, temperature, false);
                if order_key(bitcast<u32>(s)) >= t {
                    acc += prob(s, m);
                }
            }
            let mass = tree_sum(li, acc);
            if mass >= need {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        t_p = lo;
    }

    // Steps 6-7: Gumbel-max over what stays.
    let t = max(t_k, t_p);
    bk = 0u;
    bi = 0xffffffffu;
    for (var c = li; c < vocab; c += 256u) {
        let s = scaled(base, c, temperature, false);
        let p = prob(s, m);
        let keep = order_key(bitcast<u32>(s)) >= t && p > 0.0 && (min_p <= 0.0 || p >= min_p);
        if keep {
            let u = uniform01(seed_lo, seed_hi, counter, c);
            let g = -log(-log(u));
            let k = order_key(bitcast<u32>(s + g));
            if beats(k, c, bk, bi) {
                bk = k;
                bi = c;
            }
        }
    }
    let drawn = tree_best(li, bk, bi).y;
    if li == 0u {
        dst[row] = drawn;
    }
}
