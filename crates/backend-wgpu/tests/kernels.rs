//! The GPU's kernels against the CPU reference backend, beyond the conformance suite
//! (tests/conformance.rs, which holds every verb against its host definition): matmul's
//! kernel variants and split weights, pooled buffers, sampling and log-probabilities on
//! random rows, out-of-range indices. Outputs are poisoned first (see `common`).
//!
//! Tolerances: 1e-5 relative (|gpu − cpu| ≤ 1e-5 · max(|cpu|, 1)) for f32 arithmetic, f16
//! and bf16 weights included: both backends widen the same stored halves exactly and
//! accumulate in f32, so only the summation order differs (matmul: scaled by sqrt(K / 1024)
//! above K = 1024, as the rounding of a sum grows). Copies (embedding, gather,
//! kv_write, data movement) and the single f32 add of `add` and of the fused residual must
//! be exact. Batch invariance is bitwise, within the GPU backend.

mod common;

use common::*;
use ingot_backend_cpu::CpuBackend;
use ingot_backend_wgpu::WgpuBackend;
use ingot_tensor::{Backend, BackendError, DType, Op, Shape};

const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

fn matmul_both(
    gpu: &WgpuBackend,
    cpu: &CpuBackend,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    (t, k, n): (usize, usize, usize),
    dtype: DType,
) -> (Vec<f32>, Vec<f32>) {
    let gw = gpu.from_f32(w, Shape::new([n, k]), dtype).unwrap();
    let cw = cpu.from_f32(w, Shape::new([n, k]), dtype).unwrap();
    let gb = bias.map(|b| g32(gpu, b, &[n]));
    let cb = bias.map(|b| c32(cpu, b, &[n]));
    let g = gpu.matmul(&g32(gpu, x, &[t, k]), &gw, gb.as_ref()).unwrap();
    let c = cpu.matmul(&c32(cpu, x, &[t, k]), &cw, cb.as_ref()).unwrap();
    assert_eq!(g.dims(), &[t, n]);
    (gpu.to_f32(&g).unwrap(), cpu.to_f32(&c).unwrap())
}

#[test]
fn matmul_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(1);
    // GEMV (T <= 16) and GEMM shapes, odd sizes, K below and above one 128-element chunk.
    // K % 8 == 0 takes the wide GEMV (one column per invocation up to T = 4, two above):
    // 7 chunks (8 lanes), a 72-element tail chunk, 10 chunks (16 lanes), 38 and 66 chunks
    // (32 lanes, two and three rounds), K = 8 (one short pack run); rows 1..16 cover
    // the 4-row and single-row chains, odd N a second column past the end. Other K take the
    // scalar GEMV.
    for (t, k, n) in [
        (1, 896, 67),
        (3, 129, 250),
        (16, 200, 131),
        (5, 1280, 40),
        (2, 4864, 33),
        (6, 8448, 9),
        (4, 1032, 50),
        (13, 8, 3),
        (7, 264, 300),
        (17, 300, 65),
        (9, 1, 5),
        (70, 257, 96),
        (130, 64, 200),
    ] {
        let (x, w, b) = (rng.vec(t * k), rng.vec(n * k), rng.vec(n));
        for dtype in DTYPES {
            for bias in [None, Some(&b[..])] {
                let (g, c) = matmul_both(&gpu, &cpu, &x, &w, bias, (t, k, n), dtype);
                let what = format!("T={t} K={k} N={n} {dtype} bias={}", bias.is_some());
                // The rounding of an f32 sum grows like sqrt(K): 1e-5 up to K = 1024.
                let tol = 1e-5 * (k as f32 / 1024.0).sqrt().max(1.0);
                assert_close(&g, &c, tol, &what);
            }
        }
    }
}

