//! One WebSocket over one stream: heartbeat, writes, reads and dispatch to the hooks.
//!
//! A connection is a single task that polls everything it owns in one place (control
//! requests, the send queue, the heartbeat timers and the socket) instead of splitting the socket
//! into a reader and a writer task. That keeps writes full-duplex (a blocked write never stops
//! reads or the heartbeat), needs no lock around the socket and adds no task hop to a send.
//!
//! [`Connection`] is that loop over any stream, for callers who bring their own socket (tests
//! run it over [`tokio::io::duplex`]); the manager's supervisor runs the same loop over each
//! socket it dials, with one send queue that outlives the sockets.

mod ending;
mod rotate;
mod session;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::Config;
use crate::error::ConnectionError;
use crate::handle::{Link, channel};
use crate::hooks::ReadHooks;
use crate::queue::Receiver;
use crate::wire::Wire;
pub(crate) use session::{DialFuture, Session};

/// How a connection's run ended: decides what its supervisor does next.
#[derive(Debug)]
pub enum Ended {
    /// The caller closed it: stop for good.
    Closed,
    /// The caller asked for a restart: connect again at once.
    Restart,
    /// The peer closed it with a close handshake: reconnect after a backoff.
    PeerClosed,
    /// It failed (already reported to `on_error`): reconnect after a backoff.
    Failed(ConnectionError),
}

/// One WebSocket that completed its handshake, run until it ends. See the module docs.
///
/// ```
/// # async fn demo(stream: tokio::io::DuplexStream) {
/// use kharbranth::{Config, Connection, Ended, Message, ReadHooks};
/// let config = Config::builder("ws://peer.invalid/").build().unwrap();
/// // `stream`: a socket whose HTTP upgrade to WebSocket completed, client side.
/// let (conn, link) = Connection::new("peer", stream, config);
/// let mut hooks = ReadHooks::new().on_text(|name, t| println!("{name}: {}", t.as_str()));
/// let run = tokio::spawn(async move { conn.run(&mut hooks).await });
/// # tokio::task::yield_now().await;
/// link.send(Message::text("hello")).ok();
/// link.close(1000, "done").ok();
/// let ended = run.await.unwrap();
/// # let _ = matches!(ended, Ended::Closed);
/// # }
/// ```
pub struct Connection<S> {
    session: Session<S>,
    mailbox: Receiver,
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Speaks WebSocket as the client over `stream`, whose HTTP upgrade completed, with the
    /// frame and message limits of `config`; named `name` in hooks and logs. The [`Link`]
    /// sends to it, restarts it (the run then ends with [`Ended::Restart`]) and closes it.
    pub fn new(name: &str, stream: S, config: Config) -> (Self, Link) {
        Self::from_partially_read(name, stream, Vec::new(), config)
    }

    /// Like [`new`](Self::new), for a stream of which bytes past the upgrade response were
    /// already read (`read_ahead`: the start of the first frames).
    pub fn from_partially_read(
        name: &str,
        stream: S,
        read_ahead: Vec<u8>,
        config: Config,
    ) -> (Self, Link) {
        let (link, mailbox) = channel(name, &config, None);
        let wire = Wire::client(
            stream,
            read_ahead,
            config.ws_config(),
            config.burst_read_size(),
        );
        let mut session = Session::new(name, wire, config, link.shared.clone());
        // The caller's stream is read without the library's reader, which stamps reads: no
        // receive times, rather than the time the connection was made for every message.
        session.stamps = false;
        (Self { session, mailbox }, link)
    }

    /// Runs the connection until it ends: sends the init messages, fires `on_open`, then moves
    /// messages both ways and keeps the heartbeat until a failure, a peer close, or a request
    /// through the [`Link`]. Failures are reported to `on_error` before this returns.
    pub async fn run(mut self, hooks: &mut ReadHooks) -> Ended {
        self.session.run(&mut self.mailbox, hooks, None).await
    }
}
