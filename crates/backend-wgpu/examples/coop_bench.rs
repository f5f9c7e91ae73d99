//! Throughput of the cooperative-matrix matmul (`kernels::matmul_coop`) with f16 weights:
//! a 4096^3 GEMM, Qwen2-0.5B's prefill shapes (T = 8192; K = 896 with N = 896, 128, 9728;
//! K = 4864 with N = 896) and its decode shapes at T = 1, 16, 64 (plus the 151,936-row
//! lm_head). Each shape runs on both coop kernels and on the verb's own choice (a backend
//! opened with `INGOT_WGPU_COOP=1`), and, for comparison, on the SIMT kernels of a second
//! backend opened with `INGOT_WGPU_COOP=0`.
//!
//! Timing: wall time per call, averaged over calls recorded back to back and closed by
//! `sync` (after two warm-up calls), so dispatch and submission costs are included; for
//! decode shapes that is most of the time. Output: µs per call, TFLOP/s (2 T N K), and the
//! weight bytes per second.
//!
//! Run: `cargo run --release -p ingot-backend-wgpu --example coop_bench`.

use std::time::Instant;

use ingot_backend_wgpu::kernels::matmul_coop::{CoopKernel, SWITCH, matmul_with};
use ingot_backend_wgpu::{WgpuBackend, WgpuOptions};
use ingot_tensor::{Backend, DType, Shape, Tensor};

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

/// Seconds per call of `f`: two warm-up calls, then calls for about 0.2 s (at least 5).
fn time(be: &WgpuBackend, mut f: impl FnMut() -> G) -> f64 {
    let start = Instant::now();
    for _ in 0..2 {
        drop(f());
    }
    be.sync().unwrap();
    let once = start.elapsed().as_secs_f64() / 2.0;
    let reps = ((0.2 / once.max(1e-6)) as usize).clamp(5, 200);
    let start = Instant::now();
    let mut last = None;
    for _ in 0..reps {
        last = Some(f());
    }
    be.sync().unwrap();
    drop(last);
    start.elapsed().as_secs_f64() / reps as f64
}

fn open(allow_software: bool) -> WgpuBackend {
    WgpuBackend::new(WgpuOptions {
        allow_software,
        ..Default::default()
    })
    .expect("GPU backend")
}

fn main() {
    let allow_software = std::env::var("INGOT_WGPU_ALLOW_SOFTWARE").is_ok_and(|v| v == "1");
    // SAFETY (both set_var calls): this program runs no threads of its own; the second call
    // follows the first backend's start, whose driver threads (if any) are not known to
    // read the environment after start-up.
    unsafe { std::env::set_var(SWITCH, "1") };
    let coop = open(allow_software);
    println!("adapter: {}", coop.adapter());
    if let Err(why) = &coop.adapter().coop_matmul {
        println!("no cooperative-matrix matmul: {why}");
        return;
    }
    unsafe { std::env::set_var(SWITCH, "0") };
    let simt = open(allow_software);
    println!("baseline: {}", simt.adapter());

    let mut shapes = vec![("4096^3", 4096, 4096, 4096)];
    for (n, k) in [(896, 896), (128, 896), (9728, 896), (896, 4864)] {
        shapes.push(("qwen2 prefill", 8192, k, n));
    }
    for t in [1, 16, 64] {
        for (n, k) in [
            (896, 896),
            (128, 896),
            (9728, 896),
            (896, 4864),
            (151_936, 896),
        ] {
            shapes.push(("qwen2 decode", t, k, n));
        }
    }
    println!(
        "{:<14} {:>6} {:>6} {:>7}  {:<8} {:>10} {:>9} {:>9}",
        "case", "T", "K", "N", "kernel", "us", "TFLOP/s", "W GB/s"
    );
    for (case, t, k, n) in shapes {
        let w = data(n * k, 1);
        let x = data(t * k, 2);
        let flops = 2.0 * (t * n * k) as f64;
        let wbytes = (n * k * 2) as f64;
        let report = |kernel: &str, secs: f64| {
            println!(
                "{case:<14} {t:>6} {k:>6} {n:>7}  {kernel:<8} {:>10.1} {:>9.2} {:>9.1}",
                secs * 1e6,
                flops / secs / 1e12,
                wbytes / secs / 1e9
            );
        };
        for (name, be) in [("coop", &coop), ("simt", &simt)] {
            let wt = be.from_f32(&w, Shape::new([n, k]), DType::F16).unwrap();
            let xt = be.from_f32(&x, Shape::new([t, k]), DType::F32).unwrap();
            if name == "coop" {
                report("verb", time(be, || be.matmul(&xt, &wt, None).unwrap()));
                for (label, kernel) in [("small", CoopKernel::Small), ("tiled", CoopKernel::Tiled)]
                {
                    // The small kernel re-reads W per 16 rows: skip it where that is hopeless.
                    if kernel == CoopKernel::Small && t > 1024 && n > 1024 {
                        continue;
                    }
                    let secs = time(be, || matmul_with(be, &xt, &wt, None, kernel).unwrap());
                    report(label, secs);
                }
            } else {
                report("simt", time(be, || be.matmul(&xt, &wt, None).unwrap()));
            }
        }
    }
}