/// The 128x128-tile GEMM (large outputs: `gemm_big_pays`) against the CPU, and its rows
/// bit-identical to the same rows computed alone (GEMV) and in a 100-row batch (64x64 GEMM).
#[test]
fn big_tile_gemm_matches_cpu_and_other_kernels() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(5);
    // 3 x 129 and 17 x 16 tiles of 128; K with a short last chunk and a short last step.
    for (t, k, n) in [(257, 300, 16390), (2100, 136, 2000)] {
        let (x, w, b) = (rng.vec(t * k), rng.vec(n * k), rng.vec(n));
        for dtype in DTYPES {
            let (g, c) = matmul_both(&gpu, &cpu, &x, &w, Some(&b), (t, k, n), dtype);
            assert_close(&g, &c, 2e-5, &format!("T={t} K={k} N={n} {dtype}"));
            let wt = gpu.from_f32(&w, Shape::new([n, k]), dtype).unwrap();
            let bt = g32(&gpu, &b, &[n]);
            for (r0, count) in [(0, 1), (t - 1, 1), (t / 2 - 50, 100)] {
                let y = gpu
                    .matmul(
                        &g32(&gpu, &x[r0 * k..(r0 + count) * k], &[count, k]),
                        &wt,
                        Some(&bt),
                    )
                    .unwrap();
                assert_bits(
                    &gpu.to_f32(&y).unwrap(),
                    &g[r0 * n..(r0 + count) * n],
                    &format!("{dtype} T={t} rows {r0}..{}", r0 + count),
                );
            }
        }
    }
}

/// A row's result is bit-identical whichever kernel (GEMV or GEMM) and batch computed it.
#[test]
fn matmul_rows_are_batch_invariant() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(2);
    // K = 333: scalar GEMV vs GEMM; K = 1032 (9 chunks, the last of 8), 4864 (38 chunks)
    // and 8256 (65 chunks, three rounds of 32 lanes): wide GEMV vs GEMM.
    for (dtype, k) in DTYPES
        .into_iter()
        .flat_map(|d| [(d, 333), (d, 1032), (d, 4864), (d, 8256)])
    {
        let (t, n) = (100, 77);
        let (x, w, b) = (rng.vec(t * k), rng.vec(n * k), rng.vec(n));
        let wt = gpu.from_f32(&w, Shape::new([n, k]), dtype).unwrap();
        let bt = g32(&gpu, &b, &[n]);
        let run = |rows: &[f32], count: usize| {
            let y = gpu
                .matmul(&g32(&gpu, rows, &[count, k]), &wt, Some(&bt))
                .unwrap();
            gpu.to_f32(&y).unwrap()
        };
        let full = run(&x, t);
        for (r0, count) in [
            (0, 1),
            (37, 1),
            (99, 1),
            (10, 5),
            (20, 16),
            (50, 17),
            (3, 64),
        ] {
            let part = run(&x[r0 * k..(r0 + count) * k], count);
            assert_bits(
                &part,
                &full[r0 * n..(r0 + count) * n],
                &format!("{dtype} K={k}: rows {r0}..{}", r0 + count),
            );
        }
    }
}

/// Weights split into parts (forced small binding limit) give the same bits as one buffer.
#[test]
fn split_weights_match_whole() {
    let (Some(gpu), Some(split)) = (gpu(), gpu_split()) else {
        return;
    };
    let mut rng = Rng::new(3);
    let (v, h) = (301, 37); // 301 rows of 37 floats: 148 bytes per row, ~27 rows per part
    let table = rng.vec(v * h);
    let ids: Vec<u32> = (0..40).map(|_| rng.below(v) as u32).collect();
    for dtype in DTYPES {
        let whole = gpu.from_f32(&table, Shape::new([v, h]), dtype).unwrap();
        let parts = split.from_f32(&table, Shape::new([v, h]), dtype).unwrap();
        assert!(parts.storage().num_parts() > 5, "{dtype}: not split");
        assert_eq!(whole.storage().num_parts(), 1);
        assert_eq!(split.to_f32(&parts).unwrap(), gpu.to_f32(&whole).unwrap());
        let e1 = gpu.embedding(&whole, &gu(&gpu, &ids, &[40])).unwrap();
        let e2 = split.embedding(&parts, &gu(&split, &ids, &[40])).unwrap();
        assert_bits(
            &split.to_f32(&e2).unwrap(),
            &gpu.to_f32(&e1).unwrap(),
            &format!("embedding {dtype}"),
        );
        for t in [1, 3, 20] {
            // x stays below the 4 KiB split size: only the weight is split.

            let x = rng.vec(t * h);
            let b = rng.vec(v);
            let y1 = gpu
                .matmul(&g32(&gpu, &x, &[t, h]), &whole, Some(&g32(&gpu, &b, &[v])))
                .unwrap();
            let y2 = split
                .matmul(
                    &g32(&split, &x, &[t, h]),
                    &parts,
                    Some(&g32(&split, &b, &[v])),
                )
                .unwrap();
            assert_bits(
                &split.to_f32(&y2).unwrap(),
                &gpu.to_f32(&y1).unwrap(),
                &format!("matmul {dtype} T={t}"),
            );
        }
    }
    // Activations are never split: a verb given a split tensor where it needs one buffer
    // returns an error rather than computing on part of it.
    let x = split
        .from_f32(&table, Shape::new([v, h]), DType::F32)
        .unwrap();
    let w = g32(&split, &vec![1.0; h], &[h]);
    assert!(matches!(
        split.rms_norm(&x, None, &w, 1e-6),
        Err(BackendError::Device(_))
    ));
}

