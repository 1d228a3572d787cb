//! A controllable local WebSocket server and hook recorders for the fault, soak and security
//! tests (issue 4). Loopback only; every wait is bounded.

#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kharbranth::{ConnectionError, ReadHooks};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Polls `cond` every few milliseconds until it holds or `within` passes; returns whether it held.
pub async fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return cond();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A server whose every accepted TCP connection is handed, with its index (0, 1, ...), to a
/// scenario-specific handler.
pub struct Server {
    pub port: u16,
    pub accepts: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, handler)
    }

    /// Serves on an already bound listener (used to come back on the same port).
    pub fn serve<F, Fut>(listener: TcpListener, handler: F) -> Self
    where
        F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let port = listener.local_addr().unwrap().port();
        let accepts = Arc::new(AtomicUsize::new(0));
        let counter = accepts.clone();
        let handler = Arc::new(handler);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let i = counter.fetch_add(1, Ordering::SeqCst);
                let h = handler.clone();
                tokio::spawn(async move { h(tcp, i).await });
            }
        });
        Self {
            port,
            accepts,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}/{path}", self.port)
    }

    pub fn accepted(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    /// Stops accepting: the listening socket is closed once the accept task is gone.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

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
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()??;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Answers the upgrade by hand (so later bytes can be crafted freely).
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

/// Reads masked client frames until a close frame (bounded); returns its status code, or None
/// if the socket ended first.
pub async fn read_client_close(tcp: &mut TcpStream, within: Duration) -> Option<u16> {
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
    tokio::time::timeout(within, read).await.ok()?
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

/// What happened on one connection, as seen by its hooks.
#[derive(Debug, Clone)]
pub enum Rec {
    Open(Instant),
    Text(String),
    Close(u16),
    Error(ConnectionError, Instant),
}

/// Records every hook call of a connection.
#[derive(Clone, Default)]
pub struct Recorder {
    pub log: Arc<Mutex<Vec<Rec>>>,
}

impl Recorder {
    pub fn hooks(&self) -> ReadHooks {
        let (a, b, c, d) = (
            self.log.clone(),
            self.log.clone(),
            self.log.clone(),
            self.log.clone(),
        );
        ReadHooks::new()
            .on_open(move |_| a.lock().unwrap().push(Rec::Open(Instant::now())))
            .on_text(move |_, t| b.lock().unwrap().push(Rec::Text(t.to_string())))
            .on_close(move |_, code, _| c.lock().unwrap().push(Rec::Close(code)))
            .on_error(move |_, e| {
                d.lock()
                    .unwrap()
                    .push(Rec::Error(e.clone(), Instant::now()))
            })
    }

    pub fn snapshot(&self) -> Vec<Rec> {
        self.log.lock().unwrap().clone()
    }

    pub fn opens(&self) -> Vec<Instant> {
        self.snapshot()
            .into_iter()
            .filter_map(|r| match r {
                Rec::Open(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    pub fn errors(&self) -> Vec<(ConnectionError, Instant)> {
        self.snapshot()
            .into_iter()
            .filter_map(|r| match r {
                Rec::Error(e, t) => Some((e, t)),
                _ => None,
            })
            .collect()
    }

    pub fn texts(&self) -> Vec<String> {
        self.snapshot()
            .into_iter()
            .filter_map(|r| match r {
                Rec::Text(t) => Some(t),
                _ => None,
            })
            .collect()
    }
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn status_field(name: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// OS threads of this process.
pub fn threads() -> u64 {
    status_field("Threads:")
}

/// Resident set size in KiB.
pub fn rss_kib() -> u64 {
    status_field("VmRSS:")
}

/// The soft limit on open files.
pub fn nofile_limit() -> u64 {
    let s = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}
