//! The WebSocket protocol over one async stream, driven by the one task that owns it.
//!
//! tokio-tungstenite's `WebSocketStream` lets a reader and a writer poll one socket from
//! different tasks, so every poll stores the caller's waker in an `AtomicWaker` (a compare and
//! swap and a swap, for every message received) and wraps the stream in an adapter that wakes
//! through it. A connection polls its socket from its own task only: [`Wire`] hands the context
//! of the current poll straight to the stream for the length of one call into tungstenite's
//! [`WebSocketContext`], and keeps no waker at all.
//!
//! Reads go into a buffer of the wire's own, where the frames are found. A complete, final,
//! unmasked text or binary frame without reserved bits, within the size limits and outside a
//! fragmented message (nearly every frame of a feed) is delivered from there: what a read
//! brought is split off the buffer in one piece, and each such message is a view into that
//! piece ([`Data`]), lent to the consumer until the wire is polled again. A consumer that keeps
//! a payload takes a reference to the piece: one for all the messages of a read, where a
//! `Bytes` per message cost two atomic operations and a hundred instructions each. Why not
//! tungstenite's reader: it reads through a buffer that it zero-fills before each read and
//! copies every payload once more. Every other frame (control frames,
//! fragments, anything tungstenite refuses) is handed to tungstenite whole and alone, so its
//! buffer is empty between frames and its checks, replies and close handshake are its own,
//! unchanged; after a close frame, everything goes to tungstenite as it arrives.

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

/// A client WebSocket over `S`, after its HTTP upgrade.
pub(crate) struct Wire<S> {
    ws: WebSocketContext,
    io: S,
    /// False while tungstenite holds more written data than it wants before accepting more.
    ready: bool,
    /// The stream reported its end (or a fatal error): later reads return `None`.
    ended: bool,
    /// Boxed: a connection's task holds its wire in more than one of its states.
    input: Box<Input>,
}

/// The read side: what was read and not yet delivered or handed to tungstenite.
struct Input {
    /// Bytes read and not yet split off into `seg`; reads append here.
    buf: BytesMut,
    /// Frames split off `buf` at once, delivered from `at` on: one reference to the buffer
    /// per split, not one per message. While it has bytes left, `buf` is empty (they came
    /// first), so the stream's bytes are `seg[at..]`, then `buf`.
    seg: Bytes,
    at: usize,
    /// A buffer given up while a consumer still kept payloads in it (a poll's window keeps
    /// them until the next poll): reads go on in it again once nothing shares it, instead of
    /// in a new allocation (a fresh megabyte costs a page fault per 4 KiB written).
    spare: BytesMut,
    /// The sizes `buf` and `spare` were made with (0: none).
    size: usize,
    spare_size: usize,
    /// The last read said `Pending`.
    waited: bool,
    /// Bytes of `buf` that tungstenite is owed: the rest of the frame it is reading.
    owed: usize,
    /// Everything goes to tungstenite as it arrives (after a close frame, at the stream's end).
    passthrough: bool,
    /// tungstenite holds the start of a fragmented message: its frames go to tungstenite.
    fragmented: bool,
    /// The last read filled all the room it was given: more is probably waiting.
    hot: bool,
    /// Room offered to a read while data keeps coming: from [`HOT_READ`] (or `burst`), doubled
    /// after each read that fills it, up to `burst`; back to the start when the stream is
    /// quiet. A feed that keeps the socket full is read a megabyte per system call (by
    /// default), one that only now and then fills a read never holds more than `HOT_READ`.
    hot_room: usize,
    burst: usize,
    /// A read error, for tungstenite to see after the bytes before it.
    error: Option<io::Error>,
    /// tungstenite queued a reply to a ping that a flush has not written out yet.
    reply_owed: bool,
    /// Room offered to a read while the stream is quiet (the configured frame buffer), and
    /// the largest frame delivered from the buffer.
    cold_read: usize,
    max_direct: usize,
    /// Buffers allocated.
    #[cfg(test)]
    made: usize,
}

/// The first room offered to a read once data keeps coming: the buffer a kept payload still
/// shares is replaced at most once per this many bytes.
const HOT_READ: usize = 64 * 1024;

/// The room of the first read once data keeps coming: [`HOT_READ`], within the frame buffer's
/// size and the burst size.
fn hot_start(cold_read: usize, burst: usize) -> usize {
    HOT_READ.clamp(cold_read, burst)
}

/// A frame's header, as far as the wire needs it.
#[derive(Debug, Clone, Copy)]
struct Head {
    /// The first byte: FIN, the reserved bits and the opcode.
    first: u8,
    masked: bool,
    /// Header bytes, mask included.
    header: usize,
    /// Payload bytes (as sent: may exceed any limit).
    len: u64,
}

const FIN: u8 = 0x80;
const OP_CONTINUE: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;

impl Head {
    /// The header at the start of `b`, or `None` while it is incomplete.
    #[inline]
    fn parse(b: &[u8]) -> Option<Head> {
        let (&first, rest) = b.split_first()?;
        let (&second, rest) = rest.split_first()?;
        let masked = second & 0x80 != 0;
        let (len, ext) = match second & 0x7f {
            126 => (
                u64::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
                2,
            ),
            127 => (u64::from_be_bytes(rest.get(..8)?.try_into().ok()?), 8),
            n => (u64::from(n), 0),
        };
        let header = 2 + ext + if masked { 4 } else { 0 };
        if b.len() < header {
            return None;
        }
        Some(Head {
            first,
            masked,
            header,
            len,
        })
    }

    /// Header and payload bytes, saturated.
    fn total(&self) -> usize {
        usize::try_from(self.len)
            .unwrap_or(usize::MAX)
            .saturating_add(self.header)
    }
}

