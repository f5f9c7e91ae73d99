//! The cooperative-matrix matmul (`matmul_coop.wgsl`): its two variants through naga
//! (always, no GPU needed), and on an adapter that runs them (the H100 through Vulkan; not
//! lavapipe, where the GPU tests print SKIPPED with the reason) against the CPU backend,
//! between its two kernels, and across batch sizes, bitwise.
//!
//! Tolerance against the CPU (f32 activations, the same f16 weights): the kernels round
//! each activation to f16 (relative error up to 2^-11 when rounding to nearest, 2^-10 when
//! a driver truncates), so an output may be off by up to 2^-10 of sum_k |x_k w_k|; f32
//! accumulation in another order adds ~K 2^-24 of the same sum, and 1e-6 absolute covers
//! the bias and results near zero. Batch invariance and kernel agreement are bitwise.
//!
//! `INGOT_REQUIRE_COOP=1` turns a skip on an adapter without the path into a failure.

mod common;

use common::*;
use ingot_backend_cpu::CpuBackend;
use ingot_backend_wgpu::WgpuBackend;
use ingot_backend_wgpu::kernels::matmul_coop::{
    self, BKP, CoopKernel, FLUSH, SUBGROUPS, matmul_with, tile_edge, workgroup_bytes,
};
use ingot_tensor::{Backend, DType, Shape};
use naga::valid::{Capabilities, ValidationFlags, Validator};

fn parse(name: &str, source: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    (module, info)
}

fn msl(module: &naga::Module, info: &naga::valid::ModuleInfo, entry: &str, v: (u8, u8)) -> String {
    let options = naga::back::msl::Options {
        lang_version: v,
        ..Default::default()
    };
    let pipeline = naga::back::msl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, entry.to_string())),
        ..Default::default()
    };
    naga::back::msl::write_string(module, info, &options, &pipeline)
        .unwrap_or_else(|e| panic!("{entry} to MSL {v:?}: {e}"))
        .0
}

/// Both variants parse and validate; the 8x8 one (Apple's) translates to MSL 2.3 and 3.1
/// with 8x8 simdgroup matrices only, the 16x16 one is the one that would not.
#[test]
fn coop_variants_translate_to_msl() {
    for f in [16u32, 8] {
        let name = matmul_coop::module_name(f);
        let (module, info) = parse(&name, &matmul_coop::source(f));
        for entry in ["coop_small", "coop_tiled"] {
            for v in [(2, 3), (3, 1)] {
                let out = msl(&module, &info, entry, v);
                assert!(
                    out.contains("simdgroup_multiply_accumulate"),
                    "{name}::{entry}"
                );
                if f == 8 {
                    assert!(
                        out.contains("simdgroup_half8x8") && out.contains("simdgroup_float8x8"),
                        "{name}::{entry}: no 8x8 simdgroup matrices in its MSL"
                    );
                    assert!(
                        !out.contains("16x16"),
                        "{name}::{entry}: a 16x16 type in its MSL"
                    );
                } else {
                    assert!(out.contains("simdgroup_half16x16"), "{name}::{entry}");
                }
            }
            let pipeline = naga::back::spv::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: entry.to_string(),
            };
            let options = naga::back::spv::Options {
                lang_version: (1, 3),
                ..Default::default()
            };
            let words = naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
                .unwrap_or_else(|e| panic!("{name}::{entry} to SPIR-V: {e}"));
            assert_eq!(words[0], 0x0723_0203, "{name}::{entry}: SPIR-V magic");
        }
    }
    // The module list the backend exports carries both, with the same text.
    let listed = ingot_backend_wgpu::shader_modules();
    for f in [16, 8] {
        let m = listed
            .iter()
            .find(|m| m.name == matmul_coop::module_name(f))
            .expect("coop module in shader_modules()");
        assert_eq!(m.source, matmul_coop::source(f));
    }
}

/// The constant `name` of `module` as a u32.
fn constant(module: &naga::Module, name: &str) -> u32 {
    let (_, c) = module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no constant {name}"));
    match module.global_expressions[c.init] {
        naga::Expression::Literal(naga::Literal::U32(v)) => v,
        ref e => panic!("constant {name} is {e:?}"),
    }
}

/// The launcher's mirror of the kernels' constants and workgroup memory agrees with naga's
/// view of each variant.
#[test]
fn launcher_constants_match_wgsl() {
    for f in [16u32, 8] {
        let (module, _) = parse("coop", &matmul_coop::source(f));
        assert_eq!(constant(&module, "F"), f);
        assert_eq!(constant(&module, "BM"), tile_edge(f));
        assert_eq!(constant(&module, "BN"), tile_edge(f));
        assert_eq!(constant(&module, "BKP"), BKP);
        assert_eq!(constant(&module, "SUBGROUPS"), SUBGROUPS);
        assert_eq!(constant(&module, "FLUSH"), FLUSH);
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let shared: u32 = module
            .global_variables
            .iter()
            .filter(|(_, g)| g.space == naga::AddressSpace::WorkGroup)
            .map(|(_, g)| layouter[g.ty].size)
            .sum();
        assert_eq!(shared, workgroup_bytes(f), "{f}x{f}: workgroup memory");
    }
}

