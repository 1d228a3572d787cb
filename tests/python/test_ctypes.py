"""kharbranth's C ABI from Python through ctypes only, against the local feed server.

Run: python3 -m pytest -q tests/python   (builds the library and the feed server with cargo when
they are missing; $KH_LIB and $KH_FEED_SERVER point elsewhere).
"""

import ctypes
import os
import select
import socket
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kharbranth as kh  # noqa: E402

ROOT = kh.ROOT
FEED_SERVER = os.environ.get("KH_FEED_SERVER") or os.path.join(
    ROOT, "target", "release", "examples", "feed_server")
WAIT = 10.0  # seconds: the bound of every wait in these tests


def _build_if_missing():
    missing = []
    if not os.environ.get("KH_LIB") and not os.path.exists(kh.DEFAULT_LIB):
        missing += ["--lib"]
    if not os.environ.get("KH_FEED_SERVER") and not os.path.exists(FEED_SERVER):
        missing += ["--example", "feed_server"]
    if missing:
        subprocess.run(["cargo", "build", "--release", *missing], cwd=ROOT, check=True, timeout=1800)


@pytest.fixture(scope="session")
def lib():
    _build_if_missing()
    lib = kh.load()
    assert lib.kh_log_init(b"warn") == kh.KH_OK
    return lib


