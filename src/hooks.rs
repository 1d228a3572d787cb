//! Read hooks: what the caller runs for every frame and lifecycle event of a connection.
//!
//! A connection turns what happens on its socket into [`Event`]s and hands each one to
//! [`ReadHooks::dispatch`], the single place where events meet caller code. For a polled
//! connection the same calls append to the manager's event queue instead (`events.rs`). Hooks
//! of one connection run one at a time, in arrival order, on the connection's own task: a slow
//! hook slows its socket (TCP backpressure) and never causes a message to be dropped.

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::clock::ReceiveTime;
use crate::error::ConnectionError;
use crate::events::Sink;
use crate::handle::StateChange;
use crate::wire::{Data, shared_text};

/// WebSocket opcodes as reported to [`ReadHooks::on_frame`].
pub mod opcode {
    /// A text message.
    pub const TEXT: u8 = 1;
    /// A binary message.
    pub const BINARY: u8 = 2;
    /// A close frame.
    pub const CLOSE: u8 = 8;
    /// A ping frame.
    pub const PING: u8 = 9;
    /// A pong frame.
    pub const PONG: u8 = 10;
}

/// Close status used when the peer's close frame carries none (RFC 6455, 7.1.5).
pub const CLOSE_NO_STATUS: u16 = 1005;

/// One thing that happened on a connection.
///
/// Later versions add kinds of events (state changes and rotations were added this way), so a
/// `match` needs a `_` arm: that keeps a program compiling when a kind is added.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The connection (re)connected and its init messages were queued.
    Open,
    /// A complete text message (fragments already joined).
    Text(Utf8Bytes),
    /// A complete binary message.
    Binary(Bytes),
    /// A ping from the peer (the pong is sent by the library).
    Ping(Bytes),
    /// A pong from the peer.
    Pong(Bytes),
    /// A close frame from the peer: its code (1005 if none) and reason.
    Close(u16, Utf8Bytes),
    /// A failure; the connection reconnects unless the caller closed it. The one exception is
    /// [`InflateFailed`](ConnectionError::InflateFailed): one message could not be inflated,
    /// and the connection goes on.
    Error(ConnectionError),
    /// The lifecycle state changed (see [`StateChange`]). A polled connection's queue carries
    /// it only when the connection was added with
    /// [`PollOptions::state_events`](crate::PollOptions::state_events).
    State(StateChange),
    /// Delivery switched to the fresh socket of a rotation (see
    /// [`Link::rotate`](crate::Link::rotate)). Messages before this event may come from either
    /// socket (each in its own order); after it, from the new one, apart from frames the old one
    /// delivers during its close handshake.
    Rotated,
}

impl Event {
    /// The WebSocket opcode of a frame event, `None` for lifecycle events.
    pub fn opcode(&self) -> Option<u8> {
        match self {
            Event::Text(_) => Some(opcode::TEXT),
            Event::Binary(_) => Some(opcode::BINARY),
            Event::Ping(_) => Some(opcode::PING),
            Event::Pong(_) => Some(opcode::PONG),
            Event::Close(..) => Some(opcode::CLOSE),
            Event::Open | Event::Error(_) | Event::State(_) | Event::Rotated => None,
        }
    }

    /// The payload of a frame event as bytes (for a close frame: the reason).
    pub fn payload(&self) -> &[u8] {
        match self {
            Event::Text(t) => t.as_bytes(),
            Event::Binary(b) | Event::Ping(b) | Event::Pong(b) => b,
            Event::Close(_, reason) => reason.as_bytes(),
            Event::Open | Event::Error(_) | Event::State(_) | Event::Rotated => &[],
        }
    }
}

type Hook<A> = Option<Box<dyn FnMut(&str, A) + Send>>;

