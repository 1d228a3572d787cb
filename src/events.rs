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

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::clock::ReceiveTime;
use crate::error::Result;
#[cfg(feature = "capi")]
use crate::ffi::window::Window;
use crate::hooks::Event;
use crate::limits;
use crate::wire::Data;

/// The capacity of a manager's event queue unless set with
/// [`WsManager::set_event_capacity`](crate::WsManager::set_event_capacity).
pub const DEFAULT_EVENT_CAPACITY: usize = 65_536;

/// The payload bytes a manager's event queue holds before polled connections stop reading,
/// unless set with
/// [`WsManager::set_event_byte_capacity`](crate::WsManager::set_event_byte_capacity): 64 MiB.
pub const DEFAULT_EVENT_BYTES: usize = 64 << 20;

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
    pub(crate) fn new(name: &str) -> Self {
        // Names are refused with a NUL in them (`limits::connection_name`) before this.
        Self(format!("{name}\0").into())
    }

    fn as_str(&self) -> &str {
        &self.0[..self.0.len() - 1]
    }

    /// Whether both are the same connection's name (the same allocation).
    pub(crate) fn same(&self, other: &Name) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
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
}

impl std::fmt::Debug for ConnEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnEvent")
            .field("name", &self.name())
            .field("event", &self.event)
            .finish()
    }
}

/// The kind of a message held in a [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Binary,
    Ping,
    Pong,
}

/// One event of a [`Batch`]: 12 bytes, written with one store per field, so that staging a
/// message writes no enum through the stack (which stalled on store forwarding: perf showed
/// three quarters of the staging time on the load after it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Item {
    /// The kind of a message whose payload was copied into the batch's buffer at
    /// `start..start + len`; `None` for one of the batch's `owned` entries, at index `start`.
    pub(crate) kind: Option<Kind>,
    start: u32,
    len: u32,
}

/// What a batch holds beyond its buffer.
pub(crate) enum Owned {
    /// A message of [`COPY_BELOW`] bytes or more, left in the buffer it was parsed from (that
    /// buffer is mostly the payload itself). A text payload is valid UTF-8.
    Payload(Kind, Bytes),
    /// A lifecycle event or close frame.
    Event(Event),
}

/// Events of one connection that entered the queue together (what one poll of its task read),
/// with their small payloads back to back in one buffer.
///
/// Why a batch and not one allocation per event: a polled connection's task and the poller run
/// on different threads, so every per-event allocation was made on one thread and freed on the
/// other, and every per-event reference count bounced between their caches. A batch costs one
/// lock, one reference count and no allocation per poll of the task: its buffers are given
/// back to the queue's pool by the poller and staged into again (64-byte push through
/// `kh_manager_poll` on one worker, callgrind: 1,489 -> 1,008 instructions per message; the
/// hook path: 876).
pub(crate) struct Batch {
    name: Name,
    data: Vec<u8>,
    items: Vec<Item>,
    owned: Vec<Owned>,
    /// Receive times (receive timestamps on): `(i, t)` stamps the frames from item `i` on with
    /// `t`, up to the next entry. One entry per socket read, none without the option.
    times: Vec<(u32, ReceiveTime)>,
    /// Payload bytes of the `Owned::Payload` entries.
    owned_bytes: usize,
}

impl Batch {
    /// A batch of what the buffers hold, which are left empty (without capacity).
    fn take(
        name: &Name,
        data: &mut Vec<u8>,
        items: &mut Vec<Item>,
        owned: &mut Vec<Owned>,
        times: &mut Vec<(u32, ReceiveTime)>,
        owned_bytes: &mut usize,
    ) -> Self {
        Self {
            name: name.clone(),
            data: std::mem::take(data),
            items: std::mem::take(items),
            owned: std::mem::take(owned),
            times: std::mem::take(times),
            owned_bytes: std::mem::take(owned_bytes),
        }
    }

    /// The payload bytes the batch holds, which count against the queue's byte capacity.
    fn payload_bytes(&self) -> usize {
        self.data.len() + self.owned_bytes
    }

    /// Whether any event of the batch has a receive time.
    #[inline]
    pub(crate) fn has_times(&self) -> bool {
        !self.times.is_empty()
    }

    /// The receive time of the item at `index` of the batch: frames only (lifecycle events
    /// have none), of connections with receive timestamps.
    pub(crate) fn received_at(&self, index: usize) -> Option<ReceiveTime> {
        if self.times.is_empty() {
            return None;
        }
        let item = &self.items[index];
        let frame = item.kind.is_some()
            || match self.owned(item) {
                Owned::Payload(..) => true,
                Owned::Event(e) => e.opcode().is_some(),
            };
        let run = self.times.partition_point(|(i, _)| *i as usize <= index);
        if !frame || run == 0 {
            return None;
        }
        self.times[run - 1].1.get()
    }

    /// The connection the batch's events happened on.
    pub(crate) fn name(&self) -> &Name {
        &self.name
    }

    /// The owned entry of an item whose kind is `None`.
    #[inline]
    pub(crate) fn owned(&self, item: &Item) -> &Owned {
        &self.owned[item.start as usize]
    }

    /// The payload of a message item (copied or owned); empty for an event.
    #[inline]
    pub(crate) fn payload(&self, item: &Item) -> &[u8] {
        match item.kind {
            Some(_) => {
                let start = item.start as usize;
                &self.data[start..start + item.len as usize]
            }
            None => match self.owned(item) {
                Owned::Payload(_, b) => b,
                Owned::Event(_) => &[],
            },
        }
    }

    /// The item as an [`Event`] of its own (a copy of a copied payload).
    fn event(&self, item: &Item) -> Event {
        let message = |kind: Kind, payload: Bytes| match kind {
            // SAFETY: text items hold payloads tungstenite validated as UTF-8 (`Sink::stage`).
            Kind::Text => Event::Text(unsafe { Utf8Bytes::from_bytes_unchecked(payload) }),
            Kind::Binary => Event::Binary(payload),
            Kind::Ping => Event::Ping(payload),
            Kind::Pong => Event::Pong(payload),
        };
        match item.kind {
            Some(kind) => message(kind, Bytes::copy_from_slice(self.payload(item))),
            None => match self.owned(item) {
                Owned::Payload(kind, b) => message(*kind, b.clone()),
                Owned::Event(e) => e.clone(),
            },
        }
    }
}

/// A run of a batch's items, `from..to`, taken from the queue (or still in it).
pub(crate) struct Piece {
    batch: Arc<Batch>,
    from: usize,
    to: usize,
}

impl Piece {
    /// The batch and the items of it that this piece holds.
    pub(crate) fn parts(&self) -> (&Batch, &[Item]) {
        (&self.batch, &self.batch.items[self.from..self.to])
    }

    /// The index in its batch of the piece's first item.
    pub(crate) fn first(&self) -> usize {
        self.from
    }

    fn len(&self) -> usize {
        self.to - self.from
    }

    /// Whether the piece holds its batch's last item: the batch's bytes count against the
    /// queue's byte capacity while that item is queued.
    fn ends_batch(&self) -> bool {
        self.to == self.batch.items.len()
    }
}

/// Batches the queue keeps for reuse at most; larger ones than `POOL_BYTES` are not kept.
const POOL_MAX: usize = 8;
const POOL_BYTES: usize = 1024 * 1024;

/// A manager's event queue, shared by the sinks of its polled connections and its pollers.
pub(crate) struct EventQueue {
    state: Mutex<State>,
    /// Signalled for threads blocked in [`poll_blocking`](Self::poll_blocking).
    ready: Condvar,
    /// A driven poll's window is in `State::window`, not full: read without the lock by every
    /// connection before each poll of its task (see [`Sink::begin_read`]).
    #[cfg(feature = "capi")]
    window_open: std::sync::atomic::AtomicBool,
}

struct State {
    pieces: VecDeque<Piece>,
    /// Events in `pieces`.
    len: usize,
    capacity: usize,
    /// Payload bytes of the batches in `pieces` (a batch counts whole until its last item is
    /// taken).
    bytes: usize,
    byte_capacity: usize,
    /// Emptied batches, for the sinks to stage into again.
    pool: Vec<Arc<Batch>>,
    /// Connections that found the queue full, by sink: woken when a poll frees room. Keyed so a
    /// connection polled again while it waits replaces its waker instead of adding one.
    stalled: HashMap<u64, Waker>,
    /// Tasks of [`EventStream`]s waiting for an event.
    consumers: Vec<Waker>,
    /// Threads waiting in `poll_blocking`: a push signals the condition variable only then.
    blocked: usize,
    /// The waiting pollers were signalled since the last of them began to wait.
    signalled: bool,
    /// A `wakeup` not yet consumed by a poll.
    wakeup: bool,
    /// The manager is shutting down: connections no longer wait for room, so that their close
    /// handshakes and the shutdown stay bounded in time.
    unbounded: bool,
    /// No event will come any more (the manager shut down or was dropped).
    closed: bool,
    #[cfg(unix)]
    signal: Option<Signal>,
    /// A driven poll's array while it waits, for the connection that takes it next.
    #[cfg(feature = "capi")]
    window: Option<Window>,
}

