//! The GPU backend: every verb of [`ingot_tensor::Backend`] as a WGSL compute kernel run
//! through wgpu, so the same kernels run on Metal (translated to MSL by naga), Vulkan
//! (NVIDIA, AMD, Intel, and Mesa's lavapipe, which is how CI executes them) and DX12
//! (DESIGN.md §5).
//!
//! Layout: `adapters.rs` lists the adapters and picks one; `device.rs` opens the device,
//! captures errors and owns the pending command encoder; `storage.rs` is a tensor's buffer
//! (or buffers, for a weight larger than one storage binding); `kernels/` holds the
//! pipeline cache and one launcher per kernel family; `shaders/` the WGSL, one file per
//! family; `params.rs` the uniform structs mirrored in WGSL.
//!
//! Numerics: activations are f32; matmul and embedding weights may be f32, f16 or bf16
//! (widened exactly in the shader, accumulated in f32); KV caches f32 or f16 (rounded to
//! nearest even when written, widened exactly when read). Every reduction has one order that
//! depends only on its length (matmul: fixed K chunks, whichever kernel runs; rms_norm: a
//! fixed tree over 256 invocations; attention: fixed 64-position chunks and 256-position
//! groups of absolute position, whether or not the context is split over workgroups), so a
//! row's result is bit-identical alone or in any batch (batch invariance). The CPU backend
//! is the reference; the results agree to ~1e-5 relative, not bitwise.
//!
//! Shapes and dtypes are checked on the host with `ingot_tensor::check` before any
//! dispatch. Index tensors (ids, slots, block tables) are not read back to be validated:
//! out-of-range values give NaN rows or are skipped, never reads of other memory.

pub mod adapters;
mod device;
pub mod kernels;
pub mod params;
mod storage;

pub use adapters::{AdapterChoice, AdapterEntry};
pub use device::{AdapterSummary, WgpuOptions, probe};
pub use kernels::attention::{AttentionSplit, use_split};
pub use kernels::{ShaderModuleSource, shader_modules};
pub use storage::WgpuStorage;

use std::sync::Arc;

use ingot_tensor::backend::Result;
use ingot_tensor::{
    AttentionMeta, AttentionParams, Backend, BackendError, Counters, DType, Op, RopeStyle, Shape,
    Tensor, check,
};

use device::Gpu;
use kernels::Pipelines;

type T = Tensor<WgpuBackend>;

/// The GPU backend. Cheap to clone: clones share the device, queue and pipelines.
#[derive(Clone)]
pub struct WgpuBackend {
    gpu: Arc<Gpu>,
    pipelines: Arc<Pipelines>,
}

impl std::fmt::Debug for WgpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgpuBackend")
            .field("adapter", &self.gpu.summary.name)
            .finish()
    }
}

impl WgpuBackend {
    /// Opens the best adapter (see [`WgpuOptions`]) and builds every pipeline. Fails when no
    /// acceptable adapter exists or a shader is rejected.
    pub fn new(opts: WgpuOptions) -> Result<Self> {
        let gpu = Gpu::open(&opts)?;
        let pipelines = Pipelines::build(&gpu)?;
        tracing::info!("GPU backend on {}", gpu.summary);
        Ok(Self {
            gpu: Arc::new(gpu),
            pipelines: Arc::new(pipelines),
        })
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.gpu.summary
    }

    /// Largest tensor, in bytes, that a verb accepts as one buffer (activations, KV caches);
    /// only weights above it are split. Size KV caches per layer below this.
    pub fn max_binding_bytes(&self) -> u64 {
        self.gpu.max_binding
    }

    /// Compute dispatches recorded since the backend opened (shared by clones): the
    /// difference around a forward pass is its dispatch count.
    pub fn dispatch_count(&self) -> u64 {
        self.gpu.dispatched()
    }

    /// Submits all recorded work without waiting for it (read-backs submit by themselves).
    pub fn flush(&self) -> Result<()> {
        self.gpu.flush()
    }

    /// Submits all recorded work and waits for the GPU to finish it; reports any failure.
    pub fn sync(&self) -> Result<()> {
        self.gpu.sync()
    }

    /// Destroys the device, as a driver reset or a GPU taken away would: every later verb
    /// fails with the device-lost error. For fault-injection tests of the layers above
    /// (engine, server); nothing else calls it.
    pub fn lose_device(&self) {
        self.gpu.device.destroy();
    }

