//! Launcher of `matmul_coop.wgsl`: matmul with f16 weights on cooperative matrices (tensor
//! cores through Vulkan's VK_KHR_cooperative_matrix, simdgroup matrices on Apple GPUs),
//! activations rounded to f16 for the fragments, f32 accumulation (see the shader's header
//! for the error this costs).
//!
//! Two kernels, one reduction order: `coop_small` (a workgroup per F rows by F columns, its
//! subgroups spread over K; for decode) and `coop_tiled` (a 128 x 128 tile per workgroup,
//! 64 x 64 with 8 x 8 fragments), chosen by [`pick`] from T and N. Both perform the same
//! fragment multiply-adds per output element in the same order, so the switch between them
//! never changes a bit. For the same reason, on an adapter where these kernels run they run
//! for every T: mixing them with the SIMT kernels of `matmul.wgsl` (another order, f32
//! activations) would make a row's bits depend on the batch.
//!
//! Variants: the WGSL is written for 16 x 16 x 16 fragments (NVIDIA); the 8 x 8 x 8 variant
//! (Apple: Metal has only 8 x 8 simdgroup matrices, and naga would write a 16 x 16 one as a
//! type Metal lacks) is the same source with the fragment type and size substituted.
//! [`choose`] picks the variant from the adapter's reported configurations when the device
//! opens; its pipelines are built then, and only then (a shader the driver rejects can lose
//! the device). The environment variable [`SWITCH`] turns the path off (`0`) or on (`1`).

use ingot_tensor::backend::Result;
use ingot_tensor::{BackendError, DType, Op, Shape, Tensor, check};

use super::{Pipelines, ShaderModuleSource, u32_of};
use crate::WgpuBackend;
use crate::device::{Capabilities, Gpu};
use crate::params::MatmulParams;

const SOURCE: &str = include_str!("../shaders/matmul_coop.wgsl");

/// Environment switch: `1` turns the cooperative-matrix matmul on where the adapter allows,
/// `0` keeps it off; unset means [`DEFAULT_ON`].
pub const SWITCH: &str = "INGOT_WGPU_COOP";

/// Whether the path is on when [`SWITCH`] is unset: off for now. The kernels are correct
/// and batch invariant on the H200 (tests/coop.rs), and prefill-shaped matmuls run 1.2-1.8x
/// faster than the SIMT kernels, but single-token decode runs 3-9x slower than the SIMT
/// GEMV, T = 16 1.1-2.6x slower (docs/GPU.md); since the path must serve every T once on,
/// it stays opt-in until `coop_small` is fast. f16 activations also put f16-weight matmuls outside the 1e-5
/// tolerance of `tests/kernels.rs`.
pub const DEFAULT_ON: bool = false;

/// The kernel the matmul verb runs for T rows and N columns with fragment edge `f` (either
/// gives the same bits, so this is about speed only). `coop_small` re-reads W for every F
/// rows and keeps few multiplies per staged byte, but spreads K over a workgroup's
/// subgroups; `coop_tiled` needs enough 8F x 8F tiles to fill the GPU. Thresholds from
/// `examples/coop_bench.rs` on the H200 (docs/GPU.md).
pub fn pick(t: usize, n: usize, f: u32) -> CoopKernel {
    let edge = tile_edge(f) as usize;
    let tiles = t.div_ceil(edge) * n.div_ceil(edge);
    if (t > 16 && tiles >= 64) || tiles >= 512 {
        CoopKernel::Tiled
    } else {
        CoopKernel::Small
    }
}

/// The kernel's constants that the launcher and [`choose`] rely on, mirrored from the WGSL
/// (`tests/coop.rs` checks them against naga's view of the module).
pub const BKP: u32 = 40;
pub const SUBGROUPS: u32 = 8;
pub const FLUSH: u32 = 2;

/// `coop_tiled`'s output tile edge (rows and columns) for fragment edge `f`: 8 fragments.
pub const fn tile_edge(f: u32) -> u32 {
    8 * f
}

/// Workgroup memory of the kernels for fragment edge `f`, in bytes: the staged x and W
/// tiles (f16), the flush buffer and the zero fragment (f32).
pub const fn workgroup_bytes(f: u32) -> u32 {
    2 * tile_edge(f) * BKP * 2 + SUBGROUPS * FLUSH * f * f * 4 + f * f * 4
}

/// Which of the two kernels (for tests and benchmarks; [`pick`] decides otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoopKernel {
    Small,
    Tiled,
}

/// Name of the module variant for fragment edge `f`.
pub fn module_name(f: u32) -> String {
    format!("matmul_coop{f}")
}

