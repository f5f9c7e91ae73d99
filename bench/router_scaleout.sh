#!/usr/bin/env bash
# Scale-out benchmark: `ingot bench serve` through vllm-router (PyPI, pinned below) in front
# of 1, 2 and 3 `ingot serve` replicas on loopback, at rising concurrency, plus one replica
# without the router (the router's own cost). Prints the markdown table to stdout (paste it
# into docs/BENCHMARKS.md with the command, machine and date); progress goes to stderr.
#
#   bench/router_scaleout.sh                  # about 5 minutes on 2 cores
#
# Knobs (environment): REPLICAS (1,2,3), CONCURRENCY (1,4,16), INPUT_LEN (128), OUTPUT_LEN
# (32), POLICY (cache_aware), BACKEND (cpu), THREADS (CPU threads per replica: nproc),
# MAX_DURATION (seconds per point, 300), INGOT_BIN (default: builds target/release/ingot),
# JSON_DIR (keep the --json reports there; default a temporary folder).
#
# Every replica is a whole `ingot serve` with its own KV cache and THREADS threads. On one
# small machine the replicas share its cores, so more replicas cannot add compute: the
# figures show what the router costs and how it spreads load, not the speed-up that N
# machines (or N GPUs, one `--device` each) would give. Prompt lengths are counted with the
# first replica's /tokenize (`--tokenizer-url`): vllm-router does not forward /tokenize.
set -euo pipefail
cd "$(dirname "$0")/.."
REPLICAS=${REPLICAS:-1,2,3}
CONCURRENCY=${CONCURRENCY:-1,4,16}
INPUT_LEN=${INPUT_LEN:-128}
OUTPUT_LEN=${OUTPUT_LEN:-32}
POLICY=${POLICY:-cache_aware}
BACKEND=${BACKEND:-cpu}
THREADS=${THREADS:-$(nproc)}
MAX_DURATION=${MAX_DURATION:-300}
ROUTER_VERSION=0.1.17
NAME=SmolLM2-135M-Instruct

log() { echo "[bench] $*" >&2; }

if [ -z "${INGOT_BIN:-}" ]; then
  cargo build --release -q -p ingot-cli
  INGOT_BIN=target/release/ingot
fi
command -v vllm-router >/dev/null || {
  log "installing vllm-router==$ROUTER_VERSION"
  python3 -m pip install -q --disable-pip-version-check "vllm-router==$ROUTER_VERSION" >&2
}

work=$(mktemp -d)
json_dir=${JSON_DIR:-$work}
mkdir -p "$json_dir"
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_ready() { # URL PID LOG
  for _ in $(seq 600); do
    kill -0 "$2" 2>/dev/null || { log "$3 exited; its log:"; cat "$3" >&2; exit 1; }
    python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null && return 0
    sleep 0.5
  done
  log "$1 did not come up"; exit 1
}

start_replicas() { # N: sets urls
  urls=()
  for i in $(seq "$1"); do
    local port; port=$(free_port)
    RAYON_NUM_THREADS=$THREADS $INGOT_BIN serve --backend "$BACKEND" --host 127.0.0.1 --port "$port" \
      --max-num-seqs 64 --kv-cache-memory 512MiB >"$work/replica$i.log" 2>&1 &
    pids+=($!)
    wait_ready "http://127.0.0.1:$port/health" $! "$work/replica$i.log"
    urls+=("http://127.0.0.1:$port")
  done
}

bench() { # URL LABEL
  log "ingot bench serve: $2 (concurrency $CONCURRENCY)"
  $INGOT_BIN bench serve --url "$1" --tokenizer-url "${urls[0]}" --model "$NAME" --label "$2" \
    --concurrency "$CONCURRENCY" --num-prompts 8 --prompts-per-client 2 \
    --input-len "$INPUT_LEN" --output-len "$OUTPUT_LEN" --ignore-eos --seed 0 \
    --max-duration "$MAX_DURATION" --json "$json_dir/$2.json" >"$work/$2.txt"
}

reports=()
start_replicas 1
bench "${urls[0]}" "1 replica, no router"
reports+=("$json_dir/1 replica, no router.json")
stop_all

IFS=, read -ra counts <<<"$REPLICAS"
for n in "${counts[@]}"; do
  start_replicas "$n"
  port=$(free_port)
  vllm-router --host 127.0.0.1 --port "$port" --worker-urls "${urls[@]}" --policy "$POLICY" \
    --prometheus-port "$(free_port)" --retry-max-retries 5 --cb-failure-threshold 2 \
    --cb-timeout-duration-secs 10 --health-check-interval-secs 2 --health-failure-threshold 2 \
    >"$work/router.log" 2>&1 &
  pids+=($!)
  wait_ready "http://127.0.0.1:$port/health" $! "$work/router.log"
  label="$n replica$([ "$n" = 1 ] || echo s), router $POLICY"
  bench "http://127.0.0.1:$port" "$label"
  reports+=("$json_dir/$label.json")
  stop_all
done

$INGOT_BIN bench serve --from-json "${reports[@]}"
