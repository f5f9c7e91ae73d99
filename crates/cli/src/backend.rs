//! Backend selection: the one place that knows which backends exist (DESIGN.md §3).
//!
//! The engine and the model are generic over `B: Backend`, so choosing a backend at run
//! time means instantiating the generic code once per backend. [`with_backend!`] does that:
//! it opens the backend `--backend` names and evaluates the same block with `$b` bound to a
//! `CpuBackend` in one match arm and to a `WgpuBackend` in the other. The GPU backend is
//! behind the `gpu` cargo feature (on by default); without it only the CPU exists.
//!
//! `auto` takes a real GPU (discrete, integrated or virtual; never a software rasterizer
//! such as lavapipe) when one exists and opens, otherwise the CPU. `gpu` insists on a GPU
//! and fails if none opens; a software adapter is accepted there only with
//! `INGOT_WGPU_ALLOW_SOFTWARE=1`.
//!
//! `--device N|NAME` names the adapter (an index or name from `ingot devices`), for one
//! replica per GPU. With it, `auto` and `gpu` open exactly that adapter, a software one
//! included, and fail if it does not open rather than fall back to the CPU: a replica
//! meant for GPU 3 must not quietly serve from the CPU. `--backend cpu --device` is an error.

use anyhow::Result;
use clap::ValueEnum;

use crate::setup::CpuActivations;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// A real GPU when one exists, otherwise the CPU.
    #[default]
    Auto,
    Cpu,
    /// The GPU through wgpu (Metal, Vulkan or DX12); an error if none opens.
    Gpu,
}

/// An opened backend, one variant per backend compiled in.
pub enum Selected {
    Cpu(ingot_backend_cpu::CpuBackend),
    #[cfg(feature = "gpu")]
    Gpu(ingot_backend_wgpu::WgpuBackend),
}

/// Opens the backend `choice` names (see the module header for `auto` and `device`); a
/// CPU backend multiplies weights kept in blocks in `activations` mode.
pub fn select(
    choice: BackendChoice,
    activations: CpuActivations,
    device: Option<&str>,
) -> Result<Selected> {
    let mode = match activations {
        CpuActivations::Exact => ingot_backend_cpu::Activations::Exact,
        CpuActivations::Int8 => ingot_backend_cpu::Activations::Int8,
    };
    let cpu = || {
        Ok(Selected::Cpu(
            ingot_backend_cpu::CpuBackend::new().with_activations(mode),
        ))
    };
    if let Some(d) = device {
        anyhow::ensure!(
            choice != BackendChoice::Cpu,
            "--device {d} picks a GPU adapter; it cannot be used with --backend cpu"
        );
        return open_named(d);
    }
    match choice {
        BackendChoice::Cpu => cpu(),
        #[cfg(feature = "gpu")]
        BackendChoice::Gpu => {
            let be =
                ingot_backend_wgpu::WgpuBackend::new(ingot_backend_wgpu::WgpuOptions::from_env())
                    .map_err(|e| anyhow::anyhow!("--backend gpu: {e}"))?;
            tracing::info!("backend: GPU, {}", be.adapter());
            Ok(Selected::Gpu(be))
        }
        #[cfg(not(feature = "gpu"))]
        BackendChoice::Gpu => {
            anyhow::bail!("--backend gpu: this build has no GPU backend (cargo feature `gpu`)")
        }
        #[cfg(feature = "gpu")]
        BackendChoice::Auto => {
            if ingot_backend_wgpu::probe(false).is_none() {
                tracing::info!("backend: CPU (no GPU adapter found)");
                return cpu();
            }
            let opts = ingot_backend_wgpu::WgpuOptions {
                allow_software: false,
                ..Default::default()
            };
            match ingot_backend_wgpu::WgpuBackend::new(opts) {
                Ok(be) => {
                    tracing::info!("backend: GPU, {}", be.adapter());
                    Ok(Selected::Gpu(be))
                }
                Err(e) => {
                    tracing::warn!("backend: CPU (the GPU did not open: {e})");
                    cpu()
                }
            }
        }
        #[cfg(not(feature = "gpu"))]
        BackendChoice::Auto => cpu(),
    }
}

/// Opens the GPU backend on the adapter `device` names (`--device`).
#[cfg(feature = "gpu")]
fn open_named(device: &str) -> Result<Selected> {
    let opts = ingot_backend_wgpu::WgpuOptions {
        adapter: ingot_backend_wgpu::AdapterChoice::parse(device),
        ..ingot_backend_wgpu::WgpuOptions::from_env()
    };
    let be = ingot_backend_wgpu::WgpuBackend::new(opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!("backend: GPU (--device {device}), {}", be.adapter());
    Ok(Selected::Gpu(be))
}

#[cfg(not(feature = "gpu"))]
fn open_named(device: &str) -> Result<Selected> {
    anyhow::bail!("--device {device}: this build has no GPU backend (cargo feature `gpu`)")
}

/// `with_backend!(engine_args, |b| expr)`: opens the backend `engine_args` select and evaluates
/// `expr` with `b` bound to it, monomorphised per backend. `?` inside `expr` returns from
/// the enclosing function, as it would written inline.
macro_rules! with_backend {
    ($args:expr, |$b:ident| $body:expr) => {
        match $crate::backend::select(
            $args.backend,
            $args.cpu_activations,
            $args.device.as_deref(),
        )? {
            $crate::backend::Selected::Cpu($b) => $body,
            #[cfg(feature = "gpu")]
            $crate::backend::Selected::Gpu($b) => $body,
        }
    };
}
pub(crate) use with_backend;
