//! Shared helpers of the integration tests: an event recorder for hooks, local WebSocket
//! servers on 127.0.0.1:0, and waits that always have a deadline.
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kharbranth::{Config, ConfigBuilder, ConnectionError, ReadHooks};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// The bound on every wait of a test. Generous: the machine may be loaded.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The server side of one accepted WebSocket.
pub type ServerWs = WebSocketStream<TcpStream>;

/// Runs `fut` with the test deadline; panics naming `what` when it runs out.
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}

/// Polls `cond` every few milliseconds until it holds; panics after the deadline.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {DEADLINE:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A configuration for a local server: no heartbeat noise (long ping interval), quick
/// reconnects, bounded connect and close.
pub fn cfg(port: u16) -> ConfigBuilder {
    Config::builder(format!("ws://127.0.0.1:{port}/"))
        .ping_interval(Duration::from_secs(30))
        .pong_timeout(Duration::from_secs(30))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .connect_timeout(Duration::from_secs(5))
        .close_timeout(Duration::from_secs(2))
}

/// What a hook saw, owned so it can be compared.
#[derive(Debug, Clone, PartialEq)]
pub enum Ev {
    Open,
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
    Frame(u8, Vec<u8>),
    Error(ConnectionError),
}

/// Records every hook invocation of a connection, in order.
#[derive(Clone, Default)]
pub struct Recorder {
    events: Arc<Mutex<Vec<Ev>>>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&self, ev: Ev) {
        self.events.lock().unwrap().push(ev);
    }

    /// Hooks that record everything.
    pub fn hooks(&self) -> ReadHooks {
        let (a, b, c, d, e, f, g, h) = (
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
        );
        ReadHooks::new()
            .on_open(move |_| a.push(Ev::Open))
            .on_text(move |_, t| b.push(Ev::Text(t.to_string())))
            .on_binary(move |_, x| c.push(Ev::Binary(x.to_vec())))
            .on_ping(move |_, x| d.push(Ev::Ping(x.to_vec())))
            .on_pong(move |_, x| e.push(Ev::Pong(x.to_vec())))
            .on_close(move |_, code, reason| f.push(Ev::Close(code, reason.to_string())))
            .on_frame(move |_, op, x| g.push(Ev::Frame(op, x.to_vec())))
            .on_error(move |_, err| h.push(Ev::Error(err.clone())))
    }

    pub fn events(&self) -> Vec<Ev> {
        self.events.lock().unwrap().clone()
    }

    /// Events without the `on_frame` duplicates.
    pub fn main_events(&self) -> Vec<Ev> {
        self.events()
            .into_iter()
            .filter(|e| !matches!(e, Ev::Frame(..)))
            .collect()
    }

    pub fn count(&self, pred: impl Fn(&Ev) -> bool) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| pred(e))
            .count()
    }

    pub fn opens(&self) -> usize {
        self.count(|e| matches!(e, Ev::Open))
    }

    pub fn errors(&self) -> Vec<ConnectionError> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Error(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    pub fn texts(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Text(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// Waits until `pred` holds for the recorded events; panics with them after the deadline.
    pub async fn wait(&self, what: &str, pred: impl Fn(&[Ev]) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if pred(&self.events.lock().unwrap()) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {DEADLINE:?} waiting for {what}; events: {:?}",
                    self.events()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn wait_count(&self, what: &str, n: usize, pred: impl Fn(&Ev) -> bool) {
        self.wait(what, |evs| evs.iter().filter(|e| pred(e)).count() >= n)
            .await
    }
}

/// Aborts a background task when dropped, so a failing test leaves nothing running.
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A WebSocket server on 127.0.0.1:0 that hands every accepted socket to the test.
pub struct Server {
    pub port: u16,
    conns: mpsc::UnboundedReceiver<ServerWs>,
    accepted: Arc<AtomicUsize>,
    _task: AbortOnDrop,
}

impl Server {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, conns) = mpsc::unbounded_channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                        let _ = tx.send(ws);
                    }
                });
            }
        });
        Self {
            port,
            conns,
            accepted,
            _task: AbortOnDrop(task),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// The next accepted WebSocket.
    pub async fn next(&mut self) -> ServerWs {
        within("the server to accept a WebSocket", self.conns.recv())
            .await
            .expect("accept loop ended")
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// An echo server: every text and binary message goes back to its sender.
pub async fn echo_server() -> (u16, AbortOnDrop) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, AbortOnDrop(task))
}

/// The next message the server reads, whatever it is.
pub async fn recv(ws: &mut ServerWs) -> Message {
    match within("a message at the server", ws.next()).await {
        Some(Ok(m)) => m,
        other => panic!("server expected a message, got {other:?}"),
    }
}

/// The next text, binary or close message the server reads (heartbeat pings and pongs skipped).
pub async fn recv_data(ws: &mut ServerWs) -> Message {
    loop {
        let m = recv(ws).await;
        if !(m.is_ping() || m.is_pong()) {
            return m;
        }
    }
}

/// Reads until the stream ends (after a close handshake or a drop), returning what came.
pub async fn drain(ws: &mut ServerWs) -> Vec<Message> {
    let mut got = Vec::new();
    within("the server stream to end", async {
        while let Some(Ok(m)) = ws.next().await {
            got.push(m);
        }
    })
    .await;
    got
}

/// A unique path in the temp directory for files a test writes.
pub fn temp_path(stem: &str) -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("kharbranth-{}-{stem}-{n}", std::process::id()))
}
