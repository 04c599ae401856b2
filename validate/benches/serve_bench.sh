#!/usr/bin/env bash
# The serving table of docs/BENCHMARKS.md: validate/benches/loadtest.py against `python -m msn_deploy.engines.serve` with
# one replica (batching on and off) and two replicas, one configuration after the other on this machine.
#   bash validate/benches/serve_bench.sh MODEL IMAGES_DIR OUT_DIR [REQUESTS] [CONCURRENCY]
set -euo pipefail
if [ $# -lt 3 ] || [ ! -e "$1" ] || [ ! -d "$2" ]; then
  echo "usage: bash validate/benches/serve_bench.sh MODEL IMAGES_DIR OUT_DIR [REQUESTS] [CONCURRENCY]" >&2
  exit 2
fi
model=$1 images=$2 out=$3 requests=${4:-48} concurrency=${5:-1,4,16}
port=${MSN_BENCH_PORT:-8765}
mkdir -p "$out"

serve_and_load() {
  local name=$1
  shift
  python -m msn_deploy.engines.serve "$model" --port "$port" "$@" >"$out/$name.serve.log" 2>&1 &
  local pid=$!
  python - "$port" "$pid" <<'PY'
import os, sys, time, requests
port, pid = sys.argv[1], int(sys.argv[2])
for _ in range(240):
    try:
        if requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=5).status_code == 200:
            sys.exit(0)
    except requests.RequestException:
        pass
    if not os.path.exists(f"/proc/{pid}"):
        sys.exit("msn_deploy.engines.serve exited; see its log")
    time.sleep(0.5)
sys.exit("no healthy service after 120 s")
PY
  msn-loadtest --url "http://127.0.0.1:$port" --images "$images" --requests "$requests" \
    --concurrency "$concurrency" --out "$out/$name" || true
  kill -TERM "$pid"
  wait "$pid"
}

serve_and_load one_replica --replicas 1 --cpus-per-replica 2 --max-batch 4
serve_and_load two_replicas --replicas 2 --cpus-per-replica 1 --max-batch 4
serve_and_load one_replica_no_batching --replicas 1 --cpus-per-replica 2 --max-batch 1
