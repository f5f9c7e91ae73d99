#!/usr/bin/env bash
# Mixture of experts on the lent GPU (issue 15): Ingot's wgpu backend, llama.cpp (CUDA) and
# transformers on OLMoE-1B-7B's shapes, in one device call of about 4 minutes, after
# bench/gpu_vs_llamacpp.sh's `run` in the same call (which builds llama.cpp with CUDA and
# unpacks the kit). Markdown on stdout and in $OUT/gpu_moe_vs_peers.md; progress on stderr.
#
#   bash .h200/gpu_vs_llamacpp.sh run && bash bench/gpu_moe_vs_peers.sh
#
# What it does, each engine on the same shapes:
# - Writes a GGUF of OLMoE-1B-7B's shapes with random weights (bench/mkmoe_gguf.py: 16
#   layers, hidden 2048, 64 experts of width 1024, top-8, F16 unless DTYPE says q8_0; the
#   real GPT-NeoX vocabulary of llama.cpp's vocab file, or Qwen2's where the kit lacks it),
#   into /dev/shm when it has room, on cores 12-15, while transformers runs on the GPU.
# - transformers (BENCH_DTYPE, default bfloat16, eager; random init of the same config,
#   bench/gpu_transformers.py): prefill 16 x 512, decode at batch 1/16/64 (128-token prompts,
#   then a timed loop of 128 single-token steps through the KV cache).
# - llama.cpp: llama-batched-bench on the file, decode S_TG at npl 1/16/64 (npp 128, ntg
#   128) and prefill S_PP of 16 x 512.
# - Ingot: `ingot bench batched --backend gpu` on the file, the same two runs.
# - The share of the memory roofline at batch 1: tok/s x bytes of the weights one token reads
#   (attention, norms, router, its 8 experts, an embedding row, the LM head) over the
#   bandwidth BW_GBS (default 4137 GB/s: a WGSL copy on this H200, GPU-NOTES).
#
# Environment: INGOT (default /tmp/gvl/bin/ingot, as gpu_vs_llamacpp.sh unpacks it),
# LLAMA_BIN (/tmp/gvl/llb/bin), LLAMA_DIR (llama.cpp sources with gguf-py and models/:
# /tmp/gvl/llama.cpp), KIT (the carried kit with lib/, the Vulkan loader: .h200), PYTHON
# (python3), DTYPE (f16), LAYERS (16), INGOT_DTYPE (Ingot's --dtype: f16 on a GPU),
# BENCH_DTYPE (bfloat16), BW_GBS (4137), SKIP (any of
# transformers,llama,ingot), SHRINK=1 (tiny shapes, for a test of the script on a CPU:
# with BACKEND=cpu and BENCH_DEVICE=cpu).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/.."
log() { echo "[gpu_moe] $(date -u +%T) $*" >&2; }

INGOT=${INGOT:-/tmp/gvl/bin/ingot}
LLAMA_BIN=${LLAMA_BIN:-/tmp/gvl/llb/bin}
LLAMA_DIR=${LLAMA_DIR:-/tmp/gvl/llama.cpp}
KIT=${KIT:-$PWD/.h200}
PYTHON=${PYTHON:-python3}
DTYPE=${DTYPE:-f16}
LAYERS=${LAYERS:-16}
BW_GBS=${BW_GBS:-4137}
SKIP=${SKIP:-}
BACKEND=${BACKEND:-gpu}
export BENCH_DTYPE=${BENCH_DTYPE:-bfloat16}
report=${OUT:-/tmp}/gpu_moe_vs_peers.md
exec > >(tee "$report")

# Vulkan: the loader from the kit, the NVIDIA ICD from the image (as gpu_vs_llamacpp.sh).
if [ -d "$KIT/lib" ]; then export LD_LIBRARY_PATH=$KIT/lib:${LD_LIBRARY_PATH:-}; fi
if [ -z "${VK_DRIVER_FILES:-}" ]; then
  for f in /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json \
    /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd*.json /tmp/gvl/nvidia_icd.json; do
    if [ -f "$f" ]; then export VK_DRIVER_FILES=$f; break; fi
  done
