#!/usr/bin/env python3
"""Check the tiny fixtures in testdata/ without torch (numpy, safetensors, tokenizers, gguf).

For every fixture made by make_tiny_models.py:
  1. GGUF metadata and tokenizer arrays agree with config.json / tokenizer.json.
  2. The GGUF holds exactly the expected tensor names, GGML shapes and types; after
     dequantizing and undoing the llama Q/K row permutation every tensor equals the
     safetensors one (F32: bit-exact; Q8_0: within half a quantization step).
  3. An independent float64 numpy forward pass run twice -- once on the safetensors weights
     with HF conventions (rotate-half rope), once on the GGUF weights with llama.cpp
     conventions (interleaved rope for llama, NeoX for qwen2, rope_freqs divisors) -- agrees
     with itself and, when reference.json exists, with the transformers logits and greedy tokens.

Usage:  python3 tools/check_tiny_gguf.py [--dir testdata]
Exits non-zero on the first failed check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_tiny_models as mk  # fixture specs, weight permutation

REL_TOL = 1e-4  # max |a - b| / max |b| over a prompt's [T, V] logits


def field(reader, key):
    f = reader.get_field(key)
    if f is None:
        raise AssertionError(f"missing GGUF key {key}")
    return f.contents()


def expected_tensors(spec: dict) -> dict[str, tuple[int, ...]]:
    """GGUF name -> GGML ne (innermost dimension first)."""
    H, I, D, V = spec["hidden"], spec["intermediate"], spec["head_dim"], spec["vocab_size"]
    Hq, Hk = spec["heads"], spec["kv_heads"]
    out = {"token_embd.weight": (H, V), "output_norm.weight": (H,)}
    if not spec["tied"]:
        out["output.weight"] = (H, V)
    if spec["rope_scaling"] is not None:
        out["rope_freqs.weight"] = (D // 2,)
    for n in range(spec["layers"]):
        b = f"blk.{n}."
        out[b + "attn_norm.weight"] = (H,)
        out[b + "attn_q.weight"] = (H, Hq * D)
        out[b + "attn_k.weight"] = (H, Hk * D)
        out[b + "attn_v.weight"] = (H, Hk * D)
        if spec["qkv_bias"]:
            out[b + "attn_q.bias"] = (Hq * D,)
            out[b + "attn_k.bias"] = (Hk * D,)
            out[b + "attn_v.bias"] = (Hk * D,)
        out[b + "attn_output.weight"] = (Hq * D, H)
        out[b + "ffn_norm.weight"] = (H,)
        out[b + "ffn_gate.weight"] = (H, I)
        out[b + "ffn_up.weight"] = (H, I)
        out[b + "ffn_down.weight"] = (I, H)
    return out


def hf_name(gguf_name: str) -> str | None:
    if gguf_name == "rope_freqs.weight":
        return None
    fixed = {
        "token_embd.weight": "model.embed_tokens.weight",
        "output_norm.weight": "model.norm.weight",
        "output.weight": "lm_head.weight",
    }
    if gguf_name in fixed:
        return fixed[gguf_name]
    _, n, rest = gguf_name.split(".", 2)
    part, kind = rest.split(".")
    table = {
        "attn_norm": "input_layernorm",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_norm": "post_attention_layernorm",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    return f"model.layers.{n}.{table[part]}.{kind}"


def load_gguf(path: Path, spec: dict, st: dict[str, np.ndarray], tok_json: dict, cfg: dict):
    """Check one GGUF file; return its tensors dequantized to float32, keyed by GGUF name."""
    import gguf

    r = gguf.GGUFReader(str(path))
    arch = spec["arch"]
    assert field(r, "general.architecture") == arch
    for key, want in [
        (f"{arch}.block_count", cfg["num_hidden_layers"]),
        (f"{arch}.context_length", cfg["max_position_embeddings"]),
        (f"{arch}.embedding_length", cfg["hidden_size"]),
        (f"{arch}.feed_forward_length", cfg["intermediate_size"]),
        (f"{arch}.attention.head_count", cfg["num_attention_heads"]),
        (f"{arch}.attention.head_count_kv", cfg["num_key_value_heads"]),
        (f"{arch}.rope.dimension_count", cfg["head_dim"]),
        ("tokenizer.ggml.bos_token_id", cfg["bos_token_id"]),
        ("tokenizer.ggml.eos_token_id", cfg["eos_token_id"]),
        ("tokenizer.ggml.model", "gpt2"),
        ("tokenizer.ggml.pre", spec["gguf_pre"]),
        ("tokenizer.ggml.add_bos_token", spec["add_bos"]),
        ("tokenizer.chat_template", mk.CHAT_TEMPLATE),
    ]:
        got = field(r, key)
        assert got == want, f"{path.name}: {key} = {got!r}, want {want!r}"
    for key, want in [
        (f"{arch}.rope.freq_base", cfg["rope_theta"]),
        (f"{arch}.attention.layer_norm_rms_epsilon", cfg["rms_norm_eps"]),
    ]:
        got = field(r, key)
        assert abs(got - want) <= 1e-7 * abs(want), f"{path.name}: {key} = {got}, want {want}"

    vocab = dict(tok_json["model"]["vocab"])
    for t in tok_json["added_tokens"]:
        vocab[t["content"]] = t["id"]
    tokens = field(r, "tokenizer.ggml.tokens")
    assert tokens == [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])], "token list"
    specials = {t["id"] for t in tok_json["added_tokens"]}
    types = field(r, "tokenizer.ggml.token_type")
    assert types == [3 if i in specials else 1 for i in range(len(tokens))], "token types"
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok_json["model"]["merges"]]
    assert field(r, "tokenizer.ggml.merges") == merges, "merges"

    want = expected_tensors(spec)
    got_names = [t.name for t in r.tensors]
    assert sorted(got_names) == sorted(want), f"{path.name}: tensors {sorted(set(got_names) ^ set(want))}"
    out = {}
    for t in r.tensors:
        ne = tuple(int(x) for x in t.shape)
        assert ne == want[t.name], f"{path.name}: {t.name} ne {ne}, want {want[t.name]}"
        qt = gguf.GGMLQuantizationType(t.tensor_type)
        if qt == gguf.GGMLQuantizationType.F32:
            arr = np.array(t.data, dtype=np.float32).reshape(tuple(reversed(ne)))
        else:
            assert qt == gguf.GGMLQuantizationType.Q8_0, f"{t.name}: unexpected type {qt.name}"
            arr = gguf.quants.dequantize(np.array(t.data), qt).reshape(tuple(reversed(ne)))
        out[t.name] = arr
        hf = hf_name(t.name)
        if hf is None:
            assert np.array_equal(arr, mk.llama3_rope_factors(spec)), "rope_freqs"
            continue
        ref = st[hf]
        if arch == "llama" and t.name.split(".")[-2] in ("attn_q", "attn_k"):
            heads = spec["heads"] if ".attn_q." in t.name else spec["kv_heads"]
            back = mk.unpermute_qk(arr, heads)
            assert not np.array_equal(arr, ref), f"{t.name} was not permuted"
        else:
            back = arr
        if qt == gguf.GGMLQuantizationType.F32:
            assert np.array_equal(back, ref), f"{path.name}: {t.name} differs from {hf}"
        else:
            blocks = ref.reshape(-1, 32)
            step = np.abs(blocks).max(axis=1, keepdims=True) / 127.0
            err = np.abs(back.reshape(-1, 32) - blocks)
            assert (err <= 0.6 * step + 1e-12).all(), f"{path.name}: {t.name} Q8_0 error too large"
    types_seen = sorted({gguf.GGMLQuantizationType(t.tensor_type).name for t in r.tensors})
    print(f"  {path.name}: {len(got_names)} tensors ok ({', '.join(types_seen)})")
    return out


def rope(x: np.ndarray, pos: np.ndarray, theta: float, factors: np.ndarray | None, interleaved: bool):
    """x [T, nh, D]; rotate pairs (2i, 2i+1) if interleaved else (i, i + D/2)."""
    D = x.shape[-1]
    inv = theta ** (-np.arange(0, D, 2, dtype=np.float64) / D)
    if factors is not None:
        inv = inv / factors
    ang = pos[:, None, None].astype(np.float64) * inv[None, None, :]  # [T, 1, D/2]
    c, s = np.cos(ang), np.sin(ang)
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * c - b * s
        out[..., 1::2] = a * s + b * c
        return out
    a, b = x[..., : D // 2], x[..., D // 2 :]
    return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)


def forward(
    w: dict[str, np.ndarray], spec: dict, ids: list[int], interleaved: bool, factors: np.ndarray | None
) -> np.ndarray:
    """float64 logits [T, V] from GGUF-named weights ([out, in] layout)."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    Hq, Hk, D, eps = spec["heads"], spec["kv_heads"], spec["head_dim"], spec["eps"]
    T = len(ids)
    pos = np.arange(T)

    def norm(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def lin(x, name):
        y = x @ w[name + ".weight"].T
        return y + w[name + ".bias"] if name + ".bias" in w else y

    x = w["token_embd.weight"][ids]  # [T, H]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for n in range(spec["layers"]):
        b = f"blk.{n}."
        h = norm(x, w[b + "attn_norm.weight"])
        q = rope(lin(h, b + "attn_q").reshape(T, Hq, D), pos, spec["rope_theta"], factors, interleaved)
        k = rope(lin(h, b + "attn_k").reshape(T, Hk, D), pos, spec["rope_theta"], factors, interleaved)
        v = lin(h, b + "attn_v").reshape(T, Hk, D)
        k = np.repeat(k, Hq // Hk, axis=1)  # head j of q uses kv head j // (Hq / Hk)
        v = np.repeat(v, Hq // Hk, axis=1)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(D) + mask  # [Hq, T, T]
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        a = np.einsum("hts,shd->thd", p, v).reshape(T, Hq * D)
        x = x + lin(a, b + "attn_output")
        h = norm(x, w[b + "ffn_norm.weight"])
        g, u = lin(h, b + "ffn_gate"), lin(h, b + "ffn_up")
        x = x + (g / (1 + np.exp(-g)) * u) @ w[b + "ffn_down.weight"].T
    x = norm(x, w["output_norm.weight"])
    out = w.get("output.weight", w["token_embd.weight"])
    return x @ out.T


def greedy(w, spec, ids, interleaved, factors, n):
    seq = list(ids)
    for _ in range(n):
        seq.append(int(np.argmax(forward(w, spec, seq, interleaved, factors)[-1])))
    return seq[len(ids) :]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def check_fixture(d: Path, spec: dict) -> None:
    from safetensors.numpy import load_file

    print(d.name)
    cfg = json.loads((d / "config.json").read_text())
    tok_json = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    st = load_file(str(d / "model.safetensors"))
    ggufs = {p.name: load_gguf(p, spec, st, tok_json, cfg) for p in sorted(d.glob("*.gguf"))}

    # HF-convention weights under GGUF names (no permutation; rotate-half rope).
    hfw = {}
    for name in expected_tensors(spec):
        src = hf_name(name)
        if src is not None:
            hfw[name] = st[src]
    factors = mk.llama3_rope_factors(spec) if spec["rope_scaling"] is not None else None
    gguf_interleaved = spec["arch"] == "llama"

    ref_path = d / "reference.json"
    if ref_path.exists():
        ref = json.loads(ref_path.read_text(encoding="utf-8"))
        blob = np.fromfile(d / ref["logits_file"], dtype="<f4")
        prompts = [(p["name"], p["token_ids"], p) for p in ref["prompts"]]
    else:
        print("  no reference.json: comparing the two numpy paths only")
        from tokenizers import Tokenizer

        tk = Tokenizer.from_file(str(d / "tokenizer.json"))
        prompts = [(n, tk.encode(mk.render_prompt(k, t)).ids, None) for n, k, t in mk.PROMPTS]

    for pname, ids, rec in prompts:
        hf_logits = forward(hfw, spec, ids, False, factors)
        msg = f"  {pname}: T={len(ids)}"
        for gname, gw in ggufs.items():
            gl = forward(gw, spec, ids, gguf_interleaved, factors)
            e = rel_err(gl, hf_logits)
            msg += f" | {gname} vs numpy-HF rel {e:.2e}"
            if "q8_0" not in gname:
                assert e < 1e-9, f"{gname}/{pname}: GGUF path differs from HF path ({e})"
        if rec is not None:
            T, V = rec["logits_shape"]
            o = rec["logits_offset"]
            torch_logits = blob[o : o + T * V].reshape(T, V).astype(np.float64)
            e = rel_err(hf_logits, torch_logits)
            msg += f" | numpy vs transformers rel {e:.2e}"
            assert e < REL_TOL, f"{pname}: numpy forward differs from transformers ({e})"
            g = greedy(hfw, spec, ids, False, factors, len(rec["greedy_tokens"]))
            assert g == rec["greedy_tokens"], f"{pname}: greedy {g} != {rec['greedy_tokens']}"
            msg += " | greedy equal"
        else:
            g = greedy(hfw, spec, ids, False, factors, mk.GREEDY_NEW_TOKENS)
            msg += f" | greedy {g}"
        for gname, gw in ggufs.items():
            if "q8_0" in gname and rec is not None:
                gq = greedy(gw, spec, ids, gguf_interleaved, factors, len(rec["greedy_tokens"]))
                same = sum(a == b for a, b in zip(gq, rec["greedy_tokens"]))
                msg += f" | {gname} greedy {same}/{len(gq)} equal"
        print(msg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent.parent / "testdata")
    args = ap.parse_args()
    for name, spec in mk.FIXTURES.items():
        check_fixture(args.dir / name, spec)
    print("all checks passed")


if __name__ == "__main__":
    main()
