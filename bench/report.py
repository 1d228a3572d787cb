#!/usr/bin/env python3
"""Turns bench/results.jsonl into bench/results.md: medians per client and workload, and each
client's ratio to the floor: the fastest variant of raw tokio-tungstenite measured in the same
run."""
import argparse
import datetime
import json
import platform
import re
import statistics
import subprocess
from collections import defaultdict

ap = argparse.ArgumentParser()
ap.add_argument("jsonl")
ap.add_argument("md")
ap.add_argument("--command", default="bash bench/run.sh")
ap.add_argument("--reps", default="?")
ap.add_argument("--sweep-reps", default="?")
ap.add_argument("--elapsed", default="?")
ap.add_argument("--load-start", default="?")
ap.add_argument("--load-end", default="?")
ap.add_argument("--steal", default="?")
ap.add_argument("--server-cpu", default="0")
ap.add_argument("--client-cpu", default="1")
ap.add_argument("--nofile", default="?")
a = ap.parse_args()

rows = [json.loads(l) for l in open(a.jsonl) if l.strip()]
groups = defaultdict(list)
failed = defaultdict(int)
for r in rows:
    if r.get("failed") or not r.get("ok", False):
        failed[(r.get("suite"), r.get("workload", "?"), r.get("pin"), r["label"])] += 1
        if r.get("failed"):
            continue
    groups[(r["suite"], r["workload"], r["pin"], r["label"])].append(r)


def med(rs, key):
    vals = [float(r[key]) for r in rs if key in r]
    return statistics.median(vals) if vals else None


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def fmt_rate(v):
    if v is None:
        return "–"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e3:
        return f"{v / 1e3:.1f} k"
    return f"{v:.0f}"


def ratio(v, base, invert=False):
    if v is None or not base:
        return "–"
    return f"{(base / v if invert else v / base):.2f}×"


def versions():
    lock = open("Cargo.lock").read() if True else ""
    tt = re.search(r'name = "tokio-tungstenite"\nversion = "([^"]+)"', lock)
    return tt.group(1) if tt else "?"


RAW = "tokio-tungstenite ("


def floor(suite, wl, pin, key, best=max):
    """The fastest raw tokio-tungstenite variant of a workload: (label, median)."""
    cands = [(med(rs, key), k[3]) for k, rs in groups.items()
             if k[:3] == (suite, wl, pin) and k[3].startswith(RAW) and med(rs, key)]
    if not cands:
        return None, None
    v, label = best(cands)
    return label, v


order = ["drain (server ceiling)",
         "tokio-tungstenite (task, current-thread)", "tokio-tungstenite (main, current-thread)",
         "tokio-tungstenite (task, multi-thread)", "tokio-tungstenite (main, multi-thread)",
         "tokio-tungstenite", "tokio-tungstenite rbuf=8KiB",
         "kharbranth Rust API", "kharbranth C ABI", "kharbranth C ABI, 1 worker",
         "kharbranth C ABI (poll)", "kharbranth C ABI (poll), 1 worker",
         "kharbranth C ABI (poll), driven", "kharbranth Python ctypes",
         "kharbranth Python package (poll)", "kharbranth Python package (poll), driven",
         "libwebsockets",
         "picows (Python)", "picows (Python, uvloop)", "websockets (Python)", "node ws"]


def sort_labels(labels):
    return sorted(labels, key=lambda l: (order.index(l) if l in order else len(order), l))


