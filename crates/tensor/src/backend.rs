//! The `Backend` trait: the small set of verbs (DESIGN.md §5) that model code calls.
//!
//! Verbs return new tensors, except where the point of the verb is to update state in place
//! (rope, kv_write, the residual of rms_norm). A backend is free to pool the allocations
//! behind returned tensors. Every verb checks its preconditions with [`crate::check`] first.
//!
//! Paged KV cache: per layer, K and V caches are `[num_blocks, num_kv_heads, block_size,
//! head_dim]`. Token `t` of a step is written to slot `slot_mapping[t]` =
//! `block_id * block_size + offset`. Sequence `s` reads its context through
//! `block_tables[s]`; its queries are the last `q_len = query_start_loc[s+1] -
//! query_start_loc[s]` tokens of its `seq_lens[s]` tokens, so query `i` sits at position
//! `seq_lens[s] - q_len + i` and attends causally to positions `0..=` that.

use crate::{DType, Shape, Tensor};

/// An error raised by a backend while executing a verb: a device failure, never a shape
/// mistake (those are asserted in [`crate::check`]).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("out of device memory allocating {bytes} bytes")]
    OutOfMemory { bytes: usize },
    #[error("device error: {0}")]
    Device(String),
    #[error("{op} is not supported for {dtype} on the {backend} backend")]
    Unsupported {
        op: Op,
        dtype: DType,
        backend: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// The verbs, named for `Backend::supports` and error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Embedding,
    RmsNorm,
    Matmul,
    Rope,
    KvWrite,
    PagedAttention,
    SiluMul,
    GatherRows,
    Add,
    Argmax,
    Sample,
    TopLogprobs,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Which pairs of a head's dimensions rotary embedding rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Rotate-half (GPT-NeoX, HF Llama): pairs `(i, i + rot_dim/2)`.
    Neox,
    /// Interleaved (GPT-J, original Llama / GGUF layout): pairs `(2i, 2i + 1)`.
    Interleaved,
}

/// Per-step metadata describing how the flat token batch maps onto sequences and blocks.
pub struct AttentionMeta<'a, B: Backend + ?Sized> {
    pub block_tables: &'a Tensor<B>,    // [S, max_blocks] u32
    pub seq_lens: &'a Tensor<B>,        // [S] u32: context length including this step
    pub query_start_loc: &'a Tensor<B>, // [S + 1] u32: prefix sums of per-sequence query counts
    /// Host copy of the largest `seq_lens` entry, for launch sizing.
    pub max_seq_len: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct AttentionParams {
    /// Multiplier of q·k, usually `1 / sqrt(head_dim)`.
    pub scale: f32,
    /// Attend only to the last `w` positions (inclusive of the query's own), when set.
    pub sliding_window: Option<usize>,
}

/// The definition of the `argmax` verb on one row, shared by the CPU backend and the
/// runner's sampler so both pick the same token: the index of the largest value, the first
/// one among equal maxima, compared with IEEE `>` (so `-0.0` and `+0.0` tie). A NaN never
/// replaces the running best, so NaNs after index 0 are ignored; if `row[0]` is NaN nothing
/// can replace it and the answer is 0. A row of all `-inf` (or all NaN), or an empty row,
/// gives 0. Equivalently: 0 when `row[0]` is NaN, else the first index of the maximum over
/// the non-NaN values.
pub fn argmax_row(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best as u32
}

