// Node.js `ws` benchmark client (npm install ws; bench/deps.sh puts it under target/bench/node).
//   node node_client.js push|echo URL N S
// Same protocol as the other clients; prints one JSON line; hard timeout 120 s.
'use strict';
const path = require('path');
let wsDir;
try {
  wsDir = path.dirname(require.resolve('ws'));
} catch (e) {
  wsDir = path.join(__dirname, '..', 'target', 'bench', 'node', 'node_modules', 'ws');
}
const WebSocket = require(wsDir);
const version = require(path.join(wsDir, 'package.json')).version;
const [mode, url, nStr, sStr] = process.argv.slice(2);
const n = Number(nStr), size = Number(sStr), WARMUP = 1000;
setTimeout(() => { console.error('node_client: hard timeout'); process.exit(3); }, 120000).unref();
const now = () => Number(process.hrtime.bigint()) / 1e9;
const wl = (k) => size >= 1 << 20 && size % (1 << 20) === 0 ? `${k}_${size >> 20}MiB`
  : size >= 1024 && size % 1024 === 0 ? `${k}_${size >> 10}KiB` : `${k}_${size}B`;
const name = `node ws ${version}`;
const ws = new WebSocket(url, { maxPayload: 64 << 20, perMessageDeflate: false });
function out(o) { console.log(JSON.stringify(o)); }
if (mode === 'push') {
  let count = 0, bytes = 0, t0 = 0;
  ws.on('message', (data) => {
    if (data.length === 3 && data.toString() === 'END') {
      const secs = now() - t0;
      out({ client: name, workload: wl('push'), msgs: count, bytes, secs,
        msgs_per_sec: count / secs, mb_per_sec: bytes / 1e6 / secs, ok: count === n });
      ws.close();
      return;
    }
    if (count === 0) t0 = now();
    count++;
    bytes += data.length;
  });
} else {
  const payload = 'x'.repeat(size);
  const rtts = [];
  let sent = 0, t0 = 0;
  ws.on('open', () => { t0 = now(); sent = now(); ws.send(payload); });
  ws.on('message', () => {
    const t = now();
    rtts.push(t - sent);
    if (rtts.length >= n + WARMUP) {
      const secs = t - t0;
      const m = rtts.slice(WARMUP).sort((a, b) => a - b);
      const pct = (p) => m[Math.round((m.length - 1) * p / 100)] * 1e6;
      out({ client: name, workload: wl('echo'), msgs: rtts.length, bytes: rtts.length * size,
        secs, msgs_per_sec: rtts.length / secs, mb_per_sec: rtts.length * size / 1e6 / secs,
        ok: m.length === n, p50_us: pct(50), p99_us: pct(99) });
      ws.close();
      return;
    }
    sent = now();
    ws.send(payload);
  });
}
ws.on('error', (e) => { console.error('node_client:', e.message); process.exit(1); });
ws.on('close', () => process.exit(0));
