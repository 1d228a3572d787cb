//! Events without callbacks from C: `kh_manager_add_polled`, `kh_manager_poll` filling an array
//! of `kh_event`, the event descriptor for an event loop, and the wake-up.
//!
//! A poll lends the caller the events it returns (their names, payloads and error messages
//! stay where the queue holds them) until the next poll, which gives them back: a payload is
//! copied at most once on its way from the socket to the caller (into its batch when it is
//! queued, if it is under 4 KiB; see `events::Batch`). A driven manager's poll skips the
//! queue for the messages its connections read while it waits: they are written into the
//! caller's array in place, pointing where their payloads were read (see `super::window`).

use std::ffi::{CString, c_char, c_int};
use std::mem::MaybeUninit;
use std::sync::Mutex;
use std::time::Duration;

use super::boundary::{Out, arg_out_array, arg_ref, arg_str, guard};
use super::manager::manager;
use super::result::error_message;
use super::runtime::in_callback;
use super::window::{Kept, Window};
use super::{kh_config, kh_conn_state, kh_result};
use crate::error::ConnectionError;
use crate::events::{Batch, Item, Kind, Owned, Piece, reusable};
use crate::hooks::Event;
use crate::poll_options::PollOptions;

/// What a `kh_event` reports. Values are fixed; a later version may add kinds, so skip an event
/// whose kind you do not know.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum kh_event_kind {
    /// The connection opened (after every successful connect and reconnect).
    KH_EVENT_OPEN = 1,
    /// A complete text message (UTF-8, not NUL-terminated) in `data`/`len`.
    KH_EVENT_TEXT = 2,
    /// A complete binary message in `data`/`len`.
    KH_EVENT_BINARY = 3,
    /// A ping from the peer (the library answers it), its payload in `data`/`len`.
    KH_EVENT_PING = 4,
    /// A pong from the peer, its payload in `data`/`len`.
    KH_EVENT_PONG = 5,
    /// A close frame from the peer: `close_code` (1005 when it carried none) and the reason
    /// (UTF-8, not NUL-terminated) in `data`/`len`.
    KH_EVENT_CLOSE = 6,
    /// A failure: its code in `error` and a NUL-terminated message in `data` (`len` bytes
    /// before the NUL). The same failures `on_error` reports, with the same consequences.
    KH_EVENT_ERROR = 7,
    /// A lifecycle state change, queued only for a connection added with
    /// `kh_manager_add_polled_ex` and `KH_POLL_STATE_EVENTS`: the same changes `on_state` of
    /// `kh_hooks_ex` gets (see `kh_state_change`), in the same place among the connection's
    /// events (`KH_STATE_OPEN` just before `KH_EVENT_OPEN`). `state` is the `kh_conn_state`
    /// entered; `error` the failure that caused it (`KH_OK` when none did) with its message,
    /// NUL-terminated, in `data` (`len` bytes before the NUL; "" when `error` is `KH_OK`); on
    /// an open after a drop `attempts` and `down_for_ns` carry the gap and `recv_wall_ns` the
    /// time of the last data message before the drop (0 otherwise). Like
    /// open and error events, never held back while the queue is full.
    KH_EVENT_STATE = 8,
    /// A rotation (`kh_manager_rotate` or the maximum connection age) switched delivery to its
    /// fresh socket; the old one is closed with 1000 right after. Messages before this event
    /// may come from either socket, each socket's in order, so a feed with sequence numbers
    /// can drop duplicates; none is lost. No data.
    KH_EVENT_ROTATED = 9,
}

