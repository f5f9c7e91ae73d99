#!/usr/bin/env python3
"""Tiny random-weight fixtures of the families added after Llama/Qwen2, and their references.

Built with make_tiny_models.py's machinery (same corpus, tokenizer trainer, seeds, reference
stage); each fixture brings what sets its family apart:

  tiny-qwen3/   Qwen3ForCausalLM: QK-norm (RMSNorm of each head of q and k before RoPE), no
                QKV bias, untied head. GGUF arch "qwen3" (NeoX rope, attn_q_norm/attn_k_norm).
  tiny-gemma3/  Gemma3ForCausalLM (text): 6 layers, 5 sliding-window (window 8, RoPE base 1e4)
                then 1 global (RoPE base 1e6), head_dim 24 != hidden/heads, one KV head,
                GELU-tanh gated MLP, RMSNorm as x * (1 + w) before and after attention and MLP,
                QK-norm, embeddings scaled by sqrt(hidden), tied head, Gemma's chat format.
                GGUF arch "gemma3" as llama.cpp's converter writes it: norms hold 1 + w, no
                sliding pattern or local base in the metadata (llama.cpp implies 6 and 1e4),
                which is why the fixture has exactly that layout.
  tiny-phi3/    Phi3ForCausalLM: fused qkv_proj and gate_up_proj, partial rotary (half of each
                head), untied head. GGUF arch "phi3": attn_qkv and ffn_up hold the fused matrices.

Usage:  python3 tools/make_tiny_families.py [build|reference|all] --out testdata
(`build` needs numpy, tokenizers, safetensors, gguf; `reference` torch and transformers.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import make_tiny_models as mk

# Gemma's turn format, written for these fixtures: a system message becomes the head of the
# first user turn, the assistant's role is called "model", contents are trimmed.
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set head = messages[0]['content'] | trim + '\\n\\n' %}{% set turns = messages[1:] %}"
    "{% else %}{% set head = '' %}{% set turns = messages %}{% endif %}"
    "{% for m in turns %}"
    "{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + (head if loop.first else '') + (m['content'] | trim)"
    " + '<end_of_turn>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

GEMMA_CHAT = dict(
    specials=["<bos>", "<start_of_turn>", "<end_of_turn>"],
    template=GEMMA_TEMPLATE,
    user_turn="<bos><start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n",
    template_bos=True,
)


def normal(spec: dict, name: str, shape, std: float, mean: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(mk.tensor_seed(spec["seed"], name))
    return (mean + std * rng.standard_normal(shape)).astype(np.float32)


# ---- Qwen3 ---------------------------------------------------------------------------------


def qwen3_weights(spec: dict) -> dict[str, np.ndarray]:
    w = mk.make_weights(spec)
    for n in range(spec["layers"]):
        for norm in ("q_norm", "k_norm"):
            name = f"model.layers.{n}.self_attn.{norm}.weight"
            w[name] = normal(spec, name, (spec["head_dim"],), mk.STD_NORM, 1.0)
    return w


def qwen3_config(spec: dict, ids: dict) -> dict:
    cfg = mk.hf_config(spec, ids)
    cfg.update(attention_bias=False)
    return cfg


# ---- Gemma 3 -------------------------------------------------------------------------------


def gemma3_layer_types(spec: dict) -> list[str]:
    return ["full_attention" if (n + 1) % 6 == 0 else "sliding_attention" for n in range(spec["layers"])]


def gemma3_weights(spec: dict) -> dict[str, np.ndarray]:
    """Norm weights are Gemma's w of x * (1 + w): drawn around 0."""
    H, I, D = spec["hidden"], spec["intermediate"], spec["head_dim"]
    Hq, Hk, V = spec["heads"], spec["kv_heads"], spec["vocab_size"]
    std = spec["std_linear"]
    w: dict[str, np.ndarray] = {}

    def put(name, shape, s, mean=0.0):
        w[name] = normal(spec, name, shape, s, mean)

    put("model.embed_tokens.weight", (V, H), spec["std_embed"])
    for n in range(spec["layers"]):
        p = f"model.layers.{n}."
        for norm in ("input_layernorm", "pre_feedforward_layernorm"):
            put(f"{p}{norm}.weight", (H,), spec["std_norm"])
        # Post-norms around 1 + post_norm_mean: branch outputs outweigh the embedding in the
        # residual stream, else the tied head mostly echoes the input token.
        for norm in ("post_attention_layernorm", "post_feedforward_layernorm"):
            put(f"{p}{norm}.weight", (H,), spec["std_norm"], spec["post_norm_mean"])
        for proj, rows in (("q", Hq * D), ("k", Hk * D), ("v", Hk * D)):
            put(f"{p}self_attn.{proj}_proj.weight", (rows, H), std)
        put(f"{p}self_attn.q_norm.weight", (D,), spec["std_norm"])
        put(f"{p}self_attn.k_norm.weight", (D,), spec["std_norm"])
        put(f"{p}self_attn.o_proj.weight", (H, Hq * D), std)
        put(f"{p}mlp.gate_proj.weight", (I, H), std)
        put(f"{p}mlp.up_proj.weight", (I, H), std)
        put(f"{p}mlp.down_proj.weight", (H, I), std)
    put("model.norm.weight", (H,), spec["std_norm"])
    return w


