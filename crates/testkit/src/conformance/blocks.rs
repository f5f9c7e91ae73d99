//! Conformance of the verbs that read weights kept in GGUF blocks (`Backend::from_blocks`),
//! for every block format the backend says it reads (`supports(Op::Matmul, dtype)`), on
//! random blocks: the reference is [`ingot_tensor::quant::dequantize`], the one definition of
//! what the bytes mean.
//!
//! - embedding: the rows of the dequantized table, bit for bit (decoding is exact).
//! - matmul, matmul_add, matmul_silu_mul (decode and prefill row counts): within
//!   1e-5 · Σ_k |x_k w_k| + 1e-6 of the f64 product of x and the dequantized weights (f32
//!   accumulation; an error relative to the terms, since random signs make sums cancel);
//!   silu_mul's epilogue within 1e-5 of its f64 value on top.

use ingot_tensor::{Backend, DType, Op, Shape, quant};

use super::{assert_bits, f32t, u32t};
use crate::Rng;

/// The block formats `be` reads.
fn formats<B: Backend>(be: &B) -> Vec<DType> {
    DType::BLOCK_TYPES
        .iter()
        .copied()
        .filter(|&d| be.supports(Op::Matmul, d))
        .collect()
}

/// Random blocks of an [n, k] matrix: random bytes, then every f16 scale field set to a
/// finite value of either sign (|d| < 0.05), as real files have.
pub fn random_blocks(rng: &mut Rng, dtype: DType, n: usize, k: usize) -> Vec<u8> {
    let bytes = dtype.storage_bytes(n * k).expect("whole blocks");
    let mut b: Vec<u8> = (0..bytes).map(|_| (rng.next_u64() >> 24) as u8).collect();
    let scales: &[usize] = match dtype {
        DType::Q8_0 | DType::Q4_0 | DType::Q5_0 => &[0],
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q6_K => &[208],
        d => panic!("random_blocks: {d} is not a block format"),
    };
    for blk in b.chunks_exact_mut(dtype.block_bytes()) {
        for &off in scales {
            let v = half::f16::from_f32(rng.uniform() * 0.05);
            blk[off..off + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    b
}

/// The [n, k] weights `blocks` hold.
fn dequantized(dtype: DType, blocks: &[u8], n: usize, k: usize) -> Vec<f32> {
    let mut w = vec![f32::NAN; n * k];
    quant::dequantize(dtype, blocks, &mut w);
    w
}

/// (x W^T)[t, j] in f64 and Σ_k |x w| per element.
fn product(x: &[f32], w: &[f32], k: usize) -> (Vec<f64>, Vec<f64>) {
    let (t, n) = (x.len() / k, w.len() / k);
    let (mut y, mut mag) = (vec![0.0; t * n], vec![0.0; t * n]);
    for r in 0..t {
        for j in 0..n {
            for i in 0..k {
                let p = x[r * k + i] as f64 * w[j * k + i] as f64;
                y[r * n + j] += p;
                mag[r * n + j] += p.abs();
            }
        }
    }
    (y, mag)
}

#[track_caller]
fn assert_within(got: &[f32], want: &[f64], bound: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, ((&g, &w), &b)) in got.iter().zip(want).zip(bound).enumerate() {
        assert!(
            (g as f64 - w).abs() <= b,
            "{what}: element {i}: got {g}, want {w} (bound {b:e})"
        );
    }
}

/// (T, K, N): one decode row, a few rows, a prefill chunk; K of one block to many chunks.
fn shapes(block: usize) -> [(usize, usize, usize); 5] {
    [
        (1, block, 37),
        (3, 4 * block, 21),
        (17, 2 * block, 40),
        (70, 3 * block, 19),
        (2, 40 * block, 9),
    ]
}

/// embedding over blocks gathers exactly the dequantized rows.
pub fn block_embedding_decodes_exactly<B: Backend>(be: &B) {
    let mut rng = Rng::new(61);
    for dtype in formats(be) {
        assert!(be.supports(Op::Embedding, dtype), "{dtype}");
        let (v, h) = (29, 2 * dtype.block_size());
        let blocks = random_blocks(&mut rng, dtype, v, h);
        let table = dequantized(dtype, &blocks, v, h);
        let tt = be.from_blocks(&blocks, Shape::new([v, h]), dtype).unwrap();
        let ids: Vec<u32> = (0..23).map(|i| ((i * 7 + 3) % v) as u32).collect();
        let out = be.embedding(&tt, &u32t(be, &ids, &[ids.len()])).unwrap();
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&i| table[i as usize * h..(i as usize + 1) * h].to_vec())
            .collect();
        assert_bits(&be.to_f32(&out).unwrap(), &want, &format!("{dtype}"));
    }
}

/// matmul (with bias), matmul_add and matmul_silu_mul over blocks against the f64 product
/// with the dequantized weights.
pub fn block_matmul_matches_reference<B: Backend>(be: &B) {
    let mut rng = Rng::new(62);
    for dtype in formats(be) {
        for (t, k, n) in shapes(dtype.block_size()) {
            let what = format!("{dtype} T={t} K={k} N={n}");
            let blocks = random_blocks(&mut rng, dtype, n, k);
            let w = dequantized(dtype, &blocks, n, k);
            let (x, bias, res) = (rng.vec(t * k), rng.vec(n), rng.vec(t * n));
            let wt = be.from_blocks(&blocks, Shape::new([n, k]), dtype).unwrap();
            let xt = f32t(be, &x, &[t, k]);
            let (y, mag) = product(&x, &w, k);
            let bound: Vec<f64> = mag.iter().map(|m| 1e-5 * m + 1e-6).collect();

            let got = be.matmul(&xt, &wt, Some(&f32t(be, &bias, &[n]))).unwrap();
            let want: Vec<f64> = (0..t * n).map(|i| y[i] + bias[i % n] as f64).collect();
            assert_within(&be.to_f32(&got).unwrap(), &want, &bound, &what);

            let mut rt = f32t(be, &res, &[t, n]);
            be.matmul_add(&xt, &wt, None, &mut rt).unwrap();
            let want: Vec<f64> = (0..t * n).map(|i| y[i] + res[i] as f64).collect();
            assert_within(
                &be.to_f32(&rt).unwrap(),
                &want,
                &bound,
                &format!("{what} add"),
            );

            // [gate | up] = the two halves of W's rows (N even here).
            let (half, n2) = (n / 2, n / 2 * 2);
            let wt2 = be
                .from_blocks(
                    &blocks[..dtype.storage_bytes(n2 * k).unwrap()],
                    Shape::new([n2, k]),
                    dtype,
                )
                .unwrap();
            let got = be.to_f32(&be.matmul_silu_mul(&xt, &wt2).unwrap()).unwrap();
            for r in 0..t {
                for j in 0..half {
                    let (g, u) = (y[r * n + j], y[r * n + half + j]);
                    let (bg, bu) = (bound[r * n + j], bound[r * n + half + j]);
                    let s = g / (1.0 + (-g).exp());
                    // |d silu/dg| <= 1.1: the gate's error passes through scaled by at most
                    // 1.1 |u|, the up's by |silu(g)|.
                    let tol = 1.1 * bg * (u.abs() + bu) + s.abs() * bu + 1e-5 * (s * u).abs();
                    let v = got[r * half + j] as f64;
                    assert!(
                        (v - s * u).abs() <= tol + 1e-6,
                        "{what} silu_mul: row {r} column {j}: got {v}, want {}",
                        s * u
                    );
                }
            }
        }
    }
}
