//! The families added after Llama/Qwen2, read from their tiny fixtures' config.json and GGUF
//! metadata: both files give the same hyper-parameters where both can express them (Gemma 3's
//! interleaving and local RoPE base, its score scale and activation; Phi-3's partial rotary),
//! the KV layout follows the sliding layers, and every family loads `--load-format dummy`
//! weights from its weight table alone. transformers 5's spelling of a Gemma 3 config
//! (`rope_parameters` per layer type, no `layer_types`) is read the same way.

use std::path::{Path, PathBuf};

use ingot_backend_cpu::CpuBackend;
use ingot_models::layers::mlp::Activation;
use ingot_models::{LoadFormat, ModelConfig, ModelFiles, ModelSource};
use ingot_tensor::DType;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

fn both(name: &str) -> (ModelConfig, ModelConfig) {
    let hf = ModelFiles::open(ModelSource::HfDir(fixture(name))).unwrap();
    let gguf = ModelFiles::open(ModelSource::Gguf(fixture(&format!(
        "{name}/{name}-f32.gguf"
    ))))
    .unwrap();
    (hf.config, gguf.config)
}

#[test]
fn gemma3_config_from_hf_and_gguf_agree() {
    let (hf, gguf) = both("tiny-gemma3");
    for c in [&hf, &gguf] {
        assert_eq!(c.sliding_layers, [true, true, true, true, true, false]);
        assert_eq!(c.sliding_window, Some(8));
        assert_eq!(c.layer_window(4), Some(8));
        assert_eq!(c.layer_window(5), None);
        assert_eq!(c.rope.theta, 1e6);
        assert_eq!(c.rope_local.as_ref().unwrap().theta, 1e4);
        assert_eq!(c.hidden_act, Activation::GeluTanh);
        assert_eq!(c.head_dim, 24);
        assert!(c.tie_word_embeddings);
        assert!((c.attn_scale - 24f32.sqrt().recip()).abs() < 1e-7);
    }
}

#[test]
fn phi3_partial_rotary_from_hf_and_gguf() {
    let (hf, gguf) = both("tiny-phi3");
    assert_eq!((hf.rope.rotary_dim, gguf.rope.rotary_dim), (8, 8));
    assert_eq!(hf.intermediate_size, gguf.intermediate_size);
    let (hf, gguf) = both("tiny-qwen3");
    assert!(!hf.qkv_bias && !gguf.qkv_bias);
    assert_eq!(hf.sliding_layers, gguf.sliding_layers);
}

/// A Gemma 3 config as transformers 5 writes it.
fn gemma3_v5_config(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(fixture("tiny-gemma3/config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let o = v.as_object_mut().unwrap();
    for key in [
        "rope_theta",
        "rope_local_base_freq",
        "rope_scaling",
        "layer_types",
    ] {
        o.remove(key);
    }
    o.insert("query_pre_attn_scalar".into(), 32.into());
    o.insert("sliding_window_pattern".into(), 3.into());
    o.insert(
        "rope_parameters".into(),
        serde_json::json!({
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}
        }),
    );
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    path
}

#[test]
fn gemma3_transformers_5_config() {
    let dir = tempfile::tempdir().unwrap();
    let c = ModelConfig::from_hf_json(&gemma3_v5_config(dir.path())).unwrap();
    assert_eq!(c.sliding_layers, [true, true, false, true, true, false]);
    assert_eq!(c.rope.theta, 1e6);
    assert_eq!(
        c.rope.scaling,
        ingot_models::layers::rope::RopeScaling::Linear { factor: 8.0 }
    );
    let local = c.rope_local.unwrap();
    assert_eq!(local.theta, 1e4);
    assert_eq!(local.scaling, ingot_models::layers::rope::RopeScaling::None);
    assert!((c.attn_scale - 32f32.sqrt().recip()).abs() < 1e-7);
}

#[test]
fn soft_capping_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("tiny-gemma3/config.json")).unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        text.replace(
            "\"final_logit_softcapping\": null",
            "\"final_logit_softcapping\": 30.0",
        ),
    )
    .unwrap();
    let e = ModelConfig::from_hf_json(&path).unwrap_err().to_string();
    assert!(
        e.contains("final_logit_softcapping") && e.contains("config.json"),
        "{e}"
    );
}