/// A text or binary hook: given the payload as its own reference-counted view, or lent it for
/// the length of the call (cheaper: no reference is taken).
#[allow(clippy::type_complexity)]
enum PayloadHook<O, B: ?Sized> {
    Owned(Box<dyn FnMut(&str, O) + Send>),
    Lent(Box<dyn FnMut(&str, &B) + Send>),
}

impl<O: AsRef<B>, B: ?Sized> PayloadHook<O, B> {
    #[inline]
    fn run(&mut self, name: &str, payload: O) {
        match self {
            PayloadHook::Owned(f) => f(name, payload),
            PayloadHook::Lent(f) => f(name, payload.as_ref()),
        }
    }
}

/// Callbacks for one connection. Every hook is optional and receives the connection's name
/// first. Payloads are handed over without copying (`Bytes` and `Utf8Bytes` are reference
/// counted views of the received buffer: keep them as long as you like).
///
/// ```
/// use kharbranth::ReadHooks;
/// let hooks = ReadHooks::new()
///     .on_text(|name, text| println!("{name}: {}", text.as_str()))
///     .on_error(|name, err| eprintln!("{name}: {err}"));
/// # drop(hooks);
/// ```
#[derive(Default)]
#[allow(clippy::type_complexity)]
pub struct ReadHooks {
    on_open: Option<Box<dyn FnMut(&str) + Send>>,
    on_text: Option<PayloadHook<Utf8Bytes, str>>,
    on_binary: Option<PayloadHook<Bytes, [u8]>>,
    on_ping: Hook<Bytes>,
    on_pong: Hook<Bytes>,
    on_close: Option<Box<dyn FnMut(&str, u16, &str) + Send>>,
    on_error: Option<Box<dyn FnMut(&str, &ConnectionError) + Send>>,
    on_drop: Option<Box<dyn FnOnce() + Send>>,
    on_state: Option<Box<dyn FnMut(&str, &StateChange) + Send>>,
    on_rotated: Option<Box<dyn FnMut(&str) + Send>>,
    /// `on_frame`, or the event queue of a polled connection (which has no hooks).
    tap: Tap,
    /// A polled connection's state changes go to its queue too (opt-in: existing pollers see
    /// exactly the events they saw before).
    sink_states: bool,
}

/// What a message meets before its type-specific hook. `on_frame` and a polled connection's
/// event queue exclude each other, and sharing one field lets a message tell the three ways
/// apart in one test: the hook path tests what it tested before (whether there is an
/// `on_frame`), and a polled connection's message reaches its queue without passing the
/// hooks' tests.
#[derive(Default)]
#[allow(clippy::type_complexity)]
enum Tap {
    /// Type-specific hooks only.
    #[default]
    Hooks,
    /// `on_frame` first, then the type-specific hook.
    Frame(Box<dyn FnMut(&str, u8, &[u8]) + Send>),
    /// A polled connection: every event goes to the manager's event queue. Boxed: hook users
    /// pay one pointer for it.
    Sink(Box<Sink>),
}

impl Drop for ReadHooks {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take()
            && catch_unwind(AssertUnwindSafe(f)).is_err()
        {
            log::error!("an on_drop hook panicked");
        }
    }
}

impl std::fmt::Debug for ReadHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadHooks")
            .field("on_open", &self.on_open.is_some())
            .field("on_text", &self.on_text.is_some())
            .field("on_binary", &self.on_binary.is_some())
            .field("on_ping", &self.on_ping.is_some())
            .field("on_pong", &self.on_pong.is_some())
            .field("on_close", &self.on_close.is_some())
            .field("on_frame", &matches!(self.tap, Tap::Frame(_)))
            .field("on_error", &self.on_error.is_some())
            .field("on_drop", &self.on_drop.is_some())
            .field("on_state", &self.on_state.is_some())
            .field("on_rotated", &self.on_rotated.is_some())
            .field("polled", &matches!(self.tap, Tap::Sink(_)))
            .field("polled_states", &self.sink_states)
            .finish()
    }
}

