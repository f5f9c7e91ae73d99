#!/usr/bin/env bash
# CPU benchmark of Ingot beside llama.cpp on the same GGUF files and the same number of
# threads, in one run: single-stream prefill and decode, batched decode, and the peak memory
# of both servers under 16 concurrent streams. Prints markdown to stdout; progress goes to
# stderr.
#
#   bench/cpu_vs_llamacpp.sh [THREADS]        # about 15 minutes on 2 cores
#
# Knobs (environment): QUANTS (Q4_1,Q8_0,Q4_K_M: the default model's file and two made from
# it), NPL (1,4,16: batch sizes of the batched runs), MODES (exact,int8: Ingot's activation
# modes for weights kept in blocks, `--cpu-activations`), RSS (1: the serving-memory part),
# LLAMA_DIR (~/.cache/ingot/llama.cpp), INGOT_BIN (default: builds target/release/ingot).
#
# llama.cpp comes from the sources vendored in the llama-cpp-python sdist (PyPI), built once
# into $LLAMA_DIR/build with explicit instruction sets instead of GGML_NATIVE: a native build
# follows whatever the build machine reports (on one Intel Xeon here its AMX path died with
# "Illegal instruction"), while these flags give one binary for the x86 machines this
# project runs on (those of AVX2/FMA/F16C/BMI2, AVX-512 with VNNI, VBMI and BF16, and
# AVX-VNNI that the CPU reports; never AMX). LLAMA_ISA_FLAGS overrides them.
#
# The Q8_0 and Q4_K_M files are made from the Q4_1 one by llama-quantize --allow-requantize
# (no higher-precision GGUF of the default model ships in a registry): their values carry
# Q4_1's rounding, which changes nothing about speed or memory. Q4_K_M on this model mixes
# Q5_0 and Q8_0 (rows of 576 are not whole 256-element super-blocks) with Q4_K and Q6_K.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-$(nproc)}
QUANTS=${QUANTS:-Q4_1,Q8_0,Q4_K_M}
NPL=${NPL:-1,4,16}
MODES=${MODES:-exact,int8}
RSS=${RSS:-1}
LLAMA_DIR=${LLAMA_DIR:-$HOME/.cache/ingot/llama.cpp}
LLAMA_PY_VERSION=0.3.36
# Explicit instruction sets read from /proc/cpuinfo (never GGML_NATIVE, never AMX): each
# flag is on only where this CPU reports it, so one Xeon without AVX-512 VBMI/BF16 does not
# get a binary that dies with SIGILL.
isa_flags() {
  local have f out="-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  have=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
  for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx512f:AVX512 \
    avx512_vnni:AVX512_VNNI avx512vbmi:AVX512_VBMI avx512_bf16:AVX512_BF16 avx_vnni:AVX_VNNI; do
    f=${pair%%:*}
    if [[ " $have " == *" $f "* ]]; then out="$out -DGGML_${pair#*:}=ON"; else out="$out -DGGML_${pair#*:}=OFF"; fi
  done
  echo "$out"
}
LLAMA_ISA_FLAGS=${LLAMA_ISA_FLAGS:-$(isa_flags)}
BIN=$LLAMA_DIR/build/bin
TOOLS="llama-bench llama-batched-bench llama-server llama-quantize"

log() { echo "[bench] $*" >&2; }

missing=0
for t in $TOOLS; do [ -x "$BIN/$t" ] || missing=1; done
if [ $missing = 1 ]; then
  log "building llama.cpp ($TOOLS) from llama-cpp-python==$LLAMA_PY_VERSION with explicit ISA flags"
  if [ ! -f "$LLAMA_DIR/CMakeLists.txt" ]; then
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_PY_VERSION" -d "$tmp"
    tar xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
    mkdir -p "$LLAMA_DIR"
    cp -r "$tmp"/llama_cpp_python-*/vendor/llama.cpp/. "$LLAMA_DIR"
    rm -rf "$tmp"
  fi
  # shellcheck disable=SC2086 # the flags are words
  cmake -S "$LLAMA_DIR" -B "$LLAMA_DIR/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON \
    -DGGML_NATIVE=OFF $LLAMA_ISA_FLAGS >&2
  # shellcheck disable=SC2086
  cmake --build "$LLAMA_DIR/build" -j"$(nproc)" --target $TOOLS >&2
fi
grep -q "GGML_NATIVE:BOOL=OFF" "$LLAMA_DIR/build/CMakeCache.txt" ||
  { log "$LLAMA_DIR/build was configured with GGML_NATIVE: remove it to rebuild"; exit 1; }

if [ -z "${INGOT_BIN:-}" ]; then
  cargo build --release -q -p ingot-cli
  INGOT_BIN=${CARGO_TARGET_DIR:-target}/release/ingot
