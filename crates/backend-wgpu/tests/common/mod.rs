//! Shared test setup: the GPU backend under test (or a loud skip), a seeded RNG, and
//! comparison helpers.
//!
//! With no adapter the tests print a SKIPPED line and pass, unless `INGOT_REQUIRE_GPU=1`
//! (CI sets it, with lavapipe installed), in which case they fail. Software adapters are
//! accepted here, so lavapipe counts as a GPU. Outputs are poisoned (all-ones bits) before
//! every kernel (except in `gpu_pooled`), so an element a kernel forgets to write is NaN
//! and fails the comparison.
#![allow(dead_code)]

use std::sync::OnceLock;

use ingot_backend_cpu::CpuBackend;
use ingot_backend_wgpu::{WgpuBackend, WgpuOptions};
use ingot_tensor::{Backend, DType, Shape, Tensor};

pub type G = Tensor<WgpuBackend>;
pub type C = Tensor<CpuBackend>;

fn open(max_binding_bytes: Option<u64>, poison_outputs: bool) -> Option<WgpuBackend> {
    let opts = WgpuOptions {
        allow_software: true,
        max_binding_bytes,
        poison_outputs,
        ..WgpuOptions::default()
    };
    match WgpuBackend::new(opts) {
        Ok(be) => {
            eprintln!("GPU tests on {}", be.adapter());
            Some(be)
        }
        Err(e) if std::env::var("INGOT_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("INGOT_REQUIRE_GPU=1 but the GPU backend cannot open: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: no GPU adapter, GPU tests not run: {e}");
            None
        }
    }
}

/// The backend under test, opened once per test binary.
pub fn gpu() -> Option<WgpuBackend> {
    static BE: OnceLock<Option<WgpuBackend>> = OnceLock::new();
    BE.get_or_init(|| open(None, true)).clone()
}

/// An instance without poisoning, so that freed buffers are pooled and reused (as in
/// production).
pub fn gpu_pooled() -> Option<WgpuBackend> {
    static BE: OnceLock<Option<WgpuBackend>> = OnceLock::new();
    BE.get_or_init(|| open(None, false)).clone()
}

/// A second instance that splits any tensor above 4 KiB into parts.
pub fn gpu_split() -> Option<WgpuBackend> {
    static BE: OnceLock<Option<WgpuBackend>> = OnceLock::new();
    BE.get_or_init(|| open(Some(4096), true)).clone()
}

/// The shared seeded test RNG (SplitMix64).
#[allow(unused_imports)] // not every test binary that includes this module draws numbers
pub use ingot_testkit::Rng;

pub fn g32(be: &WgpuBackend, data: &[f32], dims: &[usize]) -> G {
    be.from_f32(data, Shape::new(dims), DType::F32).unwrap()
}

pub fn gu(be: &WgpuBackend, data: &[u32], dims: &[usize]) -> G {
    be.from_u32(data, Shape::new(dims)).unwrap()
}

pub fn c32(be: &CpuBackend, data: &[f32], dims: &[usize]) -> C {
    be.from_f32(data, Shape::new(dims), DType::F32).unwrap()
}

pub fn cu(be: &CpuBackend, data: &[u32], dims: &[usize]) -> C {
    be.from_u32(data, Shape::new(dims)).unwrap()
}

/// |got - want| <= tol * max(|want|, 1) for every element (NaN fails).
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        assert!(
            err <= tol * w.abs().max(1.0),
            "{what}: element {i}: got {g}, want {w} (tolerance {tol:e})"
        );
    }
}

/// Bitwise equality (NaNs included).
#[track_caller]
pub fn assert_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{what}: element {i}: {g} vs {w}");
    }
}
