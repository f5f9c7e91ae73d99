#!/usr/bin/env python3
"""Structured-output overhead: 16 concurrent requests constrained by a JSON schema against
the same 16 unconstrained, on one `ingot serve` (default model), and the host time spent
computing grammar masks per step (from /metrics). Prints markdown to stdout.

    python3 bench/structured_output.py [--binary PATH] [--backend cpu|gpu] [--model PATH]
        [--concurrency 16] [--tokens 128] [--rounds 3]

On the GPU machine (no `openai` package, no network): bench/structured_output_h200.sh runs
it against a carried binary and a random-weight model made there. It needs nothing but the
Python standard library.

Both runs generate exactly `--tokens` tokens per request, so their aggregate tok/s compare
like for like: the unconstrained requests ignore EOS, and the schema (a list of at least 64
short strings) cannot be complete before the token budget runs out. Each run is preceded by
a warm-up round (the first constrained request also builds the token trie) and repeated
`--rounds` times; the table shows the median round. `--binary` (or INGOT_BIN) names the
binary (default target/release/ingot); `--model` a model for `ingot serve` (default: its
default model).
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
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

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


def http(method, url, body=None, timeout=600):
    """(status, text) of one request; the standard library only, so the script runs where
    nothing can be installed."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(url, name):
    _, text = http("GET", url + "/metrics", timeout=30)
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
        status, text = http("POST", url + "/v1/completions", body)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {text[:500]}")
        return json.loads(text)["usage"]["completion_tokens"]

    start = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        counts = list(pool.map(one, range(n)))
    return sum(counts), time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.environ.get(
        "INGOT_BIN", str(REPO / "target" / "release" / "ingot")))
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--model", help="model for `ingot serve` (default: its default model)")
    ap.add_argument("--kv-cache-memory", default="1GiB")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup-tokens", type=int, default=16)
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="extra argument for `ingot serve` (repeatable)")
    args = ap.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="ingot-structured-bench-", suffix=".log", delete=False)
    cmd = [args.binary, "serve"] + ([args.model] if args.model else []) + [
        "--port", str(port), "--backend", args.backend,
        "--kv-cache-memory", args.kv_cache_memory] + args.serve_arg
    print("serving: " + " ".join(cmd), file=sys.stderr)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None:
                sys.exit(f"ingot serve exited:\n{Path(log.name).read_text()}")
            try:
                if http("GET", url + "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("ingot serve did not start")
            time.sleep(0.2)
        results = {}
        for constrained in (False, True):
            run_round(url, args.concurrency, args.warmup_tokens, constrained, 1000)  # warm-up
            rounds = []
            for r in range(args.rounds):
                steps0 = metric(url, "structured_output_steps_total")
                rows0 = metric(url, "structured_output_rows_total")
                secs0 = metric(url, "structured_output_mask_seconds_total")
                forced0 = metric(url, "structured_output_forced_tokens_total")
                toks, wall = run_round(url, args.concurrency, args.tokens, constrained, r * 100)
                steps = metric(url, "structured_output_steps_total") - steps0
                rows = metric(url, "structured_output_rows_total") - rows0
                secs = metric(url, "structured_output_mask_seconds_total") - secs0
                forced = metric(url, "structured_output_forced_tokens_total") - forced0
                rounds.append((toks / wall, toks, wall, steps, rows, secs, forced))
                print(f"{'schema' if constrained else 'plain'} round {r}: {toks} tokens in "
                      f"{wall:.2f} s", file=sys.stderr)
            rounds.sort()
            results[constrained] = rounds[len(rounds) // 2]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    plain, schema = results[False], results[True]
    steps, rows, secs = schema[3], schema[4], schema[5]
    adapter = next((l.strip() for l in Path(log.name).read_text(errors="replace").splitlines()
                    if "adapter" in l.lower()), "")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"Structured output, {when}. Machine: {platform.node()} ({os.cpu_count()} cores), "
          f"backend {args.backend}, model {args.model or 'the default'}, "
          f"{args.concurrency} concurrent requests x {args.tokens} tokens, median of "
          f"{args.rounds} rounds\n")
    if adapter:
        print(f"Server log: `{adapter[:200]}`\n")
    print("| run | tokens | wall (s) | aggregate tok/s |")
    print("|---|---|---|---|")
    print(f"| unconstrained (ignore_eos) | {plain[1]} | {plain[2]:.2f} | {plain[0]:.1f} |")
    print(f"| JSON schema (llguidance) | {schema[1]} | {schema[2]:.2f} | {schema[0]:.1f} |")
    print(f"\nRatio schema / unconstrained: {schema[0] / plain[0]:.3f}x")
    if steps:
        print(f"Mask time: {1e3 * secs / steps:.3f} ms per step ({int(steps)} steps), "
              f"{1e6 * secs / max(rows, 1):.1f} us per constrained row ({int(rows)} rows); "
              f"{int(schema[6])} of {schema[1]} tokens forced by the grammar")


if __name__ == "__main__":
    main()
