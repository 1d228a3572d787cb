//! The event queue: events without callbacks.
//!
//! A connection added with [`WsManager::add_polled`](crate::WsManager::add_polled) hands its
//! events to a [`Sink`] in place of hooks: the sink sits behind the same [`ReadHooks`] calls as
//! callbacks do, so the session has one dispatch point whichever way its events go. The sink
//! appends each event, with the connection's name, to the manager's one bounded queue, which
//! the caller empties in batches: [`EventStream`] in Rust, `kh_manager_poll` in C.
//!
//! Backpressure, never loss: a connection looks for room in the queue before it reads the next
//! frame from its socket. When the queue is full it stops reading (its task registers its waker
//! here and sleeps; no runtime thread is blocked), the kernel's receive buffer fills and TCP
//! slows the peer. The poller wakes the waiting connections when it frees room.
//!
//! [`ReadHooks`]: crate::ReadHooks

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::clock::ReceiveTime;
use crate::error::Result;
use crate::hooks::Event;
use crate::limits;

/// The capacity of a manager's event queue unless set with
/// [`WsManager::set_event_capacity`](crate::WsManager::set_event_capacity).
pub const DEFAULT_EVENT_CAPACITY: usize = 65_536;

/// Events an [`EventStream`] takes from the queue under one lock.
const STREAM_BATCH: usize = 256;

/// A queue that grew past this while a poller was slow gives its memory back once emptied.
const SHRINK_ABOVE: usize = 4096;

/// A connection's name as the queue hands it out: shared by every event of the connection
/// (one reference count per event, no copy) and stored with a trailing NUL, so the C ABI can
/// lend it as a C string as it is.
#[derive(Clone)]
pub(crate) struct Name(Arc<str>);

impl Name {
    fn new(name: &str) -> Self {
        // Names are refused with a NUL in them (`limits::connection_name`) before this.
        Self(format!("{name}\0").into())
    }

    fn as_str(&self) -> &str {
        &self.0[..self.0.len() - 1]
    }

    /// The NUL-terminated name, valid as long as this `Name` is.
    #[cfg(feature = "capi")]
    pub(crate) fn as_c_ptr(&self) -> *const std::ffi::c_char {
        self.0.as_ptr().cast()
    }
}

/// One event of a connection added with
/// [`WsManager::add_polled`](crate::WsManager::add_polled), with the connection's name.
pub struct ConnEvent {
    name: Name,
    event: Event,
    /// When it was received (frames of connections with receive timestamps), else none.
    at: ReceiveTime,
}

impl ConnEvent {
    /// The name of the connection the event happened on.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// What happened.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// What happened, by value (the payload is not copied).
    pub fn into_event(self) -> Event {
        self.event
    }

    /// When the frame was received, for a connection with
    /// [`receive_timestamps(true)`](crate::ConfigBuilder::receive_timestamps); `None` for
    /// other connections and for lifecycle events (open, error, state, rotated).
    pub fn received_at(&self) -> Option<ReceiveTime> {
        self.at.get()
    }

    #[cfg(feature = "capi")]
    pub(crate) fn c_name(&self) -> &Name {
        &self.name
    }
}

impl std::fmt::Debug for ConnEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnEvent")
            .field("name", &self.name())
            .field("event", &self.event)
            .finish()
    }
}

/// A manager's event queue, shared by the sinks of its polled connections and its pollers.
pub(crate) struct EventQueue {
    state: Mutex<State>,
    /// Signalled for threads blocked in [`poll_blocking`](Self::poll_blocking).
    ready: Condvar,
}

struct State {
    events: VecDeque<ConnEvent>,
    capacity: usize,
    /// Connections that found the queue full, by sink: woken when a poll frees room. Keyed so a
    /// connection polled again while it waits replaces its waker instead of adding one.
    stalled: HashMap<u64, Waker>,
    /// Tasks of [`EventStream`]s waiting for an event.
    consumers: Vec<Waker>,
    /// Threads waiting in `poll_blocking`: a push signals the condition variable only then.
    blocked: usize,
    /// A `wakeup` not yet consumed by a poll.
    wakeup: bool,
    /// The manager is shutting down: connections no longer wait for room, so that their close
    /// handshakes and the shutdown stay bounded in time.
    unbounded: bool,
    /// No event will come any more (the manager shut down or was dropped).
    closed: bool,
    #[cfg(unix)]
    signal: Option<Signal>,
}

impl State {
    fn has_room(&self) -> bool {
        self.room_left() > 0
    }

