//! Shape and dtype preconditions of every verb, shared by all backends so that each verb
//! has exactly one definition of what it accepts. Each check panics with the caller's
//! location (`#[track_caller]`): a violation is a bug in model or runner code.

use crate::moe::MoeRouting;
use crate::{
    AttentionMeta, AttentionParams, Backend, DType, MoeExperts, MoeRoutes, MoeShared, QkvHeads,
    Shape, Tensor,
};

#[track_caller]
fn rank<B: Backend + ?Sized>(what: &str, t: &Tensor<B>, r: usize) {
    assert_eq!(
        t.shape().rank(),
        r,
        "{what}: expected rank {r}, got {}",
        t.shape()
    );
}

#[track_caller]
fn dtype<B: Backend + ?Sized>(what: &str, t: &Tensor<B>, d: DType) {
    assert_eq!(t.dtype(), d, "{what}: expected {d}, got {}", t.dtype());
}

#[track_caller]
fn float<B: Backend + ?Sized>(what: &str, t: &Tensor<B>) {
    assert!(
        t.dtype().is_float(),
        "{what}: expected a float tensor, got {}",
        t.dtype()
    );
}

/// A weight matrix: a plain float or a GGUF block format whose blocks tile each row.
#[track_caller]
fn weight<B: Backend + ?Sized>(what: &str, t: &Tensor<B>) {
    let d = t.dtype();
    assert!(
        d.is_float() || d.is_quantized(),
        "{what}: expected a float or block-format weight, got {d}"
    );
    assert!(
        t.dims()[1].is_multiple_of(d.block_size()),
        "{what}: rows of {} elements are not whole {d} blocks of {}",
        t.dims()[1],
        d.block_size()
    );
}

#[track_caller]
pub fn embedding<B: Backend + ?Sized>(table: &Tensor<B>, ids: &Tensor<B>) {
    rank("embedding table", table, 2);
    weight("embedding table", table);
    rank("embedding ids", ids, 1);
    dtype("embedding ids", ids, DType::U32);
}

#[track_caller]
pub fn rms_norm<B: Backend + ?Sized>(x: &Tensor<B>, residual: Option<&Tensor<B>>, w: &Tensor<B>) {
    rank("rms_norm x", x, 2);
    float("rms_norm x", x);
    rank("rms_norm weight", w, 1);
    assert_eq!(
        w.dims()[0],
        x.dims()[1],
        "rms_norm: weight {} vs x {}",
        w.shape(),
        x.shape()
    );
    if let Some(r) = residual {
        assert_eq!(
            r.shape(),
            x.shape(),
            "rms_norm: residual {} vs x {}",
            r.shape(),
            x.shape()
        );
        assert_eq!(
            r.dtype(),
            x.dtype(),
            "rms_norm: residual dtype differs from x"
        );
    }
}

#[track_caller]
pub fn matmul<B: Backend + ?Sized>(x: &Tensor<B>, w: &Tensor<B>, bias: Option<&Tensor<B>>) {
    rank("matmul x", x, 2);
    float("matmul x", x);
    rank("matmul w", w, 2);
    weight("matmul w", w);
    assert_eq!(
        x.dims()[1],
        w.dims()[1],
        "matmul: x {} vs w {} (W is [N, K])",
        x.shape(),
        w.shape()
    );
    if let Some(b) = bias {
        rank("matmul bias", b, 1);
        assert_eq!(
            b.dims()[0],
            w.dims()[0],
            "matmul: bias {} vs w {}",
            b.shape(),
            w.shape()
        );
    }
}

/// `matmul_add`: a matmul whose output shape is the residual's, f32 like every activation.
#[track_caller]
pub fn matmul_add<B: Backend + ?Sized>(
    x: &Tensor<B>,
    w: &Tensor<B>,
    bias: Option<&Tensor<B>>,
    residual: &Tensor<B>,
) {
    matmul(x, w, bias);
    assert_eq!(
        residual.dims(),
        [x.dims()[0], w.dims()[0]],
        "matmul_add: residual {} for x {} and w {}",
        residual.shape(),
        x.shape(),
        w.shape()
    );
    dtype("matmul_add residual", residual, DType::F32);
}

