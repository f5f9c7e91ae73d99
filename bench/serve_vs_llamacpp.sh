#!/usr/bin/env bash
# Serving benchmark: Ingot's OpenAI-compatible server beside llama.cpp's (the server of
# llama-cpp-python, PyPI) on the same GGUF (the default model) with the same CPU threads,
# driven by `ingot bench serve` at concurrency 1, 4, 16, 64. Writes the table and the plot
# into docs/BENCHMARKS.md (its "Serving: Ingot vs llama.cpp" section, replaced on each run)
# and docs/img/serve_vs_llamacpp.png. Progress goes to stderr.
#
#   bench/serve_vs_llamacpp.sh            # THREADS=$(nproc); about 8 minutes on 2 cores
#
# Knobs (environment): THREADS, CONCURRENCY (1,4,16,64), INPUT_LEN (128), OUTPUT_LEN (64),
# MAX_DURATION (seconds per point, 300), INGOT_BIN (default: builds target/release/ingot),
# DOC and PLOT (where the section and the PNG go).
#
# The servers run one after the other, never together, so neither steals the other's cores.
# Each point sends max(8, 2 × C) requests with fresh prompts of exactly INPUT_LEN tokens
# (counted by each server's tokenizer) and asks for exactly OUTPUT_LEN tokens: Ingot through
# vLLM's `ignore_eos`, llama-cpp-python (which has no such option) through a -100 logit bias
# on every end-of-generation token of the vocabulary.
#
# llama-cpp-python's server holds one llama.cpp context and serves one request at a time
# (the others wait in a queue); it has no parallel slots. It is started with
# `--interrupt_requests False`, else each new request would cut the streaming one short.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-$(nproc)}
CONCURRENCY=${CONCURRENCY:-1,4,16,64}
INPUT_LEN=${INPUT_LEN:-128}
OUTPUT_LEN=${OUTPUT_LEN:-64}
MAX_DURATION=${MAX_DURATION:-300}
LLAMA_PY_VERSION=0.3.36
DOC=${DOC:-docs/BENCHMARKS.md}
PLOT=${PLOT:-docs/img/serve_vs_llamacpp.png}
NAME=SmolLM2-135M-Instruct

log() { echo "[bench] $*" >&2; }

if [ -z "${INGOT_BIN:-}" ]; then
  cargo build --release -q -p ingot-cli
  INGOT_BIN=target/release/ingot
fi
INGOT=$INGOT_BIN
MODEL=$(python3 - <<'PY'
import os
base = os.environ.get("INGOT_MODEL_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ingot", "models")
print(os.path.join(base, "SmolLM2-135M-Instruct.Q4_1.gguf"))
PY
)
[ -f "$MODEL" ] || $INGOT generate --raw "hi" --max-tokens 1 --backend cpu >/dev/null   # fetches the default model

python3 -c "import llama_cpp.server.app, uvicorn" 2>/dev/null || {
  log "installing llama-cpp-python[server]==$LLAMA_PY_VERSION"
  python3 -m pip install -q --disable-pip-version-check "llama-cpp-python[server]==$LLAMA_PY_VERSION" >&2
}

work=$(mktemp -d)
server_pid=
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=
}
trap 'stop_server; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until GET $1 answers 200 (the server has loaded its model).
wait_ready() {
  for _ in $(seq 600); do
    kill -0 "$server_pid" 2>/dev/null || { log "the server exited; its log:"; cat "$work/server.log" >&2; exit 1; }
    python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null && return 0
    sleep 0.5
  done
  log "the server did not come up"; exit 1
}

bench() { # URL LABEL JSON [extra flags...]
  local url=$1 label=$2 json=$3; shift 3
  log "ingot bench serve against $label (concurrency $CONCURRENCY)"
  $INGOT bench serve --url "$url" --model "$NAME" --label "$label" --concurrency "$CONCURRENCY" \
    --num-prompts 8 --prompts-per-client 2 --input-len "$INPUT_LEN" --output-len "$OUTPUT_LEN" \
    --max-duration "$MAX_DURATION" --seed 0 --json "$json" "$@" >"$work/$label.txt"
}

# Ingot: CPU backend, THREADS rayon threads, up to 64 sequences batched.
port=$(free_port)
log "starting ingot serve on :$port ($THREADS threads)"
RAYON_NUM_THREADS=$THREADS $INGOT serve --backend cpu --host 127.0.0.1 --port "$port" \
  --served-model-name "$NAME" --max-num-seqs 64 --kv-cache-memory 1GiB >"$work/server.log" 2>&1 &
