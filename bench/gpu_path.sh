#!/usr/bin/env bash
# The README's in-process GPU rows, in one command a lent GPU machine runs in under 10 minutes
# (nothing is downloaded there: give local folders, e.g. the SmolLM2 base and its family pair
# that `w2s zoo get smollm2 && w2s zoo family` build, carried over):
#   1. CBS / batched sampling of the same tokens, bf16 on cuda (bench/cbs_vs_sampling.py);
#   2. the same search through the CLI with the base over --device-map auto and the pair on
#      --guide-device (the last GPU), its stages and memory plan printed;
#   3. the memory plan against torch's measured peak for W*K 4, 16, 64 (bench/memory_plan.py).
#
#   bash bench/gpu_path.sh BASE TUNED UNTUNED
#   e.g. bash bench/gpu_path.sh ~/.cache/w2s/smollm2 ~/.cache/w2s/smollm2-family/tuned \
#            ~/.cache/w2s/smollm2-family/untuned
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?base model folder}; TUNED=${2:?tuned model folder}; UNTUNED=${3:?untuned model folder}
PY=${PYTHON:-python}
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
[ "$GPUS" -ge 1 ] || { echo "gpu_path: torch sees no CUDA GPU" >&2; exit 2; }
GUIDE_DEVICE="cuda:$((GPUS - 1))"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

echo "== 1. CBS / batched sampling, bf16, cuda"
timeout 240 "$PY" bench/cbs_vs_sampling.py --base "$BASE" --tuned "$TUNED" --untuned "$UNTUNED" \
  --device cuda --dtype bfloat16 --prompts 16 --max-new 64 --l 5 2 --repeats 3

echo "== 2. --device-map auto, the pair on $GUIDE_DEVICE ($GPUS GPU(s))"
printf '{"prompt": "The movie was"}\n{"prompt": "I watched this film"}\n' > /tmp/gpu_path_prompts.jsonl
timeout 120 "$PY" -m w2s.cli generate --base "$BASE" --tuned "$TUNED" --untuned "$UNTUNED" \
  --dtype bfloat16 --device-map auto --guide-device "$GUIDE_DEVICE" --method cbs \
  --w 4 --k 4 --l 5 --max-new-tokens 64 --seed 0 --prompts-file /tmp/gpu_path_prompts.jsonl

echo "== 3. the memory plan against the measured peak"
timeout 180 "$PY" bench/memory_plan.py --base "$BASE" --pair "$TUNED" "$UNTUNED" --prompts 8 \
  --tokens 256 --wk 4 16 64
