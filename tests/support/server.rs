//! A local server on 127.0.0.1:0 in one of two modes, and what a test does with the server end
//! of a WebSocket.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::within;

/// The server side of one accepted WebSocket.
pub type ServerWs = WebSocketStream<TcpStream>;

/// Aborts a background task when dropped, so a failing test leaves nothing running.
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A server on 127.0.0.1. WebSocket mode ([`start`](Self::start)) completes every upgrade and
/// hands the socket to the test ([`next`](Self::next)); raw mode ([`raw`](Self::raw),
/// [`serve`](Self::serve)) hands every accepted TCP stream, with its index (0, 1, ...), to a
/// handler task. Dropping or stopping it stops accepting; handler tasks run on.
pub struct Server {
    pub port: u16,
    accepts: Arc<Mutex<Vec<Instant>>>,
    conns: Option<mpsc::UnboundedReceiver<ServerWs>>,
    task: AbortOnDrop,
}

impl Server {
    /// WebSocket mode, on port 0.
    pub async fn start() -> Self {
        let (tx, conns) = mpsc::unbounded_channel();
        let mut server = Self::raw(move |tcp, _| {
            let tx = tx.clone();
            async move {
                if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                    let _ = tx.send(ws);
                }
            }
        })
        .await;
        server.conns = Some(conns);
        server
    }

    /// Raw mode, on port 0.
    pub async fn raw<F, Fut>(handler: F) -> Self
    where
        F: Fn(TcpStream, usize) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, handler)
    }

    /// Raw mode on an already bound listener (used to come back on the same port).
    pub fn serve<F, Fut>(listener: TcpListener, handler: F) -> Self
    where
        F: Fn(TcpStream, usize) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let port = listener.local_addr().unwrap().port();
        let accepts: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let log = accepts.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let i = {
                    let mut log = log.lock().unwrap();
                    log.push(Instant::now());
                    log.len() - 1
                };
                tokio::spawn(handler(tcp, i));
            }
        });
        Self {
            port,
            accepts,
            conns: None,
            task: AbortOnDrop(task),
        }
    }

    /// `ws://127.0.0.1:{port}/{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}/{path}", self.port)
    }

    /// The next accepted WebSocket (WebSocket mode).
    pub async fn next(&mut self) -> ServerWs {
        let conns = self
            .conns
            .as_mut()
            .expect("a raw-mode server hands out no WebSockets");
        within("the server to accept a WebSocket", conns.recv())
            .await
            .expect("accept loop ended")
    }

    /// [`next`](Self::next), but a connect of the client that `rec` records fails the wait at
    /// once: a client that cannot connect fails its test within moments, not at the deadline.
    pub async fn next_unless_connect_fails(&mut self, rec: &super::Recorder) -> ServerWs {
        tokio::select! {
            ws = self.next() => ws,
            e = rec.connect_failure() => {
                panic!("the client's connect failed while the server waited for it: {e}")
            }
        }
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepts.lock().unwrap().len()
    }

    /// When each TCP connection was accepted.
    pub fn accept_times(&self) -> Vec<Instant> {
        self.accepts.lock().unwrap().clone()
    }

    /// Stops accepting: the listening socket is closed once the accept task is gone.
    pub async fn stop(mut self) {
        self.task.0.abort();
        let _ = (&mut self.task.0).await;
    }
}

/// Sends every text and binary message back to its sender until the stream ends.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) {
    while let Some(Ok(m)) = ws.next().await {
        if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
            break;
        }
    }
}

/// An echo server (raw mode): every text and binary message goes back to its sender.
pub async fn echo_server() -> Server {
    Server::raw(|tcp, _| async move {
        if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
            echo(ws).await;
        }
    })
    .await
}

/// A TLS acceptor presenting `chain` (ring provider, safe default protocol versions).
pub fn tls_acceptor(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
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
