#!/usr/bin/env bash
# Installs what the tests need and a fresh machine lacks. Idempotent and quiet when all is there.
#
# The Python test packages (websockets for tests/interop_python.rs, pytest for tests/python/)
# go into a virtual environment, target/venv, never into the machine's interpreter;
# scripts/test.sh puts target/venv/bin first on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
# tests/install/run.sh builds programs against the installed library with pkg-config.
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Quiet unless it fails (apt-get prints debconf notices on stderr even with -qq).
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq "$@"; } >"$log" 2>&1; then
    echo "scripts/deps.sh: apt-get install $* failed:" >&2
    cat "$log" >&2
    exit 1
  fi
}
[ ${#need_apt[@]} -eq 0 ] || apt_install "${need_apt[@]}"

venv=target/venv
py="$venv/bin/python"
if ! "$py" -c 'import websockets, pytest' >/dev/null 2>&1; then
  # A venv whose interpreter is gone (python upgraded) is made again.
  if ! "$py" -c '' >/dev/null 2>&1; then
    rm -rf "$venv"
    mkdir -p target
    # Debian's own python3 needs python3-venv for this; pyenv's has it built in.
    if ! python3 -m venv "$venv" >"$log" 2>&1; then
      rm -rf "$venv"
      apt_install python3-venv
      python3 -m venv "$venv" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    fi
  fi
  if ! "$py" -m pip install -q --disable-pip-version-check websockets pytest >"$log" 2>&1; then
    echo "scripts/deps.sh: pip install websockets pytest into $venv failed:" >&2
    cat "$log" >&2
    exit 1
  fi
fi