impl State {
    fn has_room(&self) -> bool {
        self.room_left() > 0
    }

    /// Events that fit before the queue is full (none while its payload bytes are at their
    /// capacity).
    fn room_left(&self) -> usize {
        if self.unbounded {
            return usize::MAX;
        }
        if self.bytes >= self.byte_capacity {
            return 0;
        }
        self.capacity.saturating_sub(self.len)
    }

    /// What a connection may stage before it flushes, so that it passes neither capacity by
    /// more than one message: events, and payload bytes (at most [`STAGE_BYTES`]).
    fn staging_room(&self) -> (usize, usize) {
        let bytes = if self.unbounded {
            STAGE_BYTES
        } else {
            STAGE_BYTES.min(self.byte_capacity.saturating_sub(self.bytes))
        };
        (self.room_left(), bytes)
    }

    /// Moves up to `max` events to `out` (whole batches where they fit, a batch's first items
    /// where not), stopping after the batch that brings the payload bytes taken to the byte
    /// capacity, and keeps the emptied batches in `done` for reuse; returns the connections to
    /// wake (outside the lock) when that made room for them.
    fn take(
        &mut self,
        max: usize,
        out: &mut impl Extend<Piece>,
        done: &mut Vec<Arc<Batch>>,
    ) -> Vec<Waker> {
        self.recycle(done);
        let mut left = max;
        // What a poller holds is bounded like the queue: a take stops at the batch that
        // brings it to the byte capacity.
        let mut taken_bytes = 0;
        while left > 0 && (taken_bytes < self.byte_capacity || self.unbounded) {
            let Some(front) = self.pieces.front_mut() else {
                break;
            };
            let piece = if front.len() <= left {
                match self.pieces.pop_front() {
                    Some(p) => p,
                    None => break,
                }
            } else {
                let p = Piece {
                    batch: front.batch.clone(),
                    from: front.from,
                    to: front.from + left,
                };
                front.from = p.to;
                p
            };
            left -= piece.len();
            self.len -= piece.len();
            if piece.ends_batch() {
                let bytes = piece.batch.payload_bytes();
                self.bytes -= bytes;
                taken_bytes += bytes;
            }
            out.extend(std::iter::once(piece));
        }
        let n = max - left;
        if self.pieces.is_empty() {
            #[cfg(unix)]
            if let Some(s) = self.signal.as_mut() {
                s.disarm();
            }
            if self.pieces.capacity() > SHRINK_ABOVE {
                self.pieces.shrink_to(SHRINK_ABOVE);
            }
        }
        if n > 0 && self.has_room() && !self.stalled.is_empty() {
            return self.stalled.drain().map(|(_, w)| w).collect();
        }
        Vec::new()
    }

    /// Keeps emptied batches (see [`Batch::clear`]) for the sinks, up to the pool's bound.
    fn recycle(&mut self, done: &mut Vec<Arc<Batch>>) {
        for b in done.drain(..) {
            if self.pool.len() < POOL_MAX {
                self.pool.push(b);
            }
        }
    }

    /// Puts pieces a consumer took but did not hand out back at the front, in their order.
    fn give_back(&mut self, pieces: impl DoubleEndedIterator<Item = Piece>) {
        for p in pieces.rev() {
            self.len += p.len();
            if p.ends_batch() {
                self.bytes += p.batch.payload_bytes();
            }
            self.pieces.push_front(p);
        }
        #[cfg(unix)]
        if self.len > 0 {
            if let Some(s) = self.signal.as_mut() {
                s.arm();
            }
        }
    }
}

/// Empties the batches of consumed pieces that nobody else holds, outside the queue's lock
/// (dropping their large payloads and boxed events), for [`State::recycle`].
pub(crate) fn reusable(pieces: impl IntoIterator<Item = Piece>, done: &mut Vec<Arc<Batch>>) {
    for p in pieces {
        let mut batch = p.batch;
        // A piece shares its batch while another piece of it is still queued or lent; only
        // the last holder gives it back.
        if let Some(b) = Arc::get_mut(&mut batch) {
            if b.data.capacity() > POOL_BYTES || b.items.capacity() > STAGE_MAX * 2 {
                continue;
            }
            b.items.clear();
            b.data.clear();
            b.owned.clear();
            b.times.clear();
            b.owned_bytes = 0;
            done.push(batch);
        }
    }
}

impl EventQueue {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                pieces: VecDeque::new(),
                len: 0,
                capacity: DEFAULT_EVENT_CAPACITY,
                bytes: 0,
                byte_capacity: DEFAULT_EVENT_BYTES,
                pool: Vec::new(),
                stalled: HashMap::new(),
                consumers: Vec::new(),
                blocked: 0,
                signalled: false,
                wakeup: false,
                unbounded: false,
                closed: false,
                #[cfg(unix)]
                signal: None,
                #[cfg(feature = "capi")]
                window: None,
            }),
            ready: Condvar::new(),
            #[cfg(feature = "capi")]
            window_open: std::sync::atomic::AtomicBool::new(false),
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
        self.resize(|st| st.capacity = capacity);
        Ok(())
    }

    /// Sets the byte capacity; a larger one lets waiting connections read again at once.
    pub(crate) fn set_byte_capacity(&self, bytes: usize) -> Result<()> {
        let bytes = limits::event_bytes(bytes)?;
        self.resize(|st| st.byte_capacity = bytes);
        Ok(())
    }

    /// Changes a capacity, and wakes the waiting connections when that made room.
    fn resize(&self, change: impl FnOnce(&mut State)) {
        let woken: Vec<Waker> = {
            let mut st = self.lock();
            change(&mut st);
            if st.has_room() {
                st.stalled.drain().map(|(_, w)| w).collect()
            } else {
                Vec::new()
            }
        };
        woken.into_iter().for_each(Waker::wake);
    }

    /// Payload bytes queued and not yet taken by a poller (a batch counts whole until its last
    /// event is taken).
    pub(crate) fn pending_bytes(&self) -> usize {
        self.lock().bytes
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
        self.lock().len
    }

    /// Makes the poll blocked in [`poll_blocking`](Self::poll_blocking), or else the next one,
    /// return at once.
    pub(crate) fn wakeup(&self) {
        let consumers = {
            let mut st = self.lock();
            st.wakeup = true;
            self.ready.notify_all();
            // A driven manager's poll waits as a task (`poll_async`); streams woken with it
            // find nothing and wait again.
            std::mem::take(&mut st.consumers)
        };
        consumers.into_iter().for_each(Waker::wake);
    }

    /// Waits up to `timeout` (`None`: without limit) until there are events, a
    /// [`wakeup`](Self::wakeup), or the queue is closed, then moves up to `max` events to
    /// `out`. Returns without events when the time ran out, it was woken, or the queue closed.
    /// The batches in `done` (see [`reusable`]) go back to the pool.
    pub(crate) fn poll_blocking(
        &self,
        max: usize,
        timeout: Option<Duration>,
        out: &mut Vec<Piece>,
        done: &mut Vec<Arc<Batch>>,
    ) {
        // A timeout too large for the clock waits without limit, which is what it asks for.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let unlimited = timeout.is_none() || deadline.is_none();
        let mut st = self.lock();
        loop {
            if st.len > 0 || st.wakeup || st.closed {
                st.wakeup = false;
                let woken = st.take(max, out, done);
                drop(st);
                woken.into_iter().for_each(Waker::wake);
                return;
            }
            st.recycle(done);
            st.blocked += 1;
            st.signalled = false;
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

    /// [`poll_blocking`](Self::poll_blocking) for a poller that drives the connections' runtime
    /// itself (a driven manager's): waits as a task instead of blocking its thread, so the
    /// connections that fill the queue run meanwhile, on this very thread. With a zero timeout
    /// it still gives the runtime two rounds: the sockets that are readable now are read.
    ///
    /// While nothing is queued, `window` (the poller's array) is lent to the connections,
    /// which write their messages into it (see `ffi::window`); it is back in `window` when
    /// this returns, or is dropped, and then either holds events (and `out` nothing) or none.
    #[cfg(feature = "capi")]
    pub(crate) async fn poll_async(
        &self,
        max: usize,
        timeout: Option<Duration>,
        out: &mut Vec<Piece>,
        done: &mut Vec<Arc<Batch>>,
        window: &mut Option<Window>,
    ) {
        let deadline = timeout.and_then(|t| tokio::time::Instant::now().checked_add(t));
        let unlimited = timeout.is_none() || deadline.is_none();
        let lending = Lending {
            queue: self,
            window,
        };
        {
            let mut st = self.lock();
            if st.len == 0 && !st.closed {
                if let Some(w) = lending.window.take() {
                    self.lend(&mut st, w);
                }
            }
        }
        if timeout == Some(Duration::ZERO) {
            // One round polls the driver (the yield is deferred until after it), the second
            // runs the connections it woke.
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
        }
        let mut registered: Option<Waker> = None;
        let ready = std::future::poll_fn(|cx| {
            let mut st = self.lock();
            let direct = st.window.as_ref().is_some_and(|w| w.len() > 0);
            if direct || st.len > 0 || st.wakeup || st.closed {
                st.wakeup = false;
                // What is queued now came after the window's events, or from other
                // connections: the next poll takes it.
                if direct {
                    return Poll::Ready(());
                }
                let woken = st.take(max, out, done);
                drop(st);
                woken.into_iter().for_each(Waker::wake);
                return Poll::Ready(());
            }
            st.recycle(done);
            if !st.consumers.iter().any(|w| w.will_wake(cx.waker())) {
                st.consumers.push(cx.waker().clone());
            }
            registered = Some(cx.waker().clone());
            Poll::Pending
        });
        let timed_out = match deadline {
            _ if unlimited => {
                ready.await;
                false
            }
            Some(d) => tokio::time::timeout_at(d, ready).await.is_err(),
            None => false,
        };
        if let Some(w) = registered.filter(|_| timed_out) {
            // A waker left behind would make the next flush count as a hand-over to a
            // consumer that is gone (see `Sink::flush_mid_read`).
            self.lock().consumers.retain(|c| !c.will_wake(&w));
        }
        drop(lending);
    }

    /// A descriptor that is readable while events are queued (level-triggered), made on the
    /// first call. It belongs to the queue and is closed with it.
    #[cfg(unix)]
    pub(crate) fn event_fd(&self) -> std::io::Result<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        let mut st = self.lock();
        if st.signal.is_none() {
            let mut s = Signal::new()?;
            if st.len > 0 {
                s.arm();
            }
            st.signal = Some(s);
        }
        Ok(st.signal.as_ref().map_or(-1, |s| s.rx.as_raw_fd()))
    }
}

