//! The connection loop over one socket: the hot path.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep, sleep, sleep_until};
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::Ended;
use super::ending::{close_code_for, read_error};
use crate::clock::ReceiveTime;
use crate::config::{Config, InitMessage};
use crate::error::{ConnectionError, Result};
use crate::handle::{ConnState, Shared};
use crate::heartbeat::HeartbeatTimer;
use crate::hooks::{CLOSE_NO_STATUS, Event, ReadHooks};
use crate::inflate::Inflater;
use crate::queue::{Control, Receiver};
use crate::ratelimit::Gcra;
use crate::watchdog::IdleWatchdog;
use crate::wire::{Data, Received, Wire};

/// Frames read back to back before the other sources (control, send queue, timers) are polled
/// again. Bounds the extra latency those see during a burst while keeping the read path tight.
const READ_BURST: u32 = 64;
/// Frames handled in one poll of the connection's task before it yields to other tasks.
const YIELD_AFTER: u32 = 1024;
/// Messages written per poll before reads get their turn again.
const WRITE_BURST: usize = 256;

/// Dials the second socket of a rotation: the socket and the index of its URL, plus the
/// failures of the URLs tried before it (reported by the session, which owns the hooks).
pub(crate) type DialFuture<S> = Pin<
    Box<
        dyn Future<
                Output = (
                    std::result::Result<(Wire<S>, usize), ConnectionError>,
                    Vec<ConnectionError>,
                ),
            > + Send,
    >,
>;

/// Starts a [`DialFuture`] with the connection's configuration.
pub(crate) type Dialer<'a, S> = &'a (dyn Fn() -> DialFuture<S> + Send + Sync);

/// How a rotation ended.
pub(super) enum Rotation {
    /// Delivery switched to the new socket; the old one is closed.
    Switched,
    /// The new socket failed (reported); the old one runs on.
    Failed,
    /// The old socket's loop stopped on this step (a close, a restart, or it ended with no
    /// new socket open to take over).
    Interrupted(Step),
}

/// What ends a run of the poll loop.
pub(super) enum Step {
    Control(Control),
    Failed(ConnectionError),
    /// A read failed; with the close code that tells the peer why, if it broke the protocol.
    ReadFailed(ConnectionError, Option<u16>),
    /// The socket ended after a completed close handshake.
    ReadEnded,
}

/// One open WebSocket and everything its loop keeps between polls.
pub(crate) struct Session<S> {
    pub(super) name: Arc<str>,
    pub(super) ws: Wire<S>,
    pub(super) config: Config,
    pub(super) shared: Arc<Shared>,
    pub(super) heartbeat: HeartbeatTimer,
    /// Init messages: written before anything from the send queue.
    pub(super) priority: VecDeque<Message>,
    needs_flush: bool,
    /// Messages handed to the socket since the last completed flush: lost if it fails now.
    pub(super) unflushed: usize,
    /// The last poll of the frames ended by giving up its turn (see `YIELD_AFTER`), not by
    /// waiting: the task runs again at once.
    yielded: bool,
    in_burst: bool,
    burst: u32,
    pub(super) peer_closed: bool,
    /// Reads wait for room in the event queue (a polled connection whose poller is behind).
    /// The heartbeat does not count that time as the peer's silence: frames may be waiting
    /// unread in the socket.
    stalled: bool,
    /// Armed when the peer's close frame arrives: how long the peer may take to end the TCP
    /// connection after the close handshake.
    close_wait: Option<Pin<Box<Sleep>>>,
    /// The data watchdog, when an idle timeout is configured.
    idle: Option<IdleWatchdog>,
    /// Inflates binary messages, when configured; boxed, as most connections have none.
    inflater: Option<Box<Inflater>>,
    /// The send rate limit, when one is configured: boxed, so that a session without one
    /// carries only a null pointer.
    pub(super) limiter: Option<Box<SendLimiter>>,
    /// Receive timestamps are on: frames are delivered through [`deliver`](Self::deliver)'s
    /// stamped side.
    pub(super) stamps: bool,
    /// The time of the last read of this socket that returned bytes: the messages parsed from
    /// buffered bytes (no read during their poll) were completed by it.
    stamp: ReceiveTime,
    /// Data messages counted when the last poll ended: a poll that changed the count delivered
    /// data, and reads the clock once for `StateChange::last_message_at`.
    data_seen: u64,
}

