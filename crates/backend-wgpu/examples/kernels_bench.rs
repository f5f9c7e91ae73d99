//! Rough per-verb timings of the GPU backend on Qwen2-0.5B shapes (hidden 896, 14 query
//! heads, 2 KV heads, head dim 64, intermediate 4864, vocabulary 151,936, f16 weights), and
//! the decode matmul's bandwidth against a copy kernel. Run it with `bench/gpu_kernels.sh`.
//!
//! Two kinds of figures:
//! - Kernel time, from timestamp queries on a device of its own (same adapter): a WGSL copy
//!   kernel (one vec4<f32> per invocation, 256 MiB or the binding limit) gives the bandwidth
//!   the GEMV is measured against, the time of an empty dispatch (the floor of any kernel),
//!   then the GEMV kernels of `matmul.wgsl` (the scalar `gemv`, `gemv_wide`, `gemv_wide2`) on
//!   every Qwen2-0.5B weight shape at T = 1, 4, 8, 16, each dispatch in its own pass (median of
//!   `REPS`), and `gemv_q` on the same shapes with the weights in Q4_0, Q8_0 and Q4_K blocks
//!   (T = 1, 4, 16), with timing experiments at T = 1 (`alone`: the module's unused
//!   workgroup arrays shrunk; Q4_0 variants without x loads, without decoding, with four
//!   chains: wrong results on purpose, to see where a chunk's time goes). GB/s count the
//!   weight bytes only; copy counts read + write. Then the tiled GEMM
//!   (`gemm` and `gemm_big`) on the prefill shapes at T = 512 and 8192, in
//!   TFLOP/s.
//! - Verb time: wall time per `Backend` call, averaged over `REPS` calls recorded back to
//!   back and closed by `sync` (no read-back), and the host time spent recording them. When
//!   the recording time is close to the wall time, the host is the bottleneck, not the
//!   kernel. The verb may run another kernel than the GEMV (cooperative matrices where the
//!   adapter has them; `INGOT_WGPU_COOP=0` turns them off).

use std::time::Instant;

use ingot_backend_wgpu::params::MatmulParams;
use ingot_backend_wgpu::{AttentionSplit, WgpuBackend, WgpuOptions, shader_modules};
use ingot_tensor::{AttentionMeta, AttentionParams, Backend, DType, Shape, Tensor};

const REPS: usize = 20;

/// Qwen2-0.5B weight shapes [N, K]: o projection, stacked QKV, stacked gate+up, down,
/// lm_head.
const SHAPES: [(usize, usize); 5] = [
    (896, 896),
    (1152, 896),
    (9728, 896),
    (896, 4864),
    (151_936, 896),
];

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

const COPY_WGSL: &str = "
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(256)
fn copy(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = id.x + id.y * groups.x * 256u;
    if i < arrayLength(&dst) {
        dst[i] = src[i];
    }
}
";

const EMPTY_WGSL: &str = "
@group(0) @binding(0) var<storage, read_write> sink: array<u32>;

@compute @workgroup_size(64)
fn empty(@builtin(local_invocation_index) i: u32) {
    if i == 1000u {
        sink[0] = i;
    }
}
";

/// A device of its own on the backend's adapter, for timing single kernels with timestamp
/// queries.
struct Rig {
    device: wgpu::Device,
    queue: wgpu::Queue,
    /// Nanoseconds per timestamp tick.
    period: f64,
    max_binding: u64,
}

