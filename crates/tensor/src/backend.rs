//! The `Backend` trait: the small set of verbs (DESIGN.md §5) that model code calls.
//!
//! Verbs return new tensors, except where the point of the verb is to update state in place
//! (rope, kv_write, the residual of rms_norm). A backend is free to pool the allocations
//! behind returned tensors. Every verb checks its preconditions with [`crate::check`] first:
//! the trait's provided methods do, then call the backend's `*_impl` method.
//!
//! Paged KV cache: per layer, K and V caches are `[num_blocks, num_kv_heads, block_size,
//! head_dim]`. Token `t` of a step is written to slot `slot_mapping[t]` =
//! `block_id * block_size + offset`. Sequence `s` reads its context through
//! `block_tables[s]`; its queries are the last `q_len = query_start_loc[s+1] -
//! query_start_loc[s]` tokens of its `seq_lens[s]` tokens, so query `i` sits at position
//! `seq_lens[s] - q_len + i` and attends causally to positions `0..=` that.

use crate::moe::MoeRouting;
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
    GeluTanhMul,
    Scale,
    GatherRows,
    Add,
    Argmax,
    Sample,
    TopLogprobs,
    /// Mixture-of-experts routing (`moe_route`).
    MoeRoute,
    /// Mixture-of-experts expert FFNs and their weighted sum (`moe_experts_add`); its dtype
    /// is the expert weights'.
    MoeExperts,
    /// Structured output's token masks (`mask_logits`).
    MaskLogits,
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

/// How a stacked QKV row is cut: `num_heads` query heads, then `num_kv_heads` key heads,
/// then `num_kv_heads` value heads, each `head_dim` wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QkvHeads {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl QkvHeads {
    /// Elements of one token's stacked row: `(Hq + 2 Hk) D`.
    pub fn row(&self) -> usize {
        (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
    }
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

/// The experts a router chose for each token: slot `j` of token `t` is its `j`-th best
/// expert (see [`crate::moe`]).
pub struct MoeRoutes<B: Backend + ?Sized> {
    pub ids: Tensor<B>,     // [T, k] u32: expert ids, E for an empty slot
    pub weights: Tensor<B>, // [T, k] f32
}

/// The stacked expert weights of one MoE layer (E experts, hidden H, expert width I).
pub struct MoeExperts<'a, B: Backend + ?Sized> {
    pub gate_up: &'a Tensor<B>, // [E, 2I, H]: per expert its gate rows, then its up rows
    pub down: &'a Tensor<B>,    // [E, H, I]
}

/// An always-on expert (Qwen2-MoE's shared expert) whose output joins the routed sum.
pub struct MoeShared<'a, B: Backend + ?Sized> {
    pub out: &'a Tensor<B>,          // [T, H]: the shared expert's output
    pub gate: Option<&'a Tensor<B>>, // [T, 1]: logits of its sigmoid gate, if gated
}

