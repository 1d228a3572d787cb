"""A tiny ctypes binding of kharbranth's C ABI (include/kharbranth.h). Standard library only.

    import kharbranth as kh
    lib = kh.load()                      # target/release/libkharbranth.so, or $KH_LIB
    with kh.Manager(lib) as mgr:
        mgr.add("feed", "ws://127.0.0.1:9000/", on_text=lambda conn, data: print(conn, data))
        mgr.wait_open("feed", 5000)
        mgr.send_text("feed", "hello")

The raw functions are on the loaded library (``lib.kh_manager_add(...)``) with their argument and
result types declared, for tests of the C contract itself. ``Manager`` keeps every callback
alive until the library calls ``on_drop`` for it.
"""

import ctypes
import os
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_size_t,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_LIB = os.path.join(ROOT, "target", "release", "libkharbranth.so")

# kh_result
KH_OK = 0
KH_PING_FAILED = 1
KH_PONG_RECEIVE_TIMEOUT = 2
KH_READ_ERROR = 3
KH_WRITE_ERROR = 4
KH_CONNECTION_DROPPED = 5
KH_CONNECTION_NOT_FOUND = 6
KH_CONNECT_FAILED = 7
KH_INVALID_ARGUMENT = 8
KH_ALREADY_EXISTS = 9
KH_QUEUE_FULL = 10
KH_SHUTTING_DOWN = 11
KH_TIMEOUT = 12
KH_PANIC = 13
KH_RETRIES_EXHAUSTED = 14
KH_MESSAGE_TOO_LARGE = 15

# kh_conn_state
KH_STATE_CONNECTING = 0
KH_STATE_OPEN = 1
KH_STATE_RECONNECTING = 2
KH_STATE_CLOSING = 3
KH_STATE_CLOSED = 4

kh_result = c_uint32
kh_conn_state = c_uint32
kh_config_p = c_void_p
kh_manager_p = c_void_p

ON_OPEN = CFUNCTYPE(None, c_void_p, c_char_p)
# `data` is not NUL-terminated: take it as a raw pointer and read `len` bytes.
ON_TEXT = CFUNCTYPE(None, c_void_p, c_char_p, c_void_p, c_size_t)
ON_BYTES = CFUNCTYPE(None, c_void_p, c_char_p, c_void_p, c_size_t)
ON_CLOSE = CFUNCTYPE(None, c_void_p, c_char_p, c_uint16, c_void_p, c_size_t)
ON_FRAME = CFUNCTYPE(None, c_void_p, c_char_p, c_uint8, c_void_p, c_size_t)
ON_ERROR = CFUNCTYPE(None, c_void_p, c_char_p, kh_result, c_char_p)
ON_DROP = CFUNCTYPE(None, c_void_p)


class Hooks(Structure):
    _fields_ = [
        ("user_data", c_void_p),
        ("on_open", ON_OPEN),
        ("on_text", ON_TEXT),
        ("on_binary", ON_BYTES),
        ("on_ping", ON_BYTES),
        ("on_pong", ON_BYTES),
        ("on_close", ON_CLOSE),
        ("on_frame", ON_FRAME),
        ("on_error", ON_ERROR),
        ("on_drop", ON_DROP),
    ]


class ConnStats(Structure):
    _fields_ = [
        ("messages_in", c_uint64),
        ("bytes_in", c_uint64),
        ("messages_out", c_uint64),
        ("bytes_out", c_uint64),
        ("reconnects", c_uint64),
        ("last_rtt_us", c_uint64),
    ]