impl Rig {
    fn open(allow_software: bool) -> Option<Rig> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = desc_backends();
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(desc_backends()));
        let adapter = adapters
            .into_iter()
            .filter(|a| allow_software || a.get_info().device_type != wgpu::DeviceType::Cpu)
            .filter(|a| a.features().contains(wgpu::Features::TIMESTAMP_QUERY))
            .max_by_key(|a| match a.get_info().device_type {
                wgpu::DeviceType::DiscreteGpu => 4,
                wgpu::DeviceType::IntegratedGpu => 3,
                wgpu::DeviceType::VirtualGpu => 2,
                wgpu::DeviceType::Other => 1,
                wgpu::DeviceType::Cpu => 0,
            })?;
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("bench rig"),
            required_features: wgpu::Features::TIMESTAMP_QUERY,
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc)).ok()?;
        let period = queue.get_timestamp_period() as f64;
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        Some(Rig {
            device,
            queue,
            period,
            max_binding,
        })
    }

    fn buffer(&self, bytes: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        let b = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes.len().max(16) as u64,
            usage: usage | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&b, 0, bytes);
        b
    }

    /// `pipeline` inside a validation error scope: `None` where it fails.
    fn try_pipeline(&self, source: &str, entry: &str) -> Option<wgpu::ComputePipeline> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let p = self.pipeline(source, entry);
        match pollster::block_on(scope.pop()) {
            Some(e) => {
                println!("pipeline {entry} (variant) rejected: {e}");
                None
            }
            None => Some(p),
        }
    }

    fn pipeline(&self, source: &str, entry: &str) -> wgpu::ComputePipeline {
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(entry),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        self.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
    }

    /// Median GPU seconds of one dispatch of `pipeline` over `REPS` passes (after one
    /// unmeasured pass).
    fn time(
        &self,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[(u32, &wgpu::Buffer)],
        groups: (u32, u32),
    ) -> f64 {
        let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
            .iter()
            .map(|&(binding, b)| wgpu::BindGroupEntry {
                binding,
                resource: b.as_entire_binding(),
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let count = 2 * (REPS as u32 + 1);
        let queries = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: None,
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let bytes = 8 * count as u64;
        let resolved = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        for i in 0..=REPS as u32 {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &queries,
                    beginning_of_pass_write_index: Some(2 * i),
                    end_of_pass_write_index: Some(2 * i + 1),
                }),
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, 1);
        }
        encoder.resolve_query_set(&queries, 0..count, &resolved, 0);
        encoder.copy_buffer_to_buffer(&resolved, 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        staging.map_async(wgpu::MapMode::Read, .., |r| r.expect("map timestamps"));
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .expect("wait for the GPU");
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(
            &staging.get_mapped_range(..).expect("mapped timestamps")[..],
        );
        let mut secs: Vec<f64> = (1..=REPS)
            .map(|i| ticks[2 * i + 1].wrapping_sub(ticks[2 * i]) as f64 * self.period * 1e-9)
            .collect();
        secs.sort_by(f64::total_cmp);
        secs[REPS / 2]
    }
}

fn desc_backends() -> wgpu::Backends {
    wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12
}

/// Output columns per `gemv_wide` workgroup (mirrors the launcher in `kernels/matmul.rs`).
fn wide_cols(k: usize) -> usize {
    256 / k.div_ceil(128).next_power_of_two().clamp(8, 32)
}

/// Copy bandwidth, then both GEMV kernels (f16 weights) on every shape, as kernel time.
/// Input x [T, K], output y [T, N] and the parameter uniform of a whole-W matmul.
fn matmul_io(
    rig: &Rig,
    t: usize,
    n: usize,
    k: usize,
) -> (wgpu::Buffer, wgpu::Buffer, wgpu::Buffer) {
    let x = rig.buffer(
        bytemuck::cast_slice(&data(t * k, 2)),
        wgpu::BufferUsages::STORAGE,
    );
    let y = rig.buffer(&vec![0; t * n * 4], wgpu::BufferUsages::STORAGE);
    let params = MatmulParams {
        rows: t as u32,
        k: k as u32,
        n_total: n as u32,
        n_start: 0,
        n_count: n as u32,
        has_bias: 0,
        ..Default::default()
    };
    let u = rig.buffer(bytemuck::bytes_of(&params), wgpu::BufferUsages::UNIFORM);
    (x, y, u)
}