impl ReadHooks {
    /// Hooks that do nothing.
    pub fn new() -> Self {
        Self::default()
    }
    /// Runs after every successful connect and reconnect.
    pub fn on_open(mut self, f: impl FnMut(&str) + Send + 'static) -> Self {
        self.on_open = Some(Box::new(f));
        self
    }
    /// Runs for every complete text message.
    pub fn on_text(mut self, f: impl FnMut(&str, Utf8Bytes) + Send + 'static) -> Self {
        self.on_text = Some(PayloadHook::Owned(Box::new(f)));
        self
    }
    /// Runs for every complete text message, lent for the length of the call: no reference
    /// to the received buffer is taken, which makes it the faster hook when the text is not
    /// kept. Replaces an [`on_text`](Self::on_text) hook (and is replaced by one).
    pub fn on_text_ref(mut self, f: impl FnMut(&str, &str) + Send + 'static) -> Self {
        self.on_text = Some(PayloadHook::Lent(Box::new(f)));
        self
    }
    /// Runs for every complete binary message.
    pub fn on_binary(mut self, f: impl FnMut(&str, Bytes) + Send + 'static) -> Self {
        self.on_binary = Some(PayloadHook::Owned(Box::new(f)));
        self
    }
    /// Runs for every complete binary message, lent for the length of the call (see
    /// [`on_text_ref`](Self::on_text_ref)). Replaces an [`on_binary`](Self::on_binary) hook
    /// (and is replaced by one).
    pub fn on_binary_ref(mut self, f: impl FnMut(&str, &[u8]) + Send + 'static) -> Self {
        self.on_binary = Some(PayloadHook::Lent(Box::new(f)));
        self
    }
    /// Runs for every ping from the peer (answered by the library).
    pub fn on_ping(mut self, f: impl FnMut(&str, Bytes) + Send + 'static) -> Self {
        self.on_ping = Some(Box::new(f));
        self
    }
    /// Runs for every pong from the peer.
    pub fn on_pong(mut self, f: impl FnMut(&str, Bytes) + Send + 'static) -> Self {
        self.on_pong = Some(Box::new(f));
        self
    }
    /// Runs for a close frame from the peer, with its code (1005 when it has none) and reason.
    pub fn on_close(mut self, f: impl FnMut(&str, u16, &str) + Send + 'static) -> Self {
        self.on_close = Some(Box::new(f));
        self
    }
    /// Runs for every received frame with its opcode (see [`opcode`]), before the
    /// type-specific hook.
    pub fn on_frame(mut self, f: impl FnMut(&str, u8, &[u8]) + Send + 'static) -> Self {
        self.tap = Tap::Frame(Box::new(f));
        self
    }
    /// Runs for every failure.
    pub fn on_error(mut self, f: impl FnMut(&str, &ConnectionError) + Send + 'static) -> Self {
        self.on_error = Some(Box::new(f));
        self
    }

    /// Runs for every lifecycle state change: connecting (the first attempt), open, reconnecting
    /// (with the failure that caused it; once per outage), closing (only when an open socket
    /// is closed) and closed. An open after the first one
    /// carries the gap: connect attempts since the drop and how long the connection was down.
    /// `State(Open)` runs just before [`on_open`](Self::on_open). Never on the per-message path.
    pub fn on_state(mut self, f: impl FnMut(&str, &StateChange) + Send + 'static) -> Self {
        self.on_state = Some(Box::new(f));
        self
    }

    /// Runs when a rotation switched delivery to its fresh socket ([`Event::Rotated`]); the
    /// old socket is closed with 1000 right after.
    pub fn on_rotated(mut self, f: impl FnMut(&str) + Send + 'static) -> Self {
        self.on_rotated = Some(Box::new(f));
        self
    }

    /// Runs once when the hooks are dropped: the connection has stopped for good (closed,
    /// given up, or its manager shut down) and no other hook of it will run.
    pub fn on_drop(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_drop = Some(Box::new(f));
        self
    }

