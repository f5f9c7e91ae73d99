//! CPU-specific checks beside the conformance suite (tests/conformance.rs): the storage
//! each dtype gets, additions split over parallel tasks, block formats in `supports`, the
//! step-boundary defaults, and precondition panics.

mod common;

use common::*;
use half::{bf16, f16};
use ingot_backend_cpu::{CpuBackend, CpuStorage};
use ingot_tensor::{Backend, DType, Op, Shape};

#[test]
fn add_splits_over_tasks_exactly() {
    let mut rng = Rng::new(25);
    let be = CpuBackend::new();
    let n = 40_000; // more than one parallel task
    let (a, b) = (rng.vec(n), rng.vec(n));
    let sum = be
        .add(&f32t(&be, &a, &[200, 200]), &f32t(&be, &b, &[200, 200]))
        .unwrap();
    assert_eq!(sum.dims(), &[200, 200]);
    assert_eq!(
        host(&sum),
        a.iter().zip(&b).map(|(x, y)| x + y).collect::<Vec<_>>()
    );
}

#[test]
fn each_dtype_has_its_storage() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(26);
    let x = rng.vec(60);
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let h = be.from_f32(&x, Shape::new([60]), dtype).unwrap();
        assert_eq!(h.storage().dtype(), dtype);
    }
    match be
        .from_f32(&[1.5, -2.0], Shape::new([2]), DType::F16)
        .unwrap()
        .storage()
    {
        CpuStorage::F16(v) => assert_eq!(v, &[f16::from_f32(1.5), f16::from_f32(-2.0)]),
        s => panic!("expected f16 storage, got {:?}", s.dtype()),
    }
    match be
        .from_f32(&[1.5], Shape::new([1]), DType::BF16)
        .unwrap()
        .storage()
    {
        CpuStorage::BF16(v) => assert_eq!(v, &[bf16::from_f32(1.5)]),
        s => panic!("expected bf16 storage, got {:?}", s.dtype()),
    }
    let ids = u32t(&be, &[7, 0, u32::MAX], &[3]);
    assert_eq!(ids.storage().as_u32(), Some(&[7, 0, u32::MAX][..]));
}

/// Every GGUF block format is read as blocks by matmul and embedding (tests/quant.rs
/// checks the numbers); the step-boundary verbs are the synchronous defaults.
#[test]
fn blocks_supported_and_synchronous_defaults() {
    let be = CpuBackend::new();
    for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K] {
        assert!(be.supports(Op::Matmul, dtype) && be.supports(Op::Embedding, dtype));
        assert!(!be.supports(Op::GatherRows, dtype) && !be.supports(Op::Add, dtype));
    }
    assert_eq!(be.sync().ok(), Some(()));
    assert_eq!(be.max_tensor_bytes(), u64::MAX);
    assert!(!be.samples_on_device());
}

#[test]
#[should_panic(expected = "no columns")]
fn argmax_rejects_empty_rows() {
    let be = CpuBackend::new();
    let _ = be.argmax(&f32t(&be, &[], &[3, 0]));
}