fi

work=$(mktemp -d)
if [ "$(df --output=avail -B1G /dev/shm 2>/dev/null | tail -1)" -gt 24 ] 2>/dev/null; then
  file_dir=/dev/shm
else
  file_dir=$work
fi
gguf=$file_dir/moe-$$.gguf
trap 'rm -rf "$work" "$gguf"' EXIT
vocab=gpt-neox
[ -f "$LLAMA_DIR/models/ggml-vocab-gpt-neox.gguf" ] || vocab=qwen2
shrink=()
[ "${SHRINK:-0}" = 1 ] && shrink=(--shrink)
side=()
fg=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 16 ]; then
  side=(taskset -c 12-15)
  fg=(taskset -c 0-11)
fi
t0=$SECONDS

echo "## Mixture of experts: Ingot (wgpu) vs llama.cpp (CUDA) vs transformers, $(date -u '+%Y-%m-%d %H:%M') UTC"
echo
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/GPU: /' || true
echo "ingot: $("$INGOT" --version 2>/dev/null || echo ?); file: OLMoE-1B-7B shapes, $LAYERS layers, $DTYPE, vocabulary $vocab"
echo

log "writing the GGUF ($DTYPE, $LAYERS layers) to $gguf"
"${side[@]}" "$PYTHON" bench/mkmoe_gguf.py "$LLAMA_DIR" "$gguf" --preset olmoe-1b-7b --layers "$LAYERS" \
  --dtype "$DTYPE" --vocab "$vocab" --hf-config "$work/hf" "${shrink[@]}" >"$work/file.json" &
writer=$!

if [[ ",$SKIP," != *",transformers,"* ]]; then
  # The writer puts the HF config first; transformers needs nothing else.
  while [ ! -f "$work/hf/config.json" ] && kill -0 $writer 2>/dev/null; do sleep 0.5; done
  log "transformers ($BENCH_DTYPE) while the file is written"
  "${fg[@]}" timeout 150 "$PYTHON" bench/gpu_transformers.py "$work/hf" >"$work/tf.txt" 2>"$work/tf.log" ||
    { echo "transformers FAILED (exit $?):"; tail -5 "$work/tf.log" | sed 's/^/    /'; }
fi
wait $writer
cat "$work/file.json" >&2
log "file written at +$((SECONDS - t0)) s"
active=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["active_bytes_per_token"])' "$work/file.json")

# S_PP (column 7) and S_TG (column 9) of the rows of a batched-bench table, as "B:S_TG" or S_PP.
col() { awk -F'|' -v c="$1" '$2 ~ /^ *[0-9]+ *$/ {gsub(/ /, "", $4); gsub(/ /, "", $c); print $4 ":" $c}'; }

if [[ ",$SKIP," != *",llama,"* ]]; then
  log "llama-batched-bench"
  "$LLAMA_BIN/llama-batched-bench" -m "$gguf" -ngl 99 -c 20000 -b 8192 -ub 2048 -npp 128 -ntg 128 \
    -npl 1,16,64 >"$work/llama_tg.txt" 2>"$work/llama.log" || echo "llama.cpp decode FAILED (exit $?)"
  "$LLAMA_BIN/llama-batched-bench" -m "$gguf" -ngl 99 -c 20000 -b 8192 -ub 8192 -npp 512 -ntg 1 \
    -npl 16 >"$work/llama_pp.txt" 2>>"$work/llama.log" || echo "llama.cpp prefill FAILED (exit $?)"
