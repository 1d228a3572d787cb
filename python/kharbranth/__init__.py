"""kharbranth for Python: named WebSocket client connections that stay connected, with their
events taken by polling (no callbacks into Python).

    import kharbranth

    with kharbranth.Manager() as mgr:
        mgr.add("feed", "ws://127.0.0.1:9000/")
        for event in mgr.poll(timeout=1.0):
            print(event.kind.name, event.conn, event.data)

    async def main():
        with kharbranth.Manager() as mgr:
            mgr.add("feed", "ws://127.0.0.1:9000/")
            async for event in mgr.events():
                ...

A binding of the C ABI (include/kharbranth.h) through ctypes over the shared library bundled in
the package ($KH_LIB overrides it). Every failing call raises a subclass of `KharbranthError`
named after its kh_result code, with the library's message. Events are copied into Python
objects as they are polled; the queue is bounded, and while it is full the connections stop
reading their sockets (TCP backpressure) until the program polls again: nothing is dropped.

`SPEEDUPS` is True when `poll` runs through the package's C extension (`_speedups`, built by
`pip install` when a C compiler is there), False when it runs the ctypes loop (no extension,
or KH_NO_SPEEDUPS=1 in the environment at import). Both give the same events.
"""

import asyncio
import atexit
import ctypes
import enum
import logging
import os
import struct
import threading
import time
from ctypes import POINTER, Structure, c_char_p, c_int, c_int32, c_size_t, c_uint16, c_uint32
from ctypes import c_uint64, c_void_p

__all__ = [
    "Manager",
    "Event",
    "EventKind",
    "ConnState",
    "KharbranthError",
    "DEFAULT_EVENT_CAPACITY",
    "SPEEDUPS",
    "route_logs",
    "TRACE",
]

DEFAULT_EVENT_CAPACITY = 65536


def _import_speedups():
    if os.environ.get("KH_NO_SPEEDUPS", "") not in ("", "0"):
        return None
    try:
        from . import _speedups as mod
    except ImportError:
        return None
    return mod


_speedups = _import_speedups()
SPEEDUPS = _speedups is not None


class EventKind(enum.IntEnum):
    """The kind of an `Event` (kh_event_kind)."""

    OPEN = 1
    TEXT = 2
    BINARY = 3
    PING = 4
    PONG = 5
    CLOSE = 6
    ERROR = 7
    # A lifecycle state change, only for connections added with state_events=True.
    STATE = 8


class ConnState(enum.IntEnum):
    """The state a STATE event entered (kh_conn_state)."""

    CONNECTING = 0
    OPEN = 1
    RECONNECTING = 2
    CLOSING = 3
    CLOSED = 4


class _KhEvent(Structure):
    _fields_ = [
        ("kind", c_uint32),
        ("error", c_uint32),
        ("close_code", c_uint16),
        ("reserved16", c_uint16),
        ("reserved32", c_uint32),
        ("conn", c_char_p),
        ("data", c_void_p),
        ("len", c_size_t),
        ("reserved", c_uint64 * 3),
    ]


assert ctypes.sizeof(_KhEvent) == 64, "kh_event is 64 bytes"

# The same layout for struct: kind, error, close_code (then 6 reserved bytes), conn, data, len
# (then 24 reserved bytes).
_EVENT = struct.Struct("@IIH6xPPN24x")
assert _EVENT.size == 64
# Every member, for managers with state events or receive timestamps: kind, error, close_code,
# state, attempts, conn, data, len, down_for_ns, recv_mono_ns, recv_wall_ns.
_EVENT_FULL = struct.Struct("@IIHHIPPNQQQ")
assert _EVENT_FULL.size == 64
_KINDS = {k.value: k for k in EventKind}

# kh_result codes, by value (include/kharbranth.h).
_CODES = [
    "KH_OK", "KH_PING_FAILED", "KH_PONG_RECEIVE_TIMEOUT", "KH_READ_ERROR", "KH_WRITE_ERROR",
    "KH_CONNECTION_DROPPED", "KH_CONNECTION_NOT_FOUND", "KH_CONNECT_FAILED",
    "KH_INVALID_ARGUMENT", "KH_ALREADY_EXISTS", "KH_QUEUE_FULL", "KH_SHUTTING_DOWN",
    "KH_TIMEOUT", "KH_PANIC", "KH_RETRIES_EXHAUSTED", "KH_MESSAGE_TOO_LARGE", "KH_SYSTEM_ERROR",
    "KH_IDLE_TIMEOUT", "KH_INFLATE_FAILED",
]
# Codes past the list above, by value (values may skip: codes are assigned per feature).
_MORE_CODES = {19: "KH_SUBSCRIPTION_NOT_FOUND", 20: "KH_SUBSCRIPTION_EXISTS"}


