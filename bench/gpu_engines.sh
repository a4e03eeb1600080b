#!/usr/bin/env bash
# The GPU run planned for "engines at scale", in one command, on a machine with a GPU and the
# vLLM GPU build (pip install vllm vllm-router): two replicas of a 1-8 B base behind vllm-router
# (consistent hashing on X-Session-ID), the guide's tuned and untuned 0.1-1 B models each
# served by vLLM, then bench/engine_cbs_vs_sampling.py through the router with the guide
# behind the engines, and once more with the guide in process. All servers share one GPU
# (fractions of its memory); they stop when the script ends.
#
#   bash bench/gpu_engines.sh BASE TUNED UNTUNED [PROMPTS]
#   e.g. bash bench/gpu_engines.sh Qwen/Qwen2.5-1.5B ./small-dpo ./small 64
#
# Nothing is downloaded on a machine without a hub: give local folders.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?base model folder}; TUNED=${2:?tuned model folder}; UNTUNED=${3:?untuned model folder}
PROMPTS=${4:-64}
PY=${PYTHON:-python}
LOGS=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

serve() {  # serve MODEL NAME PORT MEMORY_FRACTION
  "$PY" -m vllm.entrypoints.openai.api_server --model "$1" --served-model-name "$2" \
    --port "$3" --gpu-memory-utilization "$4" --enable-prefix-caching \
    > "$LOGS/$2-$3.log" 2>&1 &
  pids+=($!)
}
wait_for() {
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$1/v1/models" >/dev/null && return 0; sleep 1; done
  echo "port $1 did not answer; logs in $LOGS" >&2; exit 1
}

serve "$BASE" base 8000 0.3
serve "$BASE" base 8001 0.3
serve "$TUNED" tuned 8002 0.15
serve "$UNTUNED" untuned 8003 0.15
for port in 8000 8001 8002 8003; do wait_for "$port"; done
vllm-router --port 9000 --policy consistent_hash \
  --worker-urls http://127.0.0.1:8000 http://127.0.0.1:8001 > "$LOGS/router.log" 2>&1 &
pids+=($!)
wait_for 9000

echo "== guide behind vLLM, base through the router (2 replicas)"
"$PY" bench/engine_cbs_vs_sampling.py --url http://127.0.0.1:9000/v1 --model base \
  --metrics http://127.0.0.1:8000 http://127.0.0.1:8001 --prompts "$PROMPTS" \
  --tuned "$TUNED@http://127.0.0.1:8002/v1" --untuned "$UNTUNED@http://127.0.0.1:8003/v1"
echo "== guide in process, base through the router"
"$PY" bench/engine_cbs_vs_sampling.py --url http://127.0.0.1:9000/v1 --model base \
  --metrics http://127.0.0.1:8000 http://127.0.0.1:8001 --prompts "$PROMPTS" \
  --tuned "$TUNED" --untuned "$UNTUNED" --concurrency 64
echo "== one replica, guide behind vLLM"
"$PY" bench/engine_cbs_vs_sampling.py --url http://127.0.0.1:8000/v1 --model base \
  --prompts "$PROMPTS" --modes ids --concurrency 64 \
  --tuned "$TUNED@http://127.0.0.1:8002/v1" --untuned "$UNTUNED@http://127.0.0.1:8003/v1"
echo "logs: $LOGS"