    /// `paged_attention` with the split-KV path chosen by `split` instead of by
    /// [`use_split`] (tests and benchmarks; the results are the same bits either way).
    pub fn paged_attention_split(
        &self,
        q: &T,
        k_cache: &T,
        v_cache: &T,
        meta: &AttentionMeta<'_, Self>,
        params: AttentionParams,
        split: AttentionSplit,
    ) -> Result<T> {
        check::paged_attention(q, k_cache, v_cache, meta, &params);
        f32_only(Op::PagedAttention, &[q])?;
        kernels::attention::paged_attention(
            self,
            &self.pipelines,
            q,
            k_cache,
            v_cache,
            meta,
            params,
            split,
        )
    }

    /// A fresh single-part f32 tensor for a verb's output (poisoned if the options say).
    fn output(&self, shape: Shape, label: &str) -> Result<T> {
        self.output_typed(shape, DType::F32, label)
    }

    fn output_typed(&self, shape: Shape, dtype: DType, label: &str) -> Result<T> {
        let bytes = (shape.numel() * dtype.size_in_bytes()) as u64;
        let buffer = self.gpu.output(bytes, label)?;
        let rows = storage::rows_of(&shape).0;
        Ok(Tensor::from_parts(
            WgpuStorage::single(self.gpu.clone(), buffer, rows),
            shape,
            dtype,
        ))
    }

