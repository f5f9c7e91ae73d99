//! Adapter choice, device creation, error capture and command submission.
//!
//! Adapter: the one [`WgpuOptions::adapter`] names (`--device`), else the best of what wgpu
//! enumerates on the native backends (Vulkan, Metal, DX12): a discrete GPU, then an
//! integrated one, then a virtual one; a CPU/software adapter (lavapipe, WARP) only when
//! asked for, through [`WgpuOptions::allow_software`] or the environment variable
//! `INGOT_WGPU_ALLOW_SOFTWARE=1` (`adapters.rs` has the rule). The device takes the adapter's own
//! limits (so a large embedding fits where the hardware allows) and the optional features
//! SHADER_F16 and SUBGROUP when present, plus EXPERIMENTAL_COOPERATIVE_MATRIX when the
//! cooperative-matrix matmul will run (`kernels::matmul_coop::choose`: a 16x16x16 or
//! 8x8x8 f16 -> f32 configuration, 32-wide subgroups); every kernel has a path that needs
//! none of them.
//!
//! Errors: wgpu reports validation errors, out-of-memory and device loss asynchronously.
//! Allocations and pipeline creation run inside error scopes and turn what they catch into
//! a [`BackendError`] at once; anything else lands in the uncaptured-error handler or the
//! device-lost callback, which record the first failure. From then on every verb and every
//! read-back returns that failure: a step on a broken device fails, it never yields numbers.
//!
//! Submission: verbs record their dispatches into one compute pass of one pending command
//! encoder, submitted when a read-back needs results or after [`FLUSH_EVERY`] dispatches, so
//! the GPU starts on a long step while the CPU is still encoding it (GPU-NOTES: submitting
//! every ~30 dispatches overlapped encoding with execution on the H100). Buffers and tensors
//! dropped while commands still use them stay alive until those commands finish (wgpu
//! refcounts). Host cost per dispatch is what limits small-batch decode (a step is ~300-400
//! dispatches), so parameter uniforms are made once per distinct content and shared, and
//! each pipeline's bind group layout is fetched once.
//!
//! Buffer pool: allocating device memory costs far more than a small kernel (on the H100 a
//! fresh 64 MiB output cost milliseconds), and a decode step allocates the same sizes
//! every time. A dropped tensor's buffers go to a pool keyed by exact size (bounded in
//! bytes and per size) and the next verb output of that size takes one. Reuse is safe
//! without waiting for the GPU: the buffer is only ever written again by commands recorded
//! later, which the queue runs after every earlier use (wgpu orders passes on one queue);
//! host uploads never go to pooled buffers. With `poison_outputs` nothing is reused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ingot_tensor::BackendError;
use ingot_tensor::backend::Result;
use wgpu::util::DeviceExt;

use crate::adapters::{AdapterChoice, new_instance, pick};

/// Dispatches recorded before the pending encoder is submitted.
const FLUSH_EVERY: usize = 32;

/// Bytes of freed buffers kept for reuse, and buffers kept per size.
const POOL_MAX_BYTES: u64 = 1 << 30;
const POOL_MAX_PER_SIZE: usize = 16;

/// How to open the GPU backend.
#[derive(Clone, Debug, Default)]
pub struct WgpuOptions {
    /// Accept a CPU/software adapter (lavapipe) when no GPU exists.
    pub allow_software: bool,
    /// Split tensors above this many bytes into parts even if the adapter allows more
    /// (tests use it to exercise splitting on small tensors). `None`: the adapter's
    /// `max_storage_buffer_binding_size`.
    pub max_binding_bytes: Option<u64>,
    /// Fill every buffer a verb allocates for its output with all-ones bits (NaN,
    /// u32::MAX) before the kernel runs, so an element a kernel forgets shows up in tests.
    pub poison_outputs: bool,
    /// Which adapter to open (`--device`); see `adapters`.
    pub adapter: AdapterChoice,
}

impl WgpuOptions {
    /// Defaults, with `allow_software` from `INGOT_WGPU_ALLOW_SOFTWARE=1`.
    pub fn from_env() -> Self {
        Self {
            allow_software: std::env::var("INGOT_WGPU_ALLOW_SOFTWARE").is_ok_and(|v| v == "1"),
            ..Self::default()
        }
    }
}

