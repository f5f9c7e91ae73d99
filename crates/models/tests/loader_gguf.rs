//! GGUF reader and dequantizers against the Python `gguf` package, and against malformed files.
//!
//! * `testdata/quant/quant.gguf` + `reference.gguf` (from `tools/gen_quant_fixtures.py`): every
//!   supported type must dequantize to exactly the values `gguf.quants.dequantize` gave
//!   (tolerance: zero — bit-identical f32, since both compute the same f32 operations in the
//!   same order).
//! * `testdata/quant/meta.gguf`: metadata of every value type written by `gguf.GGUFWriter`.
//! * Files built here byte by byte: v2 and v3 headers, custom alignment, and one corruption
//!   per failure mode, each of which must be an error naming the file and the problem.

use std::path::{Path, PathBuf};

use ingot_models::loader::dequant::{self, SUPPORTED};
use ingot_models::loader::{GgmlType, GgufFile, LoadError, MetaValue, WeightSource};

fn quant_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/quant")
}

// ---------------------------------------------------------------------------------------
// Dequantization against the Python reference.

#[test]
fn every_supported_type_matches_python_reference_exactly() {
    let quant = GgufFile::open(&quant_dir().join("quant.gguf")).unwrap();
    let reference = GgufFile::open(&quant_dir().join("reference.gguf")).unwrap();
    let mut covered = Vec::new();
    for info in reference.tensor_infos() {
        assert_eq!(info.ggml_type, GgmlType::F32, "{}", info.name);
        let expect = reference.load_f32(&info.name).unwrap();
        let got = quant.load_f32(&info.name).unwrap();
        assert_eq!(
            quant.shape(&info.name).unwrap(),
            info.shape(),
            "{}",
            info.name
        );
        assert_eq!(got.len(), expect.len(), "{}", info.name);
        // Fixtures are random, never zeros: a decoder that wrote nothing would fail here.
        assert!(
            expect.iter().filter(|v| **v != 0.0).count() > expect.len() / 2,
            "{}: reference is mostly zeros",
            info.name
        );
        for (i, (g, e)) in got.iter().zip(&expect).enumerate() {
            assert!(
                g == e,
                "{} ({}): element {i}: got {g:e}, python says {e:e}",
                info.name,
                quant.ggml_type(&info.name).unwrap()
            );
        }
        covered.push(quant.ggml_type(&info.name).unwrap());
    }
    for ty in SUPPORTED {
        assert!(covered.contains(ty), "no fixture for {ty}");
    }
}

#[test]
fn fixture_shapes_follow_ggml_ne_reversed() {
    let quant = GgufFile::open(&quant_dir().join("quant.gguf")).unwrap();
    assert_eq!(quant.version(), 3);
    let q6 = quant.tensor_info("q6_k.3d").unwrap();
    assert_eq!(q6.ne, vec![256, 2, 2]);
    assert_eq!(q6.n_bytes, 4 * 210);
    assert_eq!(quant.shape("q8_0.3d").unwrap(), vec![2, 3, 64]);
    assert_eq!(quant.shape("f32.1d").unwrap(), vec![96]);
    assert_eq!(quant.tensor_bytes("q4_k").unwrap().len(), 3 * 2 * 144);
    assert_eq!(quant.ggml_type("q5_k").unwrap(), GgmlType::Q5_K);
    // File order, as written.
    let names = quant.tensor_names();
    assert_eq!(names.first().map(String::as_str), Some("f32"));
    assert_eq!(names.last().map(String::as_str), Some("unsupported.q2_k"));
    assert!(quant.contains("q4_1") && !quant.contains("nope"));
}

#[test]
fn unsupported_type_is_an_error_naming_tensor_and_type() {
    let path = quant_dir().join("quant.gguf");
    let quant = GgufFile::open(&path).unwrap();
    let err = quant.load_f32("unsupported.q2_k").unwrap_err();
    assert!(matches!(&err, LoadError::Tensor { tensor, .. } if tensor == "unsupported.q2_k"));
    let msg = err.to_string();
    assert!(msg.contains("Q2_K") && msg.contains("quant.gguf"), "{msg}");
    // Raw bytes stay reachable for a backend that handles the type itself.
    assert_eq!(
        quant.tensor_bytes("unsupported.q2_k").unwrap().len(),
        2 * 84
    );
}

