//! Tunnels through a proxy: HTTP `CONNECT` (RFC 9110, 9.3.6) and SOCKS5 (RFC 1928, with the
//! username/password method of RFC 1929). TLS and the WebSocket upgrade then run end to end
//! through the tunnel, so certificates are checked against the target's name.
//!
//! Proxy credentials are secrets: no log record and no error message holds them, or anything
//! the proxy sends back.

use std::fmt;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::HostPort;
use crate::config::{Proxy, ProxyKind};
use crate::error::{ConnectionError, Result};

/// Largest response head accepted from an HTTP proxy.
const MAX_HEAD: usize = 16 * 1024;

/// Connects to the proxy and asks it for a tunnel to `host:port`.
pub(crate) async fn tunnel(proxy: &Proxy, host: &str, port: u16) -> Result<TcpStream> {
    let failed = |what: &str, e: &dyn fmt::Display| {
        ConnectionError::ConnectFailed(format!("{what} {proxy}: {e}"))
    };
    let mut tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| failed("TCP connect to the proxy", &e))?;
    let _ = tcp.set_nodelay(true);
    let target = HostPort(host, port);
    match proxy.kind {
        ProxyKind::Http => {
            http_connect(&mut tcp, proxy, &target).await?;
            Ok(tcp)
        }
        ProxyKind::Socks5 => {
            let dest = (host, port);
            let socks = match &proxy.auth {
                Some((user, pass)) => {
                    tokio_socks::tcp::Socks5Stream::connect_with_password_and_socket(
                        tcp, dest, user, pass,
                    )
                    .await
                }
                None => tokio_socks::tcp::Socks5Stream::connect_with_socket(tcp, dest).await,
            };
            // tokio-socks' errors name the failure (refused, unreachable, authentication
            // rejected, malformed reply), never the credentials.
            let socks =
                socks.map_err(|e| failed(&format!("SOCKS5 tunnel to {target} through"), &e))?;
            Ok(socks.into_inner())
        }
    }
}

async fn http_connect(tcp: &mut TcpStream, proxy: &Proxy, target: &HostPort<'_>) -> Result<()> {
    let failed =
        |what: String| ConnectionError::ConnectFailed(format!("{what} (proxy {proxy}, {target})"));
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, pass)) = &proxy.auth {
        let token = data_encoding::BASE64.encode(format!("{user}:{pass}").as_bytes());
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| failed(format!("writing CONNECT failed: {e}")))?;
    // Byte by byte up to the blank line: the tunnel's first bytes (the server's TLS or upgrade
    // answer) must stay in the socket for the next layer.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(failed(format!(
                "the proxy's answer to CONNECT is over {MAX_HEAD} bytes"
            )));
        }
        match tcp.read_u8().await {
            Ok(b) => head.push(b),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(failed(
                    "the proxy closed the connection during CONNECT".into(),
                ));
            }
            Err(e) => return Err(failed(format!("reading the CONNECT answer failed: {e}"))),
        }
    }
    let status_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = status_line.split(|&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with(b"HTTP/1.") || code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return Err(failed("the proxy did not answer CONNECT with HTTP".into()));
    }
    if code[0] != b'2' {
        // The status code only: the reason phrase and the body are the proxy's text.
        let code = String::from_utf8_lossy(code);
        let hint = match &*code {
            "407" if proxy.auth.is_some() => ": the proxy refused the credentials",
            "407" => ": the proxy wants credentials",
            _ => "",
        };
        return Err(failed(format!(
            "the proxy refused CONNECT with {code}{hint}"
        )));
    }
    Ok(())
}