_SIGNATURES = {
    "kh_result_str": (c_char_p, [kh_result]),
    "kh_last_error": (c_size_t, [c_char_p, c_size_t]),
    "kh_version": (c_char_p, []),
    "kh_log_init": (kh_result, [c_char_p]),
    "kh_config_new": (kh_result, [c_char_p, POINTER(kh_config_p)]),
    "kh_config_free": (None, [kh_config_p]),
    "kh_config_set_ping_interval_ms": (kh_result, [kh_config_p, c_uint64]),
    "kh_config_set_pong_timeout_ms": (kh_result, [kh_config_p, c_uint64]),
    "kh_config_set_connect_timeout_ms": (kh_result, [kh_config_p, c_uint64]),
    "kh_config_set_close_timeout_ms": (kh_result, [kh_config_p, c_uint64]),
    "kh_config_set_reconnect_backoff_ms": (kh_result, [kh_config_p, c_uint64, c_uint64]),
    "kh_config_set_max_reconnect_attempts": (kh_result, [kh_config_p, c_uint32]),
    "kh_config_add_header": (kh_result, [kh_config_p, c_char_p, c_char_p]),
    "kh_config_add_subprotocol": (kh_result, [kh_config_p, c_char_p]),
    "kh_config_add_init_text": (kh_result, [kh_config_p, c_char_p, c_size_t]),
    "kh_config_add_init_binary": (kh_result, [kh_config_p, c_char_p, c_size_t]),
    "kh_config_set_ping_text": (kh_result, [kh_config_p, c_char_p, c_size_t]),
    "kh_config_set_max_message_size": (kh_result, [kh_config_p, c_size_t]),
    "kh_config_set_send_queue_capacity": (kh_result, [kh_config_p, c_size_t]),
    "kh_config_add_ca_file": (kh_result, [kh_config_p, c_char_p]),
    "kh_manager_new": (kh_result, [POINTER(kh_manager_p)]),
    "kh_manager_new_with_threads": (kh_result, [c_uint32, POINTER(kh_manager_p)]),
    "kh_manager_free": (None, [kh_manager_p]),
    "kh_manager_add": (kh_result, [kh_manager_p, c_char_p, kh_config_p, POINTER(Hooks)]),
    "kh_manager_send_text": (kh_result, [kh_manager_p, c_char_p, c_char_p, c_size_t]),
    "kh_manager_send_binary": (kh_result, [kh_manager_p, c_char_p, c_char_p, c_size_t]),
    "kh_manager_send_ping": (kh_result, [kh_manager_p, c_char_p, c_char_p, c_size_t]),
    "kh_manager_restart": (kh_result, [kh_manager_p, c_char_p]),
    "kh_manager_restart_all": (kh_result, [kh_manager_p]),
    "kh_manager_close": (kh_result, [kh_manager_p, c_char_p, c_uint16, c_char_p]),
    "kh_manager_state": (kh_result, [kh_manager_p, c_char_p, POINTER(kh_conn_state)]),
    "kh_manager_stats": (kh_result, [kh_manager_p, c_char_p, POINTER(ConnStats)]),
    "kh_manager_wait_open": (kh_result, [kh_manager_p, c_char_p, c_uint32]),
}


def load(path=None):
    """Loads the shared library (``path``, else ``$KH_LIB``, else target/release) and declares
    the types of every ``kh_`` function. ctypes.CDLL releases the GIL during each call, so the
    library's threads can run Python callbacks while the caller blocks in it."""
    lib = ctypes.CDLL(path or os.environ.get("KH_LIB") or DEFAULT_LIB)
    for name, (restype, argtypes) in _SIGNATURES.items():
        f = getattr(lib, name)
        f.restype = restype
        f.argtypes = argtypes
    return lib


def last_error(lib):
    """The message of the last failed call on this thread ('' when none failed)."""
    n = lib.kh_last_error(None, 0)
    buf = ctypes.create_string_buffer(n + 1)
    lib.kh_last_error(buf, n + 1)
    return buf.value.decode("utf-8", "replace")


class KhError(Exception):
    def __init__(self, lib, code, what):
        self.code = code
        self.message = last_error(lib)
        name = lib.kh_result_str(code).decode()
        super().__init__(f"{what}: {name}: {self.message}")


def check(lib, rc, what):
    if rc != KH_OK:
        raise KhError(lib, rc, what)


def _bytes(data):
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


class Config:
    """An owned kh_config: ``Config(lib, url, ping_interval_ms=..., init_text=[...], ...)``."""

    def __init__(self, lib, url, **options):
        self.lib = lib
        self.ptr = kh_config_p()
        check(lib, lib.kh_config_new(url.encode(), ctypes.byref(self.ptr)), "kh_config_new")
        try:
            for key, value in options.items():
                self.set(key, value)
        except BaseException:
            self.free()
            raise

    def set(self, key, value):
        lib, p = self.lib, self.ptr
        if key == "reconnect_backoff_ms":
            rc = lib.kh_config_set_reconnect_backoff_ms(p, *value)
        elif key in ("init_text", "init_binary"):
            items = [value] if isinstance(value, (str, bytes)) else value
            f = getattr(lib, "kh_config_add_" + key)
            for item in items:
                b = _bytes(item)
                check(lib, f(p, b, len(b)), key)
            return
        elif key == "ping_text":
            b = _bytes(value)
            rc = lib.kh_config_set_ping_text(p, b, len(b))
        elif key == "headers":
            for name, val in value:
                check(lib, lib.kh_config_add_header(p, name.encode(), val.encode()), key)
            return
        else:
            rc = getattr(lib, "kh_config_set_" + key)(p, value)
        check(lib, rc, key)

    def free(self):
        if self.ptr:
            self.lib.kh_config_free(self.ptr)
            self.ptr = kh_config_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()


