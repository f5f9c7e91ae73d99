#!/usr/bin/env bash
# Ingot's wgpu backend beside llama.cpp (CUDA) on the lent NVIDIA GPU, on the very same GGUF
# files, in one device call (issue 12; replaces gpu_h200_prep.sh and gpu_h200_run.sh).
#
#   bench/gpu_vs_llamacpp.sh prep [BASELINE_INGOT]   here: fills the kit ($KIT, default .h200)
#   bash $KIT/gpu_vs_llamacpp.sh run                 there, with the kit carried (~8 minutes)
#
# The GPU machine can neither build Rust nor fetch anything, so `prep` puts in the kit (about
# 25 MB): bin/ingot.xz (this checkout, release, stripped) and bin/ingot-base.xz
# (BASELINE_INGOT, e.g. a build of the commit before, for a before/after in the same run);
# bin/kernels_bench.xz and tests/*.xz when EXTRA_BINS / TEST_BINS name them (the kernel
# timings of examples/kernels_bench.rs; test binaries, run before anything is timed); lib/
# (Debian's Vulkan loader and the glvnd libraries the NVIDIA ICD loads); llama.cpp.tar.xz (the
# llama-cpp-python 0.3.36 sdist's vendored llama.cpp, trimmed as ../shared/peers/README.md
# says: no docs, tests or unused ggml backends, only the Qwen2 and GPT-NeoX vocabularies
# under models/, the second for bench/gpu_moe_vs_peers.sh, run after this in one call);
# mkqwen_gguf.py (../shared/peers), mkqwen_q4_0.py and this script.
#
# `run`, in one call: llama.cpp is built with CUDA for sm_90 (llama-bench, llama-batched-bench,
# llama-quantize; with LLAMA_SAVE=1 the stripped bin/ comes back as $OUT/llama-bin.tar.xz.part*,
# and a kit holding those parts skips the ~5 minute build) on cores 0-12 while cores 13-15 make the F16 and Q4_0 files (Qwen2-0.5B's shapes, 24
# layers, the same random weights, the real Qwen2 vocabulary), run the kit's test binaries,
# check that greedy tokens from the Q4_0 file's blocks equal those from its exact f32 copy,
# and time Ingot (after, then before; decode = S_TG of 128-token prompts and 128 new tokens
# at batch 1/16/64, prefill = S_PP of 16 x 512). Ingot's figures are therefore taken beside
# the build, on cores it does not use. Then, on the quiet machine, llama-bench and
# llama-batched-bench on the same files. Markdown on stdout and in $OUT/gpu_vs_llamacpp.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MODE=${1:-}
log() { echo "[gpu_vs_llamacpp] $(date -u +%T) $*" >&2; }

