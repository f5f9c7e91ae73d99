#!/usr/bin/env bash
# CPU benchmark of Ingot beside llama.cpp on the same GGUF (the default model) and the same
# number of threads, in one run. Prints markdown to stdout; progress goes to stderr.
#
#   bench/cpu_vs_llamacpp.sh [THREADS]
#
# llama.cpp's tools (llama-bench, llama-batched-bench) are built from the llama.cpp sources
# vendored in the llama-cpp-python sdist (PyPI), into $LLAMA_DIR (default ~/.cache/ingot/llama.cpp),
# once. Needs cmake and a C++ compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-$(nproc)}
LLAMA_DIR=${LLAMA_DIR:-$HOME/.cache/ingot/llama.cpp}
LLAMA_PY_VERSION=0.3.36

log() { echo "[bench] $*" >&2; }

if [ ! -x "$LLAMA_DIR/build/bin/llama-batched-bench" ]; then
  log "building llama.cpp tools from llama-cpp-python==$LLAMA_PY_VERSION (once)"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_PY_VERSION" -d "$tmp"
  tar xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
  mkdir -p "$LLAMA_DIR"
  cp -r "$tmp"/llama_cpp_python-*/vendor/llama.cpp/. "$LLAMA_DIR"
  cmake -S "$LLAMA_DIR" -B "$LLAMA_DIR/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON >&2
  cmake --build "$LLAMA_DIR/build" -j"$THREADS" --target llama-batched-bench llama-bench >&2
fi

cargo build --release -q -p ingot-cli
INGOT=${CARGO_TARGET_DIR:-target}/release/ingot
MODEL=$($INGOT generate --help >/dev/null; python3 - <<'PY'
import os
base = os.environ.get("INGOT_MODEL_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ingot", "models")
print(os.path.join(base, "SmolLM2-135M-Instruct.Q4_1.gguf"))
PY
)
[ -f "$MODEL" ] || $INGOT generate --raw "hi" --max-tokens 1 --backend cpu >/dev/null   # fetches the default model
export RAYON_NUM_THREADS=$THREADS

echo "### Single stream (prompt 128 tokens, 128 generated)"
echo
log "llama-bench"
echo '```'
"$LLAMA_DIR/build/bin/llama-bench" -m "$MODEL" -t "$THREADS" -p 128 -n 128 -r 3 2>/dev/null
echo '```'
log "ingot bench batched, B=1"
echo '```'
$INGOT bench batched --backend cpu --npp 128 --ntg 128 --npl 1 --kv-cache-memory 1GiB 2>/dev/null
echo '```'
echo
echo "### Batched decode (prompt 128, 128 generated per request)"
echo
log "llama-batched-bench"
echo '```'
"$LLAMA_DIR/build/bin/llama-batched-bench" -m "$MODEL" -t "$THREADS" -c 20000 -b 2048 -ub 512 \
  -npp 128 -ntg 128 -npl 1,4,16,64 2>/dev/null | grep -E '^\|'
echo '```'
log "ingot bench batched"
echo '```'
$INGOT bench batched --backend cpu --npp 128 --ntg 128 --npl 1,4,16,64 --kv-cache-memory 2GiB 2>/dev/null
echo '```'
echo
echo "### Time to first token with a cached 512-token prefix"
echo
log "ingot bench prefix-cache"
echo '```'
$INGOT bench prefix-cache --backend cpu --prefix 512 --tail 16 --kv-cache-memory 1GiB 2>/dev/null
echo '```'
