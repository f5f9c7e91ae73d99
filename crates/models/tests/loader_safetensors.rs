//! safetensors loading: single file, directory of files, sharded index; F32/F16/BF16 to f32
//! (exact: every f16/bf16 value is representable in f32); unsupported dtypes and broken files
//! are errors naming the file (and tensor).

use std::path::{Path, PathBuf};

use half::{bf16, f16};
use ingot_models::loader::{LoadError, SafetensorsDir, WeightSource};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// Random values in [-8, 8) with a spread of magnitudes (splitmix64), never all zeros.
fn random_f32(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            let scale = [1.0, 1e-3, 1e-6][(z & 3) as usize % 3];
            (u * 16.0 - 8.0) * scale
        })
        .collect()
}

/// A tensor to serialize: name, dtype, shape, little-endian bytes, and the f32 values the
/// loader must return.
struct Tensor {
    name: &'static str,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
    expect: Vec<f32>,
}

fn tensor(name: &'static str, dtype: Dtype, shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    let x = random_f32(n, seed);
    let (bytes, expect): (Vec<u8>, Vec<f32>) = match dtype {
        Dtype::F32 => (x.iter().flat_map(|v| v.to_le_bytes()).collect(), x.clone()),
        Dtype::F16 => {
            let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
            (
                h.iter().flat_map(|v| v.to_le_bytes()).collect(),
                h.iter().map(|v| v.to_f32()).collect(),
            )
        }
        Dtype::BF16 => {
            let h: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
            (
                h.iter().flat_map(|v| v.to_le_bytes()).collect(),
                h.iter().map(|v| v.to_f32()).collect(),
            )
        }
        Dtype::I64 => (
            (0..n as i64).flat_map(|v| v.to_le_bytes()).collect(),
            vec![],
        ),
        other => panic!("test helper has no {other:?}"),
    };
    Tensor {
        name,
        dtype,
        shape: shape.to_vec(),
        bytes,
        expect,
    }
}

fn serialize(tensors: &[&Tensor]) -> Vec<u8> {
    let views = tensors.iter().map(|t| {
        (
            t.name,
            TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap(),
        )
    });
    safetensors::serialize(views, None).unwrap()
}

fn check_loads(src: &SafetensorsDir, t: &Tensor) {
    assert!(src.contains(t.name));
    assert_eq!(src.shape(t.name).unwrap(), t.shape, "{}", t.name);
    assert_eq!(src.dtype(t.name).unwrap(), t.dtype);
    assert_eq!(src.tensor_bytes(t.name).unwrap(), &t.bytes[..]);
    let got = src.load_f32(t.name).unwrap();
    assert_eq!(got.len(), t.expect.len(), "{}", t.name);
    for (i, (g, e)) in got.iter().zip(&t.expect).enumerate() {
        assert!(
            g.to_bits() == e.to_bits(),
            "{} element {i}: {g} != {e}",
            t.name
        );
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn single_file_f32_f16_bf16() {
    // Sizes that are not multiples of any chunk, and one large enough for the parallel path.
    let a = tensor("model.embed_tokens.weight", Dtype::F32, &[7, 13], 1);
    let b = tensor("model.norm.weight", Dtype::F16, &[101], 2);
    let c = tensor("lm_head.weight", Dtype::BF16, &[3, 5, 7], 3);
    let d = tensor("big.f16", Dtype::F16, &[40_001], 4);
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "model.safetensors",
        &serialize(&[&a, &b, &c, &d]),
    );
    for opened in [path.as_path(), dir.path()] {
        let src = SafetensorsDir::open(opened).unwrap();
        assert_eq!(src.path(), opened);
        assert_eq!(src.tensor_names().len(), 4);
        for t in [&a, &b, &c, &d] {
            check_loads(&src, t);
        }
    }
}

#[test]
fn directory_of_files_and_sharded_index() {
    let a = tensor("a.weight", Dtype::F32, &[4, 4], 5);
    let b = tensor("b.weight", Dtype::BF16, &[8], 6);
    let c = tensor("c.weight", Dtype::F16, &[2, 3], 7);

    // Plain directory: every *.safetensors file, other files ignored.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "x-00002.safetensors", &serialize(&[&c]));
    write(dir.path(), "x-00001.safetensors", &serialize(&[&a, &b]));
    write(dir.path(), "config.json", b"{}");
    let src = SafetensorsDir::open(dir.path()).unwrap();
    assert_eq!(src.tensor_names(), ["a.weight", "b.weight", "c.weight"]);
    assert_eq!(src.files().len(), 2);
    for t in [&a, &b, &c] {
        check_loads(&src, t);
    }

    // With an index, only the shards it names are read.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "model-00001-of-00002.safetensors",
        &serialize(&[&a]),
    );
    write(
        dir.path(),
        "model-00002-of-00002.safetensors",
        &serialize(&[&b, &c]),
    );
    write(dir.path(), "stray.safetensors", b"not read");
    let index = serde_json::json!({
        "metadata": {"total_size": 0},
        "weight_map": {
            "a.weight": "model-00001-of-00002.safetensors",
            "b.weight": "model-00002-of-00002.safetensors",
            "c.weight": "model-00002-of-00002.safetensors",
        }
    });
    write(
        dir.path(),
        "model.safetensors.index.json",
        index.to_string().as_bytes(),
    );
    let src = SafetensorsDir::open(dir.path()).unwrap();
    assert_eq!(src.files().len(), 2);
    for t in [&a, &b, &c] {
        check_loads(&src, t);
    }
    let err = src.load_f32("d.weight").unwrap_err();
    assert!(matches!(&err, LoadError::MissingTensor { tensor, .. } if tensor == "d.weight"));
    assert!(err.to_string().contains(&dir.path().display().to_string()));
}