/// The backend with the cooperative-matrix path on, or a printed reason (a failure with
/// `INGOT_REQUIRE_COOP=1`). The path is off by default: the switch is set here, once,
/// unless the environment already says (then `INGOT_WGPU_COOP=0` skips these tests).
fn coop_gpu(open: fn() -> Option<WgpuBackend>) -> Option<WgpuBackend> {
    static SWITCH_ON: std::sync::Once = std::sync::Once::new();
    SWITCH_ON.call_once(|| {
        if std::env::var_os(matmul_coop::SWITCH).is_none() {
            // SAFETY: every GPU test of this binary passes here before it opens a backend,
            // and `call_once` holds the others back until the variable is set, so no other
            // thread reads the environment meanwhile (the naga-only tests never do).
            unsafe { std::env::set_var(matmul_coop::SWITCH, "1") };
        }
    });
    let be = open()?;
    match &be.adapter().coop_matmul {
        Ok(_) => Some(be),
        Err(why) if std::env::var("INGOT_REQUIRE_COOP").is_ok_and(|v| v == "1") => {
            panic!("INGOT_REQUIRE_COOP=1 but the cooperative-matrix matmul is off: {why}")
        }
        Err(why) => {
            eprintln!(
                "SKIPPED: cooperative-matrix matmul {why} on {}",
                be.adapter().name
            );
            None
        }
    }
}

/// |gpu - cpu| <= 2^-10 sum_k |x_k w_k| + 1e-6 max(|cpu|, 1), w as stored (f16).
#[track_caller]
fn assert_f16_close(
    g: &[f32],
    c: &[f32],
    x: &[f32],
    w: &[f32],
    (t, k, n): (usize, usize, usize),
    what: &str,
) {
    let w16: Vec<f32> = w.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    for r in 0..t {
        for j in 0..n {
            let mag: f64 = (0..k)
                .map(|i| (x[r * k + i] as f64 * w16[j * k + i] as f64).abs())
                .sum();
            let (gv, cv) = (g[r * n + j], c[r * n + j]);
            let tol = mag * (1.0 / 1024.0) + 1e-6 * (cv.abs() as f64).max(1.0);
            assert!(
                ((gv - cv) as f64).abs() <= tol,
                "{what}: [{r}, {j}]: gpu {gv}, cpu {cv}, tolerance {tol:e}"
            );
        }
    }
}

#[test]
fn coop_matmul_matches_cpu() {
    let Some(be) = coop_gpu(gpu) else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(11);
    // Odd shapes: K below, across and well past one 256-element chunk, odd and even K,
    // N not a multiple of a tile, T around each kernel's row block.
    for (t, k, n) in [
        (1, 896, 67),
        (3, 129, 250),
        (16, 200, 131),
        (17, 300, 65),
        (9, 1, 5),
        (64, 257, 96),
        (70, 520, 33),
        (130, 64, 200),
        (300, 777, 129),
    ] {
        let (x, w, b) = (rng.vec(t * k), rng.vec(n * k), rng.vec(n));
        let gw = be.from_f32(&w, Shape::new([n, k]), DType::F16).unwrap();
        let cw = cpu.from_f32(&w, Shape::new([n, k]), DType::F16).unwrap();
        let gx = g32(&be, &x, &[t, k]);
        let cx = c32(&cpu, &x, &[t, k]);
        for bias in [None, Some(&b[..])] {
            let gb = bias.map(|b| g32(&be, b, &[n]));
            let cb = bias.map(|b| c32(&cpu, b, &[n]));
            let c = cpu
                .to_f32(&cpu.matmul(&cx, &cw, cb.as_ref()).unwrap())
                .unwrap();
            let what = format!("T={t} K={k} N={n} bias={}", bias.is_some());
            // The verb (its own choice of kernel), then each kernel.
            let verb = be
                .to_f32(&be.matmul(&gx, &gw, gb.as_ref()).unwrap())
                .unwrap();
            assert_f16_close(&verb, &c, &x, &w, (t, k, n), &format!("{what} verb"));
            for kernel in [CoopKernel::Small, CoopKernel::Tiled] {
                let g = matmul_with(&be, &gx, &gw, gb.as_ref(), kernel).unwrap();
                assert_eq!(g.dims(), &[t, n]);
                let g = be.to_f32(&g).unwrap();
                assert_f16_close(&g, &c, &x, &w, (t, k, n), &format!("{what} {kernel:?}"));
            }
        }
    }
}

