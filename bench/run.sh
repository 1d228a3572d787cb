#!/usr/bin/env bash
# The benchmark suite: `bash bench/run.sh` (about 13 minutes on a 2-core VM).
#
# Builds everything in release mode, starts the benchmark server pinned to CPU 0, runs every
# client pinned to CPU 1 (and the echo workload once more on CPU 0, same core as the server),
# interleaving the clients (A B C A B C) for REPS repetitions, then writes bench/results.jsonl
# (every run) and bench/results.md (medians, ratios to raw tokio-tungstenite of the same run).
#
# Environment: REPS (default 5), SWEEP_REPS (default 3, for the read-buffer sweep), PORT
# (default 9301), QUICK=1 (smaller N, for trying it out), SKIP_SWEEP=1 (skip the read-buffer
# sweep), SKIP_IDLE=1 (skip the 10,000-connection runs), SKIP_SCALE=1 (skip the run of as many
# connections as the descriptor limit allows, up to SCALE_N=100000), NO_DEPS=1 (do not run
# bench/deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
REPS=${REPS:-5}
SWEEP_REPS=${SWEEP_REPS:-3}
PORT=${PORT:-9301}
QUICK=${QUICK:-0}
out_jsonl=bench/results.jsonl
out_md=bench/results.md
log=target/bench/run.log
mkdir -p target/bench
: >"$log"
started=$(date +%s)
say() { printf '==> %s\n' "$*" >&2; }

# 10,000 idle connections need 10,000+ descriptors in the client and in the server; the scale
# run takes as many as the hard limit allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10500 ]; then
  ulimit -n 10500 2>/dev/null || say "ulimit -n is $(ulimit -n): the idle workload may fail"
fi
nofile=$(ulimit -n)
[ "$nofile" = unlimited ] && nofile=1048576
SCALE_N=${SCALE_N:-100000}
# Each process needs one descriptor per connection, plus a margin for everything else.
[ "$SCALE_N" -gt $((nofile - 1000)) ] && SCALE_N=$((nofile - 1000))
# One (client address, server address, port) tuple has ~28,000 ephemeral ports, and one
# listener's accept queue overflows (SYNs dropped and retried a second later) when many
# thousands connect at once: one server address per 8,000 connections.
SCALE_HOSTS=$(( (SCALE_N + 7999) / 8000 ))

ncpu=$(nproc)
if [ "$ncpu" -ge 2 ]; then SRV_CPU=0; CLI_CPU=1; else SRV_CPU=0; CLI_CPU=0; fi

[ "${NO_DEPS:-0}" = 1 ] || bash bench/deps.sh
# The Python clients' packages are in the venv bench/deps.sh fills (when it exists).
[ -x target/venv/bin/python3 ] && export PATH="$root/target/venv/bin:$PATH"

say "building (release)"
BIN=$(cargo build --release -p kharbranth-bench --bench wsbench --message-format=json 2>>"$log" |
  python3 -c 'import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("executable") and m["target"]["name"] == "wsbench":
        print(m["executable"])')
# After the benchmark package, which builds kharbranth with other tokio-tungstenite features
# into the same target/release slot: the C and Python clients get the library as it ships.
cargo build --release --lib >>"$log" 2>&1
[ -x "$BIN" ] || { say "wsbench did not build; see $log"; exit 1; }
CC=${CC:-cc}
have_c=0
if [ -f include/kharbranth.h ] && [ -f target/release/libkharbranth.so ]; then
  $CC -O2 -Wall -Iinclude -o target/bench/c_client bench/c_client.c -Ltarget/release \
    -lkharbranth -Wl,-rpath,"$root/target/release" -lpthread >>"$log" 2>&1 && have_c=1
fi
have_lws=0
if pkg-config --exists libwebsockets 2>/dev/null; then
  # shellcheck disable=SC2046
  $CC -O2 -Wall -o target/bench/lws_client bench/lws_client.c \
    $(pkg-config --cflags --libs libwebsockets) >>"$log" 2>&1 && have_lws=1
else
  say "libwebsockets-dev not installed (apt-get install libwebsockets-dev): lws rows skipped"
fi
have_py=0
[ "$have_c" = 1 ] && command -v python3 >/dev/null && have_py=1
# The Python package's C extension, beside its sources (py_pkg_client.py imports python/);
# without it the package client runs its ctypes fallback and says so in its client name.
# Compiled here like the C clients (no setuptools needed), with the flags python/setup.py uses.
if [ "$have_py" = 1 ]; then
  CC=$CC bash bench/py_ext.sh >>"$log" 2>&1 ||
    say "the Python package's C extension did not build: its rows measure the ctypes fallback"
fi
have_picows=0; python3 -c 'import picows' 2>/dev/null && have_picows=1
have_uvloop=0; [ "$have_picows" = 1 ] && python3 -c 'import uvloop' 2>/dev/null && have_uvloop=1
have_websockets=0; python3 -c 'import websockets' 2>/dev/null && have_websockets=1
have_node=0
command -v node >/dev/null && (cd bench && node -e "try{require.resolve('ws')}catch(e){require('../target/bench/node/node_modules/ws')}") 2>/dev/null && have_node=1

say "starting the server on 127.0.0.1:$PORT (CPU $SRV_CPU)"
taskset -c "$SRV_CPU" "$BIN" server port="$PORT" addrs="$SCALE_HOSTS" secs=1800 2>>"$log" &
srv=$!
trap 'kill "$srv" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.05
done

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
# CPU time the hypervisor gave to other guests (the 'steal' column of /proc/stat) over the run:
# on a shared VM it moves every wall-clock figure, and the load average does not show it.
cpu_ticks() { awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8+$9, $9}' /proc/stat; }
ticks_start=$(cpu_ticks)
: >"$out_jsonl.tmp"
fails=0
# run LABEL SUITE PIN CPU command...: one client run; its JSON line, tagged, goes to the jsonl.
run() {
  local label=$1 suite=$2 pin=$3 cpu=$4 rep=$5
  shift 5
  local line
  if line=$(timeout 150 taskset -c "$cpu" "$@" 2>>"$log" | tail -n 1) && [ -n "$line" ]; then
    line=${line%\}}
    printf '%s,"label":"%s","suite":"%s","pin":"%s","rep":%s}\n' "$line" "$label" "$suite" \
      "$pin" "$rep" >>"$out_jsonl.tmp"
  else
    fails=$((fails + 1))
    say "FAILED: $label ($*)"
    printf '{"label":"%s","suite":"%s","pin":"%s","rep":%s,"ok":false,"failed":true}\n' \
      "$label" "$suite" "$pin" "$rep" >>"$out_jsonl.tmp"
  fi
}

