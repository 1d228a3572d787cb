//! A driven manager's poll lends its array to the connections it runs: a message read while
//! the poll waits goes into the caller's `kh_event` at once, pointing at the buffer it was
//! parsed from.
//!
//! Why: the queue's way (stage the message in a batch, copy its payload there, queue the batch,
//! take it, then describe each item as a `kh_event`) costs a driven poll about a hundred
//! instructions per message more than a callback, and the copies cost cache misses on top
//! (64-byte push, one thread: 0.80 of the hook path's rate). On a driven manager the
//! connections run on the polling thread, inside the poll, while the caller's array waits
//! empty: writing into it directly leaves a message one `kh_event` more than a callback.
//! A message read from the wire's buffer ([`crate::wire::Data`]) is not copied: its event
//! points where it lies, and the window keeps the piece of the buffer it lies in until the
//! next poll, one reference per piece (the wire reads on in a second buffer meanwhile, and
//! comes back to the first once the poll lets go of it). Other payloads (a ping's, an
//! inflated message's) are copied when small, as before. Only messages (text, binary, ping,
//! pong) of a connection that has nothing queued go this way, so every connection's events
//! keep their order; anything else goes through the queue as before and ends the
//! connection's use of the window.

use std::mem::MaybeUninit;
use std::ptr;

use bytes::Bytes;

use super::poll::{kh_event, message_kind};
use crate::clock::ReceiveTime;
use crate::events::{COPY_BELOW, Kind, Name};

/// What the events of a poll point into, kept until the next poll. Reused from poll to poll.
#[derive(Default)]
pub(crate) struct Kept {
    /// Pieces of the wire's buffer that messages lie in, and payloads of [`COPY_BELOW`] bytes
    /// or more, left in the buffers they were parsed from.
    held: Vec<Bytes>,
    /// Smaller payloads not read from the wire's buffer, copied (see [`COPY_BELOW`] for why)
    /// into chunks that never grow, so the pointers into them hold. The chunks up to `cur`
    /// are in use (the window that has them knows how much of the last one).
    chunks: Vec<Box<[MaybeUninit<u8>]>>,
    cur: Option<usize>,
    /// The names the events point to, one per connection that took the window: kept too, as
    /// a connection may be removed before the next poll.
    names: Vec<Name>,
    /// The address of the last piece of the wire's buffer held: payloads read from the
    /// wire's buffer lie in pieces split off it, and one reference per piece is enough.
    last_held: usize,
}

/// Bytes of a chunk: a few reads' worth of small messages.
const CHUNK: usize = 64 * 1024;

/// Chunks kept for the next poll at most; more were needed only by a poll of large messages.
const KEEP_CHUNKS: usize = 16;

impl Kept {
    /// Gives back what the last poll's events pointed into.
    pub(crate) fn clear(&mut self) {
        self.held.clear();
        self.last_held = 0;
        self.names.clear();
        self.chunks.truncate(KEEP_CHUNKS);
        self.cur = None;
    }

    /// The next chunk (made if new): where copies go from now on, and its end.
    #[cold]
    #[inline(never)]
    fn next_chunk(&mut self) -> (*mut u8, *mut u8) {
        let next = self.cur.map_or(0, |c| c + 1);
        if next == self.chunks.len() {
            self.chunks.push(Box::new_uninit_slice(CHUNK));
        }
        self.cur = Some(next);
        let chunk = self.chunks[next].as_mut_ptr_range();
        (chunk.start.cast(), chunk.end.cast())
    }
}

/// Events ahead of the one written whose lines are fetched for writing, and the bytes ahead of
/// a copy: the caller's array and the chunks are out of the first-level cache by the time they
/// are written again (the socket's data passed through it meanwhile), and the atomic that
/// drops each payload's reference waits for the stores before it to reach the cache.
/// 64-byte push, driven, 11 interleaved runs: +5 % with prefetches of 8 events and 512 bytes.
const PREFETCH_EVENTS: usize = 16;
const PREFETCH_BYTES: usize = 1024;

