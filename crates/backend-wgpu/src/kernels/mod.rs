//! The kernel families: their WGSL (one file per family under `shaders/`, loaded with
//! `include_str!`), the pipeline cache built once when the backend opens, and one launcher
//! module per family.
//!
//! Families that read weights (embedding, matmul, the MoE projection) are compiled once per
//! weight dtype: the family's file is prefixed with a `dtype_*.wgsl` snippet that defines
//! the storage element type `WData` and `load_w(i) -> f32` (dense matmul also gets
//! `matmul_wide.wgsl`, its 16-byte-load GEMVs; moe `moe_dense.wgsl`), or, for a GGUF block
//! format the backend keeps (`blocks.rs`), with `quant_<format>.wgsl` + `quant.wgsl` (the
//! same `load_w`, and the sub-block decoding that `matmul_q.wgsl`'s `gemv_q`, appended in
//! place of the wide GEMVs, and `moe_blocks.wgsl` use); the
//! KV-cache families likewise get a `kv_*.wgsl` snippet per cache dtype (rope_kv also
//! `rope_angle.wgsl`, the cos/sin it shares with rope), and the token-choosing families
//! (argmax, sample, top_logprobs) share `rank.wgsl` (integer order keys and the fixed-tree best-of-256). The families that
//! reduce across a workgroup (rms_norm, attention, sample, top_logprobs) share
//! `reduce.wgsl` (`tree_sum`, `tree_max`: one fixed tree, sized by the family's
//! `REDUCE_LANES`). Every pipeline is created up front, inside an error scope, because a
//! shader the driver rejects can lose the whole device (GPU-NOTES): better to fail when the
//! backend opens, with the module's name, than in the middle of a step. The block formats'
//! pipelines are the exception: each format's are built when its first weight is uploaded
//! (still at load, before any step; [`Pipelines::quant`]).

pub(crate) mod attention;
pub(crate) mod embedding;
pub(crate) mod mask;
pub(crate) mod matmul;
pub mod matmul_coop;
pub(crate) mod moe;
pub(crate) mod norm;
pub(crate) mod pointwise;
pub(crate) mod rope;
pub(crate) mod rope_kv;
pub(crate) mod sample;

use std::collections::HashMap;
use std::sync::OnceLock;

use ingot_tensor::backend::Result;
use ingot_tensor::{BackendError, DType};

use crate::device::Gpu;

const DTYPE_F32: &str = include_str!("../shaders/dtype_f32.wgsl");
const DTYPE_F16: &str = include_str!("../shaders/dtype_f16.wgsl");
const DTYPE_BF16: &str = include_str!("../shaders/dtype_bf16.wgsl");
const EMBEDDING: &str = include_str!("../shaders/embedding.wgsl");
const RMS_NORM: &str = include_str!("../shaders/rms_norm.wgsl");
const MATMUL: &str = include_str!("../shaders/matmul.wgsl");
const MATMUL_WIDE: &str = include_str!("../shaders/matmul_wide.wgsl");
const MATMUL_Q: &str = include_str!("../shaders/matmul_q.wgsl");
const QUANT: &str = include_str!("../shaders/quant.wgsl");
const ROPE: &str = include_str!("../shaders/rope.wgsl");
const ROPE_ANGLE: &str = include_str!("../shaders/rope_angle.wgsl");
const ROPE_KV: &str = include_str!("../shaders/rope_kv.wgsl");
const KV_WRITE: &str = include_str!("../shaders/kv_write.wgsl");
const ATTENTION: &str = include_str!("../shaders/attention.wgsl");
const KV_F32: &str = include_str!("../shaders/kv_f32.wgsl");
const KV_F16: &str = include_str!("../shaders/kv_f16.wgsl");
const POINTWISE: &str = include_str!("../shaders/pointwise.wgsl");
const GATHER: &str = include_str!("../shaders/gather.wgsl");
const RANK: &str = include_str!("../shaders/rank.wgsl");
const REDUCE: &str = include_str!("../shaders/reduce.wgsl");
const ARGMAX: &str = include_str!("../shaders/argmax.wgsl");
const SAMPLE: &str = include_str!("../shaders/sample.wgsl");
const TOP_LOGPROBS: &str = include_str!("../shaders/top_logprobs.wgsl");
const MOE: &str = include_str!("../shaders/moe.wgsl");
const MOE_DENSE: &str = include_str!("../shaders/moe_dense.wgsl");
const MOE_BLOCKS: &str = include_str!("../shaders/moe_blocks.wgsl");
const MASK: &str = include_str!("../shaders/mask.wgsl");

