#!/usr/bin/env bash
# CPU benchmark of a small mixture-of-experts model, Ingot beside llama.cpp on the same GGUF
# and the same number of threads (issue 15): single-stream prefill and decode (llama-bench
# pp128 / tg64), and batched decode at 1 and 16 concurrent streams (llama-batched-bench and
# `ingot bench batched`, 128-token prompts, 64 new tokens). Markdown on stdout, progress on
# stderr.
#
#   bench/cpu_moe_vs_llamacpp.sh [THREADS]       # about 8 minutes on 2 cores
#
# The model: bench/mkmoe_gguf.py's `cpu-small` preset, llama.cpp's "olmoe" architecture
# (hidden 1024, 8 layers, 16 heads, 32 experts of width 512, top-4, QK-norm; the GPT-NeoX
# vocabulary of llama.cpp's vocab file: 0.54 B parameters, 0.14 B active per token) with
# random weights, every matrix in Q8_0 blocks (router and norms F32), so both engines read
# expert blocks. Made once into Ingot's model cache.
#
# llama.cpp: the build of bench/cpu_vs_llamacpp.sh ($LLAMA_DIR/build, explicit ISA flags, no
# GGML_NATIVE); run that script first if it is missing. Knobs (environment): NPL (1,16),
# MODES (exact,int8: Ingot's `--cpu-activations`), DTYPE (q8_0; or q4_0), LLAMA_DIR
# (~/.cache/ingot/llama.cpp), INGOT_BIN (default: builds target/release/ingot).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-$(nproc)}
NPL=${NPL:-1,16}
MODES=${MODES:-exact,int8}
DTYPE=${DTYPE:-q8_0}
LLAMA_DIR=${LLAMA_DIR:-$HOME/.cache/ingot/llama.cpp}
BIN=$LLAMA_DIR/build/bin
log() { echo "[bench] $*" >&2; }

for t in llama-bench llama-batched-bench; do
  [ -x "$BIN/$t" ] || { log "$BIN/$t is missing: build llama.cpp with bench/cpu_vs_llamacpp.sh first"; exit 1; }
done
grep -q "GGML_NATIVE:BOOL=OFF" "$LLAMA_DIR/build/CMakeCache.txt" ||
  { log "$LLAMA_DIR/build was configured with GGML_NATIVE: rebuild it with bench/cpu_vs_llamacpp.sh"; exit 1; }
if [ -z "${INGOT_BIN:-}" ]; then
  cargo build --release -q -p ingot-cli
  INGOT_BIN=${CARGO_TARGET_DIR:-target}/release/ingot
fi
MODELS_DIR=$(python3 -c 'import os; print(os.environ.get("INGOT_MODEL_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ingot", "models"))')
M=$MODELS_DIR/olmoe-cpu-small-$DTYPE.gguf
if [ ! -f "$M" ]; then
  mkdir -p "$MODELS_DIR"
  log "writing $M"
  python3 bench/mkmoe_gguf.py "$LLAMA_DIR" "$M.tmp" --preset cpu-small --dtype "$DTYPE" >&2
  mv "$M.tmp" "$M"
fi
export RAYON_NUM_THREADS=$THREADS
ctx=$(((128 + 64) * 16 + 256))

echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs; $THREADS threads; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Ingot $(git rev-parse --short HEAD); llama.cpp $(cd "$LLAMA_DIR" && git describe --always 2>/dev/null || echo "from llama-cpp-python 0.3.36")"
echo "Model: $(basename "$M") ($(du -m "$M" | cut -f1) MiB): OLMoE architecture, hidden 1024, 8 layers, 32 experts of width 512, top-4, $DTYPE"
echo
log "llama-bench"
echo '```'
"$BIN/llama-bench" -m "$M" -t "$THREADS" -p 128 -n 64 -r 2 2>/dev/null
echo '```'
log "llama-batched-bench"
echo '```'
"$BIN/llama-batched-bench" -m "$M" -t "$THREADS" -c "$ctx" -b 2048 -ub 512 \
  -npp 128 -ntg 64 -npl "$NPL" 2>/dev/null | grep -E '^\|'
echo '```'
for mode in ${MODES//,/ }; do
  log "ingot bench batched ($mode)"
  echo "Ingot, \`--cpu-activations $mode\`:"
  echo '```'
  "$INGOT_BIN" bench batched --model "$M" --backend cpu --cpu-activations "$mode" --npp 128 --ntg 64 \
    --npl "$NPL" --kv-cache-memory 1GiB 2>/dev/null
  echo '```'
done
echo
echo "Load after: $(cut -d' ' -f1-3 /proc/loadavg)"