prep() {
  cd "$HERE/.."
  local kit=${KIT:-$PWD/.h200} base=${1:-}
  rm -rf "$kit" && mkdir -p "$kit/bin" "$kit/lib" "$kit/tests"
  log "building ingot (release)"
  cargo build --release -q -p ingot-cli
  strip -o "$kit/bin/ingot" target/release/ingot
  if [ -n "$base" ]; then strip -o "$kit/bin/ingot-base" "$base"; fi
  # Optional: EXTRA_BINS (e.g. the kernels_bench example) into bin/, TEST_BINS (cargo test
  # binaries, run there with INGOT_REQUIRE_GPU=1) into tests/, their hash suffix dropped.
  for f in ${EXTRA_BINS:-}; do strip -o "$kit/bin/$(basename "$f")" "$f"; done
  for f in ${TEST_BINS:-}; do
    strip -o "$kit/tests/$(basename "$f" | sed 's/-[0-9a-f]\{16\}$//')" "$f"
  done
  xz -T2 -6 "$kit"/bin/*
  if compgen -G "$kit/tests/*" >/dev/null; then xz -T2 -6 "$kit"/tests/*; fi

  log "Vulkan loader and glvnd (Debian debs)"
  local debs
  debs=$(mktemp -d)
  if ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
    cp .gl/libvulkan1_*.deb .gl/libglvnd0_*.deb .gl/libglx0_*.deb .gl/libegl1_*.deb "$debs/"
  else
    (cd "$debs" && apt-get download libvulkan1 libglvnd0 libglx0 libegl1 >/dev/null)
  fi
  for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$debs/root"; done
  cp -a "$debs"/root/usr/lib/x86_64-linux-gnu/lib*.so* "$kit/lib/"
  rm -rf "$debs"

  log "llama.cpp sources, gguf-py and the Qwen2 vocabulary (llama-cpp-python 0.3.36 sdist)"
  local src
  src=$(mktemp -d)
  if [ -n "${SDIST:-}" ]; then
    cp "$SDIST" "$src/" # an already downloaded llama_cpp_python-0.3.36.tar.gz
  else
    python3 -m pip download -q --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d "$src"
  fi
  tar xzf "$src"/llama_cpp_python-0.3.36.tar.gz -C "$src"
  local l=$src/llama_cpp_python-0.3.36/vendor/llama.cpp
  rm -rf "$l"/docs "$l"/tests "$l"/benches "$l"/tools/ui "$l"/.git*
  # Qwen2's vocabulary (mkqwen_gguf.py) and GPT-NeoX's (gpu_moe_vs_peers.sh, OLMoE shapes).
  find "$l/models" -type f ! -name ggml-vocab-qwen2.gguf ! -name ggml-vocab-gpt-neox.gguf -delete
  for b in sycl opencl hexagon et metal cann musa vulkan webgpu zdnn openvino; do
    rm -rf "$l/ggml/src/ggml-$b"
  done
  tar cf - -C "$(dirname "$l")" llama.cpp | xz -T2 -6 >"$kit/llama.cpp.tar.xz"
  rm -rf "$src"

  cp ../shared/peers/mkqwen_gguf.py "$kit/" 2>/dev/null || cp /work/shared/peers/mkqwen_gguf.py "$kit/"
  cp bench/mkqwen_q4_0.py "$HERE/gpu_vs_llamacpp.sh" "$kit/"
  du -sh "$kit" >&2
}

run() {
  local kit=$HERE work=/tmp/gvl
  local report=${OUT:-/tmp}/gpu_vs_llamacpp.md
  mkdir -p "$work"
  exec > >(tee "$report")
  # Vulkan: the loader from the kit, the NVIDIA driver's ICD from the image (or one written
  # here for the driver's libGLX_nvidia).
  export LD_LIBRARY_PATH=$kit/lib:${LD_LIBRARY_PATH:-}
  if [ -z "${VK_DRIVER_FILES:-}" ]; then
    for f in /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json \
      /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd*.json; do
      if [ -f "$f" ]; then export VK_DRIVER_FILES=$f; break; fi
    done
  fi
  if [ -z "${VK_DRIVER_FILES:-}" ]; then
    local lib
    lib=$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia.so.0/ {print $NF; exit}')
    lib=${lib:-$(find / -name 'libGLX_nvidia.so.0' -not -path '/proc/*' 2>/dev/null | head -1)}
    printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' \
      "$lib" >"$work/nvidia_icd.json"
    export VK_DRIVER_FILES=$work/nvidia_icd.json
  fi
  log "VK_DRIVER_FILES=$VK_DRIVER_FILES"

  log "unpacking; llama.cpp build on cores 0-12"
  mkdir -p "$work/bin"
  for f in "$kit"/bin/*.xz; do xz -dc "$f" >"$work/bin/$(basename "$f" .xz)"; done
  chmod +x "$work"/bin/*
  tar xJf "$kit/llama.cpp.tar.xz" -C "$work"
  if compgen -G "$kit/llama-bin.tar.xz.part*" >/dev/null; then
    # A build an earlier call returned (LLAMA_SAVE=1): unpacked where it was built, so the
    # binaries' RPATH finds their libraries.
    log "llama.cpp: the carried build"
    mkdir -p "$work/llb"
    cat "$kit"/llama-bin.tar.xz.part* | tar xJf - -C "$work/llb"
    true &
  else
    (
      taskset -c 0-12 cmake -S "$work/llama.cpp" -B "$work/llb" -G Ninja -DGGML_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=OFF -DCMAKE_BUILD_TYPE=Release \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON >"$work/cmake.log" 2>&1 &&
        taskset -c 0-12 cmake --build "$work/llb" -j13 \
          --target llama-bench llama-batched-bench llama-quantize >>"$work/cmake.log" 2>&1 &&
        if [ "${LLAMA_SAVE:-0}" = 1 ] && [ -n "${OUT:-}" ]; then
          # Hand the build back (parts of 15 MiB: what a call may return per file) so a later
          # call carries it as $KIT/llama-bin.tar.xz.part* instead of building again.
          strip --strip-unneeded "$work"/llb/bin/* 2>/dev/null || true
          tar cf - -C "$work/llb" bin | xz -T4 -6 | split -b 15M -d - "$OUT/llama-bin.tar.xz.part"
        fi
    ) &
  fi
  local build=$!
  local t0=$SECONDS

  local side=(taskset -c 13-15)
  log "making the F16 and Q4_0 files (24 layers)"
  "${side[@]}" python3 "$kit/mkqwen_gguf.py" "$work/llama.cpp" "$work/q.gguf" 24 >&2 &
  local f16=$!
  "${side[@]}" python3 "$kit/mkqwen_q4_0.py" "$kit/mkqwen_gguf.py" "$work/llama.cpp" "$work/q4.gguf" 24 >&2 &
  local q4=$!

  echo "## Ingot (wgpu, Vulkan) vs llama.cpp (CUDA), same files, $(date -u '+%Y-%m-%d %H:%M') UTC"
  echo
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/GPU: /' || true
  echo "ingot: $("$work/bin/ingot" --version 2>/dev/null || echo ?); ingot-base: $("$work/bin/ingot-base" --version 2>/dev/null || echo none)"
  echo
  if compgen -G "$kit/tests/*.xz" >/dev/null; then
    echo "### Test binaries on this GPU (INGOT_REQUIRE_GPU=1)"
    echo
    for t in "$kit"/tests/*.xz; do
      local name
      name=$(basename "$t" .xz)
      xz -dc "$t" >"$work/$name" && chmod +x "$work/$name"
      log "test $name"
      if INGOT_REQUIRE_GPU=1 "${side[@]}" timeout 100 "$work/$name" --test-threads 3 >"$work/$name.log" 2>&1; then
        echo "- $name: $(grep -E '^test result' "$work/$name.log" | tail -1)"
      else
        echo "- $name: FAILED (exit $?)"
        grep -E 'panicked|FAILED|failed|error' "$work/$name.log" | head -20 | sed 's/^/    /'
      fi
    done
    echo
  fi
  if [ -x "$work/bin/kernels_bench" ]; then
    log "kernels_bench"
    echo "### Kernel timings (examples/kernels_bench.rs: timestamp queries, medians)"
    echo
    echo '```'
    "${side[@]}" timeout 100 "$work/bin/kernels_bench" 2>&1 |
      grep -E '^(adapter|kernel (copy|floor|gemv|gemv_q))' || echo "(exit $?)"
    echo '```'
    echo
  fi
  wait $f16
  wait $q4
  log "files made at +$((SECONDS - t0)) s"

  echo "### Greedy tokens from the Q4_0 file: blocks on the GPU vs its exact f32 copy"
  echo
  local gen=(generate --backend gpu --raw --temperature 0 --max-tokens 48 --model "$work/q4.gguf")
  "${side[@]}" "$work/bin/ingot" "${gen[@]}" --dtype blocks "Hello world, the answer is" \
    >"$work/gen_blocks.txt" 2>"$work/gen_blocks.log" || true
  "${side[@]}" "$work/bin/ingot" "${gen[@]}" --dtype f32 "Hello world, the answer is" \
    >"$work/gen_f32.txt" 2>"$work/gen_f32.log" || true
  grep -h "weights:" "$work/gen_blocks.log" "$work/gen_f32.log" | sed 's/^/    /' || true
  if [ -s "$work/gen_blocks.txt" ] && cmp -s "$work/gen_blocks.txt" "$work/gen_f32.txt"; then
    echo "- identical ($(wc -c <"$work/gen_blocks.txt") bytes of output)"
  else
    echo "- DIFFERENT or empty:"
    head -c 400 "$work/gen_blocks.txt" "$work/gen_f32.txt" "$work/gen_blocks.log" | sed 's/^/    /'
  fi
  echo

  local engine=(--backend gpu --max-num-seqs 64 --max-num-batched-tokens 8192 --kv-cache-memory 8GiB)
  bench() {
    local bin=$1 name=$2 file=$3 dtype=$4
    [ -x "$work/bin/$bin" ] || return 0
    log "$bin: $name"
    echo "#### $bin, $name, --dtype $dtype"
    echo
    echo '```'
    "${side[@]}" timeout 100 "$work/bin/$bin" bench batched "${engine[@]}" --model "$file" \
      --dtype "$dtype" --npp 128 --ntg 128 --npl 1,16,64 2>"$work/bench.log" || echo "(exit $?)"
    grep -h "weights:" "$work/bench.log" || true
    "${side[@]}" timeout 60 "$work/bin/$bin" bench batched "${engine[@]}" --model "$file" \
      --dtype "$dtype" --npp 512 --ntg 1 --npl 16 2>/dev/null | tail -n +3 || echo "(exit $?)"
    echo '```'
    echo
  }
  echo "### Ingot (\`ingot bench batched ${engine[*]} --npp 128 --ntg 128 --npl 1,16,64\`, then \`--npp 512 --ntg 1 --npl 16\`)"
  echo
  bench ingot "Q4_0 file, blocks kept on the GPU" "$work/q4.gguf" blocks
  # Without blocks on the GPU (what --dtype auto gives a GPU).
  bench ingot "Q4_0 file, dequantized to f16 at load" "$work/q4.gguf" f16
  bench ingot "F16 file" "$work/q.gguf" f16
  bench ingot-base "Q4_0 file" "$work/q4.gguf" auto
  bench ingot-base "F16 file" "$work/q.gguf" f16

  log "waiting for the llama.cpp build"
  if ! wait $build; then
    echo "llama.cpp build FAILED:"
    tail -30 "$work/cmake.log" | sed 's/^/    /'
    return 1
  fi
  log "llama.cpp built at +$((SECONDS - t0)) s"
  local L=$work/llb/bin
  echo "### llama.cpp (CUDA, sm_90)"
  echo
  echo '```'
  "$L/llama-bench" -m "$work/q.gguf,$work/q4.gguf" -ngl 99 -p 512 -n 128 -r 3 2>/dev/null || echo "(exit $?)"
  for f in q q4; do
    echo "# $f.gguf: decode"
    "$L/llama-batched-bench" -m "$work/$f.gguf" -ngl 99 -c 20000 -b 8192 -ub 2048 -npp 128 -ntg 128 \
      -npl 1,16,64 2>/dev/null | grep -E '^\|' || echo "(exit $?)"
    echo "# $f.gguf: prefill"
    "$L/llama-batched-bench" -m "$work/$f.gguf" -ngl 99 -c 20000 -b 8192 -ub 8192 -npp 512 -ntg 1 \
      -npl 16 2>/dev/null | grep -E '^\|' || echo "(exit $?)"
  done
  echo '```'
  log "done at +$((SECONDS - t0)) s"
}

case $MODE in
  prep) shift; prep "$@" ;;
  run) run ;;
  *) echo "usage: $0 prep [BASELINE_INGOT] | run" >&2; exit 2 ;;
esac