/// One complete WGSL module as compiled, and its entry points.
#[derive(Clone, Debug)]
pub struct ShaderModuleSource {
    /// `family` or `family_dtype`.
    pub name: String,
    pub source: String,
    pub entry_points: Vec<&'static str>,
}

/// The weight dtypes with their own module variants, and their `load_w` snippet.
const WEIGHT_DTYPES: [(DType, &str); 3] = [
    (DType::F32, DTYPE_F32),
    (DType::F16, DTYPE_F16),
    (DType::BF16, DTYPE_BF16),
];

/// The GGUF block formats the backend keeps as blocks (`Backend::reads_blocks`; Q5_1 and
/// Q5_K are still widened to a dense copy at load), each with its own embedding and matmul
/// variants and its snippet (`Sub`, `load_sub`, `sub_quad`).
pub(crate) const QUANT_DTYPES: [(DType, &str); 6] = [
    (DType::Q8_0, include_str!("../shaders/quant_q8_0.wgsl")),
    (DType::Q4_0, include_str!("../shaders/quant_q4_0.wgsl")),
    (DType::Q4_1, include_str!("../shaders/quant_q4_1.wgsl")),
    (DType::Q5_0, include_str!("../shaders/quant_q5_0.wgsl")),
    (DType::Q4_K, include_str!("../shaders/quant_q4_k.wgsl")),
    (DType::Q6_K, include_str!("../shaders/quant_q6_k.wgsl")),
];

/// The KV cache dtypes with their own kv_write and attention variants, and their snippet
/// (`KvWord`, `kv_pack`, `kv_unpack`).
const KV_DTYPES: [(DType, &str); 2] = [(DType::F32, KV_F32), (DType::F16, KV_F16)];