#[test]
fn missing_tensor_is_an_error_naming_it() {
    let quant = GgufFile::open(&quant_dir().join("quant.gguf")).unwrap();
    for err in [
        quant.load_f32("blk.0.nope").unwrap_err(),
        quant.shape("blk.0.nope").unwrap_err(),
        quant.tensor_bytes("blk.0.nope").unwrap_err(),
    ] {
        assert!(
            matches!(&err, LoadError::MissingTensor { tensor, .. } if tensor == "blk.0.nope"),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Metadata.

#[test]
fn python_written_metadata_of_every_type_round_trips() {
    use MetaValue::*;
    let f = GgufFile::open(&quant_dir().join("meta.gguf")).unwrap();
    let ints = |v: &[i32]| Array(v.iter().map(|&x| I32(x)).collect());
    let strs = |v: &[&str]| Array(v.iter().map(|s| String(s.to_string())).collect());
    let expected: Vec<(&str, MetaValue)> = vec![
        ("general.architecture", String("ingot-test".into())),
        ("t.u8", U8(200)),
        ("t.i8", I8(-100)),
        ("t.u16", U16(60000)),
        ("t.i16", I16(-30000)),
        ("t.u32", U32(4_000_000_000)),
        ("t.i32", I32(-2_000_000_000)),
        ("t.u64", U64(u64::MAX)),
        ("t.i64", I64(i64::MIN)),
        ("t.f32", F32(1.5)),
        ("t.f64", F64(std::f64::consts::PI)),
        ("t.bool_true", Bool(true)),
        ("t.bool_false", Bool(false)),
        ("t.str", String("héllo wörld ✓".into())),
        ("t.str_empty", String(std::string::String::new())),
        ("a.u8", Array(vec![U8(0), U8(1), U8(255)])),
        ("a.i8", Array(vec![I8(-128), I8(0), I8(127)])),
        ("a.u16", Array(vec![U16(0), U16(65535)])),
        ("a.i16", Array(vec![I16(-32768), I16(32767)])),
        ("a.u32", Array(vec![U32(0), U32(u32::MAX)])),
        ("a.i32", Array(vec![I32(i32::MIN), I32(i32::MAX)])),
        ("a.u64", Array(vec![U64(0), U64(u64::MAX)])),
        ("a.i64", Array(vec![I64(i64::MIN), I64(i64::MAX)])),
        ("a.f32", Array(vec![F32(0.25), F32(-2.0), F32(1e-3)])),
        ("a.f64", Array(vec![F64(std::f64::consts::E), F64(-0.5)])),
        ("a.bool", Array(vec![Bool(true), Bool(false), Bool(true)])),
        ("a.str", strs(&["a", "bé", "", "<0x0A>"])),
        (
            "a.nested",
            Array(vec![ints(&[1, 2]), ints(&[3]), ints(&[4, 5, 6])]),
        ),
        ("a.nested_str", Array(vec![strs(&["x"]), strs(&["y", "z"])])),
    ];
    for (key, value) in &expected {
        assert_eq!(f.get(key), Some(value), "{key}");
    }
    assert_eq!(f.metadata().len(), expected.len());
    assert!(f.tensor_infos().is_empty());
}

#[test]
fn typed_getters_widen_integers_and_name_key_on_error() {
    let path = quant_dir().join("meta.gguf");
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.get_u32("t.u8").unwrap(), 200);
    assert_eq!(f.get_u32("t.u16").unwrap(), 60000);
    assert_eq!(f.get_u64("t.u64").unwrap(), u64::MAX);
    assert_eq!(f.get_i64("t.i8").unwrap(), -100);
    assert_eq!(f.get_f32("t.f32").unwrap(), 1.5);
    assert_eq!(f.get_f32("t.u8").unwrap(), 200.0);
    assert_eq!(f.get_f64("t.f64").unwrap(), std::f64::consts::PI);
    assert!(f.get_bool("t.bool_true").unwrap());
    assert_eq!(f.get_str("t.str").unwrap(), "héllo wörld ✓");
    assert_eq!(f.get_str_array("a.str").unwrap(), ["a", "bé", "", "<0x0A>"]);
    assert_eq!(f.get_f32_array("a.f32").unwrap(), [0.25, -2.0, 1e-3]);
    assert_eq!(f.get_i32_array("a.i8").unwrap(), [-128, 0, 127]);
    assert_eq!(f.get_u32_array("a.u16").unwrap(), [0, 65535]);
    assert_eq!(f.get_array("a.nested").unwrap().len(), 3);
    assert_eq!(
        f.get("t.i32").and_then(MetaValue::as_i32),
        Some(-2_000_000_000)
    );

    // Wrong type, value out of range, missing: each names file and key.
    let cases = [
        (f.get_u32("t.i8").unwrap_err(), "t.i8"),
        (f.get_u32("t.u64").unwrap_err(), "t.u64"),
        (f.get_str("t.u32").unwrap_err(), "t.u32"),
        (f.get_bool("t.str").unwrap_err(), "t.str"),
        (f.get_str_array("a.u8").unwrap_err(), "a.u8"),
        (f.get_i32_array("a.u32").unwrap_err(), "a.u32"),
        (
            f.get_u32("llama.block_count").unwrap_err(),
            "llama.block_count",
        ),
    ];
    for (err, key) in cases {
        assert!(matches!(err, LoadError::Malformed { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(key) && msg.contains("meta.gguf"), "{msg}");
    }
    assert!(
        f.get_u32("nope")
            .unwrap_err()
            .to_string()
            .contains("missing")
    );
}

// ---------------------------------------------------------------------------------------
// A GGUF writer for tests: every field spelled out so a test can corrupt any one of them.

/// A metadata value as (GGUF type id, encoded bytes).
fn val(ty: u32, bytes: impl AsRef<[u8]>) -> (u32, Vec<u8>) {
    (ty, bytes.as_ref().to_vec())
}

fn gguf_string(s: &str) -> Vec<u8> {
    let mut b = (s.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(s.as_bytes());
    b
}

/// Encoded array body: element type, count, elements.
fn gguf_array(elem_ty: u32, items: &[Vec<u8>]) -> Vec<u8> {
    let mut b = elem_ty.to_le_bytes().to_vec();
    b.extend((items.len() as u64).to_le_bytes());
    for it in items {
        b.extend_from_slice(it);
    }
    b
}

struct TensorSpec {
    name: String,
    ne: Vec<u64>,
    type_id: u32,
    /// None: place after the previous tensor, aligned.
    offset: Option<u64>,
    data: Vec<u8>,
}

struct Builder {
    magic: [u8; 4],
    version: u32,
    alignment: u64,
    kv: Vec<(String, u32, Vec<u8>)>,
    tensors: Vec<TensorSpec>,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            magic: *b"GGUF",
            version: 3,
            alignment: 32,
            kv: vec![("general.architecture".into(), 8, gguf_string("llama"))],
            tensors: Vec::new(),
        }
    }

    fn kv(mut self, key: &str, (ty, bytes): (u32, Vec<u8>)) -> Builder {
        self.kv.push((key.into(), ty, bytes));
        self
    }

    fn tensor(mut self, name: &str, ne: &[u64], ty: GgmlType, data: Vec<u8>) -> Builder {
        self.tensors.push(TensorSpec {
            name: name.into(),
            ne: ne.to_vec(),
            type_id: ty.id(),
            offset: None,
            data,
        });
        self
    }

    /// (file bytes, end of the tensor-info section, start of the data section)
    fn build(&self) -> (Vec<u8>, usize, usize) {
        let mut b = self.magic.to_vec();
        b.extend(self.version.to_le_bytes());
        b.extend((self.tensors.len() as u64).to_le_bytes());
        b.extend((self.kv.len() as u64).to_le_bytes());
        for (k, ty, v) in &self.kv {
            b.extend(gguf_string(k));
            b.extend(ty.to_le_bytes());
            b.extend(v);
        }
        let align = self.alignment as usize;
        // Tensors without an explicit offset are laid out one after another, aligned; those
        // with one (always a corruption under test) get no data written.
        let mut offsets = Vec::new();
        let mut next = 0u64;
        for t in &self.tensors {
            let off = match t.offset {
                Some(off) => off,
                None => {
                    let off = next;
                    offsets.push((off, &t.data));
                    next = (off + t.data.len() as u64).next_multiple_of(self.alignment);
                    off
                }
            };
            b.extend(gguf_string(&t.name));
            b.extend((t.ne.len() as u32).to_le_bytes());
            for n in &t.ne {
                b.extend(n.to_le_bytes());
            }
            b.extend(t.type_id.to_le_bytes());
            b.extend(off.to_le_bytes());
        }
        let header_end = b.len();
        let data_start = header_end.next_multiple_of(align);
        b.resize(data_start, 0);
        for (off, data) in offsets {
            let at = data_start + off as usize;
            if b.len() < at + data.len() {
                b.resize(at + data.len(), 0);
            }
            b[at..at + data.len()].copy_from_slice(data);
        }
        (b, header_end, data_start)
    }
}

/// Deterministic bytes (xorshift64*), so the data is never all zeros.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A small valid model-like file: two F32 tensors and a Q8_0 one.
fn sample() -> Builder {
    let w: Vec<f32> = noise(4 * 80, 7)
        .chunks(4)
        .map(|c| f32::from(c[0] as i8) / 16.0)
        .collect();
    let mut q8 = noise(2 * 34, 9);
    for blk in q8.chunks_mut(34) {
        blk[..2].copy_from_slice(&half::f16::from_f32(0.125).to_le_bytes());
    }
    Builder::new()
        .kv("llama.block_count", val(4, 2u32.to_le_bytes()))
        .tensor(
            "token_embd.weight",
            &[16, 4],
            GgmlType::F32,
            f32_bytes(&w[..64]),
        )
        .tensor(
            "output_norm.weight",
            &[16],
            GgmlType::F32,
            f32_bytes(&w[64..80]),
        )
        .tensor("blk.0.attn_q.weight", &[32, 2], GgmlType::Q8_0, q8)
}

struct Written {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn write(bytes: &[u8]) -> Written {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, bytes).unwrap();
    Written { _dir: dir, path }
}

/// Opening must fail; returns the message after checking it names the file.
fn open_err(bytes: &[u8]) -> LoadError {
    let w = write(bytes);
    let err = GgufFile::open(&w.path).expect_err("malformed file opened");
    let msg = err.to_string();
    assert!(
        msg.contains(&w.path.display().to_string()),
        "no path in: {msg}"
    );
    err
}

fn tensor_err(bytes: &[u8], tensor: &str, needle: &str) {
    let err = open_err(bytes);
    let msg = err.to_string();
    assert!(
        matches!(&err, LoadError::Tensor { tensor: t, .. } if t == tensor),
        "expected an error naming tensor '{tensor}', got: {msg}"
    );
    assert!(msg.contains(needle), "'{needle}' not in: {msg}");
}

fn malformed_err(bytes: &[u8], needle: &str) {
    let err = open_err(bytes);
    let msg = err.to_string();
    assert!(matches!(err, LoadError::Malformed { .. }), "{msg}");
    assert!(msg.contains(needle), "'{needle}' not in: {msg}");
}

// ---------------------------------------------------------------------------------------
// Valid files built here.

#[test]
fn builder_file_opens_with_v2_and_v3_and_custom_alignment() {
    for (version, alignment) in [(3, 32), (2, 32), (3, 64), (2, 256)] {
        let mut b = sample();
        b.version = version;
        b.alignment = alignment;
        if alignment != 32 {
            b = b.kv(
                "general.alignment",
                val(4, (alignment as u32).to_le_bytes()),
            );
        }
        let (bytes, _, data_start) = b.build();
        let w = write(&bytes);
        let f = GgufFile::open(&w.path).unwrap();
        assert_eq!(f.version(), version);
        assert_eq!(f.alignment(), alignment);
        assert_eq!(f.data_start(), data_start as u64);
        assert_eq!(f.data_start() % alignment, 0);
        assert_eq!(f.get_u32("llama.block_count").unwrap(), 2);
        assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
        for t in &b.tensors {
            assert_eq!(f.tensor_bytes(&t.name).unwrap(), &t.data[..], "{}", t.name);
            let shape: Vec<usize> = t.ne.iter().rev().map(|&n| n as usize).collect();
            assert_eq!(f.shape(&t.name).unwrap(), shape);
        }
        let emb = f.load_f32("token_embd.weight").unwrap();
        let raw = &b.tensors[0].data;
        assert_eq!(
            emb,
            raw.chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect::<Vec<_>>()
        );
        // Q8_0 by hand: q * d with d = 0.125.
        let q = f.load_f32("blk.0.attn_q.weight").unwrap();
        let raw = &b.tensors[2].data;
        for (i, v) in q.iter().enumerate() {
            let byte = raw[(i / 32) * 34 + 2 + i % 32] as i8;
            assert_eq!(*v, f32::from(byte) * 0.125, "element {i}");
        }
    }
}

#[test]
fn builder_metadata_of_every_type_round_trips() {
    use MetaValue::*;
    let nested = gguf_array(
        9,
        &[
            gguf_array(6, &[1.5f32.to_le_bytes().to_vec()]),
            gguf_array(6, &[]),
        ],
    );
    let (bytes, ..) = Builder::new()
        .kv("u8", val(0, [250u8]))
        .kv("i8", val(1, (-5i8).to_le_bytes()))
        .kv("u16", val(2, 65535u16.to_le_bytes()))
        .kv("i16", val(3, (-300i16).to_le_bytes()))
        .kv("u32", val(4, 7u32.to_le_bytes()))
        .kv("i32", val(5, (-7i32).to_le_bytes()))
        .kv("f32", val(6, 0.1f32.to_le_bytes()))
        .kv("bool", val(7, [1u8]))
        .kv("str", val(8, gguf_string("∑ ok")))
        .kv("u64", val(10, (1u64 << 40).to_le_bytes()))
        .kv("i64", val(11, (-(1i64 << 40)).to_le_bytes()))
        .kv("f64", val(12, 1e300f64.to_le_bytes()))
        .kv("arr_bool", val(9, gguf_array(7, &[vec![0], vec![1]])))
        .kv("arr_empty", val(9, gguf_array(8, &[])))
        .kv("arr_nested", val(9, nested))
        .build();
    let w = write(&bytes);
    let f = GgufFile::open(&w.path).unwrap();
    let expect = [
        ("u8", U8(250)),
        ("i8", I8(-5)),
        ("u16", U16(65535)),
        ("i16", I16(-300)),
        ("u32", U32(7)),
        ("i32", I32(-7)),
        ("f32", F32(0.1)),
        ("bool", Bool(true)),
        ("str", String("∑ ok".into())),
        ("u64", U64(1 << 40)),
        ("i64", I64(-(1 << 40))),
        ("f64", F64(1e300)),
        ("arr_bool", Array(vec![Bool(false), Bool(true)])),
        ("arr_empty", Array(vec![])),
        (
            "arr_nested",
            Array(vec![Array(vec![F32(1.5)]), Array(vec![])]),
        ),
    ];
    for (k, v) in expect {
        assert_eq!(f.get(k), Some(&v), "{k}");
    }
    // Integer getters accept any width that holds the value.
    assert_eq!(f.get_u64("u8").unwrap(), 250);
    assert_eq!(f.get_i64("i16").unwrap(), -300);
    assert!(f.get_u32("u64").is_err());
    assert_eq!(f.get_f32("f64").unwrap(), f32::INFINITY);
}

// ---------------------------------------------------------------------------------------
// Malformed files: an error naming the file and the problem, never a panic.

#[test]
fn bad_magic() {
    let (mut bytes, ..) = sample().build();
    bytes[..4].copy_from_slice(b"GGML");
    malformed_err(&bytes, "magic");
    malformed_err(b"PK\x03\x04 this is a zip, not a model", "not a GGUF file");
}

#[test]
fn unsupported_versions() {
    for (version, needle) in [
        (1u32, "version 1"),
        (4, "version 4"),
        (0, "version 0"),
        (3u32.swap_bytes(), "big-endian"),
    ] {
        let mut b = sample();
        b.version = version;
        malformed_err(&b.build().0, needle);
    }
}

#[test]
fn every_truncation_is_an_error() {
    // Cut the file at every length: inside the header it is a truncated header, after it
    // the tensor whose data is cut off is named.
    let (bytes, header_end, _) = sample().build();
    let full = write(&bytes);
    let whole = GgufFile::open(&full.path).unwrap();
    for len in 0..bytes.len() {
        let err = open_err(&bytes[..len]);
        let msg = err.to_string();
        if len < header_end {
            assert!(msg.contains("truncated header"), "len {len}: {msg}");
        } else {
            // The first tensor, in file order, whose data no longer fits.
            let cut = whole
                .tensor_infos()
                .iter()
                .find(|t| whole.data_start() + t.offset + t.n_bytes > len as u64)
                .unwrap();
            assert!(
                matches!(&err, LoadError::Tensor { tensor, .. } if *tensor == cut.name),
                "len {len}: {msg}"
            );
            assert!(msg.contains("past the end of the file"), "len {len}: {msg}");
        }
    }
}

#[test]
fn unknown_ggml_type_id() {
    for id in [4u32, 31, 99, u32::MAX] {
        let mut b = sample();
        b.tensors[1].type_id = id;
        tensor_err(
            &b.build().0,
            "output_norm.weight",
            &format!("unknown GGML type id {id}"),
        );
    }
}

#[test]
fn tensor_offset_past_eof() {
    let mut b = sample();
    b.tensors[0].offset = Some(1 << 40);
    tensor_err(
        &b.build().0,
        "token_embd.weight",
        "past the end of the file",
    );

    let mut b = sample();
    b.tensors[2].offset = Some(u64::MAX - 31);
    tensor_err(&b.build().0, "blk.0.attn_q.weight", "overflows");
}

#[test]
fn tensor_geometry_errors_name_the_tensor() {
    let mut b = sample();
    b.tensors[2].offset = Some(40); // not a multiple of 32
    tensor_err(
        &b.build().0,
        "blk.0.attn_q.weight",
        "not a multiple of the alignment",
    );

    let mut b = sample();
    b.tensors[2].ne = vec![48, 1]; // Q8_0 rows must be whole 32-element blocks
    tensor_err(&b.build().0, "blk.0.attn_q.weight", "block size 32");

    let mut b = sample();
    b.tensors[1].ne = vec![1, 1, 1, 1, 16];
    tensor_err(&b.build().0, "output_norm.weight", "5 dimensions");

    let mut b = sample();
    b.tensors[1].ne = vec![1 << 32, 1 << 32];
    tensor_err(&b.build().0, "output_norm.weight", "overflows");

    let mut b = sample();
    b.tensors[1].ne = vec![16, u64::MAX];
    tensor_err(&b.build().0, "output_norm.weight", "out of range");

    let b = sample().tensor("output_norm.weight", &[4], GgmlType::F32, vec![0; 16]);
    malformed_err(&b.build().0, "duplicate tensor name 'output_norm.weight'");
}

#[test]
fn malformed_metadata() {
    let bad = |key: &str, v: (u32, Vec<u8>), needle: &str| {
        malformed_err(&sample().kv(key, v).build().0, needle);
    };
    bad("x.flag", val(7, [2u8]), "not 0 or 1");
    bad("x.kind", val(13, [0u8; 8]), "unknown value type 13");
    bad(
        "x.arr",
        val(9, gguf_array(42, &[])),
        "unknown array element type 42",
    );
    bad(
        "x.str",
        val(8, [&2u64.to_le_bytes()[..], &[0xff, 0xfe]].concat()),
        "not valid UTF-8",
    );
    bad(
        "general.alignment",
        val(4, 48u32.to_le_bytes()),
        "power of two",
    );
    bad(
        "general.alignment",
        val(8, gguf_string("32")),
        "general.alignment",
    );
    bad(
        "general.architecture",
        val(8, gguf_string("dup")),
        "duplicate metadata key",
    );
    // A count far beyond the file must fail as truncation, without allocating for it.
    let mut huge = 4u32.to_le_bytes().to_vec();
    huge.extend(u64::MAX.to_le_bytes());
    bad("x.huge", val(9, huge), "truncated header");
    let mut huge_str = (1u64 << 62).to_le_bytes().to_vec();
    huge_str.extend(b"abc");
    bad("x.s", val(8, huge_str), "truncated header");
    // Arrays nested deeper than any real file: refused, not a stack overflow.
    let mut deep = gguf_array(4, &[]);
    for _ in 0..64 {
        deep = gguf_array(9, &[deep]);
    }
    bad("x.deep", val(9, deep), "nested deeper");

    // The error names the key being read.
    let err = open_err(
        &sample()
            .kv(
                "tokenizer.ggml.tokens",
                val(9, gguf_array(8, &[vec![9u8; 3]])),
            )
            .build()
            .0,
    );
    assert!(err.to_string().contains("tokenizer.ggml.tokens"), "{err}");
}

#[test]
fn huge_tensor_count_is_truncation_not_allocation() {
    let (mut bytes, ..) = sample().build();
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    malformed_err(&bytes, "tensor count");
    let (mut bytes, ..) = sample().build();
    bytes[16..24].copy_from_slice(&(1u64 << 50).to_le_bytes());
    malformed_err(&bytes, "metadata count");
}

#[test]
fn random_corruption_never_panics() {
    // Flip random bytes of the header many times; whatever happens must be Ok or Err.
    let (bytes, header_end, _) = sample().build();
    let noise = noise(4096, 1234);
    let dir = tempfile::tempdir().unwrap();
    for (round, r) in noise.chunks(4).enumerate() {
        let mut b = bytes.clone();
        let at = (usize::from(r[0]) << 8 | usize::from(r[1])) % header_end;
        b[at] ^= r[2] | 1;
        let path = dir.path().join(format!("c{round}.gguf"));
        std::fs::write(&path, &b).unwrap();
        if let Ok(f) = GgufFile::open(&path) {
            for name in f.tensor_names() {
                let _ = f.load_f32(&name);
            }
        }
    }
}

#[test]
fn io_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.gguf");
    let err = GgufFile::open(&path).unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }));
    assert!(err.to_string().contains("absent.gguf"));
}

#[test]
fn dequantize_is_usable_per_row() {
    // An embedding lookup dequantizes one row of a quantized table at a time; the rows must
    // agree with the whole-tensor load.
    let quant = GgufFile::open(&quant_dir().join("quant.gguf")).unwrap();
    for name in ["q4_k", "q6_k", "q8_0", "bf16"] {
        let info = quant.tensor_info(name).unwrap();
        let whole = quant.load_f32(name).unwrap();
        let bytes = quant.tensor_bytes(name).unwrap();
        let row = info.ne[0] as usize;
        let row_bytes = bytes.len() / (whole.len() / row);
        for (r, chunk) in bytes.chunks(row_bytes).enumerate() {
            let mut out = vec![f32::NAN; row];
            dequant::dequantize(info.ggml_type, chunk, &mut out).unwrap();
            assert_eq!(out, whole[r * row..(r + 1) * row], "{name} row {r}");
        }
    }
}
