#!/usr/bin/env python3
"""Tiny random-weight mixture-of-experts fixtures and their transformers float32 references.

Built with make_tiny_models.py's machinery (corpus, tokenizer trainer, per-tensor seeds,
reference stage); every fixture is hidden 64, 2 layers, 4 query / 2 KV heads of 16, experts
of width 24 (2I = 48 differs from H = 64, so a fused [E, 2I, H] expert parameter can never be
mistaken for its transpose), all layers sparse:

  tiny-mixtral/   MixtralForCausalLM: 4 experts, top-2, renormalised; HF names
                  block_sparse_moe.{gate, experts.N.w1/w3/w2}. GGUF arch "llama" with
                  llama.expert_count (as llama.cpp writes Mixtral), Q/K rows permuted.
  tiny-qwen2moe/  Qwen2MoeForCausalLM: 8 experts, top-2, not renormalised, Q/K/V biases, a
                  shared expert (width 40) behind a sigmoid gate. GGUF arch "qwen2moe" with
                  ffn_*_shexp and the gate ffn_gate_inp_shexp stored as a vector [H].
  tiny-qwen3moe/  Qwen3MoeForCausalLM: 8 experts, top-2, renormalised, QK-norm per head.
                  GGUF "qwen3moe" in F32, and in Q8_0 (experts as Q8_0 blocks; the router
                  ffn_gate_inp kept F32, as llama.cpp's quantizer keeps it).
  tiny-olmoe/     OlmoeForCausalLM: 8 experts, top-2, not renormalised, QK-norm over all heads
                  (q_norm [Hq * D], k_norm [Hk * D]). GGUF arch "olmoe".

Router weights are drawn wide (std 1) so each token's k-th and (k+1)-th router logits stand
apart; the reference stage records the smallest such gap over every token, layer and prompt
(`extra.min_route_margin`), the margin any implementation's rounding must stay under for it to
pick the same experts. Expert ties are tested at the verb level (crates/testkit conformance).

The reference stage builds each model from its config (no downloads) and loads the HF
directory's weights; transformers 5 keeps experts fused ([E, 2I, H] gate_up_proj, [E, H, I]
down_proj), which `load_model` assembles from the per-expert tensors when from_pretrained does
not map them itself, and checks every parameter against the files either way.

Usage:  python3 tools/make_tiny_moe.py [build|reference|all] [--only NAME] --out testdata
(`build` needs numpy, tokenizers, safetensors, gguf; `reference` torch and transformers.)
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

import make_tiny_models as mk

H, LAYERS, HEADS, KV_HEADS, D = 64, 2, 4, 2, 16
I = 24  # expert width
SHARED = 40  # Qwen2-MoE's shared expert width


def normal(spec: dict, name: str, shape, std: float, mean: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(mk.tensor_seed(spec["seed"], name))
    return (mean + std * rng.standard_normal(shape)).astype(np.float32)


def block_names(spec: dict) -> tuple[str, str, str, str]:
    """HF (block, gate, up, down) names of the family."""
    if spec["family"] == "mixtral":
        return "block_sparse_moe", "w1", "w3", "w2"
    return "mlp", "gate_proj", "up_proj", "down_proj"


def moe_weights(spec: dict) -> dict[str, np.ndarray]:
    w = mk.make_weights(spec)
    E = spec["experts"]
    block, gate, up, down = block_names(spec)
    for n in range(spec["layers"]):
        p = f"model.layers.{n}."
        for part in ("gate_proj", "up_proj", "down_proj"):
            del w[f"{p}mlp.{part}.weight"]
        name = f"{p}{block}.gate.weight"
        w[name] = normal(spec, name, (E, H), spec["std_router"])
        for e in range(E):
            for part, shape in ((gate, (I, H)), (up, (I, H)), (down, (H, I))):
                name = f"{p}{block}.experts.{e}.{part}.weight"
                w[name] = normal(spec, name, shape, spec["std_linear"])
        if spec["family"] == "qwen2moe":
            for part, shape in (("gate_proj", (SHARED, H)), ("up_proj", (SHARED, H)), ("down_proj", (H, SHARED))):
                name = f"{p}mlp.shared_expert.{part}.weight"
                w[name] = normal(spec, name, shape, spec["std_linear"])
            name = f"{p}mlp.shared_expert_gate.weight"
            w[name] = normal(spec, name, (1, H), 0.5)
        if spec["family"] == "qwen3moe":
            for norm in ("q_norm", "k_norm"):
                name = f"{p}self_attn.{norm}.weight"
                w[name] = normal(spec, name, (D,), mk.STD_NORM, 1.0)
        if spec["family"] == "olmoe":
            for norm, width in (("q_norm", HEADS * D), ("k_norm", KV_HEADS * D)):
                name = f"{p}self_attn.{norm}.weight"
                w[name] = normal(spec, name, (width,), mk.STD_NORM, 1.0)
    return w


def moe_config(spec: dict, ids: dict) -> dict:
    cfg = {
        "architectures": [spec["hf_class"]],
        "model_type": spec["model_type"],
        "vocab_size": spec["vocab_size"],
        "hidden_size": H,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": D,
        "hidden_act": "silu",
        "max_position_embeddings": spec["max_pos"],
        "rms_norm_eps": spec["eps"],
        "rope_theta": spec["rope_theta"],
        "rope_scaling": None,
        "tie_word_embeddings": spec["tied"],
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["end"],
        "initializer_range": 0.02,
        "attention_dropout": 0.0,
        "use_cache": True,
        "torch_dtype": "float32",
        "num_experts_per_tok": spec["top_k"],
        "output_router_logits": False,
        "router_aux_loss_coef": 0.0,
    }
    f = spec["family"]
    if f == "mixtral":
        cfg.update(intermediate_size=I, num_local_experts=spec["experts"], sliding_window=None,
                   router_jitter_noise=0.0)
    else:
        cfg.update(num_experts=spec["experts"], norm_topk_prob=spec["renormalize"])
    if f in ("qwen2moe", "qwen3moe"):
        cfg.update(intermediate_size=96, moe_intermediate_size=I, decoder_sparse_step=1,
                   mlp_only_layers=[], use_sliding_window=False, sliding_window=None,
                   max_window_layers=LAYERS)
    if f == "qwen2moe":
        cfg.update(shared_expert_intermediate_size=SHARED, qkv_bias=True)
    if f == "qwen3moe":
        cfg.update(attention_bias=False)
    if f == "olmoe":
        cfg.update(intermediate_size=I, clip_qkv=None, attention_bias=False)
        del cfg["head_dim"]
    return cfg


def moe_gguf_tensors(spec: dict, w: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """make_tiny_models' tensors (attention, norms, embeddings, Q/K permutation for "llama")
    without the dense MLP, plus llama.cpp's MoE tensors: ffn_gate_inp [E, H], the expert stacks
    ffn_{gate,up,down}_exps [E, N, K] and Qwen2-MoE's ffn_*_shexp and ffn_gate_inp_shexp [H]."""
    E = spec["experts"]
    block, gate, up, down = block_names(spec)
    full = dict(w)
    for n in range(spec["layers"]):  # placeholders for the dense MLP make_tiny_models expects
        for part in ("gate_proj", "up_proj", "down_proj"):
            full[f"model.layers.{n}.mlp.{part}.weight"] = np.zeros((1, 1), np.float32)
    out = [(name, t) for name, t in mk.gguf_tensors(spec, full)
           if not re.search(r"\.ffn_(gate|up|down)\.weight$", name)]
    for n in range(spec["layers"]):
        p, b = f"model.layers.{n}.{block}.", f"blk.{n}."
        out.append((b + "ffn_gate_inp.weight", w[p + "gate.weight"]))
        for part, gg in ((gate, "gate"), (up, "up"), (down, "down")):
            stack = np.stack([w[f"{p}experts.{e}.{part}.weight"] for e in range(E)])
            out.append((f"{b}ffn_{gg}_exps.weight", stack))
        if spec["family"] == "qwen2moe":
            s = f"model.layers.{n}.mlp.shared_expert"
            for part, gg in (("gate_proj", "gate"), ("up_proj", "up"), ("down_proj", "down")):
                out.append((f"{b}ffn_{gg}_shexp.weight", w[f"{s}.{part}.weight"]))
            out.append((b + "ffn_gate_inp_shexp.weight", w[f"{s}_gate.weight"].reshape(H)))
    return out