#[cfg(feature = "capi")]
impl EventQueue {
    /// Publishes a poll's window for the connections (see [`Sink::begin_read`]).
    fn lend(&self, st: &mut State, mut w: Window) {
        // Within the cache (see `STAGE_BYTES`), and bounded like a take.
        w.set_byte_cap(st.byte_capacity.min(STAGE_BYTES));
        w.lent_by(std::thread::current().id());
        st.window = Some(w);
        self.window_open.store(true, Ordering::Relaxed);
    }
}

/// Takes a driven poll's window back from the queue however the poll ends (it may be dropped
/// while it waits, when a callback frees the manager): no connection writes into the caller's
/// array after the poll returned. Nothing holds the window while the poll's future runs: only
/// a connection whose task runs on the poll's own thread takes it (`Window::may_be_taken_on`),
/// and only within a poll of that task, which the poll's future never runs during.
#[cfg(feature = "capi")]
struct Lending<'a> {
    queue: &'a EventQueue,
    window: &'a mut Option<Window>,
}

#[cfg(feature = "capi")]
impl Drop for Lending<'_> {
    fn drop(&mut self) {
        let mut st = self.queue.lock();
        self.queue.window_open.store(false, Ordering::Relaxed);
        if let Some(w) = st.window.take() {
            *self.window = Some(w);
        }
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

/// Payloads shorter than this are copied into their batch's buffer when staged.
///
/// A received payload is a view into the read buffer it was parsed from. A hook drops it before
/// the next frame, so the reader reclaims that buffer in place; a queued payload would keep it
/// shared, and the reader would then allocate afresh for every frame. Copying a small payload
/// once, into a buffer that is reused, costs less than that and holds less. A large payload is
/// not copied: its buffer is mostly the payload itself.
pub(crate) const COPY_BELOW: usize = 4096;

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
    /// Payload bytes a read stages before it flushes: [`STAGE_BYTES`], or less when the queue
    /// had less byte room at the last flush, so a connection passes the byte capacity by one
    /// message at most.
    stage_bytes: usize,
    /// Payload bytes of the staged `Owned::Payload` entries.
    owned_bytes: usize,
    /// A flush in the middle of a read woke a task waiting for events (`room` is false until
    /// [`take_handover`](Self::take_handover)): the connection gives up its turn, so that a
    /// consumer on the same thread (a driven manager's poll, a stream on a current-thread
    /// runtime) takes the batch before the next one is staged into fresh memory.
    handover: bool,
    /// The current read's small payloads and items, not yet in the queue: they enter it
    /// together, as one [`Batch`], under one lock and with one wake-up, when the connection's
    /// poll ends (see [`flush`](Self::flush)).
    data: Vec<u8>,
    items: Vec<Item>,
    owned: Vec<Owned>,
    /// The receive times of the staged frames (see [`Batch`]'s `times`).
    times: Vec<(u32, ReceiveTime)>,
    /// A driven poll's array, while this connection writes its messages straight into it (see
    /// [`begin_read`](Self::begin_read)).
    #[cfg(feature = "capi")]
    window: Option<Window>,
    /// The receive time of the frame being delivered, for the window.
    #[cfg(feature = "capi")]
    stamp: ReceiveTime,
}

/// Messages a connection stages at most before it flushes them into the queue, even mid-read:
/// bounds how long the first of them waits for the poller, and how often a poller sharing the
/// connection's CPU is woken (each wake-up is two context switches).
const STAGE_MAX: usize = 4096;

/// Batches of at least this many events trade their buffers for pooled ones (see
/// [`Sink::flush`]).
const REUSE_FROM: usize = 64;

/// Payload bytes a connection stages at most before it flushes: a batch the poller reads while
/// it is still in the cache costs less than a larger one. A driven poll's window takes as many
/// at most, for the same reason: its copies are then made into memory the last poll used (1 KiB
/// push, driven, 15 interleaved runs: 1.98 M/s with windows of up to 1,024 events, 1.0 MiB,
/// 2.39 M/s with this bound, medians).
const STAGE_BYTES: usize = 256 * 1024;

impl Sink {
    pub(crate) fn new(queue: Arc<EventQueue>, name: &str) -> Self {
        Self {
            queue,
            name: Name::new(name),
            id: NEXT_SINK.fetch_add(1, Ordering::Relaxed),
            room: true,
            room_left: 1,
            stage_bytes: 1,
            owned_bytes: 0,
            handover: false,
            data: Vec::new(),
            items: Vec::new(),
            owned: Vec::new(),
            times: Vec::new(),
            #[cfg(feature = "capi")]
            window: None,
            #[cfg(feature = "capi")]
            stamp: ReceiveTime::NONE,
        }
    }

    /// Before each poll of the connection's task: takes a driven poll's window when one is
    /// open and nothing waits in the queue or in this sink, so that the messages this poll
    /// reads go straight into the poller's array, after everything queued. A single relaxed
    /// load when no window is open.
    #[inline]
    pub(crate) fn begin_read(&mut self) {
        #[cfg(feature = "capi")]
        if self.queue.window_open.load(Ordering::Relaxed) {
            self.take_window();
        }
    }

    #[cfg(feature = "capi")]
    #[cold]
    fn take_window(&mut self) {
        if self.window.is_some() || !self.items.is_empty() {
            return;
        }
        let mut st = self.queue.lock();
        // Whatever is queued may be this connection's, and arrived before what it reads now.
        if st.len > 0 {
            return;
        }
        let here = std::thread::current().id();
        if !st.window.as_ref().is_some_and(|w| w.may_be_taken_on(here)) {
            return;
        }
        if let Some(mut w) = st.window.take() {
            self.queue.window_open.store(false, Ordering::Relaxed);
            w.hold_name(&self.name);
            self.window = Some(w);
        }
    }

