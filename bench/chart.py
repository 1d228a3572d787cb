#!/usr/bin/env python3
"""Draws bench/results.svg from bench/results.jsonl (run by bench/run.sh; needs matplotlib).

Left: each client's throughput as a ratio to the floor of its workload (the fastest raw
tokio-tungstenite variant of the same run; for echo, the floor's p50 divided by the client's,
so higher is better everywhere). Right: RSS per idle connection."""
import json
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src, out = sys.argv[1], sys.argv[2]
groups = defaultdict(list)
for line in open(src):
    if not line.strip():
        continue
    r = json.loads(line)
    if r.get("failed") or not r.get("ok"):
        continue
    groups[(r["suite"], r["workload"], r["pin"], r["label"])].append(r)


def med(key, field):
    vals = [float(r[field]) for r in groups.get(key, []) if field in r]
    return statistics.median(vals) if vals else None


def floor(wl, pin, field, best):
    vals = [med(k, field) for k in groups
            if k[:3] == ("main", wl, pin) and k[3].startswith("tokio-tungstenite (")]
    vals = [v for v in vals if v]
    return best(vals) if vals else None


workloads = [("push_64B", "push 64 B"), ("push_1KiB", "push 1 KiB"),
             ("push_64B_bin", "push 64 B binary"), ("echo_64B", "echo 64 B p50")]
clients = ["kharbranth Rust API", "kharbranth C ABI", "kharbranth C ABI, 1 worker",
           "kharbranth C ABI (poll)", "kharbranth C ABI (poll), 1 worker", "kharbranth Python ctypes",
           "kharbranth Python package (poll)", "libwebsockets",
           "picows (Python)", "node ws"]
colors = ["#1f6feb", "#2da44e", "#7ee787", "#56d364", "#bf8700", "#d4a72c", "#8250df", "#cf222e",
          "#6e7781", "#0a3069"]

fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [3, 1]})
width = 0.8 / len(clients)
for i, (client, color) in enumerate(zip(clients, colors)):
    xs, ys = [], []
    for j, (wl, _) in enumerate(workloads):
        if wl.startswith("echo"):
            base = floor(wl, "cross", "p50_us", min)
            v = med(("main", wl, "cross", client), "p50_us")
            ratio = base / v if base and v else None
        else:
            base = floor(wl, "cross", "msgs_per_sec", max)
            v = med(("main", wl, "cross", client), "msgs_per_sec")
            ratio = v / base if base and v else None
        if ratio is not None:
            xs.append(j + (i - len(clients) / 2 + 0.5) * width)
            ys.append(ratio)
    if xs:
        bars = ax.bar(xs, ys, width, label=client, color=color)
        if client.startswith("kharbranth") and "Python" not in client:
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
ax.axhline(1.0, color="black", linewidth=0.8)
ax.axhline(0.95, color="black", linewidth=0.6, linestyle="--")
ax.set_xticks(range(len(workloads)), [t for _, t in workloads])
ax.set_ylabel("ratio to the floor (fastest raw tokio-tungstenite), higher is better")
ax.set_ylim(0, 1.35)
ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.07), frameon=False)
ax.set_title("Throughput and latency, same run", fontsize=10)

idle = [("tokio-tungstenite", "tokio-tungstenite"), ("kharbranth Rust API", "kharbranth Rust"),
        ("kharbranth C ABI", "kharbranth C")]
vals = [(name, med(("main", "idle", "cross", label), "rss_per_conn_kib")) for label, name in idle]
vals = [(n, v) for n, v in vals if v is not None]
if vals:
    bars = ax2.bar([n for n, _ in vals], [v for _, v in vals],
                   color=["#6e7781", "#1f6feb", "#2da44e"][: len(vals)])
    ax2.bar_label(bars, fmt="%.1f", fontsize=8)
    ax2.axhline(8.5, color="black", linewidth=0.6, linestyle="--")
ax2.set_ylabel("RSS per idle connection (KiB), 10,000 open")
ax2.tick_params(axis="x", labelsize=7)
ax2.set_title("Idle memory", fontsize=10)
fig.tight_layout()
fig.savefig(out)
print(f"wrote {out}")
