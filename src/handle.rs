//! The handles of a connection: its lifecycle state, its counters and the [`Link`] that sends to
//! it. They are shared between the connection's task (the only writer of state and counters)
//! and everyone who talks to it (the manager, hooks, other threads).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::Message;

use crate::config::Config;
use crate::error::{ConnectionError, Result};
use crate::queue::{self, Control, SendError, SubError};

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
///
/// Later versions add counters (`rotations` was added this way), so it is made by the library
/// (or `Default`) only, never by a struct literal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Text and binary messages received.
    pub messages_in: u64,
    /// Payload bytes of those messages as they came off the wire (before inflating, for a
    /// connection with [`inflate`](crate::ConfigBuilder::inflate)).
    pub bytes_in: u64,
    /// Text and binary messages written to the socket (init messages included).
    pub messages_out: u64,
    /// Payload bytes of those messages.
    pub bytes_out: u64,
    /// Successful connects after the first one.
    pub reconnects: u64,
    /// Round-trip time of the last answered WebSocket ping.
    pub last_rtt: Option<Duration>,
    /// Which URL the connection uses or last used: 0 for the main one, `i` for the `i`-th
    /// [`fallback_url`](crate::ConfigBuilder::fallback_url).
    pub endpoint: usize,
    /// Completed rotations: switches to a fresh socket made by `rotate` or the maximum
    /// connection age.
    pub rotations: u64,
    /// Wall-clock time the current socket opened; `None` while the connection is not open.
    pub connected_since: Option<SystemTime>,
    /// Time spent not open after having been open, summed over every completed outage (the
    /// outage in progress is not included; the first connect is not an outage).
    pub down_time: Duration,
}

/// A change of a connection's lifecycle state, as given to
/// [`ReadHooks::on_state`](crate::ReadHooks::on_state).
///
/// The gap fields (`attempts`, `down_for`) are set on every [`ConnState::Open`] after the first
/// one, so a consumer knows that it missed messages and for how long.
///
/// Later versions add fields (`endpoint` and `last_message_at` were added this way), so it is
/// made by the library only, never by a struct literal.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateChange {
    /// The state entered.
    pub state: ConnState,
    /// The failure that caused the change, when one did: for `Reconnecting` the error that
    /// dropped the connection or failed the connect; for `Closed` after giving up,
    /// `RetriesExhausted`. `None` for changes the caller asked for and for `Open`.
    pub reason: Option<crate::ConnectionError>,
    /// On a re-open: connect attempts since the drop, this successful one included (at least
    /// 1). 0 otherwise.
    pub attempts: u32,
    /// On a re-open: how long the connection was not open. `None` otherwise.
    pub down_for: Option<Duration>,
    /// On every `Open`: which URL it opened on (0 the main URL, `i` the `i`-th
    /// [`fallback_url`](crate::ConfigBuilder::fallback_url)). 0 otherwise.
    pub endpoint: usize,
    /// On a re-open: when the last data message (text or binary) before the drop was
    /// received (wall clock), so a consumer knows from when to resynchronise; `None` when the
    /// connection never received one, and on every other change. Read once per poll of the
    /// connection's task that delivered data, never once per message: it is at most that
    /// poll's length (microseconds) after the message's read. With
    /// [`receive_timestamps`](crate::ConfigBuilder::receive_timestamps) it is the receive
    /// time of the last frame of that poll.
    pub last_message_at: Option<std::time::SystemTime>,
}

impl StateChange {
    /// A change without gap information.
    pub(crate) fn to(state: ConnState, reason: Option<crate::ConnectionError>) -> Self {
        Self {
            state,
            reason,
            attempts: 0,
            down_for: None,
            endpoint: 0,
            last_message_at: None,
        }
    }
}

