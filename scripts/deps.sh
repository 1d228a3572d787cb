#!/usr/bin/env bash
# Installs what the tests need and a fresh machine lacks. Idempotent and quiet when all is there.
set -euo pipefail
need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
python3 - <<'PY' || python3 -m pip install -q --disable-pip-version-check websockets pytest
import websockets, pytest
PY