    /// After each poll of the connection's task: gives the window back (see
    /// [`begin_read`](Self::begin_read)).
    #[inline]
    pub(crate) fn end_read(&mut self) {
        #[cfg(feature = "capi")]
        if self.window.is_some() {
            self.release_window();
        }
    }

    /// Gives the window back to the queue, for the poll or the next connection, and wakes
    /// the poll when events were written.
    #[cfg(feature = "capi")]
    fn release_window(&mut self) {
        let Some(w) = self.window.take() else {
            return;
        };
        let (wrote, open) = (w.len() > 0, !w.is_full());
        let consumers = {
            let mut st = self.queue.lock();
            st.window = Some(w);
            self.queue.window_open.store(open, Ordering::Relaxed);
            if wrote {
                std::mem::take(&mut st.consumers)
            } else {
                Vec::new()
            }
        };
        consumers.into_iter().for_each(Waker::wake);
    }

    /// The window is full: give it back and let the poll run before reading on (the same
    /// hand-over as a flush mid-read).
    #[cfg(feature = "capi")]
    #[cold]
    fn window_full(&mut self) {
        self.release_window();
        self.hand_over();
    }

    /// Stamps the frames staged from now on with `t` (called only with receive timestamps
    /// on, before each frame). One entry per change, so per socket read; "no time" is not
    /// recorded, as only frames read a time.
    #[inline]
    pub(crate) fn set_receive_time(&mut self, t: ReceiveTime) {
        #[cfg(feature = "capi")]
        {
            self.stamp = t;
        }
        if t.get().is_some() && self.times.last().map(|e| e.1) != Some(t) {
            self.times.push((self.items.len() as u32, t));
        }
    }

    /// Appends one event and wakes whoever waits for one (after the staged messages, which
    /// arrived before it).
    pub(crate) fn push(&mut self, event: Event) {
        self.stage(event);
        self.flush();
    }

    /// Holds one event of the current read for the next [`flush`](Self::flush). Under a fast
    /// feed the queue's lock is then taken once per read rather than once per message, and the
    /// poller, which takes the same lock, is interrupted as rarely (64-byte push through
    /// `kh_manager_poll`: the lock and its futex calls were half of the time).
    #[inline]
    pub(crate) fn stage(&mut self, event: Event) {
        match event {
            Event::Text(t) => self.stage_payload(Kind::Text, t.into()),
            Event::Binary(b) => self.stage_payload(Kind::Binary, b),
            Event::Ping(b) => self.stage_payload(Kind::Ping, b),
            Event::Pong(b) => self.stage_payload(Kind::Pong, b),
            other => self.stage_owned(Owned::Event(other)),
        }
    }

    /// A text or binary message read from the wire's buffer, like
    /// [`stage_payload`](Self::stage_payload): a driven poll's window points its event at the
    /// payload where it lies; the queue copies a small one and takes a reference to the
    /// buffer only for a large one. Inlined into the read loop: it is the whole per-message
    /// work of a driven poll, and the call's prologue and epilogue were a fifth of it.
    #[inline(always)]
    pub(crate) fn stage_data(&mut self, d: Data<'_>) {
        let kind = match d {
            Data::Text(..) => Kind::Text,
            Data::Binary(..) => Kind::Binary,
        };
        #[cfg(feature = "capi")]
        if let Some(w) = self.window.as_mut() {
            w.put_data(kind, d.payload(), d.segment(), self.stamp);
            if w.is_full() {
                self.window_full();
            }
            return;
        }
        let payload = d.payload();
        if payload.len() >= COPY_BELOW {
            return self.stage_owned(Owned::Payload(kind, d.to_bytes()));
        }
        self.stage_copy(kind, payload);
    }

    /// A message: its payload is copied into the batch when small (see [`COPY_BELOW`]). A text
    /// payload must be valid UTF-8 (it comes from a `Utf8Bytes`).
    #[inline]
    fn stage_payload(&mut self, kind: Kind, payload: Bytes) {
        #[cfg(feature = "capi")]
        if let Some(w) = self.window.as_mut() {
            w.put(kind, payload, self.stamp);
            if w.is_full() {
                self.window_full();
            }
            return;
        }
        if payload.len() >= COPY_BELOW {
            return self.stage_owned(Owned::Payload(kind, payload));
        }
        self.stage_copy(kind, &payload);
    }

    /// A small payload, copied into the batch.
    #[inline]
    fn stage_copy(&mut self, kind: Kind, payload: &[u8]) {
        let len = payload.len();
        let start = self.data.len();
        self.data.extend_from_slice(payload);
        // Both stay below STAGE_BYTES plus COPY_BELOW.
        self.items.push(Item {
            kind: Some(kind),
            start: start as u32,
            len: len as u32,
        });
        self.flush_if_full();
    }

    #[cold]
    fn stage_owned(&mut self, owned: Owned) {
        // After this event, nothing of this connection may pass the queue.
        #[cfg(feature = "capi")]
        self.release_window();
        if let Owned::Payload(_, b) = &owned {
            self.owned_bytes += b.len();
        }
        self.items.push(Item {
            kind: None,
            start: self.owned.len() as u32,
            len: 0,
        });
        self.owned.push(owned);
        self.flush_if_full();
    }

    #[inline]
    fn flush_if_full(&mut self) {
        if self.items.len() >= STAGE_MAX.min(self.room_left)
            || self.data.len() + self.owned_bytes >= self.stage_bytes
        {
            self.flush_mid_read();
        }
    }

    #[cold]
    fn flush_mid_read(&mut self) {
        if self.flush() {
            self.hand_over();
        }
    }

    /// Gives up the connection's turn before its next read, to the consumer it just woke (see
    /// `handover`). Only the slow path of `poll_room` looks at the hand-over.
    fn hand_over(&mut self) {
        self.handover = true;
        self.room = false;
    }

    /// Whether a flush in the middle of the read woke a waiting consumer task (see
    /// `handover`); clears it.
    pub(crate) fn take_handover(&mut self) -> bool {
        if !self.handover {
            return false;
        }
        self.handover = false;
        self.room = self.room_left > 0;
        true
    }

    /// Moves the staged events into the queue, as one batch, and wakes whoever waits for
    /// events. The session calls it whenever its poll returns, so nothing stays staged while
    /// the connection waits. Returns whether it woke a consumer task.
    pub(crate) fn flush(&mut self) -> bool {
        let n = self.items.len();
        if n == 0 {
            return false;
        }
        // A small batch (a quiet feed) leaves with the sink's own buffers, so that a quiet
        // connection, of which there may be thousands, holds none; a large one (a busy feed)
        // trades them for an emptied batch's from the pool, which its next read fills again
        // (a feed that stops right after a large batch holds those until its next flush).
        let own = (n < REUSE_FROM).then(|| self.take_batch());
        let (poller_waits, consumers) = {
            let mut st = self.queue.lock();
            // A large batch trades the sink's buffers for a pooled batch's (emptied, and held
            // by the pool alone: `reusable`), else it takes them along.
            let reused = own.or_else(|| {
                let mut b = st.pool.pop()?;
                let shell = Arc::get_mut(&mut b)?;
                if !shell.name.same(&self.name) {
                    shell.name = self.name.clone();
                }
                std::mem::swap(&mut shell.data, &mut self.data);
                std::mem::swap(&mut shell.items, &mut self.items);
                std::mem::swap(&mut shell.owned, &mut self.owned);
                std::mem::swap(&mut shell.times, &mut self.times);
                std::mem::swap(&mut shell.owned_bytes, &mut self.owned_bytes);
                Some(b)
            });
            let batch = reused.unwrap_or_else(|| {
                Arc::new(Batch::take(
                    &self.name,
                    &mut self.data,
                    &mut self.items,
                    &mut self.owned,
                    &mut self.times,
                    &mut self.owned_bytes,
                ))
            });
            let n = batch.items.len();
            st.len += n;
            st.bytes += batch.payload_bytes();
            st.pieces.push_back(Piece {
                batch,
                from: 0,
                to: n,
            });
            (self.room_left, self.stage_bytes) = st.staging_room();
            self.room = self.room_left > 0;
            #[cfg(unix)]
            if let Some(s) = st.signal.as_mut() {
                s.arm();
            }
            // One signal per wait: a poller that was signalled and has not run yet needs no
            // second one (a futex call each), which a busy connection would send per flush.
            let poller_waits = st.blocked > 0 && !st.signalled;
            st.signalled |= poller_waits;
            (poller_waits, std::mem::take(&mut st.consumers))
        };
        // After the lock is released: a poller woken while this thread still held it would
        // only block again on the lock. On one CPU that was four context switches and four
        // futex calls per batch instead of two (1 KiB push through `kh_manager_poll`).
        if poller_waits {
            self.queue.ready.notify_all();
        }
        let woke = !consumers.is_empty();
        consumers.into_iter().for_each(Waker::wake);
        woke
    }

