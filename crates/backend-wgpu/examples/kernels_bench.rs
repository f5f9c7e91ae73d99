//! Rough per-verb timings of the GPU backend on Qwen2-0.5B shapes (hidden 896, 14 query
//! heads, 2 KV heads, head dim 64, intermediate 4864, vocabulary 151,936, f16 weights):
//! wall time per call, averaged over `REPS` calls recorded back to back and closed by
//! `sync` (no read-back), and the host time spent recording them (output buffer, uniform
//! buffer, bind group, pass). When the recording time is close to the wall time, the host
//! is the bottleneck, not the kernel. Not a substitute for timestamp queries; run it with
//! `bench/gpu_kernels.sh`.
//!
//! Output: one line per case with µs per call and the bandwidth implied by the bytes the
//! case must move at least (weights for matmul, inputs + output for add, K/V for attention).

use std::time::Instant;

use ingot_backend_wgpu::{WgpuBackend, WgpuOptions};
use ingot_tensor::{AttentionMeta, AttentionParams, Backend, DType, Shape, Tensor};

const REPS: usize = 20;

type G = Tensor<WgpuBackend>;

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                / (1u32 << 24) as f32
                - 0.5
        })
        .collect()
}

/// Average seconds per call of `f` (wall, and host recording), after two warm-up calls.
fn time(be: &WgpuBackend, mut f: impl FnMut() -> G) -> (f64, f64) {
    for _ in 0..2 {
        let out = f();
        be.to_f32(&out).unwrap();
    }
    be.sync().unwrap();
    let start = Instant::now();
    let mut last = None;
    for _ in 0..REPS {
        last = Some(f());
    }
    let recorded = start.elapsed().as_secs_f64();
    be.sync().unwrap();
    drop(last);
    let n = REPS as f64;
    (start.elapsed().as_secs_f64() / n, recorded / n)
}

fn report(name: &str, (secs, host): (f64, f64), bytes: f64) {
    println!(
        "{name:<44} {:>9.1} us (host {:>7.1} us) {:>9.1} GB/s",
        secs * 1e6,
        host * 1e6,
        bytes / secs / 1e9
    );
}

fn main() {
    let opts = WgpuOptions {
        allow_software: std::env::var("INGOT_WGPU_ALLOW_SOFTWARE").is_ok_and(|v| v == "1"),
        ..Default::default()
    };
    let be = WgpuBackend::new(opts).expect("GPU backend");
    println!("adapter: {}", be.adapter());
    let f32t = |v: &[f32], dims: &[usize]| be.from_f32(v, Shape::new(dims), DType::F32).unwrap();

    for (n, k) in [(4864, 896), (896, 4864), (151_936, 896)] {
        let w = be
            .from_f32(&data(n * k, 1), Shape::new([n, k]), DType::F16)
            .unwrap();
        for t in [1, 16, 64, 512] {
            if n > 100_000 && t > 16 {
                continue;
            }
            let x = f32t(&data(t * k, 2), &[t, k]);
            let secs = time(&be, || be.matmul(&x, &w, None).unwrap());
            report(
                &format!("matmul f16 W[{n}, {k}] T={t}"),
                secs,
                (n * k * 2) as f64,
            );
            if t >= 64 {
                println!(
                    "{:<44} {:>9.1} TFLOP/s",
                    "",
                    2.0 * (t * n * k) as f64 / secs.0 / 1e12
                );
            }
        }
    }

    let n = 16 << 20;
    let (a, b) = (f32t(&data(n, 3), &[n]), f32t(&data(n, 4), &[n]));
    let secs = time(&be, || be.add(&a, &b).unwrap());
    report("add 16M f32 (copy-like)", secs, (3 * n * 4) as f64);

    let (t, h) = (64, 896);
    let x = f32t(&data(t * h, 5), &[t, h]);
    let w = f32t(&data(h, 6), &[h]);
    let secs = time(&be, || be.rms_norm(&x, None, &w, 1e-6).unwrap());
    report("rms_norm [64, 896]", secs, (2 * t * h * 4) as f64);

    // Decode attention: S sequences of `ctx` tokens, one query each.
    for (s, ctx) in [(1, 512), (16, 512), (64, 512), (64, 2048)] {
        let (hq, hk, d, bs) = (14, 2, 64, 16);
        let blocks_per = ctx / bs;
        let num_blocks = s * blocks_per;
        let cache = f32t(&data(num_blocks * hk * bs * d, 7), &[num_blocks, hk, bs, d]);
        let vcache = f32t(&data(num_blocks * hk * bs * d, 8), &[num_blocks, hk, bs, d]);
        let tables: Vec<u32> = (0..num_blocks as u32).collect();
        let bt = be.from_u32(&tables, Shape::new([s, blocks_per])).unwrap();
        let sl = be.from_u32(&vec![ctx as u32; s], Shape::new([s])).unwrap();
        let qsl: Vec<u32> = (0..=s as u32).collect();
        let ql = be.from_u32(&qsl, Shape::new([s + 1])).unwrap();
        let q = f32t(&data(s * hq * d, 9), &[s, hq, d]);
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
        let secs = time(&be, || {
            be.paged_attention(&q, &cache, &vcache, &meta, params)
                .unwrap()
        });
        report(
            &format!("paged_attention decode S={s} ctx={ctx}"),
            secs,
            (2 * s * ctx * hk * d * 4) as f64,
        );
    }
}