/// `matmul_silu_mul`: a matmul of stacked [gate | up] rows, so W has an even row count.
#[track_caller]
pub fn matmul_silu_mul<B: Backend + ?Sized>(x: &Tensor<B>, w: &Tensor<B>) {
    matmul(x, w, None);
    assert!(
        w.dims()[0].is_multiple_of(2),
        "matmul_silu_mul: w {} has an odd number of rows (expected [gate | up])",
        w.shape()
    );
}

/// `rope_kv_write`: `qkv` [T, (Hq + 2 Hk) D], then what rope and kv_write ask of the parts.
#[track_caller]
pub fn rope_kv_write<B: Backend + ?Sized>(
    qkv: &Tensor<B>,
    heads: &QkvHeads,
    positions: &Tensor<B>,
    inv_freq: &Tensor<B>,
    k_cache: &Tensor<B>,
    v_cache: &Tensor<B>,
    slot_mapping: &Tensor<B>,
) {
    rank("rope_kv_write qkv", qkv, 2);
    dtype("rope_kv_write qkv", qkv, DType::F32);
    let (hq, hk, d) = (heads.num_heads, heads.num_kv_heads, heads.head_dim);
    assert_eq!(
        qkv.dims()[1],
        heads.row(),
        "rope_kv_write: qkv {} is not [T, ({hq} + 2 x {hk}) x {d}]",
        qkv.shape()
    );
    assert!(
        hk > 0 && hq.is_multiple_of(hk),
        "rope_kv_write: {hq} query heads not a multiple of {hk} KV heads"
    );
    let t = qkv.dims()[0];
    rank("rope_kv_write positions", positions, 1);
    dtype("rope_kv_write positions", positions, DType::U32);
    assert_eq!(
        positions.dims()[0],
        t,
        "rope_kv_write: positions {} vs qkv {}",
        positions.shape(),
        qkv.shape()
    );
    rank("rope_kv_write inv_freq", inv_freq, 1);
    dtype("rope_kv_write inv_freq", inv_freq, DType::F32);
    assert!(
        2 * inv_freq.dims()[0] <= d,
        "rope_kv_write: inv_freq {} too long for head dim {d}",
        inv_freq.shape()
    );
    rank("rope_kv_write k_cache", k_cache, 4);
    assert_eq!(
        k_cache.shape(),
        v_cache.shape(),
        "rope_kv_write: k_cache vs v_cache shapes"
    );
    kv_cache_dtypes("rope_kv_write", k_cache, v_cache);
    assert_eq!(
        (k_cache.dims()[1], k_cache.dims()[3]),
        (hk, d),
        "rope_kv_write: cache {} vs {hk} KV heads of {d}",
        k_cache.shape()
    );
    rank("rope_kv_write slot_mapping", slot_mapping, 1);
    dtype("rope_kv_write slot_mapping", slot_mapping, DType::U32);
    assert_eq!(
        slot_mapping.dims()[0],
        t,
        "rope_kv_write: slot_mapping vs qkv tokens"
    );
}

#[track_caller]
pub fn rope<B: Backend + ?Sized>(
    q: &Tensor<B>,
    k: &Tensor<B>,
    positions: &Tensor<B>,
    inv_freq: &Tensor<B>,
) {
    rank("rope q", q, 3);
    rank("rope k", k, 3);
    float("rope q", q);
    float("rope k", k);
    rank("rope positions", positions, 1);
    dtype("rope positions", positions, DType::U32);
    rank("rope inv_freq", inv_freq, 1);
    dtype("rope inv_freq", inv_freq, DType::F32);
    let (t, d) = (q.dims()[0], q.dims()[2]);
    assert_eq!(k.dims()[0], t, "rope: q {} vs k {}", q.shape(), k.shape());
    assert_eq!(k.dims()[2], d, "rope: q {} vs k {}", q.shape(), k.shape());
    assert_eq!(
        positions.dims()[0],
        t,
        "rope: positions {} vs q {}",
        positions.shape(),
        q.shape()
    );
    assert!(
        2 * inv_freq.dims()[0] <= d,
        "rope: inv_freq {} too long for head dim {d}",
        inv_freq.shape()
    );
}

/// The dtypes a paged KV cache may have: f32, or f16 (K/V rounded to nearest even when
/// written, widened exactly when read; the attention math stays f32).
pub const KV_CACHE_DTYPES: [DType; 2] = [DType::F32, DType::F16];

