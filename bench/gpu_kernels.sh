#!/usr/bin/env bash
# Per-verb timings of the wgpu backend on Qwen2-0.5B shapes (see
# crates/backend-wgpu/examples/kernels_bench.rs). Needs a GPU; set
# INGOT_WGPU_ALLOW_SOFTWARE=1 to run it on lavapipe (slow, for checking the script only).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -p ingot-backend-wgpu --example kernels_bench "$@"