fn kernel_figures(rig: &Rig) {
    let bytes = (256u64 << 20).min(rig.max_binding);
    let src = rig.buffer(&vec![0x3c; bytes as usize], wgpu::BufferUsages::STORAGE);
    let dst = rig.buffer(&vec![0; bytes as usize], wgpu::BufferUsages::STORAGE);
    let copy = rig.pipeline(COPY_WGSL, "copy");
    let vec4s = (bytes / 16) as u32;
    let groups = vec4s.div_ceil(256);
    let grid = (groups.div_ceil(2), 2); // 32768 x 2 workgroups for 256 MiB
    let secs = rig.time(&copy, &[(0, &src), (1, &dst)], grid);
    let copy_gbs = 2.0 * bytes as f64 / secs / 1e9;
    println!(
        "kernel copy {} MiB (vec4<f32>, read + write) {:>9.1} us {:>9.1} GB/s",
        bytes >> 20,
        secs * 1e6,
        copy_gbs
    );
    drop((src, dst));
    let empty = rig.pipeline(EMPTY_WGSL, "empty");
    let floor = rig.time(
        &empty,
        &[(0, &rig.buffer(&[0; 16], wgpu::BufferUsages::STORAGE))],
        (1, 1),
    );
    println!("kernel floor: one empty workgroup {:>7.1} us", floor * 1e6);

    let module = shader_modules()
        .into_iter()
        .find(|m| m.name == "matmul_f16")
        .expect("matmul_f16 module");
    let gemv = rig.pipeline(&module.source, "gemv");
    let wide = rig.pipeline(&module.source, "gemv_wide");
    let wide_alone = rig.try_pipeline(&alone(&module.source, &["wide_part"]), "gemv_wide");
    let wide2 = rig.pipeline(&module.source, "gemv_wide2");
    let dummy = rig.buffer(&[0; 16], wgpu::BufferUsages::STORAGE);
    for (n, k) in SHAPES {
        let wbytes = (n * k * 2) as u64;
        if wbytes > rig.max_binding {
            println!("kernel gemv f16 W[{n}, {k}]: skipped, above the binding limit");
            continue;
        }
        let halves: Vec<u16> = data(n * k, 1)
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        let w = rig.buffer(bytemuck::cast_slice(&halves), wgpu::BufferUsages::STORAGE);
        for t in [1, 4, 8, 16] {
            let (x, y, u) = matmul_io(rig, t, n, k);
            let old = rig.time(
                &gemv,
                &[(0, &u), (1, &w), (2, &x), (3, &dummy), (4, &y)],
                (n.div_ceil(32) as u32, t.div_ceil(8) as u32),
            );
            let new = rig.time(
                &wide,
                &[(0, &u), (5, &w), (6, &x), (3, &dummy), (4, &y)],
                (n.div_ceil(wide_cols(k)) as u32, t.div_ceil(16) as u32),
            );
            let new2 = rig.time(
                &wide2,
                &[(0, &u), (5, &w), (6, &x), (3, &dummy), (4, &y)],
                (n.div_ceil(2 * wide_cols(k)) as u32, t.div_ceil(16) as u32),
            );
            let gbs = |s: f64| wbytes as f64 / s / 1e9;
            let cell = |name: &str, s: f64| {
                format!(
                    "{name} {:>6.1} us {:>6.0} GB/s {:>5.1}%",
                    s * 1e6,
                    gbs(s),
                    100.0 * gbs(s) / copy_gbs
                )
            };
            println!(
                "kernel gemv f16 W[{n}, {k}] T={t:<2} {} | {} | {} (% of copy)",
                cell("gemv", old),
                cell("gemv_wide", new),
                cell("gemv_wide2", new2),
            );
            if let (1, Some(wide_alone)) = (t, &wide_alone) {
                let s = rig.time(
                    wide_alone,
                    &[(0, &u), (5, &w), (6, &x), (3, &dummy), (4, &y)],
                    (n.div_ceil(wide_cols(k)) as u32, t.div_ceil(16) as u32),
                );
                println!(
                    "kernel gemv f16 W[{n}, {k}] T={t:<2} {} (other workgroup arrays shrunk)",
                    cell("gemv_wide", s)
                );
            }
        }
    }
    block_gemv_figures(rig, copy_gbs);
}

