//! One WebSocket over one stream: heartbeat, writes, reads and dispatch to the hooks.
//!
//! A [`Connection`] is a single task that polls everything it owns in one place (control
//! requests, the send queue, the heartbeat timers and the socket) instead of splitting the socket
//! into a reader and a writer task. That keeps writes full-duplex (a blocked write never stops
//! reads or the heartbeat), needs no lock around the socket and adds no task hop to a send.
//!
//! It is generic over the stream so tests can run it over [`tokio::io::duplex`].

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep, sleep, sleep_until, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::config::{Config, Heartbeat, InitMessage};
use crate::error::{ConnectionError, Result};
use crate::hooks::{CLOSE_NO_STATUS, Event, ReadHooks};
pub(crate) use crate::queue::Control;
use crate::queue::{self, SendError};

/// Frames read back to back before the other sources (control, send queue, timers) are polled
/// again. Bounds the extra latency those see during a burst while keeping the read path tight.
const READ_BURST: u32 = 64;
/// Frames handled in one poll of the connection's task before it yields to other tasks.
const YIELD_AFTER: u32 = 1024;
/// Messages written per poll before reads get their turn again.
const WRITE_BURST: usize = 256;

/// Lifecycle state of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnState {
    /// The first connect attempt is in progress.
    Connecting = 0,
    /// Open: messages flow.
    Open = 1,
    /// Not open after a failure; waiting for, or making, another attempt.
    Reconnecting = 2,
    /// A close handshake is in progress.
    Closing = 3,
    /// Closed for good (by the caller, or after the last allowed attempt failed).
    Closed = 4,
}

impl ConnState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Connecting,
            1 => Self::Open,
            2 => Self::Reconnecting,
            3 => Self::Closing,
            _ => Self::Closed,
        }
    }
}

/// Counters of a connection, read with [`WsManager::stats`](crate::WsManager::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Text and binary messages received.
    pub messages_in: u64,
    /// Payload bytes of those messages.
    pub bytes_in: u64,
    /// Text and binary messages written to the socket (init messages included).
    pub messages_out: u64,
    /// Payload bytes of those messages.
    pub bytes_out: u64,
    /// Successful connects after the first one.
    pub reconnects: u64,
    /// Round-trip time of the last answered WebSocket ping.
    pub last_rtt: Option<Duration>,
}

/// State shared between a connection's task and the handles that talk to it. Every counter has
/// one writer (the connection task), so updates are plain loads and stores, not read-modify-write.
#[derive(Debug)]
pub(crate) struct Shared {
    state: AtomicU8,
    state_changed: Notify,
    control_pending: AtomicBool,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    reconnects: AtomicU64,
    /// Micro-seconds + 1; 0 means never measured.
    rtt_us: AtomicU64,
}

#[inline]
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(by), Relaxed);
}

impl Shared {
    fn new() -> Self {
        Self {
            state: AtomicU8::new(ConnState::Connecting as u8),
            state_changed: Notify::new(),
            control_pending: AtomicBool::new(false),
            messages_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            rtt_us: AtomicU64::new(0),
        }
    }

    pub(crate) fn state(&self) -> ConnState {
        ConnState::from_u8(self.state.load(Relaxed))
    }

    pub(crate) fn set_state(&self, s: ConnState) {
        self.state.store(s as u8, Relaxed);
        self.state_changed.notify_waiters();
    }

    pub(crate) fn count_reconnect(&self) {
        bump(&self.reconnects, 1);
    }

    pub(crate) fn stats(&self) -> Stats {
        let rtt = self.rtt_us.load(Relaxed);
        Stats {
            messages_in: self.messages_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            last_rtt: (rtt > 0).then(|| Duration::from_micros(rtt - 1)),
        }
    }

