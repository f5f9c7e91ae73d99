//! Weights kept in GGUF blocks: matmul in both activation modes and embedding, against the
//! reference dequantizer (`ingot_tensor::quant::dequantize`), on every instruction set this
//! CPU has, and their batch invariance.
//!
//! - Exact mode: the output equals the f32 matmul of x with the dequantized W on the same
//!   path, bit for bit (so within 1e-5 · Σ|x w| of an f64 reference, as the f32 kernels).
//! - 8-bit mode: each x chunk of 32 is rounded to 8 bits, an error of at most amax/254 per
//!   element, so |got − ref| ≤ Σ_k |w_k| · amax_chunk(k) / 254 + 1e-5 · Σ|x w| per element
//!   (the bound is computed for each element). The SIMD paths agree bit for bit.
//! - Both modes: a row's result does not depend on the batch or on the thread count.

mod common;

use common::*;
use half::f16;
use ingot_backend_cpu::{Activations, CpuBackend, Isa};
use ingot_tensor::{Backend, DType, Shape, quant};

const TYPES: [DType; 8] = [
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
];

/// Byte offsets of the f16 scale fields in a block of `dtype`.
fn scale_offsets(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q8_0 | DType::Q4_0 | DType::Q5_0 => &[0],
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q6_K => &[208],
        _ => unreachable!(),
    }
}