/// State shared between a connection's task and the handles that talk to it. Every counter has
/// one writer (the connection task), so updates are plain loads and stores, not read-modify-write.
#[derive(Debug)]
pub(crate) struct Shared {
    state: AtomicU8,
    state_changed: Notify,
    /// Set by a control request so that a connection in a read burst looks at it soon.
    pub(crate) control_pending: AtomicBool,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    reconnects: AtomicU64,
    endpoint: AtomicUsize,
    rotations: AtomicU64,
    /// Micro-seconds + 1; 0 means never measured.
    rtt_us: AtomicU64,
    /// Why the last connect attempt failed, for waiters that would otherwise only learn that
    /// the connection did not open. Written on the cold path only.
    last_failure: Mutex<Option<ConnectionError>>,
    /// Nanoseconds since the Unix epoch when the current socket opened; 0 while not open.
    connected_since_ns: AtomicU64,
    /// Sum of the completed outages in nanoseconds.
    down_ns: AtomicU64,
    /// Why the connection last left the open state (`None` when that was the caller's doing
    /// or it never dropped). Written on the cold path only.
    last_disconnect: Mutex<Option<ConnectionError>>,
    /// Wall-clock nanoseconds since the Unix epoch of the last poll that delivered a data
    /// message; 0 before the first.
    last_data_ns: AtomicU64,
}