fi
INGOT=$INGOT_BIN
MODELS_DIR=$(python3 -c 'import os; print(os.environ.get("INGOT_MODEL_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ingot", "models"))')
BASE=$MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$BASE" ] || $INGOT generate --raw "hi" --max-tokens 1 --backend cpu >/dev/null # fetches the default model
model_file() { echo "$MODELS_DIR/SmolLM2-135M-Instruct.$1.gguf"; }
for q in ${QUANTS//,/ }; do
  f=$(model_file "$q")
  if [ ! -f "$f" ]; then
    log "making $f with llama-quantize"
    "$BIN/llama-quantize" --allow-requantize "$BASE" "$f" "$q" "$THREADS" >/dev/null 2>&1
  fi
done
export RAYON_NUM_THREADS=$THREADS

echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs; $THREADS threads; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Ingot $(git rev-parse --short HEAD); llama.cpp $(cd "$LLAMA_DIR" && git describe --always 2>/dev/null || echo "from llama-cpp-python $LLAMA_PY_VERSION")"
echo
for q in ${QUANTS//,/ }; do
  m=$(model_file "$q")
  echo "## $q ($(du -m "$m" | cut -f1) MiB)"
  echo
  log "$q: llama-bench"
  echo '```'
  "$BIN/llama-bench" -m "$m" -t "$THREADS" -p 128 -n 128 -r 3 2>/dev/null
  echo '```'
  log "$q: llama-batched-bench"
  echo '```'
  "$BIN/llama-batched-bench" -m "$m" -t "$THREADS" -c 20000 -b 2048 -ub 512 \
    -npp 128 -ntg 128 -npl "$NPL" 2>/dev/null | grep -E '^\|'
  echo '```'
  for mode in ${MODES//,/ }; do
    log "$q: ingot bench batched ($mode)"
    echo "Ingot, \`--cpu-activations $mode\`:"
    echo '```'
    $INGOT bench batched --model "$m" --backend cpu --cpu-activations "$mode" --npp 128 --ntg 128 \
      --npl "$NPL" --kv-cache-memory 2GiB 2>/dev/null
    echo '```'
  done
  echo
done

[ "$RSS" = 1 ] || exit 0

# Peak RSS of each server while it serves 16 concurrent streams (32 requests, 128 prompt
# tokens, 64 generated, end of generation ignored). Both hold the same KV capacity: 4096
# tokens in f16 (llama-server: 16 slots of 256; Ingot: blocks of 16 tokens in 96 MiB). The
# peak is reset (clear_refs 5) once the server is up, so it is the serving peak; the peak of
# loading is reported beside it.
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
wait_ready() {
  for _ in $(seq 600); do
    kill -0 "$server_pid" 2>/dev/null || { log "the server exited; its log:"; cat "$work/server.log" >&2; exit 1; }
    python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null && return 0
    sleep 0.5
  done
  log "the server did not come up"; exit 1
}
hwm() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status"; }
serve_rss() { # LABEL URL -> "load peak MiB, serving peak MiB, bench summary"
  local label=$1 url=$2 load
  wait_ready "$url/health"
  load=$(hwm)
  echo 5 >"/proc/$server_pid/clear_refs"
  $INGOT bench serve --url "$url" --model SmolLM2-135M-Instruct --label "$label" --concurrency 16 \
    --num-prompts 32 --input-len 128 --output-len 64 --ignore-eos --seed 0 >"$work/$label.txt" 2>&1
  echo "| $label | $load | $(hwm) | $(grep -m1 -iE 'output token throughput|output tok/s' "$work/$label.txt" | tr -s ' ' | cut -c1-60) |"
}

echo "## Peak RSS serving 16 concurrent streams (Q4_1)"
echo
echo "| server | peak RSS while loading (MiB) | peak RSS while serving (MiB) | |"
echo "|---|---|---|---|"
for mode in ${MODES//,/ }; do
  port=$(free_port)
  log "ingot serve ($mode) on :$port"
  $INGOT serve --backend cpu --cpu-activations "$mode" --host 127.0.0.1 --port "$port" \
    --served-model-name SmolLM2-135M-Instruct --max-num-seqs 16 --kv-cache-dtype f16 \
    --kv-cache-memory 96MiB >"$work/server.log" 2>&1 &
  server_pid=$!
  serve_rss "ingot-$mode" "http://127.0.0.1:$port"
  stop_server
done
port=$(free_port)
log "llama-server --parallel 16 on :$port"
"$BIN/llama-server" -m "$BASE" -t "$THREADS" --parallel 16 -c 4096 --host 127.0.0.1 --port "$port" \
  --alias SmolLM2-135M-Instruct >"$work/server.log" 2>&1 &
server_pid=$!
serve_rss llama-server "http://127.0.0.1:$port"
stop_server
echo
echo "Load after: $(cut -d' ' -f1-3 /proc/loadavg)"