impl Input {
    fn new(read_ahead: Vec<u8>, config: &WebSocketConfig, burst: usize) -> Self {
        let limit = |l: Option<usize>| l.unwrap_or(usize::MAX);
        let cold_read = config.read_buffer_size.max(1);
        let burst = burst.max(cold_read);
        Self {
            buf: BytesMut::from(&read_ahead[..]),
            seg: Bytes::new(),
            at: 0,
            spare: BytesMut::new(),
            size: read_ahead.len(),
            spare_size: 0,
            waited: false,
            owed: 0,
            passthrough: false,
            fragmented: false,
            hot: false,
            hot_room: hot_start(cold_read, burst),
            burst,
            error: None,
            reply_owed: false,
            cold_read,
            max_direct: limit(config.max_frame_size).min(limit(config.max_message_size)),
            #[cfg(test)]
            made: 0,
        }
    }

    /// Whether a frame with this header is delivered from the buffer (see the module's doc).
    #[inline]
    fn direct(&self, h: &Head) -> bool {
        (h.first == FIN | OP_TEXT || h.first == FIN | OP_BINARY)
            && !h.masked
            && !self.fragmented
            && h.len <= self.max_direct as u64
    }

    /// What handing tungstenite the frame `h` changes: a data frame that is not final starts
    /// a fragmented message, a final continuation ends it, and after a close frame everything
    /// goes to tungstenite.
    fn hand_over(&mut self, h: &Head) {
        let op = h.first & 0x0f;
        let fin = h.first & FIN != 0;
        match op {
            OP_TEXT | OP_BINARY if !fin => self.fragmented = true,
            OP_CONTINUE if fin => self.fragmented = false,
            OP_CLOSE => self.passthrough = true,
            _ => {}
        }
        self.owed = if self.passthrough {
            usize::MAX
        } else {
            h.total()
        };
    }

    /// Reads more into the buffer, with room for at least `need` bytes in it. `Ready(Ok(0))`
    /// at the stream's end. Called only once the split-off frames are all out.
    fn fill<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
        need: usize,
    ) -> Poll<io::Result<usize>> {
        debug_assert!(self.at >= self.seg.len(), "a read behind split-off bytes");
        // Spent: let go before the read, so that a buffer nothing else shares is reused.
        self.seg = Bytes::new();
        self.at = 0;
        let must = need.saturating_sub(self.buf.len()).max(1);
        let wish = must.max(self.read_room());
        // What is left after the buffer's bytes is read into while it is an eighth of the
        // wish (and the buffer is not smaller than the wish wants): moving on earlier would
        // leave a buffer that a poll still keeps for a new one.
        let left = self.buf.capacity() - self.buf.len();
        if left < wish && (left < must || left < wish / 8 || self.size < wish - wish / 8) {
            self.make_room(must, wish);
        }
        let room = (self.buf.capacity() - self.buf.len()).min(wish);
        let spare = &mut self.buf.spare_capacity_mut()[..room];
        let mut rb = ReadBuf::uninit(spare);
        match Pin::new(io).poll_read(cx, &mut rb) {
            Poll::Pending => {
                self.hot = false;
                self.hot_room = hot_start(self.cold_read, self.burst);
                // Quiet: an idle connection holds no read buffer. One that was busy keeps
                // its buffers over its first wait: a feed that drains its socket now and then
                // would otherwise give them back and fault fresh pages in after every wait
                // (1 KiB push: 20,000 page faults per 600,000 messages).
                if self.buf.is_empty() && (self.waited || self.size <= self.cold_read) {
                    self.buf = BytesMut::new();
                    self.spare = BytesMut::new();
                    self.size = 0;
                    self.spare_size = 0;
                }
                self.waited = true;
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                self.waited = false;
                if n == room {
                    if self.hot {
                        self.hot_room = (self.hot_room * 2).min(self.burst);
                    }
                    self.hot = true;
                }
                // SAFETY: `ReadBuf::filled` counts bytes the reader initialised, right after
                // the buffer's length.
                unsafe { self.buf.set_len(self.buf.len() + n) };
                Poll::Ready(Ok(n))
            }
        }
    }

    /// Room offered to the next read.
    #[inline]
    fn read_room(&self) -> usize {
        if self.hot {
            self.hot_room
        } else {
            self.cold_read
        }
    }

    /// Makes room after the buffer's bytes for `wish` more (at least `must`; an eighth less
    /// will do, so that the start of a frame carried over does not cost a new buffer): in
    /// place when nothing else shares the buffer, else in the spare once nothing shares that,
    /// else in a new buffer. The bytes move along.
    #[cold]
    #[inline(never)]
    fn make_room(&mut self, must: usize, wish: usize) {
        let floor = must.max(wish - wish / 8);
        if self.buf.capacity() > 0 && (self.buf.try_reclaim(wish) || self.buf.try_reclaim(floor)) {
            return;
        }
        let len = self.buf.len();
        #[cfg(test)]
        {
            self.made += 1;
        }
        if self.size < len + floor {
            // Growing (or starting): in place where the allocator can, as a vector grows. A
            // spare that small is of no use any more.
            self.spare = BytesMut::new();
            self.spare_size = 0;
            if self.buf.capacity() == 0 && len == 0 {
                // `with_capacity`, not `reserve`: `bytes` sizes the buffers that replace a
                // shared one after the capacity a buffer was made with.
                self.buf = BytesMut::with_capacity(wish);
            } else {
                self.buf.reserve(wish);
            }
            self.size = self.buf.len() + self.buf.capacity();
            return;
        }
        // Large enough, but payloads a consumer still keeps share it.
        let mut next = std::mem::take(&mut self.spare);
        let mut next_size = std::mem::take(&mut self.spare_size);
        if next.try_reclaim(len + wish) || next.try_reclaim(len + floor) {
            #[cfg(test)]
            {
                self.made -= 1;
            }
        } else {
            next = BytesMut::with_capacity(len + wish);
            next_size = len + wish;
        }
        next.extend_from_slice(&self.buf);
        let mut old = std::mem::replace(&mut self.buf, next);
        old.clear();
        self.spare = old;
        self.spare_size = std::mem::replace(&mut self.size, next_size);
    }

    /// Splits everything read off the buffer, for its frames to be delivered from.
    #[inline]
    fn split(&mut self) {
        self.seg = self.buf.split().freeze();
        self.at = 0;
    }

    /// Puts the split-off bytes not delivered (the start of a frame still arriving) back
    /// into the buffer, for the rest to be read after them.
    #[cold]
    #[inline(never)]
    fn unsplit(&mut self) {
        debug_assert!(self.buf.is_empty());
        let rest = self.seg.len() - self.at;
        // Room for the read that follows too (as `fill` asks): the bytes are in their place.
        let read = self.read_room();
        if self.buf.capacity() < rest + read / 8 {
            self.make_room(rest, rest + read);
        }
        self.buf.extend_from_slice(&self.seg[self.at..]);
        self.seg = Bytes::new();
        self.at = 0;
    }

    /// No byte read is left to deliver or hand over.
    #[inline]
    fn is_drained(&self) -> bool {
        self.at >= self.seg.len() && self.buf.is_empty()
    }
}

