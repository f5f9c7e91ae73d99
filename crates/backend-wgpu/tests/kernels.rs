//! Every verb but attention on the GPU against the CPU reference backend, on random inputs
//! and odd shapes, with outputs poisoned first (see `common`).
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
use ingot_tensor::{Backend, BackendError, DType, Op, RopeStyle, Shape};

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
    // 7 chunks (8 lanes), a 72-element tail chunk, 10 chunks (16 lanes), 38 chunks (32 lanes,
    // two rounds), K = 8 (one short pack run); rows 1..16 cover the 4-row and single-row
    // chains, odd N a second column past the end. Other K take the scalar GEMV.
    for (t, k, n) in [
        (1, 896, 67),
        (3, 129, 250),
        (16, 200, 131),
        (5, 1280, 40),
        (2, 4864, 33),
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
    // K = 333: scalar GEMV vs GEMM; K = 1032 (9 chunks, the last of 8) and 4864 (38
    // chunks): wide GEMV vs GEMM.
    for (dtype, k) in DTYPES
        .into_iter()
        .flat_map(|d| [(d, 333), (d, 1032), (d, 4864)])
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

#[test]
fn embedding_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(4);
    let (v, h) = (50, 25);
    let table = rng.vec(v * h);
    let mut ids: Vec<u32> = (0..37).map(|_| rng.below(v) as u32).collect();
    ids[5] = (v - 1) as u32;
    for dtype in DTYPES {
        let g = gpu
            .embedding(
                &gpu.from_f32(&table, Shape::new([v, h]), dtype).unwrap(),
                &gu(&gpu, &ids, &[37]),
            )
            .unwrap();
        let c = cpu
            .embedding(
                &cpu.from_f32(&table, Shape::new([v, h]), dtype).unwrap(),
                &cu(&cpu, &ids, &[37]),
            )
            .unwrap();
        assert_eq!((g.dims(), g.dtype()), (&[37usize, 25][..], DType::F32));
        assert_bits(
            &gpu.to_f32(&g).unwrap(),
            &cpu.to_f32(&c).unwrap(),
            &format!("{dtype}"),
        );
    }
    // An id past the vocabulary yields a NaN row, not another row.
    let g = gpu
        .embedding(&g32(&gpu, &table, &[v, h]), &gu(&gpu, &[1, v as u32], &[2]))
        .unwrap();
    let out = gpu.to_f32(&g).unwrap();
    assert_eq!(out[..h], table[h..2 * h]);
    assert!(out[h..].iter().all(|x| x.is_nan()));
}

#[test]
fn rms_norm_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(5);
    for (t, h) in [(1, 576), (37, 77), (5, 8), (3, 1), (200, 64), (2, 1000)] {
        let (x, w, r) = (rng.vec(t * h), rng.vec(h), rng.vec(t * h));
        let what = format!("T={t} H={h}");
        let g = gpu
            .rms_norm(&g32(&gpu, &x, &[t, h]), None, &g32(&gpu, &w, &[h]), 1e-6)
            .unwrap();
        let c = cpu
            .rms_norm(&c32(&cpu, &x, &[t, h]), None, &c32(&cpu, &w, &[h]), 1e-6)
            .unwrap();
        assert_close(
            &gpu.to_f32(&g).unwrap(),
            &cpu.to_f32(&c).unwrap(),
            1e-5,
            &what,
        );

        let mut gr = g32(&gpu, &r, &[t, h]);
        let mut cr = c32(&cpu, &r, &[t, h]);
        let g = gpu
            .rms_norm(
                &g32(&gpu, &x, &[t, h]),
                Some(&mut gr),
                &g32(&gpu, &w, &[h]),
                1e-5,
            )
            .unwrap();
        let c = cpu
            .rms_norm(
                &c32(&cpu, &x, &[t, h]),
                Some(&mut cr),
                &c32(&cpu, &w, &[h]),
                1e-5,
            )
            .unwrap();
        assert_bits(
            &gpu.to_f32(&gr).unwrap(),
            &cpu.to_f32(&cr).unwrap(),
            &format!("{what}: residual"),
        );
        assert_close(
            &gpu.to_f32(&g).unwrap(),
            &cpu.to_f32(&c).unwrap(),
            1e-5,
            &format!("{what}: fused"),
        );
    }
}

