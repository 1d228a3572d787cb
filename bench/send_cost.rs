//! Sends `n` text messages of 64 bytes through one kharbranth connection to a local sink, with
//! or without a send rate limit (one set so high it never binds), so that callgrind can count
//! what the limiter costs per send: `bench/ratelimit_cost.sh` runs it.
//!
//! `send_cost MODE N` with MODE `none` or `limit`. The sink reads the raw bytes after the
//! upgrade and drops them, the same for both modes, so its cost cancels out in the difference.

use std::time::Duration;

use kharbranth::{Config, ConnState, Connection, ConnectionError, Message, ReadHooks};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "none".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(&mode, n));
}

async fn run(mode: &str, n: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sink = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
        let mut tcp = ws.into_inner();
        let mut buf = vec![0u8; 256 * 1024];
        while let Ok(k) = tcp.read(&mut buf).await {
            if k == 0 {
                break;
            }
        }
    });
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let url = format!("ws://{addr}/");
    let (ws, _) = tokio_tungstenite::client_async(&url, tcp)
        .await
        .expect("client upgrade");
    let mut b = Config::builder(&url)
        .send_queue_capacity(1 << 16)
        .close_timeout(Duration::from_millis(1));
    if mode == "limit" {
        // One permit per nanosecond and a burst of 2^32 - 1: never binds in these runs.
        b = b.send_rate_limit(1_000_000_000, Duration::from_secs(1), u32::MAX);
    }
    let (conn, link) = Connection::new("cost", ws.into_inner(), b.build().expect("config"));
    let run = tokio::spawn(async move { conn.run(&mut ReadHooks::new()).await });
    // Sends are refused until the connection's task marks it open.
    while link.state() != ConnState::Open {
        tokio::task::yield_now().await;
    }
    let payload = "x".repeat(64);
    let mut sent = 0;
    while sent < n {
        match link.send(Message::text(payload.as_str())) {
            Ok(()) => {
                sent += 1;
                // Let the connection's task write them as it does in use (`poll_writes`), not
                // all at once on the close path.
                if sent % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            Err(ConnectionError::QueueFull(_)) => tokio::task::yield_now().await,
            Err(e) => panic!("send failed: {e}"),
        }
    }
    link.close(1000, "done").expect("close");
    let _ = run.await;
    sink.abort();
}