/// Asks for the cache line at `p` in a state that lets it be written. Never faults.
#[inline(always)]
fn prefetch_for_write<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing and never faults, whatever the address; a processor
    // without PREFETCHW runs it as a no-op.
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
/// the free part of the current chunk, the bytes it still takes) so that writing one is a few
/// compares and the stores of its event.
pub(crate) struct Window {
    slots: *mut kh_event,
    /// The next event's slot, and the end of the array, or of the part of it the byte budget
    /// leaves: the window is full when they meet, which makes that one test per message.
    next: *mut kh_event,
    end: *mut kh_event,
    /// The free part of the current chunk (empty before the first copy).
    copy_at: *mut u8,
    copy_end: *mut u8,
    /// Bytes the window takes still: what a poller holds stays bounded by the queue's byte
    /// capacity, as a poll of the queue does. A copied or held payload counts its bytes; a
    /// piece of the wire's buffer counts all of its bytes once, when the window first keeps
    /// it, as that is what it holds (and the per-message path then has nothing to count).
    /// Signed: a piece may take it below 0.
    bytes_left: isize,
    /// The name of the connection holding the window (see `hold_name`).
    conn: *const std::ffi::c_char,
    kept: Kept,
    /// The thread whose poll lent the window: only a connection running on it may take it.
    lender: Option<std::thread::ThreadId>,
}

// SAFETY: the array belongs to a `kh_manager_poll` that waits while the window is out, and
// only one holder uses the window at a time (it moves); the poll takes it back before it
// returns, also when it ends early (`events::Lending`), so no write outlives the call. The
// chunks belong to `kept`, which moves with the window.
unsafe impl Send for Window {}

impl Window {
    /// A window over `slots`, keeping what its events point into in `kept` (cleared).
    pub(crate) fn new(slots: &mut [MaybeUninit<kh_event>], kept: Kept) -> Self {
        let range = slots.as_mut_ptr_range();
        Self {
            slots: range.start.cast(),
            next: range.start.cast(),
            end: range.end.cast(),
            copy_at: ptr::NonNull::dangling().as_ptr(),
            copy_end: ptr::NonNull::dangling().as_ptr(),
            bytes_left: isize::MAX,
            conn: ptr::null(),
            kept,
            lender: None,
        }
    }

    /// Bounds the payload bytes the window takes (the window is full from the message that
    /// reaches the bound on).
    pub(crate) fn set_byte_cap(&mut self, bytes: usize) {
        self.bytes_left = isize::try_from(bytes).unwrap_or(isize::MAX);
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
        self.next == self.end
    }

    /// Writes a message of the connection that holds the window (see `hold_name`) as the next
    /// event. The window must not be full.
    #[inline(always)]
    pub(crate) fn put(&mut self, kind: Kind, payload: Bytes, at: ReceiveTime) {
        debug_assert!(!self.is_full() && !self.conn.is_null());
        let len = payload.len();
        let data = if len < COPY_BELOW && len <= self.copy_end as usize - self.copy_at as usize {
            // SAFETY: `copy_at..copy_end` is the free part of a chunk of `kept`, and the
            // payload never overlaps it.
            unsafe {
                let at = self.copy_at;
                prefetch_for_write(at.wrapping_add(PREFETCH_BYTES));
                ptr::copy_nonoverlapping(payload.as_ptr(), at, len);
                self.copy_at = at.add(len);
                at.cast_const()
            }
        } else {
            return self.put_slow(kind, payload, at);
        };
        self.write(kind, data, len, at);
        self.take_bytes(len);
    }

    /// Writes a message read from the wire's buffer, `payload` lying in `seg`, as the next
    /// event: it points at the payload where it lies, and the window keeps `seg` (once for all
    /// the payloads in it, counting its bytes then). The window must not be full.
    #[inline(always)]
    pub(crate) fn put_data(&mut self, kind: Kind, payload: &[u8], seg: &Bytes, at: ReceiveTime) {
        debug_assert!(!self.is_full() && !self.conn.is_null());
        debug_assert!(seg.as_ptr_range().contains(&payload.as_ptr()) || payload.is_empty());
        if seg.as_ptr() as usize != self.kept.last_held {
            self.hold(seg);
        }
        self.write(kind, payload.as_ptr(), payload.len(), at);
    }

    /// Keeps `seg` until the next poll, and counts its bytes: when they pass the budget, the
    /// message about to be written is the window's last, unless it is the first (a piece
    /// larger than the budget would otherwise stop every poll after one message). So a poll's
    /// events point into the budget's bytes at most, or one piece.
    #[cold]
    #[inline(never)]
    fn hold(&mut self, seg: &Bytes) {
        self.kept.last_held = seg.as_ptr() as usize;
        self.kept.held.push(seg.clone());
        self.bytes_left = self.bytes_left.saturating_sub(seg.len() as isize);
        if self.bytes_left <= 0 && self.next != self.slots {
            // Not full: `next < end`, so this only shortens the array.
            self.end = self.next.wrapping_add(1);
        }
    }

