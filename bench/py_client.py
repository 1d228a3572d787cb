#!/usr/bin/env python3
"""kharbranth through its C ABI from Python ctypes: one Python callback per message.

    py_client.py push|echo URL N S [LIBPATH]

push: an on_text/on_binary callback counts messages until the marker "END".
echo: on_text records the round trip and sends the next message from inside the callback.
Prints one JSON line; a hard timeout (SIGALRM, default action) ends it after 120 s.
The per-message cost here is the ctypes callback itself (GIL + argument conversion), which is
why a batched poll API is planned separately.
"""
import ctypes as C
import json
import os
import signal
import sys
import threading
import time

signal.alarm(120)
mode, url, n, size = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4])
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
libpath = sys.argv[5] if len(sys.argv) > 5 else os.path.join(root, "target/release/libkharbranth.so")
lib = C.CDLL(libpath)

VP, SZ = C.c_void_p, C.c_size_t
ON_OPEN = C.CFUNCTYPE(None, VP, VP)
ON_DATA = C.CFUNCTYPE(None, VP, VP, VP, SZ)
ON_CLOSE = C.CFUNCTYPE(None, VP, VP, C.c_uint16, VP, SZ)
ON_FRAME = C.CFUNCTYPE(None, VP, VP, C.c_uint8, VP, SZ)
ON_ERROR = C.CFUNCTYPE(None, VP, VP, C.c_uint32, C.c_char_p)
ON_DROP = C.CFUNCTYPE(None, VP)


class Hooks(C.Structure):
    _fields_ = [
        ("user_data", VP),
        ("on_open", ON_OPEN),
        ("on_text", ON_DATA),
        ("on_binary", ON_DATA),
        ("on_ping", ON_DATA),
        ("on_pong", ON_DATA),
        ("on_close", ON_CLOSE),
        ("on_frame", ON_FRAME),
        ("on_error", ON_ERROR),
        ("on_drop", ON_DROP),
    ]


lib.kh_manager_new.argtypes = [C.POINTER(VP)]
lib.kh_config_new.argtypes = [C.c_char_p, C.POINTER(VP)]
lib.kh_config_set_max_message_size.argtypes = [VP, SZ]
lib.kh_manager_add.argtypes = [VP, C.c_char_p, VP, C.POINTER(Hooks)]
lib.kh_manager_send_text.argtypes = [VP, VP, VP, SZ]
lib.kh_manager_wait_open.argtypes = [VP, C.c_char_p, C.c_uint32]
lib.kh_manager_close.argtypes = [VP, C.c_char_p, C.c_uint16, C.c_char_p]
lib.kh_manager_free.argtypes = [VP]
lib.kh_config_free.argtypes = [VP]
for f in ("kh_manager_new", "kh_config_new", "kh_manager_add", "kh_manager_send_text",
          "kh_manager_wait_open", "kh_manager_close", "kh_config_set_max_message_size"):
    getattr(lib, f).restype = C.c_uint32


def check(r, what):
    if r != 0:
        sys.exit(f"py_client: {what} failed with code {r}")


mgr, cfg = VP(), VP()
check(lib.kh_manager_new(C.byref(mgr)), "kh_manager_new")
check(lib.kh_config_new(url, C.byref(cfg)), "kh_config_new")
check(lib.kh_config_set_max_message_size(cfg, 64 << 20), "max_message_size")
done = threading.Event()
st = {"count": 0, "bytes": 0, "t0": 0.0, "t1": 0.0}
string_at = C.string_at
WARMUP = 1000


def workload(kind):
    if size >= 1 << 20 and size % (1 << 20) == 0:
        return f"{kind}_{size >> 20}MiB"
    if size >= 1024 and size % 1024 == 0:
        return f"{kind}_{size >> 10}KiB"
    return f"{kind}_{size}B"


if mode == "push":
    count = 0
    nbytes = 0
    t0 = None

    def on_data(ud, conn, data, length):
        global count, nbytes, t0
        if length == 3 and string_at(data, 3) == b"END":
            st["t1"] = time.perf_counter()
            done.set()
            return
        if t0 is None:
            t0 = time.perf_counter()
        count += 1
        nbytes += length

    cb = ON_DATA(on_data)
    hooks = Hooks(on_text=cb, on_binary=cb)
    check(lib.kh_manager_add(mgr, b"bench", cfg, C.byref(hooks)), "kh_manager_add")
    ok = done.wait(100)
    secs = st["t1"] - t0 if ok and t0 else 0.0
    res = {"client": "kharbranth-python-ctypes", "workload": workload("push"), "msgs": count,
           "bytes": nbytes, "secs": round(secs, 6),
           "msgs_per_sec": round(count / secs, 1) if secs else 0,
           "mb_per_sec": round(nbytes / 1e6 / secs, 2) if secs else 0, "ok": ok and count == n,
           "rbuf": 0}
else:
    payload = b"x" * size
    total = n + WARMUP
    rtts = []
    send = lib.kh_manager_send_text
    sent = [0.0]

    def on_text(ud, conn, data, length):
        t = time.perf_counter()
        rtts.append(t - sent[0])
        if len(rtts) >= total:
            st["t1"] = t
            done.set()
            return
        sent[0] = time.perf_counter()
        r = send(mgr, conn, payload, size)
        if r != 0:
            print(f"py_client: send failed {r}", file=sys.stderr)
            done.set()

    cb = ON_DATA(on_text)
    hooks = Hooks(on_text=cb)
    check(lib.kh_manager_add(mgr, b"bench", cfg, C.byref(hooks)), "kh_manager_add")
    check(lib.kh_manager_wait_open(mgr, b"bench", 10000), "kh_manager_wait_open")
    st["t0"] = time.perf_counter()
    sent[0] = time.perf_counter()
    check(send(mgr, C.c_char_p(b"bench"), payload, size), "send")
    ok = done.wait(100)
    secs = st["t1"] - st["t0"]
    m = sorted(rtts[WARMUP:])
    pct = lambda p: m[round((len(m) - 1) * p / 100)] * 1e6 if m else 0.0  # noqa: E731
    res = {"client": "kharbranth-python-ctypes", "workload": workload("echo"), "msgs": len(rtts),
           "bytes": len(rtts) * size, "secs": round(secs, 6),
           "msgs_per_sec": round(len(rtts) / secs, 1) if secs > 0 else 0,
           "mb_per_sec": round(len(rtts) * size / 1e6 / secs, 2) if secs > 0 else 0,
           "ok": ok and len(m) == n, "p50_us": round(pct(50), 2), "p99_us": round(pct(99), 2),
           "rbuf": 0}
print(json.dumps(res, separators=(",", ":")), flush=True)
lib.kh_manager_close(mgr, b"bench", 1000, b"done")
lib.kh_config_free(cfg)
os._exit(0)