class KharbranthError(Exception):
    """A failed call (or an error event's code): `code` is the kh_result value, `message` the
    library's description."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def _class_name(code_name):
    # KH_CONNECTION_NOT_FOUND -> ConnectionNotFound
    return "".join(w.capitalize() for w in code_name[3:].split("_"))


_ERRORS = {}
for _value, _name in list(enumerate(_CODES[1:], start=1)) + sorted(_MORE_CODES.items()):
    _cls = type(_class_name(_name), (KharbranthError,), {"__doc__": f"{_name}."})
    _ERRORS[_value] = _cls
    globals()[_cls.__name__] = _cls
    __all__.append(_cls.__name__)


def error_for(code, message):
    """The exception for kh_result `code` (KharbranthError for a code this version lacks)."""
    return _ERRORS.get(code, KharbranthError)(code, message)


def _load(path=None):
    path = path or os.environ.get("KH_LIB") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "libkharbranth.so")
    lib = ctypes.CDLL(path)
    p = c_void_p
    sigs = {
        "kh_last_error": (c_size_t, [c_char_p, c_size_t]),
        "kh_config_new": (c_uint32, [c_char_p, POINTER(p)]),
        "kh_config_free": (None, [p]),
        "kh_config_set_ping_interval_ms": (c_uint32, [p, c_uint64]),
        "kh_config_set_pong_timeout_ms": (c_uint32, [p, c_uint64]),
        "kh_config_set_connect_timeout_ms": (c_uint32, [p, c_uint64]),
        "kh_config_set_close_timeout_ms": (c_uint32, [p, c_uint64]),
        "kh_config_set_reconnect_backoff_ms": (c_uint32, [p, c_uint64, c_uint64]),
        "kh_config_add_init_text": (c_uint32, [p, c_char_p, c_size_t]),
        "kh_manager_new_with_threads": (c_uint32, [c_uint32, POINTER(p)]),
        "kh_manager_new_driven": (c_uint32, [POINTER(p)]),
        "kh_manager_free": (None, [p]),
        "kh_manager_add_polled": (c_uint32, [p, c_char_p, p]),
        "kh_manager_add_polled_ex": (c_uint32, [p, c_char_p, p, c_uint32]),
        "kh_config_set_receive_timestamps": (c_uint32, [p, c_int]),
        "kh_config_set_read_buffer_size": (c_uint32, [p, c_size_t]),
        "kh_manager_set_event_capacity": (c_uint32, [p, c_size_t]),
        "kh_manager_set_event_byte_capacity": (c_uint32, [p, c_size_t]),
        "kh_manager_poll": (c_uint32, [p, POINTER(_KhEvent), c_size_t, c_int32,
                                       POINTER(c_size_t)]),
        "kh_manager_event_fd": (c_uint32, [p, POINTER(c_int)]),
        "kh_manager_wakeup": (c_uint32, [p]),
        "kh_manager_send_text": (c_uint32, [p, c_char_p, c_char_p, c_size_t]),
        "kh_manager_send_binary": (c_uint32, [p, c_char_p, c_char_p, c_size_t]),
        "kh_manager_close": (c_uint32, [p, c_char_p, c_uint16, c_char_p]),
        "kh_manager_wait_open": (c_uint32, [p, c_char_p, c_uint32]),
        "kh_log_set_callback": (c_uint32, [p, p, c_char_p]),
        "kh_manager_subscribe_text": (c_uint32, [p, c_char_p, c_char_p, c_char_p, c_size_t]),
        "kh_manager_subscribe_binary": (c_uint32, [p, c_char_p, c_char_p, c_char_p, c_size_t]),
        "kh_manager_unsubscribe": (c_uint32, [p, c_char_p, c_char_p, c_char_p, c_size_t]),
        "kh_manager_unsubscribe_binary": (c_uint32, [p, c_char_p, c_char_p, c_char_p,
                                                     c_size_t]),
        "kh_manager_subscription_count": (c_uint32, [p, c_char_p, POINTER(c_size_t)]),
    }
    for name, (res, args) in sigs.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    return lib


_LIB = None


def _lib():
    global _LIB
    if _LIB is None:
        _LIB = _load()
    return _LIB


def _check(rc):
    if rc != 0:
        lib = _lib()
        n = lib.kh_last_error(None, 0)
        buf = ctypes.create_string_buffer(n + 1)
        lib.kh_last_error(buf, n + 1)
        raise error_for(rc, buf.value.decode("utf-8", "replace"))


TRACE = 5
"""The `logging` level of the library's trace records (below DEBUG)."""
logging.addLevelName(TRACE, "TRACE")
# As libraries do: without logging configured, the records go nowhere (rather than to the
# last-resort stderr handler), so routing them changes nothing for a program that ignores them.
logging.getLogger("kharbranth").addHandler(logging.NullHandler())

