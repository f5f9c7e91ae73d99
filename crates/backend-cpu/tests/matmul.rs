//! matmul against a plain f64 reference, and its batch invariance (bit-identical rows
//! whatever the batch, tile or thread count).
//!
//! Tolerance: |got − ref| ≤ tol · Σ_k |x_k · w_k| per element (the scale of the rounding
//! error of a length-K dot product, robust to cancellation), with tol = 1e-5 for f32
//! weights, and for f16/bf16 weights 1e-5 against the reference on the rounded weights plus
//! 1e-2 (f16) / 1e-2 (bf16, 8-bit mantissa: ≤ 2^-8 per weight) against the f32 weights.

mod common;

use common::*;
use ingot_backend_cpu::CpuBackend;
use ingot_tensor::{Backend, DType, Shape};

/// out[t][n] = Σ_k x[t][k] w[n][k] (+ b[n]) in f64, and the error scale Σ |x w|.
fn reference(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    t: usize,
    k: usize,
    n: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut out = vec![0.0; t * n];
    let mut mag = vec![0.0; t * n];
    for r in 0..t {
        for c in 0..n {
            let (mut s, mut m) = (0.0f64, 0.0f64);
            for i in 0..k {
                let p = x[r * k + i] as f64 * w[c * k + i] as f64;
                s += p;
                m += p.abs();
            }
            let b = bias.map_or(0.0, |b| b[c] as f64);
            out[r * n + c] = s + b;
            mag[r * n + c] = m + b.abs();
        }
    }
    (out, mag)
}

#[track_caller]
fn assert_close(got: &[f32], want: &[f64], mag: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, ((&g, &w), &m)) in got.iter().zip(want).zip(mag).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= tol * m.max(1e-30),
            "{what}: element {i}: got {g}, want {w} (err {err:e}, scale {m:e})"
        );
    }
}

const SHAPES: [(usize, usize, usize); 7] = [
    (1, 13, 1000),
    (37, 77, 1003),
    (5, 64, 8),
    (4, 1, 3),
    (2, 300, 17),
    (37, 576, 129),
    (1, 1536, 40),
];

#[test]
fn f32_weights_match_reference() {
    let mut rng = Rng::new(1);
    for be in backends() {
        for &(t, k, n) in &SHAPES {
            for with_bias in [false, true] {
                let (x, w, b) = (rng.vec(t * k), rng.vec(n * k), rng.vec(n));
                let bias = with_bias.then_some(&b[..]);
                let xt = f32t(&be, &x, &[t, k]);
                let wt = f32t(&be, &w, &[n, k]);
                let bt = f32t(&be, &b, &[n]);
                let got = be.matmul(&xt, &wt, with_bias.then_some(&bt)).unwrap();
                assert_eq!(got.dims(), &[t, n]);
                let (want, mag) = reference(&x, &w, bias, t, k, n);
                assert_close(
                    &host(&got),
                    &want,
                    &mag,
                    1e-5,
                    &format!("{:?} T={t} K={k} N={n} bias={with_bias}", be.isa()),
                );
            }
        }
    }
}

#[test]
fn half_weights_match_reference() {
    let mut rng = Rng::new(2);
    for be in backends() {
        for dtype in [DType::F16, DType::BF16] {
            for &(t, k, n) in &SHAPES {
                let (x, w, b) = (rng.vec(t * k), rng.vec(n * k), rng.vec(n));
                let xt = f32t(&be, &x, &[t, k]);
                let wt = be.from_f32(&w, Shape::new([n, k]), dtype).unwrap();
                assert_eq!(wt.dtype(), dtype);
                let bt = f32t(&be, &b, &[n]);
                let got = host(&be.matmul(&xt, &wt, Some(&bt)).unwrap());
                let what = format!("{:?} {dtype} T={t} K={k} N={n}", be.isa());
                // Exact arithmetic on the rounded weights, f32 tolerance.
                let rounded = be.to_f32(&wt).unwrap();
                let (want, mag) = reference(&x, &rounded, Some(&b), t, k, n);
                assert_close(&got, &want, &mag, 1e-5, &what);
                // Against the original f32 weights: the storage rounding.
                let (want, mag) = reference(&x, &w, Some(&b), t, k, n);
                assert_close(&got, &want, &mag, 1e-2, &what);
            }
        }
    }
}