/// The wide GEMV on a weight split into parts (K % 8 == 0; forced small binding limit)
/// gives the same bits as on one buffer, and as the GEMM for the same rows.
#[test]
fn split_weights_wide_gemv_match_whole() {
    let (Some(gpu), Some(split)) = (gpu(), gpu_split()) else {
        return;
    };
    let mut rng = Rng::new(11);
    let (n, k) = (301, 136); // 2 chunks; f16 rows of 272 bytes: 15 rows per 4 KiB part
    let (w, b) = (rng.vec(n * k), rng.vec(n));
    let x = rng.vec(20 * k);
    for dtype in DTYPES {
        let whole = gpu.from_f32(&w, Shape::new([n, k]), dtype).unwrap();
        let parts = split.from_f32(&w, Shape::new([n, k]), dtype).unwrap();
        assert!(parts.storage().num_parts() > 5, "{dtype}: not split");
        let bias = g32(&gpu, &b, &[n]);
        let gemm = gpu
            .to_f32(
                &gpu.matmul(&g32(&gpu, &x, &[20, k]), &whole, Some(&bias))
                    .unwrap(),
            )
            .unwrap();
        // x stays below the 4 KiB split size (7 rows of 136 floats): only W is split.
        for t in [1, 4, 7] {
            let xs = &x[..t * k];
            let y1 = gpu
                .matmul(&g32(&gpu, xs, &[t, k]), &whole, Some(&bias))
                .unwrap();
            let y2 = split
                .matmul(
                    &g32(&split, xs, &[t, k]),
                    &parts,
                    Some(&g32(&split, &b, &[n])),
                )
                .unwrap();
            let y1 = gpu.to_f32(&y1).unwrap();
            let what = format!("{dtype} T={t}");
            assert_bits(&split.to_f32(&y2).unwrap(), &y1, &what);
            assert_bits(&y1, &gemm[..t * n], &format!("{what}: GEMV vs GEMM"));
        }
    }
}

/// Reusing freed buffers (the pool, off when poisoning) changes no result: a chain whose
/// every input is dropped before the next output is allocated, so outputs land in buffers
/// that earlier, still pending commands read.
#[test]
fn pooled_buffers_give_the_same_results() {
    let (Some(gpu), Some(pooled)) = (gpu(), gpu_pooled()) else {
        return;
    };
    let mut rng = Rng::new(10);
    let (t, k) = (5, 96);
    let (x0, w, norm) = (rng.vec(t * k), rng.vec(k * k), rng.vec(k));
    let run = |be: &WgpuBackend| {
        let wt = be.from_f32(&w, Shape::new([k, k]), DType::F16).unwrap();
        let nt = g32(be, &norm, &[k]);
        let mut x = g32(be, &x0, &[t, k]);
        for _ in 0..40 {
            let y = be.matmul(&x, &wt, None).unwrap();
            drop(x);
            let z = be.add(&y, &y).unwrap();
            drop(y);
            x = be.rms_norm(&z, None, &nt, 1e-6).unwrap();
        }
        be.to_f32(&x).unwrap()
    };
    assert_bits(&run(&pooled), &run(&gpu), "pooled vs fresh buffers");
}

