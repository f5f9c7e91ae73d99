"""The peer of bench/gpu_vs_transformers.sh: PyTorch + transformers in float16 on the same
GPU and the same shapes, generating the same batches as `ingot bench batched`.

For each config folder given: a model built from config.json alone (random weights, as
Ingot's `--load-format dummy`), float16, eager attention. Measures
  - prefill: one forward pass over 16 prompts of 512 tokens (tok/s),
  - decode at batch 1, 16 and 64: prompts of NPP tokens prefilled, then NTG single-token
    steps through the KV cache (greedy); decode tok/s = B * NTG / time of those steps.
Prints one JSON object per line (and a markdown table at the end) to stdout.

    python3 bench/gpu_transformers.py bench/models/qwen2-0.5b [more config dirs]

Environment (defaults in brackets): BENCH_DEVICE [cuda] (cpu: a test of the script),
BENCH_DTYPE [float16] (or bfloat16, float32), BENCH_NPP [128], BENCH_NTG [128],
BENCH_BATCHES [1,16,64], BENCH_PREFILL [16x512].
"""

import json
import os
import sys
import time

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

DEVICE = os.environ.get("BENCH_DEVICE", "cuda")
DTYPE = getattr(torch, os.environ.get("BENCH_DTYPE", "float16"))
NPP = int(os.environ.get("BENCH_NPP", "128"))
NTG = int(os.environ.get("BENCH_NTG", "128"))
BATCHES = [int(b) for b in os.environ.get("BENCH_BATCHES", "1,16,64").split(",")]
PREFILL = tuple(int(v) for v in os.environ.get("BENCH_PREFILL", "16x512").split("x"))


def sync_time():
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def build(config_dir):
    cfg = AutoConfig.from_pretrained(config_dir)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = AutoModelForCausalLM.from_config(cfg, dtype=DTYPE)
    return model.eval(), cfg


@torch.inference_mode()
def prefill_rate(model, vocab):
    b, n = PREFILL
    ids = torch.randint(100, vocab - 100, (b, n), device=DEVICE)
    for _ in range(2):
        model(input_ids=ids, use_cache=False)
    reps = 5
    t0 = sync_time()
    for _ in range(reps):
        model(input_ids=ids, use_cache=False)
    return b * n * reps / (sync_time() - t0)


@torch.inference_mode()
def decode_rate(model, vocab, batch):
    ids = torch.randint(100, vocab - 100, (batch, NPP), device=DEVICE)
    out = model(input_ids=ids, use_cache=True)
    past = out.past_key_values
    tok = out.logits[:, -1].argmax(-1, keepdim=True)
    t0 = sync_time()
    for _ in range(NTG):
        out = model(input_ids=tok, past_key_values=past, use_cache=True)
        past = out.past_key_values
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
    return batch * NTG / (sync_time() - t0)


def main():
    rows = []
    for config_dir in sys.argv[1:]:
        model, cfg = build(config_dir)
        row = {
            "config": config_dir,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if DEVICE == "cuda" else DEVICE,
            "dtype": str(DTYPE),
            "prefill_16x512_tok_s": prefill_rate(model, cfg.vocab_size),
        }
        decode_rate(model, cfg.vocab_size, 1)  # warm-up
        for b in BATCHES:
            row[f"decode_b{b}_tok_s"] = decode_rate(model, cfg.vocab_size, b)
        print(json.dumps(row), flush=True)
        rows.append(row)
        del model
        torch.cuda.empty_cache()
    print("\n| shapes | prefill tok/s | " + " | ".join(f"decode b{b}" for b in BATCHES) + " |")
    print("|---|---|" + "---|" * len(BATCHES))
    for r in rows:
        decode = " | ".join(f"{r[f'decode_b{b}_tok_s']:.1f}" for b in BATCHES)
        print(f"| {r['config']} | {r['prefill_16x512_tok_s']:.0f} | {decode} |")


if __name__ == "__main__":
    main()
