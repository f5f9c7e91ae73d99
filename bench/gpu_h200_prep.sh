#!/usr/bin/env bash
# Prepares the folder that bench/gpu_h200_run.sh needs on the GPU machine, where nothing can
# be built or fetched: run it here, then carry the folder (default `.h200/`, git-ignored,
# about 45 MB) with the device call.
#
#   bench/gpu_h200_prep.sh [BASELINE_INGOT]
#
# It holds: bin/ingot (this checkout, release, stripped) and, when BASELINE_INGOT names
# another build (e.g. /work/main/target/release/ingot at the commit before), bin/ingot-base,
# so one run measures before and after; lib/ (Debian's Vulkan loader and the glvnd
# libraries the NVIDIA ICD loads: the GPU image has neither; from .gl/ when a checkout keeps
# them there, else apt-get download); llama.cpp/ (gguf-py and the
# Qwen2 vocabulary from the llama-cpp-python 0.3.36 sdist, ../shared/peers/README.md);
# mkqwen_gguf.py (../shared/peers) and mkqwen_q4_0.py (here), which make the F16 and Q4_0
# files of the same random weights there.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=.h200
log() { echo "[prep] $*" >&2; }
rm -rf "$KIT" && mkdir -p "$KIT/bin" "$KIT/lib" "$KIT/llama.cpp/models"

log "building ingot (release)"
cargo build --release -q -p ingot-cli
strip -o "$KIT/bin/ingot" target/release/ingot
if [ -n "${1:-}" ]; then strip -o "$KIT/bin/ingot-base" "$1"; fi

log "Vulkan loader and glvnd (Debian debs)"
DEBS=$(mktemp -d)
if ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  cp .gl/libvulkan1_*.deb .gl/libglvnd0_*.deb .gl/libglx0_*.deb .gl/libegl1_*.deb "$DEBS/"
else
  (cd "$DEBS" && apt-get download libvulkan1 libglvnd0 libglx0 libegl1 >/dev/null)
fi
for d in "$DEBS"/*.deb; do dpkg-deb -x "$d" "$DEBS/root"; done
cp -a "$DEBS"/root/usr/lib/x86_64-linux-gnu/lib*.so* "$KIT/lib/"
rm -rf "$DEBS"

log "gguf-py and the Qwen2 vocabulary (llama-cpp-python sdist)"
SRC=$(mktemp -d)
python3 -m pip download -q --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d "$SRC"
tar xzf "$SRC"/llama_cpp_python-0.3.36.tar.gz -C "$SRC" --wildcards \
  '*/vendor/llama.cpp/gguf-py/*' '*/vendor/llama.cpp/models/ggml-vocab-qwen2.gguf'
cp -a "$SRC"/llama_cpp_python-0.3.36/vendor/llama.cpp/gguf-py "$KIT/llama.cpp/"
cp "$SRC"/llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-qwen2.gguf "$KIT/llama.cpp/models/"
rm -rf "$SRC"

cp ../shared/peers/mkqwen_gguf.py "$KIT/" 2>/dev/null || cp /work/shared/peers/mkqwen_gguf.py "$KIT/"
cp bench/mkqwen_q4_0.py "$KIT/"
du -sh "$KIT" >&2