    /// Waits until the state satisfies `pred`, or until `deadline`.
    pub(crate) async fn wait_for(
        &self,
        deadline: Instant,
        pred: impl Fn(ConnState) -> bool,
    ) -> Option<ConnState> {
        loop {
            let notified = self.state_changed.notified();
            tokio::pin!(notified);
            // Register before re-checking, so a change between the check and the wait is seen.
            notified.as_mut().enable();
            let s = self.state();
            if pred(s) {
                return Some(s);
            }
            if timeout_at(deadline, notified).await.is_err() {
                let s = self.state();
                return pred(s).then_some(s);
            }
        }
    }
}

/// The sending side of a connection: cloneable, used by the manager and by hooks.
#[derive(Debug, Clone)]
pub struct Link {
    tx: queue::Sender,
    pub(crate) shared: Arc<Shared>,
    max_message_size: usize,
    name: Arc<str>,
}

/// The receiving side of a connection's queues, owned by whoever runs the connection; it
/// outlives single sockets, so queued messages survive a reconnect.
#[derive(Debug)]
pub struct Mailbox {
    pub(crate) rx: queue::Receiver,
}

/// Creates the queues of a connection named `name`.
pub fn link(name: &str, config: &Config) -> (Link, Mailbox) {
    let (tx, rx) = queue::queue(config.send_queue_capacity());
    (
        Link {
            tx,
            shared: Arc::new(Shared::new()),
            max_message_size: config.max_message_size(),
            name: name.into(),
        },
        Mailbox { rx },
    )
}

impl Link {
    /// Queues a message for writing. Fails at once when the connection is not open
    /// (`ConnectionDropped`), the queue is full (`QueueFull`) or the message is too large.
    pub fn send(&self, msg: Message) -> Result<()> {
        let size = msg.len();
        if size > self.max_message_size {
            return Err(ConnectionError::MessageTooLarge {
                size,
                max: self.max_message_size,
            });
        }
        match self.shared.state() {
            ConnState::Open => {}
            ConnState::Closed | ConnState::Closing => {
                return Err(ConnectionError::ConnectionDropped(format!(
                    "{} is closed",
                    self.name
                )));
            }
            s => {
                return Err(ConnectionError::ConnectionDropped(format!(
                    "{} is not open ({s:?})",
                    self.name
                )));
            }
        }
        self.tx.try_send(msg).map_err(|e| match e {
            SendError::Full => ConnectionError::QueueFull(self.name.to_string()),
            SendError::Closed => {
                ConnectionError::ConnectionDropped(format!("{} is closed", self.name))
            }
        })
    }

    /// Asks the connection to close cleanly and connect again at once.
    pub fn restart(&self) -> Result<()> {
        self.control(Control::Restart)
    }

    /// Asks the connection to close for good; returns at once. Await [`Link::closed`] (or the
    /// task) to know when it is done.
    pub fn close(&self, code: u16, reason: &str) -> Result<()> {
        self.control(Control::Close {
            code,
            reason: reason.to_string(),
        })
    }

    fn control(&self, c: Control) -> Result<()> {
        self.tx
            .control(c)
            .map_err(|_| ConnectionError::ConnectionDropped(format!("{} is closed", self.name)))?;
        self.shared.control_pending.store(true, Relaxed);
        Ok(())
    }