/// The ranking of log-probability lists, shared by the runner's host sampler (its top-k
/// candidates and `logprobs`) and every backend's [`Backend::top_logprobs`]: descending by
/// value under IEEE `totalOrder` ([`f32::total_cmp`]: `-NaN < -inf < .. < -0 < +0 < .. <
/// +inf < +NaN`), equal values by ascending index. A total order on `(index, value)`, so a
/// top-k list is reproducible whatever the sort. GPU code compares the u32 key
/// [`rank_key`], which orders values exactly as `total_cmp` does.
pub fn rank_cmp(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// An unsigned key ordered as [`f32::total_cmp`] orders the values (negative values have
/// all bits flipped, non-negative ones the sign bit set): the integer form of [`rank_cmp`].
pub fn rank_key(x: f32) -> u32 {
    let bits = x.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// Words per row of [`Backend::top_logprobs`]'s output for `k` top tokens.
pub fn top_logprobs_width(k: usize) -> usize {
    2 * (1 + k)
}

/// The "lowbias32" 32-bit integer hash (C. Wellons' hash-prospector constants), the mixing
/// step of [`Backend::sample`]'s counter-based noise.
pub fn sample_hash(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The uniform number in (0, 1) of [`Backend::sample`] for token `index` of a row whose
/// params hold `seed` (lo, hi) and `counter`: 23 hashed bits, offset by half a step.
pub fn sample_uniform(seed_lo: u32, seed_hi: u32, counter: u32, index: u32) -> f32 {
    let h = sample_hash(
        sample_hash(sample_hash(sample_hash(index ^ 0x9e37_79b9) ^ counter) ^ seed_hi) ^ seed_lo,
    );
    ((h >> 9) as f32 + 0.5) * (1.0 / 8_388_608.0)
}

/// Words per row of [`Backend::sample`]'s params.
pub const SAMPLE_PARAM_WORDS: usize = 8;

/// One row of [`Backend::sample`]'s params.
pub fn sample_params(
    temperature: f32,
    top_k: u32,
    top_p: f32,
    min_p: f32,
    seed: u64,
    counter: u32,
) -> [u32; SAMPLE_PARAM_WORDS] {
    [
        temperature.to_bits(),
        top_k,
        top_p.to_bits(),
        min_p.to_bits(),
        seed as u32,
        (seed >> 32) as u32,
        counter,
        0,
    ]
}

pub trait Backend: Send + Sync + 'static {
    /// Where a tensor's elements live.
    type Storage: Send + Sync;

    fn name(&self) -> &'static str;

    /// Whether `op` is implemented for tensors of `dtype` (the weight dtype for matmul and
    /// embedding).
    fn supports(&self, op: Op, dtype: DType) -> bool;

    // ---- data movement ----

    /// Copies host floats to a new tensor of `dtype` (converted if not f32).
    #[allow(clippy::wrong_self_convention)] // a constructor on the backend, not a conversion of self
    fn from_f32(&self, data: &[f32], shape: Shape, dtype: DType) -> Result<Tensor<Self>>;
    /// Copies host integers (ids, positions, tables) to a new u32 tensor.
    #[allow(clippy::wrong_self_convention)]
    fn from_u32(&self, data: &[u32], shape: Shape) -> Result<Tensor<Self>>;
    /// A new matrix `[N, K]` of GGUF blocks (`dtype` a block format, `K` a multiple of its
    /// block size) from exactly its bytes, laid out as ggml lays them out
    /// ([`crate::quant`]): weights kept quantized. Backends that keep no block formats leave
    /// the default, which reports the dtype unsupported; `supports(Op::Matmul, dtype)` says
    /// whether a backend can use such a tensor.
    #[allow(clippy::wrong_self_convention)]
    fn from_blocks(&self, bytes: &[u8], shape: Shape, dtype: DType) -> Result<Tensor<Self>> {
        crate::check::from_blocks(bytes.len(), &shape, dtype);
        Err(BackendError::Unsupported {
            op: Op::Matmul,
            dtype,
            backend: self.name(),
        })
    }

    /// A new zero-filled tensor (KV caches).
    fn zeros(&self, shape: Shape, dtype: DType) -> Result<Tensor<Self>>;
    /// Copies a float tensor back to the host as f32.
    fn to_f32(&self, t: &Tensor<Self>) -> Result<Vec<f32>>;
    /// Copies a u32 tensor back to the host.
    fn to_u32(&self, t: &Tensor<Self>) -> Result<Vec<u32>>;

    // ---- verbs ----

    /// Gathers rows of `table` [V, H] for `ids` [T] -> [T, H].
    fn embedding(&self, table: &Tensor<Self>, ids: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// RMS norm of each row of `x` [T, H] times `weight` [H].
    /// With `residual` [T, H]: first `residual += x`, then the norm is taken of the updated
    /// residual (vLLM's fused add + norm). Returns the normed rows.
    fn rms_norm(
        &self,
        x: &Tensor<Self>,
        residual: Option<&mut Tensor<Self>>,
        weight: &Tensor<Self>,
        eps: f32,
    ) -> Result<Tensor<Self>>;

    /// `x` [T, K] times `w` [N, K] transposed, plus `bias` [N] -> [T, N].
    /// Each output element's reduction order depends only on K, never on T (batch invariance).
    fn matmul(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        bias: Option<&Tensor<Self>>,
    ) -> Result<Tensor<Self>>;

    /// Rotates `q` [T, Hq, D] and `k` [T, Hk, D] in place by `positions` [T] with the
    /// frequencies `inv_freq` [R/2] (R = rotated dims <= D; the rest pass through).
    fn rope(
        &self,
        q: &mut Tensor<Self>,
        k: &mut Tensor<Self>,
        positions: &Tensor<Self>,
        inv_freq: &Tensor<Self>,
        style: RopeStyle,
    ) -> Result<()>;

    /// Writes `k`, `v` [T, Hk, D] into the paged caches at `slot_mapping` [T].
    fn kv_write(
        &self,
        k: &Tensor<Self>,
        v: &Tensor<Self>,
        k_cache: &mut Tensor<Self>,
        v_cache: &mut Tensor<Self>,
        slot_mapping: &Tensor<Self>,
    ) -> Result<()>;

    /// Causal attention of `q` [T, Hq, D] over the paged caches -> [T, Hq, D].
    /// Varlen: sequences of any query and context lengths in one call (prefill chunks and
    /// decode rows mixed). GQA: query head `h` reads KV head `h / (Hq / Hk)`.
    fn paged_attention(
        &self,
        q: &Tensor<Self>,
        k_cache: &Tensor<Self>,
        v_cache: &Tensor<Self>,
        meta: &AttentionMeta<'_, Self>,
        params: AttentionParams,
    ) -> Result<Tensor<Self>>;

    /// `silu(gate) * up` for `x` [T, 2I] = [gate | up] -> [T, I].
    fn silu_mul(&self, x: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// Rows `idx` [S] of `x` [T, H] -> [S, H].
    fn gather_rows(&self, x: &Tensor<Self>, idx: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// Elementwise `a + b`, same shapes.
    fn add(&self, a: &Tensor<Self>, b: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// Greedy token choice: for each row of `logits` [T, V] (V >= 1; f32, other float dtypes
    /// are `Unsupported`), the index of its largest value -> [T] u32. Exactly [`argmax_row`]'s semantics, which every backend
    /// must reproduce bit for bit whatever its reduction order: the first index among equal
    /// maxima (`-0.0` ties `+0.0`), NaNs after index 0 ignored, 0 when the row's first
    /// value is NaN, 0 for a row of all `-inf`. Lets the runner read back T ids instead of
    /// T x V floats for greedy requests.
    fn argmax(&self, logits: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// Temperature sampling with top-k, top-p and min-p filters, one token per row of
    /// `logits` [R, V] (f32; V >= 1) with `params` [R, 8] u32 -> [R] u32. A row's params are
    /// `[temperature (f32 bits), top_k (0 = off), top_p (f32 bits), min_p (f32 bits),
    /// seed lo, seed hi, counter, pad]`, the counter being the request's output position.
    /// The one definition, which every backend follows:
    ///
    /// 1. `s[i] = logits[i] / temperature` (f32). Values compare through the order key of
    ///    `argmax.wgsl` (NaN lowest, `-0 == +0`). If `temperature` is not `> 0` the row is
    ///    greedy: `s = logits`, and the answer is step 2's index.
    /// 2. `(m, j)` = the largest non-NaN `s` and its first index (0 if every `s` is NaN).
    ///    If the row is greedy or `m` is not finite, the answer is `j`.
    /// 3. `p[i] = exp(s[i] - m)` (0 for NaN), unnormalised, so `p[j] = 1`.
    /// 4. top-k (when `0 < top_k < V`): `t_k` = the `top_k`-th largest key of `s`, found by
    ///    32 bisection steps on the u32 key (each an exact count of keys `>= mid`); tokens
    ///    with key `>= t_k` stay (ties at the threshold all stay). Otherwise `t_k = 0`.
    /// 5. top-p (when `0 < top_p < 1`): `Z = sum p[i]` over keys `>= t_k`; `t_p` = the
    ///    largest key `t` with `sum p[i]` over keys `>= max(t, t_k)` `>= top_p * Z`, by 32
    ///    bisection steps on the key. Otherwise `t_p = 0`. Sums use one fixed order: 256
    ///    lanes, lane `l` adds columns `l, l + 256, ...` in turn, then a binary tree
    ///    (`lane[l] += lane[l + h]` for h = 128, 64, .., 1).
    /// 6. min-p (when `min_p > 0`, clamped to 1): tokens with `p[i] >= min_p` stay.
    /// 7. Among tokens that stay and have `p[i] > 0`, the answer is the argmax of
    ///    `s[i] + g[i]` (ties -> lowest index), with Gumbel noise `g = -ln(-ln(u))`,
    ///    `u = ((h >> 9) + 0.5) / 2^23` and `h = mix(mix(mix(mix(i ^ 0x9e3779b9) ^ counter)
    ///    ^ seed_hi) ^ seed_lo)`, `mix` the "lowbias32" integer hash
    ///    ([`sample_hash`]). Token `j` always stays, so the answer is well defined.
    ///
    /// Gumbel-max draws token `i` with probability proportional to `p[i]` among those that
    /// stay. A row's token depends only on its own logits and params (batch invariant), and
    /// the same (seed, counter) gives the same token. Backends agree bit for bit except
    /// where `/`, `exp` or `ln` round differently (GPUs allow a few ulp): then a near-tie
    /// at a filter threshold or between the two best noisy scores may resolve differently.
    fn sample(&self, logits: &Tensor<Self>, params: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// Log-probabilities of each row's chosen token and of its `k` most likely tokens:
    /// `logits` [R, V] f32 (V >= 1, `k <= V`), `tokens` [R] u32 -> [R, 2 * (1 + k)] f32
    /// ([`top_logprobs_width`]). Row layout: `(id, logprob)` pairs, first the chosen token,
    /// then the top `k` best first: `[id_c, lp_c, id_1, lp_1, .., id_k, lp_k]`. An id is a
    /// u32 stored by bit cast (`f32::from_bits(id)`; read it back with `to_bits`, never as a
    /// number: small ids are subnormal floats).
    ///
    /// The one definition, which every backend follows:
    /// 1. `m` = the row's largest value (f32 `max`; rows holding NaN give unspecified
    ///    log-probabilities, ids stay defined).
    /// 2. `s = sum exp(x - m)` in f32 in one fixed order: 256 lanes, lane `l` adds columns
    ///    `l, l + 256, ..` in turn, then a binary tree (`lane[l] += lane[l + h]` for
    ///    h = 128, 64, .., 1). `lse = m + ln(s)`; a token's logprob is `x - lse` (f32).
    /// 3. The top `k` are the first `k` of the row ranked by [`rank_cmp`] (descending
    ///    `total_cmp`, ties to the lower index) — exactly the host sampler's list.
    ///
    /// A chosen token `>= V` gets logprob NaN. Backends agree on every id and, up to the
    /// rounding of `exp`/`ln`, on the log-probabilities (1e-5 absolute in the tests).
    fn top_logprobs(
        &self,
        logits: &Tensor<Self>,
        tokens: &Tensor<Self>,
        k: usize,
    ) -> Result<Tensor<Self>>;

    /// Whether the runner should take sampled tokens from [`Backend::sample`] rather than
    /// its host sampler. False for the CPU reference, whose host path is the pinned one.
    fn samples_on_device(&self) -> bool {
        false
    }

    // ---- step boundary and limits ----

    /// Waits until all recorded work finished and reports asynchronous device failures
    /// (the step boundary). A read-back (`to_f32`, `to_u32`) implies it. The default suits
    /// synchronous backends, whose verbs have finished when they return.
    fn sync(&self) -> Result<()> {
        Ok(())
    }

    /// The largest single tensor, in bytes, that a verb accepts (e.g. one layer's KV cache):
    /// size allocations below it. Weights above it may still be split by the backend on
    /// upload; activations and caches may not. The default means no limit.
    fn max_tensor_bytes(&self) -> u64 {
        u64::MAX
    }

    /// Running totals for benchmarks and logs (see [`Counters`]); zeros where a backend
    /// has nothing to count.
    fn counters(&self) -> Counters {
        Counters::default()
    }
}

/// Running totals a backend keeps since it opened; the difference of two readings covers
/// the work between them (e.g. one engine step).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    /// Kernel launches recorded (GPU backends).
    pub dispatches: u64,
    /// Seconds the host spent blocked waiting for device results (read-backs and `sync`):
    /// device time not hidden behind host work. Zero for synchronous backends, whose whole
    /// time is host time.
    pub wait_seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::{argmax_row, rank_cmp, rank_key};

    /// The integer key orders random values (specials included) exactly as `total_cmp`.
    #[test]
    fn rank_key_is_total_cmp() {
        let specials = [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::MIN_POSITIVE,
            -1e-45,
            1.0,
            -1.0,
        ];
        let mut s = 0x1234_5678u32;
        let mut vals: Vec<f32> = specials.to_vec();
        for _ in 0..2000 {
            s = super::sample_hash(s);
            vals.push(f32::from_bits(s));
        }
        for &a in &vals {
            for &b in vals.iter().step_by(37) {
                assert_eq!(rank_key(a).cmp(&rank_key(b)), a.total_cmp(&b), "{a} vs {b}");
                // Descending by value, then ascending by index.
                assert_eq!(
                    rank_cmp(&(0, a), &(1, b)),
                    b.total_cmp(&a).then(std::cmp::Ordering::Less)
                );
            }
        }
    }

    /// The stated semantics of the verb, case by case.
    #[test]
    fn argmax_row_semantics() {
        let (inf, nan) = (f32::INFINITY, f32::NAN);
        assert_eq!(argmax_row(&[0.0, 3.0, 1.0, 3.0]), 1); // first of equal maxima
        assert_eq!(argmax_row(&[-0.0, 0.0]), 0); // -0 ties +0
        assert_eq!(argmax_row(&[0.0, -0.0]), 0);
        assert_eq!(argmax_row(&[-inf, -inf, -inf]), 0);
        assert_eq!(argmax_row(&[-inf, -5.0, -inf]), 1);
        assert_eq!(argmax_row(&[1.0, nan, 2.0, nan]), 2); // later NaNs ignored
        assert_eq!(argmax_row(&[nan, 5.0, inf]), 0); // a leading NaN wins
        assert_eq!(argmax_row(&[nan, nan]), 0);
        assert_eq!(argmax_row(&[-inf, nan, -inf]), 0);
        assert_eq!(argmax_row(&[2.0, inf, inf]), 1);
        assert_eq!(argmax_row(&[]), 0);
    }
}