/// The stream and the context of the poll that is running, as the blocking `Read + Write`
/// tungstenite asks for: `Pending` becomes `WouldBlock`, with the waker registered by the
/// stream itself. Reads get the bytes tungstenite is owed from the wire's buffer, then (in
/// passthrough) the stream's.
struct Bridge<'a, 'b, S> {
    io: &'a mut S,
    cx: &'a mut Context<'b>,
    input: &'a mut Input,
}

fn would_block<T>(p: Poll<io::Result<T>>) -> io::Result<T> {
    match p {
        Poll::Ready(r) => r,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl<S: AsyncRead + Unpin> Read for Bridge<'_, '_, S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let input = &mut *self.input;
        let n = if input.at < input.seg.len() {
            let n = (input.seg.len() - input.at).min(input.owed).min(out.len());
            out[..n].copy_from_slice(&input.seg[input.at..input.at + n]);
            input.at += n;
            n
        } else {
            let n = input.buf.len().min(input.owed).min(out.len());
            out[..n].copy_from_slice(&input.buf[..n]);
            input.buf.advance(n);
            n
        };
        if n > 0 {
            if !input.passthrough {
                input.owed -= n;
            }
            return Ok(n);
        }
        if let Some(e) = input.error.take() {
            return Err(e);
        }
        if !input.passthrough {
            // The frame is whole in tungstenite's hands (or the rest is still to be read):
            // back to the wire.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut rb = ReadBuf::new(out);
        would_block(Pin::new(&mut *self.io).poll_read(self.cx, &mut rb))?;
        Ok(rb.filled().len())
    }
}

impl<S: AsyncWrite + Unpin> Write for Bridge<'_, '_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        would_block(Pin::new(&mut *self.io).poll_write(self.cx, buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        would_block(Pin::new(&mut *self.io).poll_flush(self.cx))
    }
}

/// `WouldBlock` from tungstenite means the stream registered the waker: wait.
fn pending_on_block<T>(r: Result<T, WsError>) -> Poll<Result<T, WsError>> {
    match r {
        Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        r => Poll::Ready(r),
    }
}

impl<S> Wire<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps a stream whose upgrade completed; `read_ahead` holds bytes read past the upgrade
    /// response (the first frames, when the server sent them at once). `burst` is the largest
    /// read while data keeps coming (`Config::burst_read_size`; 0: the frame buffer's size).
    pub(crate) fn client(
        io: S,
        read_ahead: Vec<u8>,
        config: WebSocketConfig,
        burst: usize,
    ) -> Self {
        Self {
            ws: WebSocketContext::new(Role::Client, Some(config)),
            io,
            ready: true,
            ended: false,
            input: Box::new(Input::new(read_ahead, &config, burst)),
        }
    }

    /// The next message: `None` once the stream ended (after a close handshake or a fatal
    /// error, which is returned once first).
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, WsError>>> {
        self.poll_frame(cx)
            .map(|r| r.map(|r| r.map(Received::into_message)))
    }

    /// [`poll_next`](Self::poll_next), with a text or binary message read from the wire's
    /// buffer as a view into it ([`Data`]), valid until the wire is used again.
    #[inline]
    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Received<'_>, WsError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let next = match std::task::ready!(self.poll_message(cx)) {
            Ok(next) => next,
            Err(e) => {
                self.ended = true;
                return Poll::Ready(match e {
                    WsError::AlreadyClosed | WsError::ConnectionClosed => None,
                    e => Some(Err(e)),
                });
            }
        };
        Poll::Ready(Some(Ok(match next {
            Next::Message(m) => Received::Message(m),
            Next::Data { text, start, end } => {
                let seg = &self.input.seg;
                let payload = &seg[start..end];
                if text {
                    // SAFETY: `poll_message` checked these bytes, which nothing changed since.
                    Received::Data(Data::Text(
                        unsafe { std::str::from_utf8_unchecked(payload) },
                        seg,
                    ))
                } else {
                    Received::Data(Data::Binary(payload, seg))
                }
            }
        })))
    }

    /// The next message, or where the next data frame's payload is in `input.seg`.
    #[inline]
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Result<Next, WsError>> {
        if self.input.reply_owed {
            // As tungstenite's own read does: the reply to a ping goes out before reading on.
            match self.ws.flush(&mut Bridge {
                io: &mut self.io,
                cx,
                input: &mut self.input,
            }) {
                Ok(()) => self.input.reply_owed = false,
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        loop {
            let input = &mut *self.input;
            if input.owed == 0 && !input.passthrough {
                if input.at < input.seg.len() {
                    let rest = &input.seg[input.at..];
                    match Head::parse(rest) {
                        Some(h) if !input.direct(&h) => input.hand_over(&h),
                        Some(h) if rest.len() >= h.total() => {
                            let start = input.at + h.header;
                            let end = start + h.len as usize;
                            input.at = end;
                            let text = h.first & 0x0f == OP_TEXT;
                            if text {
                                std::str::from_utf8(&input.seg[start..end])?;
                            }
                            return Poll::Ready(Ok(Next::Data { text, start, end }));
                        }
                        // The frame is still arriving.
                        _ => {
                            input.unsplit();
                            continue;
                        }
                    }
                } else {
                    match Head::parse(&input.buf) {
                        Some(h) if input.direct(&h) => {
                            let total = h.header + h.len as usize;
                            if input.buf.len() >= total {
                                input.split();
                                continue;
                            }
                            std::task::ready!(self.read_more(cx, total))?;
                            continue;
                        }
                        Some(h) => input.hand_over(&h),
                        None => {
                            let need = input.buf.len() + 1;
                            std::task::ready!(self.read_more(cx, need))?;
                            continue;
                        }
                    }
                }
            }
            if self.input.is_drained() && !self.input.passthrough {
                std::task::ready!(self.read_more(cx, 1))?;
                continue;
            }
            let read = self.ws.read(&mut Bridge {
                io: &mut self.io,
                cx,
                input: &mut self.input,
            });
            match read {
                Ok(m) => {
                    if matches!(m, Message::Ping(_)) {
                        self.input.reply_owed = true;
                    }
                    return Poll::Ready(Ok(Next::Message(m)));
                }
                // tungstenite took what it was owed and wants more: the wire reads on (in
                // passthrough the stream said `Pending`).
                Err(WsError::Io(e))
                    if e.kind() == io::ErrorKind::WouldBlock && !self.input.passthrough => {}
                Err(e) => return pending_on_block(Err(e)).map(|r| r.map(Next::Message)),
            }
        }
    }

    /// Reads into the wire's buffer. The stream's end or an error is left for tungstenite to
    /// report, after the bytes before it: from then on everything goes to it.
    fn read_more(&mut self, cx: &mut Context<'_>, need: usize) -> Poll<Result<(), WsError>> {
        match std::task::ready!(self.input.fill(&mut self.io, cx, need)) {
            Ok(n) if n > 0 => {}
            Ok(_) => self.input.passthrough = true,
            Err(e) => {
                self.input.error = Some(e);
                self.input.passthrough = true;
            }
        }
        if self.input.passthrough {
            self.input.owed = usize::MAX;
        }
        Poll::Ready(Ok(()))
    }

    /// Ready for [`start_send`](Self::start_send): what tungstenite buffered is below its
    /// limit, or has been flushed down to it.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        if self.ready {
            return Poll::Ready(Ok(()));
        }
        let r = std::task::ready!(self.poll_flush(cx));
        self.ready = true;
        Poll::Ready(r)
    }

    /// Hands one message to tungstenite; it reaches the stream with this call or a later
    /// flush.
    pub(crate) fn start_send(&mut self, cx: &mut Context<'_>, msg: Message) -> Result<(), WsError> {
        match self.ws.write(
            &mut Bridge {
                io: &mut self.io,
                cx,
                input: &mut self.input,
            },
            msg,
        ) {
            Ok(()) => Ok(()),
            // Accepted and buffered; the stream is full for now.
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.ready = false;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes out everything tungstenite holds and flushes the stream.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let flushed = self.ws.flush(&mut Bridge {
            io: &mut self.io,
            cx,
            input: &mut self.input,
        });
        let r = std::task::ready!(pending_on_block(flushed));
        self.ready = true;
        Poll::Ready(match r {
            // The close handshake just completed: everything was written.
            Err(WsError::ConnectionClosed) => Ok(()),
            r => r,
        })
    }

    /// The next message, waiting for it.
    pub(crate) async fn next(&mut self) -> Option<Result<Message, WsError>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Buffers `msg` once tungstenite accepts more, without flushing.
    pub(crate) async fn feed(&mut self, msg: Message) -> Result<(), WsError> {
        poll_fn(|cx| self.poll_ready(cx)).await?;
        let mut msg = Some(msg);
        poll_fn(|cx| Poll::Ready(msg.take().map_or(Ok(()), |m| self.start_send(cx, m)))).await
    }

    /// Flushes everything buffered, waiting for the stream.
    pub(crate) async fn flush(&mut self) -> Result<(), WsError> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// [`feed`](Self::feed) then [`flush`](Self::flush).
    pub(crate) async fn send(&mut self, msg: Message) -> Result<(), WsError> {
        self.feed(msg).await?;
        self.flush().await
    }
}

