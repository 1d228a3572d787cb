"""The C extension (kharbranth._speedups) and its ctypes fallback, and the log bridge.

scripts/test.sh runs python/tests twice: as installed (KH_EXPECT_SPEEDUPS=1: the extension
must be in use) and with KH_NO_SPEEDUPS=1 (the ctypes loop), so every test of test_package.py
covers both paths. The tests here compare the two paths within one process.
"""

import logging
import os
import subprocess
import sys
import threading
import time

import pytest

import kharbranth
from test_package import WAIT, poll_until, server  # noqa: F401 (server is a fixture)

needs_speedups = pytest.mark.skipif(not kharbranth.SPEEDUPS, reason="runs the ctypes fallback")


def test_speedups_reports_the_path_in_use():
    if os.environ.get("KH_NO_SPEEDUPS", "") not in ("", "0"):
        assert kharbranth.SPEEDUPS is False
        assert kharbranth.Event is kharbranth._PyEvent
    elif os.environ.get("KH_EXPECT_SPEEDUPS") == "1":
        assert kharbranth.SPEEDUPS is True, "pip install ./python did not build _speedups"
    if kharbranth.SPEEDUPS:
        assert kharbranth.Event.__module__ == "kharbranth._speedups"


def _numbered(mgr, total, fallback):
    """Polls `total` numbered messages, through the ctypes loop when `fallback`."""
    poller = mgr._poller
    if fallback:
        mgr._poller = None
    try:
        got = []
        deadline = time.monotonic() + 60
        while len(got) < total and time.monotonic() < deadline:
            for e in mgr.poll(max_events=64, timeout=1.0):
                if e.kind == kharbranth.EventKind.TEXT:
                    got.append((type(e).__name__, e.conn, e.text, e.close_code, e.error))
        return got
    finally:
        mgr._poller = poller


@needs_speedups
def test_extension_and_fallback_give_the_same_events(server):  # noqa: F811
    total = 3000
    with kharbranth.Manager(event_capacity=32) as mgr:
        mgr.add("feed", server)
        poll_until(mgr, kharbranth.EventKind.OPEN)
        runs = []
        for fallback in (False, True):
            mgr.send_text("feed", f"push {total}")
            runs.append(_numbered(mgr, total, fallback))
        want = [("feed", f"msg {i}", 0, None) for i in range(1, total + 1)]
        for run in runs:
            assert [r[1:] for r in run] == want
        assert {r[0] for r in runs[0]} == {"Event"} and {r[0] for r in runs[1]} == {"_PyEvent"}

        # Close and error events carry the same fields on the extension's path.
        mgr.send_text("feed", "close")
        e = poll_until(mgr, kharbranth.EventKind.CLOSE)
        assert (e.close_code, e.text, e.error) == (1000, "bye", None)
        assert repr(e) == "Event(CLOSE, 'feed', b'bye')"
        poll_until(mgr, kharbranth.EventKind.OPEN)
        mgr.send_text("feed", "drop")
        e = poll_until(mgr, kharbranth.EventKind.ERROR)
        assert isinstance(e.error, kharbranth.ConnectionDropped) and e.error.message
        with pytest.raises(AttributeError):
            e.data = b"read-only"


@needs_speedups
def test_extension_rejects_bad_input_without_losing_events(server):  # noqa: F811
    with kharbranth.Manager() as mgr:
        with pytest.raises(kharbranth.InvalidArgument):
            mgr.poll(max_events=0)
        p = mgr._poller
        with pytest.raises(ValueError):
            p.poll(1, -2)
        with pytest.raises(TypeError):
            p.poll(1)
        with pytest.raises(ValueError):
            kharbranth._speedups.Poller(0, 0, (), kharbranth.error_for, kharbranth._check)
        with pytest.raises(TypeError):
            kharbranth._speedups.Poller(1, 1, (), None, kharbranth._check)

        # A second thread polling while the first waits gets an error; the first still gets
        # the events.
        first = []
        t = threading.Thread(target=lambda: first.extend(mgr.poll(timeout=WAIT)))
        t.start()
        deadline = time.monotonic() + WAIT
        while not p.busy and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(RuntimeError, match="another thread"):
            mgr.poll(timeout=0)
        mgr.add("feed", server)
        t.join(WAIT)
        assert not t.is_alive()
        assert [e.kind for e in first][:1] == [kharbranth.EventKind.OPEN]
    with pytest.raises(kharbranth.ShuttingDown):
        mgr.poll(timeout=0)
    with pytest.raises(RuntimeError, match="detached"):
        p.poll(1, 0)


@needs_speedups
def test_close_ends_a_poll_blocked_on_another_thread_first():
    mgr = kharbranth.Manager()
    got = []
    t = threading.Thread(target=lambda: got.append(mgr.poll(timeout=None)))
    t.start()
    deadline = time.monotonic() + WAIT
    while not mgr._poller.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert mgr._poller.busy
    t0 = time.monotonic()
    mgr.close()
    assert time.monotonic() - t0 < WAIT
    t.join(WAIT)
    assert not t.is_alive() and got == [[]]


@needs_speedups
def test_library_logs_reach_python_logging(server):  # noqa: F811
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    h = Keep(level=logging.DEBUG)
    lg = logging.getLogger("kharbranth")
    lg.addHandler(h)
    old = lg.level
    lg.setLevel(logging.DEBUG)
    try:
        with kharbranth.Manager() as mgr:
            assert kharbranth.route_logs() is True
            mgr.add("logged", server)
            poll_until(mgr, kharbranth.EventKind.OPEN)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and not any(
                r.levelno == logging.INFO and "logged" in r.getMessage() for r in records):
            time.sleep(0.02)
        info = [r for r in records if r.levelno == logging.INFO and "logged" in r.getMessage()]
        assert info, [r.getMessage() for r in records]
        assert all(r.name == "kharbranth" or r.name.startswith("kharbranth.") for r in records)
        assert all(r.threadName == "kharbranth-log" for r in records)
    finally:
        lg.removeHandler(h)
        lg.setLevel(old)


