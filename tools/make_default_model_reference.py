#!/usr/bin/env python3
"""Greedy float32 references for the default model (SmolLM2-135M-Instruct Q4_1 GGUF).

    python3 tools/make_default_model_reference.py [--gguf PATH] [--out testdata/default-model]

transformers loads the GGUF file itself (dequantizing every tensor to float32, undoing
llama's Q/K permutation), so the reference and Ingot multiply the same weight values: any
difference is arithmetic (Ingot's exact mode, its 8-bit mode), not quantization. For each
of 16 chat prompts (rendered with the model's own chat template, add_generation_prompt) the
script runs a greedy loop of 32 tokens over a KV cache in float32 on the CPU, never stopping
at EOS, and records at every step the chosen token, the top-5 tokens with their logprobs
and the margin between the first two logits. The loop is checked against one cache-free
forward over prompt + continuation (same argmax everywhere).

Writes reference.json (token ids, so the Rust test needs no tokenizer or template):
  { "model_file", "model_sha256", "dtype": "float32", "new_tokens": 32, "top_k": 5,
    "versions": {"torch", "transformers"},
    "prompts": [ { "messages", "text", "token_ids": [T], "greedy_tokens": [32],
                   "top_logprobs": [[[id, logprob] x 5] x 32], "min_margin", "greedy_text" } ] }

Needs torch, transformers, gguf (installed here); about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

NEW_TOKENS = 32
TOP_K = 5
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Short, varied chat turns of the kind a local assistant gets.
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
    "Give me three tips for staying focused while studying.",
    "What is 17 times 23?",
    "Translate 'good morning' into Spanish.",
    "Write a Python function that reverses a string.",
    "Why is the sky blue?",
    "Summarize the plot of Romeo and Juliet in two sentences.",
    "List the planets of the solar system.",
    "What does a compiler do?",
    "Suggest a name for a friendly robot.",
    "How do I boil an egg?",
    "What is the difference between weather and climate?",
    "Tell me a fun fact about octopuses.",
    "Describe a cat to someone who has never seen one.",
]


def default_gguf() -> Path:
    base = os.environ.get("INGOT_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ingot", "models"
    )
    return Path(base) / FILE


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@torch.no_grad()
def greedy(model, ids: list[int]):
    """32 greedy steps over a KV cache: tokens, top-5 (id, logprob) per step, min margin."""
    out = model(torch.tensor([ids]), use_cache=True)
    past, logits = out.past_key_values, out.logits[0, -1]
    tokens, tops, margin = [], [], float("inf")
    for _ in range(NEW_TOKENS):
        lp = torch.log_softmax(logits.double(), dim=-1)
        top = torch.topk(logits, TOP_K)
        margin = min(margin, float(top.values[0] - top.values[1]))
        tok = int(top.indices[0])
        tokens.append(tok)
        tops.append([[int(i), round(float(lp[i]), 6)] for i in top.indices])
        out = model(torch.tensor([[tok]]), past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[0, -1]
    # Check: one cache-free forward over prompt + continuation gives the same argmax.
    full = model(torch.tensor([ids + tokens[:-1]]), use_cache=False).logits[0]
    again = full[len(ids) - 1 :].argmax(-1).tolist()
    assert again == tokens, f"cache-free argmax differs: {again} vs {tokens}"
    return tokens, tops, margin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", type=Path, default=default_gguf())
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent.parent / "testdata" / "default-model"
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    d, f = str(args.gguf.parent), args.gguf.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    prompts = []
    for text in PROMPTS:
        messages = [{"role": "user", "content": text}]
        rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok(rendered, add_special_tokens=False)["input_ids"]
        tokens, tops, margin = greedy(model, ids)
        prompts.append(
            {
                "messages": messages,
                "text": rendered,
                "token_ids": ids,
                "greedy_tokens": tokens,
                "top_logprobs": tops,
                "min_margin": margin,
                "greedy_text": tok.decode(tokens),
            }
        )
        print(f"{len(ids):3} tokens, margin {margin:.4f}: {text!r} -> {tok.decode(tokens)!r}")
    ref = {
        "model_file": f,
        "model_sha256": sha256(args.gguf),
        "dtype": "float32",
        "new_tokens": NEW_TOKENS,
        "top_k": TOP_K,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "prompts": prompts,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    # One prompt per line: small, and a diff shows which prompts changed.
    head = {k: v for k, v in ref.items() if k != "prompts"}
    lines = [json.dumps(head)[:-1] + ', "prompts": [']
    lines += [json.dumps(p, separators=(",", ":")) + "," for p in prompts]
    lines[-1] = lines[-1][:-1]
    lines.append("]}")
    (args.out / "reference.json").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'reference.json'}")


if __name__ == "__main__":
    main()