/// What the GPU does beyond the conformance suite (tests/conformance.rs): ids and row
/// indices past the end give poison (NaN rows, `u32::MAX`), never other memory; an
/// impossible size is an error; the step-boundary verbs.
#[test]
fn out_of_range_indices_and_limits() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(4);
    let (v, h) = (50, 25);
    let table = rng.vec(v * h);
    let g = gpu
        .embedding(&g32(&gpu, &table, &[v, h]), &gu(&gpu, &[1, v as u32], &[2]))
        .unwrap();
    let out = gpu.to_f32(&g).unwrap();
    assert_eq!(out[..h], table[h..2 * h]);
    assert!(out[h..].iter().all(|x| x.is_nan()));

    let (t, h) = (37, 19);
    let x = rng.vec(t * h);
    for dtype in DTYPES {
        let gx = gpu.from_f32(&x, Shape::new([t, h]), dtype).unwrap();
        let bad = gpu.gather_rows(&gx, &gu(&gpu, &[1, 99], &[2])).unwrap();
        let out = gpu.to_f32(&bad).unwrap();
        assert_bits(&out[..h], &gpu.to_f32(&gx).unwrap()[h..2 * h], "row 1");
        assert!(out[h..].iter().all(|v| v.is_nan()), "{dtype}: bad index");
    }
    let ints: Vec<u32> = (0..t as u32 * 3).collect();
    let g = gpu
        .gather_rows(&gu(&gpu, &ints, &[t, 3]), &gu(&gpu, &[4, 36, 99], &[3]))
        .unwrap();
    assert_eq!(
        gpu.to_u32(&g).unwrap(),
        [12, 13, 14, 108, 109, 110, u32::MAX, u32::MAX, u32::MAX]
    );

    assert!(gpu.zeros(Shape::new([1usize << 40]), DType::F32).is_err());
    Backend::sync(&gpu).unwrap();
    assert_eq!(gpu.max_tensor_bytes(), gpu.max_binding_bytes());
}

/// The CPU's choice for a sampling row with `params` changed by `edit` (to probe whether a
/// GPU/CPU difference sits on a filter boundary).
fn cpu_sample_with(
    cpu: &CpuBackend,
    row: &[f32],
    params: [u32; 8],
    edit: impl Fn(&mut [u32; 8]),
) -> u32 {
    let mut p = params;
    edit(&mut p);
    let v = row.len();
    let out = cpu
        .sample(&c32(cpu, row, &[1, v]), &cu(cpu, &p, &[1, 8]))
        .unwrap();
    cpu.to_u32(&out).unwrap()[0]
}

/// Whether the GPU's token `g` differing from the CPU's `c` is a near-tie, which a few ulp
/// of `/`, `exp` or `ln` (the only operations the backends may round differently) can
/// flip. Precisely, one of:
/// - both tokens' noisy scores `s + g` (host, f64 noise from the same hash) are within
///   1e-4 · max(1, |score|) of each other;
/// - the CPU picks `g` itself once `top_p` or `min_p` moves by a relative 1e-4 either way
///   (a token on the nucleus or min-p boundary);
/// - with top-k on, the k-th and (k+1)-th largest scaled values are within 1e-5 relative.
fn sample_near_tie(cpu: &CpuBackend, row: &[f32], params: [u32; 8], g: u32, c: u32) -> bool {
    let t = f32::from_bits(params[0]);
    let score = |i: u32| {
        let u = ingot_tensor::sampling::sample_uniform(params[4], params[5], params[6], i) as f64;
        (row[i as usize] / t) as f64 - (-u.ln()).ln()
    };
    let (sc, sg) = (score(c), score(g));
    if (sc - sg).abs() <= 1e-4 * sc.abs().max(1.0) {
        return true;
    }
    for f in [1.0 - 1e-4, 1.0 + 1e-4] {
        let moved = |w: usize| {
            cpu_sample_with(cpu, row, params, |p| {
                p[w] = (f32::from_bits(p[w]) * f).min(1.0).to_bits()
            })
        };
        if moved(2) == g || moved(3) == g {
            return true;
        }
    }
    let k = params[1] as usize;
    if k > 0 && k < row.len() {
        let mut s: Vec<f32> = row.iter().map(|&x| x / t).collect();
        s.sort_by(|a, b| b.total_cmp(a));
        if (s[k - 1] - s[k]).abs() <= 1e-5 * s[k - 1].abs().max(1.0) {
            return true;
        }
    }
    false
}