# kh_log_level (1 error .. 5 trace) -> logging level.
_LEVELS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG, 5: TRACE}
_log_lock = threading.Lock()
_log_state = {"routed": None, "thread": None}


def _logger_for(target, cache={}):
    # kharbranth::supervisor -> logger "kharbranth.supervisor"; another crate's target
    # (tokio_tungstenite::...) -> "kharbranth.tokio_tungstenite...": all under "kharbranth".
    lg = cache.get(target)
    if lg is None:
        parts = [p for p in target.split("::") if p]
        if parts[:1] == ["kharbranth"]:
            parts = parts[1:]
        lg = cache[target] = logging.getLogger(".".join(["kharbranth"] + parts))
    return lg


def _drain_logs():
    dropped_logger = logging.getLogger("kharbranth")
    while True:
        records, dropped, stopped = _speedups.log_wait(1000)
        for level, target, message in records:
            lvl = _LEVELS.get(level, logging.INFO)
            lg = _logger_for(target)
            if lg.isEnabledFor(lvl):
                lg.log(lvl, "%s", message)
        if dropped:
            dropped_logger.warning("%d log records of the library were dropped: the Python "
                                   "logging thread fell behind", dropped)
        if stopped:
            return


def _stop_logs():
    thread = _log_state["thread"]
    if thread is not None:
        _speedups.log_stop()
        thread.join(timeout=2.0)  # bounded: exit never waits on a stuck logging handler


def route_logs(filter=None):
    """Sends the library's log records to Python's `logging` (logger "kharbranth" and its
    children named after the Rust module, e.g. "kharbranth.supervisor"; levels mapped, trace
    records at `TRACE` = 5). `filter` is the library's own filter, like RUST_LOG ("info",
    "kharbranth=debug"; None reads $RUST_LOG, default info): records it drops never reach
    Python.

    `Manager()` calls it (with None) the first time, so call it before with a filter of your
    own. Once per process; later calls return the first call's result. Returns True when
    the records go to `logging`, False when they cannot: without the C extension
    (`SPEEDUPS` False) or when something in the process installed a Rust logger already.

    The records are queued by the library's threads without the GIL (bounded: a full queue
    counts the records it drops and a warning says how many) and logged by a daemon thread,
    which stops at interpreter exit."""
    with _log_lock:
        if _log_state["routed"] is not None:
            return _log_state["routed"]
        routed = False
        if SPEEDUPS:
            lib = _lib()
            f = filter.encode() if filter is not None else None
            rc = lib.kh_log_set_callback(_speedups.log_callback_address(), None, f)
            if rc == 0:
                t = threading.Thread(target=_drain_logs, name="kharbranth-log", daemon=True)
                t.start()
                _log_state["thread"] = t
                atexit.register(_stop_logs)
                routed = True
            elif rc != 9:  # 9: KH_ALREADY_EXISTS, another logger is in place
                _check(rc)
        _log_state["routed"] = routed
        return routed


def _ms(seconds):
    return max(1, int(round(seconds * 1000)))