def gemma3_config(spec: dict, ids: dict) -> dict:
    """In the form the Hub's Gemma 3 configs use (transformers 4.5x), which transformers 5
    still reads."""
    return {
        "architectures": [spec["hf_class"]],
        "model_type": "gemma3_text",
        "vocab_size": spec["vocab_size"],
        "hidden_size": spec["hidden"],
        "intermediate_size": spec["intermediate"],
        "num_hidden_layers": spec["layers"],
        "num_attention_heads": spec["heads"],
        "num_key_value_heads": spec["kv_heads"],
        "head_dim": spec["head_dim"],
        "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": spec["max_pos"],
        "rms_norm_eps": spec["eps"],
        "rope_theta": spec["rope_theta"],
        "rope_local_base_freq": spec["rope_local_theta"],
        "rope_scaling": None,
        "query_pre_attn_scalar": spec["query_pre_attn_scalar"],
        "sliding_window": spec["sliding_window"],
        "layer_types": gemma3_layer_types(spec),
        "final_logit_softcapping": None,
        "attn_logit_softcapping": None,
        "attention_bias": False,
        "tie_word_embeddings": True,
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["end"],
        "pad_token_id": ids["bos"],
        "initializer_range": 0.02,
        "attention_dropout": 0.0,
        "use_cache": True,
        "torch_dtype": "float32",
    }


