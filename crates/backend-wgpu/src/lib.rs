//! The GPU backend: every verb of [`ingot_tensor::Backend`] as a WGSL compute kernel run
//! through wgpu, so the same kernels run on Metal (translated to MSL by naga), Vulkan
//! (NVIDIA, AMD, Intel, and Mesa's lavapipe, which is how CI executes them) and DX12
//! (DESIGN.md §5).
//!
//! Layout: `adapters.rs` lists the adapters and picks one; `device/` reads what the
//! adapter offers, opens the device, captures errors, keeps the
//! caches and the buffer pool and owns the pending command encoder (a module per concern);
//! `storage.rs` is a tensor's buffer (or buffers, for a weight
//! larger than one storage binding); `kernels/` holds the pipeline cache and one launcher
//! per kernel family; `shaders/` the WGSL, one file per family; `params.rs` the uniform
//! structs mirrored in WGSL.
//!
//! Numerics: activations are f32; matmul, embedding and MoE expert weights may be f32, f16
//! or bf16 (widened exactly in the shader, accumulated in f32) or GGUF blocks (Q8_0, Q4_0,
//! Q4_1, Q5_0, Q4_K, Q6_K, repacked word-aligned at upload by `blocks.rs` and decoded in
//! registers to exactly the CPU dequantizer's values); KV caches f32 or f16 (rounded to
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
mod blocks;
mod device;
pub mod kernels;
pub mod params;
mod storage;

pub use adapters::{AdapterChoice, AdapterEntry};
pub use device::{AdapterSummary, WgpuOptions};
pub use kernels::attention::{AttentionSplit, use_split};
pub use kernels::{ShaderModuleSource, shader_modules};
pub use storage::WgpuStorage;

use std::sync::Arc;

use ingot_tensor::backend::Result;
use ingot_tensor::moe::MoeRouting;
use ingot_tensor::{
    AttentionMeta, AttentionParams, Backend, BackendError, Counters, DType, MoeExperts, MoeRoutes,
    MoeShared, Op, QkvHeads, RopeStyle, Shape, Tensor, check,
};

use device::{Capabilities, Gpu};
use kernels::Pipelines;

type T = Tensor<WgpuBackend>;