/// Every module the backend compiles, every variant included: what the pipelines are built
/// from, and what the naga tests translate to MSL and SPIR-V.
pub fn shader_modules() -> Vec<ShaderModuleSource> {
    let mut v = Vec::new();
    for (dtype, snippet) in WEIGHT_DTYPES {
        v.push(ShaderModuleSource {
            name: format!("embedding_{dtype}"),
            source: format!("{snippet}\n{EMBEDDING}"),
            entry_points: vec!["embedding"],
        });
        v.push(ShaderModuleSource {
            name: format!("matmul_{dtype}"),
            source: format!("{snippet}\n{MATMUL}\n{MATMUL_WIDE}"),
            entry_points: vec!["gemv", "gemv_wide", "gemv_wide2", "gemm", "gemm_big"],
        });
        // Routing, grouping and the weighted sum read no weights: built from the f32
        // variant only.
        let moe_entries = if dtype == DType::F32 {
            vec!["moe_route", "moe_group", "moe_project", "moe_combine"]
        } else {
            vec!["moe_project"]
        };
        v.push(ShaderModuleSource {
            name: format!("moe_{dtype}"),
            source: format!("{snippet}\n{MOE_DENSE}\n{MOE}"),
            entry_points: moe_entries,
        });
    }
    for qi in 0..QUANT_DTYPES.len() {
        v.extend(quant_modules(qi));
    }
    for (dtype, snippet) in KV_DTYPES {
        v.push(ShaderModuleSource {
            name: format!("kv_write_{dtype}"),
            source: format!("{snippet}\n{KV_WRITE}"),
            entry_points: vec!["kv_write"],
        });
        v.push(ShaderModuleSource {
            name: format!("rope_kv_{dtype}"),
            source: format!("{snippet}\n{ROPE_ANGLE}\n{ROPE_KV}"),
            entry_points: vec!["rope_kv_write"],
        });
        v.push(ShaderModuleSource {
            name: format!("attention_{dtype}"),
            source: format!("{snippet}\n{REDUCE}\n{ATTENTION}"),
            entry_points: vec!["paged_attention", "attention_partial", "attention_merge"],
        });
    }
    v.push(ShaderModuleSource {
        name: "rms_norm".into(),
        source: format!("{REDUCE}\n{RMS_NORM}"),
        entry_points: vec!["rms_norm", "rms_norm_residual"],
    });
    let plain: [(&str, &str, &[&'static str]); 3] = [
        (
            "pointwise",
            POINTWISE,
            &["silu_mul", "gelu_tanh_mul", "scale", "add"],
        ),
        ("gather", GATHER, &["gather_rows"]),
        ("mask", MASK, &["mask_logits"]),
    ];
    v.push(ShaderModuleSource {
        name: "rope".into(),
        source: format!("{ROPE_ANGLE}\n{ROPE}"),
        entry_points: vec!["rope"],
    });
    v.push(ShaderModuleSource {
        name: "argmax".into(),
        source: format!("{RANK}\n{ARGMAX}"),
        entry_points: vec!["argmax", "argmax_partial", "argmax_merge"],
    });
    v.push(ShaderModuleSource {
        name: "sample".into(),
        source: format!("{RANK}\n{REDUCE}\n{SAMPLE}"),
        entry_points: vec!["sample"],
    });
    v.push(ShaderModuleSource {
        name: "top_logprobs".into(),
        source: format!("{RANK}\n{REDUCE}\n{TOP_LOGPROBS}"),
        entry_points: vec!["top_logprobs"],
    });
    v.extend(matmul_coop::shader_modules());
    for (name, source, entries) in plain {
        v.push(ShaderModuleSource {
            name: name.into(),
            source: source.into(),
            entry_points: entries.to_vec(),
        });
    }
    v
}

/// The embedding, matmul and MoE projection modules of block format `qi` (`QUANT_DTYPES`
/// order).
fn quant_modules(qi: usize) -> [ShaderModuleSource; 3] {
    let (dtype, snippet) = QUANT_DTYPES[qi];
    [
        ShaderModuleSource {
            name: format!("embedding_{dtype}"),
            source: format!("{snippet}\n{QUANT}\n{EMBEDDING}"),
            entry_points: vec!["embedding"],
        },
        ShaderModuleSource {
            name: format!("matmul_{dtype}"),
            source: format!("{snippet}\n{QUANT}\n{MATMUL}\n{MATMUL_Q}"),
            entry_points: vec!["gemv_q", "gemm", "gemm_big"],
        },
        ShaderModuleSource {
            name: format!("moe_{dtype}"),
            source: format!("{snippet}\n{QUANT}\n{MOE_BLOCKS}\n{MOE}"),
            entry_points: vec!["moe_project"],
        },
    ]
}

/// Compiles `m` and each of its entry points inside error scopes, into `built` under
/// `module::entry`.
fn compile(
    gpu: &Gpu,
    m: &ShaderModuleSource,
    built: &mut HashMap<String, wgpu::ComputePipeline>,
) -> Result<()> {
    let label = format!("shader module {}", m.name);
    let module = gpu.scoped(&label, 0, || {
        gpu.device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&m.name),
                source: wgpu::ShaderSource::Wgsl(m.source.as_str().into()),
            })
    })?;
    for entry in &m.entry_points {
        let label = format!("pipeline {}::{entry}", m.name);
        let p = gpu.scoped(&label, 0, || {
            gpu.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&label),
                    layout: None,
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                })
        })?;
        gpu.check()?;
        built.insert(format!("{}::{entry}", m.name), p);
    }
    Ok(())
}

/// Takes pipeline `key` out of `built`.
fn take(
    built: &mut HashMap<String, wgpu::ComputePipeline>,
    key: &str,
) -> Result<wgpu::ComputePipeline> {
    built
        .remove(key)
        .ok_or_else(|| BackendError::Device(format!("pipeline {key} was not built")))
}

/// Index of a weight dtype in the per-dtype pipeline arrays.
pub(crate) fn weight_index(dtype: DType) -> Option<usize> {
    WEIGHT_DTYPES.iter().position(|(d, _)| *d == dtype)
}