/// What was chosen, for logs and test output.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: wgpu::Backend,
    pub device_type: wgpu::DeviceType,
    pub driver: String,
    pub shader_f16: bool,
    pub subgroups: bool,
    pub max_binding_bytes: u64,
    /// Every cooperative-matrix configuration the adapter reports (empty without the
    /// feature): `M x N x K`, A/B type, accumulator type.
    pub coop_configs: Vec<wgpu::CooperativeMatrixProperties>,
    /// The fragment edge of the cooperative-matrix matmul (16 on NVIDIA, 8 on Apple), or
    /// why it is off (see `kernels::matmul_coop::choose`).
    pub coop_matmul: std::result::Result<u32, String>,
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let configs: Vec<String> = self
            .coop_configs
            .iter()
            .map(|c| {
                format!(
                    "{}x{}x{} {:?}->{:?}",
                    c.m_size, c.n_size, c.k_size, c.ab_type, c.cr_type
                )
            })
            .collect();
        let matmul = match &self.coop_matmul {
            Ok(f) => format!("{f}x{f} fragments"),
            Err(why) => why.clone(),
        };
        write!(
            f,
            "{} ({:?}, {:?}, driver {}; shader-f16 {}, subgroups {}, max binding {} MiB; \
             cooperative matrices [{}], matmul: {})",
            self.name,
            self.backend,
            self.device_type,
            self.driver,
            self.shader_f16,
            self.subgroups,
            self.max_binding_bytes >> 20,
            configs.join(", "),
            matmul
        )
    }
}

/// The adapter [`Gpu::open`] would choose, without opening a device (for `--backend auto`).
pub fn probe(allow_software: bool) -> Option<AdapterSummary> {
    let adapter = pick(&new_instance(), &AdapterChoice::Best, allow_software).ok()?;
    Some(summary(&adapter, adapter.features(), &adapter.limits()))
}

fn summary(adapter: &wgpu::Adapter, f: wgpu::Features, l: &wgpu::Limits) -> AdapterSummary {
    let info = adapter.get_info();
    let coop_configs = adapter.cooperative_matrix_properties();
    let coop_matmul = crate::kernels::matmul_coop::choose(&info, f, l, &coop_configs);
    AdapterSummary {
        name: info.name,
        backend: info.backend,
        device_type: info.device_type,
        driver: format!("{} {}", info.driver, info.driver_info),
        shader_f16: f.contains(wgpu::Features::SHADER_F16),
        subgroups: f.contains(wgpu::Features::SUBGROUP),
        max_binding_bytes: l.max_storage_buffer_binding_size,
        coop_configs,
        coop_matmul,
    }
}

/// Commands recorded but not yet submitted: one encoder with one open compute pass that
/// every dispatch joins (wgpu orders the dispatches of a pass and puts barriers between
/// dependent ones, as between passes).
#[derive(Default)]
struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    /// Recording into `encoder`; ended before the encoder is finished.
    pass: Option<wgpu::ComputePass<'static>>,
    dispatches: usize,
}

/// Upper bound on cached uniform buffers and bind groups; a full cache is emptied.
const CACHE_MAX: usize = 4096;

/// What a bind group binds: a pipeline's group 0 and each binding's whole buffer.
#[derive(Clone, PartialEq, Eq, Hash)]
struct BindKey {
    pipeline: wgpu::ComputePipeline,
    buffers: Vec<(u32, wgpu::Buffer)>,
}

/// An open device and its queue, with the failure state and the pending encoder.
pub(crate) struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub summary: AdapterSummary,
    /// Largest byte size of one bound buffer.
    pub max_binding: u64,
    /// Tensors above this many bytes are split into parts (at most `max_binding`).
    pub split_bytes: u64,
    pub max_workgroups: u32,
    pub poison: bool,
    /// A 4-byte buffer bound where a kernel's optional input is absent.
    pub dummy: wgpu::Buffer,
    failure: Arc<Mutex<Option<String>>>,
    pending: Mutex<Pending>,
    /// Dispatches recorded since the device opened.
    dispatched: AtomicU64,
    /// Nanoseconds the host spent blocked on the GPU (read-backs, `sync`).
    waited_ns: AtomicU64,
    /// Uniform buffers by their contents. Never written after creation, so sharing one
    /// between dispatches (of this step or later ones) is always safe.
    uniforms: Mutex<std::collections::HashMap<Vec<u8>, wgpu::Buffer>>,
    /// The bind group layout of each pipeline (auto layouts, group 0).
    layouts: Mutex<std::collections::HashMap<wgpu::ComputePipeline, wgpu::BindGroupLayout>>,
    /// Bind groups by pipeline and bound buffers (not used with `poison`). An entry keeps
    /// its buffers alive, so a buffer leaving the pool for good takes its entries along
    /// (see `recycle`): the cache never holds memory that nothing else holds.
    bind_groups: Mutex<std::collections::HashMap<BindKey, wgpu::BindGroup>>,
    pool: Mutex<Pool>,
}

