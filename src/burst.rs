//! A read buffer that exists only while a connection is busy.
//!
//! tungstenite reads through a buffer that it allocates eagerly and zero-fills before every
//! read: a large one makes every idle connection large, a small one makes a fast feed pay a
//! system call per few kilobytes. [`BurstReader`] sits under tungstenite's small buffer: while
//! reads keep filling what tungstenite asks for, it reads up to `burst` bytes per system call
//! into a buffer of its own and serves tungstenite from memory; as soon as the socket runs dry
//! the buffer is freed again. An idle connection holds only tungstenite's small buffer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose reads are batched while data keeps coming. Writes pass straight through.
#[derive(Debug)]
pub(crate) struct BurstReader<S> {
    inner: S,
    burst: usize,
    buf: Vec<u8>,
    pos: usize,
    hot: bool,
}

impl<S> BurstReader<S> {
    /// Wraps `inner`; `burst` is the largest read made while busy (0 disables batching).
    pub(crate) fn new(inner: S, burst: usize) -> Self {
        Self {
            inner,
            burst,
            buf: Vec::new(),
            pos: 0,
            hot: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BurstReader<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.buf.len() {
            let n = (this.buf.len() - this.pos).min(out.remaining());
            out.put_slice(&this.buf[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        if !this.hot || this.burst <= out.remaining() {
            // Cold: read straight into the caller's buffer. Filling it completely means more
            // is probably waiting: batch the next reads.
            let wanted = out.remaining();
            let before = out.filled().len();
            let polled = Pin::new(&mut this.inner).poll_read(cx, out);
            if polled.is_pending() && this.buf.capacity() > 0 {
                // Dry socket: the burst is over, give the memory back.
                this.buf = Vec::new();
                this.pos = 0;
            }
            ready!(polled)?;
            this.hot = wanted > 0 && out.filled().len() - before == wanted;
            return Poll::Ready(Ok(()));
        }
        // Hot: one large read, then serve from memory.
        if this.buf.capacity() < this.burst {
            this.buf = Vec::with_capacity(this.burst);
        }
        this.buf.clear();
        this.pos = 0;
        let spare = this.buf.spare_capacity_mut();
        let mut rb = ReadBuf::uninit(&mut spare[..this.burst]);
        match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
            Poll::Pending => {
                // The socket ran dry: the burst is over, give the memory back.
                this.hot = false;
                this.buf = Vec::new();
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                // SAFETY: `ReadBuf::filled` counts bytes the inner reader initialised.
                unsafe { this.buf.set_len(n) };
                if n < this.burst / 4 {
                    // A short read: the sender is not outrunning us any more.
                    this.hot = false;
                }
                let k = n.min(out.remaining());
                out.put_slice(&this.buf[..k]);
                this.pos = k;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BurstReader<S> {
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

    #[tokio::test]
    async fn passes_every_byte_through_in_order_hot_or_cold() {
        let (mut tx, rx) = tokio::io::duplex(1 << 20);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        let writer = tokio::spawn(async move {
            for chunk in data.chunks(7_000) {
                tx.write_all(chunk).await.unwrap();
            }
        });
        let mut r = BurstReader::new(rx, 64 * 1024);
        let mut got = Vec::new();
        let mut small = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), r.read(&mut small))
                .await
                .expect("read within 5 s")
                .unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got, expect);
        assert!(r.buf.capacity() == 0 || r.pos == r.buf.len());
    }

    #[tokio::test]
    async fn idle_reader_holds_no_burst_buffer() {
        let (mut tx, rx) = tokio::io::duplex(1 << 20);
        let mut r = BurstReader::new(rx, 64 * 1024);
        tx.write_all(&[1u8; 10_000]).await.unwrap();
        let mut small = [0u8; 4096];
        let mut total = 0;
        while total < 10_000 {
            total += r.read(&mut small).await.unwrap();
        }
        // Nothing more is coming: the next read finds the socket dry and frees the buffer.
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(50), r.read(&mut small)).await;
        assert!(pending.is_err(), "no data was expected");
        assert_eq!(r.buf.capacity(), 0);
    }
}
