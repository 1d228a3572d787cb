#!/usr/bin/env bash
# Installs the comparison clients of the benchmark if missing (idempotent, quiet when all is
# there): libwebsockets-dev + pkg-config (apt), picows + websockets (pip, in target/venv), ws
# (npm, under target/bench/node), matplotlib (pip, for bench/chart.py). Nothing here is needed
# to build or test the library itself.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! pkg-config --exists libwebsockets 2>/dev/null; then
  if command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq libwebsockets-dev pkg-config; } >/dev/null 2>&1 ||
      echo "bench/deps.sh: could not install libwebsockets-dev" >&2
  fi
fi
# Into the virtual environment scripts/deps.sh uses (target/venv), not the machine's python;
# bench/run.sh puts its bin/ first on PATH.
venv=target/venv
if command -v python3 >/dev/null; then
  { [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >/dev/null 2>&1; } &&
    { "$venv/bin/python" -c 'import picows, uvloop, websockets, matplotlib' 2>/dev/null ||
      "$venv/bin/python" -m pip install -q --disable-pip-version-check picows uvloop websockets \
        matplotlib >/dev/null 2>&1; } ||
    echo "bench/deps.sh: could not pip install picows uvloop websockets matplotlib into $venv" >&2
fi
if command -v npm >/dev/null && [ ! -d target/bench/node/node_modules/ws ]; then
  mkdir -p target/bench/node
  npm install --prefix target/bench/node ws@8 --no-audit --no-fund >/dev/null 2>&1 ||
    echo "bench/deps.sh: could not npm install ws" >&2
fi
exit 0
