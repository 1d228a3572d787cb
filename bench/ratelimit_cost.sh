#!/usr/bin/env bash
# What a send rate limit costs per send: instructions per message (callgrind) of
# bench/send_cost.rs sending 64-byte text messages with no limit and with a limit set so high
# it never binds, each as the difference between a run of N2 and one of N1 messages (setup
# cancels out). `bash bench/ratelimit_cost.sh` (a minute or two after the release build).
set -eu
cd "$(dirname "$0")/.."
N1=${N1:-20000}
N2=${N2:-60000}
out=target/bench/ratelimit
mkdir -p "$out"
cargo build --release --example send_cost >/dev/null 2>&1
BIN=${CARGO_TARGET_DIR:-target}/release/examples/send_cost
ir_total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'; }
declare -A per
for mode in none limit; do
  for n in $N1 $N2; do
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.$mode.$n" "$BIN" "$mode" "$n" >/dev/null 2>&1
  done
  a=$(ir_total "$out/cg.$mode.$N1"); b=$(ir_total "$out/cg.$mode.$N2")
  per[$mode]=$(( (b - a) / (N2 - N1) ))
  echo "$mode: $a Ir at $N1, $b Ir at $N2: ${per[$mode]} instructions per send"
done
echo "the limiter costs $(( per[limit] - per[none] )) instructions per send (64 B text, limit never binding)"
