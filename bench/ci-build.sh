#!/usr/bin/env bash
# What CI checks of the benchmark code: it builds, it does not run the suite (that is
# `bash bench/run.sh`). Builds the Rust server/clients (the workspace member kharbranth-bench,
# in benches/wsbench), compiles the C clients against include/kharbranth.h (and libwebsockets
# when installed), and checks the syntax of the scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p kharbranth-bench --no-run
cc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -Werror -Iinclude -c bench/c_client.c -o /dev/null
if pkg-config --exists libwebsockets 2>/dev/null; then
  # shellcheck disable=SC2046
  cc -O2 -Wall -Wextra -Werror $(pkg-config --cflags libwebsockets) -c bench/lws_client.c -o /dev/null
fi
python3 -m py_compile bench/py_client.py bench/py_others.py bench/report.py
for s in bench/*.sh; do bash -n "$s"; done
if command -v node >/dev/null; then node --check bench/node_client.js; fi
echo "bench code builds"