    /// Events that fit before the queue is full.
    fn room_left(&self) -> usize {
        if self.unbounded {
            return usize::MAX;
        }
        self.capacity.saturating_sub(self.events.len())
    }

    /// Moves up to `max` events to `out`; returns the connections to wake (outside the lock)
    /// when that made room for them.
    fn take(&mut self, max: usize, out: &mut impl Extend<ConnEvent>) -> Vec<Waker> {
        let n = max.min(self.events.len());
        out.extend(self.events.drain(..n));
        if self.events.is_empty() {
            #[cfg(unix)]
            if let Some(s) = self.signal.as_mut() {
                s.disarm();
            }
            if self.events.capacity() > SHRINK_ABOVE {
                self.events.shrink_to(SHRINK_ABOVE);
            }
        }
        if n > 0 && self.has_room() && !self.stalled.is_empty() {
            return self.stalled.drain().map(|(_, w)| w).collect();
        }
        Vec::new()
    }
}

impl EventQueue {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                events: VecDeque::new(),
                capacity: DEFAULT_EVENT_CAPACITY,
                stalled: HashMap::new(),
                consumers: Vec::new(),
                blocked: 0,
                wakeup: false,
                unbounded: false,
                closed: false,
                #[cfg(unix)]
                signal: None,
            }),
            ready: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every operation leaves the state consistent; a panic elsewhere is no reason to stop
        // delivering.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the capacity; a larger one lets waiting connections read again at once.
    pub(crate) fn set_capacity(&self, capacity: usize) -> Result<()> {
        let capacity = limits::event_capacity(capacity)?;
        let woken = {
            let mut st = self.lock();
            st.capacity = capacity;
            if st.has_room() {
                st.stalled.drain().map(|(_, w)| w).collect()
            } else {
                Vec::new()
            }
        };
        woken.into_iter().for_each(Waker::wake);
        Ok(())
    }

    /// The manager is shutting down: from now on connections do not wait for room.
    pub(crate) fn stop_backpressure(&self) {
        let woken: Vec<Waker> = {
            let mut st = self.lock();
            st.unbounded = true;
            st.stalled.drain().map(|(_, w)| w).collect()
        };
        woken.into_iter().for_each(Waker::wake);
    }

    /// No event comes any more: streams end once they took what is queued, blocked polls
    /// return.
    pub(crate) fn close(&self) {
        let woken: Vec<Waker> = {
            let mut st = self.lock();
            st.unbounded = true;
            st.closed = true;
            self.ready.notify_all();
            // Connections still closing (their manager was dropped) must not wait for room.
            let stalled: Vec<Waker> = st.stalled.drain().map(|(_, w)| w).collect();
            let mut woken = std::mem::take(&mut st.consumers);
            woken.extend(stalled);
            woken
        };
        woken.into_iter().for_each(Waker::wake);
    }

    /// Events queued and not yet taken by a poller.
    pub(crate) fn len(&self) -> usize {
        self.lock().events.len()
    }

    /// Makes the poll blocked in [`poll_blocking`](Self::poll_blocking), or else the next one,
    /// return at once.
    pub(crate) fn wakeup(&self) {
        let mut st = self.lock();
        st.wakeup = true;
        self.ready.notify_all();
    }

    /// Waits up to `timeout` (`None`: without limit) until there are events, a
    /// [`wakeup`](Self::wakeup), or the queue is closed, then moves up to `max` events to
    /// `out`. Returns without events when the time ran out, it was woken, or the queue closed.
    pub(crate) fn poll_blocking(
        &self,
        max: usize,
        timeout: Option<Duration>,
        out: &mut Vec<ConnEvent>,
    ) {
        // A timeout too large for the clock waits without limit, which is what it asks for.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let unlimited = timeout.is_none() || deadline.is_none();
        let mut st = self.lock();
        loop {
            if !st.events.is_empty() || st.wakeup || st.closed {
                st.wakeup = false;
                let woken = st.take(max, out);
                drop(st);
                woken.into_iter().for_each(Waker::wake);
                return;
            }
            st.blocked += 1;
            st = if unlimited {
                self.ready.wait(st).unwrap_or_else(|p| p.into_inner())
            } else {
                let now = Instant::now();
                let left = deadline.map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
                if left.is_zero() {
                    st.blocked -= 1;
                    return;
                }
                self.ready
                    .wait_timeout(st, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            };
            st.blocked -= 1;
        }
    }

    /// A descriptor that is readable while events are queued (level-triggered), made on the
    /// first call. It belongs to the queue and is closed with it.
    #[cfg(unix)]
    pub(crate) fn event_fd(&self) -> std::io::Result<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        let mut st = self.lock();
        if st.signal.is_none() {
            let mut s = Signal::new()?;
            if !st.events.is_empty() {
                s.arm();
            }
            st.signal = Some(s);
        }
        Ok(st.signal.as_ref().map_or(-1, |s| s.rx.as_raw_fd()))
    }
}