def moe_gguf_meta(writer, spec: dict) -> None:
    arch = spec["arch"]
    writer.add_uint32(f"{arch}.expert_count", spec["experts"])
    writer.add_uint32(f"{arch}.expert_used_count", spec["top_k"])
    if spec["family"] in ("qwen2moe", "qwen3moe"):
        writer.add_uint32(f"{arch}.expert_feed_forward_length", I)
    if spec["family"] == "qwen2moe":
        writer.add_uint32(f"{arch}.expert_shared_feed_forward_length", SHARED)


# ---- reference stage (torch) ---------------------------------------------------------------


def expected_state(model, spec: dict, w: dict[str, np.ndarray]) -> dict:
    """Each parameter (not buffer) of `model` as the HF files define it: by name, or, for transformers 5's
    fused experts ([E, 2I, H] gate_up_proj, [E, H, I] down_proj) and renamed Mixtral blocks,
    assembled from the per-expert tensors. Raises on a parameter it cannot place."""
    import torch

    E = spec["experts"]
    block, gate, up, down = block_names(spec)
    out, unknown = {}, []
    for key, param in model.named_parameters():
        shape = tuple(param.shape)
        m = re.match(r"model\.layers\.(\d+)\.(mlp|block_sparse_moe)\.(.+)$", key)
        src = None
        if key in w:
            src = w[key]
        elif m:
            p = f"model.layers.{m.group(1)}.{block}."
            tail = m.group(3)
            per = lambda part: [w[f"{p}experts.{e}.{part}.weight"] for e in range(E)]
            if tail in ("gate.weight", "router.weight", "gate.layer.weight"):
                src = w[p + "gate.weight"]
            elif tail == "experts.gate_up_proj":
                src = np.stack([np.concatenate([g, u]) for g, u in zip(per(gate), per(up))])
            elif tail == "experts.down_proj":
                src = np.stack(per(down))
            elif f"{p}{tail}" in w:
                src = w[f"{p}{tail}"]
            if src is not None and src.shape != shape and src.ndim == 3:
                src = src.transpose(0, 2, 1)  # a fused layout stored [E, K, N]
        if src is None or tuple(src.shape) != shape:
            unknown.append(f"{key} {shape}")
            continue
        out[key] = torch.from_numpy(np.ascontiguousarray(src))
    if unknown:
        raise SystemExit(f"{spec['hf_class']}: cannot place parameters: {unknown}")
    return out


