//! The manager: the registry of named connections, each kept alive by its own supervisor task
//! (see `supervisor.rs`). The map of names is behind a lock that is never held across an
//! `.await`, so one slow handshake never stalls calls about other connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::config::Config;
use crate::error::{ConnectionError, Result};
use crate::events::{EventQueue, EventStream, Sink};
use crate::handle::{ConnState, Link, Stats, channel};
use crate::hooks::ReadHooks;
use crate::limits;
use crate::poll_options::PollOptions;
use crate::queue::WakeRelay;
use crate::supervisor::{contained, supervise};

/// What to restart, sent through [`WsManager::restart_sender`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restart {
    /// The connection of this name.
    One(String),
    /// Every connection of the manager.
    All,
}

/// The one abstraction callers use: named WebSocket connections that stay connected.
///
/// `WsManager` is cheap to clone (clones share the same connections) and every method may be
/// called from any thread, including from inside a hook. It must be created inside a tokio
/// runtime (or given a handle to one): connection tasks run there.
#[derive(Clone)]
pub struct WsManager {
    inner: Arc<Inner>,
}

struct Inner {
    conns: RwLock<HashMap<Arc<str>, Entry>>,
    /// Tasks of connections already removed from the map but maybe still closing.
    closing: Mutex<Vec<Closing>>,
    shutting_down: AtomicBool,
    restart_tx: mpsc::UnboundedSender<Restart>,
    handle: Handle,
    /// Where the connections added with `add_polled` deliver. Empty, it holds no allocation.
    events: Arc<EventQueue>,
    /// The connect-attempt limit every connection of this manager shares.
    connect_limiter: Arc<crate::ratelimit::ConnectLimiter>,
    /// Takes the wakes of this manager's connections made outside every connection's poll
    /// (see [`with_outside_wakes`](WsManager::with_outside_wakes)).
    wake_outside: Option<Arc<dyn WakeRelay>>,
}

impl Drop for Inner {
    /// The last handle to the manager is gone: streams end once they took what is queued.
    fn drop(&mut self) {
        self.events.close();
    }
}

/// A connection removed by `request_close` whose task may still be closing.
struct Closing {
    name: Arc<str>,
    task: JoinHandle<()>,
    config: Config,
}

struct Entry {
    link: Link,
    task: JoinHandle<()>,
    config: Config,
}

impl std::fmt::Debug for WsManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.inner.conns.read().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("WsManager")
            .field("connections", &n)
            .finish_non_exhaustive()
    }
}

impl WsManager {
    /// A manager whose connections run on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime; use [`WsManager::with_handle`] there.
    pub fn new() -> Self {
        Self::with_handle(Handle::current())
    }

    /// A manager whose connections run on the runtime of `handle`.
    pub fn with_handle(handle: Handle) -> Self {
        Self::build(handle, None)
    }

    /// A manager whose connections run on the runtime of `handle`, where `relay` takes each
    /// wake of a connection's task made outside every connection's poll (a send, a request)
    /// instead of the task's waker: a driven manager's runtime only runs inside its caller's
    /// polls, and the relay holds such wakes until the next one.
    #[cfg(feature = "capi")]
    pub(crate) fn with_outside_wakes(handle: Handle, relay: Arc<dyn WakeRelay>) -> Self {
        Self::build(handle, Some(relay))
    }