/// The readable end of a socket pair holds one byte while events are queued: written when the
/// queue stops being empty, read when a poll empties it. One system call per transition, none
/// per event, and none at all until a caller asks for the descriptor.
#[cfg(unix)]
struct Signal {
    rx: std::os::unix::net::UnixStream,
    tx: std::os::unix::net::UnixStream,
    armed: bool,
}

#[cfg(unix)]
impl Signal {
    fn new() -> std::io::Result<Self> {
        let (rx, tx) = std::os::unix::net::UnixStream::pair()?;
        // Neither end may ever block the queue's lock holder.
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        Ok(Self {
            rx,
            tx,
            armed: false,
        })
    }

    fn arm(&mut self) {
        use std::io::Write;
        if !self.armed {
            // With at most one byte in flight the buffer cannot be full; were the write to
            // fail anyway, polls still return the events and only the descriptor stays quiet.
            if let Err(e) = (&self.tx).write(&[1]) {
                log::warn!("event descriptor: {e}");
            }
            self.armed = true;
        }
    }

    fn disarm(&mut self) {
        use std::io::Read;
        if self.armed {
            let mut buf = [0u8; 16];
            while matches!((&self.rx).read(&mut buf), Ok(n) if n > 0) {}
            self.armed = false;
        }
    }
}

/// Payloads shorter than this are copied into an allocation of their own when queued.
const COMPACT_BELOW: usize = 4096;

/// A received payload is a view into the read buffer it was parsed from. A hook drops it before
/// the next frame, so the reader reclaims that buffer in place; a queued payload keeps it
/// shared, and the reader then allocates afresh for every frame. Copying a small payload once,
/// here, costs less than that (callgrind, 64-byte push on a current-thread runtime: 1,897 ->
/// 1,449 instructions per message; hooks: 823) and holds less (30,000 queued 64-byte messages:
/// 5.8 -> 4.3 MiB). A large payload is not copied: its buffer is mostly the payload itself.
fn compact(event: Event) -> Event {
    match event {
        Event::Text(t) if t.len() < COMPACT_BELOW => Event::Text(t.as_str().into()),
        Event::Binary(b) if b.len() < COMPACT_BELOW => {
            Event::Binary(bytes::Bytes::copy_from_slice(&b))
        }
        Event::Ping(b) if b.len() < COMPACT_BELOW => Event::Ping(bytes::Bytes::copy_from_slice(&b)),
        Event::Pong(b) if b.len() < COMPACT_BELOW => Event::Pong(bytes::Bytes::copy_from_slice(&b)),
        other => other,
    }
}

static NEXT_SINK: AtomicU64 = AtomicU64::new(1);

/// Where a polled connection's events go: the manager's queue, under the connection's name.
pub(crate) struct Sink {
    queue: Arc<EventQueue>,
    name: Name,
    id: u64,
    /// Whether the queue had room after this sink's last flush or look: while it has, the check
    /// before a read costs no lock. Other connections may fill the queue meanwhile, so each
    /// connection may put one event beyond the capacity.
    room: bool,
    /// Room in the queue at the last flush: a read stages no more than that before flushing,
    /// so staging never takes a connection past the capacity.
    room_left: usize,
    /// Messages of the current read, not yet in the queue: they enter it together, under one
    /// lock and with one wake-up, when the connection's poll ends (see [`flush`](Self::flush)).
    staged: Vec<ConnEvent>,
    /// The receive time of the frame being delivered (receive timestamps on), else none.
    at: ReceiveTime,
}

/// Messages a connection stages at most before it flushes them into the queue, even mid-read:
/// bounds how long the first of them waits for the poller.
const STAGE_MAX: usize = 64;

impl Sink {
    pub(crate) fn new(queue: Arc<EventQueue>, name: &str) -> Self {
        Self {
            queue,
            name: Name::new(name),
            id: NEXT_SINK.fetch_add(1, Ordering::Relaxed),
            room: true,
            room_left: 1,
            staged: Vec::new(),
            at: ReceiveTime::NONE,
        }
    }

    /// Stamps the events staged from now on with `t` (none with [`ReceiveTime::NONE`]).
    #[inline]
    pub(crate) fn set_receive_time(&mut self, t: ReceiveTime) {
        self.at = t;
    }