    /// Uploads encoded elements, split into parts when larger than one binding.
    fn upload(&self, bytes: &[u8], shape: Shape, dtype: DType) -> Result<T> {
        let plan = storage::plan(&shape, dtype, self.gpu.split_bytes)?;
        let per_row = storage::rows_of(&shape).1 * dtype.size_in_bytes();
        let parts = plan
            .into_iter()
            .map(|(first_row, rows)| {
                let chunk = &bytes[first_row * per_row..(first_row + rows) * per_row];
                Ok(storage::Part {
                    buffer: self.gpu.upload(chunk, "tensor")?,
                    first_row,
                    rows,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let storage = WgpuStorage {
            parts,
            home: self.gpu.clone(),
        };
        Ok(Tensor::from_parts(storage, shape, dtype))
    }

    /// The raw little-endian bytes of a tensor, parts concatenated.
    fn download(&self, t: &T) -> Result<Vec<u8>> {
        let per_row = storage::rows_of(t.shape()).1 * t.dtype().size_in_bytes();
        let mut out = Vec::with_capacity(t.numel() * t.dtype().size_in_bytes());
        for part in &t.storage().parts {
            out.extend(self.gpu.read(&part.buffer, (part.rows * per_row) as u64)?);
        }
        Ok(out)
    }
}

fn unsupported(op: Op, dtype: DType) -> BackendError {
    BackendError::Unsupported {
        op,
        dtype,
        backend: "wgpu",
    }
}

/// `Unsupported` unless every tensor is f32 (the activation dtype of every verb).
fn f32_only(op: Op, ts: &[&T]) -> Result<()> {
    match ts.iter().find(|t| t.dtype() != DType::F32) {
        Some(t) => Err(unsupported(op, t.dtype())),
        None => Ok(()),
    }
}

impl Backend for WgpuBackend {
    type Storage = WgpuStorage;

    fn name(&self) -> &'static str {
        "wgpu"
    }

    fn supports(&self, op: Op, dtype: DType) -> bool {
        match op {
            Op::Matmul | Op::Embedding => dtype.is_float(),
            Op::GatherRows => !dtype.is_quantized(),
            // The KV cache dtype (activations are f32).
            Op::KvWrite | Op::PagedAttention => check::KV_CACHE_DTYPES.contains(&dtype),
            Op::RmsNorm
            | Op::Rope
            | Op::SiluMul
            | Op::Add
            | Op::Argmax
            | Op::Sample
            | Op::TopLogprobs => dtype == DType::F32,
        }
    }

    fn from_f32(&self, data: &[f32], shape: Shape, dtype: DType) -> Result<T> {
        check::upload("from_f32", data.len(), &shape);
        self.upload(&storage::encode(data, dtype), shape, dtype)
    }

    fn from_u32(&self, data: &[u32], shape: Shape) -> Result<T> {
        check::upload("from_u32", data.len(), &shape);
        self.upload(bytemuck::cast_slice(data), shape, DType::U32)
    }

    fn zeros(&self, shape: Shape, dtype: DType) -> Result<T> {
        let plan = storage::plan(&shape, dtype, self.gpu.split_bytes)?;
        let per_row = storage::rows_of(&shape).1 * dtype.size_in_bytes();
        let parts = plan
            .into_iter()
            .map(|(first_row, rows)| {
                Ok(storage::Part {
                    buffer: self.gpu.storage((rows * per_row) as u64, "zeros", false)?,
                    first_row,
                    rows,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let storage = WgpuStorage {
            parts,
            home: self.gpu.clone(),
        };
        Ok(Tensor::from_parts(storage, shape, dtype))
    }

    fn to_f32(&self, t: &T) -> Result<Vec<f32>> {
        check::to_f32(t);
        Ok(storage::decode(&self.download(t)?, t.dtype()))
    }

    fn to_u32(&self, t: &T) -> Result<Vec<u32>> {
        check::to_u32(t);
        Ok(bytemuck::pod_collect_to_vec(&self.download(t)?))
    }

    fn embedding(&self, table: &T, ids: &T) -> Result<T> {
        check::embedding(table, ids);
        kernels::embedding::embedding(self, &self.pipelines, table, ids)
    }

    fn rms_norm(&self, x: &T, residual: Option<&mut T>, weight: &T, eps: f32) -> Result<T> {
        check::rms_norm(x, residual.as_deref(), weight);
        f32_only(Op::RmsNorm, &[x, weight])?;
        kernels::norm::rms_norm(self, &self.pipelines, x, residual, weight, eps)
    }

    fn matmul(&self, x: &T, w: &T, bias: Option<&T>) -> Result<T> {
        check::matmul(x, w, bias);
        f32_only(Op::Matmul, &[x])?;
        if let Some(b) = bias {
            f32_only(Op::Matmul, &[b])?;
        }
        kernels::matmul::matmul(self, &self.pipelines, x, w, bias)
    }

    fn rope(
        &self,
        q: &mut T,
        k: &mut T,
        positions: &T,
        inv_freq: &T,
        style: RopeStyle,
    ) -> Result<()> {
        check::rope(q, k, positions, inv_freq);
        f32_only(Op::Rope, &[q, k])?;
        kernels::rope::rope(self, &self.pipelines, q, k, positions, inv_freq, style)
    }

    fn kv_write(
        &self,
        k: &T,
        v: &T,
        k_cache: &mut T,
        v_cache: &mut T,
        slot_mapping: &T,
    ) -> Result<()> {
        check::kv_write(k, v, k_cache, v_cache, slot_mapping);
        f32_only(Op::KvWrite, &[k, v])?;
        kernels::attention::kv_write(self, &self.pipelines, k, v, k_cache, v_cache, slot_mapping)
    }

    fn paged_attention(
        &self,
        q: &T,
        k_cache: &T,
        v_cache: &T,
        meta: &AttentionMeta<'_, Self>,
        params: AttentionParams,
    ) -> Result<T> {
        self.paged_attention_split(q, k_cache, v_cache, meta, params, AttentionSplit::Auto)
    }

    fn silu_mul(&self, x: &T) -> Result<T> {
        check::silu_mul(x);
        f32_only(Op::SiluMul, &[x])?;
        kernels::pointwise::silu_mul(self, &self.pipelines, x)
    }

    fn gather_rows(&self, x: &T, idx: &T) -> Result<T> {
        check::gather_rows(x, idx);
        kernels::pointwise::gather_rows(self, &self.pipelines, x, idx)
    }

    fn add(&self, a: &T, b: &T) -> Result<T> {
        check::add(a, b);
        f32_only(Op::Add, &[a, b])?;
        kernels::pointwise::add(self, &self.pipelines, a, b)
    }

    fn argmax(&self, logits: &T) -> Result<T> {
        check::argmax(logits);
        f32_only(Op::Argmax, &[logits])?;
        kernels::sample::argmax(self, &self.pipelines, logits)
    }

    fn sample(&self, logits: &T, params: &T) -> Result<T> {
        check::sample(logits, params);
        f32_only(Op::Sample, &[logits])?;
        kernels::sample::sample(self, &self.pipelines, logits, params)
    }

    fn top_logprobs(&self, logits: &T, tokens: &T, k: usize) -> Result<T> {
        check::top_logprobs(logits, tokens, k);
        f32_only(Op::TopLogprobs, &[logits])?;
        kernels::sample::top_logprobs(self, &self.pipelines, logits, tokens, k)
    }

    /// Sampled rows take their token from `sample.wgsl`, so a decode step reads back ids.
    fn samples_on_device(&self) -> bool {
        true
    }

    /// Submits everything recorded and waits for the GPU; reports a validation error or
    /// device loss recorded since the backend opened. Read-backs do the same by themselves.
    fn sync(&self) -> Result<()> {
        self.gpu.sync()
    }

    /// [`WgpuBackend::max_binding_bytes`]: activations and KV caches are one buffer each.
    fn counters(&self) -> Counters {
        Counters {
            dispatches: self.gpu.dispatched(),
            wait_seconds: self.gpu.waited_seconds(),
        }
    }

    fn max_tensor_bytes(&self) -> u64 {
        // Tensors above the split size are stored in parts, which only weights may be.
        self.gpu.split_bytes
    }
}
