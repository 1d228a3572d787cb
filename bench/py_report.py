"""The one-line JSON result of the Python benchmark clients (same fields as the others')."""
import json

WARMUP = 1000


def workload(kind, size):
    if size >= 1 << 20 and size % (1 << 20) == 0:
        return f"{kind}_{size >> 20}MiB"
    if size >= 1024 and size % 1024 == 0:
        return f"{kind}_{size >> 10}KiB"
    return f"{kind}_{size}B"


def report(client, mode, n, size, count, nbytes, secs, ok, rtts=None):
    """Prints the result of `mode` (push or echo) for `n` messages of `size` bytes; echo passes
    its round trips, of which the first WARMUP are not counted."""
    r = {"client": client, "workload": workload(mode, size), "msgs": count, "bytes": nbytes,
         "secs": round(secs, 6), "msgs_per_sec": round(count / secs, 1) if secs > 0 else 0,
         "mb_per_sec": round(nbytes / 1e6 / secs, 2) if secs > 0 else 0, "ok": ok}
    if rtts is not None:
        m = sorted(rtts[WARMUP:])
        pct = lambda p: m[round((len(m) - 1) * p / 100)] * 1e6 if m else 0.0  # noqa: E731
        r.update(p50_us=round(pct(50), 2), p99_us=round(pct(99), 2))
        r["ok"] = ok and len(m) == n
    print(json.dumps(r, separators=(",", ":")), flush=True)