#[test]
fn rms_norm_rows_are_batch_invariant() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(6);
    let (t, h) = (300, 896);
    let (x, w) = (rng.vec(t * h), rng.vec(h));
    let wt = g32(&gpu, &w, &[h]);
    let full = gpu
        .to_f32(
            &gpu.rms_norm(&g32(&gpu, &x, &[t, h]), None, &wt, 1e-6)
                .unwrap(),
        )
        .unwrap();
    for r in [0, 17, 299] {
        let one = gpu
            .rms_norm(&g32(&gpu, &x[r * h..(r + 1) * h], &[1, h]), None, &wt, 1e-6)
            .unwrap();
        assert_bits(
            &gpu.to_f32(&one).unwrap(),
            &full[r * h..(r + 1) * h],
            &format!("row {r}"),
        );
    }
}

#[test]
fn rope_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(7);
    for style in [RopeStyle::Neox, RopeStyle::Interleaved] {
        for (t, hq, hk, d, rot) in [
            (1, 9, 3, 64, 64),
            (37, 8, 2, 64, 32),
            (5, 4, 1, 10, 6),
            (3, 2, 2, 16, 0),
            (4, 14, 2, 128, 128),
        ] {
            let (q, k) = (rng.vec(t * hq * d), rng.vec(t * hk * d));
            // Positions up to 200k: the angle reduction must hold far beyond [-pi, pi].
            let positions: Vec<u32> = (0..t).map(|_| rng.below(200_000) as u32).collect();
            let inv_freq = ingot_testkit::reference::inv_freq(1e6, rot);
            let (mut gq, mut gk) = (g32(&gpu, &q, &[t, hq, d]), g32(&gpu, &k, &[t, hk, d]));
            let (mut cq, mut ck) = (c32(&cpu, &q, &[t, hq, d]), c32(&cpu, &k, &[t, hk, d]));
            gpu.rope(
                &mut gq,
                &mut gk,
                &gu(&gpu, &positions, &[t]),
                &g32(&gpu, &inv_freq, &[rot / 2]),
                style,
            )
            .unwrap();
            cpu.rope(
                &mut cq,
                &mut ck,
                &cu(&cpu, &positions, &[t]),
                &c32(&cpu, &inv_freq, &[rot / 2]),
                style,
            )
            .unwrap();
            let what = format!("{style:?} T={t} Hq={hq} Hk={hk} D={d} R={rot}");
            // Inputs are in [-1, 1]: 1e-5 absolute is 1e-5 relative to their scale.
            assert_close(
                &gpu.to_f32(&gq).unwrap(),
                &cpu.to_f32(&cq).unwrap(),
                1e-5,
                &what,
            );
            assert_close(
                &gpu.to_f32(&gk).unwrap(),
                &cpu.to_f32(&ck).unwrap(),
                1e-5,
                &what,
            );
        }
    }
}

#[test]
fn pointwise_and_gather_match_cpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(8);
    for (t, i) in [(1, 1536), (37, 13), (4, 1)] {
        let x: Vec<f32> = rng.vec(t * 2 * i).iter().map(|v| v * 8.0).collect();
        let g = gpu.silu_mul(&g32(&gpu, &x, &[t, 2 * i])).unwrap();
        let c = cpu.silu_mul(&c32(&cpu, &x, &[t, 2 * i])).unwrap();
        assert_eq!(g.dims(), &[t, i]);
        assert_close(
            &gpu.to_f32(&g).unwrap(),
            &cpu.to_f32(&c).unwrap(),
            1e-5,
            &format!("silu_mul T={t} I={i}"),
        );
    }
    for (t, i) in [(1, 1536), (37, 13), (4, 1), (3, 640)] {
        // Gates over [-12, 12]: tanh saturates at both ends.
        let x: Vec<f32> = rng.vec(t * 2 * i).iter().map(|v| v * 12.0).collect();
        let g = gpu.gelu_tanh_mul(&g32(&gpu, &x, &[t, 2 * i])).unwrap();
        let c = cpu.gelu_tanh_mul(&c32(&cpu, &x, &[t, 2 * i])).unwrap();
        assert_eq!(g.dims(), &[t, i]);
        assert_close(
            &gpu.to_f32(&g).unwrap(),
            &cpu.to_f32(&c).unwrap(),
            1e-5,
            &format!("gelu_tanh_mul T={t} I={i}"),
        );
    }
    let x = rng.vec(7 * 333);
    let s = 640f32.sqrt();
    let g = gpu.scale(&g32(&gpu, &x, &[7, 333]), s).unwrap();
    let c = cpu.scale(&c32(&cpu, &x, &[7, 333]), s).unwrap();
    assert_eq!(g.dims(), &[7, 333]);
    assert_bits(&gpu.to_f32(&g).unwrap(), &cpu.to_f32(&c).unwrap(), "scale");
    let (a, b) = (rng.vec(200 * 201), rng.vec(200 * 201));
    let g = gpu
        .add(&g32(&gpu, &a, &[200, 201]), &g32(&gpu, &b, &[200, 201]))
        .unwrap();
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_bits(&gpu.to_f32(&g).unwrap(), &want, "add");

    // gather_rows on every dtype, odd widths (16-bit rows straddle words), and an index
    // past the rows (all-ones bits: NaN / u32::MAX).
    let (t, h) = (37, 19);
    let x = rng.vec(t * h);
    let idx = [36u32, 0, 5, 5, 17];
    for dtype in DTYPES {
        let gx = gpu.from_f32(&x, Shape::new([t, h]), dtype).unwrap();
        let cx = cpu.from_f32(&x, Shape::new([t, h]), dtype).unwrap();
        let g = gpu.gather_rows(&gx, &gu(&gpu, &idx, &[5])).unwrap();
        let c = cpu.gather_rows(&cx, &cu(&cpu, &idx, &[5])).unwrap();
        assert_eq!((g.dims(), g.dtype()), (&[5usize, 19][..], dtype));
        assert_bits(
            &gpu.to_f32(&g).unwrap(),
            &cpu.to_f32(&c).unwrap(),
            &format!("{dtype}"),
        );
        let bad = gpu.gather_rows(&gx, &gu(&gpu, &[1, 99], &[2])).unwrap();
        let out = gpu.to_f32(&bad).unwrap();
        assert_bits(&out[..h], &cpu.to_f32(&cx).unwrap()[h..2 * h], "row 1");
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
}