    fn build(handle: Handle, wake_outside: Option<Arc<dyn WakeRelay>>) -> Self {
        let (restart_tx, restart_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            conns: RwLock::new(HashMap::new()),
            closing: Mutex::new(Vec::new()),
            shutting_down: AtomicBool::new(false),
            restart_tx,
            handle: handle.clone(),
            events: EventQueue::new(),
            connect_limiter: Arc::default(),
            wake_outside,
        });
        handle.spawn(restart_loop(Arc::downgrade(&inner), restart_rx));
        Self { inner }
    }

    /// Adds a connection and starts connecting it in the background; does not wait for the
    /// handshake (see [`wait_open`](Self::wait_open)).
    pub fn add(&self, name: &str, config: Config, hooks: ReadHooks) -> Result<()> {
        self.try_add(name, config, hooks).map_err(|(e, _)| e)
    }

    /// Adds a connection like [`add`](Self::add) whose events go to the manager's event queue
    /// instead of hooks: every event hooks would get (open, text, binary, ping, pong, close,
    /// error), with the connection's name, in arrival order per connection. Take them with
    /// [`events`](Self::events).
    ///
    /// The queue is bounded, in events ([`set_event_capacity`](Self::set_event_capacity)) and
    /// in payload bytes ([`set_event_byte_capacity`](Self::set_event_byte_capacity)): while it
    /// is full, polled connections stop reading their sockets until the poller takes events,
    /// so TCP slows the peers and nothing is dropped. Each connection may put one message
    /// beyond either capacity, and open and error events are never held back. While a connection waits
    /// for room its heartbeat does not time out (the answer may wait unread); a close of it
    /// then waits for room too, up to the close timeout.
    pub fn add_polled(&self, name: &str, config: Config) -> Result<()> {
        self.add_polled_with(name, config, PollOptions::new())
    }

    /// Adds a polled connection like [`add_polled`](Self::add_polled), with options on what
    /// else it queues (see [`PollOptions`]; the default is `add_polled`).
    pub fn add_polled_with(&self, name: &str, config: Config, options: PollOptions) -> Result<()> {
        let sink = Sink::new(self.inner.events.clone(), name);
        let hooks = ReadHooks::polled(sink, options.has_state_events());
        self.add(name, config, hooks)
    }

    /// The events of the connections added with [`add_polled`](Self::add_polled), as an
    /// async stream. Streams of one manager share its queue (each event goes to one of them);
    /// a stream ends once the manager shut down or every handle to it was dropped, and every
    /// queued event was taken.
    pub fn events(&self) -> EventStream {
        EventStream::new(self.inner.events.clone())
    }

    /// Sets how many events the manager's queue holds before polled connections stop reading
    /// (1 to 16,777,216; the default is [`DEFAULT_EVENT_CAPACITY`](crate::DEFAULT_EVENT_CAPACITY),
    /// 65,536). The queue grows on demand, so capacity costs memory only while events wait.
    /// May be changed at any time; a larger capacity lets waiting connections read at once.
    pub fn set_event_capacity(&self, capacity: usize) -> Result<()> {
        self.inner.events.set_capacity(capacity)
    }

    /// Sets how many payload bytes the manager's queue holds before polled connections stop
    /// reading (1 to 2^40; the default is [`DEFAULT_EVENT_BYTES`](crate::DEFAULT_EVENT_BYTES),
    /// 64 MiB): with large messages this, not the event capacity, bounds the queue's memory.
    /// A message counts until a poller takes the last event of the batch it arrived in (the
    /// events one read of its connection queued). May be changed at any time; a larger
    /// capacity lets waiting connections read at once.
    pub fn set_event_byte_capacity(&self, bytes: usize) -> Result<()> {
        self.inner.events.set_byte_capacity(bytes)
    }

    /// Payload bytes queued for a poller (see
    /// [`set_event_byte_capacity`](Self::set_event_byte_capacity) for how they are counted).
    pub fn pending_event_bytes(&self) -> usize {
        self.inner.events.pending_bytes()
    }

    /// How many events wait in the manager's queue for a poller.
    pub fn pending_events(&self) -> usize {
        self.inner.events.len()
    }

    /// The event queue, for the C ABI's poll.
    #[cfg(feature = "capi")]
    pub(crate) fn event_queue(&self) -> &Arc<EventQueue> {
        &self.inner.events
    }

    /// Like [`add`](Self::add), but hands the hooks back when it fails, so their `on_drop`
    /// can be disarmed (the C ABI promises no `on_drop` for a failed add).
    #[allow(clippy::result_large_err)] // Cold path; boxing would only move the cost.
    pub(crate) fn try_add(
        &self,
        name: &str,
        config: Config,
        hooks: ReadHooks,
    ) -> std::result::Result<(), (ConnectionError, ReadHooks)> {
        if let Err(e) = limits::connection_name(name).and_then(|()| self.check_running()) {
            return Err((e, hooks));
        }
        let mut conns = self.inner.write_conns();
        if conns.contains_key(name) {
            return Err((ConnectionError::AlreadyExists(name.to_string()), hooks));
        }
        let (link, mailbox) = channel(name, &config, self.inner.wake_outside.clone());
        let name: Arc<str> = name.into();
        let task = self.inner.handle.spawn(contained(
            name.clone(),
            link.shared.clone(),
            supervise(
                name.clone(),
                config.clone(),
                link.shared.clone(),
                mailbox,
                hooks,
                self.inner.connect_limiter.clone(),
            ),
        ));
        conns.insert(name, Entry { link, task, config });
        Ok(())
    }

    /// Limits the connection attempts of all this manager's connections together to at most
    /// `attempts` in any window of `per` (sliding), as exchanges limit them per IP (Binance:
    /// 300 per 5 minutes). Each URL dialled counts as one attempt, reconnects and restarts
    /// included; an attempt over the limit waits for its slot, in the order the attempts
    /// asked, so 1,000 connections dropped at once come back spread over the windows and none
    /// starves. The wait ends at once on close, restart or shutdown (the slot stays used).
    /// Default: no limit. May be called at any time: attempts that ask after the call follow
    /// the new limit, counted from the slots already handed out; attempts already waiting
    /// keep their slot. `attempts` 1 to 1,000,000, `per` 1 ms to one year; `ShuttingDown`
    /// after [`shutdown`](Self::shutdown).
    pub fn set_connect_rate_limit(&self, attempts: u32, per: Duration) -> Result<()> {
        self.check_running()?;
        let limit = limits::connect_rate(attempts, per)?;
        self.inner.connect_limiter.set(Some(limit));
        log::info!("connect rate limit: {attempts} attempts per {per:?}");
        Ok(())
    }

    /// Removes the connect-attempt limit ([`set_connect_rate_limit`](Self::set_connect_rate_limit)):
    /// later attempts go at once; attempts already waiting keep their slot.
    pub fn clear_connect_rate_limit(&self) {
        self.inner.connect_limiter.set(None);
        log::info!("connect rate limit removed");
    }

    /// A handle for sending to `name` without a look-up per message (the hot path of a
    /// high-rate sender). It stays valid until the connection is closed.
    pub fn link(&self, name: &str) -> Result<Link> {
        self.with_entry(name, |e| e.link.clone())
    }

    /// Queues a text message. Fails at once if the connection is not open, its queue is full,
    /// or the message is larger than the configured maximum.
    pub fn send_text(&self, name: &str, text: impl Into<Utf8Bytes>) -> Result<()> {
        self.send(name, Message::Text(text.into()))
    }

    /// Queues a binary message (same rules as [`send_text`](Self::send_text)).
    pub fn send_binary(&self, name: &str, data: impl Into<Bytes>) -> Result<()> {
        self.send(name, Message::Binary(data.into()))
    }

    /// Queues a ping frame (at most 125 bytes of payload).
    pub fn send_ping(&self, name: &str, data: impl Into<Bytes>) -> Result<()> {
        let data = data.into();
        limits::ping_payload(data.len())?;
        self.send(name, Message::Ping(data))
    }

    fn send(&self, name: &str, msg: Message) -> Result<()> {
        self.check_running()?;
        let conns = self.inner.read_conns();
        match conns.get(name) {
            Some(e) => e.link.send(msg),
            None => Err(ConnectionError::ConnectionNotFound(name.to_string())),
        }
    }

    /// Adds a live subscription to `name` under `key`, a name the caller chooses. `msg` (text
    /// or binary) is sent now when the connection is open, and on every later socket (after a
    /// reconnect, a [`restart`](Self::restart)) after the init messages, with the other
    /// subscriptions in the order they were added. The set lives as long as the connection and
    /// ends with [`close`](Self::close).
    ///
    /// **Exactly once per socket:** every socket gets each subscription that exists while it
    /// is open exactly once: the socket's replay and the message sent "now" never both reach
    /// the same socket, whether the add races the connect, a reconnect or a restart. A message
    /// added while open goes out before messages queued earlier by `send_*` that are still
    /// waiting.
    ///
    /// Fails, changing nothing, with `SubscriptionExists` (the key is taken), `InvalidArgument`
    /// (an empty key or one over 256 bytes, a message that is not text or binary),
    /// `MessageTooLarge`, `QueueFull` (open, and the send queue is full), `ConnectionNotFound`
    /// and `ShuttingDown`. May be called from any thread and from inside a hook, the
    /// connection's own included.
    pub fn subscribe(&self, name: &str, key: &str, msg: Message) -> Result<()> {
        self.with_entry(name, |e| e.link.subscribe(key, msg))?
    }

    /// Removes the subscription `key` of `name`: later sockets no longer get it. `msg`, an
    /// unsubscribe message, is sent when a socket is open (after its subscribe message);
    /// when none is open, no socket has the subscription, nothing needs undoing, and `msg` is
    /// not sent. Returns whether `msg` was queued; a socket that ends before writing it does
    /// not need it either (the next one never gets the subscription). Fails, changing nothing, with
    /// `SubscriptionNotFound`, `MessageTooLarge`, `InvalidArgument`, `QueueFull` (only with a
    /// message), `ConnectionNotFound` and `ShuttingDown`. Callable from hooks too.
    pub fn unsubscribe(&self, name: &str, key: &str, msg: Option<Message>) -> Result<bool> {
        self.with_entry(name, |e| e.link.unsubscribe(key, msg))?
    }

    /// The keys of the subscriptions of `name`, in the order added (the order of the replay).
    pub fn subscriptions(&self, name: &str) -> Result<Vec<String>> {
        self.with_entry(name, |e| e.link.subscriptions())
    }

    /// Closes `name` cleanly and connects it again at once (no backoff).
    pub fn restart(&self, name: &str) -> Result<()> {
        self.check_running()?;
        self.with_entry(name, |e| e.link.restart())?
    }

    /// Rotates `name` to a fresh socket without a gap in delivery; see [`Link::rotate`] for
    /// what happens to messages and sends, the [`Event::Rotated`](crate::Event::Rotated) that
    /// marks the switch, the failure path and when a request is refused or ignored. Returns at
    /// once; allowed from inside a hook.
    pub fn rotate(&self, name: &str) -> Result<()> {
        self.check_running()?;
        self.with_entry(name, |e| e.link.rotate())?
    }

    /// Restarts every connection.
    pub fn restart_all(&self) -> Result<()> {
        self.check_running()?;
        for e in self.inner.read_conns().values() {
            // A connection that is just ending cannot be restarted; that is not an error here.
            let _ = e.link.restart();
        }
        Ok(())
    }

    /// A channel through which restarts can be requested from anywhere (another task, a
    /// signal handler, a hook). Requests for unknown names are logged and ignored.
    pub fn restart_sender(&self) -> mpsc::UnboundedSender<Restart> {
        self.inner.restart_tx.clone()
    }

    /// Closes `name`: sends a close frame with `code` and `reason`, waits (bounded by the
    /// configured close timeout) for the peer's reply, stops the connection and forgets the name.
    /// When this returns, no hook of the connection runs any more.
    ///
    /// Do not await this inside one of the connection's own hooks (the hook would wait for
    /// itself); use [`request_close`](Self::request_close) there.
    pub async fn close(&self, name: &str, code: u16, reason: &str) -> Result<()> {
        limits::close(code, reason)?;
        let entry = self.take_entry(name)?;
        let _ = entry.link.close(code, reason);
        join_bounded(name, entry.task, &entry.config).await;
        Ok(())
    }

    /// Starts closing `name` like [`close`](Self::close) and returns at once; safe inside
    /// hooks. The close completes in the background: frames arriving during the close
    /// handshake still reach the hooks, then `on_drop` runs. [`shutdown`](Self::shutdown)
    /// waits for such closes too.
    pub fn request_close(&self, name: &str, code: u16, reason: &str) -> Result<()> {
        limits::close(code, reason)?;
        let entry = self.take_entry(name)?;
        let _ = entry.link.close(code, reason);
        let mut closing = self.inner.lock_closing();
        // Finished closes are forgotten here, so a program that closes from hooks all day
        // does not accumulate them.
        closing.retain(|c| !c.task.is_finished());
        closing.push(Closing {
            name: name.into(),
            task: entry.task,
            config: entry.config,
        });
        Ok(())
    }

    /// The lifecycle state of `name`.
    pub fn state(&self, name: &str) -> Result<ConnState> {
        self.with_entry(name, |e| e.link.state())
    }

    /// The counters of `name`.
    pub fn stats(&self, name: &str) -> Result<Stats> {
        self.with_entry(name, |e| e.link.stats())
    }

    /// Why `name` last dropped, `None` when it never did (see [`Link::last_disconnect`]).
    pub fn last_disconnect(&self, name: &str) -> Result<Option<ConnectionError>> {
        self.with_entry(name, |e| e.link.last_disconnect())
    }

    /// Names of all connections, in no particular order.
    pub fn names(&self) -> Vec<String> {
        self.inner
            .read_conns()
            .keys()
            .map(|k| k.to_string())
            .collect()
    }

    /// Waits until `name` is open. Fails with `Timeout` when `within` passes first, and with
    /// `ConnectionDropped` when the connection stops for good first; either message ends with
    /// why the last connect attempt failed, if one did (refused, DNS, TLS, an HTTP status).
    pub async fn wait_open(&self, name: &str, within: Duration) -> Result<()> {
        let shared = self.with_entry(name, |e| e.link.shared.clone())?;
        let deadline = Instant::now() + within;
        let reached = shared
            .wait_for(deadline, |s| {
                matches!(s, ConnState::Open | ConnState::Closed)
            })
            .await;
        let cause = match shared.last_failure() {
            Some(e) => format!(" (last attempt: {e})"),
            None => String::new(),
        };
        match reached {
            Some(ConnState::Open) => Ok(()),
            Some(_) => Err(ConnectionError::ConnectionDropped(format!(
                "{name} stopped before it opened{cause}"
            ))),
            None => Err(ConnectionError::Timeout(format!(
                "{name} did not open within {within:?}{cause}"
            ))),
        }
    }

    /// Closes every connection (code 1001, "going away") and waits for all of them, each bounded
    /// by its close timeout. Later calls on the manager fail with `ShuttingDown`.
    pub async fn shutdown(&self) {
        // A second call still waits for whatever the first left closing.
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        // Connections waiting for room in the event queue must not hold up their closes.
        self.inner.events.stop_backpressure();
        let entries: Vec<(Arc<str>, Entry)> = self.inner.write_conns().drain().collect();
        log::info!(
            "manager shutting down: closing {} connection(s)",
            entries.len()
        );
        let mut waits = Vec::with_capacity(entries.len());
        for (name, entry) in entries {
            let _ = entry.link.close(1001, "going away");
            waits.push(async move { join_bounded(&name, entry.task, &entry.config).await });
        }
        futures_util::future::join_all(waits).await;
        let rest: Vec<Closing> = std::mem::take(&mut *self.inner.lock_closing());
        let waits = rest
            .into_iter()
            .map(|c| async move { join_bounded(&c.name, c.task, &c.config).await });
        futures_util::future::join_all(waits).await;
        self.inner.events.close();
    }

    /// Refuses every later call with `ShuttingDown`, without waiting for anything.
    pub(crate) fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    fn check_running(&self) -> Result<()> {
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            return Err(ConnectionError::ShuttingDown);
        }
        Ok(())
    }

    fn with_entry<T>(&self, name: &str, f: impl FnOnce(&Entry) -> T) -> Result<T> {
        self.check_running()?;
        match self.inner.read_conns().get(name) {
            Some(e) => Ok(f(e)),
            None => Err(self.not_found(name)),
        }
    }

    fn take_entry(&self, name: &str) -> Result<Entry> {
        self.check_running()?;
        match self.inner.write_conns().remove(name) {
            Some(e) => Ok(e),
            None => Err(self.not_found(name)),
        }
    }

    fn not_found(&self, name: &str) -> ConnectionError {
        if self.is_shut_down() {
            ConnectionError::ShuttingDown
        } else {
            ConnectionError::ConnectionNotFound(name.to_string())
        }
    }
}