server_pid=$!
wait_ready "http://127.0.0.1:$port/health"
bench "http://127.0.0.1:$port" Ingot "$work/ingot.json" --ignore-eos
stop_server

# llama.cpp through llama-cpp-python's server: THREADS threads for prompt and generation.
# Every end-of-generation token gets a -100 bias, so each request generates OUTPUT_LEN tokens.
eog_bias=$(python3 - "$MODEL" 2>/dev/null <<'PY'
import ctypes, json, sys
import llama_cpp
llama_cpp.llama_backend_init()
params = llama_cpp.llama_model_default_params()
params.vocab_only = True
model = llama_cpp.llama_model_load_from_file(sys.argv[1].encode(), params)
vocab = llama_cpp.llama_model_get_vocab(model)
eog = [t for t in range(llama_cpp.llama_vocab_n_tokens(vocab)) if llama_cpp.llama_vocab_is_eog(vocab, t)]
print(json.dumps({"logit_bias": {str(t): -100 for t in eog}}))
PY
)
log "llama.cpp end-of-generation tokens banned: $eog_bias"
port=$(free_port)
log "starting llama-cpp-python's server on :$port ($THREADS threads)"
python3 -m llama_cpp.server --model "$MODEL" --model_alias "$NAME" --host 127.0.0.1 --port "$port" \
  --n_threads "$THREADS" --n_threads_batch "$THREADS" --n_ctx 2048 --interrupt_requests False \
  --verbose False >"$work/server.log" 2>&1 &
server_pid=$!
wait_ready "http://127.0.0.1:$port/v1/models"
bench "http://127.0.0.1:$port" llama.cpp "$work/llama.json" --extra-body "$eog_bias"
stop_server

mkdir -p "$(dirname "$PLOT")"
$INGOT bench serve --from-json "$work/ingot.json" "$work/llama.json" --plot "$PLOT" >"$work/table.md"

# The section: how it was made, the table, the plot, and what the figures say.
python3 - "$work" "$PLOT" "$THREADS" "$INPUT_LEN" "$OUTPUT_LEN" "$LLAMA_PY_VERSION" >"$work/section.md" <<'PY'
import datetime, json, os, platform, subprocess, sys
work, plot, threads, inp, out, llama_version = sys.argv[1:]
ingot = json.load(open(os.path.join(work, "ingot.json")))
llama = json.load(open(os.path.join(work, "llama.json")))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
date = datetime.datetime.fromtimestamp(ingot["started_unix"], datetime.timezone.utc).strftime("%Y-%m-%d")
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "?"
table = open(os.path.join(work, "table.md")).read().strip()
by_c = lambda r: {run["concurrency"]: run["summary"] for run in r["runs"]}
ig, ll = by_c(ingot), by_c(llama)
cs = sorted(set(ig) & set(ll))
def ratio(c, key):
    a, b = ig[c][key], ll[c][key]
    return a / b if b else float("inf")
lo, hi = cs[0], cs[-1]
aborted = sum(s["aborted"] for s in list(ig.values()) + list(ll.values()))
med = lambda s, k, scale=1.0: s[k]["median"] * scale if s.get(k) else float("nan")
def faster(a, b):  # a and b are times: which one is shorter, in words
    return "faster" if a < b else "slower"
