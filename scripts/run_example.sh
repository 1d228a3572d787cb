#!/usr/bin/env bash
# The README's "run" command: builds libkharbranth, the local feed server and the C example
# multi_feed, then runs multi_feed against a feed server started here (127.0.0.1, any free port;
# no internet needed). Exits with multi_feed's status.
#
#   scripts/run_example.sh            # multi_feed
#   scripts/run_example.sh basic      # or basic / raii
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
example="${1:-multi_feed}"
case "$example" in
  basic | multi_feed | driven | raii) ;;
  *) echo "usage: $0 [multi_feed|basic|driven|raii]" >&2; exit 2 ;;
esac

if ! command -v cmake >/dev/null 2>&1; then
  echo "cmake is missing: installing it (scripts/deps.sh)" >&2
  bash scripts/deps.sh
fi

echo "==> building the library, the feed server and the examples"
cmake -S c_examples -B target/c_examples -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build target/c_examples -j2 --target "$example"

echo "==> running $example against a local feed server"
exec bash c_examples/run_with_server.sh --timeout 120 \
  "$root/target/release/examples/feed_server" "$root/target/c_examples/$example"