class _PyEvent:
    """One event of a connection, copied out of the library.

    `kind` (EventKind), `conn` (the connection's name), `data` (bytes: the payload, the close
    reason, or the error message), `size` (`len(data)`; with the C extension it does not copy
    the payload, which `data` does on first use), `close_code` (CLOSE), `error` (ERROR: a
    KharbranthError subclass instance, not raised).

    For a connection added with `state_events=True`, a STATE event has `state` (ConnState),
    `reason` (the KharbranthError that caused the change, or None; its message is `data`),
    and on an open after a drop `attempts` (connect attempts since the drop), `down_for`
    (seconds it was down) and `last_message_at` (`time.time()` seconds of the last data message
    before the drop, None if none came); otherwise 0 / None. For a connection added with
    `receive_timestamps=True`, every frame event has `recv_mono_ns` (CLOCK_MONOTONIC
    nanoseconds, comparable with `time.monotonic_ns()`) and `recv_wall_ns` (`time.time_ns()`
    clock): the time of the socket read that completed it. None elsewhere."""

    __slots__ = ("kind", "conn", "data", "size", "close_code", "error", "state", "attempts",
                 "down_for", "reason", "last_message_at", "recv_mono_ns", "recv_wall_ns")

    def __init__(self, kind, conn, data, close_code=0, error=None, state=None, attempts=0,
                 down_for=None, reason=None, last_message_at=None, recv_mono_ns=None,
                 recv_wall_ns=None):
        self.kind = kind
        self.conn = conn
        self.data = data
        self.size = len(data)
        self.close_code = close_code
        self.error = error
        self.state = state
        self.attempts = attempts
        self.down_for = down_for
        self.reason = reason
        self.last_message_at = last_message_at
        self.recv_mono_ns = recv_mono_ns
        self.recv_wall_ns = recv_wall_ns

    @property
    def text(self):
        """`data` decoded as UTF-8 (text messages, close reasons and error messages are)."""
        return self.data.decode("utf-8")

    def __repr__(self):
        return f"Event({self.kind.name}, {self.conn!r}, {self.data[:40]!r})"


# The extension's Event has the same attributes (read-only there) and `text`; it is the one
# `poll` returns when the extension is in use.
Event = _speedups.Event if SPEEDUPS else _PyEvent