/// Both caches have the same dtype, one of [`KV_CACHE_DTYPES`].
#[track_caller]
fn kv_cache_dtypes<B: Backend + ?Sized>(verb: &str, k_cache: &Tensor<B>, v_cache: &Tensor<B>) {
    assert!(
        KV_CACHE_DTYPES.contains(&k_cache.dtype()),
        "{verb}: KV cache dtype {} (expected f32 or f16)",
        k_cache.dtype()
    );
    assert_eq!(
        k_cache.dtype(),
        v_cache.dtype(),
        "{verb}: k_cache is {} but v_cache is {}",
        k_cache.dtype(),
        v_cache.dtype()
    );
}

#[track_caller]
pub fn kv_write<B: Backend + ?Sized>(
    k: &Tensor<B>,
    v: &Tensor<B>,
    k_cache: &Tensor<B>,
    v_cache: &Tensor<B>,
    slot_mapping: &Tensor<B>,
) {
    rank("kv_write k", k, 3);
    assert_eq!(
        k.shape(),
        v.shape(),
        "kv_write: k {} vs v {}",
        k.shape(),
        v.shape()
    );
    rank("kv_write k_cache", k_cache, 4);
    assert_eq!(
        k_cache.shape(),
        v_cache.shape(),
        "kv_write: k_cache vs v_cache shapes"
    );
    kv_cache_dtypes("kv_write", k_cache, v_cache);
    let (hk, d) = (k.dims()[1], k.dims()[2]);
    assert_eq!(
        k_cache.dims()[1],
        hk,
        "kv_write: cache {} vs k {}",
        k_cache.shape(),
        k.shape()
    );
    assert_eq!(
        k_cache.dims()[3],
        d,
        "kv_write: cache {} vs k {}",
        k_cache.shape(),
        k.shape()
    );
    rank("kv_write slot_mapping", slot_mapping, 1);
    dtype("kv_write slot_mapping", slot_mapping, DType::U32);
    assert_eq!(
        slot_mapping.dims()[0],
        k.dims()[0],
        "kv_write: slot_mapping vs k tokens"
    );
}

#[track_caller]
pub fn paged_attention<B: Backend + ?Sized>(
    q: &Tensor<B>,
    k_cache: &Tensor<B>,
    v_cache: &Tensor<B>,
    meta: &AttentionMeta<'_, B>,
    params: &AttentionParams,
) {
    assert!(
        params.sliding_window != Some(0),
        "paged_attention: sliding window of 0 positions"
    );
    rank("paged_attention q", q, 3);
    float("paged_attention q", q);
    rank("paged_attention k_cache", k_cache, 4);
    assert_eq!(
        k_cache.shape(),
        v_cache.shape(),
        "paged_attention: k_cache vs v_cache"
    );
    kv_cache_dtypes("paged_attention", k_cache, v_cache);
    let (hq, d) = (q.dims()[1], q.dims()[2]);
    let hk = k_cache.dims()[1];
    assert_eq!(
        k_cache.dims()[3],
        d,
        "paged_attention: cache {} vs q {}",
        k_cache.shape(),
        q.shape()
    );
    assert!(
        hk > 0 && hq % hk == 0,
        "paged_attention: {hq} query heads not a multiple of {hk} KV heads"
    );
    rank("block_tables", meta.block_tables, 2);
    dtype("block_tables", meta.block_tables, DType::U32);
    rank("seq_lens", meta.seq_lens, 1);
    dtype("seq_lens", meta.seq_lens, DType::U32);
    rank("query_start_loc", meta.query_start_loc, 1);
    dtype("query_start_loc", meta.query_start_loc, DType::U32);
    let s = meta.seq_lens.dims()[0];
    assert_eq!(
        meta.block_tables.dims()[0],
        s,
        "paged_attention: block_tables rows vs seq_lens"
    );
    assert_eq!(
        meta.query_start_loc.dims()[0],
        s + 1,
        "paged_attention: query_start_loc must be [S + 1]"
    );
    let block_size = k_cache.dims()[2];
    assert!(
        meta.max_seq_len <= meta.block_tables.dims()[1] * block_size,
        "paged_attention: max_seq_len {} exceeds block table capacity",
        meta.max_seq_len
    );
}

#[track_caller]
pub fn silu_mul<B: Backend + ?Sized>(x: &Tensor<B>) {
    rank("silu_mul x", x, 2);
    float("silu_mul x", x);
    assert!(
        x.dims()[1].is_multiple_of(2),
        "silu_mul: last dim {} is odd",
        x.dims()[1]
    );
}