/// One event of a connection added with `kh_manager_add_polled`, as written by
/// `kh_manager_poll`.
///
/// Layout: `sizeof(kh_event)` is 64 bytes and stays 64 in every later version. New members took
/// the place of reserved ones, which older libraries wrote as 0, so an array allocated by a
/// program built against an older header keeps working with this library. Every byte is used
/// now: a later version adds what it must say through members that mean something only for
/// new kinds or options, never by moving one.
///
/// Lifetime: `conn` and `data` point into the library's memory (a payload is copied at most
/// once, when it is queued, and never for the caller) and stay valid until the next
/// `kh_manager_poll` on the same manager (from any thread) or `kh_manager_free`, whichever comes
/// first: copy what you keep longer. `conn` is the connection's NUL-terminated name; `data` is
/// never NULL (it may point to 0 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct kh_event {
    /// What happened.
    pub kind: kh_event_kind,
    /// For `KH_EVENT_ERROR` the failure's code, otherwise `KH_OK`.
    pub error: kh_result,
    /// For `KH_EVENT_CLOSE` the peer's close code, otherwise 0.
    pub close_code: u16,
    /// For `KH_EVENT_STATE` the state entered (a `kh_conn_state` value), otherwise 0.
    pub state: u16,
    /// For `KH_EVENT_STATE` on an open after a drop: connect attempts since the drop, this
    /// successful one included (at least 1). Otherwise 0.
    pub attempts: u32,
    /// The connection's name (NUL-terminated).
    pub conn: *const c_char,
    /// The payload, close reason or error message (see `kind`).
    pub data: *const u8,
    /// Bytes at `data` (for an error message: before its NUL).
    pub len: usize,
    /// For `KH_EVENT_STATE` on an open after a drop: how long the connection was not open, in
    /// nanoseconds (at least 1). Otherwise 0.
    pub down_for_ns: u64,
    /// For a frame (text, binary, ping, pong, close) of a
    /// connection with `kh_config_set_receive_timestamps`: when it was received, in
    /// `CLOCK_MONOTONIC` nanoseconds (see that function for which read stamps a message).
    /// Otherwise 0.
    pub recv_mono_ns: u64,
    /// The same receive time in wall-clock nanoseconds since the Unix epoch
    /// (`CLOCK_REALTIME`). For `KH_EVENT_STATE` on an open after a drop: when the last data
    /// message before the drop was received (`last_message_wall_ns` of `kh_state_change`; 0
    /// when none was), whatever the option. Otherwise 0.
    pub recv_wall_ns: u64,
}

const _: () = assert!(size_of::<kh_event>() == 64);

impl kh_event {
    /// An event of `kind` on `conn` with `len` bytes at `data`; every other member 0
    /// (`KH_OK`), for the kind-specific ones to be filled in.
    #[inline]
    pub(crate) fn new(
        kind: kh_event_kind,
        conn: *const c_char,
        data: *const u8,
        len: usize,
    ) -> Self {
        Self {
            kind,
            error: kh_result::KH_OK,
            close_code: 0,
            state: 0,
            attempts: 0,
            conn,
            data,
            len,
            down_for_ns: 0,
            recv_mono_ns: 0,
            recv_wall_ns: 0,
        }
    }
}

/// The events of the last poll and the error messages made for it, kept until the next poll.
#[derive(Default)]
pub(crate) struct Lent {
    pieces: Vec<Piece>,
    /// Boxed C strings: their bytes do not move when the vector grows.
    messages: Vec<CString>,
    /// Batches emptied after the last poll, for the queue's pool.
    done: Vec<std::sync::Arc<Batch>>,
    /// What the events a driven poll's connections wrote into its array point into (see
    /// `super::window`).
    kept: Kept,
}

impl Lent {
    #[inline]
    fn describe(&mut self, batch: &Batch, item: &Item) -> kh_event {
        static EMPTY: [u8; 0] = [];
        let mut out = kh_event::new(
            kh_event_kind::KH_EVENT_OPEN,
            batch.name().as_c_ptr(),
            EMPTY.as_ptr(),
            0,
        );
        let Some(kind) = item.kind else {
            return self.describe_owned(batch.owned(item), out);
        };
        let kind = message_kind(kind);
        let data = batch.payload(item);
        out.kind = kind;
        out.data = data.as_ptr();
        out.len = data.len();
        out
    }

