#!/usr/bin/env python3
"""Generate the GGUF loader fixtures in testdata/quant/.

    pip install gguf numpy
    python3 tools/gen_quant_fixtures.py            # writes testdata/quant/*.gguf

Outputs (all small, deterministic for a given gguf/numpy version; seed fixed below):

* quant.gguf      one tensor per GGML type the Rust loader dequantizes, named after the type
                  ("q4_k", ...), plus a few with other shapes and one of an unsupported type
                  ("unsupported.q2_k"). Types the gguf package can quantize are quantized from
                  random normal data; the K-quants it cannot quantize are random block bytes
                  whose f16 super-block scales are overwritten with small finite values.
* reference.gguf  for every tensor of quant.gguf except the unsupported one, an F32 tensor of
                  the same name and shape holding gguf.quants.dequantize() of its bytes: the
                  reference the Rust dequantizers must match.
* meta.gguf       no tensors; metadata of every GGUF value type, arrays of each, nested arrays
                  and edge values. The Rust test spells out the same values (keep them in sync).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V

SEED = 20240611
OUT = Path(__file__).resolve().parent.parent / "testdata" / "quant"

# Types the gguf package can quantize from floats (F32/F16 handled by numpy casts).
QUANTIZABLE = [T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1]
# K-quants: gguf-py only dequantizes these, so we make random blocks with sane scales.
# Value: byte offsets of the f16 scale fields inside one block.
K_QUANT_SCALE_OFFSETS = {
    T.Q4_K: [0, 2],  # d, dmin at the start
    T.Q5_K: [0, 2],
    T.Q6_K: [208],  # ql[128] qh[64] scales[16] then d
    T.Q2_K: [80, 82],  # scales[16] qs[64] then d, dmin
}


def random_k_blocks(rng: np.random.Generator, qtype: T, shape: tuple[int, ...]) -> np.ndarray:
    """Random bytes for a K-quant tensor of float `shape`, with finite f16 scales."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = math.prod(shape) // block_size
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in K_QUANT_SCALE_OFFSETS[qtype]:
        # Scales of either sign and a spread of magnitudes, as real files have.
        scale = (rng.standard_normal(n_blocks) * 0.02).astype(np.float16)
        blocks[:, off : off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    row_bytes = shape[-1] // block_size * type_size
    return blocks.reshape(*shape[:-1], row_bytes)


def make_tensor(rng: np.random.Generator, qtype: T, shape: tuple[int, ...]) -> np.ndarray:
    """Stored bytes (or f32/f16 array) of a tensor of `qtype` with float shape `shape`."""
    if qtype in K_QUANT_SCALE_OFFSETS:
        return random_k_blocks(rng, qtype, shape)
    data = rng.standard_normal(shape).astype(np.float32)
    # A few tiny magnitudes so f16/bf16 subnormals and rounding are exercised.
    flat = data.reshape(-1)
    flat[::37] *= np.float32(1e-5)
    if qtype == T.F32:
        return data
    if qtype == T.F16:
        return data.astype(np.float16)
    assert qtype in QUANTIZABLE, qtype
    return gguf.quants.quantize(data, qtype)


def write_quant_files(rng: np.random.Generator) -> None:
    cases: list[tuple[str, T, tuple[int, ...]]] = [
        ("f32", T.F32, (3, 512)),
        ("f16", T.F16, (3, 512)),
        ("bf16", T.BF16, (3, 512)),
        ("q8_0", T.Q8_0, (3, 512)),
        ("q4_0", T.Q4_0, (3, 512)),
        ("q4_1", T.Q4_1, (3, 512)),
        ("q5_0", T.Q5_0, (3, 512)),
        ("q5_1", T.Q5_1, (3, 512)),
        ("q4_k", T.Q4_K, (3, 512)),
        ("q5_k", T.Q5_K, (3, 512)),
        ("q6_k", T.Q6_K, (3, 512)),
        # Other ranks: 1-D (a norm weight) and 3-D (stacked experts).
        ("f32.1d", T.F32, (96,)),
        ("q8_0.3d", T.Q8_0, (2, 3, 64)),
        ("q6_k.3d", T.Q6_K, (2, 2, 256)),
        ("unsupported.q2_k", T.Q2_K, (2, 256)),
    ]
    quant = gguf.GGUFWriter(OUT / "quant.gguf", "ingot-test")
    ref = gguf.GGUFWriter(OUT / "reference.gguf", "ingot-test")
    for name, qtype, shape in cases:
        stored = make_tensor(rng, qtype, shape)
        raw_dtype = None if qtype in (T.F32, T.F16) else qtype
        quant.add_tensor(name, stored, raw_dtype=raw_dtype)
        if name.startswith("unsupported."):
            continue
        if qtype == T.F32:
            expect = stored
        elif qtype == T.F16:
            expect = stored.astype(np.float32)
        else:
            expect = gguf.quants.dequantize(stored, qtype)
        expect = np.ascontiguousarray(expect, dtype=np.float32).reshape(shape)
        assert np.isfinite(expect).all(), name
        ref.add_tensor(name, expect)
    for w in (quant, ref):
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()


def write_meta_file() -> None:
    w = gguf.GGUFWriter(OUT / "meta.gguf", "ingot-test")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_uint64("t.u64", 2**64 - 1)
    w.add_int64("t.i64", -(2**63))
    w.add_float32("t.f32", 1.5)
    w.add_float64("t.f64", math.pi)
    w.add_bool("t.bool_true", True)
    w.add_bool("t.bool_false", False)
    w.add_string("t.str", "héllo wörld ✓")
    w.add_key_value("t.str_empty", "", V.STRING)  # add_string() skips empty strings
    w.add_key_value("a.u8", [0, 1, 255], V.ARRAY, sub_type=V.UINT8)
    w.add_key_value("a.i8", [-128, 0, 127], V.ARRAY, sub_type=V.INT8)
    w.add_key_value("a.u16", [0, 65535], V.ARRAY, sub_type=V.UINT16)
    w.add_key_value("a.i16", [-32768, 32767], V.ARRAY, sub_type=V.INT16)
    w.add_key_value("a.u32", [0, 4294967295], V.ARRAY, sub_type=V.UINT32)
    w.add_key_value("a.i32", [-2147483648, 2147483647], V.ARRAY, sub_type=V.INT32)
    w.add_key_value("a.u64", [0, 2**64 - 1], V.ARRAY, sub_type=V.UINT64)
    w.add_key_value("a.i64", [-(2**63), 2**63 - 1], V.ARRAY, sub_type=V.INT64)
    w.add_key_value("a.f32", [0.25, -2.0, 1e-3], V.ARRAY, sub_type=V.FLOAT32)
    w.add_key_value("a.f64", [math.e, -0.5], V.ARRAY, sub_type=V.FLOAT64)
    w.add_key_value("a.bool", [True, False, True], V.ARRAY, sub_type=V.BOOL)
    w.add_key_value("a.str", ["a", "bé", "", "<0x0A>"], V.ARRAY, sub_type=V.STRING)
    w.add_key_value("a.nested", [[1, 2], [3], [4, 5, 6]], V.ARRAY, sub_type=V.ARRAY)
    w.add_key_value("a.nested_str", [["x"], ["y", "z"]], V.ARRAY, sub_type=V.ARRAY)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    write_quant_files(rng)
    write_meta_file()
    for p in sorted(OUT.glob("*.gguf")):
        print(f"{p.relative_to(OUT.parent.parent)}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
