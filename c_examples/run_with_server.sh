#!/usr/bin/env bash
# Runs one example against a fresh local feed server and checks it.
#
#   run_with_server.sh [--expect REGEX] [--timeout SECS] SERVER_BINARY COMMAND [ARGS...]
#
# Starts SERVER_BINARY (examples/feed_server: binds 127.0.0.1, port 0), reads its port from the
# `LISTENING <port>` line, runs COMMAND ARGS... ws://127.0.0.1:<port>/ (the URL is appended and
# also exported as KH_URL), bounded by --timeout (default 120 s). Passes when the command exits
# 0 and, with --expect, its output matches REGEX (grep -E). The server is always stopped: it is
# killed on exit, and it runs with --exit-on-stdin-eof on a pipe held by this script, so it
# also goes when this script is SIGKILLed.
set -euo pipefail

expect=""
limit=120
while [ $# -gt 0 ]; do
  case "$1" in
    --expect) expect="$2"; shift 2 ;;
    --timeout) limit="$2"; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
if [ $# -lt 2 ]; then
  echo "usage: $0 [--expect REGEX] [--timeout SECS] SERVER_BINARY COMMAND [ARGS...]" >&2
  exit 2
fi
server="$1"
shift
if [ ! -x "$server" ]; then
  echo "run_with_server: no feed server at $server (cargo build --release --example feed_server)" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kh-run.XXXXXX")
server_pid=""
cleanup() {
  exec 3>&- 2>/dev/null || true
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$server_pid" 2>/dev/null || true
  fi
  [ -n "$server_pid" ] && wait "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkfifo "$work/stdin"
# The server can outlive us by at most --exit-after-secs even if this script is SIGKILLed.
"$server" --port 0 --exit-on-stdin-eof --exit-after-secs $((limit + 60)) <"$work/stdin" >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
exec 3>"$work/stdin"  # hold the write end: the server exits when it closes

port=""
for _ in $(seq 1 200); do  # up to 20 s
  if read -r word value <"$work/server.out" 2>/dev/null && [ "$word" = LISTENING ]; then
    port="$value"
    break
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "run_with_server: the feed server exited early:" >&2
    cat "$work/server.err" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "run_with_server: the feed server printed no LISTENING line within 20 s" >&2
  exit 1
fi

url="ws://127.0.0.1:${port}/"
export KH_URL="$url"
echo "run_with_server: feed server on $url; running: $* $url"
status=0
timeout --kill-after=10 "$limit" "$@" "$url" >"$work/out" 2>&1 3>&- || status=$?
cat "$work/out"
if [ "$status" -ne 0 ]; then
  [ "$status" -eq 124 ] && echo "run_with_server: timed out after ${limit} s" >&2
  echo "run_with_server: FAILED with exit status $status; server log:" >&2
  cat "$work/server.err" >&2
  exit 1
fi
if [ -n "$expect" ] && ! grep -Eq -- "$expect" "$work/out"; then
  echo "run_with_server: FAILED: output does not match /$expect/" >&2
  exit 1
fi
echo "run_with_server: ok"
