//! The benchmark server. It must never be the bottleneck: in push mode the frames are encoded
//! once (server frames are unmasked: opcode byte, length, payload) into a ~1 MiB batch that is
//! written raw to the socket again and again; tungstenite only does the handshake and the close.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const BATCH_BYTES: usize = 1 << 20;

type Cache = Arc<Mutex<HashMap<(usize, bool), Arc<Vec<u8>>>>>;

/// Serves on `port` of 127.0.0.1 up to 127.0.0.`addrs`: one (client address, server address,
/// port) tuple has at most ~28,000 ephemeral ports, so the scale workload spreads its
/// connections over several server addresses.
pub fn run(port: u16, addrs: u8) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let cache: Cache = Arc::default();
        let mut accepting = Vec::new();
        for host in 1..=addrs.max(1) {
            let addr = std::net::SocketAddr::from(([127, 0, 0, host], port));
            let sock = TcpSocket::new_v4().expect("socket");
            sock.set_reuseaddr(true).expect("reuseaddr");
            sock.bind(addr).expect("bind a 127.0.0.x address");
            // A deep backlog: the idle workloads open thousands of connections at once.
            let listener = sock.listen(8192).expect("listen");
            eprintln!("wsbench server listening on {addr}");
            let cache = cache.clone();
            accepting.push(tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        // Out of descriptors, say: wait instead of spinning.
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(handle(tcp, cache.clone()));
                }
            }));
        }
        for a in accepting {
            let _ = a.await;
        }
    });
}

// The handshake callback's error type is tungstenite's (an HTTP response), not ours.
#[allow(clippy::result_large_err)]
async fn handle(tcp: TcpStream, cache: Cache) {
    let mut path = String::new();
    let cb = |req: &Request, resp: Response| {
        path = req.uri().path().to_string();
        Ok(resp)
    };
    // Small buffers: the server holds 10,000 idle connections in that workload.
    let cfg = WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async_with_config(tcp, cb, Some(cfg)).await
    else {
        return;
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["push", n, s, rest @ ..] => {
            let (Ok(n), Ok(s)) = (n.parse::<usize>(), s.parse::<usize>()) else {
                return;
            };
            let bin = rest.first() == Some(&"bin");
            let batch = batch(&cache, s, bin);
            let frame_len = frame_size(s);
            let per_batch = batch.len() / frame_len;
            let tcp = ws.get_mut();
            let mut left = n;
            while left > 0 {
                let k = left.min(per_batch);
                if tcp.write_all(&batch[..k * frame_len]).await.is_err() {
                    return;
                }
                left -= k;
            }
            let op = if bin { 0x82 } else { 0x81 };
            if tcp.write_all(&[op, 3, b'E', b'N', b'D']).await.is_err() {
                return;
            }
            // Then wait for the client's close (tungstenite answers it).
            while let Some(Ok(_)) = ws.next().await {}
        }
        ["echo", ..] => loop {
            match ws.next().await {
                Some(Ok(m)) => {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        return;
                    }
                }
                // A client that just drops the socket is no news here.
                Some(Err(_)) | None => return,
            }
        },
        _ => while let Some(Ok(_)) = ws.next().await {},
    }
}

fn frame_size(s: usize) -> usize {
    s + match s {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// About 1 MiB of identical frames of `s` bytes (at least one frame), encoded once per size.
fn batch(cache: &Cache, s: usize, bin: bool) -> Arc<Vec<u8>> {
    let mut c = cache.lock().unwrap();
    c.entry((s, bin))
        .or_insert_with(|| {
            let mut frame = vec![if bin { 0x82 } else { 0x81 }];
            match s {
                0..=125 => frame.push(s as u8),
                126..=65535 => {
                    frame.push(126);
                    frame.extend_from_slice(&(s as u16).to_be_bytes());
                }
                _ => {
                    frame.push(127);
                    frame.extend_from_slice(&(s as u64).to_be_bytes());
                }
            }
            // Printable ASCII, so it is valid UTF-8 for text frames.
            frame.extend((0..s).map(|i| b'a' + (i % 26) as u8));
            let k = (BATCH_BYTES / frame.len()).max(1);
            Arc::new(frame.repeat(k))
        })
        .clone()
}