    /// A large message, lifecycle event or close frame; its strings live in the batch or in
    /// `messages`.
    #[cold]
    fn describe_owned(&mut self, owned: &Owned, mut out: kh_event) -> kh_event {
        static EMPTY: [u8; 0] = [];
        let (kind, data): (kh_event_kind, &[u8]) = match owned {
            Owned::Payload(kind, b) => (message_kind(*kind), b),
            Owned::Event(e) => match e {
                Event::Open => (kh_event_kind::KH_EVENT_OPEN, &EMPTY),
                Event::Text(t) => (kh_event_kind::KH_EVENT_TEXT, t.as_bytes()),
                Event::Binary(b) => (kh_event_kind::KH_EVENT_BINARY, b),
                Event::Ping(b) => (kh_event_kind::KH_EVENT_PING, b),
                Event::Pong(b) => (kh_event_kind::KH_EVENT_PONG, b),
                Event::Close(code, reason) => {
                    out.close_code = *code;
                    (kh_event_kind::KH_EVENT_CLOSE, reason.as_bytes())
                }
                Event::Error(err) => {
                    out.error = kh_result::from(err);
                    (kh_event_kind::KH_EVENT_ERROR, self.message(err))
                }
                // Queued only for connections that asked for them (`KH_POLL_STATE_EVENTS`).
                Event::State(c) => {
                    out.state = kh_conn_state::from(c.state) as u16;
                    out.attempts = c.attempts;
                    out.down_for_ns = super::hooks::duration_ns(c.down_for);
                    out.recv_wall_ns = super::hooks::wall_ns(c.last_message_at);
                    let msg = match &c.reason {
                        Some(err) => {
                            out.error = kh_result::from(err);
                            self.message(err)
                        }
                        None => &EMPTY,
                    };
                    (kh_event_kind::KH_EVENT_STATE, msg)
                }
                Event::Rotated => (kh_event_kind::KH_EVENT_ROTATED, &EMPTY),
            },
        };
        out.kind = kind;
        out.data = data.as_ptr();
        out.len = data.len();
        out
    }
    /// Writes the events of `pieces` (which the queue handed out for at most `slots.len()`
    /// events) to `slots`, in order; returns how many.
    fn fill(&mut self, pieces: &[Piece], slots: &mut [MaybeUninit<kh_event>]) -> usize {
        let mut n = 0;
        for piece in pieces {
            let (batch, items) = piece.parts();
            // One look per batch: only connections with receive timestamps have times.
            if batch.has_times() {
                let first = piece.first();
                for (k, (slot, item)) in slots[n..].iter_mut().zip(items).enumerate() {
                    let mut e = self.describe(batch, item);
                    if let Some(t) = batch.received_at(first + k) {
                        e.recv_mono_ns = t.monotonic_ns();
                        e.recv_wall_ns = t.wall_ns();
                    }
                    slot.write(e);
                }
            } else {
                for (slot, item) in slots[n..].iter_mut().zip(items) {
                    slot.write(self.describe(batch, item));
                }
            }
            n += items.len();
        }
        n
    }

    /// An error's NUL-terminated message, kept until the next poll; the bytes before the NUL.
    fn message(&mut self, err: &ConnectionError) -> &[u8] {
        self.messages.push(error_message(err));
        self.messages.last().map_or(&[][..], |m| m.as_bytes())
    }
}

#[inline]
pub(super) fn message_kind(kind: Kind) -> kh_event_kind {
    match kind {
        Kind::Text => kh_event_kind::KH_EVENT_TEXT,
        Kind::Binary => kh_event_kind::KH_EVENT_BINARY,
        Kind::Ping => kh_event_kind::KH_EVENT_PING,
        Kind::Pong => kh_event_kind::KH_EVENT_PONG,
    }
}

/// The lent events of a manager; one poll at a time uses them.
pub(crate) type LentEvents = Mutex<Lent>;

/// Adds a connection like `kh_manager_add`, without callbacks: its events (open, text, binary,
/// ping, pong, close, error) go to the manager's event queue, which `kh_manager_poll` empties.
/// One manager may hold connections of both kinds.
///
/// The queue is bounded, in events (`kh_manager_set_event_capacity`) and in payload bytes
/// (`kh_manager_set_event_byte_capacity`). While it is full, polled connections stop reading
/// their sockets until a poll takes events: TCP slows the peers, nothing is dropped, and no
/// runtime thread is held. Each connection may put one message beyond either capacity, and
/// open and error events are never held back. A connection waiting for room does
/// not time out its heartbeat (the answer may wait unread), and a close of it waits for room
/// too, up to its close timeout. Fails like `kh_manager_add`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_add_polled(
    mgr: *mut super::kh_manager,
    name: *const c_char,
    cfg: *const kh_config,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers, per the header.
        let (m, name, cfg) =
            unsafe { (manager(mgr)?, arg_str(name, "name")?, arg_ref(cfg, "cfg")?) };
        m.manager.add_polled(name, cfg.build()?)
    })
}

/// Sets how many events the manager's queue holds before polled connections stop reading:
/// 1 to 16777216 (the default is 65536). The queue grows on demand, so a large capacity costs
/// memory only while events wait. May be called at any time; a larger capacity lets waiting
/// connections read again at once. `KH_INVALID_ARGUMENT` outside that range.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_set_event_capacity(
    mgr: *mut super::kh_manager,
    capacity: usize,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or a valid manager, per the header.
        let m = unsafe { manager(mgr) }?;
        m.manager.set_event_capacity(capacity)
    })
}