url=ws://127.0.0.1:$PORT
if [ "$QUICK" = 1 ]; then
  push_sets=("100000 64" "20000 1024" "200 1048576" "100000 64 bin"); echo_n=2000; idle_n=1000
  SCALE_N=$((SCALE_N < 2000 ? SCALE_N : 2000)); SCALE_HOSTS=1
else
  push_sets=("1000000 64" "200000 1024" "2000 1048576" "1000000 64 bin"); echo_n=20000; idle_n=10000
fi
# The raw tokio-tungstenite client in each way its users write it; the fastest of them in a run
# is the floor every ratio is taken against.
raw_variants=("task, current-thread|loop=task rt=ct" "main, current-thread|loop=main rt=ct"
  "task, multi-thread|loop=task rt=mt" "main, multi-thread|loop=main rt=mt")

# Push: every client on CPU 1, interleaved.
for set in "${push_sets[@]}"; do
  read -r n s kind <<<"$set"
  path="/push/$n/$s"; kh_bin=(); c_bin=()
  if [ "$kind" = bin ]; then path="$path/bin"; kh_bin=(bin=1); c_bin=(bin=1); fi
  say "push $n x $s B${kind:+ ($kind)}"
  for rep in $(seq "$REPS"); do
    [ -z "$kind" ] && run "drain (server ceiling)" main cross "$CLI_CPU" "$rep" "$BIN" drain url="$url$path" n="$n" s="$s"
    for v in "${raw_variants[@]}"; do
      # shellcheck disable=SC2086
      run "tokio-tungstenite (${v%%|*})" main cross "$CLI_CPU" "$rep" "$BIN" tt workload=push url="$url$path" n="$n" s="$s" "${kh_bin[@]}" ${v#*|}
    done
    run "kharbranth Rust API" main cross "$CLI_CPU" "$rep" "$BIN" kh workload=push url="$url$path" n="$n" s="$s" "${kh_bin[@]}"
    [ "$have_c" = 1 ] && run "kharbranth C ABI" main cross "$CLI_CPU" "$rep" target/bench/c_client push "$url$path" "$n" "$s" "${c_bin[@]}"
    [ "$have_c" = 1 ] && run "kharbranth C ABI, 1 worker" main cross "$CLI_CPU" "$rep" target/bench/c_client push "$url$path" "$n" "$s" workers=1 "${c_bin[@]}"
    [ "$have_c" = 1 ] && run "kharbranth C ABI (poll)" main cross "$CLI_CPU" "$rep" target/bench/c_client push "$url$path" "$n" "$s" poll=1 "${c_bin[@]}"
    [ "$have_c" = 1 ] && run "kharbranth C ABI (poll), 1 worker" main cross "$CLI_CPU" "$rep" target/bench/c_client push "$url$path" "$n" "$s" poll=1 workers=1 "${c_bin[@]}"
    [ "$have_c" = 1 ] && run "kharbranth C ABI (poll), driven" main cross "$CLI_CPU" "$rep" target/bench/c_client push "$url$path" "$n" "$s" driven=1 "${c_bin[@]}"
    # The binary run compares the library with its floor only.
    [ -n "$kind" ] && continue
    [ "$have_py" = 1 ] && run "kharbranth Python ctypes" main cross "$CLI_CPU" "$rep" python3 bench/py_client.py push "$url/push/$n/$s" "$n" "$s"
    [ "$have_py" = 1 ] && run "kharbranth Python package (poll)" main cross "$CLI_CPU" "$rep" python3 bench/py_pkg_client.py push "$url/push/$n/$s" "$n" "$s"
    [ "$have_py" = 1 ] && run "kharbranth Python package (poll), driven" main cross "$CLI_CPU" "$rep" python3 bench/py_pkg_client.py push "$url/push/$n/$s" "$n" "$s" driven=1
    [ "$have_lws" = 1 ] && run "libwebsockets" main cross "$CLI_CPU" "$rep" target/bench/lws_client push "$PORT" "/push/$n/$s" "$n" "$s"
    [ "$have_picows" = 1 ] && run "picows (Python)" main cross "$CLI_CPU" "$rep" python3 bench/py_others.py picows push "$url/push/$n/$s" "$n" "$s"
    [ "$have_uvloop" = 1 ] && run "picows (Python, uvloop)" main cross "$CLI_CPU" "$rep" python3 bench/py_others.py picows-uvloop push "$url/push/$n/$s" "$n" "$s"
    [ "$have_websockets" = 1 ] && run "websockets (Python)" main cross "$CLI_CPU" "$rep" python3 bench/py_others.py websockets push "$url/push/$n/$s" "$n" "$s"
    [ "$have_node" = 1 ] && run "node ws" main cross "$CLI_CPU" "$rep" node bench/node_client.js push "$url/push/$n/$s" "$n" "$s"
    true
  done
done

# Echo: cross-core (client CPU 1) and same-core (client on the server's CPU 0).
for pin in cross same; do
  cpu=$CLI_CPU
  [ "$pin" = same ] && cpu=$SRV_CPU
  say "echo 64 B x $echo_n ($pin-core)"
  for rep in $(seq "$REPS"); do
    run "tokio-tungstenite (task, current-thread)" main "$pin" "$cpu" "$rep" "$BIN" tt workload=echo url="$url/echo" n="$echo_n" s=64
    run "tokio-tungstenite (main, current-thread)" main "$pin" "$cpu" "$rep" "$BIN" tt workload=echo url="$url/echo" n="$echo_n" s=64 loop=main
    run "kharbranth Rust API" main "$pin" "$cpu" "$rep" "$BIN" kh workload=echo url="$url/echo" n="$echo_n" s=64
    [ "$have_c" = 1 ] && run "kharbranth C ABI" main "$pin" "$cpu" "$rep" target/bench/c_client echo "$url/echo" "$echo_n" 64
    [ "$have_c" = 1 ] && run "kharbranth C ABI, 1 worker" main "$pin" "$cpu" "$rep" target/bench/c_client echo "$url/echo" "$echo_n" 64 workers=1
    [ "$have_c" = 1 ] && run "kharbranth C ABI (poll)" main "$pin" "$cpu" "$rep" target/bench/c_client echo "$url/echo" "$echo_n" 64 poll=1
    [ "$have_c" = 1 ] && run "kharbranth C ABI (poll), 1 worker" main "$pin" "$cpu" "$rep" target/bench/c_client echo "$url/echo" "$echo_n" 64 poll=1 workers=1
    [ "$have_c" = 1 ] && run "kharbranth C ABI (poll), driven" main "$pin" "$cpu" "$rep" target/bench/c_client echo "$url/echo" "$echo_n" 64 driven=1
    [ "$have_py" = 1 ] && run "kharbranth Python ctypes" main "$pin" "$cpu" "$rep" python3 bench/py_client.py echo "$url/echo" "$echo_n" 64
    [ "$have_py" = 1 ] && run "kharbranth Python package (poll)" main "$pin" "$cpu" "$rep" python3 bench/py_pkg_client.py echo "$url/echo" "$echo_n" 64
    [ "$have_py" = 1 ] && run "kharbranth Python package (poll), driven" main "$pin" "$cpu" "$rep" python3 bench/py_pkg_client.py echo "$url/echo" "$echo_n" 64 driven=1
    [ "$have_lws" = 1 ] && run "libwebsockets" main "$pin" "$cpu" "$rep" target/bench/lws_client echo "$PORT" /echo "$echo_n" 64
    [ "$have_picows" = 1 ] && run "picows (Python)" main "$pin" "$cpu" "$rep" python3 bench/py_others.py picows echo "$url/echo" "$echo_n" 64
    [ "$have_uvloop" = 1 ] && run "picows (Python, uvloop)" main "$pin" "$cpu" "$rep" python3 bench/py_others.py picows-uvloop echo "$url/echo" "$echo_n" 64
    [ "$have_websockets" = 1 ] && run "websockets (Python)" main "$pin" "$cpu" "$rep" python3 bench/py_others.py websockets echo "$url/echo" "$echo_n" 64
    [ "$have_node" = 1 ] && run "node ws" main "$pin" "$cpu" "$rep" node bench/node_client.js echo "$url/echo" "$echo_n" 64
    true
  done
done

# Idle connections on one manager (one process, one runtime).
if [ "${SKIP_IDLE:-0}" != 1 ]; then
  say "idle: $idle_n connections"
  for rep in $(seq "$REPS"); do
    run "tokio-tungstenite" main cross "$CLI_CPU" "$rep" "$BIN" tt workload=idle url="$url/idle" n="$idle_n"
    run "tokio-tungstenite rbuf=8KiB" main cross "$CLI_CPU" "$rep" "$BIN" tt workload=idle url="$url/idle" n="$idle_n" rbuf=8192
    run "kharbranth Rust API" main cross "$CLI_CPU" "$rep" "$BIN" kh workload=idle url="$url/idle" n="$idle_n"
    [ "$have_c" = 1 ] && run "kharbranth C ABI" main cross "$CLI_CPU" "$rep" target/bench/c_client idle "$url/idle" "$idle_n" 0
    true
  done
fi

# Scale: as many idle connections on one C manager as the descriptor limit allows (100,000 by
# default), spread over server addresses 127.0.0.1 to 127.0.0.$SCALE_HOSTS.
if [ "${SKIP_SCALE:-0}" != 1 ] && [ "$have_c" = 1 ] && [ "$SCALE_N" -gt 0 ]; then
  say "scale: $SCALE_N connections over $SCALE_HOSTS server address(es) (descriptor limit $nofile)"
  for rep in $(seq "${SCALE_REPS:-1}"); do
    run "kharbranth C ABI" scale cross "$CLI_CPU" "$rep" target/bench/c_client idle "$url/idle" "$SCALE_N" 0 hosts="$SCALE_HOSTS"
  done
fi

# Read-buffer sweep: kharbranth (Rust API) and tokio-tungstenite at the same buffer sizes.
if [ "${SKIP_SWEEP:-0}" != 1 ]; then
  say "read-buffer sweep"
  sweep_idle=$((idle_n / 5))
  for rep in $(seq "$SWEEP_REPS"); do
    for kib in 4 8 16 32 128; do
      rb=$((kib * 1024))
      for set in "${push_sets[@]:0:2}"; do
        read -r n s <<<"$set"
        run "tokio-tungstenite rbuf=${kib}KiB" sweep cross "$CLI_CPU" "$rep" "$BIN" tt workload=push url="$url/push/$n/$s" n="$n" s="$s" rbuf="$rb"
        run "kharbranth Rust API rbuf=${kib}KiB" sweep cross "$CLI_CPU" "$rep" "$BIN" kh workload=push url="$url/push/$n/$s" n="$n" s="$s" rbuf="$rb"
      done
      if [ "${SKIP_IDLE:-0}" != 1 ]; then
        run "tokio-tungstenite rbuf=${kib}KiB" sweep cross "$CLI_CPU" "$rep" "$BIN" tt workload=idle url="$url/idle" n="$sweep_idle" rbuf="$rb"
        run "kharbranth Rust API rbuf=${kib}KiB" sweep cross "$CLI_CPU" "$rep" "$BIN" kh workload=idle url="$url/idle" n="$sweep_idle" rbuf="$rb"
      fi
    done
  done
fi

load_end=$(cut -d' ' -f1-3 /proc/loadavg)
steal=$(printf '%s %s\n' "$ticks_start" "$(cpu_ticks)" |
  awk '{ d = $3 - $1; printf "%.1f", (d > 0 ? 100 * ($4 - $2) / d : 0) }')
elapsed=$(($(date +%s) - started))
mv "$out_jsonl.tmp" "$out_jsonl"
python3 bench/report.py "$out_jsonl" "$out_md" --nofile "$nofile" \
  --command "bash bench/run.sh" --reps "$REPS" --sweep-reps "$SWEEP_REPS" --elapsed "$elapsed" \
  --load-start "$load_start" --load-end "$load_end" --steal "$steal" --server-cpu "$SRV_CPU" --client-cpu "$CLI_CPU"
python3 bench/chart.py "$out_jsonl" bench/results.svg || say "no chart (matplotlib missing?)"
say "done in ${elapsed}s: $out_md, $out_jsonl, bench/results.svg ($fails failed run(s))"