/// `source` with every workgroup array but those named in `keep` shrunk to one element:
/// an experiment on whether a driver reserves the workgroup memory of a module's other
/// entry points (the kernel timed must use only the arrays kept).
fn alone(source: &str, keep: &[&str]) -> String {
    source
        .lines()
        .map(|l| {
            let t = l.trim_start();
            match t.strip_prefix("var<workgroup> ") {
                Some(rest) if !keep.iter().any(|k| rest.starts_with(&format!("{k}:"))) => {
                    let name = rest.split(':').next().unwrap_or("");
                    let ty = rest
                        .split("array<")
                        .nth(1)
                        .and_then(|r| r.split(',').next());
                    match ty {
                        Some(ty) => format!("var<workgroup> {name}: array<{ty}, 1>;"),
                        None => l.to_string(),
                    }
                }
                _ => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `gemv_q` (weights in GGUF blocks, `matmul_q.wgsl`) on the same shapes at T = 1, 4, 16,
/// for Q4_0, Q8_0 and Q4_K: kernel time and GB/s of the blocks' bytes against the copy.
/// The bytes are arbitrary (timing does not depend on the values).
fn block_gemv_figures(rig: &Rig, copy_gbs: f64) {
    let dummy = rig.buffer(&[0; 16], wgpu::BufferUsages::STORAGE);
    for (format, block, block_bytes) in [("Q4_0", 32, 18), ("Q8_0", 32, 34), ("Q4_K", 256, 144)] {
        let module = shader_modules()
            .into_iter()
            .find(|m| m.name == format!("matmul_{format}"))
            .expect("block matmul module");
        let gemv_q = rig.pipeline(&module.source, "gemv_q");
        let gemv_q_alone = rig.try_pipeline(&alone(&module.source, &["q_part"]), "gemv_q");
        // Timing experiments on where a T = 1 chunk's time goes (wrong results, on purpose):
        // without x loads, without decoding, with four independent fma chains.
        let src = &module.source;
        let chains = src.replacen(
            "    var a = acc;\n    for (var j = 0u; j < 8u; j++) {\n        let w = sub_quad(b, j);\n        let xv = x4[i + j];\n        a = fma(xv.x, w.x, a);\n        a = fma(xv.y, w.y, a);\n        a = fma(xv.z, w.z, a);\n        a = fma(xv.w, w.w, a);\n    }\n    return a;",
            "    var a = vec4<f32>(acc, 0.0, 0.0, 0.0);\n    for (var j = 0u; j < 8u; j++) {\n        a = fma(x4[i + j], sub_quad(b, j), a);\n    }\n    return a.x + a.y + a.z + a.w;",
            1,
        );
        let experiments = [
            (
                "no x loads",
                src.replacen("let xv = x4[i + j];", "let xv = vec4<f32>(f32(i + j));", 1),
            ),
            (
                "no decode",
                src.replacen(
                    "let w = sub_quad(b, j);",
                    "let w = bitcast<vec4<f32>>(b.qs);",
                    1,
                ),
            ),
            ("four chains", chains),
            (
                "no x loads, no decode",
                src.replacen("let xv = x4[i + j];", "let xv = vec4<f32>(f32(i + j));", 1)
                    .replacen(
                        "let w = sub_quad(b, j);",
                        "let w = bitcast<vec4<f32>>(b.qs);",
                        1,
                    ),
            ),
        ];
        let gemv_q_variants: Vec<(&str, wgpu::ComputePipeline)> = if format == "Q4_0" {
            experiments
                .iter()
                .filter(|(_, v)| v != src)
                .filter_map(|(name, v)| Some((*name, rig.try_pipeline(v, "gemv_q")?)))
                .collect()
        } else {
            Vec::new()
        };
        for (n, k) in SHAPES {
            let wbytes = n * k / block * block_bytes;
            if wbytes as u64 > rig.max_binding {
                continue;
            }
            let raw: Vec<u8> = data(wbytes.div_ceil(4), 7)
                .iter()
                .flat_map(|v| (v * 1e-3).to_le_bytes())
                .take(wbytes.div_ceil(4) * 4)
                .collect();
            let w = rig.buffer(&raw, wgpu::BufferUsages::STORAGE);
            for t in [1, 4, 16] {
                let (x, y, u) = matmul_io(rig, t, n, k);
                let s = rig.time(
                    &gemv_q,
                    &[(0, &u), (1, &w), (6, &x), (3, &dummy), (4, &y)],
                    (n.div_ceil(wide_cols(k)) as u32, t.div_ceil(16) as u32),
                );
                let gbs = wbytes as f64 / s / 1e9;
                println!(
                    "kernel gemv_q {format} W[{n}, {k}] T={t:<2} {:>7.1} us {:>6.0} GB/s {:>5.1}% of copy",
                    s * 1e6,
                    gbs,
                    100.0 * gbs / copy_gbs
                );
                if t == 1 && format == "Q4_0" && (n == 151_936 || n == 9728) {
                    for (name, variant) in &gemv_q_variants {
                        let s = rig.time(
                            variant,
                            &[(0, &u), (1, &w), (6, &x), (3, &dummy), (4, &y)],
                            (n.div_ceil(wide_cols(k)) as u32, 1),
                        );
                        println!(
                            "kernel gemv_q {format} W[{n}, {k}] T=1  experiment {name:<28} {:>7.1} us",
                            s * 1e6
                        );
                    }
                }
                if let (1, Some(gemv_q_alone)) = (t, &gemv_q_alone) {
                    let s = rig.time(
                        gemv_q_alone,
                        &[(0, &u), (1, &w), (6, &x), (3, &dummy), (4, &y)],
                        (n.div_ceil(wide_cols(k)) as u32, t.div_ceil(16) as u32),
                    );
                    println!(
                        "kernel gemv_q {format} W[{n}, {k}] T={t:<2} other workgroup arrays shrunk {:>7.1} us {:>5.1}% of copy",
                        s * 1e6,
                        100.0 * wbytes as f64 / s / 1e9 / copy_gbs
                    );
                }
            }
        }
    }
}

/// The tiled GEMM on the prefill shapes (f32 and f16 weights, T = 512 and 8192) as kernel
/// time and TFLOP/s (2 T N K flops): `gemm` as the launcher runs it (64x64 tiles), and
/// `gemm_big`, the 128x128-tile GEMM of `matmul.wgsl` (launched where `gemm_big_pays`).
fn gemm_figures(rig: &Rig) {
    let dummy = rig.buffer(&[0; 16], wgpu::BufferUsages::STORAGE);
    for dtype in ["f32", "f16"] {
        let module = shader_modules()
            .into_iter()
            .find(|m| m.name == format!("matmul_{dtype}"))
            .expect("matmul module");
        let gemm = rig.pipeline(&module.source, "gemm");
        let big = rig.pipeline(&module.source, "gemm_big");
        for &(n, k) in &SHAPES[..4] {
            let wv = data(n * k, 1);
            let wbytes: Vec<u8> = if dtype == "f32" {
                bytemuck::cast_slice(&wv).to_vec()
            } else {
                let h: Vec<u16> = wv
                    .iter()
                    .map(|&v| half::f16::from_f32(v).to_bits())
                    .collect();
                bytemuck::cast_slice(&h).to_vec()
            };
            let w = rig.buffer(&wbytes, wgpu::BufferUsages::STORAGE);
            for t in [512, 8192] {
                let (x, y, u) = matmul_io(rig, t, n, k);
                let buffers = [(0, &u), (1, &w), (2, &x), (3, &dummy), (4, &y)];
                let grid = |tile: usize| (n.div_ceil(tile) as u32, t.div_ceil(tile) as u32);
                let tflops = |s: f64| 2.0 * (t * n * k) as f64 / s / 1e12;
                let s64 = rig.time(&gemm, &buffers, grid(64));
                let s128 = rig.time(&big, &buffers, grid(128));
                println!(
                    "kernel gemm {dtype} W[{n}, {k}] T={t:<5} gemm {:>8.1} us {:>5.1} TFLOP/s | gemm_big {:>8.1} us {:>5.1} TFLOP/s",
                    s64 * 1e6,
                    tflops(s64),
                    s128 * 1e6,
                    tflops(s128),
                );
            }
        }
    }
}

fn main() {
    let opts = WgpuOptions {
        allow_software: std::env::var("INGOT_WGPU_ALLOW_SOFTWARE").is_ok_and(|v| v == "1"),
        ..Default::default()
    };
    let be = WgpuBackend::new(opts).expect("GPU backend");
    println!("adapter: {}", be.adapter());
    let f32t = |v: &[f32], dims: &[usize]| be.from_f32(v, Shape::new(dims), DType::F32).unwrap();

    let allow_software = std::env::var("INGOT_WGPU_ALLOW_SOFTWARE").is_ok_and(|v| v == "1");
    match Rig::open(allow_software) {
        Some(rig) => {
            kernel_figures(&rig);
            gemm_figures(&rig);
        }
        None => println!("kernel figures skipped: no adapter with timestamp queries"),
    }

    for (n, k) in SHAPES {
        let w = be
            .from_f32(&data(n * k, 1), Shape::new([n, k]), DType::F16)
            .unwrap();
        for t in [1, 16, 64, 512, 8192] {
            if !(512..=100_000).contains(&n) && t > 16 || n > 100_000 && t > 512 {
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
        // The verb's own choice, then each path forced (their results are bit-identical).
        for (name, split) in [
            ("", AttentionSplit::Auto),
            (" single", AttentionSplit::Never),
            (" split", AttentionSplit::Always),
        ] {
            let secs = time(&be, || {
                be.paged_attention_split(&q, &cache, &vcache, &meta, params, split)
                    .unwrap()
            });
            report(
                &format!("paged_attention{name} decode S={s} ctx={ctx}"),
                secs,
                (2 * s * ctx * hk * d * 4) as f64,
            );
        }
    }
}