    /// The staged events as a batch of their own; the sink starts again with empty buffers.
    fn take_batch(&mut self) -> Arc<Batch> {
        Arc::new(Batch::take(
            &self.name,
            &mut self.data,
            &mut self.items,
            &mut self.owned,
            &mut self.times,
            &mut self.owned_bytes,
        ))
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
        if self.handover {
            // The session asks `take_handover` next, and gives up its turn.
            return Poll::Pending;
        }
        let mut st = self.queue.lock();
        if st.has_room() {
            self.room = true;
            (self.room_left, self.stage_bytes) = st.staging_room();
            st.stalled.remove(&self.id);
            return Poll::Ready(());
        }
        st.stalled.insert(self.id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // The poll takes its window back before it returns, even when a task panicked.
        #[cfg(feature = "capi")]
        self.release_window();
        // Staged messages were received: they are delivered, never dropped with the sink.
        self.flush();
        self.queue.lock().stalled.remove(&self.id);
    }
}

/// The events of a manager's polled connections, in arrival order per connection, as an async
/// [`Stream`](futures_util::Stream) (or with [`recv`](Self::recv)). Made by
/// [`WsManager::events`](crate::WsManager::events).
///
/// It takes events from the manager's queue in batches of up to 256 (and up to the queue's byte
/// capacity), so a stream holds at most that many beyond the queue's capacities. Several
/// streams of one manager share its events: each event goes to one of them. The stream ends
/// after the manager shut down (or was dropped) and every queued event was taken.
pub struct EventStream {
    queue: Arc<EventQueue>,
    buf: VecDeque<Piece>,
    /// Batches handed out whole, given back to the pool with the next take.
    done: Vec<Arc<Batch>>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("buffered", &self.buf.iter().map(Piece::len).sum::<usize>())
            .finish_non_exhaustive()
    }
}

impl EventStream {
    pub(crate) fn new(queue: Arc<EventQueue>) -> Self {
        Self {
            queue,
            buf: VecDeque::new(),
            done: Vec::new(),
        }
    }

    /// The next event; `None` once the manager shut down and every event was taken.
    pub async fn recv(&mut self) -> Option<ConnEvent> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next event if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<ConnEvent> {
        if let Some(e) = self.next_buffered() {
            return Some(e);
        }
        let woken = self
            .queue
            .lock()
            .take(STREAM_BATCH, &mut self.buf, &mut self.done);
        woken.into_iter().for_each(Waker::wake);
        self.next_buffered()
    }