/// GPU `sample` against the CPU reference on random rows: vocabularies from 1 to Qwen's
/// 151936, temperatures 0.3-1.5, each filter alone and all combined, random seeds and
/// counters. Both follow one definition with the same reduction order, so they must pick
/// the same token in at least 99% of rows, and every difference must be a near-tie (see
/// `sample_near_tie`). Also: a row's token does not depend on the batch (bitwise), greedy
/// rows (temperature 0) are the first maximum, and zero rows work.
#[test]
fn sample_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(77);
    let temps = [0.3f32, 0.5, 0.8, 1.0, 1.5];
    let (mut total, mut differ) = (0usize, 0usize);
    for (t, v) in [
        (20, 1),
        (60, 7),
        (200, 300),
        (100, 257),
        (60, 4099),
        (10, 151_936),
    ] {
        // Logits with a spread like a model's: uniform in [-8, 8), some rows coarse (ties).
        let mut x = rng.vec(t * v);
        for (r, row) in x.chunks_mut(v).enumerate() {
            for e in row.iter_mut() {
                *e *= 8.0;
                if r % 9 == 4 {
                    *e = e.round();
                }
            }
        }
        let mut params = Vec::with_capacity(t * 8);
        for r in 0..t {
            let temp = temps[rng.below(temps.len())];
            let top_k = (1 + rng.below(v.min(60))) as u32;
            let top_p = 0.5 + 0.45 * (rng.uniform() + 1.0) / 2.0;
            let min_p = 0.02 + 0.2 * (rng.uniform() + 1.0) / 2.0;
            let (k, p, m) = match r % 5 {
                0 => (0, 1.0, 0.0),
                1 => (top_k, 1.0, 0.0),
                2 => (0, top_p, 0.0),
                3 => (0, 1.0, min_p),
                _ => (top_k, top_p, min_p),
            };
            let seed = rng.next_u64();
            let counter = rng.below(5000) as u32;
            params.extend(ingot_tensor::sampling::sample_params(
                temp, k, p, m, seed, counter,
            ));
        }
        let g = gpu
            .sample(&g32(&gpu, &x, &[t, v]), &gu(&gpu, &params, &[t, 8]))
            .unwrap();
        assert_eq!((g.dtype(), g.dims()), (DType::U32, &[t][..]));
        let c = cpu
            .sample(&c32(&cpu, &x, &[t, v]), &cu(&cpu, &params, &[t, 8]))
            .unwrap();
        let (g, c) = (gpu.to_u32(&g).unwrap(), cpu.to_u32(&c).unwrap());
        for r in 0..t {
            total += 1;
            if g[r] != c[r] {
                differ += 1;
                let row = &x[r * v..(r + 1) * v];
                let prm: [u32; 8] = params[r * 8..(r + 1) * 8].try_into().unwrap();
                assert!(
                    sample_near_tie(&cpu, row, prm, g[r], c[r]),
                    "V={v} row {r} params {prm:?}: gpu {} cpu {} is not a near-tie",
                    g[r],
                    c[r]
                );
            }
        }
        // Batch invariance: the last row alone picks what it picked in the batch.
        let r = t - 1;
        let alone = gpu
            .sample(
                &g32(&gpu, &x[r * v..], &[1, v]),
                &gu(&gpu, &params[r * 8..], &[1, 8]),
            )
            .unwrap();
        assert_eq!(
            gpu.to_u32(&alone).unwrap()[0],
            g[r],
            "V={v}: batch invariance"
        );
    }
    eprintln!("sample: {differ} of {total} rows differ from the CPU (near-ties)");
    assert!(differ * 100 <= total, "{differ} of {total} rows differ");
    // Greedy rows and zero rows.
    let x = [0.5f32, 2.0, -1.0, 2.0, f32::NAN];
    let greedy = ingot_tensor::sampling::sample_params(0.0, 0, 1.0, 0.0, 1, 1);
    let g = gpu
        .sample(&g32(&gpu, &x, &[1, 5]), &gu(&gpu, &greedy, &[1, 8]))
        .unwrap();
    assert_eq!(gpu.to_u32(&g).unwrap(), [1]);
    let none = gpu
        .sample(&g32(&gpu, &[], &[0, 5]), &gu(&gpu, &[], &[0, 8]))
        .unwrap();
    assert_eq!(gpu.to_u32(&none).unwrap(), Vec::<u32>::new());
    assert!(gpu.supports(Op::Sample, DType::F32) && !gpu.supports(Op::Sample, DType::F16));
    assert!(gpu.samples_on_device() && !cpu.samples_on_device());
}

