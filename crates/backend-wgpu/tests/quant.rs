//! Weights kept in GGUF blocks on the GPU (`blocks.rs`, `shaders/quant*.wgsl`,
//! `shaders/matmul_q.wgsl`), for every format the GPU keeps (Q8_0, Q4_0, Q4_1, Q5_0, Q4_K,
//! Q6_K), on random blocks (`ingot_testkit::conformance::random_blocks`), outputs poisoned
//! first. Beyond the conformance suite's cases (`conformance::blocks`):
//!
//! - Against the CPU backend on the same blocks: GEMV (`gemv_q`, T <= 64) and GEMM (`gemm`,
//!   `gemm_big`) shapes, with bias, within 1e-5 · Σ_k |x_k w_k| + 1e-6 per element, scaled
//!   by sqrt(K / 1024) above K = 1024 (both decode the same exact values and accumulate in
//!   f32; only the summation order differs, and random signs make the sums cancel, so the
//!   bound is relative to the terms, not to the result).
//! - Bit for bit the GPU's own matmul of the dequantized weights stored as f32: the block
//!   kernels keep the dense kernels' canonical order (so also the dense path's batch
//!   invariance), and decode exactly.
//! - Batch invariance: a row alone, and rows in batches of 3 to 300 (every kernel), give
//!   the same bits; `matmul_add` and `matmul_silu_mul` over blocks are bitwise the unfused
//!   verbs; a weight split into parts (4 KiB bindings) gives the same bits as one part.
//! - Expert stacks in blocks under `moe_experts_add` (`moe_blocks.wgsl`): the bits of the
//!   same stacks dequantized and stored as f32, whole or split into parts (the formats whose
//!   expert fits a 4 KiB part), and within the conformance bound of the CPU backend over
//!   the same blocks.

mod common;

use common::*;
use ingot_backend_cpu::CpuBackend;
use ingot_tensor::moe::{MoeRouting, MoeScoring};
use ingot_tensor::{Backend, DType, MoeExperts, MoeShared, Op, Shape, quant};
use ingot_testkit::conformance::random_blocks;

const FORMATS: [DType; 6] = [
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q4_K,
    DType::Q6_K,
];

fn dequantized(dtype: DType, blocks: &[u8], n: usize, k: usize) -> Vec<f32> {
    let mut w = vec![f32::NAN; n * k];
    quant::dequantize(dtype, blocks, &mut w);
    w
}

/// (T, K, N) for a block size: every GEMV row count class (1, 2-4, 5-16, 17-64: one and
/// several 16-row groups, ragged), lanes 8 / 16 / 32 (K up to 66 chunks: three rounds of 32
/// lanes), N across row tiles (a short last tile), and both GEMMs.
fn shapes(block: usize) -> Vec<(usize, usize, usize)> {
    let mut v = vec![
        (1, block, 37),
        (1, 4864 / block * block, 67),
        (2, 2 * block, 21),
        (5, 1280 / block * block, 40),
        (16, 4 * block, 33),
        (37, 3 * block, 50),
        (64, 896 / block * block, 19),
        (65, 2 * block, 70),
        (130, 5 * block, 200),
        (129, 256, 16390),
        (2, 8448, 70),
    ];
    if block == 32 {
        v.push((3, 32 * 38, 9));
    }
    v
}

#[test]
fn gpu_reads_the_formats_it_claims() {
    let Some(gpu) = gpu() else { return };
    for dtype in DType::BLOCK_TYPES {
        let kept = FORMATS.contains(dtype);
        assert_eq!(gpu.supports(Op::Matmul, *dtype), kept, "{dtype}");
        assert_eq!(gpu.supports(Op::Embedding, *dtype), kept, "{dtype}");
        assert_eq!(gpu.supports(Op::MoeExperts, *dtype), kept, "{dtype}");
    }
}