/// Sets how many payload bytes the manager's queue holds before polled connections stop
/// reading: 1 to 2^40 (the default is 64 MiB). With large messages this, not the event
/// capacity, bounds the queue's memory. A message counts until a poll takes the last event of
/// the batch it arrived in (the events one read of its connection queued). May be called at
/// any time; a larger capacity lets waiting connections read again at once.
/// `KH_INVALID_ARGUMENT` outside that range.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_set_event_byte_capacity(
    mgr: *mut super::kh_manager,
    bytes: usize,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or a valid manager, per the header.
        let m = unsafe { manager(mgr) }?;
        m.manager.set_event_byte_capacity(bytes)
    })
}

/// Takes up to `cap` events of the polled connections into `events[0..*n_out]`, waiting for the
/// first one up to `timeout_ms` milliseconds (0: do not wait; negative: wait until an event
/// comes or `kh_manager_wakeup` is called). Events of one connection come in arrival order. A
/// poll also stops at about the queue's byte capacity in payloads (see
/// `kh_manager_set_event_byte_capacity`), so what a caller holds is bounded like the queue (a
/// driven poll counts the reads its uncopied payloads lie in, whole, and passes the capacity
/// by one read at most).
///
/// Returns `KH_OK` with `*n_out` = 0 when the time ran out, when `kh_manager_wakeup` woke it,
/// and also when no connection of the manager is polled (then it just waits `timeout_ms`).
/// No poll waits longer than its timeout (a driven manager's takes in addition the time of the
/// callbacks it runs). The events of the previous poll of this manager are
/// freed by this call: the pointers in them become invalid (see `kh_event`). Polls of one
/// manager run one at a time; poll from one thread. Like every call, a poll must have returned
/// before `kh_manager_free` is called: end a waiting one with `kh_manager_wakeup` first.
///
/// On a driven manager (`kh_manager_new_driven`) this call is where its connections run: they
/// read, write, reconnect and call their callbacks on this thread while the poll waits, and
/// the poll returns once events are queued (as soon as a read staged some), the timeout ran
/// out or `kh_manager_wakeup` was called. A timeout of 0 still reads what has arrived. The
/// messages read while it waits are written into `events` as they are read (a text or binary
/// message's payload is not copied at all: its event points where it was read); the same
/// lifetime rules apply.
///
/// Refused with `KH_INVALID_ARGUMENT` (writing nothing): `events` NULL, `cap` 0, `n_out` NULL,
/// or a call from inside any callback (a callback must not wait for events, which its own
/// connection may be unable to deliver). `KH_SHUTTING_DOWN` once `kh_manager_free` began,
/// also for the poll of a driven manager whose callback called `kh_manager_free` (it returns
/// no events then, and the manager is freed once it returned).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_poll(
    mgr: *mut super::kh_manager,
    events: *mut kh_event,
    cap: usize,
    timeout_ms: i32,
    n_out: *mut usize,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers (`events` with room for `cap` events), per the header.
        let (m, slots, n_out) = unsafe {
            (
                manager(mgr)?,
                arg_out_array(events, cap, "events")?,
                Out::new(n_out, "n_out")?,
            )
        };
        if in_callback() {
            return Err(ConnectionError::InvalidArgument(
                "kh_manager_poll cannot be called from inside a callback".into(),
            ));
        }
        if m.manager.is_shut_down() {
            return Err(ConnectionError::ShuttingDown);
        }
        let timeout = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        // Declared first, dropped last: a free from a callback of this poll waits for it.
        let _inside = m.enter();
        let mut lent = m.lent.lock().unwrap_or_else(|p| p.into_inner());
        let lent = &mut *lent;
        // The previous poll's events are given back here, as the header promises.
        lent.messages.clear();
        lent.kept.clear();
        let mut pieces = std::mem::take(&mut lent.pieces);
        reusable(pieces.drain(..), &mut lent.done);
        let queue = m.manager.event_queue();
        if m.is_driven() {
            let mut window = Some(Window::new(slots, std::mem::take(&mut lent.kept)));
            let done = &mut lent.done;
            {
                // Pinned where it is made: `drive` then moves a reference, not the future (a
                // large state machine: every move was a copy, three per poll).
                let wait = std::pin::pin!(queue.poll_async(
                    slots.len(),
                    timeout,
                    &mut pieces,
                    done,
                    &mut window
                ));
                m.drive("kh_manager_poll", wait)?;
            }
            if let Some(w) = window {
                let (n, kept) = w.finish();
                lent.kept = kept;
                if n > 0 {
                    // The connections wrote these events in place; nothing was taken from
                    // the queue.
                    debug_assert!(pieces.is_empty());
                    n_out.write(n);
                    lent.pieces = pieces;
                    return Ok(());
                }
            }
        } else {
            queue.poll_blocking(slots.len(), timeout, &mut pieces, &mut lent.done);
        }
        n_out.write(lent.fill(&pieces, slots));
        lent.pieces = pieces;
        Ok(())
    })
}