/// Index of a GGUF block format in `Pipelines::quant`, if the backend keeps it as blocks.
pub(crate) fn quant_index(dtype: DType) -> Option<usize> {
    QUANT_DTYPES.iter().position(|(d, _)| *d == dtype)
}

/// Index of a KV cache dtype in the per-cache-dtype pipeline arrays.
pub(crate) fn kv_index(dtype: DType) -> Option<usize> {
    KV_DTYPES.iter().position(|(d, _)| *d == dtype)
}

/// The pipelines of one GGUF block format.
pub(crate) struct QuantPipelines {
    pub embedding: wgpu::ComputePipeline,
    pub gemv_q: wgpu::ComputePipeline,
    pub gemm: wgpu::ComputePipeline,
    pub gemm_big: wgpu::ComputePipeline,
    /// `moe_experts_add`'s projections over expert stacks in this format.
    pub moe_project: wgpu::ComputePipeline,
}

/// Every compute pipeline, created once.
pub(crate) struct Pipelines {
    pub embedding: [wgpu::ComputePipeline; 3],
    pub gemv: [wgpu::ComputePipeline; 3],
    pub gemv_wide: [wgpu::ComputePipeline; 3],
    pub gemv_wide2: [wgpu::ComputePipeline; 3],
    pub gemm: [wgpu::ComputePipeline; 3],
    pub gemm_big: [wgpu::ComputePipeline; 3],
    /// Per GGUF block format, in `QUANT_DTYPES` order, built by [`Pipelines::quant`] when
    /// a first weight of the format is uploaded.
    quant: [OnceLock<QuantPipelines>; 6],
    pub rms_norm: wgpu::ComputePipeline,
    pub rms_norm_residual: wgpu::ComputePipeline,
    pub rope: wgpu::ComputePipeline,
    pub kv_write: [wgpu::ComputePipeline; 2],
    pub rope_kv_write: [wgpu::ComputePipeline; 2],
    pub paged_attention: [wgpu::ComputePipeline; 2],
    pub attention_partial: [wgpu::ComputePipeline; 2],
    pub attention_merge: [wgpu::ComputePipeline; 2],
    pub silu_mul: wgpu::ComputePipeline,
    pub gelu_tanh_mul: wgpu::ComputePipeline,
    pub scale: wgpu::ComputePipeline,
    pub add: wgpu::ComputePipeline,
    pub gather_rows: wgpu::ComputePipeline,
    pub argmax: wgpu::ComputePipeline,
    pub argmax_partial: wgpu::ComputePipeline,
    pub argmax_merge: wgpu::ComputePipeline,
    pub sample: wgpu::ComputePipeline,
    pub top_logprobs: wgpu::ComputePipeline,
    pub moe_route: wgpu::ComputePipeline,
    pub moe_group: wgpu::ComputePipeline,
    pub moe_project: [wgpu::ComputePipeline; 3],
    pub moe_combine: wgpu::ComputePipeline,
    pub mask_logits: wgpu::ComputePipeline,
    /// The cooperative-matrix matmul, where the adapter runs it.
    pub coop: Option<matmul_coop::CoopPipelines>,
}

