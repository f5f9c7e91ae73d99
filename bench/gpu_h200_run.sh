#!/usr/bin/env bash
# Decode speed of Ingot's wgpu backend on the lent GPU, in one device call of a few minutes:
# F16 and Q4_0 GGUFs of Qwen2-0.5B's shapes with the same random weights
# (../shared/peers/mkqwen_gguf.py, bench/mkqwen_q4_0.py), `ingot bench batched` at batch
# 1/16/64 (128-token prompts, 128 new tokens: the S_TG of llama-batched-bench), with the
# host / wait / dispatch split per step; the same for bin/ingot-base when the kit has one
# (the build before, for a before/after in the same run). Markdown on stdout and in
# $OUT/h200.md (or /tmp/h200.md).
#
# Prepare the kit here with bench/gpu_h200_prep.sh, then on the device:
#   bash bench/gpu_h200_run.sh        (carry: .h200)
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=${KIT:-$PWD/.h200}
REPORT=${OUT:-/tmp}/h200.md
log() { echo "[h200] $(date -u +%T) $*" >&2; }
exec > >(tee "$REPORT")

# Vulkan: the loader from the kit, the NVIDIA driver's ICD.
. bench/h200_env.sh
log "VK_DRIVER_FILES=$VK_DRIVER_FILES"

log "making the F16 and Q4_0 files (24 layers)"
python3 "$KIT/mkqwen_gguf.py" "$KIT/llama.cpp" /tmp/q.gguf 24 >&2 &
F16=$!
python3 "$KIT/mkqwen_q4_0.py" "$KIT/mkqwen_gguf.py" "$KIT/llama.cpp" /tmp/q4.gguf 24 >&2 &
Q4=$!
wait $F16
wait $Q4

echo "## Ingot wgpu decode on the lent GPU, $(date -u +%Y-%m-%d)"
echo
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/GPU: /' || true
echo
ENGINE=(--backend gpu --max-num-seqs 64 --max-num-batched-tokens 8192 --kv-cache-memory 8GiB)
DECODE=(--npp 128 --ntg 128 --npl 1,16,64)
run() {
  local bin=$1 name=$2 file=$3 dtype=$4
  [ -x "$KIT/bin/$bin" ] || return 0
  log "$bin: $name"
  echo "### $bin ($("$KIT/bin/$bin" --version 2>/dev/null || echo "?")), $name, --dtype $dtype"
  echo
  timeout 90 "$KIT/bin/$bin" bench batched "${ENGINE[@]}" --model "$file" --dtype "$dtype" "${DECODE[@]}" ||
    echo "(exit $?)"
  echo
}
run ingot "F16 file" /tmp/q.gguf f16
run ingot "Q4_0 file" /tmp/q4.gguf auto
run ingot-base "F16 file" /tmp/q.gguf f16
run ingot-base "Q4_0 file" /tmp/q4.gguf auto
log "done"