fi
if [[ ",$SKIP," != *",ingot,"* ]]; then
  # GPU: f16 weights (the F16 file as it is; a Q8_0 file dequantized, unless INGOT_DTYPE=blocks).
  dtype=${INGOT_DTYPE:-$([ "$BACKEND" = gpu ] && echo f16 || echo auto)}
  engine=(--backend "$BACKEND" --model "$gguf" --dtype "$dtype" --max-num-seqs 64
    --max-num-batched-tokens 8192 --kv-cache-memory 8GiB)
  log "ingot bench batched"
  timeout 120 "$INGOT" bench batched "${engine[@]}" --npp 128 --ntg 128 --npl 1,16,64 \
    >"$work/ingot_tg.txt" 2>"$work/ingot.log" || echo "ingot decode FAILED (exit $?)"
  timeout 60 "$INGOT" bench batched "${engine[@]}" --npp 512 --ntg 1 --npl 16 \
    >"$work/ingot_pp.txt" 2>>"$work/ingot.log" || echo "ingot prefill FAILED (exit $?)"
  grep -h "weights:" "$work/ingot.log" | head -1 | sed 's/^/ingot: /' || true
fi

# One markdown row per engine: prefill, decode b1/b16/b64, roofline share at b1.
row() { # NAME PREFILL B1 B16 B64
  local share="-"
  if [ -n "$3" ] && [ "$3" != "-" ]; then
    share=$(awk -v t="$3" -v a="$active" -v bw="$BW_GBS" 'BEGIN {printf "%.1f%%", 100 * t * a / (bw * 1e9)}')
  fi
  echo "| $1 | ${2:--} | ${3:--} | ${4:--} | ${5:--} | $share |"
}
pick() { grep "^$1:" "$2" 2>/dev/null | head -1 | cut -d: -f2; }
echo "Active weights per token at batch 1: $active bytes; roofline at $BW_GBS GB/s: $(awk -v a="$active" -v bw="$BW_GBS" 'BEGIN {printf "%.0f", bw * 1e9 / a}') tok/s"
echo
echo "| engine | prefill 16 x 512 (tok/s) | decode b1 | b16 | b64 | b1 share of roofline |"
echo "|---|---|---|---|---|---|"
if [ -f "$work/llama_tg.txt" ]; then
  col 9 <"$work/llama_tg.txt" >"$work/l_tg"
  col 7 <"$work/llama_pp.txt" >"$work/l_pp"
  row "llama.cpp $([ "$BACKEND" = gpu ] && echo CUDA || echo CPU) ($DTYPE)" "$(pick 16 "$work/l_pp")" "$(pick 1 "$work/l_tg")" "$(pick 16 "$work/l_tg")" "$(pick 64 "$work/l_tg")"
fi
if [ -f "$work/ingot_tg.txt" ]; then
  col 9 <"$work/ingot_tg.txt" >"$work/i_tg"
  col 7 <"$work/ingot_pp.txt" >"$work/i_pp"
  row "Ingot $BACKEND ($DTYPE file)" "$(pick 16 "$work/i_pp")" "$(pick 1 "$work/i_tg")" "$(pick 16 "$work/i_tg")" "$(pick 64 "$work/i_tg")"
fi
if [ -s "$work/tf.txt" ]; then
  "$PYTHON" - "$work/tf.txt" <<'EOF' >"$work/tf_row"
import json, sys
r = json.loads(open(sys.argv[1]).readline())
print(" ".join(f"{r.get(k, 0):.1f}" for k in ("prefill_16x512_tok_s", "decode_b1_tok_s", "decode_b16_tok_s", "decode_b64_tok_s")))
EOF
  read -r tp t1 t16 t64 <"$work/tf_row"
  row "transformers ($BENCH_DTYPE, eager)" "$tp" "$t1" "$t16" "$t64"
fi
echo
for f in llama_tg llama_pp ingot_tg ingot_pp; do
  [ -f "$work/$f.txt" ] || continue
  echo "<details><summary>$f</summary>"
  echo
  echo '```'
  grep -E '^\|' "$work/$f.txt" || tail -5 "$work/$f.txt"
  echo '```'
  echo "</details>"
done
[ -s "$work/tf.txt" ] && { echo; echo '```'; cat "$work/tf.txt"; echo '```'; }
log "done at +$((SECONDS - t0)) s"