/// The verbs. Each public verb is a provided method that runs its preconditions
/// ([`crate::check`], `#[track_caller]`) and then calls the backend's `*_impl` method, so
/// the checks are written once and no backend can forget them; a backend implements the
/// `*_impl` methods and never overrides the public ones. Model and runner code calls the
/// public verbs only: an `*_impl` method may assume its preconditions hold.
///
/// Adding a verb: an [`Op`] variant (and its dtype rule in [`Backend::supports`]), its
/// preconditions in [`crate::check`], a provided method here that checks and delegates, the
/// required `*_impl` method beside it, an implementation in every backend, and a case in
/// the conformance suite (`ingot_testkit::conformance`).
pub trait Backend: Send + Sync + 'static {
    /// Where a tensor's elements live.
    type Storage: Send + Sync;

    fn name(&self) -> &'static str;

    /// Whether `op` is implemented for tensors of `dtype` (the weight dtype for matmul and
    /// embedding, the cache dtype for kv_write and paged_attention), the same rule for
    /// every backend: weights in f32/f16/bf16, or in a GGUF block format where
    /// [`Backend::reads_blocks`] says so; gathers of any dense dtype; KV caches in one of
    /// [`crate::check::KV_CACHE_DTYPES`]; f32 activations for everything else.
    fn supports(&self, op: Op, dtype: DType) -> bool {
        match op {
            Op::Matmul | Op::Embedding => {
                dtype.is_float() || (dtype.is_quantized() && self.reads_blocks(dtype))
            }
            Op::GatherRows => !dtype.is_quantized(),
            Op::KvWrite | Op::PagedAttention => crate::check::KV_CACHE_DTYPES.contains(&dtype),
            Op::RmsNorm
            | Op::Rope
            | Op::SiluMul
            | Op::GeluTanhMul
            | Op::Scale
            | Op::Add
            | Op::Argmax
            | Op::Sample
            | Op::TopLogprobs
            | Op::MoeRoute
            | Op::MaskLogits => dtype == DType::F32,
            Op::MoeExperts => {
                dtype.is_float() || (dtype.is_quantized() && self.reads_expert_blocks(dtype))
            }
        }
    }

    /// Whether `moe_experts_add` reads expert weights kept in GGUF block format `dtype`.
    /// The default: no block formats.
    fn reads_expert_blocks(&self, dtype: DType) -> bool {
        let _ = dtype;
        false
    }

    /// Whether matmul and embedding read weights kept in GGUF block format `dtype` (see
    /// [`Backend::from_blocks`]). The default: no block formats.
    fn reads_blocks(&self, dtype: DType) -> bool {
        let _ = dtype;
        false
    }

    // ---- data movement ----

    /// Copies host floats to a new tensor of `dtype` (converted if not f32).
    #[allow(clippy::wrong_self_convention)] // a constructor on the backend, not a conversion of self
    #[track_caller]
    fn from_f32(&self, data: &[f32], shape: Shape, dtype: DType) -> Result<Tensor<Self>> {
        crate::check::upload("from_f32", data.len(), &shape);
        self.from_f32_impl(data, shape, dtype)
    }
    /// [`Backend::from_f32`] after its checks.
    #[allow(clippy::wrong_self_convention)]
    fn from_f32_impl(&self, data: &[f32], shape: Shape, dtype: DType) -> Result<Tensor<Self>>;

    /// Copies host integers (ids, positions, tables) to a new u32 tensor.
    #[allow(clippy::wrong_self_convention)]
    #[track_caller]
    fn from_u32(&self, data: &[u32], shape: Shape) -> Result<Tensor<Self>> {
        crate::check::upload("from_u32", data.len(), &shape);
        self.from_u32_impl(data, shape)
    }
    /// [`Backend::from_u32`] after its checks.
    #[allow(clippy::wrong_self_convention)]
    fn from_u32_impl(&self, data: &[u32], shape: Shape) -> Result<Tensor<Self>>;

    /// A new matrix `[N, K]` of GGUF blocks (`dtype` a block format, `K` a multiple of its
    /// block size) from exactly its bytes, laid out as ggml lays them out
    /// ([`crate::quant`]): weights kept quantized. `supports(Op::Matmul, dtype)` says
    /// whether a backend can use such a tensor. A stack of experts `[E, N, K]` (a GGUF
    /// `ffn_*_exps` tensor) is uploaded with its three dimensions, so that a backend that
    /// splits large weights splits it at whole experts; `supports(Op::MoeExperts, dtype)`
    /// says whether `moe_experts_add` reads it.
    #[allow(clippy::wrong_self_convention)]
    #[track_caller]
    fn from_blocks(&self, bytes: &[u8], shape: Shape, dtype: DType) -> Result<Tensor<Self>> {
        crate::check::from_blocks(bytes.len(), &shape, dtype);
        self.from_blocks_impl(bytes, shape, dtype)
    }
    /// [`Backend::from_blocks`] after its checks. Backends that keep no block formats leave
    /// the default, which reports the dtype unsupported.
    #[allow(clippy::wrong_self_convention)]
    fn from_blocks_impl(&self, bytes: &[u8], shape: Shape, dtype: DType) -> Result<Tensor<Self>> {
        let _ = (bytes, shape);
        Err(BackendError::Unsupported {
            op: Op::Matmul,
            dtype,
            backend: self.name(),
        })
    }

    /// A new zero-filled tensor (KV caches). Any shape and dtype: there is nothing to check.
    fn zeros(&self, shape: Shape, dtype: DType) -> Result<Tensor<Self>>;

    /// Copies a float tensor back to the host as f32.
    #[track_caller]
    fn to_f32(&self, t: &Tensor<Self>) -> Result<Vec<f32>> {
        crate::check::to_f32(t);
        self.to_f32_impl(t)
    }
    /// [`Backend::to_f32`] after its checks.
    fn to_f32_impl(&self, t: &Tensor<Self>) -> Result<Vec<f32>>;

    /// Copies a u32 tensor back to the host.
    #[track_caller]
    fn to_u32(&self, t: &Tensor<Self>) -> Result<Vec<u32>> {
        crate::check::to_u32(t);
        self.to_u32_impl(t)
    }
    /// [`Backend::to_u32`] after its checks.
    fn to_u32_impl(&self, t: &Tensor<Self>) -> Result<Vec<u32>>;

    // ---- verbs ----

    /// Gathers rows of `table` [V, H] for `ids` [T] -> [T, H].
    #[track_caller]
    fn embedding(&self, table: &Tensor<Self>, ids: &Tensor<Self>) -> Result<Tensor<Self>> {
        crate::check::embedding(table, ids);
        self.embedding_impl(table, ids)
    }
    /// [`Backend::embedding`] after its checks.
    fn embedding_impl(&self, table: &Tensor<Self>, ids: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// RMS norm of each row of `x` [T, H] times `weight` [H].
    /// With `residual` [T, H]: first `residual += x`, then the norm is taken of the updated
    /// residual (vLLM's fused add + norm). Returns the normed rows.
    #[track_caller]
    fn rms_norm(
        &self,
        x: &Tensor<Self>,
        residual: Option<&mut Tensor<Self>>,
        weight: &Tensor<Self>,
        eps: f32,
    ) -> Result<Tensor<Self>> {
        crate::check::rms_norm(x, residual.as_deref(), weight);
        self.rms_norm_impl(x, residual, weight, eps)
    }
    /// [`Backend::rms_norm`] after its checks.
    fn rms_norm_impl(
        &self,
        x: &Tensor<Self>,
        residual: Option<&mut Tensor<Self>>,
        weight: &Tensor<Self>,
        eps: f32,
    ) -> Result<Tensor<Self>>;

    /// `x` [T, K] times `w` [N, K] transposed, plus `bias` [N] -> [T, N].
    /// Each output element's reduction order depends only on K, never on T (batch invariance).
    #[track_caller]
    fn matmul(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        bias: Option<&Tensor<Self>>,
    ) -> Result<Tensor<Self>> {
        crate::check::matmul(x, w, bias);
        self.matmul_impl(x, w, bias)
    }
    /// [`Backend::matmul`] after its checks.
    fn matmul_impl(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        bias: Option<&Tensor<Self>>,
    ) -> Result<Tensor<Self>>;

    /// Rotates `q` [T, Hq, D] and `k` [T, Hk, D] in place by `positions` [T] with the
    /// frequencies `inv_freq` [R/2] (R = rotated dims <= D; the rest pass through).
    #[track_caller]
    fn rope(
        &self,
        q: &mut Tensor<Self>,
        k: &mut Tensor<Self>,
        positions: &Tensor<Self>,
        inv_freq: &Tensor<Self>,
        style: RopeStyle,
    ) -> Result<()> {
        crate::check::rope(q, k, positions, inv_freq);
        self.rope_impl(q, k, positions, inv_freq, style)
    }
    /// [`Backend::rope`] after its checks.
    fn rope_impl(
        &self,
        q: &mut Tensor<Self>,
        k: &mut Tensor<Self>,
        positions: &Tensor<Self>,
        inv_freq: &Tensor<Self>,
        style: RopeStyle,
    ) -> Result<()>;

    /// Writes `k`, `v` [T, Hk, D] into the paged caches at `slot_mapping` [T].
    #[track_caller]
    fn kv_write(
        &self,
        k: &Tensor<Self>,
        v: &Tensor<Self>,
        k_cache: &mut Tensor<Self>,
        v_cache: &mut Tensor<Self>,
        slot_mapping: &Tensor<Self>,
    ) -> Result<()> {
        crate::check::kv_write(k, v, k_cache, v_cache, slot_mapping);
        self.kv_write_impl(k, v, k_cache, v_cache, slot_mapping)
    }
    /// [`Backend::kv_write`] after its checks.
    fn kv_write_impl(
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
    #[track_caller]
    fn paged_attention(
        &self,
        q: &Tensor<Self>,
        k_cache: &Tensor<Self>,
        v_cache: &Tensor<Self>,
        meta: &AttentionMeta<'_, Self>,
        params: AttentionParams,
    ) -> Result<Tensor<Self>> {
        crate::check::paged_attention(q, k_cache, v_cache, meta, &params);
        self.paged_attention_impl(q, k_cache, v_cache, meta, params)
    }
    /// [`Backend::paged_attention`] after its checks.
    fn paged_attention_impl(
        &self,
        q: &Tensor<Self>,
        k_cache: &Tensor<Self>,
        v_cache: &Tensor<Self>,
        meta: &AttentionMeta<'_, Self>,
        params: AttentionParams,
    ) -> Result<Tensor<Self>>;

    /// `residual += x W^T + bias`: `x` [T, K], `w` [N, K], `bias` [N], `residual` [T, N]
    /// (f32). The residual stream's update fused into the projection that feeds it (o_proj,
    /// down_proj), so no [T, N] branch output is written and read back. Defined as
    /// `residual = add(residual, matmul(x, w, bias))`: the same per-element operations, so
    /// batch invariance carries over from [`Backend::matmul`].
    #[track_caller]
    fn matmul_add(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        bias: Option<&Tensor<Self>>,
        residual: &mut Tensor<Self>,
    ) -> Result<()> {
        crate::check::matmul_add(x, w, bias, residual);
        self.matmul_add_impl(x, w, bias, residual)
    }
    /// [`Backend::matmul_add`] after its checks.
    fn matmul_add_impl(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        bias: Option<&Tensor<Self>>,
        residual: &mut Tensor<Self>,
    ) -> Result<()>;

    /// `silu(x Wg^T) * (x Wu^T)` for `x` [T, K] and the stacked `w` [2I, K] = [gate | up]
    /// rows -> [T, I]: the gated MLP's projection and activation in one verb. Defined as
    /// `silu_mul(matmul(x, w, None))`, element for element.
    #[track_caller]
    fn matmul_silu_mul(&self, x: &Tensor<Self>, w: &Tensor<Self>) -> Result<Tensor<Self>> {
        crate::check::matmul_silu_mul(x, w);
        self.matmul_silu_mul_impl(x, w)
    }
    /// [`Backend::matmul_silu_mul`] after its checks.
    fn matmul_silu_mul_impl(&self, x: &Tensor<Self>, w: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// The attention input step of a stacked QKV projection: `qkv` [T, (Hq + 2 Hk) D]
    /// (per token: Hq query heads, Hk key heads, Hk value heads) has its query and key
    /// heads rotated by `positions` [T] and `inv_freq` [R/2] (as [`Backend::rope`]), its
    /// rotated keys and its values written into the paged caches at `slot_mapping` [T] (as
    /// [`Backend::kv_write`]), and returns the rotated queries [T, Hq, D]. `qkv` itself is
    /// left as it was. Element for element the same as rope + kv_write on the three parts.
    #[allow(clippy::too_many_arguments)]
    #[track_caller]
    fn rope_kv_write(
        &self,
        qkv: &Tensor<Self>,
        heads: QkvHeads,
        positions: &Tensor<Self>,
        inv_freq: &Tensor<Self>,
        style: RopeStyle,
        k_cache: &mut Tensor<Self>,
        v_cache: &mut Tensor<Self>,
        slot_mapping: &Tensor<Self>,
    ) -> Result<Tensor<Self>> {
        crate::check::rope_kv_write(
            qkv,
            &heads,
            positions,
            inv_freq,
            k_cache,
            v_cache,
            slot_mapping,
        );
        self.rope_kv_write_impl(
            qkv,
            heads,
            positions,
            inv_freq,
            style,
            k_cache,
            v_cache,
            slot_mapping,
        )
    }
    /// [`Backend::rope_kv_write`] after its checks.
    #[allow(clippy::too_many_arguments)]
    fn rope_kv_write_impl(
        &self,
        qkv: &Tensor<Self>,
        heads: QkvHeads,
        positions: &Tensor<Self>,
        inv_freq: &Tensor<Self>,
        style: RopeStyle,
        k_cache: &mut Tensor<Self>,
        v_cache: &mut Tensor<Self>,
        slot_mapping: &Tensor<Self>,
    ) -> Result<Tensor<Self>>;

    /// `silu(gate) * up` for `x` [T, 2I] = [gate | up] -> [T, I].
    #[track_caller]
    fn silu_mul(&self, x: &Tensor<Self>) -> Result<Tensor<Self>> {
        crate::check::silu_mul(x);
        self.silu_mul_impl(x)
    }
    /// [`Backend::silu_mul`] after its checks.
    fn silu_mul_impl(&self, x: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// `gelu_tanh(gate) * up` for `x` [T, 2I] = [gate | up] -> [T, I] (Gemma's MLP), with
    /// GELU's tanh approximation `0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3)))`, as
    /// PyTorch's `gelu(approximate="tanh")` computes it.
    #[track_caller]
    fn gelu_tanh_mul(&self, x: &Tensor<Self>) -> Result<Tensor<Self>> {
        crate::check::gated("gelu_tanh_mul", x);
        self.gelu_tanh_mul_impl(x)
    }
    /// [`Backend::gelu_tanh_mul`] after its checks.
    fn gelu_tanh_mul_impl(&self, x: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// `x * s` elementwise (f32), any shape (Gemma's embedding scale).
    #[track_caller]
    fn scale(&self, x: &Tensor<Self>, s: f32) -> Result<Tensor<Self>> {
        crate::check::scale(x);
        self.scale_impl(x, s)
    }
    /// [`Backend::scale`] after its checks.
    fn scale_impl(&self, x: &Tensor<Self>, s: f32) -> Result<Tensor<Self>>;

    /// Rows `idx` [S] of `x` [T, H] -> [S, H].
    #[track_caller]
    fn gather_rows(&self, x: &Tensor<Self>, idx: &Tensor<Self>) -> Result<Tensor<Self>> {
        crate::check::gather_rows(x, idx);
        self.gather_rows_impl(x, idx)
    }
    /// [`Backend::gather_rows`] after its checks.
    fn gather_rows_impl(&self, x: &Tensor<Self>, idx: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// Elementwise `a + b`, same shapes.
    #[track_caller]
    fn add(&self, a: &Tensor<Self>, b: &Tensor<Self>) -> Result<Tensor<Self>> {
        crate::check::add(a, b);
        self.add_impl(a, b)
    }
    /// [`Backend::add`] after its checks.
    fn add_impl(&self, a: &Tensor<Self>, b: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// Greedy token choice: for each row of `logits` [T, V] (V >= 1; f32, other float dtypes
    /// are `Unsupported`), the index of its largest value -> [T] u32. Exactly [`crate::sampling::argmax_row`]'s semantics, which every backend
    /// must reproduce bit for bit whatever its reduction order: the first index among equal
    /// maxima (`-0.0` ties `+0.0`), NaNs after index 0 ignored, 0 when the row's first
    /// value is NaN, 0 for a row of all `-inf`. Lets the runner read back T ids instead of
    /// T x V floats for greedy requests.
    #[track_caller]
    fn argmax(&self, logits: &Tensor<Self>) -> Result<Tensor<Self>> {
        crate::check::argmax(logits);
        self.argmax_impl(logits)
    }
    /// [`Backend::argmax`] after its checks.
    fn argmax_impl(&self, logits: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// Temperature sampling with top-k, top-p and min-p filters, one token per row of
    /// `logits` [R, V] (f32; V >= 1) with `params` [R, 8] u32 -> [R] u32. A row's params are
    /// [`crate::sampling::sample_params`]: `[temperature (f32 bits), top_k (0 = off), top_p (f32
    /// bits), min_p (f32 bits), seed lo, seed hi, counter, pad]`, the counter being the
    /// request's output position. Every row follows [`crate::sampling::sample_row`], the one
    /// definition shared by every backend and by the runner's host sampler (Gumbel-max over
    /// counter-based noise, exact filter thresholds; see that module). Backends agree bit
    /// for bit except where `/`, `exp` or `ln` round differently (GPUs allow a few ulp).
    #[track_caller]
    fn sample(&self, logits: &Tensor<Self>, params: &Tensor<Self>) -> Result<Tensor<Self>> {
        crate::check::sample(logits, params);
        self.sample_impl(logits, params)
    }
    /// [`Backend::sample`] after its checks.
    fn sample_impl(&self, logits: &Tensor<Self>, params: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// Log-probabilities of each row's chosen token and of its `k` most likely tokens:
    /// `logits` [R, V] f32 (V >= 1, `k <= V`), `tokens` [R] u32 -> [R, 2 * (1 + k)] f32
    /// ([`crate::sampling::top_logprobs_width`]). Row layout: `(id, logprob)` pairs, first the
    /// chosen token, then the top `k` best first: `[id_c, lp_c, id_1, lp_1, .., id_k, lp_k]`.
    /// An id is a u32 stored by bit cast (`f32::from_bits(id)`; read it back with
    /// `to_bits`, never as a number: small ids are subnormal floats). Every row follows
    /// [`crate::sampling::top_logprobs_row`], the one definition shared with the host sampler;
    /// backends agree on every id and, up to the rounding of `exp`/`ln`, on the values.
    #[track_caller]
    fn top_logprobs(
        &self,
        logits: &Tensor<Self>,
        tokens: &Tensor<Self>,
        k: usize,
    ) -> Result<Tensor<Self>> {
        crate::check::top_logprobs(logits, tokens, k);
        self.top_logprobs_impl(logits, tokens, k)
    }
    /// [`Backend::top_logprobs`] after its checks.
    fn top_logprobs_impl(
        &self,
        logits: &Tensor<Self>,
        tokens: &Tensor<Self>,
        k: usize,
    ) -> Result<Tensor<Self>>;

    /// Mixture-of-experts routing: `logits` [T, E] f32 (the router's output) -> each token's
    /// `routing.top_k` experts and their weights, exactly [`crate::moe::route_row`] per row
    /// (ids bit for bit; weights up to the rounding of `exp` and `/`).
    #[track_caller]
    fn moe_route(&self, logits: &Tensor<Self>, routing: MoeRouting) -> Result<MoeRoutes<Self>> {
        crate::check::moe_route(logits, &routing);
        self.moe_route_impl(logits, routing)
    }
    /// [`Backend::moe_route`] after its checks.
    fn moe_route_impl(&self, logits: &Tensor<Self>, routing: MoeRouting)
    -> Result<MoeRoutes<Self>>;

    /// `residual += moe(x)` for `x` and `residual` [T, H] (f32): for token `t`,
    /// `acc = sum_j w[t, j] * expert_{ids[t, j]}(x_t)` with `expert_e(x) = down_e(silu(x
    /// gate_e^T) * (x up_e^T))`, slots in order `j = 0, 1, ..` (empty slots, id >= E,
    /// skipped), then `acc += sigmoid(gate_t) * shared_t` (or `+ shared_t` without a gate)
    /// when `shared` is given, then `residual_t += acc`. Each expert projection is a matmul
    /// whose per-element reduction order depends only on its length, and tokens are grouped
    /// by expert so each expert's weights are read once per call: a token's result is the
    /// same bits alone or among any others.
    #[track_caller]
    fn moe_experts_add(
        &self,
        x: &Tensor<Self>,
        routes: &MoeRoutes<Self>,
        experts: MoeExperts<'_, Self>,
        shared: Option<MoeShared<'_, Self>>,
        residual: &mut Tensor<Self>,
    ) -> Result<()> {
        crate::check::moe_experts_add(x, routes, &experts, shared.as_ref(), residual);
        self.moe_experts_add_impl(x, routes, experts, shared, residual)
    }
    /// [`Backend::moe_experts_add`] after its checks.
    fn moe_experts_add_impl(
        &self,
        x: &Tensor<Self>,
        routes: &MoeRoutes<Self>,
        experts: MoeExperts<'_, Self>,
        shared: Option<MoeShared<'_, Self>>,
        residual: &mut Tensor<Self>,
    ) -> Result<()>;
    /// Structured output: `logits` [R, V] f32 with each row's disallowed tokens set to
    /// `-inf`, by `mask` [R, W] u32 (`W` = [`crate::sampling::mask_words`]`(V)`, one bit per
    /// token, bit `i % 32` of word `i / 32` set = token `i` allowed) -> [R, V]. Every row
    /// follows [`crate::sampling::mask_row`]; allowed values are copied bit for bit, so a row
    /// whose mask allows everything is unchanged. Applied before `argmax`, `sample` or the
    /// host sampler, so a constrained row is never read back as full logits on a GPU.
    #[track_caller]
    fn mask_logits(&self, logits: &Tensor<Self>, mask: &Tensor<Self>) -> Result<Tensor<Self>> {
        crate::check::mask_logits(logits, mask);
        self.mask_logits_impl(logits, mask)
    }
    /// [`Backend::mask_logits`] after its checks.
    fn mask_logits_impl(&self, logits: &Tensor<Self>, mask: &Tensor<Self>) -> Result<Tensor<Self>>;

    /// Whether the runner should take sampled tokens from [`Backend::sample`] rather than
    /// its host sampler. False for the CPU reference, whose host path is the pinned one.
    fn samples_on_device(&self) -> bool {
        false
    }

    // ---- step boundary and limits ----

    /// Starts the work recorded so far without waiting for it, so the host can compute
    /// (e.g. structured-output masks) while the device runs. The default suits synchronous
    /// backends, whose verbs have finished when they return.
    fn flush(&self) -> Result<()> {
        Ok(())
    }

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
