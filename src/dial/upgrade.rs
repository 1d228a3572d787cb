//! The WebSocket upgrade (RFC 6455, 4.1): the HTTP request written and the response head
//! parsed by the library itself.

use crate::wire::Wire;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::http::{StatusCode, Uri};

use super::HostPort;
use crate::config::Config;
use crate::error::{ConnectionError, Result};

/// The WebSocket upgrade (RFC 6455, 4.1), done here rather than by tungstenite because
/// tungstenite logs the whole request, header values included, at trace level: the secrets of
/// `Authorization`, `Cookie` or API-key headers would reach any logger set to trace. Nothing
/// of the request is logged here.
pub(super) async fn upgrade<S>(
    config: &Config,
    uri: &Uri,
    mut stream: S,
    addr: &HostPort<'_>,
) -> Result<Wire<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let failed = |what: &str| ConnectionError::ConnectFailed(format!("{what} {addr}"));
    let key = generate_key();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or("", |a| a.as_str());
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
    )
    .into_bytes();
    if !config.subprotocols().is_empty() {
        req.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        req.extend_from_slice(config.subprotocols().join(", ").as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    // Names and values were checked by Config::build: no CR, LF or NUL can get in here.
    for (name, value) in config.headers() {
        req.extend_from_slice(name.as_str().as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    let io = |e: std::io::Error| {
        ConnectionError::ConnectFailed(format!("WebSocket handshake with {addr}: {e}"))
    };
    stream.write_all(&req).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    drop(req);

    // The response head, bounded; bytes after it already belong to the WebSocket.
    const MAX_HEAD: usize = 16 * 1024;
    let mut buf = Vec::with_capacity(1024);
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(failed("oversized upgrade response from"));
        }
        // Into the Vec's spare room: a stack array here would live in every connection's task.
        buf.reserve(1024);
        let n = stream.read_buf(&mut buf).await.map_err(io)?;
        if n == 0 {
            return Err(failed("connection closed during the upgrade by"));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let status_line = head.split("\r\n").next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code: u16 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    if !version.starts_with("HTTP/1.") || code == 0 {
        return Err(failed("malformed upgrade response from"));
    }
    if code != 101 {
        let status = StatusCode::from_u16(code)
            .map(|s| s.to_string())
            .unwrap_or_else(|_| code.to_string());
        return Err(ConnectionError::ConnectFailed(format!(
            "{addr} refused the upgrade with HTTP {status}"
        )));
    }
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(failed(
            "upgrade response without Upgrade/Connection headers from",
        ));
    }
    if header("sec-websocket-accept") != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return Err(failed("wrong Sec-WebSocket-Accept from"));
    }
    if let Some(p) = header("sec-websocket-protocol")
        && !config.subprotocols().iter().any(|o| o == p)
    {
        return Err(failed("a subprotocol that was not offered chosen by"));
    }
    let rest = buf.split_off(head_len);
    Ok(Wire::client(
        stream,
        rest,
        config.ws_config(),
        config.burst_read_size(),
    ))
}