/// Freed storage buffers by size.
#[derive(Default)]
struct Pool {
    free: std::collections::HashMap<u64, Vec<wgpu::Buffer>>,
    bytes: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gpu {
    pub fn open(opts: &WgpuOptions) -> Result<Gpu> {
        let instance = new_instance();
        let adapter =
            pick(&instance, &opts.adapter, opts.allow_software).map_err(BackendError::Device)?;
        let mut wanted = wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let limits = adapter.limits();
        // Cooperative matrices only when the matmul will use them (they are experimental
        // in wgpu 30: asking for them takes the opt-in below).
        let coop = summary(&adapter, adapter.features(), &limits)
            .coop_matmul
            .is_ok();
        if coop {
            wanted |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        let features = adapter.features() & wanted;
        let experimental_features = if coop {
            // SAFETY: wgpu asks callers of experimental features to accept that its
            // implementation may still have bugs. The only experimental feature requested
            // is cooperative matrices, for the matmul kernels of `matmul_coop.wgsl` (naga
            // validates them; tests/coop.rs checks them against the CPU backend), and only
            // when INGOT_WGPU_COOP=1 turns that path on.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let desc = wgpu::DeviceDescriptor {
            label: Some("ingot"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features,
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| BackendError::Device(format!("cannot open the GPU device: {e}")))?;
        let summary = summary(&adapter, features, &limits);
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let on_error = failure.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            tracing::error!("GPU error: {e}");
            lock(&on_error).get_or_insert_with(|| format!("GPU error: {e}"));
        }));
        let on_lost = failure.clone();
        device.set_device_lost_callback(move |reason, msg| {
            tracing::error!("GPU device lost ({reason:?}): {msg}");
            lock(&on_lost).get_or_insert_with(|| format!("GPU device lost ({reason:?}): {msg}"));
        });
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let split_bytes = opts.max_binding_bytes.unwrap_or(u64::MAX).min(max_binding);
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dummy"),
            size: 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Ok(Gpu {
            device,
            queue,
            summary,
            max_binding,
            split_bytes,
            max_workgroups: limits.max_compute_workgroups_per_dimension,
            poison: opts.poison_outputs,
            dummy,
            failure,
            pending: Mutex::default(),
            dispatched: AtomicU64::new(0),
            waited_ns: AtomicU64::new(0),
            uniforms: Mutex::default(),
            layouts: Mutex::default(),
            bind_groups: Mutex::default(),
            pool: Mutex::default(),
        })
    }

    /// The first failure recorded, if any, as an error.
    pub fn check(&self) -> Result<()> {
        match lock(&self.failure).as_ref() {
            Some(msg) => Err(BackendError::Device(msg.clone())),
            None => Ok(()),
        }
    }

