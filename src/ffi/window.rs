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

use std::mem::MaybeUninit;

use bytes::Bytes;

use super::poll::{kh_event, message_kind};
use crate::clock::ReceiveTime;
use crate::events::{COPY_BELOW, Kind, Name};

/// What the events of a poll point into, kept until the next poll. Reused from poll to poll.
#[derive(Default)]
pub(crate) struct Kept {
    /// Payloads of [`COPY_BELOW`] bytes or more, left in the buffers they were parsed from.
    held: Vec<Bytes>,
    /// Smaller payloads, copied (see [`COPY_BELOW`] for why) into chunks that never grow, so
    /// the pointers into them hold. The chunks before `cur` are in use, and the current one
    /// from its start to `free`.
    chunks: Vec<Box<[MaybeUninit<u8>]>>,
    cur: usize,
    free: usize,
    /// The names the events point to, one per connection that took the window: kept too, as
    /// a connection may be removed before the next poll.
    names: Vec<Name>,
}

/// Bytes of a chunk: a few reads' worth of small messages.
const CHUNK: usize = 64 * 1024;

/// Chunks kept for the next poll at most; more were needed only by a poll of large messages.
const KEEP_CHUNKS: usize = 16;

impl Kept {
    /// Gives back what the last poll's events pointed into.
    pub(crate) fn clear(&mut self) {
        self.held.clear();
        self.names.clear();
        self.chunks.truncate(KEEP_CHUNKS);
        self.cur = 0;
        self.free = 0;
    }

    /// A copy of `payload` (shorter than [`COPY_BELOW`]) that stays where it is until
    /// [`clear`](Self::clear).
    #[inline(always)]
    fn copy(&mut self, payload: &[u8]) -> *const u8 {
        let len = payload.len();
        let chunk = match self.chunks.get_mut(self.cur) {
            Some(c) if c.len() - self.free >= len => c,
            _ => self.next_chunk(),
        };
        // SAFETY: `free + len` is within the chunk (checked above, or a fresh chunk of
        // `CHUNK` > `COPY_BELOW` bytes), and a payload never overlaps the window's chunks.
        unsafe {
            let at = chunk.as_mut_ptr().add(self.free).cast::<u8>();
            std::ptr::copy_nonoverlapping(payload.as_ptr(), at, len);
            self.free += len;
            at
        }
    }

    /// The current chunk lacks room (or there is none yet): the next one, made if new.
    #[cold]
    #[inline(never)]
    fn next_chunk(&mut self) -> &mut Box<[MaybeUninit<u8>]> {
        if self.cur < self.chunks.len() {
            self.cur += 1;
        }
        self.free = 0;
        if self.cur == self.chunks.len() {
            self.chunks.push(Box::new_uninit_slice(CHUNK));
        }
        &mut self.chunks[self.cur]
    }
}

