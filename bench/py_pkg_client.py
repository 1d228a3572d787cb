#!/usr/bin/env python3
"""kharbranth's Python package (python/) through its poll API: no Python callback on library
threads; events are taken in batches of up to 1,024 (`Manager.poll`).

    py_pkg_client.py push|echo URL N S [driven=1]

push: counts text/binary events and their sizes until the marker "END" (time from the first
message), reading `data` only for a 3-byte event as the picows client reads its payload only
then.
echo: one S-byte text message in flight, the next sent when the echo is polled (1000 warm-up
round trips not counted). Prints one JSON line; a hard timeout (SIGALRM) ends it after 120 s.
The package is imported from python/ with the release library (KH_LIB), as `pip install
./python` would install it, with its C extension when bench/run.sh compiled it beside the
sources (python/kharbranth/_speedups*.so); the client is named
"kharbranth-python (ctypes)" when it runs the ctypes fallback instead. driven=1: the manager is
`Manager(driven=True)`, whose connection runs on this thread inside `poll` (client
"kharbranth-python (driven)").
"""
import os
import signal
import sys
import time

signal.alarm(120)
mode, url, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
driven = "driven=1" in sys.argv[5:]
rbuf = next((int(a[5:]) for a in sys.argv[5:] if a.startswith("rbuf=")), None)
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("KH_LIB", os.path.join(root, "target/release/libkharbranth.so"))
sys.path.insert(0, os.path.join(root, "python"))
import kharbranth  # noqa: E402
import py_report  # noqa: E402

WARMUP = py_report.WARMUP
now = time.perf_counter
DATA = (kharbranth.EventKind.TEXT, kharbranth.EventKind.BINARY)


def report(count, nbytes, secs, ok, rtts=None):
    client = "kharbranth-python" if kharbranth.SPEEDUPS else "kharbranth-python (ctypes)"
    if driven:
        client += " (driven)"
    py_report.report(client, mode, n, size, count, nbytes, secs, ok, rtts)


def main():
    # A function, so that the loop's variables are locals rather than entries of the
    # module's dict, as in the program a user writes for speed.
    with kharbranth.Manager(threads=1, driven=driven) as mgr:
        if mode == "push":
            mgr.add("bench", url, read_buffer_size=rbuf)
            count = nbytes = 0
            t0 = None
            done = False
            while not done:
                for e in mgr.poll(max_events=1024, timeout=10.0):
                    if e.kind not in DATA:
                        continue
                    # As the picows client does (payload_size, then the bytes only for a 3-byte
                    # frame): `size` does not copy the payload, `data` does.
                    ln = e.size
                    if ln == 3 and e.data == b"END":
                        t1 = now()
                        done = True
                        break
                    if t0 is None:
                        t0 = now()
                    count += 1
                    nbytes += ln
            report(count, nbytes, t1 - (t0 or t1), count == n)
        else:
            mgr.add("bench", url)
            payload = "x" * size
            total = n + WARMUP
            rtts = []
            opened = False
            while not opened:
                opened = any(e.kind == kharbranth.EventKind.OPEN for e in mgr.poll(timeout=10.0))
            start = sent = now()
            mgr.send_text("bench", payload)
            while len(rtts) < total:
                for e in mgr.poll(max_events=16, timeout=10.0):
                    if e.kind in DATA:
                        t = now()
                        rtts.append(t - sent)
                        if len(rtts) < total:
                            sent = now()
                            mgr.send_text("bench", payload)
            report(len(rtts), len(rtts) * size, now() - start, True, rtts)


main()