    /// Runs `f` inside out-of-memory and validation error scopes; a caught error becomes
    /// `what` + its message (`OutOfMemory` for the former).
    pub fn scoped<R>(&self, what: &str, bytes: usize, f: impl FnOnce() -> R) -> Result<R> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        if o.is_some() {
            return Err(BackendError::OutOfMemory { bytes });
        }
        if let Some(e) = v {
            return Err(BackendError::Device(format!("{what}: {e}")));
        }
        Ok(r)
    }

    /// A storage buffer of `bytes` (rounded up to a word) for a kernel to overwrite whole:
    /// from the pool when one of that size is free, else new (poisoned when the options
    /// say). Its previous contents are unspecified.
    pub fn output(&self, bytes: u64, label: &str) -> Result<wgpu::Buffer> {
        let size = bytes.max(4).div_ceil(4) * 4;
        if !self.poison {
            let mut pool = lock(&self.pool);
            if let Some(b) = pool.free.get_mut(&size).and_then(Vec::pop) {
                pool.bytes -= size;
                return Ok(b);
            }
        }
        self.storage(bytes, label, self.poison)
    }

    /// Takes back the buffer of a dropped tensor for reuse by [`Gpu::output`].
    pub fn recycle(&self, buffer: wgpu::Buffer) {
        if self.poison {
            return;
        }
        let size = buffer.size();
        let mut pool = lock(&self.pool);
        let fits = pool.bytes + size <= POOL_MAX_BYTES;
        let list = pool.free.entry(size).or_default();
        if fits && list.len() < POOL_MAX_PER_SIZE {
            list.push(buffer);
            pool.bytes += size;
            return;
        }
        drop(pool);
        // Released for good: drop the bind groups that would keep it alive.
        lock(&self.bind_groups).retain(|k, _| !k.buffers.iter().any(|(_, b)| *b == buffer));
    }

    /// The bind group of `pipeline` with `buffers`, made once and reused while its
    /// buffers live (a decode step binds the same pooled buffers step after step).
    fn bind_group(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[(u32, &wgpu::Buffer)],
    ) -> wgpu::BindGroup {
        let make = || {
            let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
                .iter()
                .map(|&(binding, b)| wgpu::BindGroupEntry {
                    binding,
                    resource: b.as_entire_binding(),
                })
                .collect();
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(label),
                layout: &self.layout(pipeline),
                entries: &entries,
            })
        };
        if self.poison {
            return make();
        }
        let key = BindKey {
            pipeline: pipeline.clone(),
            buffers: buffers.iter().map(|&(i, b)| (i, b.clone())).collect(),
        };
        let mut cache = lock(&self.bind_groups);
        if let Some(g) = cache.get(&key) {
            return g.clone();
        }
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        let g = make();
        cache.insert(key, g.clone());
        g
    }

    /// A storage buffer of `bytes` (rounded up to a word), all-ones bits when `poison`,
    /// zeros otherwise.
    pub fn storage(&self, bytes: u64, label: &str, poison: bool) -> Result<wgpu::Buffer> {
        self.check()?;
        let size = bytes.max(4).div_ceil(4) * 4;
        if size > self.max_binding {
            return Err(BackendError::Device(format!(
                "{label}: {size} bytes exceed the adapter's storage binding limit of {} bytes",
                self.max_binding
            )));
        }
        let buffer = self.scoped(label, size as usize, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: poison,
            })
        })?;
        if poison {
            buffer
                .slice(..)
                .get_mapped_range_mut()
                .map_err(|e| BackendError::Device(format!("{label}: cannot map: {e:?}")))?
                .copy_from_slice(&vec![0xff; size as usize]);
            buffer.unmap();
        }
        Ok(buffer)
    }

    /// A storage buffer holding `data` (padded with zeros to a word).
    pub fn upload(&self, data: &[u8], label: &str) -> Result<wgpu::Buffer> {
        self.check()?;
        let mut padded;
        let contents = if data.len().is_multiple_of(4) && !data.is_empty() {
            data
        } else {
            padded = data.to_vec();
            padded.resize(data.len().max(4).div_ceil(4) * 4, 0);
            &padded
        };
        self.scoped(label, contents.len(), || {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                })
        })
    }

    /// A uniform buffer holding one parameter struct: made once per distinct content and
    /// reused (a decode step repeats the same parameters every step; creating a buffer per
    /// dispatch cost more host time than recording the dispatch).
    pub fn uniform<P: bytemuck::Pod>(&self, p: &P) -> wgpu::Buffer {
        let bytes = bytemuck::bytes_of(p);
        let mut cache = lock(&self.uniforms);
        if let Some(b) = cache.get(bytes) {
            return b.clone();
        }
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        let b = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytes,
                usage: wgpu::BufferUsages::UNIFORM,
            });
        cache.insert(bytes.to_vec(), b.clone());
        b
    }

    /// Group 0's layout of `pipeline`, fetched from wgpu once.
    fn layout(&self, pipeline: &wgpu::ComputePipeline) -> wgpu::BindGroupLayout {
        lock(&self.layouts)
            .entry(pipeline.clone())
            .or_insert_with(|| pipeline.get_bind_group_layout(0))
            .clone()
    }

    /// A 1-D or 2-D grid covering `groups` workgroups within the per-dimension limit; the
    /// shaders linearise it as `wg.y * num_workgroups.x + wg.x` and skip the excess.
    pub fn grid(&self, groups: u64) -> Result<(u32, u32)> {
        let max = self.max_workgroups as u64;
        if groups <= max {
            return Ok((groups.max(1) as u32, 1));
        }
        let y = groups.div_ceil(max);
        if y > max {
            return Err(BackendError::Device(format!(
                "{groups} workgroups exceed the adapter's dispatch limits"
            )));
        }
        Ok((max as u32, y as u32))
    }

    /// Records one dispatch of `pipeline` with `buffers` bound at their binding numbers.
    pub fn dispatch(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[(u32, &wgpu::Buffer)],
        groups: (u32, u32, u32),
    ) -> Result<()> {
        self.check()?;
        if groups.0 > self.max_workgroups
            || groups.1 > self.max_workgroups
            || groups.2 > self.max_workgroups
        {
            return Err(BackendError::Device(format!(
                "{label}: grid {groups:?} exceeds the adapter's limit of {} per dimension",
                self.max_workgroups
            )));
        }
        let bind_group = self.bind_group(label, pipeline, buffers);
        let mut pending = lock(&self.pending);
        if pending.pass.is_none() {
            let encoder = pending.encoder.get_or_insert_with(|| {
                self.device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("step"),
                    })
            });
            let pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("step"),
                    timestamp_writes: None,
                })
                .forget_lifetime();
            pending.pass = Some(pass);
        }
        let pass = pending.pass.as_mut().expect("opened above");
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        pending.dispatches += 1;
        self.dispatched.fetch_add(1, Ordering::Relaxed);
        if pending.dispatches >= FLUSH_EVERY {
            self.submit(&mut pending, None);
        }
        drop(pending);
        self.check()
    }

    fn submit(&self, pending: &mut Pending, extra: Option<wgpu::CommandEncoder>) {
        let mut buffers = Vec::with_capacity(2);
        drop(pending.pass.take()); // ends the pass, releasing the encoder
        if let Some(e) = pending.encoder.take() {
            buffers.push(e.finish());
        }
        if let Some(e) = extra {
            buffers.push(e.finish());
        }
        pending.dispatches = 0;
        if !buffers.is_empty() {
            self.queue.submit(buffers);
        }
    }

    /// Blocks until the GPU has finished everything submitted, counting the time.
    fn wait(&self) -> Result<()> {
        let start = std::time::Instant::now();
        let r = self
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| BackendError::Device(format!("waiting for the GPU: {e}")));
        self.waited_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r.map(|_| ())
    }

    /// Seconds the host has spent blocked on the GPU since the device opened.
    pub fn waited_seconds(&self) -> f64 {
        self.waited_ns.load(Ordering::Relaxed) as f64 * 1e-9
    }

    /// Dispatches recorded since the device opened.
    pub fn dispatched(&self) -> u64 {
        self.dispatched.load(Ordering::Relaxed)
    }

    /// Submits everything recorded so far.
    pub fn flush(&self) -> Result<()> {
        let mut pending = lock(&self.pending);
        self.submit(&mut pending, None);
        drop(pending);
        self.check()
    }

    /// Submits everything recorded so far and waits until the GPU has finished it.
    pub fn sync(&self) -> Result<()> {
        self.flush()?;
        self.wait()?;
        self.check()
    }

    /// Copies the first `bytes` of `src` back to the host, after every recorded command.
    pub fn read(&self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        self.check()?;
        let size = bytes.max(4).div_ceil(4) * 4;
        let staging = self.scoped("read-back", size as usize, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("read-back"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        let mut copy = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("read"),
            });
        copy.copy_buffer_to_buffer(src, 0, &staging, 0, size);
        {
            let mut pending = lock(&self.pending);
            self.submit(&mut pending, Some(copy));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        self.check()?;
        rx.recv()
            .map_err(|_| BackendError::Device("read-back was never mapped".into()))?
            .map_err(|e| BackendError::Device(format!("read-back failed: {e}")))?;
        let out = staging
            .get_mapped_range(..)
            .map_err(|e| BackendError::Device(format!("read-back: cannot map: {e:?}")))?
            [..bytes as usize]
            .to_vec();
        staging.unmap();
        Ok(out)
    }
}