class Manager:
    """A kharbranth manager whose connections deliver their events to `poll` and `events`.

    Close it with `close()` or a `with` block (stops every connection, bounded in time).

    `threads`: the library's worker threads, which read the sockets while Python does other
    things (0: 2 to 8 by the number of CPUs). `driven=True` instead starts no thread: the
    connections run on the thread that calls `poll` (or `wait_open`, `close_connection`,
    `close`), inside that call, with the GIL released, as picows runs on asyncio's thread.
    That is the fastest way to consume a feed from one thread, since no event is handed
    between threads; but nothing moves between polls (no socket is read, no ping answered,
    no reconnect made; sends go out in the next poll) while time runs on (a pong or idle
    timeout that passes between polls can fail the connection in the next one, which then
    reconnects it), so poll at least as often as those timeouts and your peers' heartbeats
    ask. `fileno()` and `events()` are not available."""

    def __init__(self, threads=0, event_capacity=None, event_bytes=None, driven=False):
        self._lib = _lib()
        self._poller = None
        try:
            route_logs()
        except KharbranthError:
            pass  # a bad $RUST_LOG: the manager works, its records stay unrouted
        m = c_void_p()
        if driven:
            _check(self._lib.kh_manager_new_driven(ctypes.byref(m)))
        else:
            _check(self._lib.kh_manager_new_with_threads(threads, ctypes.byref(m)))
        self.driven = bool(driven)
        self._m = m
        self._batch = None
        if SPEEDUPS:
            poll_fn = ctypes.cast(self._lib.kh_manager_poll, c_void_p).value
            self._poller = _speedups.Poller(poll_fn, m.value, tuple(EventKind), error_for,
                                            _check, tuple(ConnState))
        # Connection names as str, decoded once per name rather than once per event.
        self._names = {}
        # A connection asked for state events or receive timestamps: the ctypes loop reads
        # every member of kh_event (the extension always does).
        self._full = False
        if event_capacity is not None:
            self.set_event_capacity(event_capacity)
        if event_bytes is not None:
            self.set_event_byte_capacity(event_bytes)

    def _mgr(self):
        if self._m is None:
            raise error_for(11, "the manager is closed")
        return self._m

    def set_event_capacity(self, capacity):
        """How many events wait before connections stop reading (1 to 16777216)."""
        _check(self._lib.kh_manager_set_event_capacity(self._mgr(), capacity))

    def set_event_byte_capacity(self, nbytes):
        """How many payload bytes wait before connections stop reading (1 to 2**40; 64 MiB by
        default): with large messages this bounds the queue's memory."""
        _check(self._lib.kh_manager_set_event_byte_capacity(self._mgr(), nbytes))

    def add(self, name, url, *, ping_interval=None, pong_timeout=None, connect_timeout=None,
            close_timeout=None, reconnect_backoff=None, init_text=(), state_events=False,
            receive_timestamps=False, read_buffer_size=None):
        """Adds a connection (times in seconds; `reconnect_backoff` is a (min, max) pair;
        `init_text` messages are sent after every connect) and starts connecting it.

        `state_events=True` queues its lifecycle changes as STATE events (see `Event`);
        `receive_timestamps=True` stamps its frames with their receive time. Both off by
        default. `read_buffer_size`: the largest read while data keeps coming, in bytes (256 to
        64 MiB; 1 MiB by default, reads starting at 64 KiB and doubling while the socket fills
        them), a buffer that exists only while the feed is busy."""
        lib = self._lib
        cfg = c_void_p()
        _check(lib.kh_config_new(url.encode(), ctypes.byref(cfg)))
        try:
            for setter, value in ((lib.kh_config_set_ping_interval_ms, ping_interval),
                                  (lib.kh_config_set_pong_timeout_ms, pong_timeout),
                                  (lib.kh_config_set_connect_timeout_ms, connect_timeout),
                                  (lib.kh_config_set_close_timeout_ms, close_timeout)):
                if value is not None:
                    _check(setter(cfg, _ms(value)))
            if reconnect_backoff is not None:
                lo, hi = reconnect_backoff
                _check(lib.kh_config_set_reconnect_backoff_ms(cfg, _ms(lo), _ms(hi)))
            for t in init_text:
                b = t.encode()
                _check(lib.kh_config_add_init_text(cfg, b, len(b)))
            if receive_timestamps:
                _check(lib.kh_config_set_receive_timestamps(cfg, 1))
            if read_buffer_size is not None:
                _check(lib.kh_config_set_read_buffer_size(cfg, read_buffer_size))
            if state_events or receive_timestamps:
                flags = 1 if state_events else 0  # KH_POLL_STATE_EVENTS
                _check(lib.kh_manager_add_polled_ex(self._mgr(), name.encode(), cfg, flags))
                self._full = True
            else:
                _check(lib.kh_manager_add_polled(self._mgr(), name.encode(), cfg))
        finally:
            lib.kh_config_free(cfg)

    def send_text(self, name, text):
        b = text.encode()
        _check(self._lib.kh_manager_send_text(self._mgr(), name.encode(), b, len(b)))

    def send_binary(self, name, data):
        data = bytes(data)
        _check(self._lib.kh_manager_send_binary(self._mgr(), name.encode(), data, len(data)))

    def subscribe(self, name, key, message):
        """Adds a live subscription to `name` under `key`: `message` (str: text, bytes: binary)
        is sent now if the connection is open and again after every reconnect or restart,
        right after the init messages, with the others in the order added; each socket gets
        it exactly once. Raises SubscriptionExists, MessageTooLarge, QueueFull, ..."""
        k = key.encode()
        if isinstance(message, str):
            b = message.encode()
            rc = self._lib.kh_manager_subscribe_text(self._mgr(), name.encode(), k, b, len(b))
        else:
            b = bytes(message)
            rc = self._lib.kh_manager_subscribe_binary(self._mgr(), name.encode(), k, b, len(b))
        _check(rc)

    def unsubscribe(self, name, key, message=None):
        """Removes the subscription `key` of `name`; `message` (str or bytes, optional) is sent
        as the unsubscribe message if a socket is open. Raises SubscriptionNotFound, ..."""
        k = key.encode()
        if message is None or isinstance(message, str):
            b = message.encode() if message is not None else None
            rc = self._lib.kh_manager_unsubscribe(self._mgr(), name.encode(), k, b,
                                                  len(b) if b else 0)
        else:
            b = bytes(message)
            rc = self._lib.kh_manager_unsubscribe_binary(self._mgr(), name.encode(), k, b,
                                                         len(b))
        _check(rc)

    def subscription_count(self, name):
        """How many live subscriptions `name` has."""
        n = c_size_t()
        _check(self._lib.kh_manager_subscription_count(self._mgr(), name.encode(),
                                                       ctypes.byref(n)))
        return n.value

    def wait_open(self, name, timeout):
        """Blocks until `name` is open; raises Timeout or ConnectionDropped."""
        _check(self._lib.kh_manager_wait_open(self._mgr(), name.encode(), _ms(timeout)))

    def close_connection(self, name, code=1000, reason=None):
        """Closes one connection cleanly and forgets its name."""
        r = reason.encode() if reason is not None else None
        _check(self._lib.kh_manager_close(self._mgr(), name.encode(), code, r))

    def poll(self, max_events=256, timeout=None):
        """Takes up to `max_events` events, waiting up to `timeout` seconds for the first
        (None: until one comes or `wakeup()`; 0: not at all). Returns a list, empty when the
        time ran out or it was woken. The wait releases the GIL."""
        if max_events < 1:
            raise error_for(8, f"max_events must be at least 1, not {max_events}")
        if timeout is None:
            ms = -1
        else:
            ms = min(int(max(0.0, timeout) * 1000 + 0.999), 2**31 - 1)
        if self._poller is not None:
            self._mgr()
            return self._poller.poll(max_events, ms)
        if self._batch is None or len(self._batch) < max_events:
            self._batch = (_KhEvent * max_events)()
        n = c_size_t(0)
        _check(self._lib.kh_manager_poll(self._mgr(), self._batch, max_events, ms,
                                         ctypes.byref(n)))
        out = []
        if not n.value:
            return out
        if self._full:
            return self._unpack_full(n.value)
        # One pass over the raw array with struct (C speed) instead of a ctypes object and
        # attribute lookups per event: this loop is the per-message cost of the binding.
        raw = memoryview(self._batch).cast("B")[: n.value * _EVENT.size]
        string_at, kinds, names, append = ctypes.string_at, _KINDS, self._names, out.append
        for kind, code, close_code, conn, data, length in _EVENT.iter_unpack(raw):
            kind = kinds.get(kind)
            if kind is None:
                continue  # a kind from a later library version
            payload = string_at(data, length) if length else b""
            raw_name = string_at(conn) if conn else b""
            name = names.get(raw_name)
            if name is None:
                name = names[raw_name] = raw_name.decode()
            error = None
            if kind is EventKind.ERROR:
                error = error_for(code, payload.decode("utf-8", "replace"))
            append(_PyEvent(kind, name, payload, close_code, error))
        return out

    def _unpack_full(self, n):
        """Events with every kh_event member (state events, receive timestamps)."""
        raw = memoryview(self._batch).cast("B")[: n * _EVENT_FULL.size]
        string_at, kinds, names, out = ctypes.string_at, _KINDS, self._names, []
        for (kind, code, close_code, state, attempts, conn, data, length, down_ns, mono,
             wall) in _EVENT_FULL.iter_unpack(raw):
            kind = kinds.get(kind)
            if kind is None:
                continue  # a kind from a later library version
            payload = string_at(data, length) if length else b""
            raw_name = string_at(conn) if conn else b""
            name = names.get(raw_name)
            if name is None:
                name = names[raw_name] = raw_name.decode()
            ev = _PyEvent(kind, name, payload, close_code)
            if kind is EventKind.ERROR:
                ev.error = error_for(code, payload.decode("utf-8", "replace"))
            if kind is EventKind.STATE:
                ev.state = ConnState(state)
                ev.attempts = attempts
                ev.down_for = down_ns / 1e9 if down_ns else None
                ev.last_message_at = wall / 1e9 if wall else None
                if code:
                    ev.reason = error_for(code, payload.decode("utf-8", "replace"))
            elif mono:
                ev.recv_mono_ns, ev.recv_wall_ns = mono, wall
            out.append(ev)
        return out

    def fileno(self):
        """A descriptor readable while events wait (owned by the manager: do not close it)."""
        fd = c_int(-1)
        _check(self._lib.kh_manager_event_fd(self._mgr(), ctypes.byref(fd)))
        return fd.value

    def wakeup(self):
        """Makes a blocked `poll` (or else the next one) return at once; any thread."""
        _check(self._lib.kh_manager_wakeup(self._mgr()))

    async def events(self, max_events=256):
        """The events as an async iterator, driven by `fileno()` through the running loop's
        `add_reader`: it never blocks the loop. Ends when the manager is closed."""
        loop = asyncio.get_running_loop()
        fd = self.fileno()
        while self._m is not None:
            batch = self.poll(max_events, timeout=0)
            if batch:
                for e in batch:
                    yield e
                continue
            ready = loop.create_future()

            def on_readable(fut=ready):
                if not fut.done():
                    fut.set_result(None)

            loop.add_reader(fd, on_readable)
            try:
                await ready
            finally:
                loop.remove_reader(fd)

    def close(self):
        """Stops every connection and frees the manager (bounded in time). Idempotent."""
        m, self._m = self._m, None
        p = getattr(self, "_poller", None)
        if p is not None and m is not None:
            # A poll blocked on another thread would read the freed manager: wake it and give
            # it a bounded time to leave the library first.
            deadline = time.monotonic() + 5.0
            while p.busy and time.monotonic() < deadline:
                self._lib.kh_manager_wakeup(m)
                time.sleep(0.001)
            p.detach()
        if m is not None:
            self._lib.kh_manager_free(m)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