#[inline]
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(by), Relaxed);
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicU8::new(ConnState::Connecting as u8),
            state_changed: Notify::new(),
            control_pending: AtomicBool::new(false),
            messages_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            endpoint: AtomicUsize::new(0),
            rotations: AtomicU64::new(0),
            rtt_us: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            connected_since_ns: AtomicU64::new(0),
            down_ns: AtomicU64::new(0),
            last_disconnect: Mutex::new(None),
            last_data_ns: AtomicU64::new(0),
        }
    }

    /// Records that a socket opened now (wall clock), after an outage of `down_for` if any.
    pub(crate) fn mark_open(&self, down_for: Option<Duration>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| (d.as_nanos() as u64).max(1));
        self.connected_since_ns.store(now, Relaxed);
        if let Some(d) = down_for {
            bump(&self.down_ns, d.as_nanos() as u64);
        }
    }

    /// Records that the open socket went away, and why (`None`: the caller's doing).
    pub(crate) fn mark_down(&self, reason: Option<ConnectionError>) {
        self.connected_since_ns.store(0, Relaxed);
        if reason.is_some() {
            *self
                .last_disconnect
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = reason;
        }
    }

    /// Why the connection last dropped, if it ever did.
    pub(crate) fn last_disconnect(&self) -> Option<ConnectionError> {
        self.last_disconnect
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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

    #[inline]
    pub(crate) fn count_in(&self, bytes: usize) {
        bump(&self.messages_in, 1);
        bump(&self.bytes_in, bytes as u64);
    }

    /// Records when data was last delivered (wall-clock ns since the Unix epoch; 0 is none).
    pub(crate) fn note_data(&self, wall_ns: u64) {
        self.last_data_ns.store(wall_ns, Relaxed);
    }

    /// When data was last delivered, if ever.
    pub(crate) fn last_data_at(&self) -> Option<SystemTime> {
        match self.last_data_ns.load(Relaxed) {
            0 => None,
            ns => Some(UNIX_EPOCH + Duration::from_nanos(ns)),
        }
    }

    /// Data messages received so far: the data watchdog compares it between its checks.
    pub(crate) fn messages_in(&self) -> u64 {
        self.messages_in.load(Relaxed)
    }

    #[inline]
    pub(crate) fn count_out(&self, bytes: usize) {
        bump(&self.messages_out, 1);
        bump(&self.bytes_out, bytes as u64);
    }

    pub(crate) fn count_rotation(&self) {
        bump(&self.rotations, 1);
    }

    /// Adds the traffic counters of `other` (a rotation's new socket, counted apart until the
    /// switch) to these.
    pub(crate) fn absorb(&self, other: &Shared) {
        bump(&self.messages_in, other.messages_in.load(Relaxed));
        bump(&self.bytes_in, other.bytes_in.load(Relaxed));
        bump(&self.messages_out, other.messages_out.load(Relaxed));
        bump(&self.bytes_out, other.bytes_out.load(Relaxed));
        let rtt = other.rtt_us.load(Relaxed);
        if rtt > 0 {
            self.rtt_us.store(rtt, Relaxed);
        }
    }

    /// Records which URL the connection opened on.
    pub(crate) fn set_endpoint(&self, i: usize) {
        self.endpoint.store(i, Relaxed);
    }

    pub(crate) fn set_rtt(&self, rtt: Duration) {
        self.rtt_us.store(rtt.as_micros() as u64 + 1, Relaxed);
    }

    /// Remembers why the last connect attempt failed (`None` once one succeeded).
    pub(crate) fn set_last_failure(&self, e: Option<ConnectionError>) {
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    /// Why the last connect attempt failed, if it did.
    pub(crate) fn last_failure(&self) -> Option<ConnectionError> {
        self.last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn stats(&self) -> Stats {
        let rtt = self.rtt_us.load(Relaxed);
        Stats {
            messages_in: self.messages_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            endpoint: self.endpoint.load(Relaxed),
            rotations: self.rotations.load(Relaxed),
            last_rtt: (rtt > 0).then(|| Duration::from_micros(rtt - 1)),
            connected_since: match self.connected_since_ns.load(Relaxed) {
                0 => None,
                ns => Some(UNIX_EPOCH + Duration::from_nanos(ns)),
            },
            down_time: Duration::from_nanos(self.down_ns.load(Relaxed)),
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

/// The sending side of a connection: cloneable and cheap, usable from any thread and from
/// hooks. Get one from [`WsManager::link`](crate::WsManager::link) (or
/// [`Connection::new`](crate::Connection::new)) to send without a name look-up per message.
#[derive(Debug, Clone)]
pub struct Link {
    tx: queue::Sender,
    pub(crate) shared: Arc<Shared>,
    max_message_size: usize,
    name: Arc<str>,
}

/// Creates the queue of a connection named `name`: the link that sends into it, and the
/// receiving end that outlives single sockets, so queued messages survive a reconnect.
/// `outside` takes the wakes made outside every connection's poll (a driven manager's).
pub(crate) fn channel(
    name: &str,
    config: &Config,
    outside: Option<Arc<dyn queue::WakeRelay>>,
) -> (Link, queue::Receiver) {
    let (tx, rx) = queue::queue(config.send_queue_capacity(), outside);
    (
        Link {
            tx,
            shared: Arc::new(Shared::new()),
            max_message_size: config.max_message_size(),
            name: name.into(),
        },
        rx,
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
            ConnState::Closed | ConnState::Closing => return Err(self.closed()),
            s => {
                return Err(ConnectionError::ConnectionDropped(format!(
                    "{} is not open ({s:?})",
                    self.name
                )));
            }
        }
        self.tx.try_send(msg).map_err(|e| match e {
            SendError::Full => ConnectionError::QueueFull(self.name.to_string()),
            SendError::Closed => self.closed(),
        })
    }

    /// Adds a live subscription under `key` (see
    /// [`WsManager::subscribe`](crate::WsManager::subscribe)).
    pub fn subscribe(&self, key: &str, msg: Message) -> Result<()> {
        crate::limits::subscription_key(key)?;
        self.check_data(&msg, "a subscribe message")?;
        self.tx
            .subscribe(key, msg)
            .map_err(|e| self.sub_error(e, key))?;
        // The key only: the message may carry a token.
        log::debug!("[{}] subscription {key:?} added", self.name);
        Ok(())
    }

    /// Removes the live subscription `key`, sending `msg` if a socket is open (see
    /// [`WsManager::unsubscribe`](crate::WsManager::unsubscribe)). Returns whether `msg` was
    /// queued.
    pub fn unsubscribe(&self, key: &str, msg: Option<Message>) -> Result<bool> {
        if let Some(m) = &msg {
            self.check_data(m, "an unsubscribe message")?;
        }
        let sent = self
            .tx
            .unsubscribe(key, msg)
            .map_err(|e| self.sub_error(e, key))?;
        log::debug!("[{}] subscription {key:?} removed", self.name);
        Ok(sent)
    }

    /// The keys of the live subscriptions, in the order added.
    pub fn subscriptions(&self) -> Vec<String> {
        self.tx.subscriptions()
    }

    fn check_data(&self, msg: &Message, what: &str) -> Result<()> {
        if !(msg.is_text() || msg.is_binary()) {
            return Err(ConnectionError::InvalidArgument(format!(
                "{what} must be text or binary"
            )));
        }
        let size = msg.len();
        if size > self.max_message_size {
            return Err(ConnectionError::MessageTooLarge {
                size,
                max: self.max_message_size,
            });
        }
        Ok(())
    }

    fn sub_error(&self, e: SubError, key: &str) -> ConnectionError {
        match e {
            SubError::Full => ConnectionError::QueueFull(self.name.to_string()),
            SubError::Closed => self.closed(),
            SubError::Exists => ConnectionError::SubscriptionExists(key.to_string()),
            SubError::NotFound => ConnectionError::SubscriptionNotFound(key.to_string()),
        }
    }

    /// Asks the connection to close cleanly and connect again at once.
    pub fn restart(&self) -> Result<()> {
        self.control(Control::Restart)
    }

    /// Asks the connection to rotate to a fresh socket without a gap, and returns at once
    /// (allowed from inside a hook). The connection dials a second socket with the same
    /// configuration (the URLs in the same order as a reconnect), sends it the init messages,
    /// and switches delivery to it once it has delivered its first text or binary message;
    /// then [`Event::Rotated`](crate::Event::Rotated) fires and the old socket is closed with
    /// 1000. Until the switch both sockets deliver to the same hooks, one message at a time,
    /// each socket's in order: the same message may come twice (once from each socket), none
    /// is lost. Sends go to the old socket until the switch and to the new one after it; none
    /// is lost or sent twice. Heartbeats run on both.
    ///
    /// If the new socket fails (connect, upgrade, closes before its first message, or no
    /// message within the connect timeout), the failure goes to `on_error` and the old socket
    /// keeps running. Refused with `ConnectionDropped` while the connection is not open
    /// (connecting, reconnecting, closing, closed). A rotation requested while one is in
    /// progress, or while another request (restart, close) is pending, is ignored. A
    /// [`Connection`](crate::Connection) the caller runs over its own stream cannot dial, and
    /// ignores it (logged).
    pub fn rotate(&self) -> Result<()> {
        match self.shared.state() {
            ConnState::Open => self.control(Control::Rotate),
            ConnState::Closed | ConnState::Closing => Err(self.closed()),
            s => Err(ConnectionError::ConnectionDropped(format!(
                "{} is not open ({s:?})",
                self.name
            ))),
        }
    }

    /// Asks the connection to close for good and returns at once; the connection's task ends
    /// after the close handshake (bounded by the close timeout).
    pub fn close(&self, code: u16, reason: &str) -> Result<()> {
        self.control(Control::Close {
            code,
            reason: reason.to_string(),
        })
    }

    fn control(&self, c: Control) -> Result<()> {
        self.tx.control(c).map_err(|_| self.closed())?;
        self.shared.control_pending.store(true, Relaxed);
        Ok(())
    }

    fn closed(&self) -> ConnectionError {
        ConnectionError::ConnectionDropped(format!("{} is closed", self.name))
    }

    /// Current lifecycle state.
    pub fn state(&self) -> ConnState {
        self.shared.state()
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Why the connection last dropped (the failure or the peer's close that ended an open
    /// socket), `None` when it never did. Closes and restarts the caller asked for do not count.
    pub fn last_disconnect(&self) -> Option<ConnectionError> {
        self.shared.last_disconnect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_as_it_was_set() {
        let shared = Shared::new();
        assert_eq!(shared.state(), ConnState::Connecting);
        for s in [
            ConnState::Open,
            ConnState::Reconnecting,
            ConnState::Closing,
            ConnState::Closed,
            ConnState::Connecting,
        ] {
            shared.set_state(s);
            assert_eq!(shared.state(), s);
        }
    }

    #[test]
    fn the_round_trip_time_reads_back_to_the_microsecond_zero_included() {
        let shared = Shared::new();
        assert_eq!(shared.stats().last_rtt, None, "measured before any pong");
        shared.set_rtt(Duration::from_micros(1500));
        assert_eq!(shared.stats().last_rtt, Some(Duration::from_micros(1500)));
        // A pong within the same microsecond is a measurement too, not "never measured".
        shared.set_rtt(Duration::from_nanos(300));
        assert_eq!(shared.stats().last_rtt, Some(Duration::ZERO));
    }

    fn link(max_message_size: usize) -> (Link, queue::Receiver) {
        let c = Config::builder("ws://h/")
            .max_message_size(max_message_size)
            .send_queue_capacity(2)
            .build()
            .unwrap();
        channel("feed", &c, None)
    }

    fn refused(r: Result<()>) -> String {
        match r {
            Err(e) => e.to_string(),
            Ok(()) => panic!("accepted"),
        }
    }

    #[test]
    fn a_link_queues_only_while_open_within_the_size_limit_and_the_queue() {
        let (l, mut rx) = link(4);
        let not_open = ConnectionError::ConnectionDropped("feed is not open (Connecting)".into());
        assert_eq!(refused(l.send(Message::text("a"))), not_open.to_string());
        l.shared.set_state(ConnState::Reconnecting);
        assert!(refused(l.send(Message::text("a"))).contains("feed is not open (Reconnecting)"));
        l.shared.set_state(ConnState::Open);
        // A message exactly as large as the limit is accepted.
        l.send(Message::text("abcd")).unwrap();
        assert!(matches!(
            l.send(Message::text("abcde")),
            Err(ConnectionError::MessageTooLarge { size: 5, max: 4 })
        ));
        l.send(Message::binary(vec![1u8])).unwrap();
        assert!(matches!(
            l.send(Message::text("x")),
            Err(ConnectionError::QueueFull(n)) if n == "feed"
        ));
        assert_eq!(rx.try_write(), Some(Message::text("abcd")));
        for s in [ConnState::Closing, ConnState::Closed] {
            l.shared.set_state(s);
            assert!(
                refused(l.send(Message::text("a"))).contains("feed is closed"),
                "{s:?}"
            );
        }
        l.shared.set_state(ConnState::Open);
        drop(rx);
        assert!(refused(l.send(Message::text("a"))).contains("feed is closed"));
    }

    #[test]
    fn restart_and_close_reach_the_connection_and_flag_it_mid_burst() {
        let (l, mut rx) = link(4);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(!l.shared.control_pending.load(Relaxed));
        l.restart().unwrap();
        assert!(l.shared.control_pending.load(Relaxed));
        assert_eq!(
            rx.poll_control(&mut cx),
            std::task::Poll::Ready(Some(Control::Restart))
        );
        l.close(4000, "bye").unwrap();
        assert_eq!(
            rx.poll_control(&mut cx),
            std::task::Poll::Ready(Some(Control::Close {
                code: 4000,
                reason: "bye".into()
            }))
        );
        drop(rx);
        assert!(refused(l.restart()).contains("feed is closed"));
        assert!(refused(l.close(1000, "")).contains("feed is closed"));
    }

    #[test]
    fn counters_add_up_and_read_back_through_the_link() {
        let (l, _rx) = link(4);
        let shared = &l.shared;
        shared.count_in(3);
        shared.count_in(4);
        shared.count_out(10);
        shared.count_reconnect();
        shared.count_reconnect();
        shared.set_endpoint(2);
        assert_eq!(
            l.stats(),
            Stats {
                messages_in: 2,
                bytes_in: 7,
                messages_out: 1,
                bytes_out: 10,
                reconnects: 2,
                last_rtt: None,
                endpoint: 2,
                ..Stats::default()
            }
        );
        shared.set_state(ConnState::Closing);
        assert_eq!(l.state(), ConnState::Closing);
    }

    #[test]
    fn the_last_connect_failure_is_kept_until_a_connect_succeeds() {
        let shared = Shared::new();
        assert!(shared.last_failure().is_none());
        shared.set_last_failure(Some(ConnectionError::ConnectFailed("refused".into())));
        assert!(matches!(
            shared.last_failure(),
            Some(ConnectionError::ConnectFailed(m)) if m == "refused"
        ));
        shared.set_last_failure(None);
        assert!(shared.last_failure().is_none());
    }

    #[tokio::test]
    async fn wait_for_sees_a_change_made_while_it_waits_and_gives_up_at_its_deadline() {
        let shared = Arc::new(Shared::new());
        let setter = shared.clone();
        let task = tokio::spawn(async move {
            tokio::task::yield_now().await;
            setter.set_state(ConnState::Reconnecting);
            tokio::task::yield_now().await;
            setter.set_state(ConnState::Open);
        });
        let limit = Instant::now() + Duration::from_secs(5);
        let got = shared.wait_for(limit, |s| s == ConnState::Open).await;
        assert_eq!(got, Some(ConnState::Open));
        assert!(
            Instant::now() < limit,
            "woken by the deadline, not the change"
        );
        task.await.unwrap();
        // Already true: no wait at all.
        let got = shared.wait_for(limit, |s| s == ConnState::Open).await;
        assert_eq!(got, Some(ConnState::Open));
        let start = Instant::now();
        let short = start + Duration::from_millis(30);
        assert_eq!(
            shared.wait_for(short, |s| s == ConnState::Closed).await,
            None
        );
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