/// A session's send rate limit: the permits and the one timer armed while a write waits.
pub(super) struct SendLimiter {
    gcra: Gcra,
    /// Heartbeats, pings and pongs take permits too.
    count_pings: bool,
    /// The last permit went to a heartbeat: the next goes to a waiting message, so that
    /// heartbeats due faster than the rate cannot starve the data.
    last_was_ping: bool,
    /// Set to the instant of the next permit while a write waits for it; polled only then.
    timer: Pin<Box<Sleep>>,
}

impl SendLimiter {
    fn new(config: &Config) -> Option<Box<Self>> {
        let rate = config.send_rate()?;
        let now = Instant::now();
        Some(Box::new(Self {
            gcra: Gcra::new(rate, now),
            count_pings: config.rate_limit_pings(),
            last_was_ping: false,
            timer: Box::pin(tokio::time::sleep_until(now)),
        }))
    }

    /// Whether writing `msg` takes a permit.
    pub(super) fn counts(&self, msg: &Message) -> bool {
        msg.is_text() || msg.is_binary() || (self.count_pings && (msg.is_ping() || msg.is_pong()))
    }

    /// Takes a permit if one is free now; else says when the next one is (the close path,
    /// which waits for it with its own deadline).
    pub(super) fn next_permit(&mut self) -> Option<Instant> {
        self.gcra.try_take(Instant::now()).err()
    }

    /// tungstenite answers every ping with a pong it writes by itself, past the limiter: when
    /// pongs count, charge for it (the limiter goes into debt, and the next sends wait), so
    /// the frames on the wire keep to the rate however often the peer pings.
    fn charge_auto_pong(&mut self) {
        if self.count_pings {
            self.gcra.charge(Instant::now());
        }
    }

    /// [`permit`](Self::permit) for a message (not a heartbeat).
    fn take_for_message(&mut self, cx: &mut Context<'_>, now: &mut Option<Instant>) -> bool {
        let ok = self.permit(cx, now);
        if ok {
            self.last_was_ping = false;
        }
        ok
    }

    /// Takes a permit now, or arms the timer for the next one and says "not yet". `now` is
    /// read once per write burst, by the first frame that needs a permit.
    fn permit(&mut self, cx: &mut Context<'_>, now: &mut Option<Instant>) -> bool {
        let now = *now.get_or_insert_with(Instant::now);
        match self.gcra.try_take(now) {
            Ok(()) => true,
            Err(at) => {
                self.timer.as_mut().reset(at);
                if self.timer.as_mut().poll(cx).is_ready() {
                    // Due between the clock read and the arming: look again at once.
                    cx.waker().wake_by_ref();
                }
                false
            }
        }
    }
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Wraps a WebSocket that completed its handshake. The supervisor passes the shared state
    /// rather than a [`Link`](crate::Link): it must not hold a sender, so that the queue sees
    /// "every sender gone" when the manager forgets the connection.
    pub(crate) fn new(name: &str, ws: Wire<S>, config: Config, shared: Arc<Shared>) -> Self {
        Self {
            name: name.into(),
            ws,
            idle: config
                .idle_timeout()
                .map(|d| IdleWatchdog::new(d, shared.messages_in())),
            inflater: config
                .inflate()
                .map(|c| Box::new(Inflater::new(c, config.max_message_size()))),
            data_seen: shared.messages_in(),
            shared,
            heartbeat: HeartbeatTimer::new(&config),
            limiter: SendLimiter::new(&config),
            stamps: config.receive_timestamps(),
            // Bytes read with the upgrade response were read by the dial, an instant ago.
            stamp: if config.receive_timestamps() {
                ReceiveTime::now()
            } else {
                ReceiveTime::NONE
            },
            config,
            priority: VecDeque::new(),
            needs_flush: false,
            unflushed: 0,
            yielded: false,
            in_burst: false,
            burst: 0,
            peer_closed: false,
            stalled: false,
            close_wait: None,
        }
    }

    /// Queues the init messages: the first things the socket writes.
    pub(super) fn queue_init_messages(&mut self) {
        for m in self.config.init_messages() {
            self.priority.push_back(match m {
                InitMessage::Text(t) => Message::text(t.as_str()),
                InitMessage::Binary(b) => Message::Binary(b.clone()),
            });
        }
    }

