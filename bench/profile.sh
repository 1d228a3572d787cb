#!/usr/bin/env bash
# Profiles the receive hot path of kharbranth (Rust API and C ABI) next to raw
# tokio-tungstenite: `bash bench/profile.sh` (a few minutes; run bench/run.sh first or let this
# build). Writes target/bench/profile/*.txt and prints a summary.
#
# 1. callgrind: instructions per message, as the difference between a run of N2 and one of N1
#    messages (connection setup cancels out), and the top functions by self cost.
# 2. perf (software cpu-clock sampling; this VM has no hardware counters): where the time goes.
# 3. massif: what an idle connection holds on the heap.
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
PORT=${PORT:-9302}
out=target/bench/profile
mkdir -p "$out"
say() { printf '==> %s\n' "$*" >&2; }

BIN=$(cargo build --release -p kharbranth-bench --bench wsbench --message-format=json 2>/dev/null |
  python3 -c 'import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("executable") and m["target"]["name"] == "wsbench":
        print(m["executable"])')
# Second, as in run.sh: the C client gets the library as it ships.
cargo build --release --lib >/dev/null 2>&1
cc -O2 -g -Iinclude -o target/bench/c_client bench/c_client.c -Ltarget/release -lkharbranth \
  -Wl,-rpath,"$root/target/release" -lpthread

taskset -c 0 "$BIN" server port="$PORT" secs=1200 2>/dev/null &
srv=$!
trap 'kill "$srv" 2>/dev/null || true' EXIT
sleep 0.3
url=ws://127.0.0.1:$PORT

client_cmd() { # NAME N S -> the command line of that client
  local who=$1 n=$2 s=$3
  case $who in
    tt) echo "$BIN tt workload=push url=$url/push/$n/$s n=$n s=$s secs=600" ;;
    tt8k) echo "$BIN tt workload=push url=$url/push/$n/$s n=$n s=$s rbuf=8192 secs=600" ;;
    kh) echo "$BIN kh workload=push url=$url/push/$n/$s n=$n s=$s secs=600" ;;
    c) echo "target/bench/c_client push $url/push/$n/$s $n $s" ;;
    cpoll) echo "target/bench/c_client push $url/push/$n/$s $n $s workers=1 poll=1" ;;
    cdriven) echo "target/bench/c_client push $url/push/$n/$s $n $s driven=1" ;;
    c1) echo "target/bench/c_client push $url/push/$n/$s $n $s workers=1" ;;
    # The Python clients of bench/run.sh: the package (its C extension, built there) and picows.
    pkg) echo "python3 bench/py_pkg_client.py push $url/push/$n/$s $n $s" ;;
    pkgdriven) echo "python3 bench/py_pkg_client.py push $url/push/$n/$s $n $s driven=1" ;;
    picows) echo "python3 bench/py_others.py picows push $url/push/$n/$s $n $s" ;;
  esac
}

ir_total() { # callgrind out file -> total Ir
  callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}' || true
}

# instructions WHO S N1 N2: callgrind runs of N1 and N2 messages of S bytes; their difference
# per extra message goes to summary.jsonl, the top functions of the longer run beside it.
instructions() {
  local who=$1 s=$2 n1=$3 n2=$4 n a b
  say "callgrind $who push ${s} B"
  for n in $n1 $n2; do
    # shellcheck disable=SC2046
    taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$out/cg.$who.$s.$n" \
      $(client_cmd "$who" "$n" "$s") >/dev/null 2>&1 || say "callgrind run failed: $who $n"
  done
  a=$(ir_total "$out/cg.$who.$s.$n1"); b=$(ir_total "$out/cg.$who.$s.$n2")
  echo "{\"tool\":\"callgrind\",\"client\":\"$who\",\"size\":$s,\"instructions_per_msg\":$(( (b - a) / (n2 - n1) ))}" \
    | tee -a "$out/summary.jsonl"
  callgrind_annotate --threshold=99 "$out/cg.$who.$s.$n2" 2>/dev/null | head -60 \
    >"$out/callgrind.$who.$s.txt"
}

if command -v valgrind >/dev/null; then
  for who in tt tt8k kh c c1 cpoll cdriven; do
    instructions "$who" 64 50000 150000
    instructions "$who" 1024 20000 60000
  done
fi

# Python: the whole process (interpreter, extension, library threads) per message, the package
# against picows. Slow under callgrind (a minute or two a run): PY=0 leaves it out.
# The comparison clients are in the venv bench/deps.sh fills.
[ -x target/venv/bin/python3 ] && export PATH="$root/target/venv/bin:$PATH"
if command -v valgrind >/dev/null && [ "${PY:-1}" = 1 ] && python3 -c 'import picows' 2>/dev/null &&
  bash bench/py_ext.sh; then
  export KH_LIB="$root/target/release/libkharbranth.so"
  for who in pkg pkgdriven picows; do
    instructions "$who" 64 20000 60000
    instructions "$who" 1024 20000 60000
  done
fi

if perf stat -e cpu-clock true >/dev/null 2>&1; then
  for who in tt kh c; do
    say "perf $who push 64 B"
    # shellcheck disable=SC2046
    taskset -c 1 perf record -q -e cpu-clock -F 20000 -o "$out/perf.$who.data" -- \
      $(client_cmd "$who" 3000000 64) >/dev/null 2>&1 || true
    perf report -i "$out/perf.$who.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
      grep -v '^#' | grep -v '^$' | head -40 >"$out/perf.$who.txt" || true
  done
fi

if command -v valgrind >/dev/null; then
  say "massif: kharbranth, 1000 idle connections"
  taskset -c 1 valgrind --tool=massif --massif-out-file="$out/massif.kh.idle" --depth=12 \
    "$BIN" kh workload=idle url="$url/idle" n=1000 secs=300 >/dev/null 2>&1 || true
  ms_print "$out/massif.kh.idle" 2>/dev/null | head -150 >"$out/massif.kh.idle.txt" || true
fi
say "done: $out"