/// The gated activations other than SiLU (`gelu_tanh_mul`): same shapes as [`silu_mul`].
#[track_caller]
pub fn gated<B: Backend + ?Sized>(op: &str, x: &Tensor<B>) {
    rank(&format!("{op} x"), x, 2);
    float(&format!("{op} x"), x);
    assert!(
        x.dims()[1].is_multiple_of(2),
        "{op}: last dim {} is odd",
        x.dims()[1]
    );
}

#[track_caller]
pub fn scale<B: Backend + ?Sized>(x: &Tensor<B>) {
    float("scale x", x);
}

#[track_caller]
pub fn gather_rows<B: Backend + ?Sized>(x: &Tensor<B>, idx: &Tensor<B>) {
    rank("gather_rows x", x, 2);
    rank("gather_rows idx", idx, 1);
    dtype("gather_rows idx", idx, DType::U32);
}

#[track_caller]
pub fn add<B: Backend + ?Sized>(a: &Tensor<B>, b: &Tensor<B>) {
    assert_eq!(a.shape(), b.shape(), "add: {} vs {}", a.shape(), b.shape());
    assert_eq!(a.dtype(), b.dtype(), "add: {} vs {}", a.dtype(), b.dtype());
}

#[track_caller]
pub fn argmax<B: Backend + ?Sized>(logits: &Tensor<B>) {
    rank("argmax logits", logits, 2);
    float("argmax logits", logits);
    assert!(
        logits.dims()[1] > 0,
        "argmax: logits {} have no columns",
        logits.shape()
    );
}

#[track_caller]
pub fn sample<B: Backend + ?Sized>(logits: &Tensor<B>, params: &Tensor<B>) {
    argmax(logits);
    rank("sample params", params, 2);
    dtype("sample params", params, DType::U32);
    assert_eq!(
        params.dims(),
        [logits.dims()[0], crate::sampling::SAMPLE_PARAM_WORDS],
        "sample: params {} for logits {}",
        params.shape(),
        logits.shape()
    );
}

#[track_caller]
pub fn top_logprobs<B: Backend + ?Sized>(logits: &Tensor<B>, tokens: &Tensor<B>, k: usize) {
    argmax(logits);
    rank("top_logprobs tokens", tokens, 1);
    dtype("top_logprobs tokens", tokens, DType::U32);
    assert_eq!(
        tokens.dims()[0],
        logits.dims()[0],
        "top_logprobs: tokens {} for logits {}",
        tokens.shape(),
        logits.shape()
    );
    assert!(
        k <= logits.dims()[1],
        "top_logprobs: k = {k} exceeds the vocabulary of logits {}",
        logits.shape()
    );
}

/// `moe_route`: logits [T, E] f32 and 1 <= top_k <= E.
#[track_caller]
pub fn moe_route<B: Backend + ?Sized>(logits: &Tensor<B>, routing: &MoeRouting) {
    rank("moe_route logits", logits, 2);
    float("moe_route logits", logits);
    let e = logits.dims()[1];
    assert!(
        routing.top_k >= 1 && routing.top_k <= e,
        "moe_route: top_k = {} for {e} experts",
        routing.top_k
    );
}

/// A stack of expert matrices [E, N, K]: float, or a block format whose blocks tile each row.
#[track_caller]
fn expert_weight<B: Backend + ?Sized>(what: &str, t: &Tensor<B>) {
    rank(what, t, 3);
    let d = t.dtype();
    assert!(
        d.is_float() || d.is_quantized(),
        "{what}: expected a float or block-format weight, got {d}"
    );
    assert!(
        t.dims()[2].is_multiple_of(d.block_size()),
        "{what}: rows of {} elements are not whole {d} blocks of {}",
        t.dims()[2],
        d.block_size()
    );
}