def load_model(d: Path, spec: dict):
    """The model of `d`: from_pretrained when it maps every tensor itself, else built from the
    config with the parameters assembled here; checked against the files either way."""
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    w = load_file(str(d / "model.safetensors"))
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            str(d), dtype=torch.float32, output_loading_info=True
        )
        clean = not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    except Exception as e:  # noqa: BLE001 - any failure falls back to assembling
        model, info, clean = None, f"{type(e).__name__}: {e}"[:300], False
    if clean:
        try:
            want = expected_state(model, spec, w)
        except SystemExit as e:  # from_pretrained mapped every tensor; trust it
            print(f"{d.name}: from_pretrained loaded cleanly; not cross-checked: {e}")
            spec["_loaded_by"] = "from_pretrained (not cross-checked)"
            return model
        got = model.state_dict()
        bad = [k for k, v in want.items() if not torch.equal(got[k], v)]
        if not bad:
            print(f"{d.name}: from_pretrained loaded every tensor as the files hold it")
            spec["_loaded_by"] = "from_pretrained, every parameter equal to the files"
            return model
        print(f"{d.name}: from_pretrained differs from the files on {bad[:4]}; assembling")
    else:
        print(f"{d.name}: from_pretrained loading info {info}; assembling")
    cfg = AutoConfig.from_pretrained(str(d))
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    result = model.load_state_dict(expected_state(model, spec, w), strict=False)
    buffers = {name for name, _ in model.named_buffers()}
    if result.unexpected_keys or set(result.missing_keys) - buffers:
        raise SystemExit(f"{d.name}: assembling left {result}")
    spec["_loaded_by"] = "from_config, parameters assembled from the files"
    return model