out = []
w = out.append
model = sh("lscpu | grep 'Model name' | sed 's/Model name: *//'")
w("# Benchmark results\n")
w(f"- Command: `{a.command}` (REPS={a.reps}, SWEEP_REPS={a.sweep_reps}; {a.elapsed} s in all)")
w(f"- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
w(f"- Machine: `nproc` = {sh('nproc')}, {model}, {sh('uname -r')}, "
  f"{platform.python_implementation()} {platform.python_version()}")
w(f"- Load average (1/5/15 min) at start: {a.load_start}; at end: {a.load_end}. CPU time "
  f"stolen by the hypervisor over the run: {a.steal} %. "
  "Other work on the machine skews single runs: read ratios, not absolute numbers.")
w(f"- Pinning: server on CPU {a.server_cpu}, clients on CPU {a.client_cpu} (cross-core); "
  f"same-core echo runs the client on CPU {a.server_cpu} too.")
w(f"- tokio-tungstenite {versions()} with its default config (128 KiB read buffer) and "
  "`TCP_NODELAY`, in four variants: the receive loop in a spawned task or in the future "
  "`block_on` polls (`main`), on a current-thread runtime or a multi-thread one with one worker. "
  "The floor of each workload is the fastest of them in this run; every ratio is to it. "
  "Everything, the benchmark clients included, is built with the release profile: fat LTO, "
  "one codegen unit. kharbranth's defaults (src/config.rs): a 4 KiB tungstenite buffer, reads "
  "batched up to `read_buffer_size` (64 KiB) only while data keeps coming; `rbuf` of the C and "
  "Python clients: 0 = the library's default. Medians of the repetitions; clients interleaved "
  "(A B C A B C).")
w("- Push: the server writes N pre-encoded frames then a 3-byte marker; time from the first "
  "message to the marker. MB/s counts payload bytes (10^6). Echo: one 64-byte text message "
  "in flight; the kharbranth, C and Python clients send the next message from inside the "
  "receive callback.\n")

clients = sorted({r["client"] for r in rows if "client" in r})
w("- Client libraries as they reported themselves: " + ", ".join(f"`{c}`" for c in clients) + "\n")

# The summary the README shows: one row per client, ratios to each workload's floor.
def summary():
    cols = [("push_64B", "cross", "msgs_per_sec", "push 64 B"),
            ("push_1KiB", "cross", "msgs_per_sec", "push 1 KiB"),
            ("push_64B_bin", "cross", "msgs_per_sec", "push 64 B binary"),
            ("echo_64B", "cross", "p50_us", "echo p50 cross-core"),
            ("echo_64B", "same", "p50_us", "echo p50 same-core")]
    floors = {}
    for wl, pin, key, _ in cols:
        floors[(wl, pin)] = floor("main", wl, pin, key, best=min if key == "p50_us" else max)
    labels = sort_labels({k[3] for k in groups if k[0] == "main" and k[1] in
                          {c[0] for c in cols} and k[3] != "drain (server ceiling)"})
    w("## Summary\n")
    w("Medians; in brackets the ratio to the floor of the column (throughput: higher is better; "
      "latency: the client's p50 over the floor's, lower is better).\n")
    w("| client | " + " | ".join(c[3] for c in cols) + " | idle RSS / connection |")
    w("| --- | " + " | ".join("---:" for _ in cols) + " | ---: |")
    for label in labels:
        cells = []
        for wl, pin, key, _ in cols:
            v = med(groups.get(("main", wl, pin, label), []), key)
            flabel, base = floors[(wl, pin)]
            if v is None:
                cells.append("")
            elif key == "p50_us":
                cells.append(f"{v:.1f} µs ({v / base:.2f}×)" if base else f"{v:.1f} µs")
            else:
                r = f" ({v / base:.2f}×)" if base else ""
                cells.append(f"{fmt_rate(v)}/s{r}")
        # The raw idle client spawns a task per connection on a current-thread runtime.
        idle_label = "tokio-tungstenite" if label == RAW + "task, current-thread)" else label
        idle = med(groups.get(("main", "idle", "cross", idle_label), []), "rss_per_conn_kib")
        name = f"**{label}**" if label.startswith("kharbranth") and "Python" not in label else label
        w(f"| {name} | " + " | ".join(cells) + f" | {f'{idle:.1f} KiB' if idle else ''} |")
    w("\nFloors: " + "; ".join(f"{c[3]}: {floors[(c[0], c[1])][0]}" for c in cols
                               if floors[(c[0], c[1])][0]) + ".\n")


summary()

# Throughput tables.
for wl in ["push_64B", "push_1KiB", "push_1MiB", "push_64B_bin"]:
    keys = [k for k in groups if k[0] == "main" and k[1] == wl]
    if not keys:
        continue
    floor_label, base = floor("main", wl, "cross", "msgs_per_sec")
    title = wl.replace("_", " ").replace(" bin", ", binary frames")
    w(f"## {title}\n")
    w(f"Floor: {floor_label}.\n")
    w("| client | msgs/s | MB/s | vs floor | runs |")
    w("|---|---:|---:|---:|---:|")
    for label in sort_labels({k[3] for k in keys}):
        rs = groups[("main", wl, "cross", label)]
        m = med(rs, "msgs_per_sec")
        mb = med(rs, "mb_per_sec")
        bad = failed.get(("main", wl, "cross", label), 0)
        w(f"| {label} | {fmt_rate(m)} | {mb:.0f} | {ratio(m, base)} | {len(rs)}"
          f"{f' ({bad} not ok)' if bad else ''} |")
    if wl == "push_64B":
        w("\nThe drain row is the server's ceiling: it only counts bytes. At 1 KiB and 1 MiB "
          "loopback TCP itself is the limit, and the drain is no faster than a client with "
          "large reads.")
    w("")

for pin in ["cross", "same"]:
    keys = [k for k in groups if k[0] == "main" and k[1] == "echo_64B" and k[2] == pin]
    if not keys:
        continue
    floor_label, base = floor("main", "echo_64B", pin, "p50_us", best=min)
    w(f"## echo 64 B, {pin}-core (round trip, µs)\n")
    w(f"Floor: {floor_label}.\n")
    w("| client | p50 µs | p99 µs | msgs/s | p50 vs floor | runs |")
    w("|---|---:|---:|---:|---:|---:|")
    for label in sort_labels({k[3] for k in keys}):
        rs = groups[("main", "echo_64B", pin, label)]
        p50, p99 = med(rs, "p50_us"), med(rs, "p99_us")
        w(f"| {label} | {p50:.1f} | {p99:.1f} | {fmt_rate(med(rs, 'msgs_per_sec'))} | "
          f"{ratio(p50, base)} | {len(rs)} |")
    w("")

keys = [k for k in groups if k[0] == "main" and k[1] == "idle"]
if keys:
    base = med(groups.get(("main", "idle", "cross", "tokio-tungstenite"), []), "rss_per_conn_kib")
    n = int(med(groups[keys[0]], "conns") or 0)
    w(f"## {n:,} idle connections in one process\n")
    w("| client | RSS per connection (KiB) | time to open all (s) | threads | "
      "RSS vs tokio-tungstenite | runs |")
    w("|---|---:|---:|---:|---:|---:|")
    for label in sort_labels({k[3] for k in keys}):
        rs = groups[("main", "idle", "cross", label)]
        rss = med(rs, "rss_per_conn_kib")
        w(f"| {label} | {rss:.1f} | {med(rs, 'open_secs'):.2f} | {med(rs, 'threads'):.0f} | "
          f"{ratio(rss, base)} | {len(rs)} |")
    w("\nRSS per connection is the VmRSS growth from before the first connect to 1 s after the "
      "last one opened, divided by the connections; every connection is being read. "
      "Threads: the whole client process (the Rust clients have a main thread and a watchdog "
      "thread on a current-thread runtime; the C client runs the library's own runtime).\n")

keys = [k for k in groups if k[0] == "scale"]
if keys:
    w("## Scale: idle connections on one C manager\n")
    w(f"As many as the descriptor limit of this machine allows (`ulimit -n` = {a.nofile}; "
      "100,000 where it is higher), spread over several 127.0.0.x server addresses.\n")
    w("| client | connections | RSS per connection (KiB) | time to open all (s) | "
      "`kh_manager_free` (s) | threads |")
    w("|---|---:|---:|---:|---:|---:|")
    for k in keys:
        rs = groups[k]
        w(f"| {k[3]} | {med(rs, 'conns'):,.0f} | {med(rs, 'rss_per_conn_kib'):.1f} | "
          f"{med(rs, 'open_secs'):.2f} | {med(rs, 'free_secs'):.2f} | {med(rs, 'threads'):.0f} |")
    w("")

# Read-buffer sweep.
sweep = [k for k in groups if k[0] == "sweep"]
if sweep:
    w("## Read-buffer size sweep (kharbranth Rust API vs tokio-tungstenite at the same size)\n")
    w("For tokio-tungstenite the size is its read buffer; for kharbranth it is "
      "`Config::read_buffer_size`, the largest batched read while busy (4 KiB or less: no "
      "batching), over a 4 KiB tungstenite buffer.\n")
    w("| read buffer | tt push 64 B | kh push 64 B | kh/tt | tt push 1 KiB | kh push 1 KiB | "
      "kh/tt | tt idle KiB/conn | kh idle KiB/conn |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kib in [4, 8, 16, 32, 128]:
        def g(who, wl, key):
            return med(groups.get(("sweep", wl, "cross", f"{who} rbuf={kib}KiB"), []), key)
        cells = []
        for wl in ["push_64B", "push_1KiB"]:
            t, k = g("tokio-tungstenite", wl, "msgs_per_sec"), g("kharbranth Rust API", wl,
                                                                  "msgs_per_sec")
            cells += [fmt_rate(t), fmt_rate(k), ratio(k, t)]
        ti = g("tokio-tungstenite", "idle", "rss_per_conn_kib")
        ki = g("kharbranth Rust API", "idle", "rss_per_conn_kib")
        cells += [f"{ti:.1f}" if ti is not None else "–", f"{ki:.1f}" if ki is not None else "–"]
        w(f"| {kib} KiB | " + " | ".join(cells) + " |")
    sn = [r for k in sweep if k[1] == "idle" for r in groups[k]]
    if sn:
        w(f"\nIdle columns: {int(sn[0].get('conns', 0)):,} connections per run.\n")

# The targets, checked against this run.
def m_(wl, pin, label, key):
    return med(groups.get(("main", wl, pin, label), []), key)


checks = []
for wl in ["push_64B", "push_1KiB", "push_64B_bin"]:
    _, base = floor("main", wl, "cross", "msgs_per_sec")
    for label in ["kharbranth Rust API", "kharbranth C ABI", "kharbranth C ABI, 1 worker"]:
        v = m_(wl, "cross", label, "msgs_per_sec")
        if v and base:
            checks.append((f"{label}, {wl}: ≥ 0.95× the floor", f"{v / base:.2f}×",
                           v / base >= 0.95))
for pin in ["cross", "same"]:
    _, base = floor("main", "echo_64B", pin, "p50_us", best=min)
    for label in ["kharbranth Rust API", "kharbranth C ABI", "kharbranth C ABI, 1 worker"]:
        v = m_("echo_64B", pin, label, "p50_us")
        if v and base:
            checks.append((f"{label}, echo p50 {pin}-core: ≤ 1.05× the floor",
                           f"{v / base:.2f}×", v / base <= 1.05))
# Issue 10: the poll path against the hook path of the same ABI, with as many workers.
for wl, key, hi in [("push_64B", "msgs_per_sec", True), ("push_1KiB", "msgs_per_sec", True),
                    ("echo_64B", "p50_us", False)]:
    for pin in (["cross"] if hi else ["cross", "same"]):
        for workers in ["", ", 1 worker"]:
            hook = m_(wl, pin, "kharbranth C ABI" + workers, key)
            polled = m_(wl, pin, "kharbranth C ABI (poll)" + workers, key)
            if hook and polled:
                r = polled / hook if hi else hook / polled
                checks.append((f"kharbranth C ABI (poll){workers}, {wl} {pin}-core: "
                               f"≥ 0.95× the C hooks{workers}", f"{r:.2f}×", r >= 0.95))
        # A driven manager has no thread: against the faster of the two hook managers.
        hooks = [v for v in (m_(wl, pin, "kharbranth C ABI" + x, key) for x in ["", ", 1 worker"])
                 if v]
        driven = m_(wl, pin, "kharbranth C ABI (poll), driven", key)
        if hooks and driven:
            hook = max(hooks) if hi else min(hooks)
            r = driven / hook if hi else hook / driven
            checks.append((f"kharbranth C ABI (poll), driven, {wl} {pin}-core: ≥ 0.95× the "
                           "faster C hooks", f"{r:.2f}×", r >= 0.95))
# Issue 10: the Python package against the faster picows (asyncio or uvloop).
for wl in ["push_64B", "push_1KiB"]:
    pic = [v for v in (m_(wl, "cross", l, "msgs_per_sec")
                       for l in ["picows (Python)", "picows (Python, uvloop)"]) if v]
    for label in ["kharbranth Python package (poll)", "kharbranth Python package (poll), driven"]:
        v = m_(wl, "cross", label, "msgs_per_sec")
        if v and pic:
            checks.append((f"{label}, {wl}: ≥ 1.0× the faster picows", f"{v / max(pic):.2f}×",
                           v / max(pic) >= 1.0))
for label in ["kharbranth Rust API", "kharbranth C ABI"]:
    rss = m_("idle", "cross", label, "rss_per_conn_kib")
    if rss is not None:
        checks.append((f"{label}, 10,000 idle: ≤ 8.5 KiB RSS per connection", f"{rss:.1f} KiB",
                       rss <= 8.5))
if checks:
    w("## Targets of the issue, in this run\n")
    w("| target | measured | met |")
    w("|---|---:|:---:|")
    for t, v, ok in checks:
        w(f"| {t} | {v} | {'yes' if ok else '**no**'} |")
    w("")

if failed:
    w("## Runs that failed or were not ok\n")
    for k, v in sorted(failed.items(), key=str):
        w(f"- {k}: {v}")
    w("")
w(f"Raw results, one JSON line per run: `{a.jsonl}`.")
open(a.md, "w").write("\n".join(out) + "\n")
print("\n".join(out))