    /// Counts a copied or held payload's `len` bytes, after its event was written.
    #[inline(always)]
    fn take_bytes(&mut self, len: usize) {
        self.bytes_left = self.bytes_left.saturating_sub(len as isize);
        if self.bytes_left <= 0 {
            self.end = self.next;
        }
    }

    /// Writes the next event.
    #[inline(always)]
    fn write(&mut self, kind: Kind, data: *const u8, len: usize, at: ReceiveTime) {
        let event = kh_event {
            recv_mono_ns: at.monotonic_ns(),
            recv_wall_ns: at.wall_ns(),
            ..kh_event::new(message_kind(kind), self.conn, data, len)
        };
        prefetch_for_write(self.next.wrapping_add(PREFETCH_EVENTS));
        // SAFETY: `next < end` (not full): a slot of the caller's array.
        unsafe {
            self.next.write(event);
            self.next = self.next.add(1);
        }
    }

    /// [`put`](Self::put) of a payload that does not fit the current chunk: held where it was
    /// parsed when large, else copied into the next chunk.
    #[cold]
    #[inline(never)]
    fn put_slow(&mut self, kind: Kind, payload: Bytes, at: ReceiveTime) {
        let len = payload.len();
        let data = if len >= COPY_BELOW {
            let data = payload.as_ptr();
            self.kept.held.push(payload);
            data
        } else {
            let (start, end) = self.kept.next_chunk();
            // SAFETY: a fresh chunk of `CHUNK` > `COPY_BELOW` bytes, which the payload does
            // not overlap.
            unsafe {
                ptr::copy_nonoverlapping(payload.as_ptr(), start, len);
                self.copy_at = start.add(len);
            }
            self.copy_end = end;
            start.cast_const()
        };
        self.write(kind, data, len, at);
        self.take_bytes(len);
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

    /// The data pointers of the first `n` events written into `slots`.
    fn data_of(slots: &[MaybeUninit<kh_event>], n: usize) -> Vec<*const u8> {
        // SAFETY: the window wrote the first `n`.
        slots[..n]
            .iter()
            .map(|e| unsafe { e.assume_init_ref() }.data)
            .collect()
    }

    #[test]
    fn copies_stay_where_they_are_across_chunks_until_cleared() {
        let name = Name::new("n");
        let payloads: Vec<Bytes> = (0..40u8)
            .map(|i| Bytes::from(vec![i; COPY_BELOW - 1]))
            .collect();
        let mut slots = vec![MaybeUninit::<kh_event>::uninit(); 64];
        let mut w = Window::new(&mut slots, Kept::default());
        w.hold_name(&name);
        for p in &payloads {
            w.put(Kind::Binary, p.clone(), ReceiveTime::NONE);
        }
        let (n, mut kept) = w.finish();
        assert_eq!(n, payloads.len());
        assert!(
            kept.cur >= Some(2),
            "40 payloads of 4 KiB fill more than two 64 KiB chunks"
        );
        assert!(kept.held.is_empty(), "copied, not held");
        let at = data_of(&slots, n);
        for (p, &a) in payloads.iter().zip(&at) {
            assert_ne!(a, p.as_ptr());
            // SAFETY: copies stay valid until `clear`.
            assert_eq!(unsafe { std::slice::from_raw_parts(a, p.len()) }, &p[..]);
        }
        let chunks = kept.chunks.len();
        kept.clear();
        assert_eq!(kept.cur, None);
        // The chunks are reused: the next copy lands where the first did, and an empty
        // payload after it moves nothing.
        let mut w = Window::new(&mut slots, kept);
        w.hold_name(&name);
        w.put(Kind::Text, payloads[1].clone(), ReceiveTime::NONE);
        w.put(Kind::Ping, Bytes::new(), ReceiveTime::NONE);
        w.put(Kind::Text, payloads[2].clone(), ReceiveTime::NONE);
        let (n, kept) = w.finish();
        let again = data_of(&slots, n);
        assert_eq!(again[0], at[0]);
        // SAFETY: both point into the first chunk.
        assert_eq!(
            unsafe { again[2].offset_from(again[0]) },
            COPY_BELOW as isize - 1
        );
        assert_eq!(kept.chunks.len(), chunks);
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
        let (n, kept) = w.finish();
        assert_eq!(n, 3);
        assert!(kept.held.is_empty(), "small payloads are copied, not held");
        let mut slots = vec![MaybeUninit::<kh_event>::uninit(); 3];
        let mut w = Window::new(&mut slots, Kept::default());
        w.hold_name(&name);
        // A small payload first: the chunk it is copied into has room for the large one.
        w.put(Kind::Text, Bytes::from_static(b"x"), ReceiveTime::NONE);
        let big = Bytes::from(vec![3u8; COPY_BELOW]);
        w.put(Kind::Binary, big.clone(), ReceiveTime::NONE);
        assert!(!w.is_full());
        w.put(Kind::Ping, Bytes::new(), ReceiveTime::NONE);
        assert!(w.is_full(), "full at its capacity");
        let (_, kept) = w.finish();
        assert_eq!(
            kept.held.len(),
            1,
            "a large payload is held where it was parsed"
        );
        // SAFETY: all three were written.
        let e = unsafe { slots[1].assume_init_ref() };
        assert_eq!(e.data, big.as_ptr());
        assert_eq!(e.kind, kh_event_kind::KH_EVENT_BINARY);
        assert_eq!(
            unsafe { slots[2].assume_init_ref() }.kind,
            kh_event_kind::KH_EVENT_PING
        );
    }

    #[test]
    fn a_piece_of_the_wires_buffer_counts_its_bytes_once_when_first_kept() {
        let name = Name::new("n");
        let mut slots = vec![MaybeUninit::<kh_event>::uninit(); 16];
        let mut w = Window::new(&mut slots, Kept::default());
        w.hold_name(&name);
        w.set_byte_cap(100);
        // A piece larger than the budget, first in the window: all of its messages go in
        // (they cost nothing the piece does not), or each poll would take one of them.
        let big = Bytes::from(vec![b'a'; 120]);
        for i in 0..4 {
            w.put_data(
                Kind::Text,
                &big[i * 30..i * 30 + 30],
                &big,
                ReceiveTime::NONE,
            );
            assert!(!w.is_full(), "message {i} of the first piece");
        }
        assert_eq!(w.kept.held.len(), 1, "one reference per piece");
        // Past the budget, the next piece's first message is the window's last.
        let next = Bytes::from(vec![b'b'; 10]);
        w.put_data(Kind::Binary, &next[..5], &next, ReceiveTime::NONE);
        assert!(w.is_full());
        let (n, kept) = w.finish();
        assert_eq!(n, 5);
        assert_eq!(kept.held.len(), 2);

        // Within the budget, pieces are counted whole, and a piece that reaches it ends the
        // window after its first message; so does a copy that reaches it.
        let mut slots = vec![MaybeUninit::<kh_event>::uninit(); 16];
        let mut w = Window::new(&mut slots, Kept::default());
        w.hold_name(&name);
        w.set_byte_cap(100);
        let first = Bytes::from(vec![b'c'; 60]);
        w.put_data(Kind::Text, &first[..1], &first, ReceiveTime::NONE);
        w.put_data(Kind::Text, &first[1..2], &first, ReceiveTime::NONE);
        assert!(
            !w.is_full(),
            "60 of 100 bytes, whatever the payloads' sizes"
        );
        w.put(
            Kind::Ping,
            Bytes::from_static(b"39 bytes: not yet the budget's end....."),
            ReceiveTime::NONE,
        );
        assert!(!w.is_full(), "99 of 100 bytes");
        w.put(Kind::Pong, Bytes::from_static(b"!"), ReceiveTime::NONE);
        assert!(w.is_full(), "a copy reaching the budget ends the window");
        assert_eq!(w.finish().0, 4);

        let mut slots = vec![MaybeUninit::<kh_event>::uninit(); 16];
        let mut w = Window::new(&mut slots, Kept::default());
        w.hold_name(&name);
        w.set_byte_cap(100);
        w.put(Kind::Ping, Bytes::from_static(b"x"), ReceiveTime::NONE);
        let piece = Bytes::from(vec![b'd'; 99]);
        w.put_data(Kind::Text, &piece[..10], &piece, ReceiveTime::NONE);
        assert!(
            w.is_full(),
            "1 + 99 bytes: the piece's first message is the last"
        );
        let (n, _) = w.finish();
        assert_eq!(n, 2);
        // SAFETY: both were written.
        let e = unsafe { slots[1].assume_init_ref() };
        assert_eq!((e.data, e.len), (piece.as_ptr(), 10));
    }
}
