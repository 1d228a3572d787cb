//! A driven manager's poll lends its array to the connections it runs: a message read while
//! the poll waits goes into the caller's `kh_event` at once, pointing at the buffer it was
//! parsed from.
//!
//! Why: the queue's way (stage the message in a batch, copy its payload there, queue the batch,
//! take it, then describe each item as a `kh_event`) costs a driven poll about a hundred
//! instructions per message more than a callback, and the copies cost cache misses on top
//! (64-byte push, one thread: 0.80 of the hook path's rate). On a driven manager the
//! connections run on the polling thread, inside the poll, while the caller's array waits
//! empty: writing into it directly leaves a message one `kh_event` and one reference to its
//! buffer more than a callback. Only messages (text, binary, ping, pong) of a connection that
//! has nothing queued go this way, so every connection's events keep their order; anything
//! else goes through the queue as before and ends the connection's use of the window.
//!
//! No payload is copied: the window keeps each one where it was parsed until the next poll.
//! The wire parses frames in a buffer of 64 KiB or more (`crate::wire`), so what a poll keeps
//! makes it allocate a new buffer at most once per that many bytes.

use std::mem::MaybeUninit;
use std::ptr;

use bytes::Bytes;

use super::poll::{kh_event, message_kind};
use crate::clock::ReceiveTime;
use crate::events::{Kind, Name};

/// What the events of a poll point into, kept until the next poll. Reused from poll to poll.
#[derive(Default)]
pub(crate) struct Kept {
    /// The payloads, left in the buffers they were parsed from.
    held: Vec<Bytes>,
    /// The names the events point to, one per connection that took the window: kept too, as
    /// a connection may be removed before the next poll.
    names: Vec<Name>,
}

impl Kept {
    /// Gives back what the last poll's events pointed into.
    pub(crate) fn clear(&mut self) {
        self.held.clear();
        self.names.clear();
    }
}

/// Events ahead of the one written whose cache lines are fetched for writing: the caller's
/// array has left the first-level cache by the time a poll writes it again (the socket's data
/// went through it meanwhile), and the atomic that ends each message's read waits for the
/// stores before it to reach the cache. 64-byte push, driven, 11 interleaved runs: +5 %.
const PREFETCH_EVENTS: usize = 16;