#[test]
fn data_movement_round_trips() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(9);
    let x = rng.vec(61);
    for dtype in DTYPES {
        let g = gpu.from_f32(&x, Shape::new([61]), dtype).unwrap();
        let c = cpu.from_f32(&x, Shape::new([61]), dtype).unwrap();
        assert_eq!((g.dtype(), g.dims()), (dtype, &[61usize][..]));
        assert_bits(
            &gpu.to_f32(&g).unwrap(),
            &cpu.to_f32(&c).unwrap(),
            &format!("{dtype}"),
        );
        let z = gpu.zeros(Shape::new([3, 5]), dtype).unwrap();
        assert_eq!(gpu.to_f32(&z).unwrap(), vec![0.0; 15]);
    }
    let ids = gu(&gpu, &[7, 0, u32::MAX], &[3]);
    assert_eq!(gpu.to_u32(&ids).unwrap(), [7, 0, u32::MAX]);
    assert_eq!(
        gpu.to_u32(&gpu.zeros(Shape::new([4]), DType::U32).unwrap())
            .unwrap(),
        [0; 4]
    );
    let empty = g32(&gpu, &[], &[0, 7]);
    assert_eq!(gpu.to_f32(&empty).unwrap(), Vec::<f32>::new());
    // Impossible sizes are errors, not panics or garbage.
    assert!(gpu.zeros(Shape::new([1usize << 40]), DType::F32).is_err());
}

/// `supports` is truthful: unsupported combinations return `Unsupported`.
#[test]
fn supports_is_truthful() {
    let Some(gpu) = gpu() else { return };
    let half_x = gpu
        .from_f32(&[0.5; 8], Shape::new([2, 4]), DType::F16)
        .unwrap();
    let f32_x = g32(&gpu, &[0.5; 8], &[2, 4]);
    let w4 = g32(&gpu, &[1.0; 4], &[4]);
    let unsupported =
        |r: Result<_, BackendError>| matches!(r, Err(BackendError::Unsupported { .. }));
    for dtype in DTYPES {
        assert!(gpu.supports(Op::Matmul, dtype) && gpu.supports(Op::Embedding, dtype));
        let w = gpu
            .from_f32(&[0.25; 12], Shape::new([3, 4]), dtype)
            .unwrap();
        assert_eq!(
            gpu.to_f32(&gpu.matmul(&f32_x, &w, None).unwrap()).unwrap(),
            [0.5; 6]
        );
    }
    for op in [
        Op::RmsNorm,
        Op::Rope,
        Op::SiluMul,
        Op::GeluTanhMul,
        Op::Scale,
        Op::Add,
    ] {
        assert!(gpu.supports(op, DType::F32), "{op}");
        assert!(!gpu.supports(op, DType::F16), "{op}");
    }
    // The KV cache dtype: f32 or f16 (tests/attention.rs runs both).
    for op in [Op::KvWrite, Op::PagedAttention] {
        assert!(
            gpu.supports(op, DType::F32) && gpu.supports(op, DType::F16),
            "{op}"
        );
        assert!(!gpu.supports(op, DType::BF16), "{op}");
    }
    assert!(unsupported(gpu.rms_norm(&half_x, None, &w4, 1e-6)));
    assert!(unsupported(gpu.silu_mul(&half_x)));
    assert!(unsupported(gpu.gelu_tanh_mul(&half_x)));
    assert!(unsupported(gpu.scale(&half_x, 2.0)));
    assert!(unsupported(gpu.add(&half_x, &half_x)));
    assert!(unsupported(gpu.matmul(&half_x, &f32_x, None)));
}