def gemma3_gguf_tensors(spec: dict, w: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """llama.cpp's names; every norm stored as 1 + w (convert_hf_to_gguf.py adds the 1)."""
    out = [("token_embd.weight", w["model.embed_tokens.weight"])]
    names = [
        ("input_layernorm", "attn_norm"),
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.q_norm", "attn_q_norm"),
        ("self_attn.k_norm", "attn_k_norm"),
        ("self_attn.o_proj", "attn_output"),
        ("post_attention_layernorm", "post_attention_norm"),
        ("pre_feedforward_layernorm", "ffn_norm"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
        ("post_feedforward_layernorm", "post_ffw_norm"),
    ]
    for n in range(spec["layers"]):
        for hf, gg in names:
            t = w[f"model.layers.{n}.{hf}.weight"]
            out.append((f"blk.{n}.{gg}.weight", t + 1.0 if hf.endswith("norm") else t))
    out.append(("output_norm.weight", w["model.norm.weight"] + 1.0))
    return out


def gemma3_gguf_meta(writer, spec: dict) -> None:
    writer.add_sliding_window(spec["sliding_window"])


# ---- Phi-3 ---------------------------------------------------------------------------------


def phi3_weights(spec: dict) -> dict[str, np.ndarray]:
    H, I, D = spec["hidden"], spec["intermediate"], spec["head_dim"]
    Hq, Hk, V = spec["heads"], spec["kv_heads"], spec["vocab_size"]
    std = spec["std_linear"]
    w: dict[str, np.ndarray] = {}

    def put(name, shape, s, mean=0.0):
        w[name] = normal(spec, name, shape, s, mean)

    put("model.embed_tokens.weight", (V, H), spec["std_embed"])
    for n in range(spec["layers"]):
        p = f"model.layers.{n}."
        put(p + "input_layernorm.weight", (H,), mk.STD_NORM, 1.0)
        put(p + "self_attn.qkv_proj.weight", ((Hq + 2 * Hk) * D, H), std)
        put(p + "self_attn.o_proj.weight", (H, Hq * D), std)
        put(p + "post_attention_layernorm.weight", (H,), mk.STD_NORM, 1.0)
        put(p + "mlp.gate_up_proj.weight", (2 * I, H), std)
        put(p + "mlp.down_proj.weight", (H, I), std)
    put("model.norm.weight", (H,), mk.STD_NORM, 1.0)
    put("lm_head.weight", (V, H), mk.STD_OUTPUT)
    return w


def phi3_config(spec: dict, ids: dict) -> dict:
    return {
        "architectures": [spec["hf_class"]],
        "model_type": "phi3",
        "vocab_size": spec["vocab_size"],
        "hidden_size": spec["hidden"],
        "intermediate_size": spec["intermediate"],
        "num_hidden_layers": spec["layers"],
        "num_attention_heads": spec["heads"],
        "num_key_value_heads": spec["kv_heads"],
        "hidden_act": "silu",
        "max_position_embeddings": spec["max_pos"],
        "original_max_position_embeddings": spec["max_pos"],
        "rms_norm_eps": spec["eps"],
        "rope_theta": spec["rope_theta"],
        "rope_scaling": None,
        "partial_rotary_factor": spec["rotary_dim"] / spec["head_dim"],
        "sliding_window": None,
        "tie_word_embeddings": False,
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["end"],
        "pad_token_id": ids["bos"],
        "initializer_range": 0.02,
        "attention_dropout": 0.0,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "use_cache": True,
        "torch_dtype": "float32",
    }


def phi3_gguf_tensors(spec: dict, w: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """The fused matrices stay fused: qkv_proj -> attn_qkv, gate_up_proj -> ffn_up."""
    out = [("token_embd.weight", w["model.embed_tokens.weight"])]
    names = [
        ("input_layernorm", "attn_norm"),
        ("self_attn.qkv_proj", "attn_qkv"),
        ("self_attn.o_proj", "attn_output"),
        ("post_attention_layernorm", "ffn_norm"),
        ("mlp.gate_up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
    ]
    for n in range(spec["layers"]):
        for hf, gg in names:
            out.append((f"blk.{n}.{gg}.weight", w[f"model.layers.{n}.{hf}.weight"]))
    out.append(("output_norm.weight", w["model.norm.weight"]))
    out.append(("output.weight", w["lm_head.weight"]))
    return out


# ---- the fixtures --------------------------------------------------------------------------

COMMON = dict(
    split=mk.LLAMA_BPE_SPLIT,
    gguf_pre="llama-bpe",
    nfc=False,
    max_pos=512,
    rope_scaling=None,
    qkv_bias=False,
    q8_0=False,
)

FIXTURES = {
    "tiny-qwen3": dict(
        COMMON,
        arch="qwen3",
        hf_class="Qwen3ForCausalLM",
        split=mk.QWEN2_SPLIT,
        gguf_pre="qwen2",
        nfc=True,
        vocab_size=416,
        hidden=64,
        intermediate=128,
        layers=2,
        heads=4,
        kv_heads=2,
        head_dim=16,
        eps=1e-6,
        rope_theta=1000000.0,
        tied=False,
        add_bos=False,
        seed=3005,
        std_embed=1.0,
        std_linear=0.25,
        weights=qwen3_weights,
        config=qwen3_config,
    ),
    "tiny-gemma3": dict(
        COMMON,
        arch="gemma3",
        hf_class="Gemma3ForCausalLM",
        chat=GEMMA_CHAT,
        vocab_size=400,
        hidden=32,
        intermediate=64,
        layers=6,
        heads=2,
        kv_heads=1,
        head_dim=24,
        query_pre_attn_scalar=24,
        sliding_window=8,
        eps=1e-6,
        rope_theta=1000000.0,
        rope_local_theta=10000.0,
        tied=True,
        add_bos=True,
        seed=4006,
        std_embed=0.5,
        std_linear=0.5,
        std_norm=0.3,
        post_norm_mean=6.0,
        weights=gemma3_weights,
        config=gemma3_config,
        gguf_tensors=gemma3_gguf_tensors,
        gguf_meta=gemma3_gguf_meta,
    ),
    "tiny-phi3": dict(
        COMMON,
        arch="phi3",
        hf_class="Phi3ForCausalLM",
        vocab_size=392,
        hidden=64,
        intermediate=96,
        layers=2,
        heads=4,
        kv_heads=2,
        head_dim=16,
        rotary_dim=8,
        eps=1e-5,
        rope_theta=10000.0,
        tied=False,
        add_bos=True,
        seed=5005,
        std_embed=1.0,
        std_linear=0.2,
        weights=phi3_weights,
        config=phi3_config,
        gguf_tensors=phi3_gguf_tensors,
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", nargs="?", default="all", choices=["build", "reference", "all"])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "testdata")
    ap.add_argument("--only", help="one fixture name")
    args = ap.parse_args()
    fixtures = {k: v for k, v in FIXTURES.items() if args.only in (None, k)}
    if args.stage in ("build", "all"):
        mk.build(args.out, fixtures)
    if args.stage in ("reference", "all"):
        mk.reference(args.out, fixtures)


if __name__ == "__main__":
    main()
