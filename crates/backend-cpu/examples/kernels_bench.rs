//! Quick throughput check of the hot kernels (not a test, not a published benchmark) on
//! the shapes of SmolLM2-135M (hidden 576, intermediate 1536, vocab 49152; 9 query and 3
//! KV heads of 64): matmul for decode (T = 1, a GEMV) and prefill (a GEMM) with f32 and
//! f16 weights on the SIMD and portable kernels, then paged attention for a decode batch
//! and a prefill chunk.
//!
//! Besides wall time it reports work per CPU-second of the whole process, which stays
//! meaningful on a shared, loaded machine.
//!
//! `cargo run --release -p ingot-backend-cpu --example kernels_bench [threads [matmul|quant|attention]]`
//! (`DTYPE=Q4_1` and `ISA=Avx512` narrow the quant part to one block type and one path)

use ingot_backend_cpu::{Activations, CpuBackend};
use ingot_tensor::{AttentionMeta, AttentionParams, Backend, DType, Shape};
use std::time::Instant;

/// CPU seconds used by the process so far (user + system, all threads), /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

/// Runs `f` for at least a second; returns (wall seconds, CPU seconds) per call.
fn time(mut f: impl FnMut()) -> (f64, f64) {
    f();
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let mut iters = 0;
    while start.elapsed().as_secs_f64() < 1.0 {
        f();
        iters += 1;
    }
    let wall = start.elapsed().as_secs_f64() / iters as f64;
    (wall, (cpu_seconds() - cpu0) / iters as f64)
}

/// Deterministic values in [-0.5, 0.5).
fn data(n: usize, salt: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + salt * 104729) % 1000) as f32 * 1e-3 - 0.5)
        .collect()
}

fn bench_matmul(base: &CpuBackend) {
    let shapes = [
        (1, 576, 1536),
        (1, 1536, 576),
        (1, 576, 49152),
        (4, 576, 1536),
        (16, 576, 1536),
        (256, 576, 1536),
        (256, 1536, 576),
    ];
    for be in ingot_backend_cpu::Isa::available()
        .into_iter()
        .map(|isa| base.clone().with_isa(isa).unwrap())
    {
        for dtype in [DType::F32, DType::F16] {
            for &(t, k, n) in &shapes {
                let xt = be
                    .from_f32(&data(t * k, 1), Shape::new([t, k]), DType::F32)
                    .unwrap();
                let wt = be
                    .from_f32(&data(n * k, 2), Shape::new([n, k]), dtype)
                    .unwrap();
                let (wall, cpu) = time(|| {
                    std::hint::black_box(be.matmul(&xt, &wt, None).unwrap());
                });
                let flop = 2.0 * (t * k * n) as f64;
                let bytes = (n * k * dtype.size_in_bytes()) as f64;
                println!(
                    "matmul {:<8?} {dtype} T={t:<4} K={k:<5} N={n:<6} {:>9.1} us {:>6.1} GFLOP/s {:>5.1} GB/s(W) | per CPU-s {:>6.1} GFLOP",
                    be.isa(),
                    wall * 1e6,
                    flop / wall / 1e9,
                    bytes / wall / 1e9,
                    flop / cpu / 1e9,
                );
            }
        }
    }
}

/// Blocks of `dtype` for an [n, k] matrix: deterministic bytes with small finite f16 scales
/// (the bytes a kernel reads, not a trained model: speed does not depend on the values).
fn blocks(dtype: DType, n: usize, k: usize) -> Vec<u8> {
    let len = dtype.storage_bytes(n * k).expect("whole blocks");
    let mut b: Vec<u8> = (0..len).map(|i| (i * 7919 % 251) as u8).collect();
    let scales: &[usize] = match dtype {
        DType::Q6_K => &[208],
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        _ => &[0],
    };
    let d = half::f16::from_f32(0.01).to_le_bytes();
    for blk in b.chunks_exact_mut(dtype.block_bytes()) {
        for &o in scales {
            blk[o..o + 2].copy_from_slice(&d);
        }
    }
    b
}

