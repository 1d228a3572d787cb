//! Inflating compressed binary messages (`ConfigBuilder::inflate`), against a second
//! implementation: a Python `websockets` server (child process, port 0) that compresses with
//! Python's zlib. Skipped, with a message, when Python or the package is missing
//! (`scripts/deps.sh` installs them into target/venv, which scripts/test.sh puts on PATH).

mod support;

use kharbranth::{Compression, Config, ConnectionError, WsManager};
use support::*;

/// Per path (the format): six compressed messages, a corrupt one, one more, a bomb (1 GiB of
/// zeros compressed to about 1 MiB), one more, then the text "end".
const SERVER: &str = r#"
import asyncio, zlib
from websockets.asyncio.server import serve

GiB = 1 << 30

def pack(data, wbits):
    c = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return c.compress(data) + c.flush()

def payload(fmt, i):
    return (f"{fmt}-{i}|" * (1 + i * 5000)).encode()

def bombs():
    # 64 copies of 16 MiB of zeros, each compressed after a full flush (no reference across
    # copies), so it is a valid stream made in well under a second.
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(1 << 24)) + c.flush(zlib.Z_FULL_FLUSH)
    raw = block * 64 + c.flush()
    crc, adler, chunk = 0, 1, bytes(1 << 24)
    for _ in range(64):
        crc = zlib.crc32(chunk, crc)
        adler = zlib.adler32(chunk, adler)
    gz = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + raw + crc.to_bytes(4, "little") + (GiB % (1 << 32)).to_bytes(4, "little")
    zl = b"\x78\xda" + raw + adler.to_bytes(4, "big")
    return {"gzip": gz, "zlib": zl, "deflate": raw}

BOMBS = bombs()
WBITS = {"gzip": 31, "zlib": 15, "deflate": -15}

def corrupt(fmt, good):
    bad = bytearray(good)
    if fmt == "deflate":
        bad[0] |= 0x06  # block type 3: reserved, never valid
    else:
        bad[-1] ^= 0xFF if fmt == "zlib" else 0
        bad[-8] ^= 0xFF if fmt == "gzip" else 0  # the CRC-32
    return bytes(bad)

async def handler(ws):
    fmt = ws.request.path.strip("/")
    if fmt == "auto":
        await ws.send(pack(b"auto gzip", 31))
        await ws.send(pack(b"auto zlib", 15))
        await ws.send(b"auto plain")
        await ws.send("not inflated")
    else:
        w = WBITS[fmt]
        for i in range(6):
            await ws.send(pack(payload(fmt, i), w))
        await ws.send(corrupt(fmt, pack(payload(fmt, 99), w)))
        await ws.send(pack(payload(fmt, 6), w))
        await ws.send(BOMBS[fmt])
        await ws.send(pack(payload(fmt, 7), w))
    await ws.send("end")
    async for _ in ws:
        pass

async def main():
    async with serve(handler, "127.0.0.1", 0, ping_interval=None, max_size=None) as server:
        print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Future()

asyncio.run(main())
"#;

/// What the script's `payload(fmt, i)` sends, inflated.
fn payload(fmt: &str, i: usize) -> Vec<u8> {
    format!("{fmt}-{i}|").repeat(1 + i * 5000).into_bytes()
}

fn inflate_failed(e: &Ev) -> Option<&str> {
    match e {
        Ev::Error(ConnectionError::InflateFailed(m)) => Some(m),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_zlib_and_deflate_from_python_arrive_inflated_in_order_and_bad_ones_are_reported() {
    let Some(server) = PythonServer::start(
        "gzip_zlib_and_deflate_from_python_arrive_inflated_in_order_and_bad_ones_are_reported",
        SERVER,
    )
    .await
    else {
        return;
    };
    let port = server.port;
    let rss_before = rss_kib();
    let mgr = WsManager::new();
    let mut recs = Vec::new();
    for (fmt, kind) in [
        ("gzip", Compression::Gzip),
        ("zlib", Compression::Zlib),
        ("deflate", Compression::Deflate),
    ] {
        let rec = Recorder::new();
        let config = cfg(format!("ws://127.0.0.1:{port}/{fmt}"))
            .inflate(kind)
            .build()
            .unwrap();
        mgr.add(fmt, config, rec.hooks_without_frames()).unwrap();
        recs.push((fmt, rec));
    }
    for (fmt, rec) in &recs {
        rec.wait(&format!("{fmt}: the end"), |e| {
            e.contains(&Ev::Text("end".into()))
        })
        .await;
        let seen: Vec<Ev> = rec
            .events()
            .into_iter()
            .filter(|e| !matches!(e, Ev::Open | Ev::Pong(_) | Ev::Ping(_)))
            .collect();
        assert_eq!(seen.len(), 11, "{fmt}: {} events", seen.len());
        for (i, e) in seen[..6].iter().enumerate() {
            assert_eq!(*e, Ev::Binary(payload(fmt, i)), "{fmt}: message {i}");
        }
        let corrupt = inflate_failed(&seen[6]).unwrap_or_else(|| panic!("{fmt}: {:?}", seen[6]));
        assert!(!corrupt.contains("maximum"), "{fmt}: {corrupt}");
        assert_eq!(
            seen[7],
            Ev::Binary(payload(fmt, 6)),
            "{fmt}: after the corrupt one"
        );
        let bomb = inflate_failed(&seen[8]).unwrap_or_else(|| panic!("{fmt}: {:?}", seen[8]));
        assert!(
            bomb.contains("maximum message size of 16777216 bytes"),
            "{fmt}: {bomb}"
        );
        assert_eq!(
            seen[9],
            Ev::Binary(payload(fmt, 7)),
            "{fmt}: after the bomb"
        );
        assert_eq!(seen[10], Ev::Text("end".into()));
        assert_eq!(rec.opens(), 1, "{fmt}: the connection did not go on");
    }
    // Three 1 GiB bombs cost at most the 16 MiB limit each while they were refused.
    let grown_mib = rss_kib().saturating_sub(rss_before) / 1024;
    eprintln!("RSS growth over three 1 GiB bombs and 24 messages: {grown_mib} MiB");
    assert!(grown_mib < 200, "RSS grew by {grown_mib} MiB");
    mgr.shutdown().await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_tells_gzip_from_zlib_and_passes_plain_binary_and_text_through() {
    let Some(server) = PythonServer::start(
        "auto_tells_gzip_from_zlib_and_passes_plain_binary_and_text_through",
        SERVER,
    )
    .await
    else {
        return;
    };
    let port = server.port;
    let mgr = WsManager::new();
    let rec = Recorder::new();
    let config = Config::builder(format!("ws://127.0.0.1:{port}/auto"))
        .inflate(Compression::Auto)
        .build()
        .unwrap();
    mgr.add("auto", config, rec.hooks_without_frames()).unwrap();
    rec.wait("the end", |e| e.contains(&Ev::Text("end".into())))
        .await;
    let seen: Vec<Ev> = rec
        .events()
        .into_iter()
        .filter(|e| !matches!(e, Ev::Open | Ev::Pong(_) | Ev::Ping(_)))
        .collect();
    assert_eq!(
        seen,
        [
            Ev::Binary(b"auto gzip".to_vec()),
            Ev::Binary(b"auto zlib".to_vec()),
            Ev::Binary(b"auto plain".to_vec()),
            Ev::Text("not inflated".into()),
            Ev::Text("end".into()),
        ]
    );
    mgr.shutdown().await;
    drop(server);
}
