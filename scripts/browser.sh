#!/usr/bin/env bash
# Set up the real browser the playground test drives: Debian's chromium (headless) and the
# Python playwright package in .venv (already a dev dependency), idempotently. Playwright's own
# browser download is never used (`playwright install` needs a host this machine cannot reach):
# the test launches /usr/bin/chromium.
#
# Where it cannot be set up (not Debian, no root, no network), the reason goes to
# .browser/UNAVAILABLE and the playground test skips with that one line; `make test` goes on.
# W2S_BROWSER=0 skips it on purpose.
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=.browser
mkdir -p "$DIR"
rm -f "$DIR/UNAVAILABLE"
if [ "${W2S_BROWSER:-1}" = "0" ]; then
  echo "W2S_BROWSER=0 was set when the browser would have been installed" > "$DIR/UNAVAILABLE"
  exit 0
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "browser: installing Debian's chromium (about a minute, once)" >&2
  SUDO=""
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
      echo "chromium is not installed and installing it needs root" > "$DIR/UNAVAILABLE"; exit 0
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium is not installed and apt-get is not here (not Debian)" > "$DIR/UNAVAILABLE"
    exit 0
  fi
  if ! ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        chromium) >"$DIR/install.log" 2>&1; then
    echo "apt-get could not install chromium (see $DIR/install.log)" > "$DIR/UNAVAILABLE"
    exit 0
  fi
fi
if ! .venv/bin/python -c "import playwright.sync_api" >/dev/null 2>&1; then
  if ! .venv/bin/python -m pip install -q playwright >"$DIR/pip.log" 2>&1; then
    echo "pip could not install playwright (see $DIR/pip.log)" > "$DIR/UNAVAILABLE"
    exit 0
  fi
fi
exit 0