    /// See [`Connection::run`](super::Connection::run). With a `dialer`, the session can rotate
    /// to a second socket (see [`Link::rotate`](crate::Link::rotate)); without one (a
    /// caller's own stream) rotation requests are ignored.
    pub(crate) async fn run(
        mut self,
        mailbox: &mut Receiver,
        hooks: &mut ReadHooks,
        dialer: Option<Dialer<'_, S>>,
    ) -> Ended {
        self.queue_init_messages();
        // The live subscriptions, after the init messages (which typically log in). Taken
        // before the state says Open, so every later change reaches this socket exactly once.
        let init = self.priority.len();
        mailbox.open_socket(&mut self.priority);
        if self.priority.len() > init {
            log::debug!(
                "[{}] replaying {} subscription(s)",
                self.name,
                self.priority.len() - init
            );
        }
        self.shared.set_state(ConnState::Open);
        hooks.dispatch(&self.name, Event::Open);
        let max_age = dialer.and(self.config.max_connection_age());
        let mut rotate_at = max_age.map(|a| Instant::now() + a);
        loop {
            // Every step but a failure or a request ends the run; frames never leave poll_step.
            // Without a maximum age the loop is the bare poll: no timer on the hot path.
            let step = match rotate_at {
                None => poll_fn(|cx| self.poll_step(cx, mailbox, hooks)).await,
                Some(at) => Box::pin(self.step_or_age(at, mailbox, hooks)).await,
            };
            if let Step::Control(Control::Rotate) = step {
                self.shared.control_pending.store(false, Relaxed);
                let Some(dial) = dialer else {
                    log::warn!(
                        "[{}] rotation ignored: this connection cannot dial",
                        self.name
                    );
                    continue;
                };
                match Box::pin(self.rotate(dial, mailbox, hooks)).await {
                    Rotation::Switched => rotate_at = max_age.map(|a| Instant::now() + a),
                    // Not at once again: the server may refuse new sockets for a while.
                    Rotation::Failed => {
                        rotate_at = max_age.map(|_| Instant::now() + self.config.backoff().1)
                    }
                    Rotation::Interrupted(step) => {
                        mailbox.end_socket();
                        return Box::pin(self.end(step, mailbox, hooks)).await;
                    }
                }
                continue;
            }
            // From here on subscription changes wait for the next socket's replay.
            mailbox.end_socket();
            // Boxed: inline, the ending would hold a second session in the task for its whole life.
            return Box::pin(self.end(step, mailbox, hooks)).await;
        }
    }

    /// A step of the loop, or a rotation request once the socket reaches its maximum age.
    async fn step_or_age(
        &mut self,
        at: Instant,
        mailbox: &mut Receiver,
        hooks: &mut ReadHooks,
    ) -> Step {
        tokio::select! {
            biased;
            step = poll_fn(|cx| self.poll_step(cx, mailbox, hooks)) => step,
            () = sleep_until(at) => {
                log::info!("[{}] maximum connection age reached", self.name);
                Step::Control(Control::Rotate)
            }
        }
    }