    /// Appends one event and wakes whoever waits for one (after the staged messages, which
    /// arrived before it).
    pub(crate) fn push(&mut self, event: Event) {
        self.stage(event);
        self.flush();
    }

    /// Holds one message of the current read for the next [`flush`](Self::flush). Under a fast
    /// feed the queue's lock is then taken once per read rather than once per message, and the
    /// poller, which takes the same lock, is interrupted as rarely (64-byte push through
    /// `kh_manager_poll`: the lock and its futex calls were half of the time).
    #[inline]
    pub(crate) fn stage(&mut self, event: Event) {
        self.staged.push(ConnEvent {
            name: self.name.clone(),
            event: compact(event),
            at: self.at,
        });
        if self.staged.len() >= STAGE_MAX.min(self.room_left) {
            self.flush();
        }
    }

    /// Moves the staged messages into the queue and wakes whoever waits for events. The session
    /// calls it whenever its poll returns, so nothing stays staged while the connection waits.
    pub(crate) fn flush(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let consumers = {
            let mut st = self.queue.lock();
            st.events.extend(self.staged.drain(..));
            self.room_left = st.room_left();
            self.room = self.room_left > 0;
            #[cfg(unix)]
            if let Some(s) = st.signal.as_mut() {
                s.arm();
            }
            if st.blocked > 0 {
                self.queue.ready.notify_all();
            }
            if st.consumers.is_empty() {
                return;
            }
            std::mem::take(&mut st.consumers)
        };
        consumers.into_iter().for_each(Waker::wake);
    }

    /// Ready when the queue has room for the next frame; otherwise the task is woken when a
    /// poll frees room.
    #[inline]
    pub(crate) fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.room {
            return Poll::Ready(());
        }
        self.poll_room_slow(cx)
    }

    #[cold]
    fn poll_room_slow(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.queue.lock();
        if st.has_room() {
            self.room = true;
            self.room_left = st.room_left();
            st.stalled.remove(&self.id);
            return Poll::Ready(());
        }
        st.stalled.insert(self.id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Staged messages were received: they are delivered, never dropped with the sink.
        self.flush();
        self.queue.lock().stalled.remove(&self.id);
    }
}