#[test]
fn block_matmul_matches_cpu_and_dense_gpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(71);
    for dtype in FORMATS {
        for (t, k, n) in shapes(dtype.block_size()) {
            let what = format!("{dtype} T={t} K={k} N={n}");
            let blocks = random_blocks(&mut rng, dtype, n, k);
            let (x, b) = (rng.vec(t * k), rng.vec(n));
            let gw = gpu.from_blocks(&blocks, Shape::new([n, k]), dtype).unwrap();
            let cw = cpu.from_blocks(&blocks, Shape::new([n, k]), dtype).unwrap();
            let (gx, gb) = (g32(&gpu, &x, &[t, k]), g32(&gpu, &b, &[n]));
            let g = gpu
                .to_f32(&gpu.matmul(&gx, &gw, Some(&gb)).unwrap())
                .unwrap();
            let c = cpu
                .matmul(&c32(&cpu, &x, &[t, k]), &cw, Some(&c32(&cpu, &b, &[n])))
                .unwrap();
            let w = dequantized(dtype, &blocks, n, k);
            let scale = 1e-5 * (k as f32 / 1024.0).sqrt().max(1.0);
            let c = cpu.to_f32(&c).unwrap();
            for (i, (&gv, &cv)) in g.iter().zip(&c).enumerate() {
                let (r, j) = (i / n, i % n);
                let xr = &x[r * k..(r + 1) * k];
                let mag: f32 = xr
                    .iter()
                    .zip(&w[j * k..(j + 1) * k])
                    .map(|(a, b)| (a * b).abs())
                    .sum();
                assert!(
                    (gv - cv).abs() <= scale * mag + 1e-6,
                    "{what}: element {i}: gpu {gv}, cpu {cv} (terms {mag})"
                );
            }
            let dense = g32(&gpu, &w, &[n, k]);
            let d = gpu
                .to_f32(&gpu.matmul(&gx, &dense, Some(&gb)).unwrap())
                .unwrap();
            assert_bits(&g, &d, &format!("{what}: blocks vs dequantized f32"));
        }
    }
}

/// Rows alone and in batches of every kernel's size give the same bits, for plain matmul,
/// `matmul_add` (vs matmul + add) and `matmul_silu_mul` (vs matmul + silu_mul).
#[test]
fn block_rows_are_batch_invariant_and_fused_verbs_match() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(72);
    for dtype in FORMATS {
        let (t, k, n) = (300, 4 * dtype.block_size().max(128), 2 * 45);
        let blocks = random_blocks(&mut rng, dtype, n, k);
        let w = gpu.from_blocks(&blocks, Shape::new([n, k]), dtype).unwrap();
        let (x, res) = (rng.vec(t * k), rng.vec(t * n));
        let all = gpu
            .to_f32(&gpu.matmul(&g32(&gpu, &x, &[t, k]), &w, None).unwrap())
            .unwrap();
        for (r0, count) in [
            (0, 1),
            (7, 1),
            (299, 1),
            (10, 3),
            (20, 16),
            (40, 17),
            (100, 64),
            (0, 65),
            (150, 150),
        ] {
            let rows = g32(&gpu, &x[r0 * k..(r0 + count) * k], &[count, k]);
            let what = format!("{dtype} rows {r0}..{}", r0 + count);
            let y = gpu.to_f32(&gpu.matmul(&rows, &w, None).unwrap()).unwrap();
            assert_bits(&y, &all[r0 * n..(r0 + count) * n], &what);

            let r = &res[r0 * n..(r0 + count) * n];
            let mut fused = g32(&gpu, r, &[count, n]);
            gpu.matmul_add(&rows, &w, None, &mut fused).unwrap();
            let unfused = gpu
                .add(
                    &g32(&gpu, r, &[count, n]),
                    &gpu.matmul(&rows, &w, None).unwrap(),
                )
                .unwrap();
            assert_bits(
                &gpu.to_f32(&fused).unwrap(),
                &gpu.to_f32(&unfused).unwrap(),
                &format!("{what}: matmul_add"),
            );

            let fused = gpu.matmul_silu_mul(&rows, &w).unwrap();
            let unfused = gpu.silu_mul(&gpu.matmul(&rows, &w, None).unwrap()).unwrap();
            assert_bits(
                &gpu.to_f32(&fused).unwrap(),
                &gpu.to_f32(&unfused).unwrap(),
                &format!("{what}: matmul_silu_mul"),
            );
        }
    }
}