    /// Ends the run on a step that is not a rotation.
    async fn end(mut self, step: Step, mailbox: &mut Receiver, hooks: &mut ReadHooks) -> Ended {
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
            // Not reached: `run` and `rotate` take every rotation request before a run ends.
            // Should one get here, a restart is the nearest end that still gives a fresh socket.
            Step::Control(Control::Rotate) => {
                Box::pin(self.close(1000, "restart", None, hooks)).await;
                Ended::Restart
            }
        }
    }

    /// Moves the connection forward until something needs the run loop: frames are handed to
    /// the hooks right here, so the per-message path is one poll of the socket and one call.
    pub(super) fn poll_step(
        &mut self,
        cx: &mut Context<'_>,
        mailbox: &mut Receiver,
        hooks: &mut ReadHooks,
    ) -> Poll<Step> {
        hooks.begin_read();
        // One look per poll: without receive timestamps the loop is compiled without them.
        let step = if self.stamps {
            self.poll_frames::<true>(cx, mailbox, hooks)
        } else {
            self.poll_frames::<false>(cx, mailbox, hooks)
        };
        // Before the flush: a poller that sees the messages finds their time recorded.
        self.note_data();
        // Whatever this poll read is handed over before the task sleeps or moves on. A poll
        // that only gave up its turn runs again at once, so a polled connection's messages
        // wait for that (up to its stage limit): a poller on the same CPU is then woken once
        // per few thousand messages of a busy feed, not once per 1,024, and each wake-up is
        // two context switches.
        if !std::mem::take(&mut self.yielded) {
            hooks.flush();
        }
        hooks.end_read();
        step
    }

    /// Once per poll (not per message): when this poll delivered data, record when, for the
    /// gap a re-open reports.
    #[inline]
    pub(super) fn note_data(&mut self) {
        let n = self.shared.messages_in();
        if n != self.data_seen {
            self.data_seen = n;
            self.note_data_now();
        }
    }

    #[inline(never)]
    fn note_data_now(&self) {
        let wall = if self.stamps {
            self.stamp.wall_ns()
        } else {
            ReceiveTime::now_wall_ns()
        };
        self.shared.note_data(wall);
    }

    /// The read loop; `STAMPS`: receive timestamps are on (`self.stamps`).
    fn poll_frames<const STAMPS: bool>(
        &mut self,
        cx: &mut Context<'_>,
        mailbox: &mut Receiver,
        hooks: &mut ReadHooks,
    ) -> Poll<Step> {
        // Sends from this connection's own hooks skip the wake-up; every way out of this
        // function that waits goes through poll_others, which writes them.
        let _polling = mailbox.polling();
        let mut frames = 0u32;
        loop {
            if !self.in_burst
                || self.burst >= READ_BURST
                || self.shared.control_pending.load(Relaxed)
            {
                self.burst = 0;
                if let Poll::Ready(step) = self.poll_others(cx, mailbox, hooks) {
                    return Poll::Ready(step);
                }
            }
            if hooks.poll_room(cx).is_pending() {
                if hooks.take_handover() {
                    return self.yield_to_consumer(cx);
                }
                return self.stall(cx, mailbox, hooks);
            }
            if STAMPS {
                crate::clock::clear_read();
            }
            match self.ws.poll_frame(cx) {
                Poll::Ready(Some(Ok(received))) => {
                    self.in_burst = true;
                    self.burst += 1;
                    match received {
                        Received::Data(d) => {
                            if STAMPS {
                                stamp_frame(&mut self.stamp, hooks);
                            }
                            on_data(
                                &self.name,
                                &mut self.heartbeat,
                                &self.shared,
                                self.inflater.as_deref_mut(),
                                d,
                                hooks,
                            );
                            if STAMPS {
                                hooks.set_receive_time(ReceiveTime::NONE);
                            }
                        }
                        Received::Message(msg) if STAMPS => self.on_stamped(msg, hooks),
                        Received::Message(msg) => self.on_message(msg, hooks),
                    }
                    frames += 1;
                    if frames >= YIELD_AFTER {
                        // Frames already buffered never make the socket return Pending, so
                        // give other tasks on this worker their turn explicitly. A frame that
                        // just filled a driven poll's window (of 1,024 events, as many as
                        // this) handed over too: the poll's turn, else the task ran once
                        // more, for nothing, before the poll returned.
                        if hooks.take_handover() {
                            return self.yield_to_consumer(cx);
                        }
                        cx.waker().wake_by_ref();
                        self.yielded = true;
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
                        return self.poll_others(cx, mailbox, hooks);
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// A consumer was woken for a batch staged mid-read (or a driven poll's full window): its
    /// turn first. On a current-thread runtime a task woken at once runs again before the
    /// future in `block_on` (a driven manager's poll) is looked at; the first poll of
    /// `yield_now` defers the wake-up until after that.
    fn yield_to_consumer(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        let _ = std::pin::pin!(tokio::task::yield_now()).poll(cx);
        self.yielded = true;
        Poll::Pending
    }

    /// The event queue is full: stop reading (TCP slows the peer) until a poll frees room,
    /// which wakes this task. Control requests and writes go on meanwhile.
    #[cold]
    fn stall(
        &mut self,
        cx: &mut Context<'_>,
        mailbox: &mut Receiver,
        hooks: &mut ReadHooks,
    ) -> Poll<Step> {
        self.stalled = true;
        self.in_burst = false;
        self.burst = 0;
        let step = self.poll_others(cx, mailbox, hooks);
        if step.is_pending() && !self.stalled {
            // Room came back between the two looks; the socket's waker is not registered, so
            // come back at once rather than sleep.
            cx.waker().wake_by_ref();
        }
        step
    }

    fn poll_others(
        &mut self,
        cx: &mut Context<'_>,
        mailbox: &mut Receiver,
        hooks: &mut ReadHooks,
    ) -> Poll<Step> {
        if let Poll::Ready(c) = mailbox.poll_control(cx) {
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
        if self.stalled && hooks.poll_room(cx).is_ready() {
            self.stalled = false;
            self.heartbeat.resumed();
            if let Some(w) = &mut self.idle {
                w.resumed(self.shared.messages_in());
            }
        }
        // A silent peer is logged (and reported) by `fail`, like every other failure. While
        // reads are stalled the peer's frames may wait unread: no ping, no pong deadline.
        if !self.stalled
            && let Err(e) = self.heartbeat.poll(cx)
        {
            return Poll::Ready(Step::Failed(e));
        }
        if !self.stalled
            && let Some(w) = &mut self.idle
            && let Err(e) = w.poll(cx, self.shared.messages_in())
        {
            return Poll::Ready(Step::Failed(e));
        }
        match self.poll_writes(cx, mailbox) {
            Ok(()) => Poll::Pending,
            Err(e) => Poll::Ready(Step::Failed(e)),
        }
    }

    fn poll_writes(&mut self, cx: &mut Context<'_>, mailbox: &mut Receiver) -> Result<()> {
        // One look per write burst; the unlimited loop is compiled without the limiter's steps.
        if self.limiter.is_some() {
            self.poll_writes_as::<true>(cx, mailbox)
        } else {
            self.poll_writes_as::<false>(cx, mailbox)
        }
    }

    /// The write loop; `LIMITED`: a send rate limit is configured (`self.limiter` is set). A
    /// frame the limit does not allow yet goes back where it came from (the init messages or
    /// the send queue, first in line) and the loop ends with the limiter's timer armed.
    fn poll_writes_as<const LIMITED: bool>(
        &mut self,
        cx: &mut Context<'_>,
        mailbox: &mut Receiver,
    ) -> Result<()> {
        let mut written = 0;
        let mut now = None;
        while written < WRITE_BURST {
            match self.ws.poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Err(self.write_error(e)),
                Poll::Pending => break,
            }
            let mut ping_turn = true;
            if LIMITED
                && self.heartbeat.is_due()
                && let Some(lim) = self.limiter.as_deref_mut()
                && lim.count_pings
            {
                if lim.last_was_ping && (!self.priority.is_empty() || mailbox.has_write()) {
                    ping_turn = false;
                } else if lim.permit(cx, &mut now) {
                    lim.last_was_ping = true;
                } else {
                    break;
                }
            }
            if ping_turn && let Some(msg) = self.heartbeat.take_due(self.config.heartbeat()) {
                self.ws
                    .start_send(cx, msg)
                    .map_err(|e| ConnectionError::PingFailed(e.to_string()))?;
                self.heartbeat.sent();
                log::trace!("[{}] heartbeat sent", self.name);
                self.needs_flush = true;
                continue;
            }
            let (msg, init) = match self.priority.pop_front() {
                Some(m) => (m, true),
                None => match mailbox.poll_write(cx) {
                    Poll::Ready(m) => (m, false),
                    Poll::Pending => break,
                },
            };
            let (data, len) = (msg.is_text() || msg.is_binary(), msg.len());
            if LIMITED
                && let Some(lim) = self.limiter.as_deref_mut()
                && (data || (lim.count_pings && (msg.is_ping() || msg.is_pong())))
                && !lim.take_for_message(cx, &mut now)
            {
                if init {
                    self.priority.push_front(msg);
                } else {
                    mailbox.put_back(msg);
                }
                break;
            }
            self.unflushed += 1;
            if let Err(e) = self.ws.start_send(cx, msg) {
                return Err(self.write_error(e));
            }
            if data {
                self.shared.count_out(len);
            }
            self.needs_flush = true;
            written += 1;
        }
        if self.needs_flush {
            match self.ws.poll_flush(cx) {
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

    fn write_error(&mut self, e: WsError) -> ConnectionError {
        let n = std::mem::take(&mut self.unflushed);
        ConnectionError::WriteError(format!(
            "{e}; {n} message(s) accepted since the last flush may not have been sent"
        ))
    }

    /// Forgets a read stamp left on this thread by another socket, before this one is read
    /// outside the poll loop (the close handshake).
    pub(super) fn before_read(&self) {
        if self.stamps {
            crate::clock::clear_read();
        }
    }

    /// [`on_message`](Self::on_message) or [`on_stamped`](Self::on_stamped), by the option:
    /// for the paths outside the poll loop.
    pub(super) fn deliver(&mut self, msg: Message, hooks: &mut ReadHooks) {
        if self.stamps {
            self.on_stamped(msg, hooks);
        } else {
            self.on_message(msg, hooks);
        }
    }

    /// A frame with its receive time (see [`stamp_frame`]).
    #[inline]
    fn on_stamped(&mut self, msg: Message, hooks: &mut ReadHooks) {
        stamp_frame(&mut self.stamp, hooks);
        self.on_message(msg, hooks);
        hooks.set_receive_time(ReceiveTime::NONE);
    }

    /// Hands one received frame to the hooks and keeps the books.
    #[inline]
    pub(super) fn on_message(&mut self, msg: Message, hooks: &mut ReadHooks) {
        self.heartbeat.alive();
        let name = &*self.name;
        let event = match msg {
            Message::Text(t) => {
                self.shared.count_in(t.len());
                log::trace!("[{name}] text, {} bytes", t.len());
                return hooks.text(name, t);
            }
            Message::Binary(b) => {
                self.shared.count_in(b.len());
                log::trace!("[{name}] binary, {} bytes", b.len());
                if let Some(inf) = &mut self.inflater {
                    return inflate(name, inf, &b, hooks);
                }
                return hooks.binary(name, b);
            }
            Message::Ping(p) => {
                log::trace!("[{name}] ping");
                if let Some(lim) = self.limiter.as_deref_mut() {
                    lim.charge_auto_pong();
                }
                Event::Ping(p)
            }
            Message::Pong(p) => {
                if let Some(rtt) = self.heartbeat.rtt(&p) {
                    self.shared.set_rtt(rtt);
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
                log::info!("[{name}] peer sent close {code}");
                Event::Close(code, reason)
            }
            // Raw frames are never produced by reads.
            Message::Frame(_) => return,
        };
        hooks.dispatch(name, event);
    }
}

/// Gives the frame about to be delivered its receive time: that of the read made since
/// `clear_read` if one returned bytes (it completed the frame), else `stamp`, this socket's
/// last read's, which it updates. A free function: a frame read from the wire's buffer
/// borrows the wire while this runs.
#[inline]
fn stamp_frame(stamp: &mut ReceiveTime, hooks: &mut ReadHooks) {
    if let Some(t) = crate::clock::take_read() {
        *stamp = t;
    }
    hooks.set_receive_time(*stamp);
}

/// [`Session::on_message`] for a text or binary message read from the wire's buffer, which
/// it borrows: hence the session's fields one by one.
#[inline]
fn on_data(
    name: &str,
    heartbeat: &mut HeartbeatTimer,
    shared: &Shared,
    inflater: Option<&mut Inflater>,
    d: Data<'_>,
    hooks: &mut ReadHooks,
) {
    heartbeat.alive();
    let len = d.payload().len();
    shared.count_in(len);
    match d {
        Data::Text(..) => log::trace!("[{name}] text, {len} bytes"),
        Data::Binary(b, _) => {
            log::trace!("[{name}] binary, {len} bytes");
            if let Some(inf) = inflater {
                return inflate(name, inf, b, hooks);
            }
        }
    }
    hooks.data(name, d);
}

/// Delivers the inflated message, or reports why it could not be inflated: the message is not
/// delivered then (its compressed bytes mean nothing to a consumer expecting inflated ones),
/// but the error reaches `on_error` (or the event queue) in its place, and the connection goes
/// on. Out of line: it is the cold side of the binary branch.
#[inline(never)]
fn inflate(name: &str, inf: &mut Inflater, b: &[u8], hooks: &mut ReadHooks) {
    match inf.inflate(b) {
        Ok(out) => {
            log::trace!("[{name}] inflated {} to {} bytes", b.len(), out.len());
            hooks.binary(name, out);
        }
        Err(e) => {
            // Every failure reaches the consumer; the log gets the first and then one per
            // period, so a feed of corrupt frames does not flood it.
            match inf.warnings.allow() {
                Some(0) => log::warn!("[{name}] binary message of {} bytes: {e}", b.len()),
                Some(held) => log::warn!(
                    "[{name}] binary message of {} bytes: {e} ({held} more could not be \
                     inflated since the last warning)",
                    b.len()
                ),
                None => log::debug!("[{name}] binary message of {} bytes: {e}", b.len()),
            }
            hooks.dispatch(name, Event::Error(e));
        }
    }
}
