//! The CPU backend: host-memory tensors and f32 kernels for every verb of
//! [`ingot_tensor::Backend`]. It is the numerical reference every other backend is tested
//! against (DESIGN.md §5), and fast enough to serve small models.
//!
//! Storage is a plain `Vec` per tensor ([`CpuStorage`]). Activations are f32; matmul and
//! embedding weights may also be f16 or bf16, widened to f32 on the fly; KV caches may be
//! f16 (rounded when written, widened when read, see `attention.rs`). Every output is
//! allocated filled with NaN (u32::MAX for integers) before a kernel writes it, so an
//! element a kernel forgets to write shows up in the tests.
//!
//! Batch invariance is a hard rule here: every reduction (matmul dot products, attention
//! over context positions, rms_norm's sum of squares) has one fixed order that depends only
//! on the reduction's length, never on the batch, the tiling or the thread count (see
//! `lanes.rs`, `matmul.rs`, `attention.rs`). Work is parallel over independent outputs on
//! rayon: the global pool by default, or a private pool ([`CpuBackend::with_threads`]).

mod attention;
mod fused;
mod gather;
mod lanes;
mod matmul;
mod moe;
mod norm;
mod pointwise;
mod quant;
mod rope;
mod sample;
#[cfg(target_arch = "x86_64")]
mod tile512;

pub use matmul::Isa;
use matmul::Weights;
pub use quant::Activations;

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use ingot_tensor::backend::Result;
use ingot_tensor::moe::MoeRouting;
use ingot_tensor::{
    AttentionMeta, AttentionParams, Backend, BackendError, DType, MoeExperts, MoeRoutes, MoeShared,
    Op, QkvHeads, RopeStyle, Shape, Tensor,
};
use std::sync::Arc;