    /// Delivery into an event queue instead of callbacks (a polled connection); with
    /// `states`, lifecycle state changes are queued too.
    pub(crate) fn polled(sink: Sink, states: bool) -> Self {
        let mut hooks = Self::default();
        hooks.tap = Tap::Sink(Box::new(sink));
        hooks.sink_states = states;
        hooks
    }

    /// A text message: straight to `on_text` when no `on_frame` hook is set (the hot path of a
    /// feed), to a polled connection's queue, else through [`dispatch`](Self::dispatch).
    #[inline]
    pub(crate) fn text(&mut self, name: &str, t: Utf8Bytes) {
        match &mut self.tap {
            Tap::Hooks => {
                if let Some(f) = self.on_text.as_mut() {
                    contain(name, || f.run(name, t));
                }
            }
            Tap::Sink(s) => s.stage(Event::Text(t)),
            Tap::Frame(_) => self.dispatch(name, Event::Text(t)),
        }
    }

    /// A binary message, like [`text`](Self::text).
    #[inline]
    pub(crate) fn binary(&mut self, name: &str, b: Bytes) {
        match &mut self.tap {
            Tap::Hooks => {
                if let Some(f) = self.on_binary.as_mut() {
                    contain(name, || f.run(name, b));
                }
            }
            Tap::Sink(s) => s.stage(Event::Binary(b)),
            Tap::Frame(_) => self.dispatch(name, Event::Binary(b)),
        }
    }

    /// A text or binary message read from the wire's buffer, like [`text`](Self::text) and
    /// [`binary`](Self::binary): a reference to the buffer is taken only for a consumer that
    /// keeps the payload.
    #[inline]
    pub(crate) fn data(&mut self, name: &str, d: Data<'_>) {
        match &mut self.tap {
            Tap::Hooks => {}
            Tap::Sink(s) => return s.stage_data(d),
            Tap::Frame(_) => return self.dispatch(name, data_event(d)),
        }
        match d {
            Data::Text(t, seg) => match self.on_text.as_mut() {
                Some(PayloadHook::Lent(f)) => contain(name, || f(name, t)),
                Some(PayloadHook::Owned(f)) => contain(name, || f(name, shared_text(t, seg))),
                None => {}
            },
            Data::Binary(b, _) => match self.on_binary.as_mut() {
                Some(PayloadHook::Lent(f)) => contain(name, || f(name, b)),
                Some(PayloadHook::Owned(f)) => contain(name, || f(name, d.to_bytes())),
                None => {}
            },
        }
    }

    /// Ready when the next frame may be read: always for hooks (a slow hook holds its
    /// connection by running), and for a polled connection when its event queue has room.
    /// Otherwise the task is woken when a poll frees room.
    #[inline]
    pub(crate) fn poll_room(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match self.sink() {
            None => std::task::Poll::Ready(()),
            Some(s) => s.poll_room(cx),
        }
    }

    /// The receive time of the frame about to be delivered (or, with
    /// [`ReceiveTime::NONE`], none): for hooks through [`receive_time`](crate::receive_time),
    /// for a polled connection on the events it queues. Called only with receive timestamps
    /// on, twice per frame.
    #[inline]
    pub(crate) fn set_receive_time(&mut self, t: ReceiveTime) {
        match self.sink() {
            None => crate::clock::set_hook_time(t),
            Some(s) => s.set_receive_time(t),
        }
    }

    /// Hands a polled connection's staged messages to the event queue (see `Sink::stage`);
    /// nothing for hooks. Called whenever the connection stops reading for now.
    #[inline]
    pub(crate) fn flush(&mut self) {
        if let Some(s) = self.sink() {
            s.flush();
        }
    }