@pytest.fixture
def server():
    """Starts a feed server on 127.0.0.1 (port 0) and yields its ws:// URL; always stops it."""
    _build_if_missing()
    proc = subprocess.Popen([FEED_SERVER, "--port", "0", "--exit-after-secs", "300",
                             "--exit-on-stdin-eof"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "the feed server printed nothing within 20 s"
        line = proc.stdout.readline().decode().split()
        assert line and line[0] == "LISTENING", line
        yield f"ws://127.0.0.1:{int(line[1])}/"
    finally:
        proc.stdin.close()  # it exits at EOF
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        proc.stdout.close()


class Recorder:
    """Collects callback events; waits on them with a deadline."""

    def __init__(self):
        self.cond = threading.Condition()
        self.events = []
        self.errors = []
        self.drops = 0
        self.threads = set()
        self.failures = []  # exceptions raised inside callbacks

    def _add(self, *event):
        with self.cond:
            self.events.append(event)
            self.threads.add(threading.get_ident())
            self.cond.notify_all()

    def callbacks(self):
        def guard(f):
            def g(*a):
                try:
                    f(*a)
                except BaseException as e:  # never let an exception vanish in a ctypes thunk
                    with self.cond:
                        self.failures.append(e)
                        self.cond.notify_all()
            return g

        def on_drop():
            with self.cond:
                self.drops += 1
                self.cond.notify_all()

        return dict(
            on_open=guard(lambda c: self._add("open", c)),
            on_text=guard(lambda c, t: self._add("text", c, t)),
            on_binary=guard(lambda c, b: self._add("binary", c, b)),
            on_ping=guard(lambda c, b: self._add("ping", c, b)),
            on_pong=guard(lambda c, b: self._add("pong", c, b)),
            on_close=guard(lambda c, code, r: self._add("close", c, code, r)),
            on_error=guard(lambda c, code, m: self._add("error", c, code, m)),
            on_drop=guard(on_drop),
        )

    def of(self, kind):
        with self.cond:
            return [e for e in self.events if e[0] == kind]

    def wait(self, pred, what, timeout=WAIT):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; events: {self.events[-20:]}")
                self.cond.wait(left)

    def count(self, kind):
        return sum(1 for e in self.events if e[0] == kind)

    def texts(self):
        return [e[2] for e in self.events if e[0] == "text"]


def test_version_and_result_strings(lib):
    assert lib.kh_version().decode() == "0.1.0"
    assert lib.kh_result_str(kh.KH_OK).decode().startswith("KH_OK")
    assert lib.kh_result_str(kh.KH_QUEUE_FULL).decode().startswith("KH_QUEUE_FULL")
    assert lib.kh_result_str(kh.KH_MESSAGE_TOO_LARGE).decode().startswith("KH_MESSAGE_TOO_LARGE")
    assert lib.kh_result_str(9999).decode() == "KH_UNKNOWN"
    assert lib.kh_log_init(None) == kh.KH_OK  # twice is not an error


def test_exchange_messages(lib, server):
    rec = Recorder()
    mgr = kh.Manager(lib, workers=2)
    try:
        cfg = kh.Config(lib, server, ping_interval_ms=200, pong_timeout_ms=5000,
                        connect_timeout_ms=5000, reconnect_backoff_ms=(50, 500),
                        init_text=["hello", "push 3"], headers=[("X-Test", "ctypes")])
        mgr.add("feed", cfg, **rec.callbacks())
        cfg.free()  # the manager copied it
        mgr.wait_open("feed", 10000)
        assert mgr.state("feed") == kh.KH_STATE_OPEN
        # The init messages: "hello" is echoed, "push 3" answered with msg 1..3.
        rec.wait(lambda r: len(r.texts()) >= 4, "the init messages' replies")
        assert rec.texts()[:4] == ["hello", "msg 1", "msg 2", "msg 3"]
        assert rec.count("open") == 1 and rec.of("open")[0][1] == "feed"

        mgr.send_text("feed", "héllo wörld")
        mgr.send_binary("feed", b"\x00\x01\xff")
        mgr.send_text("feed", "push 50")
        rec.wait(lambda r: len(r.texts()) >= 55 and r.count("binary") >= 1, "echoes and 50 messages")
        assert rec.texts()[4] == "héllo wörld"
        assert rec.texts()[5:55] == [f"msg {i}" for i in range(1, 51)]
        assert rec.of("binary")[0][2] == b"\x00\x01\xff"

        # The server pings us on request; the library answers and reports it.
        mgr.send_text("feed", "ping abc")
        rec.wait(lambda r: r.count("ping") >= 1, "the server's ping")
        assert rec.of("ping")[0][2] == b"abc"

        # Heartbeats every 200 ms: their pongs give a round-trip time.
        deadline = time.monotonic() + WAIT
        while mgr.stats("feed").last_rtt_us == 0:
            assert time.monotonic() < deadline, "no heartbeat round-trip time measured"
            time.sleep(0.05)
        s = mgr.stats("feed")
        assert s.messages_in == 56 and s.messages_out >= 5 and s.reconnects == 0
        assert s.bytes_in == sum(len(t.encode()) for t in rec.texts()) + 3

        # A close from the server: on_close, then a reconnect (which re-sends the init messages).
        mgr.send_text("feed", "close")
        rec.wait(lambda r: r.count("close") >= 1 and r.count("open") >= 2, "peer close and reconnect")
        assert rec.of("close")[0][1:] == ("feed", 1000, "bye")
        mgr.wait_open("feed", 10000)
        rec.wait(lambda r: len(r.texts()) >= 59, "the init replies after the reconnect")
        assert mgr.stats("feed").reconnects == 1

        # Restart on demand.
        mgr.restart("feed")
        rec.wait(lambda r: r.count("open") >= 3, "the restart")
        mgr.wait_open("feed", 10000)

        # Close: on_close with the echoed code, and on_drop by the time close returns.
        mgr.close("feed", 4000, "done")
        with rec.cond:
            assert rec.drops == 1
            closes = [e for e in rec.events if e[0] == "close"]
            assert closes[-1][2:] == (4000, "done")
            n_events = len(rec.events)
        with pytest.raises(kh.KhError) as e:
            mgr.state("feed")
        assert e.value.code == kh.KH_CONNECTION_NOT_FOUND
        time.sleep(0.3)
        assert len(rec.events) == n_events, "a callback ran after kh_manager_close returned"
    finally:
        mgr.free()
    assert rec.drops == 1
    assert not rec.failures, rec.failures
    # Callbacks ran on the library's threads, not on ours.
    assert threading.get_ident() not in rec.threads


def test_error_paths(lib, server):
    mgr = kh.kh_manager_p()
    assert lib.kh_manager_new(ctypes.byref(mgr)) == kh.KH_OK
    cfg = kh.kh_config_p()
    assert lib.kh_config_new(server.encode(), ctypes.byref(cfg)) == kh.KH_OK
    dropped = []
    hooks, keep = kh.make_hooks(on_drop=lambda: dropped.append(1))
    try:
        # NULL name: refused, with a message.
        assert lib.kh_manager_add(mgr, None, cfg, ctypes.byref(hooks)) == kh.KH_INVALID_ARGUMENT
        msg = kh.last_error(lib)
        assert msg, "kh_last_error gave no message for a NULL name"
        assert lib.kh_manager_send_text(mgr, None, b"x", 1) == kh.KH_INVALID_ARGUMENT
        assert kh.last_error(lib)

        # kh_last_error has snprintf semantics.
        n = lib.kh_last_error(None, 0)
        assert n == len(kh.last_error(lib).encode()) and n > 4
        small = ctypes.create_string_buffer(b"\xaa" * 8)
        assert lib.kh_last_error(small, 4) == n
        assert small.raw[3] == 0 and small.raw[:3] == kh.last_error(lib).encode()[:3]
        assert small.raw[4:8] == b"\xaa" * 4, "kh_last_error wrote past len"

        # Unknown names.
        assert lib.kh_manager_send_text(mgr, b"nope", b"x", 1) == kh.KH_CONNECTION_NOT_FOUND
        assert "nope" in kh.last_error(lib)
        st = kh.kh_conn_state()
        assert lib.kh_manager_state(mgr, b"nope", ctypes.byref(st)) == kh.KH_CONNECTION_NOT_FOUND
        assert lib.kh_manager_restart(mgr, b"nope") == kh.KH_CONNECTION_NOT_FOUND
        assert lib.kh_manager_close(mgr, b"nope", 1000, None) == kh.KH_CONNECTION_NOT_FOUND
        assert lib.kh_manager_wait_open(mgr, b"nope", 10) == kh.KH_CONNECTION_NOT_FOUND

        # Bad arguments elsewhere.
        out = kh.kh_config_p()
        assert lib.kh_config_new(b"http://example.com/", ctypes.byref(out)) == kh.KH_INVALID_ARGUMENT
        assert lib.kh_config_new(None, ctypes.byref(out)) == kh.KH_INVALID_ARGUMENT
        assert lib.kh_config_new(server.encode(), None) == kh.KH_INVALID_ARGUMENT
        assert lib.kh_config_set_ping_interval_ms(cfg, 0) == kh.KH_INVALID_ARGUMENT
        assert lib.kh_config_set_reconnect_backoff_ms(cfg, 500, 100) == kh.KH_INVALID_ARGUMENT
        assert lib.kh_config_add_header(cfg, b"Bad Name", b"v") == kh.KH_INVALID_ARGUMENT
        assert lib.kh_config_add_init_text(cfg, b"\xff", 1) == kh.KH_INVALID_ARGUMENT
        assert lib.kh_config_set_ping_interval_ms(None, 1000) == kh.KH_INVALID_ARGUMENT
        assert lib.kh_manager_add(None, b"x", cfg, None) == kh.KH_INVALID_ARGUMENT
        assert lib.kh_manager_add(mgr, b"x", None, None) == kh.KH_INVALID_ARGUMENT
        assert lib.kh_manager_add(mgr, b"\xff\xfe", cfg, None) == kh.KH_INVALID_ARGUMENT
        assert lib.kh_manager_add(mgr, b"", cfg, None) == kh.KH_INVALID_ARGUMENT

        # A real connection, then the errors that need one.
        assert lib.kh_manager_add(mgr, b"c", cfg, ctypes.byref(hooks)) == kh.KH_OK
        assert lib.kh_manager_wait_open(mgr, b"c", 10000) == kh.KH_OK
        # A duplicate name fails and does not take its hooks (no on_drop for them).
        other_drops = []
        hooks2, keep2 = kh.make_hooks(on_drop=lambda: other_drops.append(1))
        assert lib.kh_manager_add(mgr, b"c", cfg, ctypes.byref(hooks2)) == kh.KH_ALREADY_EXISTS
        assert lib.kh_manager_send_text(mgr, b"c", b"\xff\xfe", 2) == kh.KH_INVALID_ARGUMENT
        assert lib.kh_manager_send_ping(mgr, b"c", b"x" * 126, 126) == kh.KH_INVALID_ARGUMENT
        assert lib.kh_manager_state(mgr, b"c", None) == kh.KH_INVALID_ARGUMENT
        assert lib.kh_manager_stats(mgr, b"c", None) == kh.KH_INVALID_ARGUMENT
        assert lib.kh_manager_close(mgr, b"c", 1005, None) == kh.KH_INVALID_ARGUMENT
        assert lib.kh_manager_close(mgr, b"c", 1000, b"r" * 124) == kh.KH_INVALID_ARGUMENT
        # A NULL data pointer with length 0 is an empty message, not a crash.
        assert lib.kh_manager_send_binary(mgr, b"c", None, 0) in (kh.KH_OK, kh.KH_INVALID_ARGUMENT)
        assert lib.kh_manager_send_text(mgr, b"c", None, 5) == kh.KH_INVALID_ARGUMENT
        # The failed calls changed nothing.
        assert lib.kh_manager_state(mgr, b"c", ctypes.byref(st)) == kh.KH_OK
        assert st.value == kh.KH_STATE_OPEN
        assert lib.kh_manager_close(mgr, b"c", 1000, None) == kh.KH_OK
        assert dropped == [1]
        assert other_drops == []
    finally:
        lib.kh_config_free(cfg)
        lib.kh_manager_free(mgr)
    assert dropped == [1]
    del keep


def test_wait_open_times_out(lib):
    """A peer that accepts TCP but never answers the upgrade: wait_open gives KH_TIMEOUT."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    rec = Recorder()
    try:
        with kh.Manager(lib) as mgr:
            with kh.Config(lib, f"ws://127.0.0.1:{port}/", connect_timeout_ms=60000) as cfg:
                mgr.add("silent", cfg, **rec.callbacks())
            t0 = time.monotonic()
            with pytest.raises(kh.KhError) as e:
                mgr.wait_open("silent", 300)
            assert e.value.code == kh.KH_TIMEOUT
            assert 0.25 <= time.monotonic() - t0 < 5
            assert mgr.state("silent") == kh.KH_STATE_CONNECTING
            assert rec.count("open") == 0
            # Free is bounded even though the connect never finishes.
            t0 = time.monotonic()
        assert time.monotonic() - t0 < 10
        assert rec.drops == 1
    finally:
        silent.close()


def test_retries_exhausted(lib):
    """Nothing listens: the connection gives up after the configured attempts."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens on this port now
    rec = Recorder()
    with kh.Manager(lib) as mgr:
        cfg = kh.Config(lib, f"ws://127.0.0.1:{port}/", max_reconnect_attempts=2,
                        reconnect_backoff_ms=(10, 20), connect_timeout_ms=2000)
        mgr.add("gone", cfg, **rec.callbacks())
        cfg.free()
        with pytest.raises(kh.KhError) as e:
            mgr.wait_open("gone", 10000)
        assert e.value.code == kh.KH_CONNECTION_DROPPED
        codes = [e[2] for e in rec.of("error")]
        assert codes.count(kh.KH_CONNECT_FAILED) == 2, codes
        assert codes[-1] == kh.KH_RETRIES_EXHAUSTED
        assert mgr.state("gone") == kh.KH_STATE_CLOSED
    assert rec.drops == 1


def test_free_runs_every_on_drop(lib, server):
    recs = [Recorder() for _ in range(3)]
    mgr = kh.Manager(lib, workers=1)
    for i, rec in enumerate(recs):
        mgr.add(f"f{i}", server, **rec.callbacks())
    for i in range(3):
        mgr.wait_open(f"f{i}", 10000)
    t0 = time.monotonic()
    mgr.free()  # closes all of them (1001) and calls every on_drop before returning
    assert time.monotonic() - t0 < 10
    for rec in recs:
        assert rec.drops == 1
        assert rec.count("open") == 1
        assert not rec.failures, rec.failures
    counts = [len(r.events) for r in recs]
    time.sleep(0.2)
    assert [len(r.events) for r in recs] == counts, "a callback ran after kh_manager_free returned"


def test_free_from_inside_a_callback(lib, server):
    """kh_manager_free inside a callback returns at once; shutdown completes afterwards and
    on_drop runs on a helper thread."""
    rec = Recorder()
    holder = {}

    def on_text(conn, text):
        if text == "free me":
            lib.kh_manager_free(holder["mgr"])
            rec._add("freed")

    cbs = rec.callbacks()
    cbs["on_text"] = on_text
    mgr = kh.Manager(lib)
    holder["mgr"] = mgr.ptr
    mgr.add("self", server, **cbs)
    mgr.wait_open("self", 10000)
    mgr.send_text("self", "free me")
    rec.wait(lambda r: r.drops == 1, "on_drop after a free inside a callback")
    assert rec.count("freed") == 1
    mgr.ptr = kh.kh_manager_p()  # already freed: do not free it again
    assert not rec.failures, rec.failures


def test_calls_from_inside_callbacks(lib, server):
    """A callback may send, query and close its own connection without deadlock; a close from
    inside a callback returns at once and completes afterwards (on_drop then runs)."""
    rec = Recorder()
    holder = {}
    results = {}

    def on_text(conn, text):
        mgr = holder["mgr"]
        rec._add("text", conn, text)
        if text == "msg 3":
            mgr.send_text(conn, "from the callback")
            results["state"] = mgr.state(conn)
            results["stats"] = mgr.stats(conn).messages_in
            rc = lib.kh_manager_wait_open(mgr.ptr, conn.encode(), 10)
            results["wait_open"] = rc
        elif text == "from the callback":
            t0 = time.monotonic()
            mgr.close(conn, 1000, "from a callback")
            results["close_secs"] = time.monotonic() - t0

    cbs = rec.callbacks()
    cbs["on_text"] = on_text
    with kh.Manager(lib, workers=1) as mgr:  # one worker: any blocking call would deadlock
        holder["mgr"] = mgr
        cfg = kh.Config(lib, server, init_text="push 3")
        mgr.add("re", cfg, **cbs)
        cfg.free()
        rec.wait(lambda r: r.drops == 1, "the close started inside a callback to complete")
        assert results["state"] == kh.KH_STATE_OPEN
        assert results["stats"] >= 3
        assert results["wait_open"] == kh.KH_INVALID_ARGUMENT  # refused inside a callback
        assert results["close_secs"] < 1.0
        with pytest.raises(kh.KhError) as e:
            mgr.state("re")
        assert e.value.code == kh.KH_CONNECTION_NOT_FOUND
    assert rec.drops == 1
    assert not rec.failures, rec.failures