/// A CPU tensor's elements, row-major.
#[derive(Clone, Debug)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    U32(Vec<u32>),
    /// A matrix of GGUF blocks (`dtype` one of [`DType::BLOCK_TYPES`]), ggml's bytes.
    Blocks {
        dtype: DType,
        bytes: Vec<u8>,
    },
}

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::BF16(_) => DType::BF16,
            CpuStorage::U32(_) => DType::U32,
            CpuStorage::Blocks { dtype, .. } => *dtype,
        }
    }

    /// Elements held (for block formats: blocks times the block size).
    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F16(v) => v.len(),
            CpuStorage::BF16(v) => v.len(),
            CpuStorage::U32(v) => v.len(),
            CpuStorage::Blocks { dtype, bytes } => {
                bytes.len() / dtype.block_bytes() * dtype.block_size()
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_f32_mut(&mut self) -> Option<&mut [f32]> {
        match self {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_f16(&self) -> Option<&[f16]> {
        match self {
            CpuStorage::F16(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bf16(&self) -> Option<&[bf16]> {
        match self {
            CpuStorage::BF16(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_u32(&self) -> Option<&[u32]> {
        match self {
            CpuStorage::U32(v) => Some(v),
            _ => None,
        }
    }
}

/// The CPU backend. Cheap to clone (the private pool, if any, is shared).
#[derive(Clone)]
pub struct CpuBackend {
    isa: Isa,
    activations: Activations,
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuBackend")
            .field("isa", &self.isa)
            .field("activations", &self.activations)
            .field("threads", &self.num_threads())
            .finish()
    }
}

impl CpuBackend {
    /// Uses rayon's global pool and the fastest kernels this CPU supports.
    pub fn new() -> Self {
        Self {
            isa: Isa::detect(),
            activations: Activations::Exact,
            pool: None,
        }
    }

    /// Uses a private pool of `threads` threads.
    pub fn with_threads(threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("ingot-cpu-{i}"))
            .build()
            .map_err(|e| {
                BackendError::Device(format!("cannot start {threads} CPU threads: {e}"))
            })?;
        Ok(Self {
            isa: Isa::detect(),
            activations: Activations::Exact,
            pool: Some(Arc::new(pool)),
        })
    }

    /// The same backend restricted to the portable (auto-vectorised) kernels. Results may
    /// differ from the SIMD path in the last bits; never mix the two within one run.
    pub fn with_portable_kernels(self) -> Self {
        Self {
            isa: Isa::Portable,
            ..self
        }
    }

    /// The same backend on the kernels of `isa`, one of [`Isa::available`] (tests run every
    /// path the CPU has). The x86 paths give identical bits; the portable one may not.
    pub fn with_isa(self, isa: Isa) -> Result<Self> {
        if !Isa::available().contains(&isa) {
            return Err(BackendError::Device(format!(
                "this CPU cannot run the {isa:?} kernels"
            )));
        }
        Ok(Self { isa, ..self })
    }

    /// The same backend multiplying weights kept in GGUF blocks in `mode`.
    pub fn with_activations(self, mode: Activations) -> Self {
        Self {
            activations: mode,
            ..self
        }
    }

    /// How activations meet weights kept in blocks.
    pub fn activations(&self) -> Activations {
        self.activations
    }

    /// The instruction set the kernels use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    pub fn num_threads(&self) -> usize {
        match &self.pool {
            Some(p) => p.current_num_threads(),
            None => rayon::current_num_threads(),
        }
    }

    /// Runs `f` on this backend's pool.
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }
}

type T = Tensor<CpuBackend>;

fn tensor(storage: CpuStorage, shape: Shape) -> T {
    debug_assert_eq!(storage.len(), shape.numel());
    let dtype = storage.dtype();
    Tensor::from_parts(storage, shape, dtype)
}

fn unsupported(op: Op, dtype: DType) -> BackendError {
    BackendError::Unsupported {
        op,
        dtype,
        backend: "cpu",
    }
}

/// The f32 elements of an activation, or `Unsupported` for another dtype.
fn f32s(t: &T, op: Op) -> Result<&[f32]> {
    match t.storage() {
        CpuStorage::F32(v) => Ok(v),
        s => Err(unsupported(op, s.dtype())),
    }
}

fn f32s_mut(t: &mut T, op: Op) -> Result<&mut [f32]> {
    match t.storage_mut() {
        CpuStorage::F32(v) => Ok(v),
        s => Err(unsupported(op, s.dtype())),
    }
}

/// A weight as the matmul kernels read it.
fn weights_of(w: &T, op: Op) -> Result<Weights<'_>> {
    Ok(match w.storage() {
        CpuStorage::F32(wv) => Weights::F32(wv),
        CpuStorage::F16(wv) => Weights::F16(wv),
        CpuStorage::BF16(wv) => Weights::BF16(wv),
        CpuStorage::Blocks { dtype, bytes } => Weights::Blocks(*dtype, bytes),
        CpuStorage::U32(_) => return Err(unsupported(op, DType::U32)),
    })
}

/// The u32 elements of an index tensor whose dtype the checks already asserted.
#[track_caller]
fn u32s(t: &T) -> &[u32] {
    match t.storage() {
        CpuStorage::U32(v) => v,
        s => panic!("tensor {t:?} holds {} storage", s.dtype()),
    }
}

impl Backend for CpuBackend {
    type Storage = CpuStorage;

    fn name(&self) -> &'static str {
        "cpu"
    }

    /// Every GGUF block format: matmul and embedding read blocks (`quant/`).
    fn reads_blocks(&self, dtype: DType) -> bool {
        dtype.is_quantized()
    }

    /// Every GGUF block format: the experts run on the matmul kernels.
    fn reads_expert_blocks(&self, dtype: DType) -> bool {
        dtype.is_quantized()
    }

    fn from_f32_impl(&self, data: &[f32], shape: Shape, dtype: DType) -> Result<T> {
        let storage = match dtype {
            DType::F32 => CpuStorage::F32(data.to_vec()),
            DType::F16 => {
                let mut v = vec![f16::ZERO; data.len()];
                v.convert_from_f32_slice(data);
                CpuStorage::F16(v)
            }
            DType::BF16 => {
                let mut v = vec![bf16::ZERO; data.len()];
                v.convert_from_f32_slice(data);
                CpuStorage::BF16(v)
            }
            DType::U32 => panic!("from_f32: cannot make a u32 tensor from floats (use from_u32)"),
            q => panic!("from_f32: cannot make {q} blocks (quantizing is not a backend verb)"),
        };
        Ok(tensor(storage, shape))
    }

    fn from_u32_impl(&self, data: &[u32], shape: Shape) -> Result<T> {
        Ok(tensor(CpuStorage::U32(data.to_vec()), shape))
    }

    fn from_blocks_impl(&self, bytes: &[u8], shape: Shape, dtype: DType) -> Result<T> {
        let storage = CpuStorage::Blocks {
            dtype,
            bytes: bytes.to_vec(),
        };
        Ok(tensor(storage, shape))
    }

    fn zeros(&self, shape: Shape, dtype: DType) -> Result<T> {
        let n = shape.numel();
        let storage = match dtype {
            DType::F32 => CpuStorage::F32(vec![0.0; n]),
            DType::F16 => CpuStorage::F16(vec![f16::ZERO; n]),
            DType::BF16 => CpuStorage::BF16(vec![bf16::ZERO; n]),
            DType::U32 => CpuStorage::U32(vec![0; n]),
            q => CpuStorage::Blocks {
                dtype: q,
                bytes: vec![0; q.storage_bytes(n).expect("zeros: whole blocks")],
            },
        };
        Ok(tensor(storage, shape))
    }

    fn to_f32_impl(&self, t: &T) -> Result<Vec<f32>> {
        Ok(match t.storage() {
            CpuStorage::F32(v) => v.clone(),
            CpuStorage::F16(v) => v.to_f32_vec(),
            CpuStorage::BF16(v) => v.to_f32_vec(),
            CpuStorage::U32(_) | CpuStorage::Blocks { .. } => unreachable!("checked above"),
        })
    }

    fn to_u32_impl(&self, t: &T) -> Result<Vec<u32>> {
        match t.storage() {
            CpuStorage::U32(v) => Ok(v.clone()),
            _ => unreachable!("checked above"),
        }
    }

    fn embedding_impl(&self, table: &T, ids: &T) -> Result<T> {
        let h = table.dims()[1];
        let ids_v = u32s(ids);
        let out = match table.storage() {
            CpuStorage::F32(v) => gather::embedding(v, h, ids_v),
            CpuStorage::F16(v) => gather::embedding(v, h, ids_v),
            CpuStorage::BF16(v) => gather::embedding(v, h, ids_v),
            CpuStorage::Blocks { dtype, bytes } => {
                gather::embedding_blocks(*dtype, bytes, h, ids_v)
            }
            CpuStorage::U32(_) => return Err(unsupported(Op::Embedding, DType::U32)),
        };
        Ok(tensor(CpuStorage::F32(out), Shape::new([ids_v.len(), h])))
    }

    fn rms_norm_impl(&self, x: &T, residual: Option<&mut T>, weight: &T, eps: f32) -> Result<T> {
        let xv = f32s(x, Op::RmsNorm)?;
        let wv = f32s(weight, Op::RmsNorm)?;
        let res = match residual {
            Some(r) => Some(f32s_mut(r, Op::RmsNorm)?),
            None => None,
        };
        let out = self.run(|| norm::rms_norm(xv, res, wv, eps));
        Ok(tensor(CpuStorage::F32(out), x.shape().clone()))
    }

    fn matmul_impl(&self, x: &T, w: &T, bias: Option<&T>) -> Result<T> {
        let (t, k, n) = (x.dims()[0], x.dims()[1], w.dims()[0]);
        let xv = f32s(x, Op::Matmul)?;
        let bv = bias.map(|b| f32s(b, Op::Matmul)).transpose()?;
        let isa = self.isa;
        let wts = weights_of(w, Op::Matmul)?;
        let mode = self.activations;
        let out = self.run(|| matmul::matmul(isa, mode, xv, wts, bv, t, k, n));
        Ok(tensor(CpuStorage::F32(out), Shape::new([t, n])))
    }

    fn rope_impl(
        &self,
        q: &mut T,
        k: &mut T,
        positions: &T,
        inv_freq: &T,
        style: RopeStyle,
    ) -> Result<()> {
        let d = q.dims()[2];
        let pos = u32s(positions);
        let freq = f32s(inv_freq, Op::Rope)?;
        let qv = f32s_mut(q, Op::Rope)?;
        let kv = f32s_mut(k, Op::Rope)?;
        self.run(|| rope::rope(qv, kv, d, pos, freq, style));
        Ok(())
    }

    fn kv_write_impl(
        &self,
        k: &T,
        v: &T,
        k_cache: &mut T,
        v_cache: &mut T,
        slot_mapping: &T,
    ) -> Result<()> {
        let dims = cache_dims(k_cache);
        let (kv, vv) = (f32s(k, Op::KvWrite)?, f32s(v, Op::KvWrite)?);
        let slots = u32s(slot_mapping);
        match (k_cache.storage_mut(), v_cache.storage_mut()) {
            (CpuStorage::F32(kc), CpuStorage::F32(vc)) => {
                attention::kv_write(dims, kv, vv, kc, vc, slots)
            }
            (CpuStorage::F16(kc), CpuStorage::F16(vc)) => {
                attention::kv_write(dims, kv, vv, kc, vc, slots)
            }
            (kc, _) => return Err(unsupported(Op::KvWrite, kc.dtype())),
        }
        Ok(())
    }

    fn paged_attention_impl(
        &self,
        q: &T,
        k_cache: &T,
        v_cache: &T,
        meta: &AttentionMeta<'_, Self>,
        params: AttentionParams,
    ) -> Result<T> {
        let dims = cache_dims(k_cache);
        let qv = f32s(q, Op::PagedAttention)?;
        let varlen = attention::Varlen {
            block_tables: u32s(meta.block_tables),
            max_blocks: meta.block_tables.dims()[1],
            seq_lens: u32s(meta.seq_lens),
            query_start_loc: u32s(meta.query_start_loc),
            max_seq_len: meta.max_seq_len,
        };
        let hq = q.dims()[1];
        let isa = self.isa;
        let (scale, window) = (params.scale, params.sliding_window);
        let out = match (k_cache.storage(), v_cache.storage()) {
            (CpuStorage::F32(kc), CpuStorage::F32(vc)) => self.run(|| {
                attention::paged_attention(isa, dims, qv, hq, kc, vc, &varlen, scale, window)
            }),
            (CpuStorage::F16(kc), CpuStorage::F16(vc)) => self.run(|| {
                attention::paged_attention(isa, dims, qv, hq, kc, vc, &varlen, scale, window)
            }),
            (kc, _) => return Err(unsupported(Op::PagedAttention, kc.dtype())),
        };
        Ok(tensor(CpuStorage::F32(out), q.shape().clone()))
    }

    fn matmul_add_impl(&self, x: &T, w: &T, bias: Option<&T>, residual: &mut T) -> Result<()> {
        let y = self.matmul(x, w, bias)?;
        let yv = f32s(&y, Op::Matmul)?;
        let rv = f32s_mut(residual, Op::Matmul)?;
        self.run(|| fused::add_into(rv, yv));
        Ok(())
    }

    fn matmul_silu_mul_impl(&self, x: &T, w: &T) -> Result<T> {
        let gate_up = self.matmul(x, w, None)?; // [T, 2I]
        self.silu_mul(&gate_up)
    }

    fn rope_kv_write_impl(
        &self,
        qkv: &T,
        heads: QkvHeads,
        positions: &T,
        inv_freq: &T,
        style: RopeStyle,
        k_cache: &mut T,
        v_cache: &mut T,
        slot_mapping: &T,
    ) -> Result<T> {
        let (t, hq, hk, d) = (
            qkv.dims()[0],
            heads.num_heads,
            heads.num_kv_heads,
            heads.head_dim,
        );
        let [q, k, v] = fused::split_qkv(f32s(qkv, Op::Rope)?, hq * d, hk * d);
        let mut q = tensor(CpuStorage::F32(q), Shape::new([t, hq, d]));
        let mut k = tensor(CpuStorage::F32(k), Shape::new([t, hk, d]));
        let v = tensor(CpuStorage::F32(v), Shape::new([t, hk, d]));
        self.rope(&mut q, &mut k, positions, inv_freq, style)?;
        self.kv_write(&k, &v, k_cache, v_cache, slot_mapping)?;
        Ok(q)
    }

    fn silu_mul_impl(&self, x: &T) -> Result<T> {
        let (t, two_i) = (x.dims()[0], x.dims()[1]);
        let xv = f32s(x, Op::SiluMul)?;
        let out = self.run(|| pointwise::silu_mul(xv, two_i));
        Ok(tensor(CpuStorage::F32(out), Shape::new([t, two_i / 2])))
    }

    fn gelu_tanh_mul_impl(&self, x: &T) -> Result<T> {
        let (t, two_i) = (x.dims()[0], x.dims()[1]);
        let xv = f32s(x, Op::GeluTanhMul)?;
        let out = self.run(|| pointwise::gelu_tanh_mul(xv, two_i));
        Ok(tensor(CpuStorage::F32(out), Shape::new([t, two_i / 2])))
    }

    fn scale_impl(&self, x: &T, s: f32) -> Result<T> {
        let xv = f32s(x, Op::Scale)?;
        let out = self.run(|| pointwise::scale(xv, s));
        Ok(tensor(CpuStorage::F32(out), x.shape().clone()))
    }

    fn gather_rows_impl(&self, x: &T, idx: &T) -> Result<T> {
        let h = x.dims()[1];
        let iv = u32s(idx);
        let storage = match x.storage() {
            CpuStorage::F32(v) => CpuStorage::F32(gather::gather_rows(v, h, iv, f32::NAN)),
            CpuStorage::F16(v) => CpuStorage::F16(gather::gather_rows(v, h, iv, f16::NAN)),
            CpuStorage::BF16(v) => CpuStorage::BF16(gather::gather_rows(v, h, iv, bf16::NAN)),
            CpuStorage::U32(v) => CpuStorage::U32(gather::gather_rows(v, h, iv, u32::MAX)),
            s @ CpuStorage::Blocks { .. } => return Err(unsupported(Op::GatherRows, s.dtype())),
        };
        Ok(tensor(storage, Shape::new([iv.len(), h])))
    }

    fn add_impl(&self, a: &T, b: &T) -> Result<T> {
        let (av, bv) = (f32s(a, Op::Add)?, f32s(b, Op::Add)?);
        let out = self.run(|| pointwise::add(av, bv));
        Ok(tensor(CpuStorage::F32(out), a.shape().clone()))
    }

    fn argmax_impl(&self, logits: &T) -> Result<T> {
        let (t, v) = (logits.dims()[0], logits.dims()[1]);
        let lv = f32s(logits, Op::Argmax)?;
        let out = self.run(|| pointwise::argmax(lv, v));
        Ok(tensor(CpuStorage::U32(out), Shape::new([t])))
    }

    fn mask_logits_impl(&self, logits: &T, mask: &T) -> Result<T> {
        let v = logits.dims()[1];
        let mut out = f32s(logits, Op::MaskLogits)?.to_vec();
        let bits = u32s(mask);
        let w = ingot_tensor::sampling::mask_words(v);
        if v > 0 {
            for (row, m) in out.chunks_mut(v).zip(bits.chunks(w)) {
                ingot_tensor::sampling::mask_row(row, m);
            }
        }
        Ok(tensor(CpuStorage::F32(out), logits.shape().clone()))
    }

    fn sample_impl(&self, logits: &T, params: &T) -> Result<T> {
        let (t, v) = (logits.dims()[0], logits.dims()[1]);
        let lv = f32s(logits, Op::Sample)?;
        let pv = u32s(params);
        let out = self.run(|| sample::sample(lv, v, pv));
        Ok(tensor(CpuStorage::U32(out), Shape::new([t])))
    }

    fn moe_route_impl(&self, logits: &T, routing: MoeRouting) -> Result<MoeRoutes<Self>> {
        let (t, e) = (logits.dims()[0], logits.dims()[1]);
        let lv = f32s(logits, Op::MoeRoute)?;
        let (ids, weights) = self.run(|| moe::route(lv, e, routing));
        let shape = Shape::new([t, routing.top_k]);
        Ok(MoeRoutes {
            ids: tensor(CpuStorage::U32(ids), shape.clone()),
            weights: tensor(CpuStorage::F32(weights), shape),
        })
    }

    fn moe_experts_add_impl(
        &self,
        x: &T,
        routes: &MoeRoutes<Self>,
        experts: MoeExperts<'_, Self>,
        shared: Option<MoeShared<'_, Self>>,
        residual: &mut T,
    ) -> Result<()> {
        let gu = experts.gate_up.dims();
        let dims = moe::Dims {
            tokens: x.dims()[0],
            top_k: routes.ids.dims()[1],
            experts: gu[0],
            hidden: gu[2],
            inner: gu[1] / 2,
        };
        let xv = f32s(x, Op::MoeExperts)?;
        let stack = moe::Stack {
            gate_up: weights_of(experts.gate_up, Op::MoeExperts)?,
            down: weights_of(experts.down, Op::MoeExperts)?,
        };
        let shared = match &shared {
            Some(s) => Some(moe::Shared {
                out: f32s(s.out, Op::MoeExperts)?,
                gate: s.gate.map(|g| f32s(g, Op::MoeExperts)).transpose()?,
            }),
            None => None,
        };
        let ids = u32s(&routes.ids);
        let wv = f32s(&routes.weights, Op::MoeExperts)?;
        let rv = f32s_mut(residual, Op::MoeExperts)?;
        let (isa, mode) = (self.isa, self.activations);
        self.run(|| moe::experts_add(isa, mode, &dims, xv, ids, wv, &stack, shared, rv));
        Ok(())
    }

    fn top_logprobs_impl(&self, logits: &T, tokens: &T, k: usize) -> Result<T> {
        let (t, v) = (logits.dims()[0], logits.dims()[1]);
        let lv = f32s(logits, Op::TopLogprobs)?;
        let tv = u32s(tokens);
        let out = self.run(|| sample::top_logprobs(lv, v, tv, k));
        Ok(tensor(
            CpuStorage::F32(out),
            Shape::new([t, ingot_tensor::sampling::top_logprobs_width(k)]),
        ))
    }
}

/// The geometry of a `[num_blocks, num_kv_heads, block_size, head_dim]` cache.
fn cache_dims(cache: &T) -> attention::CacheDims {
    let d = cache.dims();
    attention::CacheDims {
        num_blocks: d[0],
        num_kv_heads: d[1],
        block_size: d[2],
        head_dim: d[3],
    }
}

#[cfg(test)]
mod tests {
    use super::lanes;

    /// The portable lane order matches its documented tree on a hand-checkable case.
    #[test]
    fn hsum_tree_order() {
        // Values chosen so that the sum depends on association: 1e8 + 1 - 1e8.
        let a = [1e8, 1.0, 0.0, 0.0, -1e8, 0.0, 0.0, 0.0];
        // (a0 + a4) = 0 exactly, then + a1 = 1; a left-to-right sum would give 0.
        assert_eq!(lanes::hsum(a), 1.0);
        let x: Vec<f32> = (0..13).map(|i| i as f32 * 0.5).collect();
        let naive: f32 = x.iter().map(|v| v * v).sum();
        assert!((lanes::sum_sq(&x) - naive).abs() <= 1e-5 * naive);
    }
}
