//! The open GPU device: [`Gpu`] holds the device and queue with their limits, the failure
//! state, the host-side caches, the buffer pool and the pending commands. Each concern is
//! its own module, each adding the methods of its concern to [`Gpu`]:
//!
//! - `adapter`: which adapter, and its [`Capabilities`] as plain data;
//! - `errors`: error scopes and the first asynchronous failure (every later call fails);
//! - `buffers`: fresh storage buffers and the pool of freed ones;
//! - `caches`: uniforms by content, bind group layouts, bind groups;
//! - `submit`: the pending encoder, dispatch, flush and sync, the counters;
//! - `readback`: copies back to the host.
//!
//! Opening: the device takes the adapter's own limits (so a large embedding fits where the
//! hardware allows) and the optional features SHADER_F16 and SUBGROUP when present, plus
//! EXPERIMENTAL_COOPERATIVE_MATRIX when the caller says the cooperative-matrix matmul will
//! run (the kernels decide that from [`Capabilities`]); every kernel has a path that needs
//! none of them.

mod adapter;
mod buffers;
mod caches;
mod errors;
mod profile;
mod readback;
mod submit;

use std::sync::Mutex;

use ingot_tensor::BackendError;
use ingot_tensor::backend::Result;

pub use adapter::{AdapterSummary, Capabilities};

use crate::adapters::AdapterChoice;

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
    /// Which adapter to open (`--device`); see `crate::adapters`.
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

/// An open device and its queue, with the failure state, caches, pool and pending encoder.
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
    failure: errors::Failure,
    caches: caches::Caches,
    pool: Mutex<buffers::Pool>,
    pending: Mutex<submit::Pending>,
    tally: submit::Tally,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gpu {
    /// Opens `adapter` (whose capabilities are `caps`). `coop_matmul` is the kernels'
    /// decision about the cooperative-matrix matmul (its fragment edge, or why it is off);
    /// the device requests cooperative matrices only when it is on.
    pub fn open(
        adapter: &wgpu::Adapter,
        caps: &Capabilities,
        opts: &WgpuOptions,
        coop_matmul: std::result::Result<u32, String>,
    ) -> Result<Gpu> {
        let mut wanted = wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let profile_path = std::env::var_os(profile::ENV).filter(|p| !p.is_empty());
        if profile_path.is_some() {
            wanted |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let coop = coop_matmul.is_ok();
        if coop {
            wanted |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        let features = caps.features & wanted;
        let limits = caps.limits.clone();
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
        let opened = Capabilities {
            features,
            ..caps.clone()
        };
        let summary = AdapterSummary::new(&opened, coop_matmul);
        let failure = errors::Failure::watch(&device);
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
        let mut pending = submit::Pending::default();
        match profile_path {
            Some(path) if features.contains(wgpu::Features::TIMESTAMP_QUERY) => {
                tracing::info!(
                    "{}: per-kernel GPU times to {}",
                    profile::ENV,
                    path.to_string_lossy()
                );
                pending.profile = Some(profile::Profiler::new(&device, &queue, path.into()));
            }
            Some(_) => tracing::warn!("{}: the adapter has no timestamp queries", profile::ENV),
            None => {}
        }
        Ok(Gpu {
            pending: Mutex::new(pending),
            device,
            queue,
            summary,
            max_binding,
            split_bytes,
            max_workgroups: limits.max_compute_workgroups_per_dimension,
            poison: opts.poison_outputs,
            dummy,
            failure,
            caches: caches::Caches::default(),
            pool: Mutex::default(),
            tally: submit::Tally::default(),
        })
    }
}