    /// Polls for the next event (what [`recv`](Self::recv) and the `Stream` impl do).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ConnEvent>> {
        if let Some(e) = self.next_buffered() {
            return Poll::Ready(Some(e));
        }
        let mut st = self.queue.lock();
        if st.len > 0 {
            let woken = st.take(STREAM_BATCH, &mut self.buf, &mut self.done);
            drop(st);
            woken.into_iter().for_each(Waker::wake);
            return Poll::Ready(self.next_buffered());
        }
        st.recycle(&mut self.done);
        if st.closed {
            return Poll::Ready(None);
        }
        if !st.consumers.iter().any(|w| w.will_wake(cx.waker())) {
            st.consumers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The first buffered event, as a [`ConnEvent`] of its own.
    fn next_buffered(&mut self) -> Option<ConnEvent> {
        let front = self.buf.front_mut()?;
        let event = front.batch.event(&front.batch.items[front.from]);
        let at = front
            .batch
            .received_at(front.from)
            .unwrap_or(ReceiveTime::NONE);
        let name = front.batch.name.clone();
        front.from += 1;
        if front.len() == 0 {
            if let Some(p) = self.buf.pop_front() {
                reusable([p], &mut self.done);
            }
        }
        Some(ConnEvent { name, event, at })
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
        let consumers = {
            let mut st = self.queue.lock();
            st.recycle(&mut self.done);
            if self.buf.is_empty() {
                return;
            }
            st.give_back(self.buf.drain(..));
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

    /// A poll of up to `max` events, as events of their own.
    fn poll(q: &EventQueue, max: usize, timeout: Option<Duration>) -> Vec<ConnEvent> {
        let mut pieces = Vec::new();
        q.poll_blocking(max, timeout, &mut pieces, &mut Vec::new());
        pieces
            .iter()
            .flat_map(|p| {
                let (b, items) = p.parts();
                items.iter().map(move |i| ConnEvent {
                    name: b.name.clone(),
                    event: b.event(i),
                    at: ReceiveTime::NONE,
                })
            })
            .collect()
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
        let out = poll(&q, 1, Some(Duration::ZERO));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name(), "a");
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(sink.poll_room(&mut cx).is_ready());
    }

    #[test]
    fn receive_times_follow_their_frames_and_skip_lifecycle_events() {
        let q = EventQueue::new();
        let mut sink = Sink::new(q.clone(), "a");
        let (t1, t2) = (ReceiveTime::now(), ReceiveTime::now());
        sink.set_receive_time(t1);
        sink.stage(text("1"));
        sink.set_receive_time(t1);
        sink.stage(text("2"));
        sink.stage(Event::Open);
        sink.set_receive_time(t2);
        sink.stage(Event::Close(1000, Utf8Bytes::from_static("bye")));
        sink.flush();
        let mut stream = EventStream::new(q.clone());
        // Bounded: a stream that handed out one event forever must fail the test, not hang it.
        let got: Vec<Option<ReceiveTime>> = std::iter::from_fn(|| stream.try_recv())
            .take(10)
            .map(|e| e.received_at())
            .collect();
        assert_eq!(got, [Some(t1), Some(t1), None, Some(t2)]);
        // The same time again is one run, not one entry per frame.
        let mut sink = Sink::new(q, "b");
        for _ in 0..3 {
            sink.set_receive_time(t1);
            sink.stage(text("x"));
        }
        assert_eq!(sink.times.len(), 1);
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
        let out = poll(&q, 16, Some(Duration::ZERO));
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
        let t0 = Instant::now();
        assert!(poll(&q, 8, Some(Duration::from_millis(50))).is_empty());
        assert!(t0.elapsed() >= Duration::from_millis(50));
        // Polls without a time limit, on a thread of their own: the test waits for each one
        // only so long, so a poll that is never ended fails it instead of hanging it.
        let unlimited = |q: &Arc<EventQueue>| {
            let (tx, rx) = std::sync::mpsc::channel();
            let q = q.clone();
            std::thread::spawn(move || {
                let _ = tx.send(poll(&q, 8, None).len());
            });
            rx
        };
        q.wakeup();
        let ended = unlimited(&q).recv_timeout(Duration::from_secs(5));
        assert_eq!(ended.ok(), Some(0), "the wakeup did not end the next poll");
        let waiting = unlimited(&q);
        until_a_poller_waits(&q);
        q.wakeup();
        let ended = waiting.recv_timeout(Duration::from_secs(5));
        assert_eq!(ended.ok(), Some(0), "the wakeup did not end a waiting poll");
        // A timeout beyond what the clock can add waits without limit too.
        let (tx, beyond) = std::sync::mpsc::channel();
        let q2 = q.clone();
        std::thread::spawn(move || {
            let _ = tx.send(poll(&q2, 8, Some(Duration::MAX)).len());
        });
        until_a_poller_waits(&q);
        assert!(beyond.recv_timeout(Duration::from_millis(100)).is_err());
        q.wakeup();
        assert_eq!(beyond.recv_timeout(Duration::from_secs(5)).ok(), Some(0));
        let waiting = unlimited(&q);
        until_a_poller_waits(&q);
        q.close();
        let ended = waiting.recv_timeout(Duration::from_secs(5));
        assert_eq!(
            ended.ok(),
            Some(0),
            "closing the queue did not end a waiting poll"
        );
        let ended = unlimited(&q).recv_timeout(Duration::from_secs(5));
        assert_eq!(ended.ok(), Some(0), "a poll of a closed queue waited");
    }

    fn binary(len: usize) -> Event {
        Event::Binary(Bytes::from(vec![7u8; len]))
    }

    #[test]
    fn a_queue_full_of_bytes_parks_the_connection_until_a_poll_takes_a_message() {
        let q = EventQueue::new();
        q.set_byte_capacity(10_000).unwrap();
        let mut sink = Sink::new(q.clone(), "a");
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        // Large messages, kept as they are: they count as much as copied ones.
        sink.push(binary(6000));
        assert!(sink.poll_room(&mut cx).is_ready());
        sink.push(binary(6000));
        assert_eq!(q.pending_bytes(), 12_000);
        assert!(sink.poll_room(&mut cx).is_pending());
        let out = poll(&q, 1, Some(Duration::ZERO));
        assert_eq!(out.len(), 1);
        assert_eq!(q.pending_bytes(), 6000);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(sink.poll_room(&mut cx).is_ready());
        // A larger capacity lets a waiting connection read at once.
        sink.push(binary(6000));
        assert!(sink.poll_room(&mut cx).is_pending());
        q.set_byte_capacity(20_000).unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert!(sink.poll_room(&mut cx).is_ready());
        assert!(q.set_byte_capacity(0).is_err());
    }

    #[test]
    fn a_poll_takes_about_the_byte_capacity_at_most() {
        let q = EventQueue::new();
        let mut sink = Sink::new(q.clone(), "a");
        for _ in 0..3 {
            sink.push(binary(6000));
        }
        q.set_byte_capacity(12_000).unwrap();
        // The second batch brings the poll to the capacity exactly: the third stays queued.
        assert_eq!(poll(&q, 100, Some(Duration::ZERO)).len(), 2);
        assert_eq!(q.pending_bytes(), 6000);
        assert_eq!(poll(&q, 100, Some(Duration::ZERO)).len(), 1);
        assert_eq!(q.pending_bytes(), 0);
    }

    #[test]
    fn staging_passes_the_byte_capacity_by_one_message_at_most() {
        for (size, capacity) in [(100, 1000), (5000, 12_000), (1, 1)] {
            let q = EventQueue::new();
            q.set_byte_capacity(capacity).unwrap();
            let mut sink = Sink::new(q.clone(), "a");
            let counter = Arc::new(Counter::default());
            let waker = Waker::from(counter.clone());
            let mut cx = Context::from_waker(&waker);
            let mut staged = 0;
            while sink.poll_room(&mut cx).is_ready() {
                sink.stage(binary(size));
                staged += 1;
                assert!(staged < 1000, "the sink never saw the queue full");
            }
            sink.flush();
            let bytes = q.pending_bytes();
            assert!(
                (capacity..capacity + size).contains(&bytes),
                "{bytes} bytes queued with a capacity of {capacity} and {size}-byte messages"
            );
            // Taken in pieces smaller than the batches: counted until a batch's last event.
            let mut taken = 0;
            while !poll(&q, 3, Some(Duration::ZERO)).is_empty() {
                taken += 1;
                assert!(q.pending_bytes() <= bytes);
            }
            assert!(taken > 0);
            assert_eq!(q.pending_bytes(), 0);
        }
    }

    #[test]
    fn large_messages_staged_in_one_read_enter_the_queue_every_256_kib() {
        let q = EventQueue::new();
        let mut sink = Sink::new(q.clone(), "a");
        // The first look at the queue (a sink starts knowing no room) passes one message.
        sink.stage(binary(10));
        for _ in 0..10 {
            sink.stage(binary(64 * 1024));
        }
        // Every 4 x 64 KiB staged reach STAGE_BYTES: flushed without waiting for the read's
        // end (after the 4th and the 8th).
        assert_eq!(q.len(), 9, "{} events queued", q.len());
        sink.flush();
        assert_eq!(q.len(), 11);
    }

    /// Waits (bounded) until a poller is blocked on the queue.
    fn until_a_poller_waits(q: &EventQueue) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while q.lock().blocked == 0 {
            assert!(Instant::now() < deadline, "no poller began to wait");
            std::thread::yield_now();
        }
    }

    #[test]
    fn every_wait_of_a_blocked_poller_is_ended_by_the_next_batch() {
        let q = EventQueue::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let poller = {
            let q = q.clone();
            // Without a deadline of its own short enough to pass the test: only the batches'
            // signals can end these waits in time.
            std::thread::spawn(move || {
                for _ in 0..3 {
                    let got = texts(&poll(&q, 8, Some(Duration::from_secs(60))));
                    if tx.send(got).is_err() {
                        return;
                    }
                }
            })
        };
        let mut sink = Sink::new(q.clone(), "a");
        for m in ["one", "two", "three"] {
            until_a_poller_waits(&q);
            sink.push(text(m));
            let got = rx.recv_timeout(Duration::from_secs(5));
            assert_eq!(
                got.ok(),
                Some(vec![m.to_string()]),
                "the wait for {m} did not end"
            );
        }
        poller.join().unwrap();
    }

    fn texts(events: &[ConnEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e.event() {
                Event::Text(t) => t.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_poll_with_less_room_than_a_batch_leaves_the_rest_queued_in_order() {
        let q = EventQueue::new();
        let mut sink = Sink::new(q.clone(), "a");
        sink.push(text("0"));
        for n in ["1", "2", "3", "4", "5"] {
            sink.stage(text(n));
        }
        sink.flush();
        assert_eq!(q.len(), 6);
        assert_eq!(texts(&poll(&q, 2, Some(Duration::ZERO))), ["0", "1"]);
        assert_eq!(q.len(), 4);
        assert_eq!(texts(&poll(&q, 3, Some(Duration::ZERO))), ["2", "3", "4"]);
        assert_eq!(texts(&poll(&q, 8, Some(Duration::ZERO))), ["5"]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn payloads_of_every_size_and_kind_come_out_as_they_went_in() {
        let q = EventQueue::new();
        let mut sink = Sink::new(q.clone(), "a");
        let big = "x".repeat(COPY_BELOW + 1);
        let sent = vec![
            Event::Text("small".into()),
            Event::Text(big.clone().into()),
            Event::Binary(Bytes::from_static(&[0, 1, 2])),
            Event::Binary(Bytes::from(vec![7u8; COPY_BELOW * 2])),
            Event::Ping(Bytes::from_static(b"p")),
            Event::Pong(Bytes::from_static(b"q")),
            Event::Close(1000, "bye".into()),
            Event::Text("".into()),
        ];
        for e in sent.clone() {
            sink.stage(e);
        }
        sink.flush();
        let got = poll(&q, 100, Some(Duration::ZERO));
        assert_eq!(got.len(), sent.len());
        for (g, s) in got.iter().zip(&sent) {
            assert_eq!(format!("{:?}", g.event()), format!("{s:?}"));
            assert_eq!(g.name(), "a");
        }
    }

    #[test]
    fn a_busy_connection_stages_into_emptied_batches_and_a_quiet_one_keeps_no_buffer() {
        let q = EventQueue::new();
        let mut sink = Sink::new(q.clone(), "a");
        let mut done = Vec::new();
        let mut pieces = Vec::new();
        let mut buffers = std::collections::HashSet::new();
        for round in 0..50 {
            for _ in 0..REUSE_FROM + 10 {
                sink.stage(text("payload"));
            }
            sink.flush();
            q.poll_blocking(1000, Some(Duration::ZERO), &mut pieces, &mut done);
            let n: usize = pieces.iter().map(Piece::len).sum();
            assert_eq!(n, REUSE_FROM + 10, "round {round}");
            buffers.insert(pieces[0].batch.data.as_ptr() as usize);
            reusable(pieces.drain(..), &mut done);
        }
        // The sink and the pool pass the same few buffers back and forth (a poll gives back
        // the previous poll's batches, so up to four are in use).
        assert!(
            buffers.len() <= 4,
            "{} buffers for 50 batches",
            buffers.len()
        );
        // A few events leave with the sink's buffers: a connection that goes quiet holds none.
        sink.stage(text("one"));
        sink.flush();
        assert_eq!(
            (sink.data.capacity(), sink.items.capacity()),
            (0, 0),
            "a quiet connection kept its buffers"
        );
        assert_eq!(texts(&poll(&q, 8, Some(Duration::ZERO))), ["one"]);
    }

    #[test]
    fn connections_trading_pooled_batches_keep_their_own_names() {
        let q = EventQueue::new();
        let mut done = Vec::new();
        let mut pieces = Vec::new();
        // From the third round on, a connection stages into the batches the other one emptied.
        for name in ["a", "b", "b", "a"] {
            let mut sink = Sink::new(q.clone(), name);
            for _ in 0..REUSE_FROM + 10 {
                sink.stage(text("x"));
            }
            sink.flush();
            // The previous round's batch, emptied, went back to the pool with this poll.
            q.poll_blocking(1000, Some(Duration::ZERO), &mut pieces, &mut done);
            let names: Vec<&str> = pieces.iter().map(|p| p.batch.name.as_str()).collect();
            assert!(
                !names.is_empty() && names.iter().all(|n| *n == name),
                "batches of {name} came as {names:?}"
            );
            reusable(pieces.drain(..), &mut done);
        }
        assert!(!done.is_empty() || !q.lock().pool.is_empty());
    }

    #[test]
    fn a_stream_shows_how_many_events_it_holds_in_debug_output() {
        let q = EventQueue::new();
        let mut sink = Sink::new(q.clone(), "a");
        sink.push(text("1"));
        sink.push(text("2"));
        sink.push(text("3"));
        let mut stream = EventStream::new(q);
        assert!(stream.try_recv().is_some());
        let shown = format!("{stream:?}");
        assert!(shown.contains("buffered: 2"), "{shown}");
    }

    #[test]
    fn a_dropped_stream_gives_back_what_it_took_and_did_not_hand_out() {
        let q = EventQueue::new();
        let mut sink = Sink::new(q.clone(), "a");
        for n in ["1", "2", "3", "4"] {
            sink.stage(text(n));
        }
        sink.flush();
        // A poller takes part of the batch, a stream the rest, of which it hands out one.
        assert_eq!(texts(&poll(&q, 1, Some(Duration::ZERO))), ["1"]);
        let mut stream = EventStream::new(q.clone());
        let first = stream.try_recv().map(|e| texts(&[e]));
        assert_eq!(first, Some(vec!["2".to_string()]));
        assert_eq!(q.len(), 0);
        drop(stream);
        assert_eq!(q.len(), 2);
        sink.push(text("5"));
        assert_eq!(texts(&poll(&q, 8, Some(Duration::ZERO))), ["3", "4", "5"]);
    }

    #[cfg(unix)]
    #[test]
    fn events_a_dropped_stream_gives_back_make_the_descriptor_readable_again() {
        let q = EventQueue::new();
        let mut sink = Sink::new(q.clone(), "a");
        q.event_fd().unwrap();
        sink.push(text("1"));
        sink.push(text("2"));
        let mut stream = EventStream::new(q.clone());
        assert!(stream.try_recv().is_some());
        // The stream holds the second event: the queue is empty and its descriptor quiet.
        assert!(!q.lock().signal.as_ref().unwrap().armed);
        drop(stream);
        assert_eq!(q.len(), 1);
        assert!(q.lock().signal.as_ref().unwrap().armed);
    }

    #[test]
    fn an_event_shows_its_connection_and_what_happened_in_debug_output() {
        let q = EventQueue::new();
        Sink::new(q.clone(), "trades").push(text("hello"));
        let e = poll(&q, 1, Some(Duration::ZERO)).pop().unwrap();
        let shown = format!("{e:?}");
        assert!(
            shown.contains("trades") && shown.contains("hello"),
            "{shown}"
        );
    }

    #[test]
    fn the_event_fd_holds_a_byte_exactly_while_events_wait() {
        use std::io::Read;
        let q = EventQueue::new();
        let mut sink = Sink::new(q.clone(), "a");
        sink.push(text("before the descriptor"));
        // Made on an empty queue, the descriptor is quiet.
        let quiet = EventQueue::new();
        quiet.event_fd().unwrap();
        assert!(!quiet.lock().signal.as_ref().unwrap().armed);
        let fd = q.event_fd().unwrap();
        assert_eq!(q.event_fd().unwrap(), fd);
        let rx = q.lock().signal.as_ref().unwrap().rx.try_clone().unwrap();
        assert!(q.lock().signal.as_ref().unwrap().armed);
        sink.push(text("second"));
        let mut out = poll(&q, 1, Some(Duration::ZERO));
        assert!(
            q.lock().signal.as_ref().unwrap().armed,
            "disarmed with an event left"
        );
        out.extend(poll(&q, 8, Some(Duration::ZERO)));
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

/// A driven poll's window (`ffi::window`): what goes into it, what does not, and that the poll
/// always gets it back.
#[cfg(all(test, feature = "capi"))]
mod window_tests {
    use std::mem::MaybeUninit;

    use super::*;
    use crate::ReadHooks;
    use crate::ffi::window::Kept;
    use crate::ffi::{kh_event, kh_event_kind};

    /// What an event written in place says: kind, payload, connection.
    type Written = (kh_event_kind, Vec<u8>, String);

    fn text(s: &'static str) -> Event {
        Event::Text(s.into())
    }

    /// One driven poll of `q` with room for `cap` events and the `timeout`, during which
    /// `task` runs once as a connection's task on the same thread. Returns the events written
    /// in place (valid while the returned `Kept` lives), the pieces the poll took from the
    /// queue, what `task` returned, and whether the poll ended before half its timeout.
    fn poll_once<T: Send + 'static>(
        q: &Arc<EventQueue>,
        cap: usize,
        timeout: Duration,
        task: impl FnOnce() -> T + Send + 'static,
    ) -> (Vec<kh_event>, Kept, Vec<Piece>, T, bool) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut slots = vec![MaybeUninit::<kh_event>::uninit(); cap];
        let mut window = Some(Window::new(&mut slots, Kept::default()));
        let (mut pieces, mut done) = (Vec::new(), Vec::new());
        let began = Instant::now();
        let (out, early) = rt.block_on(async {
            let task = tokio::spawn(async move { task() });
            // The poll alone is `block_on`'s future: only a wake-up from the connection (or
            // the queue) ends it before its timeout.
            q.poll_async(cap, Some(timeout), &mut pieces, &mut done, &mut window)
                .await;
            let early = began.elapsed() < timeout / 2;
            (task.await.expect("the connection's task panicked"), early)
        });
        let (n, kept) = window.expect("the window came back").finish();
        // SAFETY: the first `n` slots were written.
        let events = slots[..n]
            .iter()
            .map(|s| unsafe { s.assume_init() })
            .collect();
        (events, kept, pieces, out, early)
    }

    /// [`poll_once`] with a task that gets the sinks and gives them back, and a poll that must
    /// be woken. Returns the events written in place, the events the poll took from the queue
    /// (a text as itself, others by kind), and the sinks.
    fn drive(
        q: &Arc<EventQueue>,
        cap: usize,
        sinks: Vec<Sink>,
        conn: impl FnOnce(&mut Vec<Sink>) + Send + 'static,
    ) -> (Vec<Written>, Vec<String>, Vec<Sink>) {
        let (events, kept, pieces, sinks, woken) =
            poll_once(q, cap, Duration::from_secs(5), move || {
                let mut sinks = sinks;
                conn(&mut sinks);
                sinks
            });
        assert!(woken, "the poll was not woken: it waited for its timeout");
        let written = events
            .iter()
            .map(|e| {
                // SAFETY: `kept` holds what the events point into.
                let data = unsafe { std::slice::from_raw_parts(e.data, e.len) }.to_vec();
                let conn = unsafe { std::ffi::CStr::from_ptr(e.conn) };
                (e.kind, data, conn.to_str().unwrap().to_owned())
            })
            .collect();
        drop(kept);
        let queued = pieces
            .iter()
            .flat_map(|p| {
                let (b, items) = p.parts();
                items.iter().map(move |i| match b.event(i) {
                    Event::Text(t) => t.as_str().to_owned(),
                    other => format!("{other:?}"),
                })
            })
            .collect();
        (written, queued, sinks)
    }

    fn read(sink: &mut Sink, events: Vec<Event>) {
        sink.begin_read();
        for e in events {
            sink.stage(e);
        }
        sink.end_read();
        sink.flush();
    }

    #[test]
    fn messages_go_into_an_open_window_in_order_with_their_names() {
        let q = EventQueue::new();
        let big = vec![7u8; COPY_BELOW + 1];
        let sinks = vec![Sink::new(q.clone(), "a"), Sink::new(q.clone(), "b")];
        let b2 = Bytes::from(big.clone());
        let (written, queued, _sinks) = drive(&q, 16, sinks, move |s| {
            read(
                &mut s[0],
                vec![text("1"), Event::Binary(Bytes::from_static(&[2; 10]))],
            );
            read(
                &mut s[1],
                vec![Event::Ping(Bytes::from_static(b"p")), Event::Binary(b2)],
            );
            read(&mut s[0], vec![Event::Pong(Bytes::new()), text("end")]);
        });
        assert!(queued.is_empty(), "nothing should be queued: {queued:?}");
        use kh_event_kind::*;
        let want: Vec<Written> = vec![
            (KH_EVENT_TEXT, b"1".to_vec(), "a".into()),
            (KH_EVENT_BINARY, vec![2; 10], "a".into()),
            (KH_EVENT_PING, b"p".to_vec(), "b".into()),
            (KH_EVENT_BINARY, big, "b".into()),
            (KH_EVENT_PONG, vec![], "a".into()),
            (KH_EVENT_TEXT, b"end".to_vec(), "a".into()),
        ];
        assert_eq!(written, want);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_connection_reads_past_the_window_while_anything_is_queued() {
        let q = EventQueue::new();
        let sinks = vec![Sink::new(q.clone(), "a"), Sink::new(q.clone(), "b")];
        let (written, queued, _sinks) = drive(&q, 16, sinks, |s| {
            // b queues an event after the poll opened its window: a, which may have events
            // in the queue for all the window knows, leaves the window alone.
            s[1].push(text("b1"));
            read(&mut s[0], vec![text("a1")]);
        });
        assert!(written.is_empty(), "{written:?}");
        assert_eq!(queued, ["b1", "a1"]);
    }

    #[test]
    fn nothing_is_lent_while_events_wait_and_the_window_comes_back() {
        let q = EventQueue::new();
        let mut early = Sink::new(q.clone(), "a");
        early.push(text("early"));
        let (written, queued, _sinks) = drive(&q, 16, vec![], |_| {});
        assert!(written.is_empty());
        assert_eq!(queued, ["early"]);
        assert!(!q.window_open.load(Ordering::Relaxed));
        assert!(q.lock().window.is_none());
        // A poll that times out without events gives its window back too.
        let (events, _, pieces, (), woken) = poll_once(&q, 4, Duration::from_millis(5), || ());
        assert!(events.is_empty() && pieces.is_empty());
        assert!(!woken, "nothing to wake it");
        assert!(q.lock().window.is_none());
        assert!(!q.window_open.load(Ordering::Relaxed));
    }

    #[test]
    fn an_event_that_is_not_a_message_ends_the_connections_use_of_the_window() {
        let q = EventQueue::new();
        let sinks = vec![Sink::new(q.clone(), "a")];
        let (written, queued, sinks) = drive(&q, 16, sinks, |s| {
            read(&mut s[0], vec![text("1"), Event::Open, text("2")]);
            // The next read finds its own events queued: no window for it either.
            read(&mut s[0], vec![text("3")]);
        });
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].1, b"1");
        assert!(queued.is_empty(), "the window's events come alone");
        let (written, queued, _) = drive(&q, 16, sinks, |_| {});
        assert!(written.is_empty());
        assert_eq!(queued, ["Open", "2", "3"]);
    }

    #[test]
    fn a_full_window_hands_over_and_what_follows_is_queued() {
        let q = EventQueue::new();
        let sinks = vec![Sink::new(q.clone(), "a")];
        let (written, _, mut sinks) = drive(&q, 2, sinks, |s| {
            let sink = &mut s[0];
            sink.begin_read();
            sink.stage(text("1"));
            assert!(!sink.handover);
            sink.stage(text("2"));
            // Full: the connection gives the poll its turn before reading on.
            assert!(sink.handover && !sink.room);
            assert!(sink.take_handover());
            sink.stage(text("3"));
            sink.end_read();
            sink.flush();
        });
        let texts: Vec<_> = written.iter().map(|w| w.1.clone()).collect();
        assert_eq!(texts, [b"1".to_vec(), b"2".to_vec()]);
        assert_eq!(q.len(), 1);
        drop(sinks.pop());
    }

    #[test]
    fn the_queues_byte_capacity_bounds_a_window() {
        let q = EventQueue::new();
        q.set_byte_capacity(100).unwrap();
        let sinks = vec![Sink::new(q.clone(), "a")];
        let p = || Event::Binary(Bytes::from_static(&[1; 60]));
        let (written, _, _sinks) = drive(&q, 16, sinks, move |s| {
            read(&mut s[0], vec![p(), p(), p()]);
        });
        // Full from the message that reached the bound on: what a queue's take does.
        assert_eq!(written.len(), 2);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn a_sink_dropped_with_the_window_gives_it_back() {
        let q = EventQueue::new();
        let sinks = vec![Sink::new(q.clone(), "gone")];
        let (written, queued, sinks) = drive(&q, 16, sinks, |s| {
            let mut sink = s.pop().unwrap();
            sink.begin_read();
            sink.stage(text("last"));
            drop(sink);
        });
        assert!(sinks.is_empty());
        assert!(queued.is_empty());
        // Its name is kept with the events that point to it.
        assert_eq!(
            written,
            [(
                kh_event_kind::KH_EVENT_TEXT,
                b"last".to_vec(),
                "gone".into()
            )]
        );
    }

    #[test]
    fn a_connection_with_messages_staged_but_not_queued_leaves_the_window_alone() {
        let q = EventQueue::new();
        let mut sink = Sink::new(q.clone(), "a");
        sink.push(text("0"));
        let (_, queued, mut sinks) = drive(&q, 16, vec![sink], |_| {});
        assert_eq!(queued, ["0"]);
        // Staged by a poll of its task that gave up its turn before flushing.
        sinks[0].stage(text("1"));
        assert_eq!(q.len(), 0, "staged, not queued");
        let (written, queued, _sinks) = drive(&q, 16, sinks, |s| {
            read(&mut s[0], vec![text("2")]);
        });
        assert!(written.is_empty(), "{written:?}");
        assert_eq!(queued, ["1", "2"]);
    }

    #[test]
    fn a_polled_connections_hooks_take_the_window_for_a_read_and_give_it_back() {
        let q = EventQueue::new();
        let mut hooks = ReadHooks::polled(Sink::new(q.clone(), "a"), false);
        let mut slots = vec![MaybeUninit::<kh_event>::uninit(); 4];
        q.lend(&mut q.lock(), Window::new(&mut slots, Kept::default()));
        hooks.begin_read();
        assert!(q.lock().window.is_none(), "taken");
        assert!(!q.window_open.load(Ordering::Relaxed));
        hooks.text("a", "x".into());
        hooks.end_read();
        let w = q.lock().window.take().expect("given back");
        assert_eq!(w.len(), 1);
        assert!(
            q.window_open.load(Ordering::Relaxed),
            "open again: not full"
        );
        // Hooks without a sink have nothing to take.
        let mut plain = ReadHooks::default();
        q.lend(&mut q.lock(), w);
        plain.begin_read();
        plain.end_read();
        assert!(q.lock().window.is_some());
    }

    #[test]
    fn only_a_connection_on_the_lending_polls_thread_takes_the_window() {
        let q = EventQueue::new();
        let mut slots = vec![MaybeUninit::<kh_event>::uninit(); 4];
        q.lend(&mut q.lock(), Window::new(&mut slots, Kept::default()));
        // Another thread driving the same manager (a wait beside the poll) runs this one.
        let q2 = q.clone();
        std::thread::spawn(move || {
            let mut sink = Sink::new(q2.clone(), "elsewhere");
            sink.begin_read();
            sink.stage(text("queued"));
            sink.end_read();
            sink.flush();
        })
        .join()
        .unwrap();
        assert_eq!(
            q.lock().window.as_ref().map(|w| w.len()),
            Some(0),
            "not taken"
        );
        assert_eq!(q.len(), 1, "its message went to the queue");
    }

    #[test]
    fn receive_times_go_with_the_messages_they_stamp() {
        let q = EventQueue::new();
        let sinks = vec![Sink::new(q.clone(), "a")];
        let t = ReceiveTime::now();
        let (events, _kept, _, _sinks, _) = poll_once(&q, 4, Duration::from_secs(5), move || {
            let mut s = sinks;
            s[0].begin_read();
            s[0].set_receive_time(t);
            s[0].stage(text("stamped"));
            s[0].set_receive_time(ReceiveTime::NONE);
            s[0].stage(text("plain"));
            s[0].end_read();
            s
        });
        let [a, b] = events[..] else {
            panic!("two events written, not {}", events.len());
        };
        assert_eq!(
            (a.recv_mono_ns, a.recv_wall_ns),
            (t.monotonic_ns(), t.wall_ns())
        );
        assert_eq!((b.recv_mono_ns, b.recv_wall_ns), (0, 0));
    }
}
