//! The WebSocket protocol over one async stream, driven by the one task that owns it.
//!
//! tokio-tungstenite's `WebSocketStream` lets a reader and a writer poll one socket from
//! different tasks, so every poll stores the caller's waker in an `AtomicWaker` (a compare and
//! swap and a swap, for every message received) and wraps the stream in an adapter that wakes
//! through it. A connection polls its socket from its own task only: [`Wire`] hands the context
//! of the current poll straight to the stream for the length of one call into tungstenite's
//! [`WebSocketContext`], and keeps no waker at all. The frames, their checks and the close
//! handshake are tungstenite's, unchanged.

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::Message;
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
    /// Bytes read past the upgrade response, served to tungstenite before the stream's.
    read_ahead: Bytes,
}

/// The stream and the context of the poll that is running, as the blocking `Read + Write`
/// tungstenite asks for: `Pending` becomes `WouldBlock`, with the waker registered by the
/// stream itself.
struct Bridge<'a, 'b, S> {
    io: &'a mut S,
    cx: &'a mut Context<'b>,
    /// Served first (see `Wire::read_ahead`); emptied as tungstenite reads it.
    read_ahead: &'a mut Bytes,
}

fn would_block<T>(p: Poll<io::Result<T>>) -> io::Result<T> {
    match p {
        Poll::Ready(r) => r,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl<S: AsyncRead + Unpin> Read for Bridge<'_, '_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.read_ahead.is_empty() {
            return Ok(serve_read_ahead(self.read_ahead, buf));
        }
        let mut rb = ReadBuf::new(buf);
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

/// Moves the start of `read_ahead` into `buf` (its memory goes with its last byte).
#[cold]
fn serve_read_ahead(read_ahead: &mut Bytes, buf: &mut [u8]) -> usize {
    let n = read_ahead.len().min(buf.len());
    buf[..n].copy_from_slice(&read_ahead.split_to(n));
    n
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
    /// response (the first frames, when the server sent them at once).
    pub(crate) fn client(io: S, read_ahead: Vec<u8>, config: WebSocketConfig) -> Self {
        // Not `WebSocketContext::from_partially_read`: its buffer would remember the read-ahead's
        // size as its own, and a buffer that payloads still share (a driven poll's window holds
        // them) is then replaced by one of that size for every frame, instead of one of the
        // configured size for every few kilobytes.
        Self {
            ws: WebSocketContext::new(Role::Client, Some(config)),
            io,
            ready: true,
            ended: false,
            read_ahead: Bytes::from(read_ahead),
        }
    }

    /// The next message: `None` once the stream ended (after a close handshake or a fatal
    /// error, which is returned once first).
    #[inline]
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, WsError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let read = self.ws.read(&mut Bridge {
            io: &mut self.io,
            cx,
            read_ahead: &mut self.read_ahead,
        });
        match std::task::ready!(pending_on_block(read)) {
            Ok(m) => Poll::Ready(Some(Ok(m))),
            Err(e) => {
                self.ended = true;
                match e {
                    WsError::AlreadyClosed | WsError::ConnectionClosed => Poll::Ready(None),
                    e => Poll::Ready(Some(Err(e))),
                }
            }
        }
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
                read_ahead: &mut self.read_ahead,
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
            read_ahead: &mut self.read_ahead,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that serves `data` in reads as large as asked for, and counts them.
    struct Counted {
        data: Bytes,
        reads: usize,
    }

    impl AsyncRead for Counted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self.data.len().min(buf.remaining());
            let chunk = self.data.split_to(n);
            buf.put_slice(&chunk);
            self.reads += 1;
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Counted {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
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
        let io = Counted {
            data: Bytes::from(frames(1, N, 62)),
            reads: 0,
        };
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let mut wire = Wire::client(io, frames(0, 1, 6), config);
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
            wire.io.reads <= 2 * bytes / 4096 + 2,
            "{} reads for {bytes} bytes",
            wire.io.reads
        );
    }
}