    /// Before a poll of the connection's task reads: a polled connection may take a driven
    /// poll's array to write into (see `Sink::begin_read`); nothing for hooks.
    #[inline]
    pub(crate) fn begin_read(&mut self) {
        if let Some(s) = self.sink() {
            s.begin_read();
        }
    }

    /// After a poll of the connection's task: gives back what [`begin_read`](Self::begin_read)
    /// took.
    #[inline]
    pub(crate) fn end_read(&mut self) {
        if let Some(s) = self.sink() {
            s.end_read();
        }
    }

    /// After `poll_room` was pending: whether that was a polled connection's hand-over to a
    /// consumer task rather than a full queue (see `Sink::take_handover`).
    pub(crate) fn take_handover(&mut self) -> bool {
        self.sink().is_some_and(|s| s.take_handover())
    }

    /// A lifecycle state change: to `on_state`, or to a polled connection's queue when it
    /// asked for state events (an existing poller's event sequence stays as it was). Kept out
    /// of [`dispatch`](Self::dispatch) so that the frame path has no test for it.
    pub(crate) fn state(&mut self, name: &str, change: StateChange) {
        match &mut self.tap {
            Tap::Hooks | Tap::Frame(_) => {
                contain(name, || self.dispatch_inner(name, Event::State(change)))
            }
            // Like open and error events, never held back for room.
            Tap::Sink(s) if self.sink_states => s.push(Event::State(change)),
            Tap::Sink(_) => {}
        }
    }

    /// A polled connection's sink.
    #[inline]
    fn sink(&mut self) -> Option<&mut Sink> {
        match &mut self.tap {
            Tap::Sink(s) => Some(s),
            _ => None,
        }
    }

    /// Disarms `on_drop` (used when the hooks were never taken by a connection).
    pub(crate) fn forget_on_drop(&mut self) {
        self.on_drop = None;
    }

    /// Hands one event to the hooks: `on_frame` first for frames, then the type-specific hook.
    /// A panicking Rust hook is logged and contained; the connection goes on.
    pub fn dispatch(&mut self, name: &str, event: Event) {
        if let Some(s) = self.sink() {
            return s.push(event);
        }
        contain(name, || self.dispatch_inner(name, event));
    }

    fn dispatch_inner(&mut self, name: &str, event: Event) {
        if let (Tap::Frame(f), Some(op)) = (&mut self.tap, event.opcode()) {
            f(name, op, event.payload());
        }
        match event {
            Event::Open => call(&mut self.on_open, |f| f(name)),
            Event::Text(t) => {
                if let Some(f) = self.on_text.as_mut() {
                    f.run(name, t);
                }
            }
            Event::Binary(b) => {
                if let Some(f) = self.on_binary.as_mut() {
                    f.run(name, b);
                }
            }
            Event::Ping(b) => call(&mut self.on_ping, |f| f(name, b)),
            Event::Pong(b) => call(&mut self.on_pong, |f| f(name, b)),
            Event::Close(code, reason) => call(&mut self.on_close, |f| f(name, code, &reason)),
            Event::Error(e) => call(&mut self.on_error, |f| f(name, &e)),
            Event::State(c) => call(&mut self.on_state, |f| f(name, &c)),
            Event::Rotated => call(&mut self.on_rotated, |f| f(name)),
        }
    }
}

/// The event of a message read from the wire's buffer.
fn data_event(d: Data<'_>) -> Event {
    match d {
        Data::Text(t, seg) => Event::Text(shared_text(t, seg)),
        Data::Binary(..) => Event::Binary(d.to_bytes()),
    }
}

/// Runs hook code; a panic in it is logged and contained, and the connection goes on.
#[inline]
fn contain(name: &str, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        log::error!("[{name}] a hook panicked; the event was dropped by that hook");
    }
}