/// The events of a manager's polled connections, in arrival order per connection, as an async
/// [`Stream`](futures_util::Stream) (or with [`recv`](Self::recv)). Made by
/// [`WsManager::events`](crate::WsManager::events).
///
/// It takes events from the manager's queue in batches of up to 256, so a stream holds at most
/// that many beyond the queue's capacity. Several streams of one manager share its events: each
/// event goes to one of them. The stream ends after the manager shut down (or was dropped) and
/// every queued event was taken.
pub struct EventStream {
    queue: Arc<EventQueue>,
    buf: VecDeque<ConnEvent>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl EventStream {
    pub(crate) fn new(queue: Arc<EventQueue>) -> Self {
        Self {
            queue,
            buf: VecDeque::new(),
        }
    }

    /// The next event; `None` once the manager shut down and every event was taken.
    pub async fn recv(&mut self) -> Option<ConnEvent> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next event if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<ConnEvent> {
        if let Some(e) = self.buf.pop_front() {
            return Some(e);
        }
        self.refill();
        self.buf.pop_front()
    }

    /// Polls for the next event (what [`recv`](Self::recv) and the `Stream` impl do).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ConnEvent>> {
        if let Some(e) = self.buf.pop_front() {
            return Poll::Ready(Some(e));
        }
        let mut st = self.queue.lock();
        if !st.events.is_empty() {
            let woken = st.take(STREAM_BATCH, &mut self.buf);
            drop(st);
            woken.into_iter().for_each(Waker::wake);
            return Poll::Ready(self.buf.pop_front());
        }
        if st.closed {
            return Poll::Ready(None);
        }
        if !st.consumers.iter().any(|w| w.will_wake(cx.waker())) {
            st.consumers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    fn refill(&mut self) {
        let woken = self.queue.lock().take(STREAM_BATCH, &mut self.buf);
        woken.into_iter().for_each(Waker::wake);
    }
}

impl futures_util::Stream for EventStream {
    type Item = ConnEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ConnEvent>> {
        self.get_mut().poll_recv(cx)
    }
}

impl Drop for EventStream {
    /// Events taken from the queue but not handed out go back to its front, so dropping a
    /// stream loses nothing.
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let consumers = {
            let mut st = self.queue.lock();
            while let Some(e) = self.buf.pop_back() {
                st.events.push_front(e);
            }
            #[cfg(unix)]
            if let Some(s) = st.signal.as_mut() {
                s.arm();
            }
            self.queue.ready.notify_all();
            std::mem::take(&mut st.consumers)
        };
        consumers.into_iter().for_each(Waker::wake);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    /// Counts its wakes.
    #[derive(Default)]
    struct Counter(AtomicUsize);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn text(s: &'static str) -> Event {
        Event::Text(s.into())
    }

    #[test]
    fn a_full_queue_parks_the_connection_until_a_poll_frees_room() {
        let q = EventQueue::new();
        q.set_capacity(2).unwrap();
        let mut sink = Sink::new(q.clone(), "a");
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(sink.poll_room(&mut cx).is_ready());
        sink.push(text("1"));
        assert!(sink.poll_room(&mut cx).is_ready());
        sink.push(text("2"));
        assert!(sink.poll_room(&mut cx).is_pending());
        // Polled again while it waits: one waker, not two.
        assert!(sink.poll_room(&mut cx).is_pending());
        let mut out = Vec::new();
        q.poll_blocking(1, Some(Duration::ZERO), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name(), "a");
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(sink.poll_room(&mut cx).is_ready());
    }

    #[test]
    fn staged_messages_keep_their_order_and_are_never_lost_with_the_sink() {
        let q = EventQueue::new();
        q.set_capacity(100).unwrap();
        let mut sink = Sink::new(q.clone(), "a");
        // The first look at the queue's room comes with the first flush.
        sink.stage(text("1"));
        assert_eq!(q.len(), 1);
        sink.stage(text("2"));
        sink.stage(text("3"));
        assert_eq!(q.len(), 1, "staged messages entered the queue one by one");
        // A lifecycle event goes in after the messages received before it.
        sink.push(Event::Open);
        sink.stage(text("4"));
        drop(sink);
        let mut out = Vec::new();
        q.poll_blocking(16, Some(Duration::ZERO), &mut out);
        let got: Vec<String> = out.iter().map(|e| format!("{:?}", e.event())).collect();
        assert_eq!(got.len(), 5, "{got:?}");
        assert!(matches!(out[3].event(), Event::Open), "{got:?}");
        for (i, n) in [(0, "1"), (1, "2"), (2, "3"), (4, "4")] {
            assert!(
                matches!(out[i].event(), Event::Text(t) if t.as_str() == n),
                "{got:?}"
            );
        }
    }

    #[test]
    fn staging_never_takes_a_connection_past_the_capacity() {
        let q = EventQueue::new();
        q.set_capacity(5).unwrap();
        let mut sink = Sink::new(q.clone(), "a");
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut staged = 0;
        while sink.poll_room(&mut cx).is_ready() {
            sink.stage(text("x"));
            staged += 1;
            assert!(staged < 100, "the sink never saw the queue full");
        }
        sink.flush();
        assert_eq!(q.len(), 5);
    }

    #[test]
    fn a_blocked_poll_keeps_its_timeout_and_a_wakeup_ends_the_next_one() {
        let q = EventQueue::new();
        let mut out = Vec::new();
        let t0 = Instant::now();
        q.poll_blocking(8, Some(Duration::from_millis(50)), &mut out);
        assert!(out.is_empty());
        assert!(t0.elapsed() >= Duration::from_millis(50));
        q.wakeup();
        let t0 = Instant::now();
        q.poll_blocking(8, None, &mut out);
        assert!(out.is_empty() && t0.elapsed() < Duration::from_secs(5));
        q.close();
        q.poll_blocking(8, None, &mut out);
        assert!(out.is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn the_event_fd_holds_a_byte_exactly_while_events_wait() {
        use std::io::Read;
        let q = EventQueue::new();
        let mut sink = Sink::new(q.clone(), "a");
        sink.push(text("before the descriptor"));
        let fd = q.event_fd().unwrap();
        assert_eq!(q.event_fd().unwrap(), fd);
        let rx = q.lock().signal.as_ref().unwrap().rx.try_clone().unwrap();
        assert!(q.lock().signal.as_ref().unwrap().armed);
        sink.push(text("second"));
        let mut out = Vec::new();
        q.poll_blocking(1, Some(Duration::ZERO), &mut out);
        assert!(
            q.lock().signal.as_ref().unwrap().armed,
            "disarmed with an event left"
        );
        q.poll_blocking(8, Some(Duration::ZERO), &mut out);
        assert_eq!(out.len(), 2);
        let mut buf = [0u8; 4];
        let e = (&rx).read(&mut buf).unwrap_err();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::WouldBlock,
            "a byte left with nothing queued"
        );
    }
}