/// A weight and a table split into parts of at most 4 KiB give the bits of one part (x and
/// the outputs stay below 4 KiB: only weights are split).
#[test]
fn split_block_weights_give_the_same_bits() {
    let (Some(gpu), Some(split)) = (gpu(), gpu_split()) else {
        return;
    };
    let mut rng = Rng::new(73);
    for dtype in FORMATS {
        let (k, n) = (256, 97);
        let blocks = random_blocks(&mut rng, dtype, n, k);
        let (w1, ws) = (
            gpu.from_blocks(&blocks, Shape::new([n, k]), dtype).unwrap(),
            split
                .from_blocks(&blocks, Shape::new([n, k]), dtype)
                .unwrap(),
        );
        assert!(ws.storage().num_parts() > 1, "{dtype}: not split");
        for t in [1, 3] {
            let x = rng.vec(t * k);
            let what = format!("{dtype} T={t}");
            let one = gpu.matmul(&g32(&gpu, &x, &[t, k]), &w1, None).unwrap();
            let parts = split.matmul(&g32(&split, &x, &[t, k]), &ws, None).unwrap();
            assert_bits(
                &split.to_f32(&parts).unwrap(),
                &gpu.to_f32(&one).unwrap(),
                &what,
            );
        }
        let ids = [3, 50, 96];
        let one = gpu.embedding(&w1, &gu(&gpu, &ids, &[3])).unwrap();
        let parts = split.embedding(&ws, &gu(&split, &ids, &[3])).unwrap();
        assert_bits(
            &split.to_f32(&parts).unwrap(),
            &gpu.to_f32(&one).unwrap(),
            &format!("{dtype} embedding"),
        );
    }
}

/// GPU memory: a block weight takes its blocks' bytes, a fraction of a dense f16 copy.
#[test]
fn block_weights_take_their_blocks_bytes() {
    let Some(gpu) = gpu() else { return };
    for dtype in FORMATS {
        let (n, k) = (64, 1024);
        let bytes = dtype.storage_bytes(n * k).unwrap();
        let w = gpu
            .from_blocks(&vec![0u8; bytes], Shape::new([n, k]), dtype)
            .unwrap();
        assert_eq!(
            w.storage().bytes(),
            bytes.div_ceil(16) as u64 * 16,
            "{dtype}"
        );
        assert!(bytes < n * k * 2, "{dtype}");
    }
}