def route_margins(model, spec: dict, encs: list[list[int]]) -> dict:
    """The smallest gap between each token's k-th and (k+1)-th router logit (router input =
    the output of post_attention_layernorm), over all layers and prompts."""
    import torch

    k = spec["top_k"]
    from safetensors.numpy import load_file

    w = load_file(str(spec["_dir"] / "model.safetensors"))
    block = block_names(spec)[0]
    captured: dict[int, np.ndarray] = {}
    hooks = []
    for n, layer in enumerate(model.model.layers):
        def hook(_m, _i, out, n=n):
            captured[n] = out[0].detach().float().numpy()
        hooks.append(layer.post_attention_layernorm.register_forward_hook(hook))
    per_prompt, chosen = [], []
    for ids in encs:
        with torch.no_grad():
            model(input_ids=torch.tensor([ids]))
        gaps = []
        for n, x in captured.items():
            logits = x @ w[f"model.layers.{n}.{block}.gate.weight"].T  # [T, E]
            top = np.sort(logits, axis=1)[:, ::-1]
            gaps.append(float((top[:, k - 1] - top[:, k]).min()))
            chosen.append(np.argsort(-logits, axis=1, kind="stable")[:, :k])
        per_prompt.append(min(gaps))
    for h in hooks:
        h.remove()
    used = np.unique(np.concatenate([c.ravel() for c in chosen]))
    return {
        "loaded_by": spec.get("_loaded_by"),
        "min_route_margin": min(per_prompt),
        "min_route_margin_per_prompt": per_prompt,
        "experts_used": [int(e) for e in used],
    }


def reference_extra(model, spec: dict, encs: list[list[int]]) -> dict:
    return route_margins(model, spec, encs)


# ---- the fixtures --------------------------------------------------------------------------

COMMON = dict(
    split=mk.LLAMA_BPE_SPLIT,
    gguf_pre="llama-bpe",
    nfc=False,
    max_pos=512,
    rope_scaling=None,
    qkv_bias=False,
    q8_0=False,
    hidden=H,
    intermediate=I,
    layers=LAYERS,
    heads=HEADS,
    kv_heads=KV_HEADS,
    head_dim=D,
    eps=1e-6,
    rope_theta=1000000.0,
    tied=False,
    std_embed=1.0,
    std_linear=0.25,
    std_router=1.0,
    top_k=2,
    weights=moe_weights,
    config=moe_config,
    gguf_tensors=moe_gguf_tensors,
    gguf_meta=moe_gguf_meta,
    load_model=load_model,
    reference_extra=reference_extra,
)

FIXTURES = {
    "tiny-mixtral": dict(
        COMMON,
        family="mixtral",
        arch="llama",
        hf_class="MixtralForCausalLM",
        model_type="mixtral",
        vocab_size=384,
        experts=4,
        renormalize=True,
        eps=1e-5,
        add_bos=True,
        seed=6001,
    ),
    "tiny-qwen2moe": dict(
        COMMON,
        family="qwen2moe",
        arch="qwen2moe",
        hf_class="Qwen2MoeForCausalLM",
        model_type="qwen2_moe",
        split=mk.QWEN2_SPLIT,
        gguf_pre="qwen2",
        nfc=True,
        vocab_size=416,
        experts=8,
        renormalize=False,
        qkv_bias=True,
        add_bos=False,
        seed=6002,
    ),
    "tiny-qwen3moe": dict(
        COMMON,
        family="qwen3moe",
        arch="qwen3moe",
        hf_class="Qwen3MoeForCausalLM",
        model_type="qwen3_moe",
        split=mk.QWEN2_SPLIT,
        gguf_pre="qwen2",
        nfc=True,
        vocab_size=400,
        experts=8,
        renormalize=True,
        add_bos=False,
        seed=6003,
        q8_0=True,
        q8_0_keep_f32=("ffn_gate_inp",),
    ),
    "tiny-olmoe": dict(
        COMMON,
        family="olmoe",
        arch="olmoe",
        hf_class="OlmoeForCausalLM",
        model_type="olmoe",
        vocab_size=392,
        experts=8,
        renormalize=False,
        add_bos=True,
        seed=6004,
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", nargs="?", default="all", choices=["build", "reference", "all"])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "testdata")
    ap.add_argument("--only", help="one fixture name")
    args = ap.parse_args()
    fixtures = {k: v for k, v in FIXTURES.items() if args.only in (None, k)}
    for name, spec in fixtures.items():
        spec["_dir"] = args.out / name
    if args.stage in ("build", "all"):
        mk.build(args.out, fixtures)
    if args.stage in ("reference", "all"):
        mk.reference(args.out, fixtures)


if __name__ == "__main__":
    main()
