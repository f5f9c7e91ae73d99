//! Shared test helpers: the seeded RNG of `ingot-testkit` and CPU tensor shorthands.
#![allow(dead_code)]

use ingot_backend_cpu::CpuBackend;
use ingot_tensor::{Backend, DType, Shape, Tensor};

pub type T = Tensor<CpuBackend>;

/// The shared seeded test RNG (SplitMix64).
#[allow(unused_imports)] // not every test binary that includes this module draws numbers
pub use ingot_testkit::Rng;

pub fn f32t(be: &CpuBackend, data: &[f32], dims: &[usize]) -> T {
    be.from_f32(data, Shape::new(dims), DType::F32).unwrap()
}

pub fn u32t(be: &CpuBackend, data: &[u32], dims: &[usize]) -> T {
    be.from_u32(data, Shape::new(dims)).unwrap()
}

pub fn host(t: &T) -> Vec<f32> {
    t.storage().as_f32().expect("f32 tensor").to_vec()
}

/// The backends every kernel test runs on: each instruction set this CPU has (AVX-512,
/// AVX2, and always the portable path), fastest first.
pub fn backends() -> Vec<CpuBackend> {
    ingot_backend_cpu::Isa::available()
        .into_iter()
        .map(|isa| CpuBackend::new().with_isa(isa).unwrap())
        .collect()
}
