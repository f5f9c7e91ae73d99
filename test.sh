#!/usr/bin/env bash
# The one test command: every Rust test (unit, property, kernel, numerics, engine), then
# the server tests through real clients (Python `openai` package and raw HTTP) against a
# real `ingot serve` on loopback (and replicas behind vllm-router). Installs the Python test
# packages when missing.
set -euo pipefail
cd "$(dirname "$0")"

cargo test --release --workspace

if [ -d tests/python ]; then
  # `cargo test` above already built the binary for the CLI's own tests; build it only if not.
  bin="${CARGO_TARGET_DIR:-$PWD/target}/release/ingot"
  [ -x "$bin" ] || cargo build --release -p ingot-cli
  # pyzmq (libzmq) and msgspec (vLLM's encoder) receive and decode the KV events as vLLM's
  # consumers do (tests/python/test_kv_events.py).
  python3 -c "import openai, pytest, httpx, zmq, msgspec" 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check openai pytest httpx pyzmq msgspec
  # vllm-router (a Rust load balancer in a wheel) for the replicas-behind-a-router tests.
  python3 -m pip show vllm-router 2>/dev/null | grep -qx "Version: 0.1.17" ||
    python3 -m pip install -q --disable-pip-version-check vllm-router==0.1.17
  INGOT_BIN="$bin" python3 -m pytest -q tests/python
fi
