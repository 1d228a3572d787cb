"""The installed kharbranth package (pip install ./python) against a local feed server.

Run: python3 -m pytest -q python/tests  ($KH_FEED_SERVER points to examples/feed_server; by
default the repository's target/release/examples/feed_server).
"""

import asyncio
import os
import select
import subprocess
import threading
import time

import pytest

import kharbranth

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
FEED_SERVER = os.environ.get("KH_FEED_SERVER") or os.path.join(
    TARGET, "release", "examples", "feed_server")
WAIT = 10.0  # seconds: the bound of every wait in these tests


@pytest.fixture
def server():
    """A feed server on 127.0.0.1 (port 0); yields its ws:// URL and always stops it."""
    if not os.path.exists(FEED_SERVER):
        subprocess.run(["cargo", "build", "--release", "--example", "feed_server"], cwd=ROOT,
                       check=True, timeout=1800)
    proc = subprocess.Popen([FEED_SERVER, "--port", "0", "--exit-after-secs", "300",
                             "--exit-on-stdin-eof"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "the feed server printed nothing within 20 s"
        line = proc.stdout.readline().decode().split()
        assert line and line[0] == "LISTENING", line
        yield f"ws://127.0.0.1:{int(line[1])}/"
    finally:
        proc.stdin.close()  # it exits at EOF
        try:
            proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# Events a helper polled past the one it looked for, by manager: the next helper gets them
# first, so a batch that holds the wanted event and what follows it loses nothing.
_LEFT = {}


def _events(mgr):
    """The manager's events, the ones left by an earlier helper first, until WAIT runs out."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        # The entry holds the manager itself, so its id cannot be reused while it waits here.
        _, batch = _LEFT.pop(id(mgr), (mgr, None))
        batch = batch or mgr.poll(timeout=0.1)
        for i, e in enumerate(batch):
            # What follows `e`, kept if the caller stops here.
            _LEFT[id(mgr)] = (mgr, batch[i + 1:])
            yield e
        _LEFT.pop(id(mgr), None)


def poll_until(mgr, kind):
    for e in _events(mgr):
        if e.kind == kind:
            return e
    raise AssertionError(f"no {kind.name} event within {WAIT} s")


@pytest.mark.parametrize("driven", [False, True])
def test_a_slow_sync_poller_gets_every_numbered_message_once_in_order(server, driven):
    total = 5000
    with kharbranth.Manager(event_capacity=16, driven=driven) as mgr:
        mgr.add("feed", server, reconnect_backoff=(0.02, 0.2))
        e = poll_until(mgr, kharbranth.EventKind.OPEN)
        assert e.conn == "feed"
        mgr.send_text("feed", f"push {total}")
        want = 1
        deadline = time.monotonic() + 60
        while want <= total and time.monotonic() < deadline:
            for e in mgr.poll(max_events=7, timeout=1.0):
                if e.kind in (kharbranth.EventKind.PING, kharbranth.EventKind.PONG):
                    continue
                assert (e.kind, e.conn, e.text) == (kharbranth.EventKind.TEXT, "feed",
                                                    f"msg {want}")
                want += 1
            if want % 1000 == 0:
                time.sleep(0.05)  # the slow part of the poller
        assert want == total + 1

        mgr.send_text("feed", "close")
        e = poll_until(mgr, kharbranth.EventKind.CLOSE)
        assert (e.close_code, e.text) == (1000, "bye")
        poll_until(mgr, kharbranth.EventKind.OPEN)
        mgr.send_text("feed", "drop")
        e = poll_until(mgr, kharbranth.EventKind.ERROR)
        assert isinstance(e.error, kharbranth.ConnectionDropped), e.error
        assert e.error.message


def test_a_driven_manager_runs_inside_its_calls_and_has_no_descriptor(server):
    with kharbranth.Manager(driven=True) as mgr:
        assert mgr.driven
        mgr.add("feed", server)
        # wait_open drives the connection open on this thread; the poll then reads.
        mgr.wait_open("feed", WAIT)
        mgr.send_text("feed", "push 3")
        texts = []
        deadline = time.monotonic() + WAIT
        while len(texts) < 3 and time.monotonic() < deadline:
            texts += [e.text for e in mgr.poll(timeout=0.1) if e.kind == kharbranth.EventKind.TEXT]
        assert texts == ["msg 1", "msg 2", "msg 3"]
        with pytest.raises(kharbranth.InvalidArgument, match="driven manager"):
            mgr.fileno()

        async def iterate():
            async for _ in mgr.events():
                pass

        with pytest.raises(kharbranth.InvalidArgument, match="driven manager"):
            asyncio.run(iterate())
    with kharbranth.Manager(driven=True) as idle:
        # A wake-up from another thread ends a poll of a manager without connections.
        threading.Timer(0.05, idle.wakeup).start()
        t0 = time.monotonic()
        assert idle.poll(timeout=WAIT) == []
        assert time.monotonic() - t0 < WAIT / 2


def test_asyncio_events_are_driven_by_the_event_fd(server):
    async def main():
        with kharbranth.Manager(event_capacity=8) as mgr:
            got = []

            async def consume():
                async for e in mgr.events(max_events=5):
                    if e.kind == kharbranth.EventKind.OPEN:
                        mgr.send_text("a", "push 500")
                    elif e.kind == kharbranth.EventKind.TEXT:
                        got.append(e.text)
                        if len(got) == 500:
                            return

            task = asyncio.ensure_future(consume())
            # The consumer now waits for the descriptor; were it blocking the loop, this sleep
            # would not end (and wait_for below could not time out either).
            t0 = time.monotonic()
            await asyncio.sleep(0.05)
            assert time.monotonic() - t0 < WAIT
            assert not task.done()
            mgr.add("a", server)
            await asyncio.wait_for(task, WAIT)
            assert got == [f"msg {i}" for i in range(1, 501)]

    asyncio.run(main())


def test_errors_are_exceptions_named_after_their_code(server):
    with kharbranth.Manager() as mgr:
        mgr.add("x", server)
        with pytest.raises(kharbranth.AlreadyExists) as e:
            mgr.add("x", server)
        assert "x" in str(e.value) and e.value.code == 9
        with pytest.raises(kharbranth.InvalidArgument):
            mgr.set_event_capacity(0)
        with pytest.raises(kharbranth.InvalidArgument):
            mgr.set_event_byte_capacity(0)
        with pytest.raises(kharbranth.InvalidArgument):
            mgr.set_event_byte_capacity(2**40 + 1)
        mgr.set_event_byte_capacity(1 << 20)
        with pytest.raises(kharbranth.InvalidArgument):
            mgr.add("y", "http://not-a-websocket/")
        with pytest.raises(kharbranth.InvalidArgument, match="read_buffer_size"):
            mgr.add("y", server, read_buffer_size=255)
        mgr.add("y", server, read_buffer_size=4 << 20)
        with pytest.raises(kharbranth.ConnectionNotFound):
            mgr.send_text("nobody", "hi")
        with pytest.raises(kharbranth.InvalidArgument):
            mgr.poll(max_events=0)
        assert isinstance(kharbranth.error_for(99, "later"), kharbranth.KharbranthError)
    with pytest.raises(kharbranth.ShuttingDown):
        mgr.poll(timeout=0)


def test_poll_keeps_its_timeout_and_wakeup_ends_it():
    with kharbranth.Manager() as mgr:
        t0 = time.monotonic()
        assert mgr.poll(timeout=0.1) == []
        assert 0.09 <= time.monotonic() - t0 < 2
        threading.Timer(0.1, mgr.wakeup).start()
        t0 = time.monotonic()
        assert mgr.poll(timeout=None) == []
        assert time.monotonic() - t0 < WAIT


def texts_until(mgr, marker):
    """The texts of the next events up to `marker` (sent by the caller after this starts)."""
    got = []
    for e in _events(mgr):
        if e.kind == kharbranth.EventKind.TEXT:
            if e.text == marker:
                return got
            got.append(e.text)
    raise AssertionError(f"no {marker!r} within {WAIT} s; got {got}")


def test_subscriptions_are_replayed_after_a_drop_in_order_and_once(server):
    with kharbranth.Manager() as mgr:
        mgr.add("feed", server, reconnect_backoff=(0.02, 0.2), init_text=["login"])
        poll_until(mgr, kharbranth.EventKind.OPEN)
        # The feed server echoes: each subscribe message comes back once per socket.
        mgr.subscribe("feed", "a", "sub-a")
        mgr.subscribe("feed", "b", b"sub-b")
        mgr.subscribe("feed", "c", "sub-c")
        mgr.unsubscribe("feed", "b", "unsub-b")
        mgr.unsubscribe("feed", "c")
        assert mgr.subscription_count("feed") == 1
        mgr.send_text("feed", "end-1")
        assert texts_until(mgr, "end-1") == ["login", "sub-a", "sub-c", "unsub-b"]
        mgr.send_text("feed", "drop")
        poll_until(mgr, kharbranth.EventKind.OPEN)
        mgr.send_text("feed", "end-2")
        assert texts_until(mgr, "end-2") == ["login", "sub-a"]


def test_bad_subscription_calls_raise_named_errors(server):
    with kharbranth.Manager() as mgr:
        mgr.add("feed", server)
        mgr.subscribe("feed", "a", "sub-a")
        with pytest.raises(kharbranth.SubscriptionExists) as e:
            mgr.subscribe("feed", "a", "again")
        assert e.value.code == 20
        with pytest.raises(kharbranth.SubscriptionNotFound) as e:
            mgr.unsubscribe("feed", "zz")
        assert e.value.code == 19
        with pytest.raises(kharbranth.InvalidArgument):
            mgr.subscribe("feed", "", "x")
        with pytest.raises(kharbranth.ConnectionNotFound):
            mgr.subscribe("nobody", "a", "x")
        assert mgr.subscription_count("feed") == 1
    with pytest.raises(kharbranth.ShuttingDown):
        mgr.subscribe("feed", "b", "x")


def test_state_events_tell_a_poller_about_the_gap(server):
    with kharbranth.Manager() as mgr:
        mgr.add("s", server, reconnect_backoff=(0.02, 0.2), state_events=True)
        e = poll_until(mgr, kharbranth.EventKind.STATE)
        assert (e.conn, e.state, e.reason, e.attempts) == ("s", kharbranth.ConnState.CONNECTING,
                                                           None, 0)
        e = poll_until(mgr, kharbranth.EventKind.STATE)
        assert (e.state, e.down_for, e.last_message_at) == (kharbranth.ConnState.OPEN, None,
                                                            None)
        # State(OPEN) comes just before the OPEN event.
        assert next(_events(mgr)).kind == kharbranth.EventKind.OPEN
        before = time.time()
        mgr.send_text("s", "push 1")
        assert poll_until(mgr, kharbranth.EventKind.TEXT).text == "msg 1"
        after = time.time()
        mgr.send_text("s", "drop")
        e = poll_until(mgr, kharbranth.EventKind.STATE)
        assert e.state == kharbranth.ConnState.RECONNECTING
        assert isinstance(e.reason, kharbranth.ConnectionDropped), e.reason
        assert e.text == e.reason.message and e.text
        e = poll_until(mgr, kharbranth.EventKind.STATE)
        assert e.state == kharbranth.ConnState.OPEN and e.reason is None
        assert e.attempts >= 1 and e.down_for > 0, (e.attempts, e.down_for)
        # Read once per poll of the connection that delivered it, before the poller saw it.
        assert before <= e.last_message_at <= after, (before, e.last_message_at, after)


def test_without_state_events_no_state_event_is_polled(server):
    with kharbranth.Manager() as mgr:
        mgr.add("q", server, reconnect_backoff=(0.02, 0.2))
        poll_until(mgr, kharbranth.EventKind.OPEN)
        mgr.send_text("q", "drop")
        poll_until(mgr, kharbranth.EventKind.ERROR)
        poll_until(mgr, kharbranth.EventKind.OPEN)
        mgr.close_connection("q")
        assert all(e.kind != kharbranth.EventKind.STATE for e in mgr.poll(timeout=0.2))


def test_receive_timestamps_stamp_message_events(server):
    with kharbranth.Manager() as mgr:
        mgr.add("t", server, receive_timestamps=True)
        e = poll_until(mgr, kharbranth.EventKind.OPEN)
        assert (e.recv_mono_ns, e.recv_wall_ns) == (None, None)
        mono0, wall0 = time.monotonic_ns(), time.time_ns()
        mgr.send_text("t", "push 200")
        got = []
        while len(got) < 200:
            e = poll_until(mgr, kharbranth.EventKind.TEXT)
            got.append((e.recv_mono_ns, e.recv_wall_ns, time.monotonic_ns(), time.time_ns()))
        last = 0
        for mono, wall, seen_mono, seen_wall in got:
            assert mono0 <= mono <= seen_mono, (mono0, mono, seen_mono)
            assert wall0 <= wall <= seen_wall, (wall0, wall, seen_wall)
            assert mono >= last
            last = mono


def test_asyncio_events_carry_state_changes(server):
    async def main():
        with kharbranth.Manager() as mgr:
            mgr.add("a", server, state_events=True)
            seen = []
            async for e in mgr.events():
                if e.kind == kharbranth.EventKind.STATE:
                    seen.append(e.state)
                if e.kind == kharbranth.EventKind.OPEN:
                    return seen

    seen = asyncio.run(asyncio.wait_for(main(), WAIT))
    assert seen == [kharbranth.ConnState.CONNECTING, kharbranth.ConnState.OPEN]
