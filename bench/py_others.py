#!/usr/bin/env python3
"""Other Python clients users compare with: picows and websockets (asyncio).

    py_others.py picows|picows-uvloop|websockets push|echo URL N S

Same protocol as the other clients: push counts messages until the 3-byte marker "END";
echo keeps one S-byte text message in flight (1000 warm-up round trips not counted).
Prints one JSON line; a hard timeout (SIGALRM, default action) ends it after 120 s.
"""
import asyncio
import signal
import sys
import time

import py_report

signal.alarm(120)
lib, mode, url, n, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
WARMUP = py_report.WARMUP
now = time.perf_counter


def report(client, count, nbytes, secs, ok, rtts=None):
    py_report.report(client, mode, n, size, count, nbytes, secs, ok, rtts)


async def run_picows():
    # Written the way picows' own fast examples are: state in the listener's attributes and
    # the message types bound once, not looked up in a dict and a module per frame (this
    # measured 1.4 to 1.8x the dict-and-globals version), and the payload never copied
    # (`payload_size`; the bytes only for the 3-byte marker).
    import picows
    from picows import WSListener, WSMsgType, ws_connect

    done = asyncio.get_running_loop().create_future()
    payload = b"x" * size
    text, binary, cont = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION

    class Push(WSListener):
        def __init__(self):
            self.count = 0
            self.nbytes = 0
            self.t0 = None
            self.t1 = 0.0

        def on_ws_frame(self, transport, frame):
            t = frame.msg_type
            if t is not text and t is not binary and t is not cont:
                return
            ln = frame.payload_size
            if ln == 3 and frame.get_payload_as_bytes() == b"END":
                self.t1 = now()
                done.set_result(None)
                return
            if self.t0 is None:
                self.t0 = now()
            self.count += 1
            self.nbytes += ln

    class Echo(WSListener):
        def __init__(self):
            self.rtts = []
            self.t0 = None
            self.t1 = 0.0
            self.sent = 0.0

        def on_ws_connected(self, transport):
            self.t0 = self.sent = now()
            transport.send(text, payload)

        def on_ws_frame(self, transport, frame):
            if frame.msg_type is not text:
                return
            t = now()
            rtts = self.rtts
            rtts.append(t - self.sent)
            if len(rtts) >= n + WARMUP:
                self.t1 = t
                done.set_result(None)
                return
            self.sent = now()
            transport.send(text, payload)

    transport, st = await ws_connect(Push if mode == "push" else Echo, url,
                                     max_frame_size=64 << 20)
    await asyncio.wait_for(done, 100)
    secs = st.t1 - (st.t0 or st.t1)
    name = f"picows {picows.__version__}" + (" uvloop" if lib == "picows-uvloop" else "")
    if mode == "push":
        report(name, st.count, st.nbytes, secs, st.count == n)
    else:
        c = len(st.rtts)
        report(name, c, c * size, secs, True, st.rtts)
    transport.disconnect()


async def run_websockets():
    import websockets

    name = f"websockets {websockets.__version__}"
    async with websockets.connect(url, max_size=None, compression=None) as ws:
        if mode == "push":
            count = nbytes = 0
            t0 = None
            async for m in ws:
                if m == "END" or m == b"END":
                    break
                if t0 is None:
                    t0 = now()
                count += 1
                nbytes += len(m)
            report(name, count, nbytes, now() - t0, count == n)
        else:
            payload = "x" * size
            rtts = []
            t0 = now()
            for _ in range(n + WARMUP):
                s = now()
                await ws.send(payload)
                await ws.recv()
                rtts.append(now() - s)
            report(name, len(rtts), len(rtts) * size, now() - t0, True, rtts)


if lib == "picows-uvloop":
    # picows recommends uvloop; both loops are measured and the faster is the one to beat.
    import uvloop

    uvloop.run(run_picows())
else:
    asyncio.run(run_picows() if lib == "picows" else run_websockets())