/// Writes to `*fd_out` a descriptor that is readable while events wait in the manager's queue
/// (level-triggered: it stays readable until polls took every event), for `poll`, `epoll`,
/// `select` or an event loop; then call `kh_manager_poll` with timeout 0. The same descriptor is
/// returned by every call. It belongs to the manager: do not read, write or close it; it is
/// closed by `kh_manager_free`. `KH_SYSTEM_ERROR` when the system refuses a socket pair (or on
/// a platform without them).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_event_fd(
    mgr: *mut super::kh_manager,
    fd_out: *mut c_int,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers, per the header.
        let (m, out) = unsafe { (manager(mgr)?, Out::new(fd_out, "fd_out")?) };
        if m.is_driven() {
            return Err(ConnectionError::InvalidArgument(
                "a driven manager has no event descriptor: its connections only run inside \
                 kh_manager_poll"
                    .into(),
            ));
        }
        #[cfg(unix)]
        {
            let fd = m.manager.event_queue().event_fd().map_err(|e| {
                ConnectionError::System(format!("creating the event descriptor: {e}"))
            })?;
            out.write(fd);
            Ok(())
        }
        #[cfg(not(unix))]
        {
            let _ = (m, out);
            Err(ConnectionError::System(
                "no event descriptor on this platform".into(),
            ))
        }
    })
}

/// Makes a `kh_manager_poll` of this manager that is waiting return at once (with the events
/// there are, maybe none); when none is waiting, the next one returns at once. Callable from any
/// thread, callbacks included. Does not make the event descriptor readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_wakeup(mgr: *mut super::kh_manager) -> kh_result {
    guard(|| {
        // SAFETY: NULL or a valid manager, per the header.
        let m = unsafe { manager(mgr) }?;
        m.manager.event_queue().wakeup();
        Ok(())
    })
}

/// Flags of `kh_manager_add_polled_ex`, or-ed together. A later version may add flags; one this
/// library does not know is refused.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum kh_poll_flag {
    /// Queue the connection's lifecycle state changes as `KH_EVENT_STATE` events.
    KH_POLL_STATE_EVENTS = 1,
}

/// Every flag this version knows.
const KNOWN_POLL_FLAGS: u32 = kh_poll_flag::KH_POLL_STATE_EVENTS as u32;