/// The unwritten part of a poll's array, and what the written events point into. Published in
/// the event queue by the poll, taken by one connection at a time for the length of one poll
/// of its task (see `Sink::begin_read`), and taken back by the poll before it returns.
pub(crate) struct Window {
    slots: *mut kh_event,
    cap: usize,
    /// Events written, at `slots[..n]`.
    n: usize,
    kept: Kept,
    /// Payload bytes of the written events, and how many the window takes: what a poller
    /// holds stays bounded by the queue's byte capacity, as a poll of the queue does.
    bytes: usize,
    byte_cap: usize,
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
        Self {
            slots: slots.as_mut_ptr().cast(),
            cap: slots.len(),
            n: 0,
            kept,
            bytes: 0,
            byte_cap: usize::MAX,
            lender: None,
        }
    }

    /// Bounds the payload bytes the window takes (the window is full from the message that
    /// reaches the bound on).
    pub(crate) fn set_byte_cap(&mut self, bytes: usize) {
        self.byte_cap = bytes;
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

    /// Called by a connection that takes the window, before it writes with its `name`.
    pub(crate) fn hold_name(&mut self, name: &Name) {
        if !self.kept.names.last().is_some_and(|n| n.same(name)) {
            self.kept.names.push(name.clone());
        }
    }

    /// Events written so far.
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// Whether no more events fit.
    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.n >= self.cap || self.bytes >= self.byte_cap
    }

    /// Writes a message as the next event. The window must not be full.
    #[inline(always)]
    pub(crate) fn put(&mut self, kind: Kind, payload: Bytes, conn: &Name, at: ReceiveTime) {
        debug_assert!(!self.is_full());
        let len = payload.len();
        let data = if len < COPY_BELOW {
            self.kept.copy(&payload)
        } else {
            let data = payload.as_ptr();
            self.kept.held.push(payload);
            data
        };
        let event = kh_event {
            recv_mono_ns: at.monotonic_ns(),
            recv_wall_ns: at.wall_ns(),
            ..kh_event::new(message_kind(kind), conn.as_c_ptr(), data, len)
        };
        // SAFETY: `n < cap` (not full), and the array has room for `cap` events.
        unsafe { self.slots.add(self.n).write(event) };
        self.n += 1;
        self.bytes += len;
    }

    /// The events written, and what they point into, to keep until the next poll.
    pub(crate) fn finish(self) -> (usize, Kept) {
        (self.n, self.kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::kh_event_kind;

    #[test]
    fn copies_stay_where_they_are_across_chunks_until_cleared() {
        let mut kept = Kept::default();
        let payloads: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; COPY_BELOW - 1]).collect();
        let at: Vec<*const u8> = payloads.iter().map(|p| kept.copy(p)).collect();
        assert!(
            kept.cur >= 2,
            "40 payloads of 4 KiB fill more than two 64 KiB chunks"
        );
        for (p, &a) in payloads.iter().zip(&at) {
            // SAFETY: copies stay valid until `clear`.
            assert_eq!(unsafe { std::slice::from_raw_parts(a, p.len()) }, &p[..]);
        }
        let chunks = kept.chunks.len();
        kept.clear();
        assert_eq!((kept.cur, kept.free), (0, 0));
        // The chunks are reused: the next copy lands where the first did.
        assert_eq!(kept.copy(&payloads[1]), at[0]);
        assert_eq!(kept.chunks.len(), chunks);
        // An empty payload fits anywhere and moves nothing.
        let free = kept.free;
        kept.copy(&[]);
        assert_eq!(kept.free, free);
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
        w.put(
            Kind::Text,
            Bytes::from_static(b"12345"),
            &name,
            ReceiveTime::NONE,
        );
        assert!(!w.is_full());
        w.put(
            Kind::Binary,
            Bytes::from_static(b"6789"),
            &name,
            ReceiveTime::NONE,
        );
        assert!(!w.is_full(), "9 of 10 bytes");
        w.put(
            Kind::Binary,
            Bytes::from_static(b"0"),
            &name,
            ReceiveTime::NONE,
        );
        assert!(w.is_full());
        let (n, kept) = w.finish();
        assert_eq!(n, 3);
        assert!(kept.held.is_empty(), "small payloads are copied, not held");
        let mut slots = vec![MaybeUninit::<kh_event>::uninit(); 2];
        let mut w = Window::new(&mut slots, Kept::default());
        let big = Bytes::from(vec![3u8; COPY_BELOW]);
        w.put(Kind::Binary, big.clone(), &name, ReceiveTime::NONE);
        assert!(!w.is_full());
        w.put(Kind::Ping, Bytes::new(), &name, ReceiveTime::NONE);
        assert!(w.is_full(), "full at its capacity");
        let (_, kept) = w.finish();
        assert_eq!(
            kept.held.len(),
            1,
            "a large payload is held where it was parsed"
        );
        // SAFETY: both were written.
        let e = unsafe { slots[0].assume_init_ref() };
        assert_eq!(e.data, big.as_ptr());
        assert_eq!(e.kind, kh_event_kind::KH_EVENT_BINARY);
        assert_eq!(
            unsafe { slots[1].assume_init_ref() }.kind,
            kh_event_kind::KH_EVENT_PING
        );
    }
}