    /// Current lifecycle state.
    pub fn state(&self) -> ConnState {
        self.shared.state()
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

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

enum Step {
    Control(Control),
    Failed(ConnectionError),
    /// A read failed; with the close code that tells the peer why, if it broke the protocol.
    ReadFailed(ConnectionError, Option<u16>),
    /// The socket ended after a completed close handshake.
    ReadEnded,
}

/// One open WebSocket. See the module docs.
pub struct Connection<S> {
    name: Arc<str>,
    ws: WebSocketStream<S>,
    config: Config,
    shared: Arc<Shared>,
    ping_timer: Pin<Box<Sleep>>,
    pong_timer: Pin<Box<Sleep>>,
    awaiting_pong: bool,
    ping_due: bool,
    ping_seq: u64,
    ping_sent_at: Option<Instant>,
    priority: VecDeque<Message>,
    needs_flush: bool,
    unflushed: usize,
    in_burst: bool,
    burst: u32,
    peer_closed: bool,
    /// Armed when the peer's close frame arrives: how long the peer may take to end the TCP
    /// connection after the close handshake.
    close_wait: Option<Pin<Box<Sleep>>>,
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Wraps a WebSocket that completed its handshake, named for hooks and logs.
    pub fn new(name: &str, ws: WebSocketStream<S>, config: Config, link: &Link) -> Self {
        Self::with_shared(name, ws, config, link.shared.clone())
    }

    /// Like [`new`](Self::new) for a supervisor, which must not hold a sender: the queue sees
    /// "every sender gone" when the manager forgets the connection.
    pub(crate) fn with_shared(
        name: &str,
        ws: WebSocketStream<S>,
        config: Config,
        shared: Arc<Shared>,
    ) -> Self {
        let now = Instant::now();
        Self {
            name: name.into(),
            ws,
            shared,
            ping_timer: Box::pin(sleep_until(now + config.ping_interval())),
            pong_timer: Box::pin(sleep_until(now + config.pong_timeout())),
            config,
            awaiting_pong: false,
            ping_due: false,
            ping_seq: 0,
            ping_sent_at: None,
            priority: VecDeque::new(),
            needs_flush: false,
            unflushed: 0,
            in_burst: false,
            burst: 0,
            peer_closed: false,
            close_wait: None,
        }
    }

    /// Runs the connection until it ends: sends the init messages, fires `on_open`, then moves
    /// messages both ways and keeps the heartbeat until a failure, a peer close, or a request
    /// from the caller. Failures are reported to `on_error` before this returns.
    pub async fn run(mut self, mailbox: &mut Mailbox, hooks: &mut ReadHooks) -> Ended {
        for m in self.config.init_messages() {
            self.priority.push_back(match m {
                InitMessage::Text(t) => Message::text(t.as_str()),
                InitMessage::Binary(b) => Message::Binary(b.clone()),
            });
        }
        self.shared.set_state(ConnState::Open);
        hooks.dispatch(&self.name, Event::Open);
        // Every step but a failure or a request ends the run; frames never leave poll_step.
        let step = poll_fn(|cx| self.poll_step(cx, mailbox, hooks)).await;
        match step {
            Step::ReadEnded => {
                if self.peer_closed {
                    log::info!("[{}] closed by the peer", self.name);
                    return Ended::PeerClosed;
                }
                let e = ConnectionError::ConnectionDropped("the socket closed".into());
                Box::pin(self.fail(e, None, hooks)).await
            }
            // The cold paths are boxed: inline they would make every connection's task as
            // large as their futures for its whole life.
            Step::Failed(e) => Box::pin(self.fail(e, None, hooks)).await,
            Step::ReadFailed(e, code) => Box::pin(self.fail(e, code, hooks)).await,
            Step::Control(Control::Close { code, reason }) => {
                self.shared.control_pending.store(false, Relaxed);
                Box::pin(self.close(code, &reason, Some(mailbox), hooks)).await;
                Ended::Closed
            }
            Step::Control(Control::Restart) => {
                self.shared.control_pending.store(false, Relaxed);
                log::info!("[{}] restart requested", self.name);
                Box::pin(self.close(1000, "restart", None, hooks)).await;
                Ended::Restart
            }
        }
    }

    /// Moves the connection forward until something needs the run loop: frames are handed to
    /// the hooks right here, so the per-message path is one poll of the socket and one call.
    fn poll_step(
        &mut self,
        cx: &mut Context<'_>,
        mailbox: &mut Mailbox,
        hooks: &mut ReadHooks,
    ) -> Poll<Step> {
        // Sends from this connection's own hooks skip the wake-up; every way out of this
        // function that waits goes through poll_others, which writes them.
        let _polling = mailbox.rx.polling();
        let mut frames = 0u32;
        loop {
            if !self.in_burst
                || self.burst >= READ_BURST
                || self.shared.control_pending.load(Relaxed)
            {
                self.burst = 0;
                if let Poll::Ready(step) = self.poll_others(cx, mailbox) {
                    return Poll::Ready(step);
                }
            }
            match self.ws.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(msg))) => {
                    self.in_burst = true;
                    self.burst += 1;
                    self.on_message(msg, hooks);
                    frames += 1;
                    if frames >= YIELD_AFTER {
                        // Frames already buffered never make the socket return Pending, so
                        // give other tasks on this worker their turn explicitly.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let code = close_code_for(&e);
                    return Poll::Ready(Step::ReadFailed(read_error(e), code));
                }
                Poll::Ready(None) => return Poll::Ready(Step::ReadEnded),
                Poll::Pending => {
                    if self.in_burst {
                        // The burst skipped the other sources; their turn before sleeping.
                        self.in_burst = false;
                        self.burst = 0;
                        return self.poll_others(cx, mailbox);
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn poll_others(&mut self, cx: &mut Context<'_>, mailbox: &mut Mailbox) -> Poll<Step> {
        if let Poll::Ready(c) = mailbox.rx.poll_control(cx) {
            // All senders gone means the manager itself went away: close like a shutdown.
            return Poll::Ready(Step::Control(c.unwrap_or(Control::Close {
                code: 1001,
                reason: "going away".into(),
            })));
        }
        if self.peer_closed {
            // The peer closed and tungstenite answers it while reading. RFC 6455, 7.1.1: the
            // server then ends the TCP connection, and the client may drop it when that does
            // not happen in reasonable time. Without this bound a peer that keeps the socket
            // would hold the connection until the next heartbeat failed (as PingFailed).
            // No heartbeat and no queued writes go out after the close: the writes wait in the
            // queue for the next connection.
            let wait = self
                .close_wait
                .get_or_insert_with(|| Box::pin(sleep(self.config.close_timeout())));
            if wait.as_mut().poll(cx).is_ready() {
                log::info!(
                    "[{}] the peer did not end the connection within {:?} of its close; dropping it",
                    self.name,
                    self.config.close_timeout()
                );
                return Poll::Ready(Step::ReadEnded);
            }
            return Poll::Pending;
        }
        if self.ping_timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            self.ping_timer
                .as_mut()
                .reset(now + self.config.ping_interval());
            let _ = self.ping_timer.as_mut().poll(cx);
            self.ping_due = true;
            // Armed at the ping, whether or not a pong was ever seen; an earlier unanswered
            // ping keeps its (earlier) deadline.
            if !self.awaiting_pong {
                self.awaiting_pong = true;
                self.pong_timer
                    .as_mut()
                    .reset(now + self.config.pong_timeout());
            }
        }
        if self.awaiting_pong && self.pong_timer.as_mut().poll(cx).is_ready() {
            let t = self.config.pong_timeout();
            log::warn!("[{}] no answer to the heartbeat within {t:?}", self.name);
            return Poll::Ready(Step::Failed(ConnectionError::PongReceiveTimeout(t)));
        }
        match self.poll_writes(cx, mailbox) {
            Ok(()) => Poll::Pending,
            Err(e) => Poll::Ready(Step::Failed(e)),
        }
    }

    fn poll_writes(&mut self, cx: &mut Context<'_>, mailbox: &mut Mailbox) -> Result<()> {
        let mut written = 0;
        while written < WRITE_BURST {
            match self.ws.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Err(self.write_error(e)),
                Poll::Pending => break,
            }
            if self.ping_due {
                self.ping_due = false;
                let msg = self.heartbeat_message();
                self.ws
                    .start_send_unpin(msg)
                    .map_err(|e| ConnectionError::PingFailed(e.to_string()))?;
                self.ping_sent_at = Some(Instant::now());
                log::trace!("[{}] heartbeat sent", self.name);
                self.needs_flush = true;
                continue;
            }
            let msg = match self.priority.pop_front() {
                Some(m) => m,
                None => match mailbox.rx.poll_write(cx) {
                    Poll::Ready(m) => m,
                    Poll::Pending => break,
                },
            };
            let (data, len) = (msg.is_text() || msg.is_binary(), msg.len() as u64);
            if let Err(e) = self.ws.start_send_unpin(msg) {
                self.unflushed += 1;
                return Err(self.write_error(e));
            }
            if data {
                bump(&self.shared.messages_out, 1);
                bump(&self.shared.bytes_out, len);
            }
            self.unflushed += 1;
            self.needs_flush = true;
            written += 1;
        }
        if self.needs_flush {
            match self.ws.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    self.needs_flush = false;
                    self.unflushed = 0;
                }
                Poll::Ready(Err(e)) => return Err(self.write_error(e)),
                Poll::Pending => {}
            }
        }
        if written == WRITE_BURST {
            // More may be queued: come back after the reads had their turn.
            cx.waker().wake_by_ref();
        }
        Ok(())
    }

    fn heartbeat_message(&mut self) -> Message {
        match self.config.heartbeat() {
            Heartbeat::Ping => {
                self.ping_seq += 1;
                Message::Ping(Bytes::copy_from_slice(&self.ping_seq.to_be_bytes()))
            }
            Heartbeat::Text(t) => Message::text(t.as_str()),
        }
    }

    fn write_error(&mut self, e: WsError) -> ConnectionError {
        let n = std::mem::take(&mut self.unflushed);
        ConnectionError::WriteError(format!(
            "{e}; {n} message(s) accepted since the last flush may not have been sent"
        ))
    }

    #[inline]
    fn on_message(&mut self, msg: Message, hooks: &mut ReadHooks) {
        // Any frame proves the peer alive, which also covers text heartbeats answered in text.
        self.awaiting_pong = false;
        let name = &*self.name;
        let event = match msg {
            Message::Text(t) => {
                bump(&self.shared.messages_in, 1);
                bump(&self.shared.bytes_in, t.len() as u64);
                log::trace!("[{name}] text, {} bytes", t.len());
                return hooks.text(name, t);
            }
            Message::Binary(b) => {
                bump(&self.shared.messages_in, 1);
                bump(&self.shared.bytes_in, b.len() as u64);
                log::trace!("[{name}] binary, {} bytes", b.len());
                return hooks.binary(name, b);
            }
            Message::Ping(p) => {
                log::trace!("[{name}] ping");
                Event::Ping(p)
            }
            Message::Pong(p) => {
                if let Some(sent) = self.ping_sent_at
                    && p.as_ref() == self.ping_seq.to_be_bytes()
                {
                    let rtt = sent.elapsed();
                    self.shared
                        .rtt_us
                        .store(rtt.as_micros() as u64 + 1, Relaxed);
                    log::trace!("[{name}] pong after {rtt:?}");
                }
                Event::Pong(p)
            }
            Message::Close(frame) => {
                self.peer_closed = true;
                let (code, reason) = match frame {
                    Some(f) => (u16::from(f.code), f.reason),
                    None => (CLOSE_NO_STATUS, Utf8Bytes::default()),
                };
                log::info!("[{name}] peer sent close {code} {:?}", reason.as_str());
                Event::Close(code, reason)
            }
            // Raw frames are never produced by reads.
            Message::Frame(_) => return,
        };
        hooks.dispatch(name, event);
    }

    /// Reports a failure, tells a misbehaving peer why (1002/1007/1009) and ends the run.
    async fn fail(
        mut self,
        e: ConnectionError,
        close_code: Option<u16>,
        hooks: &mut ReadHooks,
    ) -> Ended {
        log::warn!("[{}] {e}", self.name);
        if let Some(code) = close_code {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: Utf8Bytes::from_static("protocol error"),
            };
            let deadline = Instant::now() + self.config.close_timeout().min(Duration::from_secs(1));
            let _ = timeout_at(deadline, self.ws.send(Message::Close(Some(frame)))).await;
        }
        hooks.dispatch(&self.name, Event::Error(e.clone()));
        // Messages handed to the socket but not yet flushed died with it: say so.
        let lost = std::mem::take(&mut self.unflushed);
        if lost > 0 {
            let w = ConnectionError::WriteError(format!(
                "{lost} accepted message(s) may not have been sent before the failure"
            ));
            hooks.dispatch(&self.name, Event::Error(w));
        }
        Ended::Failed(e)
    }