/// What [`Wire::poll_message`] found: a message from tungstenite, or a data frame's payload at
/// `start..end` of the split-off bytes.
enum Next {
    Message(Message),
    Data {
        text: bool,
        start: usize,
        end: usize,
    },
}

/// A message as [`Wire::poll_frame`] returns it.
pub(crate) enum Received<'a> {
    /// A text or binary message from the wire's buffer.
    Data(Data<'a>),
    /// Anything else, or a data message tungstenite read (fragmented, for one).
    Message(Message),
}

impl Received<'_> {
    /// As a tungstenite message (taking a reference to the buffer for a view).
    pub(crate) fn into_message(self) -> Message {
        match self {
            Received::Data(d) => d.into_message(),
            Received::Message(m) => m,
        }
    }
}

/// A text or binary message read from the wire's buffer: its payload, and the split-off
/// bytes it lies in, for a consumer that keeps it (one reference for every payload of a
/// split, where a `Bytes` per message costs two atomic operations each). Valid until the
/// wire is used again.
#[derive(Clone, Copy)]
pub(crate) enum Data<'a> {
    /// A text message (checked to be UTF-8).
    Text(&'a str, &'a Bytes),
    /// A binary message.
    Binary(&'a [u8], &'a Bytes),
}

impl<'a> Data<'a> {
    /// The payload.
    #[inline]
    pub(crate) fn payload(self) -> &'a [u8] {
        match self {
            Data::Text(t, _) => t.as_bytes(),
            Data::Binary(b, _) => b,
        }
    }

    /// The bytes the payload lies in: keeping them keeps the payload.
    #[inline]
    pub(crate) fn segment(self) -> &'a Bytes {
        match self {
            Data::Text(_, s) | Data::Binary(_, s) => s,
        }
    }

    /// The payload as `Bytes` of its own (a reference to the buffer).
    #[inline]
    pub(crate) fn to_bytes(self) -> Bytes {
        self.segment().slice_ref(self.payload())
    }

    /// As a tungstenite message.
    pub(crate) fn into_message(self) -> Message {
        match self {
            Data::Text(t, seg) => Message::Text(shared_text(t, seg)),
            Data::Binary(..) => Message::Binary(self.to_bytes()),
        }
    }
}