def make_hooks(on_open=None, on_text=None, on_binary=None, on_ping=None, on_pong=None,
               on_close=None, on_frame=None, on_error=None, on_drop=None):
    """Builds a Hooks struct from Python callables that get decoded arguments:
    on_open(conn), on_text(conn, str), on_binary/on_ping/on_pong(conn, bytes),
    on_close(conn, code, reason), on_frame(conn, opcode, bytes), on_error(conn, code, message),
    on_drop(). Returns (hooks, keepalive): keep ``keepalive`` referenced until on_drop ran."""
    def conn_name(c):
        return c.decode("utf-8")

    def raw(ptr, n):
        return ctypes.string_at(ptr, n) if n else b""

    wrapped = {}
    if on_open:
        wrapped["on_open"] = ON_OPEN(lambda ud, c: on_open(conn_name(c)))
    if on_text:
        wrapped["on_text"] = ON_TEXT(lambda ud, c, d, n: on_text(conn_name(c), raw(d, n).decode("utf-8")))
    for key, f in (("on_binary", on_binary), ("on_ping", on_ping), ("on_pong", on_pong)):
        if f:
            wrapped[key] = ON_BYTES(lambda ud, c, d, n, f=f: f(conn_name(c), raw(d, n)))
    if on_close:
        wrapped["on_close"] = ON_CLOSE(
            lambda ud, c, code, r, n: on_close(conn_name(c), code, raw(r, n).decode("utf-8")))
    if on_frame:
        wrapped["on_frame"] = ON_FRAME(lambda ud, c, op, d, n: on_frame(conn_name(c), op, raw(d, n)))
    if on_error:
        wrapped["on_error"] = ON_ERROR(
            lambda ud, c, code, m: on_error(conn_name(c), code, m.decode("utf-8", "replace")))
    if on_drop:
        wrapped["on_drop"] = ON_DROP(lambda ud: on_drop())
    return Hooks(**wrapped), wrapped


class Manager:
    """An owned kh_manager. Callbacks stay referenced until their on_drop ran."""

    def __init__(self, lib, workers=0):
        self.lib = lib
        self.ptr = kh_manager_p()
        check(lib, lib.kh_manager_new_with_threads(workers, ctypes.byref(self.ptr)), "kh_manager_new")
        self._alive = {}  # id -> (hooks, keepalive)
        # Thunks whose on_drop ran are parked here rather than freed while maybe still running.
        self._dropped = []
        self._lock = threading.Lock()
        self._next = 0

    def add(self, name, url_or_config, **callbacks):
        user_on_drop = callbacks.pop("on_drop", None)
        with self._lock:
            key = self._next
            self._next += 1

        def on_drop():
            try:
                if user_on_drop:
                    user_on_drop()
            finally:
                # The library is done with the callbacks; the ctypes thunk being run now stays
                # valid until it returns (it is referenced by the calling frame).
                with self._lock:
                    self._dropped.append(self._alive.pop(key, None))

        hooks, keep = make_hooks(on_drop=on_drop, **callbacks)
        with self._lock:
            self._alive[key] = (hooks, keep)
        own_config = isinstance(url_or_config, str)
        cfg = Config(self.lib, url_or_config) if own_config else url_or_config
        try:
            rc = self.lib.kh_manager_add(self.ptr, name.encode(), cfg.ptr, ctypes.byref(hooks))
        finally:
            if own_config:
                cfg.free()
        if rc != KH_OK:
            with self._lock:
                self._alive.pop(key, None)  # on_drop is not called for a failed add
            raise KhError(self.lib, rc, "kh_manager_add")

    def send_text(self, name, text):
        b = _bytes(text)
        check(self.lib, self.lib.kh_manager_send_text(self.ptr, name.encode(), b, len(b)), "send_text")

    def send_binary(self, name, data):
        b = bytes(data)
        check(self.lib, self.lib.kh_manager_send_binary(self.ptr, name.encode(), b, len(b)), "send_binary")

    def send_ping(self, name, data=b""):
        b = bytes(data)
        check(self.lib, self.lib.kh_manager_send_ping(self.ptr, name.encode(), b, len(b)), "send_ping")

    def restart(self, name):
        check(self.lib, self.lib.kh_manager_restart(self.ptr, name.encode()), "restart")

    def close(self, name, code=1000, reason=None):
        r = reason.encode() if reason is not None else None
        check(self.lib, self.lib.kh_manager_close(self.ptr, name.encode(), code, r), "close")

    def state(self, name):
        out = kh_conn_state()
        check(self.lib, self.lib.kh_manager_state(self.ptr, name.encode(), ctypes.byref(out)), "state")
        return out.value

    def stats(self, name):
        out = ConnStats()
        check(self.lib, self.lib.kh_manager_stats(self.ptr, name.encode(), ctypes.byref(out)), "stats")
        return out

    def wait_open(self, name, timeout_ms):
        check(self.lib, self.lib.kh_manager_wait_open(self.ptr, name.encode(), timeout_ms), "wait_open")

    def free(self):
        if self.ptr:
            self.lib.kh_manager_free(self.ptr)
            self.ptr = kh_manager_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()