/// The WGSL of the variant for fragment edge `f` (16 or 8).
///
/// # Panics
/// For any other `f`, or if the source no longer has the text the substitution replaces.
pub fn source(f: u32) -> String {
    match f {
        16 => SOURCE.to_string(),
        8 => {
            let (ty, edge) = ("coop_mat16x16", "const F: u32 = 16u;");
            assert!(
                SOURCE.contains(ty) && SOURCE.contains(edge),
                "matmul_coop.wgsl: the 8x8 substitution lost its anchors"
            );
            SOURCE
                .replace(ty, "coop_mat8x8")
                .replace(edge, "const F: u32 = 8u;")
        }
        _ => panic!("no cooperative-matrix matmul variant with {f} x {f} fragments"),
    }
}

/// Both variants, for the naga tests (MSL, SPIR-V); the pipelines are built separately.
pub(crate) fn shader_modules() -> Vec<ShaderModuleSource> {
    [16, 8]
        .into_iter()
        .map(|f| ShaderModuleSource {
            name: module_name(f),
            source: source(f),
            entry_points: vec!["coop_small", "coop_tiled"],
        })
        .collect()
}

/// Whether module `name` is one of this family's (built only by [`build`]).
pub(crate) fn is_coop_module(name: &str) -> bool {
    name.starts_with("matmul_coop")
}

/// The fragment edge the matmul will use on an adapter with `caps` (16 or 8), or why it
/// stays off. The device requests cooperative matrices only when this says `Ok`.
pub(crate) fn choose(caps: &Capabilities) -> std::result::Result<u32, String> {
    let Capabilities {
        info,
        features,
        limits,
        coop_configs: configs,
    } = caps;
    match std::env::var(SWITCH).as_deref() {
        Ok("0") => return Err(format!("off ({SWITCH}=0)")),
        Ok("1") => {}
        _ if !DEFAULT_ON => return Err(format!("off by default ({SWITCH}=1 turns it on)")),
        _ => {}
    }
    let missing: Vec<&str> = [
        (
            wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
            "cooperative matrices",
        ),
        (wgpu::Features::SHADER_F16, "shader-f16"),
        (wgpu::Features::SUBGROUP, "subgroups"),
    ]
    .into_iter()
    .filter(|(f, _)| !features.contains(*f))
    .map(|(_, name)| name)
    .collect();
    if !missing.is_empty() {
        return Err(format!("off (no {})", missing.join(", no ")));
    }
    let has = |f: u32| {
        configs.iter().any(|c| {
            (c.m_size, c.n_size, c.k_size) == (f, f, f)
                && c.ab_type == wgpu::CooperativeScalarType::F16
                && c.cr_type == wgpu::CooperativeScalarType::F32
        })
    };
    let Some(f) = [16, 8].into_iter().find(|&f| has(f)) else {
        return Err("off (no 16x16x16 or 8x8x8 f16 -> f32 configuration)".into());
    };
    // The kernels assume 32-wide subgroups (8 per workgroup). Vulkan reports the real range;
    // Metal reports a generic 4..64 while Apple GPUs' SIMD groups are always 32 wide.
    let fixed_32 = info.subgroup_min_size == 32 && info.subgroup_max_size == 32;
    let metal = info.backend == wgpu::Backend::Metal
        && (info.subgroup_min_size..=info.subgroup_max_size).contains(&32);
    if !(fixed_32 || metal) {
        return Err(format!(
            "off (subgroups of {}..{} lanes, the kernels need 32)",
            info.subgroup_min_size, info.subgroup_max_size
        ));
    }
    if limits.max_compute_workgroup_storage_size < workgroup_bytes(f)
        || limits.max_compute_invocations_per_workgroup < 256
    {
        return Err(format!(
            "off (needs {} bytes of workgroup memory and 256 invocations)",
            workgroup_bytes(f)
        ));
    }
    Ok(f)
}

/// The two pipelines of the chosen variant.
pub(crate) struct CoopPipelines {
    /// Fragment edge: 16 or 8.
    pub fragment: u32,
    small: wgpu::ComputePipeline,
    tiled: wgpu::ComputePipeline,
    /// Bound at the vector bindings when K % 8 != 0 (they need 16 bytes at least).
    vec_dummy: wgpu::Buffer,
}

/// Builds the variant the device chose, or nothing when the path is off.
pub(crate) fn build(gpu: &Gpu) -> Result<Option<CoopPipelines>> {
    let Ok(f) = gpu.summary.coop_matmul else {
        return Ok(None);
    };
    let name = module_name(f);
    let source = source(f);
    let hint = format!("(set {SWITCH}=0 to run without cooperative matrices)");
    let module = gpu.scoped(&format!("shader module {name} {hint}"), 0, || {
        gpu.device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&name),
                source: wgpu::ShaderSource::Wgsl(source.as_str().into()),
            })
    })?;
    let pipeline = |entry: &str| -> Result<wgpu::ComputePipeline> {
        let label = format!("pipeline {name}::{entry}");
        let p = gpu.scoped(&format!("{label} {hint}"), 0, || {
            gpu.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&label),
                    layout: None,
                    module: &module,
                    entry_point: Some(entry),
                    // Every workgroup variable is written before it is read.
                    compilation_options: wgpu::PipelineCompilationOptions {
                        zero_initialize_workgroup_memory: false,
                        ..Default::default()
                    },
                    cache: None,
                })
        })?;
        gpu.check()?;
        Ok(p)
    };
    let vec_dummy = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("coop vector dummy"),
        size: 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    Ok(Some(CoopPipelines {
        fragment: f,
        small: pipeline("coop_small")?,
        tiled: pipeline("coop_tiled")?,
        vec_dummy,
    }))
}

