#!/usr/bin/env bash
# The GPU half of the structured-output benchmark (bench/structured_output.py: 16 concurrent
# requests with a JSON schema against the same unconstrained, aggregate tok/s ratio, mask
# time per step) on the lent GPU, in one device call of about two minutes, with the kit of
# bench/gpu_h200_prep.sh (nothing can be built or fetched there, and the default model's
# 92 MiB do not fit what a call may carry). The model is made there: random weights of
# Qwen2-0.5B's shapes with the real Qwen2 vocabulary (151,936 tokens, so each mask covers
# three times the default model's vocabulary), F16, LAYERS layers (default 24). Markdown
# on stdout and in $OUT/structured.md (or /tmp/structured.md).
#
#   bench/gpu_h200_prep.sh                      (here)
#   bash bench/structured_output_h200.sh        (on the device; carry: .h200)
#
# Variables: KIT (default .h200), LAYERS, TOKENS (128), CONCURRENCY (16), ROUNDS (3).
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=${KIT:-$PWD/.h200}
REPORT=${OUT:-/tmp}/structured.md
log() { echo "[structured] $(date -u +%T) $*" >&2; }
. bench/h200_env.sh
log "VK_DRIVER_FILES=$VK_DRIVER_FILES"
log "making the model (${LAYERS:-24} layers)"
python3 "$KIT/mkqwen_gguf.py" "$KIT/llama.cpp" /tmp/qs.gguf "${LAYERS:-24}" >&2
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null |
    sed 's/^/GPU: /' || true
  echo
  echo "Binary: $("$KIT/bin/ingot" --version 2>/dev/null || echo '?')"
  echo
  timeout 150 python3 bench/structured_output.py --binary "$KIT/bin/ingot" --backend gpu \
    --model /tmp/qs.gguf --kv-cache-memory 4GiB --tokens "${TOKENS:-128}" \
    --concurrency "${CONCURRENCY:-16}" --rounds "${ROUNDS:-3}"
} | tee "$REPORT"
log "done"