/// The text `t`, which lies in `seg`, as `Utf8Bytes` of its own (a reference to `seg`).
#[inline]
pub(crate) fn shared_text(t: &str, seg: &Bytes) -> Utf8Bytes {
    // SAFETY: the bytes of a `str`.
    unsafe { Utf8Bytes::from_bytes_unchecked(seg.slice_ref(t.as_bytes())) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    /// A socket with what was supplied. Reads get as much as they ask for, and the size each
    /// asked is recorded. Once it has nothing, a read says `Pending` (it never wakes anyone:
    /// a poll that returns `Pending` while data waits would never be polled again), or the
    /// stream's end when `ends`. It keeps what is written.
    #[derive(Default)]
    struct Feed {
        data: std::collections::VecDeque<u8>,
        ends: bool,
        asked: Vec<usize>,
        written: Vec<u8>,
    }

    impl Feed {
        /// `data`, then the stream's end.
        fn ending(data: Vec<u8>) -> Self {
            Self {
                data: data.into(),
                ends: true,
                ..Self::default()
            }
        }
    }

    impl AsyncRead for Feed {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.asked.push(buf.remaining());
            if self.data.is_empty() && !self.ends {
                return Poll::Pending;
            }
            let n = self.data.len().min(buf.remaining());
            let chunk: Vec<u8> = self.data.drain(..n).collect();
            buf.put_slice(&chunk);
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Feed {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.written.extend_from_slice(b);
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Unmasked text frames (what a server sends) of `n` bytes each, numbered from `from`.
    fn frames(from: usize, count: usize, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in from..from + count {
            out.extend_from_slice(&[0x81, n as u8]);
            let mut p = format!("{i:0n$}").into_bytes();
            p.truncate(n);
            out.extend_from_slice(&p);
        }
        out
    }

    /// Messages kept by their consumer (as a poll's window keeps large ones) share the buffer
    /// they were parsed from. A connection whose first frames came with the upgrade response
    /// must still read in reads of its frame buffer's size then, not one per frame: tungstenite
    /// would size its replacement buffers after the read-ahead, 8 bytes here.
    #[tokio::test]
    async fn frames_read_with_the_upgrade_response_leave_reads_their_full_size() {
        const N: usize = 400;
        let io = Feed::ending(frames(1, N, 62));
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let mut wire = Wire::client(io, frames(0, 1, 6), config, 0);
        let mut kept = Vec::new();
        for i in 0..=N {
            match wire.next().await {
                Some(Ok(Message::Text(t))) => {
                    assert!(t.as_str().ends_with(&i.to_string()), "message {i}: {t}");
                    kept.push(t);
                }
                other => panic!("message {i}: {other:?}"),
            }
        }
        let bytes = N * 64;
        assert!(
            wire.io.asked.len() <= 2 * bytes / 4096 + 2,
            "{} reads for {bytes} bytes",
            wire.io.asked.len()
        );
    }

    /// A feed's frames come out of the wire's own buffer as views into what was split off it
    /// in one piece: not through tungstenite (which would copy them into its buffer), not
    /// copied, and not one reference to the buffer each.
    #[test]
    fn data_frames_are_views_into_what_was_read() {
        let mut bytes = frames(0, 3, 40);
        // A fragmented message (tungstenite's), then the feed again.
        bytes.extend_from_slice(&[0x01, 2, b'a', b'b', 0x80, 2, b'c', b'd']);
        bytes.extend_from_slice(&frames(3, 1, 40));
        bytes.extend_from_slice(&[0x82, 3, 1, 2, 3]);
        let io = Feed::ending(bytes.clone());
        let mut wire = Wire::client(io, Vec::new(), WebSocketConfig::default(), 0);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut got = Vec::new();
        let mut segments = Vec::new();
        while let Poll::Ready(Some(r)) = wire.poll_frame(&mut cx) {
            // The stream ends without a close frame: an error after the messages.
            let Ok(r) = r else { break };
            match r {
                Received::Data(d) => {
                    let (seg, p) = (d.segment(), d.payload());
                    assert!(
                        seg.as_ptr_range().contains(&p.as_ptr()),
                        "a view into the split"
                    );
                    segments.push(seg.as_ptr());
                    got.push(p.to_vec());
                }
                Received::Message(Message::Text(t)) => {
                    assert_eq!(t.as_str(), "abcd");
                    segments.push(std::ptr::null());
                    got.push(t.as_str().into());
                }
                Received::Message(m) => panic!("{m:?}"),
            }
        }
        assert_eq!(got.len(), 6, "{got:?}");
        assert_eq!(got[3], b"abcd");
        assert_eq!(got[5], [1, 2, 3]);
        // One read, one split: the feed's messages before and after the fragmented one
        // lie in the same piece.
        assert!(segments[..3].iter().all(|&s| s == segments[0]));
        assert!(segments[4..].iter().all(|&s| s == segments[0]));
        assert!(wire.io.asked[0] >= bytes.len(), "all in the first read");
    }

    /// A consumer that keeps the payloads of a poll until the next one (a driven poll's
    /// window) keeps one reference per split, and the wire goes on in the buffer it gave up
    /// before once the consumer lets go of it: two buffers in turn, not one per read.
    #[test]
    fn a_consumer_keeping_payloads_until_its_next_poll_costs_no_buffer_per_read() {
        const N: usize = 20_000;
        let mut io = Feed::default();
        io.data.extend(frames(0, N, 100));
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let mut wire = Wire::client(io, Vec::new(), config, 64 * 1024);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let (mut kept, mut polls, mut got) = (Vec::<Bytes>::new(), 0, 0);
        let mut reads = 0;
        while got < N {
            // A poll of up to 300 messages keeps what it got until the next one.
            kept.clear();
            polls += 1;
            for _ in 0..300 {
                let Poll::Ready(Some(Ok(Received::Data(d)))) = wire.poll_frame(&mut cx) else {
                    break;
                };
                assert!(d.payload().starts_with(format!("{got:0100}").as_bytes()));
                got += 1;
                let seg = d.segment();
                if kept.last().is_none_or(|k| k.as_ptr() != seg.as_ptr()) {
                    kept.push(seg.clone());
                }
            }
            reads = wire.io.asked.len();
        }
        assert!(polls > 60 && reads > 30, "{polls} polls, {reads} reads");
        assert!(
            wire.input.made <= 4,
            "{} buffers made for {reads} reads",
            wire.input.made
        );
    }

    /// A read that came back short leaves the rest of the buffer to the next read, also while
    /// a consumer keeps what was split off before it: no new buffer until the rest is below an
    /// eighth of a read; then the next read goes into a buffer of a whole read's size.
    #[test]
    fn reads_go_into_what_is_left_of_the_buffer_before_a_new_one() {
        let k = 1024;
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let mut input = Input::new(Vec::new(), &config, 64 * k);
        let mut io = Feed::default();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut kept = Vec::new();
        let mut read = |input: &mut Input, io: &mut Feed, bytes: usize| {
            io.data.extend(std::iter::repeat_n(7u8, bytes));
            let left = input.buf.capacity() - input.buf.len();
            assert!(matches!(input.fill(io, &mut cx, 1), Poll::Ready(Ok(n)) if n == bytes));
            input.split();
            kept.push(input.seg.clone());
            input.at = input.seg.len();
            (left, input.made, *io.asked.last().unwrap())
        };
        // Cold, then hot: the buffer grows to a whole read.
        assert_eq!(read(&mut input, &mut io, 4 * k).2, 4 * k);
        let (_, made, asked) = read(&mut input, &mut io, 40 * k);
        assert_eq!(asked, 64 * k);
        // Short: 24 KiB left, read into, though the consumer keeps the first 40.
        let (left, made_now, asked) = read(&mut input, &mut io, 20 * k);
        assert_eq!((left, asked, made_now), (24 * k, 24 * k, made));
        // 4 KiB left, under an eighth: a new buffer, a whole read.
        let (left, made_now, asked) = read(&mut input, &mut io, 10 * k);
        assert_eq!((left, asked, made_now), (4 * k, 64 * k, made + 1));
        assert_eq!(
            input.spare_size,
            64 * k,
            "the kept buffer waits as the spare"
        );
    }

    /// The start of a frame still arriving goes back into the buffer, where it was: with a
    /// consumer keeping what was split off before it, the rest of that buffer takes the carried
    /// bytes and the next read (no new buffer, none larger than a read), and the frame comes
    /// out whole once its end arrives.
    #[test]
    fn the_start_of_a_frame_still_arriving_is_carried_into_the_rest_of_the_buffer() {
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let mut wire = Wire::client(Feed::default(), Vec::new(), config, 64 * 1024);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let whole = frames(0, 11, 100);
        // Ten frames and the first 50 bytes of the eleventh.
        wire.io.data.extend(&whole[..10 * 102 + 50]);
        let mut kept = Vec::new();
        let mut got = Vec::new();
        let mut poll = |wire: &mut Wire<Feed>, kept: &mut Vec<Bytes>| {
            while let Poll::Ready(Some(Ok(Received::Data(d)))) = wire.poll_frame(&mut cx) {
                got.push(d.payload().to_vec());
                kept.push(d.segment().clone());
            }
            got.len()
        };
        assert_eq!(poll(&mut wire, &mut kept), 10);
        let input = &wire.input;
        assert_eq!(input.buf.len(), 50, "the frame's start, carried");
        assert_eq!(input.made, 1, "carried into the rest of the first buffer");
        assert!(
            input.buf.capacity() <= 4096,
            "{} bytes of room for a carry of 50",
            input.buf.capacity()
        );
        wire.io.data.extend(&whole[10 * 102 + 50..]);
        assert_eq!(poll(&mut wire, &mut kept), 11);
        assert_eq!(
            got.concat(),
            frames(0, 11, 100)
                .chunks(102)
                .flat_map(|f| &f[2..])
                .copied()
                .collect::<Vec<u8>>()
        );
        assert_eq!(wire.input.made, 1);
        assert!(
            wire.io.asked.iter().all(|&a| a <= 4096),
            "{:?}",
            wire.io.asked
        );

        // A read that left less than the carry and an eighth of a read: the carry goes into a
        // new buffer, of the carry and a read.
        let mut wire = Wire::client(Feed::default(), Vec::new(), config, 64 * 1024);
        let whole = frames(0, 40, 100);
        wire.io.data.extend(&whole[..39 * 102 + 60]);
        let mut kept = Vec::new();
        let mut got = 0;
        while let Poll::Ready(Some(Ok(Received::Data(d)))) = wire.poll_frame(&mut cx) {
            got += 1;
            kept.push(d.segment().clone());
        }
        assert_eq!(got, 39);
        let input = &wire.input;
        assert_eq!((input.buf.len(), input.made), (60, 2));
        assert!(
            (60 + 4096..=2 * 4096).contains(&input.buf.capacity()),
            "{} bytes of room for a carry of 60",
            input.buf.capacity()
        );
    }

    /// Every message whose bytes have arrived is returned by one poll, a fragmented one and a
    /// ping last in the socket included; the wire says `Pending` only once it has to wait for
    /// the socket, and the ping's reply goes out with the next poll.
    #[test]
    fn a_poll_returns_what_has_arrived_and_waits_only_for_the_socket() {
        let mut io = Feed::default();
        let mut bytes = frames(0, 1, 5);
        bytes.extend_from_slice(&[0x01, 2, b'a', b'b', 0x80, 2, b'c', b'd']);
        bytes.extend_from_slice(&[0x89, 1, b'p']);
        io.data.extend(bytes);
        let mut wire = Wire::client(io, Vec::new(), WebSocketConfig::default(), 0);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut next = || match wire.poll_next(&mut cx) {
            Poll::Ready(Some(Ok(m))) => m,
            other => panic!("a message had arrived: {other:?}"),
        };
        assert_eq!(next(), Message::text("00000"));
        assert_eq!(next(), Message::text("abcd"));
        assert_eq!(next(), Message::Ping(Bytes::from_static(b"p")));
        assert!(wire.poll_next(&mut cx).is_pending(), "nothing more arrived");
        assert_eq!(
            decode_written(&wire.io.written),
            [(0x8a, b"p".to_vec())],
            "the reply to the ping"
        );
        // A frame that arrives alone is returned whole, at once.
        wire.io.data.extend(frames(0, 1, 40));
        assert_eq!(
            match wire.poll_next(&mut cx) {
                Poll::Ready(Some(Ok(m))) => m,
                other => panic!("a message had arrived: {other:?}"),
            },
            Message::text("0".repeat(40))
        );
        // After a close frame tungstenite reads the socket itself: a quiet socket is still
        // waited for, not polled in a loop, and the reply to the close goes out.
        wire.io.data.extend([0x88, 2, 0x03, 0xe8]);
        assert!(matches!(
            wire.poll_next(&mut cx),
            Poll::Ready(Some(Ok(Message::Close(Some(_)))))
        ));
        assert!(wire.poll_next(&mut cx).is_pending());
        assert_eq!(
            decode_written(&wire.io.written)[1],
            (0x88, vec![0x03, 0xe8]),
            "the reply to the close"
        );
    }

    /// `Feed`, whose writes block (`Pending`) while `blocked`, or fail with `broken`.
    #[derive(Default)]
    struct Stuck {
        feed: Feed,
        blocked: bool,
        broken: bool,
    }

    impl AsyncRead for Stuck {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.feed).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Stuck {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.broken {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if self.blocked {
                return Poll::Pending;
            }
            Pin::new(&mut self.feed).poll_write(cx, b)
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A ping's reply that cannot be written yet does not stop the reads, and goes out once
    /// the socket takes it; one that cannot be written at all ends the wire with the error.
    #[test]
    fn a_reply_the_socket_cannot_take_yet_waits_and_a_broken_socket_is_reported() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut io = Stuck {
            blocked: true,
            ..Stuck::default()
        };
        let mut bytes = vec![0x89, 1, b'p'];
        bytes.extend(frames(0, 2, 3));
        io.feed.data.extend(bytes);
        let mut wire = Wire::client(io, Vec::new(), WebSocketConfig::default(), 0);
        let mut next = |wire: &mut Wire<Stuck>| match wire.poll_next(&mut cx) {
            Poll::Ready(Some(r)) => r.map_err(|e| e.to_string()),
            other => panic!("a message had arrived: {other:?}"),
        };
        assert_eq!(next(&mut wire), Ok(Message::Ping(Bytes::from_static(b"p"))));
        assert_eq!(next(&mut wire), Ok(Message::text("000")), "read on");
        assert!(wire.io.feed.written.is_empty());
        wire.io.blocked = false;
        assert_eq!(next(&mut wire), Ok(Message::text("001")));
        assert_eq!(
            decode_written(&wire.io.feed.written),
            [(0x8a, b"p".to_vec())]
        );

        let mut io = Stuck {
            broken: true,
            ..Stuck::default()
        };
        let mut bytes = vec![0x89, 1, b'p'];
        bytes.extend(frames(0, 1, 3));
        io.feed.data.extend(bytes);
        let mut wire = Wire::client(io, Vec::new(), WebSocketConfig::default(), 0);
        assert_eq!(next(&mut wire), Ok(Message::Ping(Bytes::from_static(b"p"))));
        let e = next(&mut wire).expect_err("the reply cannot be written");
        assert!(e.to_lowercase().contains("broken pipe"), "{e}");
        assert!(matches!(wire.poll_next(&mut cx), Poll::Ready(None)));
    }

    /// Reads of a busy socket start at the frame buffer's size, then grow from 64 KiB,
    /// doubling while they come back full, up to the burst size; a quiet socket gets the
    /// frame buffer's size again, and an empty buffer is given back once the socket stays
    /// quiet (not at the first wait after a burst).
    #[test]
    fn reads_grow_while_the_socket_fills_them_and_the_buffer_goes_when_it_is_quiet() {
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let mut input = Input::new(Vec::new(), &config, 256 * 1024);
        let mut io = Feed::default();
        io.data.extend(std::iter::repeat_n(7u8, 1 << 20));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut got = 0;
        while let Poll::Ready(r) = input.fill(&mut io, &mut cx, 1) {
            got += r.unwrap();
            // What was read is consumed, as frames would be.
            input.buf.clear();
        }
        assert_eq!(got, 1 << 20);
        let k = 1024;
        assert_eq!(
            io.asked[..6],
            [4 * k, 64 * k, 128 * k, 256 * k, 256 * k, 256 * k],
            "reads asked {:?}",
            io.asked
        );
        assert!(
            input.buf.capacity() > 0,
            "kept over the first wait after a burst"
        );
        assert!(input.fill(&mut io, &mut cx, 1).is_pending());
        assert_eq!(input.buf.capacity(), 0, "quiet and empty: no buffer held");
        // The next burst starts small again.
        io.data.extend([1u8; 10]);
        io.asked.clear();
        assert!(input.fill(&mut io, &mut cx, 1).is_ready());
        assert_eq!(io.asked, [4 * k]);
        // A frame larger than any read gets room for all of it at once.
        io.asked.clear();
        io.data.extend(std::iter::repeat_n(1u8, 300 * k));
        assert!(input.fill(&mut io, &mut cx, 10 + 300 * k).is_ready());
        assert_eq!(io.asked, [300 * k]);
    }

    /// A server's frame: first byte (FIN, reserved bits, opcode), mask key if any, payload.
    #[derive(Debug, Clone)]
    struct Frame {
        first: u8,
        mask: Option<[u8; 4]>,
        payload: Vec<u8>,
    }

    fn encode(frames: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            out.push(f.first);
            let m = if f.mask.is_some() { 0x80 } else { 0 };
            match f.payload.len() {
                n @ 0..=125 => out.push(m | n as u8),
                n @ 126..=0xffff => {
                    out.push(m | 126);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    out.push(m | 127);
                    out.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            match f.mask {
                Some(k) => {
                    out.extend_from_slice(&k);
                    out.extend(f.payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
                }
                None => out.extend_from_slice(&f.payload),
            }
        }
        out
    }

    /// The frames a client wrote (masked), as (first byte, unmasked payload).
    fn decode_written(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while b.len() >= 2 {
            let h = Head::parse(b).expect("whole frames are written");
            let key: [u8; 4] = b[h.header - 4..h.header].try_into().unwrap();
            let p = &b[h.header..h.header + h.len as usize];
            out.push((
                h.first,
                p.iter().enumerate().map(|(i, x)| x ^ key[i % 4]).collect(),
            ));
            b = &b[h.header + h.len as usize..];
        }
        out
    }

    fn frame_strategy() -> impl Strategy<Value = Frame> {
        let payload = |max: usize| proptest::collection::vec(any::<u8>(), 0..max);
        let text = "[a-zé€😀 ]{0,40}".prop_map(String::into_bytes);
        let unmasked = |first: u8, p: Vec<u8>| Frame {
            first,
            mask: None,
            payload: p,
        };
        prop_oneof![
            // Data frames, most of a feed: valid text, any bytes as text (mostly not UTF-8),
            // binary, some beyond the size limits.
            6 => text.clone().prop_map(move |p| unmasked(0x81, p)),
            1 => payload(8).prop_map(move |p| unmasked(0x81, p)),
            4 => payload(300).prop_map(move |p| unmasked(0x82, p)),
            // Fragments and control frames.
            2 => (prop_oneof![Just(0x01u8), Just(0x02), Just(0x00), Just(0x80)], text)
                .prop_map(move |(f, p)| unmasked(f, p)),
            2 => payload(10).prop_map(move |p| unmasked(0x89, p)),
            1 => payload(10).prop_map(move |p| unmasked(0x8a, p)),
            1 => (1000u16..1012, "[a-z]{0,10}").prop_map(move |(c, r)| {
                let mut p = c.to_be_bytes().to_vec();
                p.extend_from_slice(r.as_bytes());
                unmasked(0x88, p)
            }),
            // Anything else: reserved bits and opcodes, masks, control frames too long.
            1 => (any::<u8>(), proptest::option::of(any::<[u8; 4]>()), payload(140))
                .prop_map(|(first, mask, payload)| Frame { first, mask, payload }),
        ]
    }

    /// A stream that serves `chunks` one after another (each in reads of at most what is
    /// asked), says `Pending` before some of them, then ends; it keeps what is written.
    struct Script {
        chunks: std::collections::VecDeque<Vec<u8>>,
        pauses: std::collections::VecDeque<bool>,
        written: Vec<u8>,
    }

    impl AsyncRead for Script {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.pauses.pop_front().unwrap_or(false) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if let Some(c) = self.chunks.front_mut() {
                let n = c.len().min(buf.remaining());
                buf.put_slice(&c[..n]);
                c.drain(..n);
                if c.is_empty() {
                    self.chunks.pop_front();
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Script {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.written.extend_from_slice(b);
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// The same bytes, blocking, for tungstenite alone.
    struct Plain {
        chunks: std::collections::VecDeque<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Read for Plain {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let Some(c) = self.chunks.front_mut() else {
                return Ok(0);
            };
            let n = c.len().min(out.len());
            out[..n].copy_from_slice(&c[..n]);
            c.drain(..n);
            if c.is_empty() {
                self.chunks.pop_front();
            }
            Ok(n)
        }
    }

    impl Write for Plain {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    type Outcome = (Vec<Result<Message, String>>, Vec<(u8, Vec<u8>)>);

    fn config() -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(256)
            .max_frame_size(Some(200))
            .max_message_size(Some(250))
    }

    fn split(bytes: &[u8], cuts: &[usize]) -> std::collections::VecDeque<Vec<u8>> {
        let mut out = std::collections::VecDeque::new();
        let mut rest = bytes;
        for &c in cuts {
            if rest.is_empty() {
                break;
            }
            let (a, b) = rest.split_at(c.min(rest.len()));
            out.push_back(a.to_vec());
            rest = b;
        }
        if !rest.is_empty() {
            out.push_back(rest.to_vec());
        }
        out
    }

    fn with_tungstenite(bytes: &[u8], cuts: &[usize]) -> Outcome {
        let mut io = Plain {
            chunks: split(bytes, cuts),
            written: Vec::new(),
        };
        let mut ws = WebSocketContext::new(Role::Client, Some(config()));
        let mut seen = Vec::new();
        loop {
            match ws.read(&mut io) {
                Ok(m) => seen.push(Ok(m)),
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => break,
                Err(e) => {
                    seen.push(Err(e.to_string()));
                    break;
                }
            }
        }
        (seen, decode_written(&io.written))
    }

    fn with_wire(bytes: &[u8], ahead: usize, cuts: &[usize], pauses: &[bool]) -> Outcome {
        let ahead = ahead.min(bytes.len());
        let io = Script {
            chunks: split(&bytes[ahead..], cuts),
            pauses: pauses.iter().copied().collect(),
            written: Vec::new(),
        };
        let mut wire = Wire::client(io, bytes[..ahead].to_vec(), config(), 1024);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let seen = rt.block_on(async {
            let mut seen = Vec::new();
            while let Some(r) = wire.next().await {
                seen.push(r.map_err(|e| e.to_string()));
            }
            seen
        });
        (seen, decode_written(&wire.io.written))
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// The wire delivers what tungstenite alone delivers, with the same errors, and writes
        /// the same replies, however the bytes arrive: only where payloads live differs.
        #[test]
        fn the_wire_reads_what_tungstenite_reads(
            frames in proptest::collection::vec(frame_strategy(), 0..24),
            ahead in 0usize..64,
            cuts in proptest::collection::vec(1usize..400, 0..40),
            pauses in proptest::collection::vec(any::<bool>(), 0..40),
        ) {
            let bytes = encode(&frames);
            let expected = with_tungstenite(&bytes, &cuts);
            prop_assert_eq!(with_wire(&bytes, ahead, &cuts, &pauses), expected);
        }
    }
}