impl Pipelines {
    /// Every pipeline but the block formats' (see [`Pipelines::quant`]) and the
    /// cooperative-matrix ones (`matmul_coop::build`, only for the adapter's fragment size).
    pub fn build(gpu: &Gpu) -> Result<Pipelines> {
        let mut built = HashMap::new();
        let lazy: Vec<String> = (0..QUANT_DTYPES.len())
            .flat_map(quant_modules)
            .map(|m| m.name)
            .collect();
        for m in shader_modules() {
            if matmul_coop::is_coop_module(&m.name) || lazy.contains(&m.name) {
                continue;
            }
            compile(gpu, &m, &mut built)?;
        }
        let mut take = |key: &str| take(&mut built, key);
        Ok(Pipelines {
            quant: std::array::from_fn(|_| OnceLock::new()),
            embedding: [
                take("embedding_f32::embedding")?,
                take("embedding_f16::embedding")?,
                take("embedding_bf16::embedding")?,
            ],
            gemv: [
                take("matmul_f32::gemv")?,
                take("matmul_f16::gemv")?,
                take("matmul_bf16::gemv")?,
            ],
            gemv_wide: [
                take("matmul_f32::gemv_wide")?,
                take("matmul_f16::gemv_wide")?,
                take("matmul_bf16::gemv_wide")?,
            ],
            gemv_wide2: [
                take("matmul_f32::gemv_wide2")?,
                take("matmul_f16::gemv_wide2")?,
                take("matmul_bf16::gemv_wide2")?,
            ],
            gemm: [
                take("matmul_f32::gemm")?,
                take("matmul_f16::gemm")?,
                take("matmul_bf16::gemm")?,
            ],
            gemm_big: [
                take("matmul_f32::gemm_big")?,
                take("matmul_f16::gemm_big")?,
                take("matmul_bf16::gemm_big")?,
            ],
            rms_norm: take("rms_norm::rms_norm")?,
            rms_norm_residual: take("rms_norm::rms_norm_residual")?,
            rope: take("rope::rope")?,
            kv_write: [
                take("kv_write_f32::kv_write")?,
                take("kv_write_f16::kv_write")?,
            ],
            rope_kv_write: [
                take("rope_kv_f32::rope_kv_write")?,
                take("rope_kv_f16::rope_kv_write")?,
            ],
            paged_attention: [
                take("attention_f32::paged_attention")?,
                take("attention_f16::paged_attention")?,
            ],
            attention_partial: [
                take("attention_f32::attention_partial")?,
                take("attention_f16::attention_partial")?,
            ],
            attention_merge: [
                take("attention_f32::attention_merge")?,
                take("attention_f16::attention_merge")?,
            ],
            silu_mul: take("pointwise::silu_mul")?,
            gelu_tanh_mul: take("pointwise::gelu_tanh_mul")?,
            scale: take("pointwise::scale")?,
            add: take("pointwise::add")?,
            gather_rows: take("gather::gather_rows")?,
            argmax: take("argmax::argmax")?,
            argmax_partial: take("argmax::argmax_partial")?,
            argmax_merge: take("argmax::argmax_merge")?,
            sample: take("sample::sample")?,
            top_logprobs: take("top_logprobs::top_logprobs")?,
            moe_route: take("moe_f32::moe_route")?,
            moe_group: take("moe_f32::moe_group")?,
            moe_project: [
                take("moe_f32::moe_project")?,
                take("moe_f16::moe_project")?,
                take("moe_bf16::moe_project")?,
            ],
            moe_combine: take("moe_f32::moe_combine")?,
            mask_logits: take("mask::mask_logits")?,
            coop: matmul_coop::build(gpu)?,
        })
    }
}

/// Checks that a count fits the u32 arithmetic of the shaders.
pub(crate) fn u32_of(what: &str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| {
        BackendError::Device(format!(
            "{what} = {n} does not fit the kernels' 32-bit indices"
        ))
    })
}

impl Pipelines {
    /// The pipelines of block format `qi` (`QUANT_DTYPES` order), built the first time a
    /// weight of that format is uploaded (`from_blocks` calls this): a dense model does not
    /// pay for 30 pipelines it never runs (pipeline creation takes 100-450 ms per matmul
    /// pipeline on NVIDIA, GPU-NOTES), and a shader the driver rejects still fails at load,
    /// naming its module, never in the middle of a step.
    pub fn quant(&self, gpu: &Gpu, qi: usize) -> Result<&QuantPipelines> {
        if let Some(q) = self.quant[qi].get() {
            return Ok(q);
        }
        let mut built = HashMap::new();
        for m in quant_modules(qi) {
            compile(gpu, &m, &mut built)?;
        }
        let dtype = QUANT_DTYPES[qi].0;
        let q = QuantPipelines {
            embedding: take(&mut built, &format!("embedding_{dtype}::embedding"))?,
            gemv_q: take(&mut built, &format!("matmul_{dtype}::gemv_q"))?,
            gemm: take(&mut built, &format!("matmul_{dtype}::gemm"))?,
            gemm_big: take(&mut built, &format!("matmul_{dtype}::gemm_big"))?,
            moe_project: take(&mut built, &format!("moe_{dtype}::moe_project"))?,
        };
        Ok(self.quant[qi].get_or_init(|| q))
    }
}
