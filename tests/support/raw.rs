//! The server side by hand, for a raw-mode [`Server`](super::Server): the HTTP upgrade, server
//! frames and the client's close frame as bytes.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{DEADLINE, ServerWs};

/// Reads the client's HTTP upgrade request (bounded) and returns it as text.
pub async fn read_request(tcp: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut chunk).await.ok()?;
            if n == 0 || buf.len() > 64 * 1024 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(())
    };
    tokio::time::timeout(DEADLINE, read).await.ok()??;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Answers the upgrade by hand (so later bytes can be crafted freely); returns the request.
pub async fn raw_upgrade(tcp: &mut TcpStream) -> Option<String> {
    let req = read_request(tcp).await?;
    let key = req
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let accept =
        tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    tcp.write_all(resp.as_bytes()).await.ok()?;
    Some(req)
}

/// Reads the upgrade request and answers it with `status` (e.g. "401 Unauthorized"), then
/// hangs up.
pub async fn refuse_upgrade(mut tcp: TcpStream, status: &str) {
    let _ = read_request(&mut tcp).await;
    let resp = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = tcp.write_all(resp.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// A server-side WebSocket over a socket whose upgrade was answered by hand.
pub async fn server_ws(tcp: TcpStream) -> ServerWs {
    WebSocketStream::from_raw_socket(tcp, Role::Server, None).await
}

/// Keeps a connection open, answering pings, until the client goes (bounded).
pub async fn hold(mut ws: ServerWs) {
    let _ = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Keeps the socket open without reading or writing until the test's runtime ends: a peer
/// that never answers the upgrade.
pub async fn never_answer(tcp: TcpStream) {
    let _held = tcp;
    std::future::pending::<()>().await;
}

/// Reads masked client frames until a close frame (bounded by `limit`); returns its status
/// code, or None if the socket ended first.
pub async fn read_client_close(tcp: &mut TcpStream, limit: Duration) -> Option<u16> {
    let read = async {
        loop {
            let mut h = [0u8; 2];
            tcp.read_exact(&mut h).await.ok()?;
            let op = h[0] & 0x0f;
            let mut len = (h[1] & 0x7f) as u64;
            if len == 126 {
                let mut b = [0u8; 2];
                tcp.read_exact(&mut b).await.ok()?;
                len = u16::from_be_bytes(b) as u64;
            } else if len == 127 {
                let mut b = [0u8; 8];
                tcp.read_exact(&mut b).await.ok()?;
                len = u64::from_be_bytes(b);
            }
            let mut mask = [0u8; 4];
            if h[1] & 0x80 != 0 {
                tcp.read_exact(&mut mask).await.ok()?;
            }
            if len > 1 << 20 {
                return None;
            }
            let mut payload = vec![0u8; len as usize];
            tcp.read_exact(&mut payload).await.ok()?;
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            if op == 8 {
                if payload.len() < 2 {
                    return Some(1005);
                }
                return Some(u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok()?
}

/// An unmasked server frame.
pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![first];
    let n = payload.len();
    if n < 126 {
        f.push(n as u8);
    } else if n <= u16::MAX as usize {
        f.push(126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}