    /// Close handshake bounded by the configured close timeout. With a mailbox, the messages
    /// already accepted are written first and what cannot be written is reported.
    async fn close(
        &mut self,
        code: u16,
        reason: &str,
        mailbox: Option<&mut Mailbox>,
        hooks: &mut ReadHooks,
    ) {
        self.shared.set_state(ConnState::Closing);
        log::info!("[{}] closing with {code} {reason:?}", self.name);
        let deadline = Instant::now() + self.config.close_timeout();
        let name = self.name.clone();
        let mut pending: Vec<Message> = Vec::new();
        if let Some(mb) = mailbox {
            pending.extend(self.priority.drain(..));
            while let Some(m) = mb.rx.try_write() {
                pending.push(m);
            }
        }
        let total = pending.len();
        let mut sent = 0usize;
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from(reason),
        };
        // Earlier messages handed to the socket but not flushed yet are at stake too.
        let total = total + std::mem::take(&mut self.unflushed);
        let handshake = async {
            for m in pending {
                let (data, len) = (m.is_text() || m.is_binary(), m.len() as u64);
                self.ws.feed(m).await?;
                if data {
                    bump(&self.shared.messages_out, 1);
                    bump(&self.shared.bytes_out, len);
                }
            }
            self.ws.flush().await?;
            // Written means handed to the kernel, which is as far as a sender can know.
            sent = total;
            self.ws.send(Message::Close(Some(frame))).await?;
            // Read until the peer's close reply ends the stream; frames still arriving reach the
            // hooks, since they were received before the close completed.
            while let Some(r) = self.ws.next().await {
                match r {
                    Ok(msg) => self.on_message(msg, hooks),
                    Err(e) => return Err(e),
                }
                // A peer that keeps sending never lets this loop wait, so the timeout around
                // it would never get to fire (one read can hold hundreds of frames, each with
                // a hook to run): check the deadline between frames.
                if Instant::now() >= deadline {
                    return Err(WsError::Io(std::io::ErrorKind::TimedOut.into()));
                }
            }
            Ok::<(), WsError>(())
        };
        match timeout_at(deadline, handshake).await {
            Ok(Ok(())) => log::info!("[{name}] closed"),
            Ok(Err(e)) => log::info!("[{name}] closed ({e})"),
            Err(_) => log::warn!(
                "[{name}] the peer did not finish the close handshake within {:?}",
                self.config.close_timeout()
            ),
        }
        if sent < total {
            let e = ConnectionError::WriteError(format!(
                "{} queued message(s) were not written before the close",
                total - sent
            ));
            hooks.dispatch(&name, Event::Error(e));
        }
    }
}

fn read_error(e: WsError) -> ConnectionError {
    match e {
        WsError::Io(e) => ConnectionError::ConnectionDropped(e.to_string()),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            ConnectionError::ConnectionDropped("reset without a close handshake".into())
        }
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            ConnectionError::ConnectionDropped("the socket closed".into())
        }
        other => ConnectionError::ReadError(other.to_string()),
    }
}

/// The close code that tells a peer which broke the protocol why we leave (RFC 6455, 7.4.1).
fn close_code_for(e: &WsError) -> Option<u16> {
    match e {
        WsError::Utf8(_) => Some(1007),
        WsError::Capacity(_) => Some(1009),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) | WsError::AttackAttempt => Some(1002),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_follow_the_rfc() {
        assert_eq!(close_code_for(&WsError::Utf8("bad".into())), Some(1007));
        let proto = WsError::Protocol(ProtocolError::NonZeroReservedBits);
        assert_eq!(close_code_for(&proto), Some(1002));
        let reset = WsError::Io(std::io::ErrorKind::ConnectionReset.into());
        assert_eq!(close_code_for(&reset), None);
    }
}