#[test]
fn index_naming_a_tensor_that_is_not_there() {
    let a = tensor("a.weight", Dtype::F32, &[4], 8);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "m1.safetensors", &serialize(&[&a]));
    let index = serde_json::json!({"weight_map": {"a.weight": "m1.safetensors", "z.weight": "m1.safetensors"}});
    write(
        dir.path(),
        "model.safetensors.index.json",
        index.to_string().as_bytes(),
    );
    let err = SafetensorsDir::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, LoadError::Tensor { tensor, .. } if tensor == "z.weight"),
        "{err}"
    );
    assert!(
        err.to_string().contains("model.safetensors.index.json"),
        "{err}"
    );

    // An index naming a shard file that does not exist: an I/O error naming that file.
    let index = serde_json::json!({"weight_map": {"a.weight": "gone.safetensors"}});
    write(
        dir.path(),
        "model.safetensors.index.json",
        index.to_string().as_bytes(),
    );
    let err = SafetensorsDir::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("gone.safetensors"), "{err}");

    write(
        dir.path(),
        "model.safetensors.index.json",
        b"{\"weight_map\": 3}",
    );
    let err = SafetensorsDir::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("weight_map"), "{err}");
}

#[test]
fn duplicate_tensor_across_files() {
    let a = tensor("a.weight", Dtype::F32, &[4], 9);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "m1.safetensors", &serialize(&[&a]));
    write(dir.path(), "m2.safetensors", &serialize(&[&a]));
    let err = SafetensorsDir::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, LoadError::Tensor { tensor, .. } if tensor == "a.weight"),
        "{err}"
    );
    assert!(err.to_string().contains("m1.safetensors"), "{err}");
}

#[test]
fn unsupported_dtype_names_file_and_tensor() {
    let ids = tensor("position_ids", Dtype::I64, &[6], 0);
    let w = tensor("w", Dtype::F32, &[6], 10);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "model.safetensors", &serialize(&[&ids, &w]));
    let src = SafetensorsDir::open(dir.path()).unwrap();
    check_loads(&src, &w);
    let err = src.load_f32("position_ids").unwrap_err();
    assert!(
        matches!(&err, LoadError::Tensor { tensor, .. } if tensor == "position_ids"),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("I64") && msg.contains(&path.display().to_string()),
        "{msg}"
    );
    // Its bytes are still there for whoever wants integers.
    assert_eq!(src.tensor_bytes("position_ids").unwrap().len(), 48);
}

#[test]
fn truncated_and_garbage_files_name_the_file() {
    let a = tensor("a", Dtype::F32, &[64], 11);
    let b = tensor("b", Dtype::F16, &[64], 12);
    let good = serialize(&[&a, &b]);
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let dir = tempfile::tempdir().unwrap();

    let expect_err = |bytes: &[u8], needle: &str| {
        let path = write(dir.path(), "bad.safetensors", bytes);
        let err = SafetensorsDir::open(&path).expect_err("broken file opened");
        let msg = err.to_string();
        assert!(matches!(err, LoadError::Malformed { .. }), "{msg}");
        assert!(msg.contains("bad.safetensors"), "{msg}");
        assert!(msg.contains(needle), "'{needle}' not in: {msg}");
    };
    // Every cut: in the length prefix, in the JSON header, in the data.
    for len in [
        0,
        5,
        8,
        20,
        8 + header_len - 1,
        8 + header_len,
        good.len() - 130,
        good.len() - 1,
    ] {
        let needle = match len {
            0 => "empty",
            _ => "truncated",
        };
        expect_err(&good[..len], needle);
    }
    // Trailing junk is also a size mismatch.
    expect_err(&[&good[..], b"xx"].concat(), "trailing");
    // Not a safetensors file at all.
    expect_err(
        b"GGUF\x03\x00\x00\x00 definitely not json",
        "not a valid safetensors file",
    );
    let mut bad_json = good.clone();
    bad_json[8] = b'[';
    expect_err(&bad_json, "not a valid safetensors file");

    // A directory with nothing to load.
    let empty = tempfile::tempdir().unwrap();
    let err = SafetensorsDir::open(empty.path()).unwrap_err();
    assert!(err.to_string().contains("no *.safetensors"), "{err}");
    let missing = empty.path().join("nope");
    assert!(matches!(
        SafetensorsDir::open(&missing),
        Err(LoadError::Io { .. })
    ));
}