#[inline]
fn call<F: ?Sized>(hook: &mut Option<Box<F>>, run: impl FnOnce(&mut F)) {
    if let Some(f) = hook.as_mut() {
        run(f);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Hooks that write one line per call into a shared log.
    fn recording() -> (ReadHooks, Arc<Mutex<Vec<String>>>) {
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = |log: &Arc<Mutex<Vec<String>>>| {
            let log = log.clone();
            move |s: String| log.lock().unwrap().push(s)
        };
        let (a, b, c, d, e, f, g, h, i) = (
            l(&log),
            l(&log),
            l(&log),
            l(&log),
            l(&log),
            l(&log),
            l(&log),
            l(&log),
            l(&log),
        );
        let hooks = ReadHooks::new()
            .on_open(move |n| a(format!("{n} open")))
            .on_text(move |n, t| b(format!("{n} text {}", t.as_str())))
            .on_binary(move |n, p| c(format!("{n} binary {p:?}")))
            .on_ping(move |n, p| d(format!("{n} ping {p:?}")))
            .on_pong(move |n, p| e(format!("{n} pong {p:?}")))
            .on_close(move |n, code, r| f(format!("{n} close {code} {r}")))
            .on_error(move |n, err| g(format!("{n} error {err}")))
            .on_frame(move |n, op, p| h(format!("{n} frame {op} {}", p.len())))
            .on_drop(move || i("dropped".into()));
        (hooks, log)
    }

    fn take(log: &Mutex<Vec<String>>) -> Vec<String> {
        std::mem::take(&mut *log.lock().unwrap())
    }

    #[test]
    fn each_event_reaches_its_own_hook_after_on_frame() {
        let (mut hooks, log) = recording();
        hooks.dispatch("c", Event::Open);
        hooks.text("c", Utf8Bytes::from_static("hi"));
        hooks.binary("c", Bytes::from_static(b"\x01\x02"));
        hooks.dispatch("c", Event::Ping(Bytes::from_static(b"p")));
        hooks.dispatch("c", Event::Pong(Bytes::from_static(b"qq")));
        hooks.dispatch("c", Event::Close(4000, Utf8Bytes::from_static("bye")));
        hooks.dispatch("c", Event::Error(ConnectionError::ShuttingDown));
        assert_eq!(
            take(&log),
            [
                "c open",
                "c frame 1 2",
                "c text hi",
                "c frame 2 2",
                "c binary b\"\\x01\\x02\"",
                "c frame 9 1",
                "c ping b\"p\"",
                "c frame 10 2",
                "c pong b\"qq\"",
                "c frame 8 3",
                "c close 4000 bye",
                "c error the manager is shutting down",
            ]
        );
        drop(hooks);
        assert_eq!(take(&log), ["dropped"]);
    }

    /// A message read from the wire's buffer reaches a lent hook as the bytes where they lie,
    /// and an owned hook as a view of the same buffer; with `on_frame` set it goes the
    /// dispatch way, to both. Setting one kind of text hook replaces the other.
    #[test]
    fn lent_and_owned_hooks_see_the_payload_where_it_was_read() {
        let seg = Bytes::from_static(b"..hi..\x01\x02");
        let text = Data::Text(std::str::from_utf8(&seg[2..4]).unwrap(), &seg);
        let binary = Data::Binary(&seg[6..8], &seg);
        let at = |p: &[u8]| p.as_ptr() as usize - seg.as_ptr() as usize;
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (l1, l2, l3, l4, l5) = (
            log.clone(),
            log.clone(),
            log.clone(),
            log.clone(),
            log.clone(),
        );
        let base = seg.as_ptr() as usize;
        let mut lent = ReadHooks::new()
            .on_text(|_, _| panic!("replaced by on_text_ref"))
            .on_text_ref(move |n, t| {
                let off = t.as_ptr() as usize - base;
                l1.lock()
                    .unwrap()
                    .push(format!("{n} lent text {t} at {off}"));
            })
            .on_binary_ref(move |n, b| {
                let off = b.as_ptr() as usize - base;
                l2.lock()
                    .unwrap()
                    .push(format!("{n} lent binary {b:?} at {off}"));
            });
        lent.data("c", text);
        lent.data("c", binary);
        let mut owned = ReadHooks::new()
            .on_text_ref(|_, _| panic!("replaced by on_text"))
            .on_text(move |n, t| {
                let off = t.as_str().as_ptr() as usize - base;
                l3.lock()
                    .unwrap()
                    .push(format!("{n} owned text {t} at {off}"));
            })
            .on_binary(move |n, b| {
                let off = b.as_ptr() as usize - base;
                l4.lock()
                    .unwrap()
                    .push(format!("{n} owned binary {b:?} at {off}"));
            })
            .on_frame(move |n, op, p| {
                l5.lock()
                    .unwrap()
                    .push(format!("{n} frame {op} {}", p.len()))
            });
        owned.data("c", text);
        owned.data("c", binary);
        assert_eq!(at(text.payload()), 2);
        assert_eq!(
            take(&log),
            [
                "c lent text hi at 2",
                "c lent binary [1, 2] at 6",
                "c frame 1 2",
                "c owned text hi at 2",
                "c frame 2 2",
                "c owned binary b\"\\x01\\x02\" at 6",
            ]
        );
    }

    #[test]
    fn without_on_frame_text_and_binary_go_straight_to_their_hooks() {
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (l1, l2) = (log.clone(), log.clone());
        let mut hooks = ReadHooks::new()
            .on_text(move |n, t| l1.lock().unwrap().push(format!("{n} {}", t.as_str())))
            .on_binary(move |n, b| l2.lock().unwrap().push(format!("{n} {}", b.len())));
        hooks.text("c", Utf8Bytes::from_static("x"));
        hooks.binary("c", Bytes::from_static(b"abc"));
        assert_eq!(take(&log), ["c x", "c 3"]);
        // No hook set at all: nothing runs, nothing fails.
        let mut none = ReadHooks::new();
        none.text("c", Utf8Bytes::from_static("x"));
        none.binary("c", Bytes::new());
        none.dispatch("c", Event::Open);
    }

    #[test]
    fn a_panicking_hook_is_contained_and_later_events_still_arrive() {
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = log.clone();
        let mut hooks = ReadHooks::new().on_text(move |_, t| {
            if t.as_str() == "boom" {
                panic!("hook failure on purpose");
            }
            l.lock().unwrap().push(t.as_str().to_string());
        });
        hooks.text("c", Utf8Bytes::from_static("boom"));
        hooks.text("c", Utf8Bytes::from_static("after"));
        assert_eq!(take(&log), ["after"]);
        // A panicking on_drop is contained as well.
        drop(ReadHooks::new().on_drop(|| panic!("on_drop failure on purpose")));
    }

    #[test]
    fn forgotten_on_drop_never_runs() {
        let (mut hooks, log) = recording();
        hooks.forget_on_drop();
        drop(hooks);
        assert!(take(&log).is_empty());
    }

    #[test]
    fn frame_events_name_their_opcode_and_payload_lifecycle_events_none() {
        let close = Event::Close(1000, Utf8Bytes::from_static("why"));
        assert_eq!(
            (close.opcode(), close.payload()),
            (Some(opcode::CLOSE), &b"why"[..])
        );
        let text = Event::Text(Utf8Bytes::from_static("t"));
        assert_eq!(
            (text.opcode(), text.payload()),
            (Some(opcode::TEXT), &b"t"[..])
        );
        for e in [Event::Open, Event::Error(ConnectionError::ShuttingDown)] {
            assert_eq!((e.opcode(), e.payload()), (None, &b""[..]));
        }
    }

    #[test]
    fn debug_lists_which_hooks_are_set() {
        let s = format!("{:?}", ReadHooks::new().on_text(|_, _| {}));
        assert!(
            s.contains("on_text: true") && s.contains("on_open: false"),
            "{s}"
        );
    }
}