lines = [
    "## Serving: Ingot vs llama.cpp",
    "",
    "<!-- serve-vs-llamacpp:begin (written by bench/serve_vs_llamacpp.sh; rerun it to refresh) -->",
    "`ingot bench serve` measures any OpenAI-compatible server the way vLLM's `vllm bench serve` "
    "does: streaming requests, either a fixed number in flight (`--concurrency 1,4,16,64` sweeps) "
    "or Poisson arrivals (`--request-rate R`); per request the time to first token (TTFT), the "
    "gaps between streamed chunks (ITL), the time per output token after the first (TPOT = "
    "(e2e - TTFT) / (output tokens - 1)) and the end-to-end latency, with output tokens taken "
    "from the server's `usage`. Synthetic prompts have an exact token length counted by the "
    "server's own `/tokenize` (vLLM's, llama.cpp's, or llama-cpp-python's `/extras/tokenize`). "
    "It prints a vLLM-style summary per point and a markdown table, writes every request to "
    "`--json`, and draws `--plot`; `--from-json a.json b.json --plot out.png` puts several "
    "servers on one table and plot. For example: "
    "`ingot bench serve --url http://127.0.0.1:8000 --concurrency 1,4,16,64 --input-len 1024 "
    "--output-len 128 --ignore-eos --json out.json --plot out.png`.",
    "",
    f"Below: `bench/serve_vs_llamacpp.sh` on {date} (on commit {commit}), {cpu}, {os.cpu_count()} cores; "
    f"both servers on the CPU with {threads} threads, one after the other, serving "
    f"SmolLM2-135M-Instruct Q4_1 (GGUF). llama.cpp is llama-cpp-python {llama_version}'s server. "
    f"Each point sends max(8, 2 × concurrency) streaming `/v1/completions` requests with fresh "
    f"prompts of exactly {inp} tokens and generates exactly {out} tokens each (greedy; end of "
    f"generation disabled: `ignore_eos` for Ingot, a -100 logit bias on the end-of-generation "
    f"tokens for llama.cpp).",
    "",
    f"![Ingot vs llama.cpp: throughput and latency against concurrency](img/{os.path.basename(plot)})",
    "",
    table,
    "",
    f"What the figures mean: llama-cpp-python's server has one llama.cpp context and no parallel "
    f"slots, so it serves requests one at a time: its output throughput stays at "
    f"{min(ll[c]['output_throughput'] for c in cs):.0f}-{max(ll[c]['output_throughput'] for c in cs):.0f} tok/s whatever the "
    f"concurrency, each stream's TPOT stays within {min(med(ll[c], 'tpot_ms') for c in cs):.0f}-"
    f"{max(med(ll[c], 'tpot_ms') for c in cs):.0f} ms, and waiting requests pay in time to "
    f"first token (median {med(ll[hi], 'ttft_ms', 1e-3):.1f} s at concurrency {hi}). Ingot batches "
    f"every request in flight into each forward pass (continuous batching with chunked prefill), "
    f"so its output throughput rises from {ig[lo]['output_throughput']:.0f} tok/s at concurrency "
    f"{lo} to {ig[hi]['output_throughput']:.0f} tok/s at {hi} ({ratio(hi, 'output_throughput'):.1f}x "
    f"llama.cpp's), while each stream's TPOT grows from {med(ig[lo], 'tpot_ms'):.0f} to "
    f"{med(ig[hi], 'tpot_ms'):.0f} ms as the batch grows. One stream at a time, Ingot is "
    f"{faster(med(ig[lo], 'tpot_ms'), med(ll[lo], 'tpot_ms'))} per token "
    f"({med(ig[lo], 'tpot_ms'):.1f} vs {med(ll[lo], 'tpot_ms'):.1f} ms TPOT) and "
    f"{faster(med(ig[lo], 'ttft_ms'), med(ll[lo], 'ttft_ms'))} to its first token "
    f"({med(ig[lo], 'ttft_ms'):.0f} vs {med(ll[lo], 'ttft_ms'):.0f} ms). These are CPU figures "
    f"for a 135M model on a small shared machine: they compare serving behaviour, not peak "
    f"kernel speed (bench/cpu_vs_llamacpp.sh measures that).",
]
if aborted:
    lines += ["", f"{aborted} request(s) were still running at the {ingot['max_duration_s']:.0f} s limit per point and are left out of the figures."]
lines += ["<!-- serve-vs-llamacpp:end -->", ""]
print("\n".join(lines))
PY

if grep -q '<!-- serve-vs-llamacpp:begin' "$DOC" 2>/dev/null; then
  python3 - "$DOC" "$work/section.md" <<'PY'
import re, sys
doc, section = sys.argv[1], open(sys.argv[2]).read()
text = open(doc).read()
start = text.index("## Serving: Ingot vs llama.cpp")
end = text.index("<!-- serve-vs-llamacpp:end -->", start) + len("<!-- serve-vs-llamacpp:end -->\n")
open(doc, "w").write(text[:start] + section + text[end:])
PY
else
  { [ -s "$DOC" ] && echo; cat "$work/section.md"; } >>"$DOC"
fi
cat "$work/table.md"
log "wrote $DOC and $PLOT"
