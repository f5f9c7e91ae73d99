//! Every shader module and variant, without a GPU: parsed and validated by naga, translated
//! to MSL (Metal 2.3 and 3.1, as wgpu does on Apple GPUs) and to SPIR-V for every entry
//! point, and every Rust uniform struct compared with its WGSL twin through naga's layouter
//! (size and each member's offset, member names in order).

use ingot_backend_wgpu::params::*;
use ingot_backend_wgpu::shader_modules;
use naga::valid::{Capabilities, ValidationFlags, Validator};

fn parse(name: &str, source: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    (module, info)
}

#[test]
fn every_module_translates_to_msl_and_spirv() {
    let modules = shader_modules();
    assert!(
        modules.len() >= 12,
        "expected every family and dtype variant"
    );
    for m in &modules {
        let (module, info) = parse(&m.name, &m.source);
        for entry in &m.entry_points {
            assert!(
                module.entry_points.iter().any(|e| e.name == *entry),
                "{}: no entry point {entry}",
                m.name
            );
            for version in [(2, 3), (3, 1)] {
                let options = naga::back::msl::Options {
                    lang_version: version,
                    ..Default::default()
                };
                let pipeline = naga::back::msl::PipelineOptions {
                    entry_point: Some((naga::ShaderStage::Compute, entry.to_string())),
                    ..Default::default()
                };
                let (msl, _) = naga::back::msl::write_string(&module, &info, &options, &pipeline)
                    .unwrap_or_else(|e| panic!("{}::{entry} to MSL {version:?}: {e}", m.name));
                assert!(
                    msl.contains("kernel"),
                    "{}::{entry}: no kernel in MSL",
                    m.name
                );
                // Metal has no 16x16 simdgroup matrices (GPU-NOTES): none may appear, except
                // in the 16x16 cooperative-matrix matmul, which is built only where the
                // adapter reports 16x16 fragments (never Metal; tests/coop.rs checks the 8x8
                // variant Apple gets).
                if m.name != "matmul_coop16" {
                    assert!(
                        !msl.contains("simdgroup_half16x16")
                            && !msl.contains("simdgroup_float16x16"),
                        "{}::{entry}: a 16x16 simdgroup matrix in MSL",
                        m.name
                    );
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
                .unwrap_or_else(|e| panic!("{}::{entry} to SPIR-V: {e}", m.name));
            assert_eq!(words[0], 0x0723_0203, "{}::{entry}: SPIR-V magic", m.name);
        }
    }
}

/// Size and member offsets of the WGSL struct `name` in every module that declares it.
fn wgsl_layout(name: &str) -> Vec<(u32, Vec<(String, u32)>)> {
    let mut found = Vec::new();
    for m in shader_modules() {
        let (module, _) = parse(&m.name, &m.source);
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        for (handle, ty) in module.types.iter() {
            if ty.name.as_deref() != Some(name) {
                continue;
            }
            let naga::TypeInner::Struct { members, .. } = &ty.inner else {
                panic!("{name} is not a struct");
            };
            let members = members
                .iter()
                .map(|mb| (mb.name.clone().unwrap_or_default(), mb.offset))
                .collect();
            found.push((layouter[handle].size, members));
        }
    }
    assert!(!found.is_empty(), "no WGSL struct named {name}");
    found
}

/// Asserts that `$rust` has the size and the named fields at the offsets of WGSL `$rust`.
macro_rules! check_struct {
    ($rust:ident, [$($field:ident),* $(,)?]) => {{
        let want: Vec<(String, u32)> = vec![
            $((stringify!($field).to_string(), std::mem::offset_of!($rust, $field) as u32)),*
        ];
        for (size, members) in wgsl_layout(stringify!($rust)) {
            assert_eq!(size as usize, std::mem::size_of::<$rust>(), "{}: size", stringify!($rust));
            assert_eq!(members, want, "{}: members and offsets", stringify!($rust));
        }
    }};
}

#[test]
fn uniform_structs_match_wgsl() {
    check_struct!(
        EmbeddingParams,
        [
            tokens, hidden, row_start, rows, vocab, last_part, _pad0, _pad1
        ]
    );
    check_struct!(NormParams, [rows, hidden, eps, _pad0]);
    check_struct!(
        MatmulParams,
        [
            rows, k, n_total, n_start, n_count, has_bias, accumulate, silu_inner
        ]
    );
    check_struct!(
        RopeKvParams,
        [
            tokens, hq, hk, head_dim, half_rot, style, block_size, num_blocks
        ]
    );
    check_struct!(
        RopeParams,
        [tokens, hq, hk, head_dim, half_rot, style, _pad0, _pad1]
    );
    check_struct!(
        KvWriteParams,
        [
            tokens, hk, head_dim, block_size, num_blocks, _pad0, _pad1, _pad2
        ]
    );
    check_struct!(
        AttentionParams,
        [
            tokens, num_seqs, hq, hk, head_dim, block_size, max_blocks, num_blocks, scale, window,
            groups, _pad1
        ]
    );
    check_struct!(PointwiseParams, [n, inner, scale, _pad0]);
    check_struct!(
        GatherParams,
        [
            out_rows, cols, src_rows, half, out_words, _pad0, _pad1, _pad2
        ]
    );
}

#[test]
fn moe_params_match_wgsl() {
    check_struct!(
        MoeParams,
        [
            tokens,
            experts,
            top_k,
            scoring,
            renormalize,
            k_in,
            n_out,
            hidden,
            expert_start,
            expert_count,
            gated,
            has_shared,
            shared_gate,
            _pad0,
            _pad1,
            _pad2
        ]
    );
}

#[test]
fn argmax_params_match_wgsl() {
    check_struct!(ArgmaxParams, [rows, vocab, parts, span]);
}

#[test]
fn sample_params_match_wgsl() {
    check_struct!(SampleParams, [rows, vocab, _pad0, _pad1]);
}

#[test]
fn top_logprobs_params_match_wgsl() {
    check_struct!(TopLogprobsParams, [rows, vocab, k, _pad0]);
}