/// Every row computed alone, or inside any sub-batch, equals the same row of a 37-row and
/// a 100-row batch bit for bit, for every weight dtype and kernel.
#[test]
fn rows_are_batch_invariant() {
    let mut rng = Rng::new(3);
    let n = 203;
    for be in backends() {
        for (t, k) in [(37, 64), (37, 77), (37, 576), (100, 100)] {
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                let x = rng.vec(t * k);
                let wt = be
                    .from_f32(&rng.vec(n * k), Shape::new([n, k]), dtype)
                    .unwrap();
                let bt = f32t(&be, &rng.vec(n), &[n]);
                let full = host(&be.matmul(&f32t(&be, &x, &[t, k]), &wt, Some(&bt)).unwrap());
                for (start, len) in [
                    (0, 1),
                    (5, 1),
                    (36, 1),
                    (3, 2),
                    (10, 7),
                    (1, 36),
                    (0, 6),
                    (20, 12),
                    (t - 13, 13),
                ] {
                    let xs = f32t(&be, &x[start * k..(start + len) * k], &[len, k]);
                    let part = host(&be.matmul(&xs, &wt, Some(&bt)).unwrap());
                    assert!(
                        part.iter()
                            .zip(&full[start * n..(start + len) * n])
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{:?} {dtype} K={k}: rows {start}..{} differ alone vs in the batch",
                        be.isa(),
                        start + len
                    );
                }
            }
        }
    }
}

/// Results do not depend on the number of threads (private pools, and the global-pool
/// backend run inside a one-thread pool).
#[test]
fn results_independent_of_thread_count() {
    let mut rng = Rng::new(4);
    let (t, k, n) = (37, 333, 517);
    let x = rng.vec(t * k);
    let w = rng.vec(n * k);
    for dtype in [DType::F32, DType::F16] {
        let run = |be: &CpuBackend| {
            let wt = be.from_f32(&w, Shape::new([n, k]), dtype).unwrap();
            host(&be.matmul(&f32t(be, &x, &[t, k]), &wt, None).unwrap())
        };
        let global = CpuBackend::new();
        let want = run(&global);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        assert_eq!(
            one.install(|| run(&global)),
            want,
            "{dtype}: one-thread install"
        );
        for threads in [1, 3, 7] {
            let be = CpuBackend::with_threads(threads).unwrap();
            assert_eq!(be.num_threads(), threads);
            let got = run(&be);
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{dtype}: {threads} threads"
            );
        }
    }
}

#[test]
fn empty_and_degenerate_shapes() {
    let be = CpuBackend::new();
    // K = 0: the dot products are empty, only the bias remains.
    let x = be.zeros(Shape::new([3, 0]), DType::F32).unwrap();
    let w = be.zeros(Shape::new([5, 0]), DType::F32).unwrap();
    let b = f32t(&be, &[1.0, 2.0, 3.0, 4.0, 5.0], &[5]);
    let out = host(&be.matmul(&x, &w, Some(&b)).unwrap());
    assert_eq!(out, [1.0, 2.0, 3.0, 4.0, 5.0].repeat(3));
    // T = 0: an empty result.
    let x = be.zeros(Shape::new([0, 4]), DType::F32).unwrap();
    let w = f32t(&be, &[0.5; 8], &[2, 4]);
    assert_eq!(be.matmul(&x, &w, None).unwrap().dims(), &[0, 2]);
}

/// The x86 paths (AVX-512 panel tiles, AVX2 tiles) reduce in the same order and fuse the
/// same multiply-adds, so they agree bit for bit, for every weight dtype and row count.
#[test]
fn simd_paths_agree_bitwise() {
    let simd: Vec<CpuBackend> = backends()
        .into_iter()
        .filter(|b| b.isa() != ingot_backend_cpu::Isa::Portable)
        .collect();
    let mut rng = Rng::new(5);
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for &(t, k, n) in SHAPES
            .iter()
            .chain(&[(60, 100, 77), (13, 1536, 33), (7, 8, 9)])
        {
            let (x, w, b) = (rng.vec(t * k), rng.vec(n * k), rng.vec(n));
            let outs: Vec<Vec<f32>> = simd
                .iter()
                .map(|be| {
                    let wt = be.from_f32(&w, Shape::new([n, k]), dtype).unwrap();
                    let bt = f32t(be, &b, &[n]);
                    host(&be.matmul(&f32t(be, &x, &[t, k]), &wt, Some(&bt)).unwrap())
                })
                .collect();
            for (be, o) in simd.iter().zip(&outs).skip(1) {
                assert!(
                    o.iter()
                        .zip(&outs[0])
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{dtype} T={t} K={k} N={n}: {:?} differs from {:?}",
                    be.isa(),
                    simd[0].isa()
                );
            }
        }
    }
}
