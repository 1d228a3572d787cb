//! What sits between a connection's wire and its transport: the receive timestamps' clock
//! readings, taken at the socket.
//!
//! With `receive_timestamps(true)`, every read of the socket that returns bytes reads both
//! clocks (`crate::clock::note_read`): once per read, so the messages of one read share one
//! reading and a burst of them costs one. The wire batches its reads itself, into the buffer it
//! parses frames in (`crate::wire`), so nothing else is done here: writes pass straight through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose reads are stamped when receive timestamps are on.
#[derive(Debug)]
pub(crate) struct Stamped<S> {
    inner: S,
    /// Stamp every read of `inner` that returns bytes.
    on: bool,
}

impl<S> Stamped<S> {
    /// Wraps `inner`, stamping its reads when `on`.
    pub(crate) fn new(inner: S, on: bool) -> Self {
        Self { inner, on }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stamped<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.on {
            return Pin::new(&mut this.inner).poll_read(cx, out);
        }
        let before = out.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
        if out.filled().len() > before {
            crate::clock::note_read();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stamped<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A stream under test control: what was `supply`-ed arrives in those segments (a read
    /// never spans two, as a packet at a time) and reads are Pending when none is left, or
    /// the stream's end once it `ends`. It keeps what was written to it.
    #[derive(Default)]
    struct Probe {
        segments: std::collections::VecDeque<Vec<u8>>,
        ends: bool,
        written: Vec<u8>,
        flushes: usize,
        shut: bool,
        vectored: bool,
    }

    impl Probe {
        fn supply(&mut self, bytes: &[u8]) {
            self.segments.push_back(bytes.to_vec());
        }
    }

    impl AsyncRead for Probe {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let Some(seg) = this.segments.front_mut() else {
                return if this.ends {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            };
            let n = seg.len().min(out.remaining());
            out.put_slice(&seg[..n]);
            seg.drain(..n);
            if seg.is_empty() {
                this.segments.pop_front();
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Probe {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().written.extend_from_slice(data);
            Poll::Ready(Ok(data.len()))
        }
        fn is_write_vectored(&self) -> bool {
            self.vectored
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().shut = true;
            Poll::Ready(Ok(()))
        }
    }

    /// One read of `r` into a 4 KiB buffer: its bytes, or `None` when it was Pending.
    fn read(r: &mut Stamped<Probe>) -> Option<Vec<u8>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut chunk = [0u8; 4096];
        let mut out = ReadBuf::new(&mut chunk);
        match Pin::new(r).poll_read(&mut cx, &mut out) {
            Poll::Pending => None,
            Poll::Ready(res) => {
                res.unwrap();
                Some(out.filled().to_vec())
            }
        }
    }

    #[test]
    fn every_read_of_the_socket_that_returns_bytes_is_stamped_once() {
        let mut r = Stamped::new(Probe::default(), true);
        r.inner.supply(b"first");
        r.inner.supply(b"second");
        crate::clock::clear_read();
        assert_eq!(read(&mut r).as_deref(), Some(&b"first"[..]));
        let first = crate::clock::take_read().expect("a read that returned bytes is stamped");
        assert_eq!(crate::clock::take_read(), None, "taken once");
        assert_eq!(read(&mut r).as_deref(), Some(&b"second"[..]));
        let second = crate::clock::take_read().expect("so is the next one");
        assert!(second.monotonic_ns() >= first.monotonic_ns());
        // A dry socket is no read, and neither is the stream's end.
        assert_eq!(read(&mut r), None);
        assert_eq!(crate::clock::take_read(), None);
        r.inner.ends = true;
        assert_eq!(read(&mut r).as_deref(), Some(&b""[..]));
        assert_eq!(crate::clock::take_read(), None, "the end returned no bytes");
        // Without the option nothing is stamped, and the bytes are the same.
        let mut r = Stamped::new(Probe::default(), false);
        r.inner.supply(b"plain");
        assert_eq!(read(&mut r).as_deref(), Some(&b"plain"[..]));
        assert_eq!(crate::clock::take_read(), None);
    }

    #[tokio::test]
    async fn passes_every_byte_through_in_order() {
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        let writer = tokio::spawn(async move {
            for chunk in data.chunks(7_000) {
                tx.write_all(chunk).await.unwrap();
            }
        });
        let mut r = Stamped::new(rx, true);
        let mut got = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(5), r.read_to_end(&mut got))
            .await
            .expect("read within 5 s")
            .unwrap();
        writer.await.unwrap();
        assert_eq!(got, expect);
    }

    #[tokio::test]
    async fn writes_flushes_and_shutdown_pass_through() {
        let mut w = Stamped::new(Probe::default(), true);
        w.write_all(b"hello").await.unwrap();
        let bufs = [io::IoSlice::new(b" wor"), io::IoSlice::new(b"ld")];
        // The probe writes one slice per call, as streams without vectored writes do.
        assert_eq!(w.write_vectored(&bufs).await.unwrap(), 4);
        assert_eq!(w.write_vectored(&bufs[1..]).await.unwrap(), 2);
        w.flush().await.unwrap();
        assert_eq!(w.inner.written, b"hello world");
        assert_eq!(w.inner.flushes, 1);
        w.shutdown().await.unwrap();
        assert!(w.inner.shut);
        // Whether vectored writes are worth it is the stream's to say.
        assert!(!w.is_write_vectored());
        w.inner.vectored = true;
        assert!(w.is_write_vectored());
    }
}
