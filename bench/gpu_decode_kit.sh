#!/usr/bin/env bash
# Issue 12, decode GEMV: one device call that checks and times this build beside a baseline
# build on the lent NVIDIA GPU (Vulkan), on the same F16 and Q4_0 files.
#
#   bench/gpu_decode_kit.sh prep KIT BASE_INGOT BASE_KERNELS_BENCH LLAMA_CPP_DIR   (here)
#   bash KIT/gpu_decode_kit.sh run                                             (there)
#
# `prep` (after `cargo build --release -p ingot-cli` and the backend-wgpu test and example
# builds) strips and xz-compresses into KIT: bin/ingot, bin/kernels_bench (this checkout),
# bin/ingot-base, bin/kernels_bench-base (the baseline), tests/* (backend-wgpu's GPU test
# binaries), gguf-py and the Qwen2 vocabulary from LLAMA_CPP_DIR (the llama-cpp-python
# 0.3.36 sdist's vendor/llama.cpp), mkqwen_gguf.py and mkqwen_q4_0.py. The Vulkan loader
# comes from the repository's .gl debs (carried beside the kit).
#
# `run`: makes the F16 and Q4_0 files (Qwen2-0.5B shapes, 24 layers, random weights, real
# vocabulary) on spare cores while the test binaries run (INGOT_REQUIRE_GPU=1); then, one at
# a time on the GPU: kernels_bench (base, then this build), `ingot bench batched` (this build
# and base, Q4_0 blocks and F16, decode at batch 1/16/64) and a per-kernel profile
# (INGOT_WGPU_PROFILE) of batch-1 decode. A summary on stdout, every log in
# $OUT/kit_logs.tgz.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
log() { echo "[kit] $(date -u +%T) $*" >&2; }

prep() {
  local kit=$1 base=$2 base_kb=$3 llama=$4
  local repo
  repo=$(cd "$HERE/.." && pwd)
  rm -rf "$kit" && mkdir -p "$kit/bin" "$kit/tests" "$kit/llama.cpp/models"
  strip -o "$kit/bin/ingot" "$repo/target/release/ingot"
  strip -o "$kit/bin/kernels_bench" "$repo/target/release/examples/kernels_bench"
  strip -o "$kit/bin/ingot-base" "$base"
  strip -o "$kit/bin/kernels_bench-base" "$base_kb"
  for t in ${TEST_BINS:-}; do
    strip -o "$kit/tests/$(basename "$t" | sed 's/-[0-9a-f]\{16\}$//')" "$t"
  done
  xz -T2 -6 "$kit"/bin/* "$kit"/tests/*
  cp -a "$llama/gguf-py" "$kit/llama.cpp/"
  cp "$llama/models/ggml-vocab-qwen2.gguf" "$kit/llama.cpp/models/"
  cp /work/shared/peers/mkqwen_gguf.py "$repo/bench/mkqwen_q4_0.py" "$HERE/gpu_decode_kit.sh" "$kit/"
  du -sh "$kit" >&2
}

run() {
  local kit=$HERE work=/tmp/kit out=/tmp/kit/out
  mkdir -p "$work/bin" "$out"
  # Every log, in one archive ($OUT takes few files).
  trap 'tar czf "${OUT:-/tmp}/kit_logs.tgz" -C /tmp/kit/out . 2>/dev/null' EXIT
  export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
  [ -f "$VK_DRIVER_FILES" ] || VK_DRIVER_FILES=$(ls /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json 2>/dev/null | head -1)
  log "VK_DRIVER_FILES=$VK_DRIVER_FILES"
  for f in "$kit"/bin/*.xz "$kit"/tests/*.xz; do xz -dc "$f" >"$work/bin/$(basename "$f" .xz)" & done
  wait
  chmod +x "$work"/bin/*
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  local side=(taskset -c 8-15)
  "${side[@]}" python3 "$kit/mkqwen_gguf.py" "$kit/llama.cpp" "$work/q.gguf" 24 >"$out/files.log" 2>&1 &
  local f16=$!
  "${side[@]}" python3 "$kit/mkqwen_q4_0.py" "$kit/mkqwen_gguf.py" "$kit/llama.cpp" "$work/q4.gguf" 24 >>"$out/files.log" 2>&1 &
  local q4=$!
  local gpu=(taskset -c 0-7)
  for t in ${KIT_TESTS:-quant conformance kernels fused}; do
    log "test $t"
    if INGOT_REQUIRE_GPU=1 "${gpu[@]}" timeout 120 "$work/bin/$t" --test-threads 4 >"$out/test_$t.log" 2>&1; then
      echo "test $t: $(grep -E '^test result' "$out/test_$t.log" | tail -1)"
    else
      echo "test $t: FAILED"; grep -E 'panicked|FAILED|failed|error' "$out/test_$t.log" | head -20
    fi
  done
  for b in ${KIT_KB:-kernels_bench-base kernels_bench}; do
    log "$b"
    "${gpu[@]}" timeout 150 "$work/bin/$b" >"$out/$b.log" 2>&1 || echo "$b: exit $?"
    echo "== $b"; grep -E '^(pipeline|kernel (copy|floor|gemv f16 W\[(151936|9728|896, 4864|1152)|gemv f16 W\[896, 896\] T=1 |gemv_q Q4_0))' "$out/$b.log"
  done
  wait $f16 $q4; log "files made"; ls -la "$work"/*.gguf
  local engine=(--backend gpu --max-num-seqs 64 --max-num-batched-tokens 8192 --kv-cache-memory 8GiB --npp 128 --ntg 128)
  for spec in "ingot q4 blocks" "ingot-base q4 blocks" "ingot q f16" "ingot-base q f16" "ingot q4 f16"; do
    set -- $spec
    log "bench $spec"
    echo "== bench $spec"
    "${gpu[@]}" timeout 100 "$work/bin/$1" bench batched "${engine[@]}" --model "$work/$2.gguf" --dtype "$3" \
      --npl ${KIT_NPL:-1,16,64} 2>"$out/bench_$1_$2.log" | grep -E '^\|' || echo "exit $?"
  done
  for spec in "q4 blocks" "q f16"; do
    set -- $spec
    log "profile $spec"
    INGOT_WGPU_PROFILE=$out/profile_$1.txt "${gpu[@]}" timeout 100 "$work/bin/ingot" bench batched "${engine[@]}" \
      --model "$work/$1.gguf" --dtype "$2" --npl 1 >/dev/null 2>"$out/profile_$1.log" || echo "profile exit $?"
    echo "== profile $spec"; head -40 "$out/profile_$1.txt"
  done
  log "done"
}

case ${1:-} in
  prep) shift; prep "$@" ;;
  run) run ;;
  *) echo "usage: $0 prep KIT BASE_INGOT BASE_KERNELS_BENCH LLAMA_CPP_DIR | run" >&2; exit 2 ;;
esac