/// Random blocks for an [n, k] matrix: random bytes, with finite f16 scales of either sign
/// and a spread of magnitudes, as real files have.
fn random_blocks(rng: &mut Rng, dtype: DType, n: usize, k: usize) -> Vec<u8> {
    let bytes = dtype.storage_bytes(n * k).unwrap();
    let mut b: Vec<u8> = (0..bytes).map(|_| (rng.next_u64() >> 24) as u8).collect();
    for blk in b.chunks_exact_mut(dtype.block_bytes()) {
        for &off in scale_offsets(dtype) {
            let v = f16::from_f32(rng.vec(1)[0] * 0.05);
            blk[off..off + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    b
}

fn dequantized(dtype: DType, bytes: &[u8], n: usize, k: usize) -> Vec<f32> {
    let mut w = vec![f32::NAN; n * k];
    quant::dequantize(dtype, bytes, &mut w);
    w
}

fn bits_equal(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// (T, K, N) for a block size: K whole blocks; T covering the GEMV, the small tiles and the
/// panel route; N with ragged tails.
fn shapes(block: usize) -> Vec<(usize, usize, usize)> {
    if block == 32 {
        vec![
            (1, 64, 37),
            (2, 576, 21),
            (3, 96, 16),
            (5, 32, 9),
            (13, 160, 40),
            (50, 576, 19),
        ]
    } else {
        vec![
            (1, 256, 37),
            (2, 512, 21),
            (3, 256, 16),
            (13, 768, 11),
            (50, 256, 19),
        ]
    }
}

#[test]
fn exact_mode_is_the_f32_matmul_of_the_dequantized_weights() {
    let mut rng = Rng::new(11);
    for be in backends() {
        for dtype in TYPES {
            for (t, k, n) in shapes(dtype.block_size()) {
                let blocks = random_blocks(&mut rng, dtype, n, k);
                let w = dequantized(dtype, &blocks, n, k);
                let (x, b) = (rng.vec(t * k), rng.vec(n));
                let xt = f32t(&be, &x, &[t, k]);
                let bt = f32t(&be, &b, &[n]);
                let wq = be.from_blocks(&blocks, Shape::new([n, k]), dtype).unwrap();
                let wf = f32t(&be, &w, &[n, k]);
                let got = host(&be.matmul(&xt, &wq, Some(&bt)).unwrap());
                let want = host(&be.matmul(&xt, &wf, Some(&bt)).unwrap());
                assert!(
                    bits_equal(&got, &want),
                    "{:?} {dtype} T={t} K={k} N={n}: blocks differ from the dequantized f32 matmul",
                    be.isa()
                );
                assert!(got.iter().all(|v| v.is_finite()));
            }
        }
    }
}

/// The error bound of the 8-bit mode for each element (module header), and the f64 value.
fn int8_reference(x: &[f32], w: &[f32], t: usize, k: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut want, mut bound) = (vec![0.0; t * n], vec![0.0; t * n]);
    for r in 0..t {
        let xr = &x[r * k..(r + 1) * k];
        let amax: Vec<f64> = xr
            .chunks(32)
            .map(|c| c.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64)))
            .collect();
        for c in 0..n {
            let wr = &w[c * k..(c + 1) * k];
            let (mut s, mut mag, mut q) = (0.0f64, 0.0f64, 0.0f64);
            for i in 0..k {
                let p = xr[i] as f64 * wr[i] as f64;
                s += p;
                mag += p.abs();
                q += (wr[i] as f64).abs() * amax[i / 32] / 254.0;
            }
            want[r * n + c] = s;
            bound[r * n + c] = q * 1.0001 + 1e-5 * mag;
        }
    }
    (want, bound)
}

#[test]
fn int8_mode_stays_within_its_rounding_bound() {
    let mut rng = Rng::new(12);
    for be in backends() {
        let be = be.with_activations(Activations::Int8);
        for dtype in TYPES {
            for (t, k, n) in shapes(dtype.block_size()) {
                let blocks = random_blocks(&mut rng, dtype, n, k);
                let w = dequantized(dtype, &blocks, n, k);
                let x = rng.vec(t * k);
                let wq = be.from_blocks(&blocks, Shape::new([n, k]), dtype).unwrap();
                let got = host(&be.matmul(&f32t(&be, &x, &[t, k]), &wq, None).unwrap());
                let (want, bound) = int8_reference(&x, &w, t, k, n);
                for (i, ((&g, &w), &b)) in got.iter().zip(&want).zip(&bound).enumerate() {
                    let err = (g as f64 - w).abs();
                    assert!(
                        err <= b,
                        "{:?} {dtype} T={t} K={k} N={n} element {i}: got {g}, want {w} (err {err:e} > bound {b:e})",
                        be.isa()
                    );
                }
            }
        }
    }
}

/// The x86 paths of each mode (VNNI, AVX2, with and without AVX-512) agree bit for bit.
#[test]
fn simd_paths_agree_bitwise_in_both_modes() {
    let simd: Vec<CpuBackend> = backends()
        .into_iter()
        .filter(|b| b.isa() != Isa::Portable)
        .collect();
    let mut rng = Rng::new(13);
    for mode in [Activations::Exact, Activations::Int8] {
        for dtype in TYPES {
            for (t, k, n) in shapes(dtype.block_size()) {
                let blocks = random_blocks(&mut rng, dtype, n, k);
                let x = rng.vec(t * k);
                let outs: Vec<Vec<f32>> = simd
                    .iter()
                    .map(|be| {
                        let be = be.clone().with_activations(mode);
                        let wq = be.from_blocks(&blocks, Shape::new([n, k]), dtype).unwrap();
                        host(&be.matmul(&f32t(&be, &x, &[t, k]), &wq, None).unwrap())
                    })
                    .collect();
                for (be, o) in simd.iter().zip(&outs).skip(1) {
                    assert!(
                        bits_equal(o, &outs[0]),
                        "{mode:?} {dtype} T={t} K={k} N={n}: {:?} differs from {:?}",
                        be.isa(),
                        simd[0].isa()
                    );
                }
            }
        }
    }
}

/// Every row alone or in any sub-batch equals the same row of the whole batch, bit for bit,
/// in both modes, on every path; and 1, 2, 3 or 7 threads give the same bits.
#[test]
fn blocks_are_batch_and_thread_invariant() {
    let mut rng = Rng::new(14);
    let (t, n) = (61, 45);
    for dtype in [
        DType::Q4_1,
        DType::Q8_0,
        DType::Q4_K,
        DType::Q6_K,
        DType::Q5_0,
    ] {
        let k = 2 * dtype.block_size().max(256);
        let blocks = random_blocks(&mut rng, dtype, n, k);
        let x = rng.vec(t * k);
        for base in backends() {
            for mode in [Activations::Exact, Activations::Int8] {
                let be = base.clone().with_activations(mode);
                let wq = be.from_blocks(&blocks, Shape::new([n, k]), dtype).unwrap();
                let full = host(&be.matmul(&f32t(&be, &x, &[t, k]), &wq, None).unwrap());
                for (start, len) in [
                    (0, 1),
                    (7, 1),
                    (60, 1),
                    (3, 2),
                    (10, 3),
                    (20, 5),
                    (1, 13),
                    (0, 48),
                    (13, 48),
                ] {
                    let xs = f32t(&be, &x[start * k..(start + len) * k], &[len, k]);
                    let part = host(&be.matmul(&xs, &wq, None).unwrap());
                    assert!(
                        bits_equal(&part, &full[start * n..(start + len) * n]),
                        "{:?} {mode:?} {dtype}: rows {start}..{} differ alone vs in the batch",
                        be.isa(),
                        start + len
                    );
                }
                for threads in [1, 2, 3, 7] {
                    let tb = CpuBackend::with_threads(threads)
                        .unwrap()
                        .with_isa(be.isa())
                        .unwrap()
                        .with_activations(mode);
                    let wq = tb.from_blocks(&blocks, Shape::new([n, k]), dtype).unwrap();
                    let got = host(&tb.matmul(&f32t(&tb, &x, &[t, k]), &wq, None).unwrap());
                    assert!(
                        bits_equal(&got, &full),
                        "{:?} {mode:?} {dtype}: {threads} threads",
                        be.isa()
                    );
                }
            }
        }
    }
}

#[test]
fn embedding_of_blocks_is_the_dequantized_rows() {
    let mut rng = Rng::new(15);
    let be = CpuBackend::new();
    for dtype in TYPES {
        let (v, h) = (37, 2 * dtype.block_size());
        let blocks = random_blocks(&mut rng, dtype, v, h);
        let w = dequantized(dtype, &blocks, v, h);
        let table = be.from_blocks(&blocks, Shape::new([v, h]), dtype).unwrap();
        let ids = [5u32, 0, 36, 5, 17];
        let got = host(
            &be.embedding(&table, &u32t(&be, &ids, &[ids.len()]))
                .unwrap(),
        );
        for (i, &id) in ids.iter().enumerate() {
            let want = &w[id as usize * h..(id as usize + 1) * h];
            assert!(
                bits_equal(&got[i * h..(i + 1) * h], want),
                "{dtype}: row {id}"
            );
        }
    }
}

#[test]
fn supports_every_block_type_for_matmul_and_embedding() {
    let be = CpuBackend::new();
    for dtype in TYPES {
        assert!(be.supports(ingot_tensor::Op::Matmul, dtype), "{dtype}");
        assert!(be.supports(ingot_tensor::Op::Embedding, dtype), "{dtype}");
    }
}
