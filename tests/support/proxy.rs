//! Small real proxies on 127.0.0.1:0 for the tests: HTTP `CONNECT` and SOCKS5 (RFC 1928 with
//! RFC 1929 username/password), tunnelling for real or misbehaving on purpose.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Server;

pub const USER: &str = "feed-user";
/// Percent-encoded in the URLs below: `p@ss:w%rd`.
pub const PASS: &str = "p@ss:w%rd";
pub const PASS_ENCODED: &str = "p%40ss%3Aw%25rd";

/// How a test proxy behaves.
#[derive(Clone, Copy)]
pub enum ProxyMode {
    /// Tunnels, asking for [`USER`]/[`PASS`] when `auth` is set.
    Tunnel { auth: bool },
    /// Answers the request with bytes that are not the protocol.
    Garbage,
    /// Reads the request, then closes.
    CloseMidHandshake,
    /// Reads the request and never answers.
    Silent,
}

/// A proxy on 127.0.0.1:0 and the targets it was asked for.
pub struct TestProxy {
    pub server: Server,
    targets: Arc<Mutex<Vec<String>>>,
}

impl TestProxy {
    pub async fn http(mode: ProxyMode) -> Self {
        let targets: Arc<Mutex<Vec<String>>> = Arc::default();
        let t = targets.clone();
        let server = Server::raw(move |tcp, _| http_proxy(tcp, mode, t.clone())).await;
        Self { server, targets }
    }

    pub async fn socks5(mode: ProxyMode) -> Self {
        let targets: Arc<Mutex<Vec<String>>> = Arc::default();
        let t = targets.clone();
        let server = Server::raw(move |tcp, _| socks5_proxy(tcp, mode, t.clone())).await;
        Self { server, targets }
    }

    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

async fn read_head(tcp: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.ok()?);
        if head.len() > 8192 {
            return None;
        }
    }
    String::from_utf8(head).ok()
}

async fn http_proxy(mut tcp: TcpStream, mode: ProxyMode, targets: Arc<Mutex<Vec<String>>>) {
    let Some(head) = read_head(&mut tcp).await else {
        return;
    };
    let auth = match mode {
        ProxyMode::Tunnel { auth } => auth,
        ProxyMode::Garbage => {
            let _ = tcp.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
            return;
        }
        ProxyMode::CloseMidHandshake => return,
        ProxyMode::Silent => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
    };
    let Some(target) = head
        .strip_prefix("CONNECT ")
        .and_then(|r| r.split(' ').next())
    else {
        let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        return;
    };
    targets.lock().unwrap().push(target.to_string());
    if auth {
        let want = format!(
            "proxy-authorization: basic {}",
            data_encoding::BASE64.encode(format!("{USER}:{PASS}").as_bytes())
        )
        .to_lowercase();
        if !head.to_lowercase().contains(&want) {
            let _ = tcp
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n")
                .await;
            return;
        }
    }
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        let _ = tcp.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    if tcp
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_ok()
    {
        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await;
    }
}

async fn socks5_proxy(mut tcp: TcpStream, mode: ProxyMode, targets: Arc<Mutex<Vec<String>>>) {
    let mut greeting = [0u8; 2];
    if tcp.read_exact(&mut greeting).await.is_err() || greeting[0] != 5 {
        return;
    }
    let mut methods = vec![0u8; greeting[1] as usize];
    if tcp.read_exact(&mut methods).await.is_err() {
        return;
    }
    let auth = match mode {
        ProxyMode::Tunnel { auth } => auth,
        ProxyMode::Garbage => {
            let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            return;
        }
        ProxyMode::CloseMidHandshake => return,
        ProxyMode::Silent => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
    };
    let method = if auth { 2 } else { 0 };
    if !methods.contains(&method) {
        let _ = tcp.write_all(&[5, 0xff]).await;
        return;
    }
    if tcp.write_all(&[5, method]).await.is_err() {
        return;
    }
    if auth {
        let mut v = [0u8; 2];
        if tcp.read_exact(&mut v).await.is_err() {
            return;
        }
        let mut user = vec![0u8; v[1] as usize];
        let mut plen = [0u8; 1];
        if tcp.read_exact(&mut user).await.is_err() || tcp.read_exact(&mut plen).await.is_err() {
            return;
        }
        let mut pass = vec![0u8; plen[0] as usize];
        if tcp.read_exact(&mut pass).await.is_err() {
            return;
        }
        if user != USER.as_bytes() || pass != PASS.as_bytes() {
            let _ = tcp.write_all(&[1, 1]).await;
            return;
        }
        if tcp.write_all(&[1, 0]).await.is_err() {
            return;
        }
    }
    let mut req = [0u8; 4];
    if tcp.read_exact(&mut req).await.is_err() || req[1] != 1 {
        return;
    }
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            if tcp.read_exact(&mut a).await.is_err() {
                return;
            }
            std::net::Ipv4Addr::from(a).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            if tcp.read_exact(&mut len).await.is_err() {
                return;
            }
            let mut name = vec![0u8; len[0] as usize];
            if tcp.read_exact(&mut name).await.is_err() {
                return;
            }
            // The name itself, resolved here: proxy-side resolution.
            format!("name:{}", String::from_utf8_lossy(&name))
        }
        _ => return,
    };
    let mut port = [0u8; 2];
    if tcp.read_exact(&mut port).await.is_err() {
        return;
    }
    let port = u16::from_be_bytes(port);
    targets.lock().unwrap().push(format!("{host}:{port}"));
    let dial = host.strip_prefix("name:").unwrap_or(&host).to_string();
    let Ok(mut upstream) = TcpStream::connect((dial.as_str(), port)).await else {
        let _ = tcp.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
        return;
    };
    if tcp.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await;
    }
}