impl Default for WsManager {
    fn default() -> Self {
        Self::new()
    }
}

impl Inner {
    // A poisoned lock only means a panic elsewhere while it was held; the map itself is always
    // consistent (single inserts and removes), so go on with it.
    fn read_conns(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Entry>> {
        self.conns.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write_conns(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Entry>> {
        self.conns.write().unwrap_or_else(|p| p.into_inner())
    }
    fn lock_closing(&self) -> std::sync::MutexGuard<'_, Vec<Closing>> {
        self.closing.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Waits for a connection task to end. The close handshake inside is bounded already; the
/// extra second covers a hook that is still running. Past that the task is aborted (it stops at
/// its next await point, never inside a hook) and still awaited, so no hook runs after this.
async fn join_bounded(name: &str, mut task: JoinHandle<()>, config: &Config) {
    let bound = config.close_timeout() + Duration::from_secs(1);
    if timeout(bound, &mut task).await.is_err() {
        log::warn!("[{name}] did not stop within {bound:?}; aborting it");
        task.abort();
        let _ = task.await;
    }
}

async fn restart_loop(inner: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Restart>) {
    while let Some(req) = rx.recv().await {
        let Some(inner) = inner.upgrade() else { break };
        let mgr = WsManager { inner };
        let result = match &req {
            Restart::One(name) => mgr.restart(name),
            Restart::All => mgr.restart_all(),
        };
        if let Err(e) = result {
            log::warn!("restart request {req:?} failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the C ABI's free from inside a callback relies on: the manager refuses every later
    /// call at once, before the shutdown itself (on another thread) has begun.
    #[test]
    fn after_begin_shutdown_every_call_is_refused_at_once() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mgr = WsManager::with_handle(rt.handle().clone());
        assert!(!mgr.is_shut_down());
        mgr.begin_shutdown();
        assert!(mgr.is_shut_down());
        let config = Config::builder("ws://127.0.0.1:9/").build().unwrap();
        let refused =
            |r: Result<()>| assert!(matches!(r, Err(ConnectionError::ShuttingDown)), "{r:?}");
        refused(mgr.add("a", config, ReadHooks::new()));
        refused(mgr.send_text("a", "x"));
        refused(mgr.restart_all());
        assert!(mgr.names().is_empty());
    }
}
