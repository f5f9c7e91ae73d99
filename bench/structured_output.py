#!/usr/bin/env python3
"""Structured-output overhead: 16 concurrent requests constrained by a JSON schema against
the same 16 unconstrained, on one `ingot serve` (default model), and the host time spent
computing grammar masks per step (from /metrics). Prints markdown to stdout.

    python3 bench/structured_output.py [--backend cpu|gpu] [--concurrency 16] [--tokens 128]

Both runs generate exactly `--tokens` tokens per request, so their aggregate tok/s compare
like for like: the unconstrained requests ignore EOS, and the schema (a list of at least 64
short strings) cannot be complete before the token budget runs out. Each run is preceded by
a warm-up round (the first constrained request also builds the token trie) and repeated
`--rounds` times; the table shows the median round. Needs `httpx`; INGOT_BIN names the
binary (default target/release/ingot).
"""

import argparse
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SCHEMA = {
    "type": "object",
    "properties": {"notes": {"type": "array", "minItems": 64,
                             "items": {"type": "string", "maxLength": 12}}},
    "required": ["notes"],
    "additionalProperties": False,
}
PROMPTS = [f"Write note number {i} about the history of city number {i * 7}." for i in range(64)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(url, name):
    text = httpx.get(url + "/metrics", timeout=30).text
    m = re.search(rf"^ingot:{name}{{[^}}]*}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def run_round(url, n, tokens, constrained, salt):
    def one(i):
        body = {"prompt": PROMPTS[(i + salt) % len(PROMPTS)], "max_tokens": tokens,
                "temperature": 0.8, "seed": i + salt}
        if constrained:
            body["structured_outputs"] = {"json": SCHEMA}
        else:
            body["ignore_eos"] = True
        r = httpx.post(url + "/v1/completions", json=body, timeout=600)
        r.raise_for_status()
        return r.json()["usage"]["completion_tokens"]

    start = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        counts = list(pool.map(one, range(n)))
    return sum(counts), time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    binary = os.environ.get("INGOT_BIN", str(REPO / "target" / "release" / "ingot"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="ingot-structured-bench-", suffix=".log", delete=False)
    proc = subprocess.Popen([binary, "serve", "--port", str(port), "--backend", args.backend,
                             "--kv-cache-memory", "1GiB"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None:
                sys.exit(f"ingot serve exited:\n{Path(log.name).read_text()}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                sys.exit("ingot serve did not start")
            time.sleep(0.2)
        results = {}
        for constrained in (False, True):
            run_round(url, args.concurrency, 16, constrained, 1000)  # warm-up
            rounds = []
            for r in range(args.rounds):
                steps0 = metric(url, "structured_output_steps_total")
                rows0 = metric(url, "structured_output_rows_total")
                secs0 = metric(url, "structured_output_mask_seconds_total")
                toks, wall = run_round(url, args.concurrency, args.tokens, constrained, r * 100)
                steps = metric(url, "structured_output_steps_total") - steps0
                rows = metric(url, "structured_output_rows_total") - rows0
                secs = metric(url, "structured_output_mask_seconds_total") - secs0
                rounds.append((toks / wall, toks, wall, steps, rows, secs))
                print(f"{'schema' if constrained else 'plain'} round {r}: {toks} tokens in "
                      f"{wall:.2f} s", file=sys.stderr)
            rounds.sort()
            results[constrained] = rounds[len(rounds) // 2]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    plain, schema = results[False], results[True]
    steps, rows, secs = schema[3], schema[4], schema[5]
    print(f"Machine: {platform.node()} ({os.cpu_count()} cores), backend {args.backend}, "
          f"{args.concurrency} concurrent requests x {args.tokens} tokens, median of "
          f"{args.rounds} rounds\n")
    print("| run | tokens | wall (s) | aggregate tok/s |")
    print("|---|---|---|---|")
    print(f"| unconstrained (ignore_eos) | {plain[1]} | {plain[2]:.2f} | {plain[0]:.1f} |")
    print(f"| JSON schema (llguidance) | {schema[1]} | {schema[2]:.2f} | {schema[0]:.1f} |")
    print(f"\nRatio schema / unconstrained: {schema[0] / plain[0]:.3f}x")
    if steps:
        print(f"Mask time: {1e3 * secs / steps:.3f} ms per step ({int(steps)} steps), "
              f"{1e6 * secs / max(rows, 1):.1f} us per constrained row ({int(rows)} rows)")


if __name__ == "__main__":
    main()