type G = Tensor<WgpuBackend>;

/// The matmul verb's cooperative-matrix path: `Some` output when the adapter runs these
/// kernels and W is f16, `None` to leave it to the SIMT kernels. Shapes are checked by the
/// caller.
pub(crate) fn matmul(
    be: &WgpuBackend,
    p: &Pipelines,
    x: &G,
    w: &G,
    bias: Option<&G>,
) -> Result<Option<G>> {
    let Some(cp) = p.coop.as_ref() else {
        return Ok(None);
    };
    if w.dtype() != DType::F16 {
        return Ok(None);
    }
    let kernel = pick(x.dims()[0], w.dims()[0], cp.fragment);
    run(be, cp, x, w, bias, kernel).map(Some)
}

/// `x W^T (+ bias)` on the given cooperative-matrix kernel: x `[T, K]` f32, w `[N, K]` f16,
/// bias `[N]` f32. For tests and benchmarks (the matmul verb picks the kernel by T, and
/// either gives the same bits). `Unsupported` where the adapter does not run these kernels.
#[track_caller]
pub fn matmul_with(
    be: &WgpuBackend,
    x: &G,
    w: &G,
    bias: Option<&G>,
    kernel: CoopKernel,
) -> Result<G> {
    check::matmul(x, w, bias);
    let unsupported = |dtype| BackendError::Unsupported {
        op: Op::Matmul,
        dtype,
        backend: "wgpu (cooperative matrices)",
    };
    if let Some(t) = [Some(x), bias]
        .into_iter()
        .flatten()
        .find(|t| t.dtype() != DType::F32)
    {
        return Err(unsupported(t.dtype()));
    }
    if w.dtype() != DType::F16 {
        return Err(unsupported(w.dtype()));
    }
    let cp = be.pipelines.coop.as_ref().ok_or_else(|| {
        BackendError::Device(format!(
            "cooperative-matrix matmul is not available on {}",
            be.gpu.summary
        ))
    })?;
    run(be, cp, x, w, bias, kernel)
}

fn run(
    be: &WgpuBackend,
    cp: &CoopPipelines,
    x: &G,
    w: &G,
    bias: Option<&G>,
    kernel: CoopKernel,
) -> Result<G> {
    let gpu = &be.gpu;
    let (t, k, n) = (x.dims()[0], x.dims()[1], w.dims()[0]);
    let out = be.output(Shape::new([t, n]), "matmul out")?;
    if t * n == 0 {
        return Ok(out);
    }
    let xb = x.storage().buffer("matmul x")?;
    let bb = match bias {
        Some(b) => b.storage().buffer("matmul bias")?,
        None => &gpu.dummy,
    };
    let ob = out.storage().buffer("matmul out")?;
    let f = cp.fragment as usize;
    // 16-byte loads when every row of x and W starts on a 16-byte boundary (see the shader).
    let vec = k % 8 == 0;
    let xv = if vec { xb } else { &cp.vec_dummy };
    for part in &w.storage().parts {
        let wv = if vec { &part.buffer } else { &cp.vec_dummy };
        let params = gpu.uniform(&MatmulParams {
            rows: u32_of("rows", t)?,
            k: u32_of("k", k)?,
            n_total: u32_of("n", n)?,
            n_start: u32_of("n", part.first_row)?,
            n_count: u32_of("n", part.rows)?,
            has_bias: bias.is_some() as u32,
            ..Default::default()
        });
        let (label, pipeline, edge) = match kernel {
            CoopKernel::Small => ("coop_small", &cp.small, f),
            CoopKernel::Tiled => ("coop_tiled", &cp.tiled, tile_edge(cp.fragment) as usize),
        };
        let groups = (part.rows.div_ceil(edge), t.div_ceil(edge));
        gpu.dispatch(
            label,
            pipeline,
            &[
                (0, &params),
                (1, &part.buffer),
                (2, xb),
                (3, bb),
                (4, ob),
                (5, wv),
                (6, xv),
            ],
            (u32_of("groups", groups.0)?, u32_of("groups", groups.1)?, 1),
        )?;
    }
    Ok(out)
}