/// Rows for `argmax` that stress its exact semantics: values from a small set (so equal
/// maxima in far-apart columns are common), NaN, -inf and both zeros sprinkled in; some
/// rows all -inf, all NaN, NaN in column 0, or +inf in the last column.
fn argmax_rows(rng: &mut Rng, t: usize, v: usize) -> Vec<f32> {
    let mut x = vec![0.0f32; t * v];
    for (r, row) in x.chunks_mut(v).enumerate() {
        for e in row.iter_mut() {
            *e = match rng.below(20) {
                0 => f32::NAN,
                1 => f32::NEG_INFINITY,
                2 => -0.0,
                3 => 0.0,
                _ => rng.below(5) as f32 * 0.25 - 0.5,
            };
        }
        match r % 7 {
            1 => row.fill(f32::NEG_INFINITY),
            2 => row.fill(f32::NAN),
            3 => row[0] = f32::NAN,
            4 => row[v - 1] = f32::INFINITY,
            5 => row[0] = -0.0, // -0 in column 0 against +0 elsewhere: column 0 must win
            _ => {}
        }
    }
    x
}

/// GPU argmax equals the CPU's index for index (no tolerance: it is a choice, not a
/// number), on tie-heavy rows with NaN and -inf, plain random rows, odd vocabulary sizes
/// below, at and above the 256-wide workgroup, and a Qwen-sized vocabulary.
#[test]
fn argmax_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(40);
    for (t, v) in [
        (1, 1),
        (3, 2),
        (14, 7),
        (9, 255),
        (7, 256),
        (8, 257),
        (21, 1000),
        (5, 4099),
        (2, 151_936),
    ] {
        for (kind, x) in [
            ("tricky", argmax_rows(&mut rng, t, v)),
            ("random", rng.vec(t * v)),
        ] {
            let g = gpu.argmax(&g32(&gpu, &x, &[t, v])).unwrap();
            assert_eq!((g.dtype(), g.dims()), (DType::U32, &[t][..]));
            let c = cpu.argmax(&c32(&cpu, &x, &[t, v])).unwrap();
            let (g, c) = (gpu.to_u32(&g).unwrap(), cpu.to_u32(&c).unwrap());
            for (r, (g, c)) in g.iter().zip(&c).enumerate() {
                assert_eq!(g, c, "{kind} T={t} V={v} row {r}");
            }
        }
    }
    // A maximum in every column position of a 300-wide row (each tree path), with a tie
    // placed after it that must lose.
    let v = 300;
    let mut x = vec![-1.0f32; v * v];
    for r in 0..v {
        x[r * v + r] = 2.0;
        x[r * v + (r * 7 + 1).max(r + 1).min(v - 1)] = 2.0;
    }
    let g = gpu
        .to_u32(&gpu.argmax(&g32(&gpu, &x, &[v, v])).unwrap())
        .unwrap();
    assert_eq!(g, (0..v as u32).collect::<Vec<_>>());
    // Zero rows, f16 logits, and the step-boundary verbs.
    let none = gpu.argmax(&g32(&gpu, &[], &[0, 5])).unwrap();
    assert_eq!(gpu.to_u32(&none).unwrap(), Vec::<u32>::new());
    let half = gpu
        .from_f32(&[0.5; 8], Shape::new([2, 4]), DType::F16)
        .unwrap();
    assert!(gpu.supports(Op::Argmax, DType::F32) && !gpu.supports(Op::Argmax, DType::F16));
    assert!(matches!(
        gpu.argmax(&half),
        Err(BackendError::Unsupported { op: Op::Argmax, .. })
    ));
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