/// A row's bits are the same alone, in batches of 1, 3, 16, 17, 64 and 300 rows (both
/// kernels, by the verb's choice), and from either kernel on the same batch; K = 333 takes
/// the element-pair staging, K = 336 the vector one.
#[test]
fn coop_rows_are_batch_invariant() {
    let Some(be) = coop_gpu(gpu) else { return };
    for k in [333, 336] {
        rows_are_batch_invariant(&be, k);
    }
}

fn rows_are_batch_invariant(be: &WgpuBackend, k: usize) {
    let mut rng = Rng::new(12);
    let (rows, n) = (300, 77);
    let (x, w, b) = (rng.vec(rows * k), rng.vec(n * k), rng.vec(n));
    let wt = be.from_f32(&w, Shape::new([n, k]), DType::F16).unwrap();
    let bt = g32(be, &b, &[n]);
    let run = |first: usize, count: usize, kernel: Option<CoopKernel>| {
        let xt = g32(be, &x[first * k..(first + count) * k], &[count, k]);
        let y = match kernel {
            None => be.matmul(&xt, &wt, Some(&bt)).unwrap(),
            Some(kn) => matmul_with(be, &xt, &wt, Some(&bt), kn).unwrap(),
        };
        be.to_f32(&y).unwrap()
    };
    let alone: Vec<Vec<f32>> = (0..rows).map(|r| run(r, 1, None)).collect();
    for batch in [1, 3, 16, 17, 64, 300] {
        for first in [0, rows - batch] {
            let y = run(first, batch, None);
            for r in 0..batch {
                let what = format!("K={k}: row {} alone vs in a batch of {batch}", first + r);
                assert_bits(&y[r * n..(r + 1) * n], &alone[first + r], &what);
            }
        }
    }
    for t in [1, 17, 64, 130, 300] {
        let small = run(0, t, Some(CoopKernel::Small));
        let tiled = run(0, t, Some(CoopKernel::Tiled));
        assert_bits(
            &small,
            &tiled,
            &format!("K={k}: coop_small vs coop_tiled, T={t}"),
        );
    }
}

/// Rows whose activations overflow f16 (inf, then NaN in their own outputs) leave the other
/// rows of their fragments bit-identical.
#[test]
fn coop_rows_ignore_their_neighbours() {
    let Some(be) = coop_gpu(gpu) else { return };
    for k in [300, 304] {
        rows_ignore_their_neighbours(&be, k);
    }
}

fn rows_ignore_their_neighbours(be: &WgpuBackend, k: usize) {
    let mut rng = Rng::new(13);
    let (t, n) = (40, 50);
    let (mut x, w) = (rng.vec(t * k), rng.vec(n * k));
    let loud = [5, 20, 33];
    for &r in &loud {
        x[r * k..(r + 1) * k].iter_mut().for_each(|v| *v *= 1e6);
    }
    let wt = be.from_f32(&w, Shape::new([n, k]), DType::F16).unwrap();
    for kernel in [CoopKernel::Small, CoopKernel::Tiled] {
        let y = be
            .to_f32(&matmul_with(be, &g32(be, &x, &[t, k]), &wt, None, kernel).unwrap())
            .unwrap();
        for r in (0..t).filter(|r| !loud.contains(r)) {
            let alone = matmul_with(
                be,
                &g32(be, &x[r * k..(r + 1) * k], &[1, k]),
                &wt,
                None,
                kernel,
            )
            .unwrap();
            let what = format!("K={k} {kernel:?}: row {r} beside overflowing rows");
            assert_bits(&y[r * n..(r + 1) * n], &be.to_f32(&alone).unwrap(), &what);
        }
    }
}

/// A weight split into parts (forced 4 KiB bindings) gives the bits of the whole one.
#[test]
fn coop_split_weights_match_whole() {
    let Some(be) = coop_gpu(gpu) else { return };
    let Some(split) = coop_gpu(gpu_split) else {
        return;
    };
    let mut rng = Rng::new(14);
    let (k, n) = (96, 300);
    let (w, b) = (rng.vec(n * k), rng.vec(n));
    let ws = split.from_f32(&w, Shape::new([n, k]), DType::F16).unwrap();
    assert!(ws.storage().num_parts() > 1, "the weight should be split");
    let ww = be.from_f32(&w, Shape::new([n, k]), DType::F16).unwrap();
    // x and the bias must stay within one 4 KiB binding: T <= 10 rows of 96.
    for t in [1, 10] {
        let x = rng.vec(t * k);
        let whole = be
            .matmul(&g32(&be, &x, &[t, k]), &ww, Some(&g32(&be, &b, &[n])))
            .unwrap();
        let whole = be.to_f32(&whole).unwrap();
        let (xs, bs) = (g32(&split, &x, &[t, k]), g32(&split, &b, &[n]));
        for kernel in [CoopKernel::Small, CoopKernel::Tiled] {
            let parts = matmul_with(&split, &xs, &ws, Some(&bs), kernel).unwrap();
            let what = format!("T={t} {kernel:?}: split weight");
            assert_bits(&split.to_f32(&parts).unwrap(), &whole, &what);
        }
    }
}