/// Uploads up to this size take a pooled buffer (see `WgpuBackend::upload`); weights, far
/// larger, keep buffers of their own.
const POOLED_UPLOAD_MAX_BYTES: usize = 1 << 20;

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
        let adapter = adapters::pick(
            &adapters::new_instance(),
            &opts.adapter,
            opts.allow_software,
        )
        .map_err(BackendError::Device)?;
        let caps = Capabilities::of(&adapter);
        let coop = kernels::matmul_coop::choose(&caps);
        let gpu = Gpu::open(&adapter, &caps, &opts, coop)?;
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
        self.attention(q, k_cache, v_cache, meta, params, split)
    }

    /// `paged_attention` on path `split`, after its checks.
    fn attention(
        &self,
        q: &T,
        k_cache: &T,
        v_cache: &T,
        meta: &AttentionMeta<'_, Self>,
        params: AttentionParams,
        split: AttentionSplit,
    ) -> Result<T> {
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

    /// Uploads encoded elements, split into parts when larger than one binding. Small
    /// tensors (a step's ids, positions, slots, block tables) go into a pooled buffer, so
    /// that every step binds the same few buffers and finds its bind groups cached (a fresh
    /// buffer per upload made every kernel reading it a bind group miss, and the buffers
    /// released for good made the cache sweep itself). The pending commands are submitted
    /// first: a pooled buffer may still be read by commands recorded earlier, and a queue
    /// write lands before the commands of the next submission.
    fn upload(&self, bytes: &[u8], shape: Shape, dtype: DType) -> Result<T> {
        let plan = storage::plan(&shape, dtype, self.gpu.split_bytes)?;
        if bytes.len() <= POOLED_UPLOAD_MAX_BYTES && plan.len() == 1 {
            let buffer = self.gpu.output(bytes.len() as u64, "upload")?;
            self.gpu.flush()?;
            let mut padded = bytes.to_vec();
            padded.resize(buffer.size() as usize, 0);
            self.gpu.queue.write_buffer(&buffer, 0, &padded);
            let rows = storage::rows_of(&shape).0;
            let storage = WgpuStorage::single(self.gpu.clone(), buffer, rows);
            return Ok(Tensor::from_parts(storage, shape, dtype));
        }
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

/// The adapter [`WgpuBackend::new`] would choose, without opening a device (for
/// `--backend auto`).
pub fn probe(allow_software: bool) -> Option<AdapterSummary> {
    let instance = adapters::new_instance();
    let adapter = adapters::pick(&instance, &AdapterChoice::Best, allow_software).ok()?;
    let caps = Capabilities::of(&adapter);
    let coop = kernels::matmul_coop::choose(&caps);
    Some(AdapterSummary::new(&caps, coop))
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

    fn from_f32_impl(&self, data: &[f32], shape: Shape, dtype: DType) -> Result<T> {
        self.upload(&storage::encode(data, dtype), shape, dtype)
    }

    fn from_u32_impl(&self, data: &[u32], shape: Shape) -> Result<T> {
        self.upload(bytemuck::cast_slice(data), shape, DType::U32)
    }

    /// Matmul and embedding read Q8_0, Q4_0, Q4_1, Q5_0, Q4_K and Q6_K blocks.
    fn reads_blocks(&self, dtype: DType) -> bool {
        kernels::quant_index(dtype).is_some()
    }

    /// `moe_experts_add` reads expert stacks in the same formats as matmul.
    fn reads_expert_blocks(&self, dtype: DType) -> bool {
        kernels::quant_index(dtype).is_some()
    }

    /// Each part (whole rows of a matrix, whole experts of a stack [E, N, K], split as dense
    /// weights are) repacked into `blocks.rs`'s word-aligned planes, which take the blocks'
    /// own bytes plus up to 15 of padding (kept below the split size).
    fn from_blocks_impl(&self, bytes: &[u8], shape: Shape, dtype: DType) -> Result<T> {
        let Some(qi) = kernels::quant_index(dtype) else {
            return Err(unsupported(Op::Matmul, dtype));
        };
        // The format's pipelines, built on its first upload (a rejected shader fails here).
        self.pipelines.quant(&self.gpu, qi)?;
        // Parts are whole rows of a matrix [N, K] or whole experts of a stack [E, N, K]; each
        // part is repacked as a matrix of rows of K weights (an expert's N rows in a row).
        let (rows, per_row) = storage::rows_of(&shape);
        let k = *shape.dims().last().expect("checked: a matrix or a stack");
        let row_bytes = dtype
            .storage_bytes(per_row)
            .expect("checked: whole blocks per row");
        let limit = self.gpu.split_bytes.saturating_sub(16);
        let plan = storage::plan_rows(&shape, rows, row_bytes as u64, limit)?;
        let parts = plan
            .into_iter()
            .map(|(first_row, rows)| {
                let chunk = &bytes[first_row * row_bytes..(first_row + rows) * row_bytes];
                Ok(storage::Part {
                    buffer: self.gpu.upload(
                        &blocks::repack(dtype, chunk, k / dtype.block_size()),
                        "blocks",
                    )?,
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

    fn to_f32_impl(&self, t: &T) -> Result<Vec<f32>> {
        Ok(storage::decode(&self.download(t)?, t.dtype()))
    }

    fn to_u32_impl(&self, t: &T) -> Result<Vec<u32>> {
        Ok(bytemuck::pod_collect_to_vec(&self.download(t)?))
    }

    fn embedding_impl(&self, table: &T, ids: &T) -> Result<T> {
        kernels::embedding::embedding(self, &self.pipelines, table, ids)
    }

    fn rms_norm_impl(&self, x: &T, residual: Option<&mut T>, weight: &T, eps: f32) -> Result<T> {
        f32_only(Op::RmsNorm, &[x, weight])?;
        kernels::norm::rms_norm(self, &self.pipelines, x, residual, weight, eps)
    }

    fn matmul_impl(&self, x: &T, w: &T, bias: Option<&T>) -> Result<T> {
        f32_only(Op::Matmul, &[x])?;
        if let Some(b) = bias {
            f32_only(Op::Matmul, &[b])?;
        }
        kernels::matmul::matmul(self, &self.pipelines, x, w, bias)
    }

    fn rope_impl(
        &self,
        q: &mut T,
        k: &mut T,
        positions: &T,
        inv_freq: &T,
        style: RopeStyle,
    ) -> Result<()> {
        f32_only(Op::Rope, &[q, k])?;
        kernels::rope::rope(self, &self.pipelines, q, k, positions, inv_freq, style)
    }

    fn kv_write_impl(
        &self,
        k: &T,
        v: &T,
        k_cache: &mut T,
        v_cache: &mut T,
        slot_mapping: &T,
    ) -> Result<()> {
        f32_only(Op::KvWrite, &[k, v])?;
        kernels::attention::kv_write(self, &self.pipelines, k, v, k_cache, v_cache, slot_mapping)
    }

    fn paged_attention_impl(
        &self,
        q: &T,
        k_cache: &T,
        v_cache: &T,
        meta: &AttentionMeta<'_, Self>,
        params: AttentionParams,
    ) -> Result<T> {
        self.attention(q, k_cache, v_cache, meta, params, AttentionSplit::Auto)
    }

    fn matmul_add_impl(&self, x: &T, w: &T, bias: Option<&T>, residual: &mut T) -> Result<()> {
        f32_only(Op::Matmul, &[x])?;
        if let Some(b) = bias {
            f32_only(Op::Matmul, &[b])?;
        }
        kernels::matmul::matmul_add(self, &self.pipelines, x, w, bias, residual)
    }

    fn matmul_silu_mul_impl(&self, x: &T, w: &T) -> Result<T> {
        f32_only(Op::Matmul, &[x])?;
        kernels::matmul::matmul_silu_mul(self, &self.pipelines, x, w)
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
        kernels::rope_kv::rope_kv_write(
            self,
            &self.pipelines,
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

    fn silu_mul_impl(&self, x: &T) -> Result<T> {
        f32_only(Op::SiluMul, &[x])?;
        kernels::pointwise::silu_mul(self, &self.pipelines, x)
    }

    fn gelu_tanh_mul_impl(&self, x: &T) -> Result<T> {
        f32_only(Op::GeluTanhMul, &[x])?;
        kernels::pointwise::gelu_tanh_mul(self, &self.pipelines, x)
    }

    fn scale_impl(&self, x: &T, s: f32) -> Result<T> {
        f32_only(Op::Scale, &[x])?;
        kernels::pointwise::scale(self, &self.pipelines, x, s)
    }

    fn gather_rows_impl(&self, x: &T, idx: &T) -> Result<T> {
        kernels::pointwise::gather_rows(self, &self.pipelines, x, idx)
    }

    fn add_impl(&self, a: &T, b: &T) -> Result<T> {
        f32_only(Op::Add, &[a, b])?;
        kernels::pointwise::add(self, &self.pipelines, a, b)
    }

    fn argmax_impl(&self, logits: &T) -> Result<T> {
        f32_only(Op::Argmax, &[logits])?;
        kernels::sample::argmax(self, &self.pipelines, logits)
    }

    fn sample_impl(&self, logits: &T, params: &T) -> Result<T> {
        f32_only(Op::Sample, &[logits])?;
        kernels::sample::sample(self, &self.pipelines, logits, params)
    }

    fn top_logprobs_impl(&self, logits: &T, tokens: &T, k: usize) -> Result<T> {
        f32_only(Op::TopLogprobs, &[logits])?;
        kernels::sample::top_logprobs(self, &self.pipelines, logits, tokens, k)
    }

    fn moe_route_impl(&self, logits: &T, routing: MoeRouting) -> Result<MoeRoutes<Self>> {
        f32_only(Op::MoeRoute, &[logits])?;
        kernels::moe::route(self, &self.pipelines, logits, routing)
    }

    fn moe_experts_add_impl(
        &self,
        x: &T,
        routes: &MoeRoutes<Self>,
        experts: MoeExperts<'_, Self>,
        shared: Option<MoeShared<'_, Self>>,
        residual: &mut T,
    ) -> Result<()> {
        f32_only(Op::MoeExperts, &[x])?;
        kernels::moe::experts_add(self, &self.pipelines, x, routes, experts, shared, residual)
    }

    fn mask_logits_impl(&self, logits: &T, mask: &T) -> Result<T> {
        f32_only(Op::MaskLogits, &[logits])?;
        kernels::mask::mask_logits(self, &self.pipelines, logits, mask)
    }

    /// Sampled rows take their token from `sample.wgsl`, so a decode step reads back ids.
    fn samples_on_device(&self) -> bool {
        true
    }

    /// Submits everything recorded without waiting (the forward pass runs while the runner
    /// computes structured-output masks).
    fn flush(&self) -> Result<()> {
        self.gpu.flush()
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
