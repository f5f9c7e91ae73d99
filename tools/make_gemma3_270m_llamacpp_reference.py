#!/usr/bin/env python3
"""llama.cpp reference for the catalog model `gemma3-270m` (Gemma 3 270M base, Q4_K_M GGUF).

Writes testdata/gemma3-270m/llamacpp.json from llama.cpp's CPU build (the one
bench/cpu_vs_llamacpp.sh makes, with explicit instruction sets) on the very file Ingot loads.
The strings and prompts are read from testdata/gemma3-270m/reference.json (the transformers
reference), so both references cover the same inputs:

  - tokenizer: `llama-tokenize --ids` on each tokenizer string (BOS added as the GGUF says,
    special tokens parsed, as transformers does);
  - greedy: for each raw prompt (its ids as the transformers reference tokenized them), the
    greedy continuation from `llama-server`'s /completion (temperature 0, no EOS stop, prompt
    cache off) with `n_probs` 2, so each step's top-1 margin in nats (top-1 minus top-2
    log-probability, before sampling) comes with it.

Usage: python3 tools/make_gemma3_270m_llamacpp_reference.py \
         --gguf ~/.cache/ingot/models/gemma-3-270m-q4_k_m.gguf --llama-bin ~/.cache/ingot/llama.cpp/build/bin
Needs llama-tokenize and llama-server built (bench/cpu_vs_llamacpp.sh builds llama.cpp; add
`--target llama-tokenize`); standard library only; ~1 min.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

TESTDATA = Path(__file__).resolve().parent.parent / "testdata/gemma3-270m"


def tokenize(bin_dir: Path, gguf: Path, text: str) -> list[int]:
    out = subprocess.run(
        [str(bin_dir / "llama-tokenize"), "-m", str(gguf), "-p", text, "--ids", "--log-disable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # The ids are the last line, printed as a Python list.
    return json.loads(out.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def greedy(bin_dir: Path, gguf: Path, prompts: list[dict], n: int) -> list[dict]:
    port = free_port()
    server = subprocess.Popen(
        [str(bin_dir / "llama-server"), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
         "-c", "2048", "--parallel", "1", "-t", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(base + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit("llama-server did not come up")
        rows = []
        for p in prompts:
            r = post(base + "/completion", {
                "prompt": p["ids"], "n_predict": n, "temperature": 0, "ignore_eos": True,
                "cache_prompt": False, "n_probs": 2, "post_sampling_probs": False,
            })
            steps = r["completion_probabilities"]
            tokens = [s["id"] for s in steps]
            margins = []
            for s in steps:
                top = sorted((t["logprob"] for t in s["top_logprobs"]), reverse=True)
                assert s["top_logprobs"][0]["id"] == s["id"], "greedy token is not the top-1"
                margins.append(round(top[0] - top[1], 5))
            rows.append({"prompt": p["prompt"], "ids": p["ids"], "tokens": tokens, "margins": margins,
                         "text": r["content"]})
            print(f"{p['prompt']!r} -> {r['content']!r} min margin {min(margins):.3f}")
        return rows
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", type=Path, required=True)
    ap.add_argument("--llama-bin", type=Path, default=Path.home() / ".cache/ingot/llama.cpp/build/bin")
    args = ap.parse_args()
    hf = json.loads((TESTDATA / "reference.json").read_text(encoding="utf-8"))
    n = len(hf["greedy"][0]["tokens"])
    tokenizer_refs = [{"text": t["text"], "ids": tokenize(args.llama_bin, args.gguf, t["text"])}
                      for t in hf["tokenizer"]]
    same = sum(r["ids"] == t["ids"] for r, t in zip(tokenizer_refs, hf["tokenizer"]))
    print(f"llama-tokenize equals transformers on {same} of {len(tokenizer_refs)} strings")
    build = subprocess.run([str(args.llama_bin / "llama-server"), "--version"], capture_output=True,
                           text=True).stderr.strip().splitlines()
    (TESTDATA / "llamacpp.json").write_text(
        json.dumps(
            {
                "model": "gemma3-270m",
                "file": args.gguf.name,
                "reference": "llama.cpp CPU build (llama-tokenize, llama-server /completion)",
                "llama_cpp": " ".join(build),
                "greedy_note": "temperature 0, ignore_eos, n_probs 2 before sampling; margins are "
                               "top-1 minus top-2 log-prob (nats)",
                "tokenizer": tokenizer_refs,
                "greedy": greedy(args.llama_bin, args.gguf, hf["greedy"], n),
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