/// Matmul with weights kept in GGUF blocks, in both activation modes.
fn bench_quant(base: &CpuBackend) {
    let shapes: [(usize, usize, usize); 6] = [
        (1, 576, 1536),
        (1, 1536, 576),
        (1, 576, 49152),
        (4, 576, 1536),
        (16, 576, 1536),
        (256, 1536, 576),
    ];
    for be in ingot_backend_cpu::Isa::available()
        .into_iter()
        .filter(|isa| std::env::var("ISA").map_or(true, |v| v == format!("{isa:?}")))
        .map(|isa| base.clone().with_isa(isa).unwrap())
    {
        for mode in [Activations::Exact, Activations::Int8] {
            let be = be.clone().with_activations(mode);
            for dtype in [
                DType::Q4_1,
                DType::Q8_0,
                DType::Q5_0,
                DType::Q4_K,
                DType::Q6_K,
            ] {
                if std::env::var("DTYPE").is_ok_and(|d| d != dtype.to_string()) {
                    continue;
                }
                for &(t, k, n) in &shapes {
                    if !k.is_multiple_of(dtype.block_size()) {
                        continue;
                    }
                    let xt = be
                        .from_f32(&data(t * k, 1), Shape::new([t, k]), DType::F32)
                        .unwrap();
                    let wb = blocks(dtype, n, k);
                    let wt = be.from_blocks(&wb, Shape::new([n, k]), dtype).unwrap();
                    let (wall, cpu) = time(|| {
                        std::hint::black_box(be.matmul(&xt, &wt, None).unwrap());
                    });
                    let flop = 2.0 * (t * k * n) as f64;
                    println!(
                        "quant {:<8?} {mode:<5?} {dtype:<4} T={t:<4} K={k:<5} N={n:<6} {:>9.1} us {:>6.1} GFLOP/s {:>5.1} GB/s(W) | per CPU-s {:>6.1} GFLOP {:>5.1} GB(W)",
                        be.isa(),
                        wall * 1e6,
                        flop / wall / 1e9,
                        wb.len() as f64 / wall / 1e9,
                        flop / cpu / 1e9,
                        wb.len() as f64 / cpu / 1e9,
                    );
                }
            }
        }
    }
}

fn bench_attention(be: &CpuBackend) {
    let (hq, hk, d, bs) = (9, 3, 64, 16);
    // (sequences, context per sequence, queries per sequence)
    for (s, ctx, q_len) in [(16, 1024, 1), (1, 512, 512), (4, 2048, 1)] {
        let blocks_per = usize::div_ceil(ctx, bs);
        let nb = s * blocks_per;
        let kc = be
            .from_f32(
                &data(nb * hk * bs * d, 3),
                Shape::new([nb, hk, bs, d]),
                DType::F32,
            )
            .unwrap();
        let vc = be
            .from_f32(
                &data(nb * hk * bs * d, 4),
                Shape::new([nb, hk, bs, d]),
                DType::F32,
            )
            .unwrap();
        let t = s * q_len;
        let q = be
            .from_f32(&data(t * hq * d, 5), Shape::new([t, hq, d]), DType::F32)
            .unwrap();
        let tables: Vec<u32> = (0..nb as u32).collect();
        let bt = be.from_u32(&tables, Shape::new([s, blocks_per])).unwrap();
        let sl = be.from_u32(&vec![ctx as u32; s], Shape::new([s])).unwrap();
        let qsl: Vec<u32> = (0..=s as u32).map(|i| i * q_len as u32).collect();
        let ql = be.from_u32(&qsl, Shape::new([s + 1])).unwrap();
        let meta = AttentionMeta {
            block_tables: &bt,
            seq_lens: &sl,
            query_start_loc: &ql,
            max_seq_len: ctx,
        };
        let params = AttentionParams {
            scale: 0.125,
            sliding_window: None,
        };
        let (wall, cpu) = time(|| {
            std::hint::black_box(be.paged_attention(&q, &kc, &vc, &meta, params).unwrap());
        });
        // Positions attended: q_len queries over a causal context ending at ctx.
        let pairs = s as f64
            * (0..q_len)
                .map(|i| (ctx - q_len + i + 1) as f64)
                .sum::<f64>();
        let flop = pairs * hq as f64 * d as f64 * 4.0;
        println!(
            "attention S={s:<3} ctx={ctx:<5} q_len={q_len:<4} {:>9.1} us {:>6.1} GFLOP/s | per CPU-s {:>6.1} GFLOP",
            wall * 1e6,
            flop / wall / 1e9,
            flop / cpu / 1e9,
        );
    }
}

fn main() {
    let threads: Option<usize> = std::env::args().nth(1).map(|s| s.parse().expect("threads"));
    let only = std::env::args().nth(2);
    let be = match threads {
        Some(n) => CpuBackend::with_threads(n).expect("thread pool"),
        None => CpuBackend::new(),
    };
    println!("isa {:?}, {} threads", be.isa(), be.num_threads());
    if only.is_none() || only.as_deref() == Some("matmul") {
        bench_matmul(&be);
    }
    if only.is_none() || only.as_deref() == Some("quant") {
        bench_quant(&be);
    }
    if only.is_none() || only.as_deref() == Some("attention") {
        bench_attention(&be);
    }
}