/// `moe_experts_add`: x [T, H], routes [T, k], gate_up [E, 2I, H], down [E, H, I], shared
/// out [T, H] and gate [T, 1], residual [T, H] f32.
#[track_caller]
pub fn moe_experts_add<B: Backend + ?Sized>(
    x: &Tensor<B>,
    routes: &MoeRoutes<B>,
    experts: &MoeExperts<'_, B>,
    shared: Option<&MoeShared<'_, B>>,
    residual: &Tensor<B>,
) {
    rank("moe_experts_add x", x, 2);
    float("moe_experts_add x", x);
    let (t, h) = (x.dims()[0], x.dims()[1]);
    rank("moe_experts_add ids", &routes.ids, 2);
    dtype("moe_experts_add ids", &routes.ids, DType::U32);
    dtype("moe_experts_add weights", &routes.weights, DType::F32);
    assert_eq!(
        routes.ids.dims()[0],
        t,
        "moe_experts_add: ids {} for x {}",
        routes.ids.shape(),
        x.shape()
    );
    assert_eq!(
        routes.weights.shape(),
        routes.ids.shape(),
        "moe_experts_add: weights {} vs ids {}",
        routes.weights.shape(),
        routes.ids.shape()
    );
    expert_weight("moe_experts_add gate_up", experts.gate_up);
    expert_weight("moe_experts_add down", experts.down);
    let (e, two_i, k_gu) = (
        experts.gate_up.dims()[0],
        experts.gate_up.dims()[1],
        experts.gate_up.dims()[2],
    );
    assert!(
        k_gu == h && two_i.is_multiple_of(2),
        "moe_experts_add: gate_up {} is not [E, 2I, {h}]",
        experts.gate_up.shape()
    );
    assert_eq!(
        experts.down.dims(),
        [e, h, two_i / 2],
        "moe_experts_add: down {} for gate_up {}",
        experts.down.shape(),
        experts.gate_up.shape()
    );
    if let Some(s) = shared {
        assert_eq!(
            s.out.dims(),
            [t, h],
            "moe_experts_add: shared output {} for x {}",
            s.out.shape(),
            x.shape()
        );
        dtype("moe_experts_add shared output", s.out, DType::F32);
        if let Some(g) = s.gate {
            assert_eq!(
                g.dims(),
                [t, 1],
                "moe_experts_add: shared gate {} for x {}",
                g.shape(),
                x.shape()
            );
            dtype("moe_experts_add shared gate", g, DType::F32);
        }
    }
    assert_eq!(
        residual.dims(),
        [t, h],
        "moe_experts_add: residual {} for x {}",
        residual.shape(),
        x.shape()
    );
    dtype("moe_experts_add residual", residual, DType::F32);
}

#[track_caller]
pub fn mask_logits<B: Backend + ?Sized>(logits: &Tensor<B>, mask: &Tensor<B>) {
    rank("mask_logits logits", logits, 2);
    float("mask_logits logits", logits);
    rank("mask_logits mask", mask, 2);
    dtype("mask_logits mask", mask, DType::U32);
    let (r, v) = (logits.dims()[0], logits.dims()[1]);
    assert_eq!(
        mask.dims(),
        [r, crate::sampling::mask_words(v)],
        "mask_logits: mask {} for logits {}",
        mask.shape(),
        logits.shape()
    );
}

/// Host data handed to `from_f32`/`from_u32` must fill `shape` exactly.
#[track_caller]
pub fn upload(verb: &str, len: usize, shape: &Shape) {
    assert_eq!(len, shape.numel(), "{verb}: {len} values for shape {shape}");
}

/// `from_blocks`: a block format, a matrix (or a stack of matrices, [E, N, K]) of whole
/// blocks per row, and exactly its bytes.
#[track_caller]
pub fn from_blocks(len: usize, shape: &Shape, dtype: DType) {
    assert!(
        dtype.is_quantized(),
        "from_blocks: {dtype} is not a block format (use from_f32)"
    );
    assert!(
        matches!(shape.rank(), 2 | 3),
        "from_blocks: expected a matrix or a stack of matrices, got {shape}"
    );
    let k = shape.dims()[shape.rank() - 1];
    assert!(
        k.is_multiple_of(dtype.block_size()),
        "from_blocks: rows of {k} elements are not whole {dtype} blocks of {}",
        dtype.block_size()
    );
    assert_eq!(
        dtype.storage_bytes(shape.numel()),
        Some(len),
        "from_blocks: {len} bytes for {shape} of {dtype}"
    );
}

#[track_caller]
pub fn to_f32<B: Backend + ?Sized>(t: &Tensor<B>) {
    assert!(
        t.dtype().is_float(),
        "to_f32: {t:?} is not a float tensor (use to_u32)"
    );
}

#[track_caller]
pub fn to_u32<B: Backend + ?Sized>(t: &Tensor<B>) {
    dtype("to_u32", t, DType::U32);
}
