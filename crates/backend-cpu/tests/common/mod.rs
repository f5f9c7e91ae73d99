//! Shared test helpers: a tiny seeded RNG (SplitMix64) and tensor shorthands.
#![allow(dead_code)]

use ingot_backend_cpu::CpuBackend;
use ingot_tensor::{Backend, DType, Shape, Tensor};

pub type T = Tensor<CpuBackend>;

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, seeded, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn shuffle<X>(&mut self, v: &mut [X]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

pub fn f32t(be: &CpuBackend, data: &[f32], dims: &[usize]) -> T {
    be.from_f32(data, Shape::new(dims), DType::F32).unwrap()
}

pub fn u32t(be: &CpuBackend, data: &[u32], dims: &[usize]) -> T {
    be.from_u32(data, Shape::new(dims)).unwrap()
}

pub fn host(t: &T) -> Vec<f32> {
    t.storage().as_f32().expect("f32 tensor").to_vec()
}

/// The backends every kernel test runs on: the detected SIMD path and the portable path.
pub fn backends() -> Vec<CpuBackend> {
    let simd = CpuBackend::new();
    let portable = CpuBackend::new().with_portable_kernels();
    if simd.isa() == portable.isa() {
        vec![simd]
    } else {
        vec![simd, portable]
    }
}
