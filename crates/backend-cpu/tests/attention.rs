//! CPU-specific attention checks beside the conformance suite (tests/conformance.rs, which
//! holds kv_write and paged_attention against the f64 reference, batch invariance and f16
//! caches): the thread count and the portable build change no bit, and a bf16 cache is
//! refused by the checks.

mod common;

use common::*;
use ingot_backend_cpu::CpuBackend;
use ingot_tensor::{Backend, DType, Shape};
use ingot_testkit::conformance::{Paged, assert_bits};
use ingot_testkit::paged::{Geo, Scene};

/// The thread count does not change a bit (the SIMD and portable kernels may differ in the
/// last bits of the scores; both are checked against the reference by the suite).
#[test]
fn independent_of_thread_count() {
    let mut rng = Rng::new(14);
    let geo = Geo::new(8, 2, 64, 16);
    let mix = [
        (1, 1),
        (17, 1),
        (40, 40),
        (100, 7),
        (33, 1),
        (64, 20),
        (5, 3),
    ];
    let lens: Vec<usize> = mix.iter().map(|m| m.0).collect();
    let scene = Scene::new(&mut rng, geo, &lens);
    let reads: Vec<_> = mix
        .iter()
        .enumerate()
        .map(|(s, &(l, q))| (s, l, q))
        .collect();
    let all: Vec<_> = lens.iter().enumerate().map(|(s, &l)| (s, 0..l)).collect();
    let run = |be: &CpuBackend| {
        let mut paged = Paged::new(be, &scene, DType::F32);
        paged.write(&all);
        paged.attend(&reads, None)
    };
    let want = run(&CpuBackend::new());
    for be in [
        CpuBackend::with_threads(1).unwrap(),
        CpuBackend::with_threads(5).unwrap(),
    ] {
        assert_bits(&run(&be), &want, &format!("{be:?}"));
    }
    let portable = CpuBackend::new().with_portable_kernels();
    let want = run(&portable);
    let one = CpuBackend::with_threads(1).unwrap().with_portable_kernels();
    assert_bits(&run(&one), &want, "portable, one thread");
}

#[test]
#[should_panic(expected = "KV cache dtype bf16")]
fn bf16_cache_is_rejected_by_the_checks() {
    let be = CpuBackend::new();
    let k = f32t(&be, &[0.5; 8], &[2, 1, 4]);
    let mut kc = be.zeros(Shape::new([2, 1, 4, 4]), DType::BF16).unwrap();
    let mut vc = be.zeros(Shape::new([2, 1, 4, 4]), DType::BF16).unwrap();
    let slots = u32t(&be, &[0, 1], &[2]);
    let _ = be.kv_write(&k, &k, &mut kc, &mut vc, &slots);
}