/// `top_logprobs` on the GPU equals the CPU reference on random rows: every id (chosen and
/// top-k, in order) bit for bit, every log-probability within 1e-5 absolute (the two sum
/// `exp` in the same order, but their `exp`/`ln` may round a few ulp apart). Rows include
/// heavy ties (values on a coarse grid), ties at the top, signed zeros and -inf columns.
#[test]
fn top_logprobs_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(41);
    for (v, ks) in [
        (1usize, &[0usize, 1][..]),
        (5, &[0, 3, 5]),
        (257, &[1, 7, 20]),
        (4099, &[0, 2, 13]),
        (151_936, &[0, 1, 5, 20]),
    ] {
        let t = 4;
        let mut x: Vec<f32> = rng.vec(t * v).iter().map(|u| u * 12.0).collect();
        // Row 1: few distinct values, so long runs of ties.
        for y in &mut x[v..2 * v] {
            *y = (*y / 3.0).round();
        }
        // Row 2: a repeated maximum, signed zeros and -inf among random values.
        for (j, y) in x[2 * v..3 * v].iter_mut().enumerate() {
            *y = match j % 7 {
                0 => 13.0,
                1 => 0.0,
                2 => -0.0,
                3 => f32::NEG_INFINITY,
                _ => *y,
            };
        }
        let tokens: Vec<u32> = (0..t).map(|_| rng.below(v) as u32).collect();
        for &k in ks {
            let w = 2 * (1 + k);
            let g = gpu
                .top_logprobs(&g32(&gpu, &x, &[t, v]), &gu(&gpu, &tokens, &[t]), k)
                .unwrap();
            assert_eq!(g.dims(), [t, w]);
            let g = gpu.to_f32(&g).unwrap();
            let c = cpu
                .top_logprobs(&c32(&cpu, &x, &[t, v]), &cu(&cpu, &tokens, &[t]), k)
                .unwrap();
            let c = cpu.to_f32(&c).unwrap();
            for r in 0..t {
                for j in 0..1 + k {
                    let (gi, ci) = (g[r * w + 2 * j].to_bits(), c[r * w + 2 * j].to_bits());
                    assert_eq!(gi, ci, "V={v} k={k} row {r}: id {j}");
                    let (gl, cl) = (g[r * w + 2 * j + 1], c[r * w + 2 * j + 1]);
                    assert!(
                        gl == cl || (gl - cl).abs() <= 1e-5,
                        "V={v} k={k} row {r}: logprob {j}: {gl} vs {cl}"
                    );
                }
                // The list is the ranking: ids distinct, logprobs non-increasing.
                let ids: Vec<u32> = (0..k).map(|j| g[r * w + 2 + 2 * j].to_bits()).collect();
                let mut dedup = ids.clone();
                dedup.sort_unstable();
                dedup.dedup();
                assert_eq!(dedup.len(), k, "V={v} k={k} row {r}: repeated ids");
                for j in 1..k {
                    assert!(g[r * w + 1 + 2 * j] >= g[r * w + 3 + 2 * j]);
                }
            }
        }
    }
    // A chosen token outside the vocabulary gets NaN; zero rows give an empty tensor.
    let x = [0.5f32, 2.0, -1.0];
    let g = gpu
        .top_logprobs(&g32(&gpu, &x, &[1, 3]), &gu(&gpu, &[7], &[1]), 2)
        .unwrap();
    let g = gpu.to_f32(&g).unwrap();
    assert_eq!(g[0].to_bits(), 7);
    assert!(g[1].is_nan());
    assert_eq!((g[2].to_bits(), g[4].to_bits()), (1, 0));
    let none = gpu
        .top_logprobs(&g32(&gpu, &[], &[0, 3]), &gu(&gpu, &[], &[0]), 1)
        .unwrap();
    assert_eq!(gpu.to_f32(&none).unwrap(), Vec::<f32>::new());
    assert!(gpu.supports(Op::TopLogprobs, DType::F32));
}