def test_interpreter_exit_while_the_library_logs_does_not_hang(server):  # noqa: F811
    # A manager left open, connections logging from library threads: the process must still
    # exit, promptly and cleanly.
    code = f"""
import logging, sys, threading, time, kharbranth
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout)
seen = threading.Event()
class Seen(logging.Handler):
    def emit(self, record):
        seen.set()
logging.getLogger("kharbranth").addHandler(Seen())
m = kharbranth.Manager()
for i in range(20):
    m.add(f"c{{i}}", {server!r})
m.poll(timeout=0.2)
# The records reach logging on the library's logging thread, whenever it runs: wait for the
# first (bounded), so the exit below happens with records flowing.
seen.wait(timeout=20)
print(f"routed {{kharbranth.route_logs()}}", flush=True)
"""
    env = dict(os.environ, RUST_LOG="debug")
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    out = p.stdout.decode()
    assert f"routed {kharbranth.SPEEDUPS}" in out
    if kharbranth.SPEEDUPS:
        assert "kharbranth" in out.split("routed")[0]  # records were logged before exit
    assert time.monotonic() - t0 < 30


def test_event_is_built_and_read_the_same_on_both_paths():
    k = kharbranth.EventKind.TEXT
    for cls in {kharbranth.Event, kharbranth._PyEvent}:
        e = cls(k, "feed", "héllo".encode())
        assert (e.kind, e.conn, e.text, e.close_code, e.error) == (k, "feed", "héllo", 0, None)
        assert repr(e) == "Event(TEXT, 'feed', b'h\\xc3\\xa9llo')"
        bad = cls(k, "feed", b"\xff")
        with pytest.raises(UnicodeDecodeError):
            bad.text
        plain = (e.state, e.reason, e.attempts, e.down_for, e.last_message_at, e.recv_mono_ns,
                 e.recv_wall_ns)
        assert plain == (None, None, 0, None, None, None, None)
        st = kharbranth.ConnState.OPEN
        s = cls(kharbranth.EventKind.STATE, "feed", b"", state=st, attempts=3, down_for=1.5,
                last_message_at=12.0)
        assert (s.state, s.attempts, s.down_for, s.last_message_at) == (st, 3, 1.5, 12.0)
        t = cls(k, "feed", b"x", recv_mono_ns=5, recv_wall_ns=7)
        assert (t.recv_mono_ns, t.recv_wall_ns) == (5, 7)


def test_events_kept_unread_keep_their_payload_after_later_polls_and_close(server):  # noqa: F811
    # With the extension a payload is copied only when read, or when the next poll would take
    # back the library's memory while the event is still referenced: kept events must read
    # right however late, events read only for `size` need no copy.
    total = 3000
    kept = []
    with kharbranth.Manager(event_capacity=32) as mgr:
        mgr.add("feed", server)
        poll_until(mgr, kharbranth.EventKind.OPEN)
        mgr.send_text("feed", f"push {total}")
        seen = 0
        deadline = time.monotonic() + 60
        while seen < total and time.monotonic() < deadline:
            for e in mgr.poll(max_events=16, timeout=1.0):
                if e.kind != kharbranth.EventKind.TEXT:
                    continue
                seen += 1
                assert e.size == len(f"msg {seen}")
                if seen % 7 == 0:
                    kept.append((seen, e))
        assert seen == total
        # More polls after the kept ones, then the manager is freed.
        mgr.send_text("feed", "push 10")
        while seen < total + 10 and time.monotonic() < deadline:
            seen += sum(e.kind == kharbranth.EventKind.TEXT for e in mgr.poll(timeout=1.0))
    assert [(n, e.data, e.text, e.size) for n, e in kept] == [
        (n, f"msg {n}".encode(), f"msg {n}", len(f"msg {n}")) for n, _ in kept
    ]


def test_echoed_messages_of_every_size_read_the_same_kept_or_not(server):  # noqa: F811
    # Sizes around the library's 4 KiB line between payloads copied into its batches and
    # payloads lent as they were parsed, text and binary; every other event is kept unread
    # until the end, the rest are read at once.
    sizes = [0, 1, 63, 4095, 4096, 4097, 70_000, 200]
    sent = []
    with kharbranth.Manager() as mgr:
        mgr.add("echo", server)
        poll_until(mgr, kharbranth.EventKind.OPEN)
        for i, size in enumerate(sizes * 3):
            body = bytes(97 + (i + j) % 26 for j in range(size))
            if i % 2:
                mgr.send_binary("echo", body)
            else:
                mgr.send_text("echo", body.decode() or "empty")
                body = body or b"empty"
            sent.append(body)
        got, kept = [], []
        deadline = time.monotonic() + WAIT
        while len(got) + len(kept) < len(sent) and time.monotonic() < deadline:
            for e in mgr.poll(max_events=3, timeout=1.0):
                if e.kind in (kharbranth.EventKind.TEXT, kharbranth.EventKind.BINARY):
                    n = len(got) + len(kept)
                    if n % 2:
                        kept.append((n, e))
                    else:
                        got.append((n, e.data, e.size))
    for n, e in kept:
        got.append((n, e.data, e.size))
    got.sort(key=lambda g: g[0])
    assert [(d, s) for _, d, s in got] == [(b, len(b)) for b in sent]