/// Asks for the cache line at `p` in a state that lets it be written. Never faults.
#[inline(always)]
fn prefetch_for_write<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing and never faults, whatever the address; a processor
    // without PREFETCHW runs it as a no-op. (`core::arch`'s `_MM_HINT_ET0` compiles to
    // `prefetcht0` without the `prfchw` target feature.)
    unsafe {
        std::arch::asm!("prefetchw [{}]", in(reg) p, options(nostack, preserves_flags, readonly));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The unwritten part of a poll's array, and what the written events point into. Published in
/// the event queue by the poll, taken by one connection at a time for the length of one poll
/// of its task (see `Sink::begin_read`), and taken back by the poll before it returns.
///
/// A message is the hot path of a driven poll: the window keeps raw cursors (the next event,
/// the end of the array, the bytes it still takes) so that writing one is a compare, a push
/// and the stores of its event.
pub(crate) struct Window {
    slots: *mut kh_event,
    /// The next event's slot, and the end of the array.
    next: *mut kh_event,
    end: *mut kh_event,
    /// Payload bytes the window takes still: what a poller holds stays bounded by the queue's
    /// byte capacity, as a poll of the queue does. The window is full at 0.
    bytes_left: usize,
    /// The name of the connection holding the window (see `hold_name`).
    conn: *const std::ffi::c_char,
    kept: Kept,
    /// The thread whose poll lent the window: only a connection running on it may take it.
    lender: Option<std::thread::ThreadId>,
}

// SAFETY: the array belongs to a `kh_manager_poll` that waits while the window is out, and
// only one holder uses the window at a time (it moves); the poll takes it back before it
// returns, also when it ends early (`events::Lending`), so no write outlives the call.
unsafe impl Send for Window {}

impl Window {
    /// A window over `slots`, keeping what its events point into in `kept` (cleared).
    pub(crate) fn new(slots: &mut [MaybeUninit<kh_event>], kept: Kept) -> Self {
        let range = slots.as_mut_ptr_range();
        Self {
            slots: range.start.cast(),
            next: range.start.cast(),
            end: range.end.cast(),
            bytes_left: usize::MAX,
            conn: ptr::null(),
            kept,
            lender: None,
        }
    }

    /// Bounds the payload bytes the window takes (the window is full from the message that
    /// reaches the bound on).
    pub(crate) fn set_byte_cap(&mut self, bytes: usize) {
        self.bytes_left = bytes;
    }

    /// Records the thread of the poll that lends the window (`EventQueue::lend`).
    pub(crate) fn lent_by(&mut self, thread: std::thread::ThreadId) {
        self.lender = Some(thread);
    }

    /// Whether a connection running on `thread` may take the window: only on the lending
    /// poll's own thread does a connection's task run between two polls of the poll's future,
    /// never during one. Another thread may drive the same manager at the same time (a
    /// `kh_manager_wait_open` beside the poll: tokio then polls each caller's own future on its
    /// own thread while one of them runs the tasks), and a connection it runs could still be
    /// writing into the array when the poll returns.
    pub(crate) fn may_be_taken_on(&self, thread: std::thread::ThreadId) -> bool {
        self.lender == Some(thread)
    }

    /// Called by a connection that takes the window, before it writes: its events carry
    /// `name`, which is kept until the next poll.
    pub(crate) fn hold_name(&mut self, name: &Name) {
        if !self.kept.names.last().is_some_and(|n| n.same(name)) {
            self.kept.names.push(name.clone());
        }
        self.conn = name.as_c_ptr();
    }

    /// Events written so far.
    pub(crate) fn len(&self) -> usize {
        // SAFETY: both point into the same array, `next` at or after `slots`.
        unsafe { self.next.offset_from(self.slots) as usize }
    }

    /// Whether no more events fit.
    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.next == self.end || self.bytes_left == 0
    }

    /// Writes a message of the connection that holds the window (see `hold_name`) as the next
    /// event, its payload kept where it is. The window must not be full.
    #[inline(always)]
    pub(crate) fn put(&mut self, kind: Kind, payload: Bytes, at: ReceiveTime) {
        debug_assert!(!self.is_full() && !self.conn.is_null());
        let len = payload.len();
        let event = kh_event {
            recv_mono_ns: at.monotonic_ns(),
            recv_wall_ns: at.wall_ns(),
            ..kh_event::new(message_kind(kind), self.conn, payload.as_ptr(), len)
        };
        self.kept.held.push(payload);
        prefetch_for_write(self.next.wrapping_add(PREFETCH_EVENTS));
        // SAFETY: `next < end` (not full): a slot of the caller's array.
        unsafe {
            self.next.write(event);
            self.next = self.next.add(1);
        }
        self.bytes_left = self.bytes_left.saturating_sub(len);
    }

    /// The events written, and what they point into, to keep until the next poll.
    pub(crate) fn finish(self) -> (usize, Kept) {
        (self.len(), self.kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::kh_event_kind;

    /// The first `n` events written into `slots`.
    fn events(slots: &[MaybeUninit<kh_event>], n: usize) -> Vec<&kh_event> {
        // SAFETY: the window wrote the first `n`.
        slots[..n]
            .iter()
            .map(|e| unsafe { e.assume_init_ref() })
            .collect()
    }

    #[test]
    fn payloads_stay_where_they_were_parsed_until_cleared() {
        let name = Name::new("n");
        let buffer = Bytes::from((0..=255u8).collect::<Vec<_>>());
        let payloads = [
            buffer.slice(0..10),
            buffer.slice(10..10),
            buffer.slice(10..200),
        ];
        let mut slots = vec![MaybeUninit::<kh_event>::uninit(); 4];
        let mut w = Window::new(&mut slots, Kept::default());
        w.hold_name(&name);
        for p in &payloads {
            w.put(Kind::Binary, p.clone(), ReceiveTime::NONE);
        }
        let (n, mut kept) = w.finish();
        assert_eq!(n, payloads.len());
        for (e, p) in events(&slots, n).iter().zip(&payloads) {
            assert_eq!((e.data, e.len), (p.as_ptr(), p.len()), "not copied");
            assert_eq!(e.conn, name.as_c_ptr());
        }
        drop(payloads);
        // The window's references keep the buffer: each view still reads what was parsed.
        assert_eq!(kept.held.len(), 3);
        let e = events(&slots, n)[2];
        // SAFETY: kept until `clear`.
        let seen = unsafe { std::slice::from_raw_parts(e.data, e.len) };
        assert_eq!(seen, &buffer[10..200]);
        kept.clear();
        assert!(kept.held.is_empty() && kept.names.is_empty());
        assert!(
            buffer.is_unique(),
            "cleared: nothing else refers to the buffer"
        );
    }

    #[test]
    fn a_window_is_full_at_its_capacity_or_its_byte_bound() {
        let mut slots = vec![MaybeUninit::<kh_event>::uninit(); 3];
        let mut w = Window::new(&mut slots, Kept::default());
        let name = Name::new("n");
        w.hold_name(&name);
        w.hold_name(&name);
        assert_eq!(
            w.kept.names.len(),
            1,
            "one name per connection that took the window"
        );
        w.set_byte_cap(10);
        w.put(Kind::Text, Bytes::from_static(b"12345"), ReceiveTime::NONE);
        assert!(!w.is_full());
        w.put(Kind::Binary, Bytes::from_static(b"6789"), ReceiveTime::NONE);
        assert!(!w.is_full(), "9 of 10 bytes");
        w.put(Kind::Binary, Bytes::from_static(b"0"), ReceiveTime::NONE);
        assert!(w.is_full());
        assert_eq!(w.finish().0, 3);
        let mut slots = vec![MaybeUninit::<kh_event>::uninit(); 2];
        let mut w = Window::new(&mut slots, Kept::default());
        w.hold_name(&name);
        w.put(Kind::Binary, Bytes::from_static(b"x"), ReceiveTime::NONE);
        assert!(!w.is_full());
        w.put(Kind::Ping, Bytes::new(), ReceiveTime::NONE);
        assert!(w.is_full(), "full at its capacity");
        let (n, _) = w.finish();
        let kinds: Vec<_> = events(&slots, n).iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [kh_event_kind::KH_EVENT_BINARY, kh_event_kind::KH_EVENT_PING]
        );
    }
}