/// `moe_experts_add` over expert stacks [E, N, K] kept in blocks, for every format: routes
/// from random router logits (some experts get no tokens, some several), a gated shared
/// expert, 8 tokens (their rows stay below the split backend's 4 KiB). The GPU result is
/// bitwise the GPU's own verb over the dequantized stacks stored as f32 (each weight
/// decoded to its exact value, the same fma chain), and the same bits with the stacks split
/// into parts of whole experts (4 KiB bindings, where an expert fits one); the CPU over the
/// same blocks agrees within 1e-4 of the largest |value| in the token's row (both
/// accumulate in f32, in other orders; the random blocks' weights reach ±6, so rows reach
/// thousands and cancel, and the bound follows the row).
#[test]
fn block_experts_match_dequantized_f32_experts() {
    let (Some(gpu), Some(split)) = (gpu(), gpu_split()) else {
        return;
    };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(74);
    for dtype in FORMATS {
        assert!(gpu.supports(Op::MoeExperts, dtype), "{dtype}");
        let b = dtype.block_size();
        // H = 96 or 512: gate/up chains cross the kernel's 64-weight staging steps.
        let (t, h, i, e, k) = (8, if b == 32 { 96 } else { 2 * b }, b, 6, 2);
        let gu_blocks = random_blocks(&mut rng, dtype, e * 2 * i, h);
        let down_blocks = random_blocks(&mut rng, dtype, e * h, i);
        let gu_f32 = dequantized(dtype, &gu_blocks, e * 2 * i, h);
        let down_f32 = dequantized(dtype, &down_blocks, e * h, i);
        let x = rng.vec(t * h);
        let logits = rng.vec(t * e);
        let residual = rng.vec(t * h);
        let (shared_out, shared_gate) = (rng.vec(t * h), rng.vec(t));
        let routing = MoeRouting {
            top_k: k,
            scoring: MoeScoring::Softmax,
            renormalize: true,
        };
        // The verb on backend `be` over stacks `gu` [E, 2I, H] and `down` [E, H, I].
        fn run<B: Backend>(
            be: &B,
            [x, logits, residual, so, sg]: [&[f32]; 5],
            (t, h, e): (usize, usize, usize),
            routing: MoeRouting,
            gu: &ingot_tensor::Tensor<B>,
            down: &ingot_tensor::Tensor<B>,
        ) -> Vec<f32> {
            let up = |v: &[f32], d: &[usize]| be.from_f32(v, Shape::new(d), DType::F32).unwrap();
            let routes = be.moe_route(&up(logits, &[t, e]), routing).unwrap();
            let (so, sg) = (up(so, &[t, h]), up(sg, &[t, 1]));
            let mut res = up(residual, &[t, h]);
            let shared = MoeShared {
                out: &so,
                gate: Some(&sg),
            };
            be.moe_experts_add(
                &up(x, &[t, h]),
                &routes,
                MoeExperts { gate_up: gu, down },
                Some(shared),
                &mut res,
            )
            .unwrap();
            be.to_f32(&res).unwrap()
        }
        let inputs = [
            &x[..],
            &logits[..],
            &residual[..],
            &shared_out[..],
            &shared_gate[..],
        ];
        let dims = (t, h, e);
        let (gu_shape, down_shape) = (Shape::new([e, 2 * i, h]), Shape::new([e, h, i]));
        let what = format!("{dtype} T={t} H={h} I={i} E={e}");
        let blocks = run(
            &gpu,
            inputs,
            dims,
            routing,
            &gpu.from_blocks(&gu_blocks, gu_shape.clone(), dtype)
                .unwrap(),
            &gpu.from_blocks(&down_blocks, down_shape.clone(), dtype)
                .unwrap(),
        );
        let dense = run(
            &gpu,
            inputs,
            dims,
            routing,
            &g32(&gpu, &gu_f32, gu_shape.dims()),
            &g32(&gpu, &down_f32, down_shape.dims()),
        );
        assert_bits(
            &blocks,
            &dense,
            &format!("{what}: blocks vs dequantized f32"),
        );
        // Split at whole experts where one expert fits a 4 KiB part (Q4_0, Q4_1, Q5_0).
        if dtype.storage_bytes(2 * i * h).unwrap() + 16 <= 4096 {
            let (sgu, sdown) = (
                split
                    .from_blocks(&gu_blocks, gu_shape.clone(), dtype)
                    .unwrap(),
                split
                    .from_blocks(&down_blocks, down_shape.clone(), dtype)
                    .unwrap(),
            );
            assert!(sgu.storage().num_parts() > 1, "{what}: not split");
            let parts = run(&split, inputs, dims, routing, &sgu, &sdown);
            assert_bits(&parts, &blocks, &format!("{what}: split vs one part"));
        }
        let on_cpu = run(
            &cpu,
            inputs,
            dims,
            routing,
            &cpu.from_blocks(&gu_blocks, gu_shape, dtype).unwrap(),
            &cpu.from_blocks(&down_blocks, down_shape, dtype).unwrap(),
        );
        for (r, (g_row, c_row)) in blocks.chunks(h).zip(on_cpu.chunks(h)).enumerate() {
            let scale = c_row.iter().fold(1f32, |m, v| m.max(v.abs()));
            for (j, (&g, &c)) in g_row.iter().zip(c_row).enumerate() {
                assert!(
                    (g - c).abs() <= 1e-4 * scale,
                    "{what}: token {r}, column {j}: gpu {g}, cpu {c} (row scale {scale})"
                );
            }
        }
    }
}