#[test]
fn every_new_family_loads_dummy_weights() {
    for name in ["tiny-qwen3", "tiny-gemma3", "tiny-phi3"] {
        for source in [
            ModelSource::HfDir(fixture(name)),
            ModelSource::Gguf(fixture(&format!("{name}/{name}-f32.gguf"))),
        ] {
            let files = ModelFiles::open_as(source, LoadFormat::Dummy).unwrap();
            let model = files.load_model(&CpuBackend::new(), DType::F32).unwrap();
            let layout = model.kv_layout();
            assert_eq!(layout.len(), files.config.num_layers, "{name}");
            let windows: Vec<_> = layout.iter().map(|l| l.sliding_window).collect();
            let want: Vec<_> = (0..layout.len())
                .map(|l| files.config.layer_window(l))
                .collect();
            assert_eq!(windows, want, "{name}");
        }
    }
}

/// The MoE fixtures: config.json and GGUF metadata give the same expert hyper-parameters
/// (GGUF Mixtral is `llama` with `llama.expert_count`, rotated in the interleaved form),
/// and each loads `--load-format dummy` weights from its table.
#[test]
fn moe_configs_from_hf_and_gguf_agree() {
    use ingot_models::registry::Arch;
    let cases = [
        ("tiny-mixtral", Arch::Mixtral, 4, true, None),
        ("tiny-qwen2moe", Arch::Qwen2Moe, 8, false, Some(40)),
        ("tiny-qwen3moe", Arch::Qwen3Moe, 8, true, None),
        ("tiny-olmoe", Arch::Olmoe, 8, false, None),
    ];
    for (name, arch, experts, renormalize, shared) in cases {
        let (hf, gguf) = both(name);
        for c in [&hf, &gguf] {
            assert_eq!(c.arch, arch, "{name}");
            let moe = c.moe.as_ref().unwrap();
            assert_eq!(
                (moe.num_experts, moe.top_k, moe.expert_size),
                (experts, 2, 24),
                "{name}"
            );
            assert_eq!(moe.renormalize, renormalize, "{name}");
            assert_eq!(moe.shared_expert_size, shared, "{name}");
            assert_eq!(moe.sparse_layers, [true, true], "{name}");
        }
        assert_eq!(hf.qkv_bias, gguf.qkv_bias, "{name}");
        let files = ModelFiles::open_as(ModelSource::HfDir(fixture(name)), LoadFormat::Dummy);
        files
            .unwrap()
            .load_model(&CpuBackend::new(), DType::F16)
            .unwrap();
    }
}

/// The benchmark shapes (bench/models: OLMoE-1B-7B, Qwen1.5-MoE-A2.7B) parse into their MoE
/// configs; one layer of each with only top-k of its experts loads dummy weights (the expert
/// shapes are the real ones; the full models would take tens of GiB here).
#[test]
fn moe_bench_configs_parse_and_load_one_layer() {
    let bench = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/models");
    for (name, experts, top_k, width, shared) in [
        ("olmoe-1b-7b", 64, 8, 1024, None),
        ("qwen1.5-moe-a2.7b", 60, 4, 1408, Some(5632)),
    ] {
        let text = std::fs::read_to_string(bench.join(name).join("config.json")).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let c = ModelConfig::from_hf_value(Path::new(name), &v).unwrap();
        let moe = c.moe.as_ref().unwrap();
        assert_eq!(
            (
                moe.num_experts,
                moe.top_k,
                moe.expert_size,
                moe.shared_expert_size
            ),
            (experts, top_k, width, shared),
            "{name}"
        );
        assert!(!moe.renormalize, "{name}");
        v["num_hidden_layers"] = 1.into();
        v["vocab_size"] = 512.into();
        v["num_experts"] = top_k.into();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), v.to_string()).unwrap();
        let files =
            ModelFiles::open_as(ModelSource::HfDir(dir.path().into()), LoadFormat::Dummy).unwrap();
        files.load_model(&CpuBackend::new(), DType::BF16).unwrap();
    }
}