/// Adds a polled connection like `kh_manager_add_polled` with `flags` (`kh_poll_flag` values
/// or-ed together; 0 is `kh_manager_add_polled`): `KH_POLL_STATE_EVENTS` queues its lifecycle
/// state changes as `KH_EVENT_STATE` events. Fails like `kh_manager_add_polled`, and with
/// `KH_INVALID_ARGUMENT` (adding nothing) for a flag this library does not know.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_add_polled_ex(
    mgr: *mut super::kh_manager,
    name: *const c_char,
    cfg: *const kh_config,
    flags: u32,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers, per the header.
        let (m, name, cfg) =
            unsafe { (manager(mgr)?, arg_str(name, "name")?, arg_ref(cfg, "cfg")?) };
        if flags & !KNOWN_POLL_FLAGS != 0 {
            return Err(ConnectionError::InvalidArgument(format!(
                "unknown poll flags {:#x}",
                flags & !KNOWN_POLL_FLAGS
            )));
        }
        let options =
            PollOptions::new().state_events(flags & kh_poll_flag::KH_POLL_STATE_EVENTS as u32 != 0);
        m.manager.add_polled_with(name, cfg.build()?, options)
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;
    use crate::clock::ReceiveTime;
    use crate::events::{EventQueue, Sink};

    /// One poll of up to `cap` events of `q`, as kh_manager_poll fills them.
    fn poll(q: &EventQueue, lent: &mut Lent, cap: usize) -> Vec<kh_event> {
        let mut pieces = Vec::new();
        q.poll_blocking(cap, Some(Duration::ZERO), &mut pieces, &mut Vec::new());
        let mut slots = vec![MaybeUninit::uninit(); cap];
        let n = lent.fill(&pieces, &mut slots);
        lent.pieces = pieces;
        // SAFETY: fill wrote the first n slots.
        slots[..n]
            .iter()
            .map(|s| unsafe { s.assume_init() })
            .collect()
    }

    fn payload(e: &kh_event) -> &[u8] {
        // SAFETY: the event's payload, lent until the next poll (the test holds `lent`).
        unsafe { std::slice::from_raw_parts(e.data, e.len) }
    }

    #[test]
    fn a_poll_that_takes_part_of_a_batch_gives_each_frame_its_own_receive_time() {
        let q = EventQueue::new();
        let mut sink = Sink::new(q.clone(), "feed");
        let (t1, t2) = (ReceiveTime::now(), ReceiveTime::now());
        // As the session does: the time of its read before each frame. The first frame goes
        // out alone (a new sink knows no room yet); the other three are one batch.
        for (t, e) in [
            (t1, Event::Text("a".into())),
            (t1, Event::Text("b".into())),
            (t2, Event::Binary(vec![7u8; 5000].into())),
            (t2, Event::Text("d".into())),
        ] {
            sink.set_receive_time(t);
            sink.stage(e);
        }
        sink.flush();
        let mut lent = Lent::default();
        // The first batch and two of the second, then the rest of the second (a piece that
        // starts at its third event). The first poll's events are copied before the second
        // poll takes their memory back.
        let mut events = poll(&q, &mut lent, 3);
        let payloads: Vec<Vec<u8>> = events.iter().map(|e| payload(e).to_vec()).collect();
        assert_eq!(payloads, [b"a".to_vec(), b"b".to_vec(), vec![7u8; 5000]]);
        for e in &events {
            // SAFETY: the connection's NUL-terminated name, owned by the batch.
            assert_eq!(unsafe { CStr::from_ptr(e.conn) }, c"feed");
        }
        events.extend(poll(&q, &mut lent, 8));
        let times: Vec<u64> = events.iter().map(|e| e.recv_mono_ns).collect();
        let (m1, m2) = (t1.monotonic_ns(), t2.monotonic_ns());
        assert_eq!(times, [m1, m1, m2, m2]);
        assert!(events.iter().all(|e| e.recv_wall_ns != 0));
        assert_eq!(payload(&events[3]), b"d");
    }

    #[test]
    fn an_error_event_carries_its_code_and_its_message_nul_terminated() {
        let q = EventQueue::new();
        let mut sink = Sink::new(q.clone(), "e");
        let err = ConnectionError::ConnectFailed("refused by 127.0.0.1:9".into());
        sink.push(Event::Error(err.clone()));
        let mut lent = Lent::default();
        let events = poll(&q, &mut lent, 8);
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.kind, kh_event_kind::KH_EVENT_ERROR);
        assert_eq!(e.error, kh_result::from(&err));
        assert_eq!(payload(e), err.to_string().as_bytes());
        // SAFETY: the message is followed by its NUL, lent until the next poll.
        assert_eq!(unsafe { *e.data.add(e.len) }, 0, "no NUL after the message");
    }

    #[test]
    fn events_without_receive_timestamps_carry_none() {
        let q = EventQueue::new();
        let mut sink = Sink::new(q.clone(), "plain");
        sink.stage(Event::Text("a".into()));
        sink.stage(Event::Open);
        sink.flush();
        let mut lent = Lent::default();
        let events = poll(&q, &mut lent, 8);
        assert_eq!(events.len(), 2);
        assert!(
            events
                .iter()
                .all(|e| e.recv_mono_ns == 0 && e.recv_wall_ns == 0)
        );
        assert_eq!(events[0].kind, kh_event_kind::KH_EVENT_TEXT);
        assert_eq!(payload(&events[0]), b"a");
        assert_eq!(events[1].kind, kh_event_kind::KH_EVENT_OPEN);
        assert_eq!(events[1].len, 0);
    }
}
