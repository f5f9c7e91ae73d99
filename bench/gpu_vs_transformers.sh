#!/usr/bin/env bash
# GPU benchmark of Ingot's wgpu backend beside PyTorch + transformers (float16, eager) on the
# same GPU and shapes, in one run. Prints markdown to stdout; progress goes to stderr.
#
#   bench/gpu_vs_transformers.sh
#
# Models: (1) Qwen2-0.5B shapes with dummy f16 weights (bench/models/qwen2-0.5b/config.json,
# `--load-format dummy`); (2) the default model (SmolLM2-135M-Instruct Q4_1, dequantized to
# f16 at load): $INGOT_DEFAULT_GGUF when set, else resolved as `ingot` always does. The
# transformers side builds both from their config.json with random weights (values do not
# change the speed of either). Ingot: `ingot bench batched` (greedy, EOS ignored) for decode
# at batch 1/16/64 (128-token prompts, 128 new tokens) and prefill of 16 x 512 in one step;
# kernel figures from the kernels_bench example (GEMV bandwidth as a share of a copy's).
#
# Environment: INGOT_BIN (default target/release/ingot, built if missing), KERNELS_BENCH
# (the kernels_bench example binary; built with cargo if unset), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[bench] $*" >&2; }

INGOT=${INGOT_BIN:-target/release/ingot}
if [ ! -x "$INGOT" ]; then
  cargo build --release -q -p ingot-cli
fi
PYTHON=${PYTHON:-python3}
ENGINE=(--backend gpu --max-num-seqs 64 --max-num-batched-tokens 8192 --kv-cache-memory 8GiB)
QWEN=(--model bench/models/qwen2-0.5b --load-format dummy --dtype f16)
if [ -n "${INGOT_DEFAULT_GGUF:-}" ]; then DEFAULT=(--model "$INGOT_DEFAULT_GGUF"); else DEFAULT=(); fi

echo "## GPU: Ingot (wgpu) vs transformers, $(date -u +%Y-%m-%d)"
echo
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/GPU: /' || true
echo

run_ingot() {
  local name=$1
  shift
  log "ingot: $name decode"
  echo "### Ingot, $name: decode (128-token prompts, 128 new tokens)"
  echo
  "$INGOT" bench batched "${ENGINE[@]}" "$@" --npp 128 --ntg 128 --npl 1,16,64
  echo
  log "ingot: $name prefill"
  echo "### Ingot, $name: prefill 16 x 512 (S_PP)"
  echo
  "$INGOT" bench batched "${ENGINE[@]}" "$@" --npp 512 --ntg 1 --npl 16
  echo
}
run_ingot "Qwen2-0.5B shapes, dummy f16 weights" "${QWEN[@]}"
run_ingot "default model (SmolLM2-135M Q4_1 -> f16)" "${DEFAULT[@]}"

log "kernels"
echo "### Kernels (kernels_bench, Qwen2-0.5B shapes, f16 weights)"
echo
echo '```'
if [ -n "${KERNELS_BENCH:-}" ]; then
  "$KERNELS_BENCH"
else
  cargo run --release -q -p ingot-backend-wgpu --example kernels_bench
fi
echo '```'
echo

log "transformers"
echo "### PyTorch + transformers (float16, eager, random weights)"
echo
"$PYTHON" bench/gpu_transformers.py bench/models/qwen2-0.5b bench/models/smollm2-135m
