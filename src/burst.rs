//! A read buffer that exists only while a connection is busy.
//!
//! A connection's socket is wrapped in one with batching off (`burst` 0): its wire batches
//! reads itself, into the buffer it parses frames in (`crate::wire`), with the policy below.
//! What the reader still does for a connection is stamp its reads (`crate::clock`).
//!
//! tungstenite reads through a buffer that it allocates eagerly and zero-fills before every
//! read: a large one makes every idle connection large, a small one makes a fast feed pay a
//! system call per few kilobytes. [`BurstReader`] sits under tungstenite's small buffer: while
//! reads keep filling what tungstenite asks for, it reads up to `burst` bytes per system call
//! into a buffer of its own and serves tungstenite from memory; as soon as the socket runs dry
//! the buffer is freed again. An idle connection holds only tungstenite's small buffer.
//!
//! A burst starts with reads of [`BURST_START`] and doubles them after every read the socket
//! fills, up to `burst`: a feed that keeps the socket full is read a megabyte per system call
//! (by default), with a twentieth of the system calls and of the wake-ups of the sender that
//! freeing socket buffer space costs (1 KiB push: 4,700 reads per 300 MB at 64 KiB, 450 at
//! 1 MiB, and a third less kernel time), while a feed that only now and then fills a read
//! never holds more than `BURST_START`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose reads are batched while data keeps coming. Writes pass straight through.
#[derive(Debug)]
pub(crate) struct BurstReader<S> {
    inner: S,
    /// The largest read while busy.
    burst: usize,
    /// The size of the next read while busy: from [`BURST_START`] (or `burst` when smaller),
    /// doubled after each read the socket filled.
    size: usize,
    buf: Vec<u8>,
    pos: usize,
    hot: bool,
    /// Stamp every read of `inner` that returns bytes (receive timestamps, `crate::clock`).
    stamps: bool,
}

/// The first read of a burst; later ones double up to the reader's `burst`.
const BURST_START: usize = 64 * 1024;

impl<S> BurstReader<S> {
    /// Wraps `inner`; `burst` is the largest read made while busy (0 disables batching).
    pub(crate) fn new(inner: S, burst: usize) -> Self {
        Self {
            inner,
            burst,
            size: burst.min(BURST_START),
            buf: Vec::new(),
            pos: 0,
            hot: false,
            stamps: false,
        }
    }

    /// Stamps every read of the stream that returns bytes with the time (see `crate::clock`):
    /// once per read, so a burst of messages costs one clock read.
    pub(crate) fn with_stamps(mut self, on: bool) -> Self {
        self.stamps = on;
        self
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
        if !this.hot || this.size <= out.remaining() {
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
            let got = out.filled().len() - before;
            if this.stamps && got > 0 {
                crate::clock::note_read();
            }
            this.hot = wanted > 0 && got == wanted;
            return Poll::Ready(Ok(()));
        }
        // Hot: one large read, then serve from memory.
        let size = this.size;
        if this.buf.capacity() < size {
            // Not `reserve`: what the buffer holds was served already, and is not copied.
            this.buf = Vec::with_capacity(size);
        }
        this.buf.clear();
        this.pos = 0;
        let spare = this.buf.spare_capacity_mut();
        let mut rb = ReadBuf::uninit(&mut spare[..size]);
        match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
            Poll::Pending => {
                // The socket ran dry: the burst is over, give the memory back.
                this.hot = false;
                this.buf = Vec::new();
                this.size = this.burst.min(BURST_START);
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                // SAFETY: `ReadBuf::filled` counts bytes the inner reader initialised.
                unsafe { this.buf.set_len(n) };
                if this.stamps && n > 0 {
                    crate::clock::note_read();
                }
                if n < size / 4 {
                    // A short read: the sender is not outrunning us any more.
                    this.hot = false;
                    this.size = this.burst.min(BURST_START);
                } else if n == size {
                    // The socket filled it: more is waiting than this read could take.
                    this.size = size.saturating_mul(2).min(this.burst);
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
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), r.read(&mut small))
                .await
                .expect("read within 5 s")
                .unwrap();
            assert!(n > 0, "the stream ended after {total} of 10000 bytes");
            total += n;
        }
        // Nothing more is coming: the next read finds the socket dry and frees the buffer.
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(50), r.read(&mut small)).await;
        assert!(pending.is_err(), "no data was expected");
        assert_eq!(r.buf.capacity(), 0);
    }

    /// A stream under test control: what was `supply`-ed arrives in those segments (a read
    /// never spans two, as a packet at a time) and reads are Pending when none is left. It
    /// records the size of every read asked of it, and what was written to it.
    #[derive(Default)]
    struct Probe {
        segments: std::collections::VecDeque<Vec<u8>>,
        asked: Vec<usize>,
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
            this.asked.push(out.remaining());
            let Some(seg) = this.segments.front_mut() else {
                return Poll::Pending;
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

    const BURST: usize = 64 * 1024;
    const CHUNK: usize = 4096;

    /// Reads with a `CHUNK`-byte buffer until the stream is Pending; returns each read's bytes.
    fn read_until_dry(r: &mut BurstReader<Probe>) -> Vec<Vec<u8>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut reads = Vec::new();
        loop {
            let mut chunk = [0u8; CHUNK];
            let mut out = ReadBuf::new(&mut chunk);
            match Pin::new(&mut *r).poll_read(&mut cx, &mut out) {
                Poll::Pending => return reads,
                Poll::Ready(res) => res.unwrap(),
            }
            assert!(
                !out.filled().is_empty(),
                "an empty read while data was waiting"
            );
            reads.push(out.filled().to_vec());
        }
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn a_busy_socket_is_read_in_bursts_that_fill_every_read() {
        let data = pattern(200_000);
        let mut r = BurstReader::new(Probe::default(), BURST);
        r.inner.supply(&data);
        let reads = read_until_dry(&mut r);
        assert_eq!(reads.concat(), data);
        // Every read but the last gets all it asked for, served from the socket or memory.
        assert!(reads[..reads.len() - 1].iter().all(|r| r.len() == CHUNK));
        // Cold first (the caller's size), then burst-sized reads: 200 kB in a handful of
        // reads of the socket instead of 49.
        let asked = &r.inner.asked;
        assert_eq!(
            asked[0], CHUNK,
            "the first read of an idle socket is not the caller's size"
        );
        assert!(
            asked[1..].iter().all(|&n| n == BURST),
            "reads asked {asked:?}"
        );
        assert!(
            asked.len() <= 6,
            "{} reads of the socket: {asked:?}",
            asked.len()
        );
        // Dry: the burst memory is given back.
        assert_eq!(r.buf.capacity(), 0);
    }

    #[test]
    fn a_short_read_ends_the_burst() {
        // A full read turns the reader hot; its next read of the socket is burst-sized and
        // short (1000 bytes, less than a quarter of the burst): the burst is over, and the
        // read after it asks for the caller's size again.
        let mut r = BurstReader::new(Probe::default(), BURST);
        for seg in [pattern(CHUNK), pattern(1000), pattern(100)] {
            r.inner.supply(&seg);
        }
        let reads = read_until_dry(&mut r);
        assert_eq!(reads, [pattern(CHUNK), pattern(1000), pattern(100)]);
        assert_eq!(r.inner.asked[..3], [CHUNK, BURST, CHUNK]);
        // A short read of an idle reader does not start a burst.
        let mut r = BurstReader::new(Probe::default(), BURST);
        r.inner.supply(&pattern(100));
        r.inner.supply(&pattern(200));
        read_until_dry(&mut r);
        assert_eq!(r.inner.asked[..2], [CHUNK, CHUNK]);
    }

    #[test]
    fn a_read_of_a_quarter_of_the_burst_is_not_short() {
        // Less than a quarter ends the burst; a quarter exactly keeps it going.
        let mut r = BurstReader::new(Probe::default(), BURST);
        for seg in [pattern(CHUNK), pattern(BURST / 4), pattern(100)] {
            r.inner.supply(&seg);
        }
        read_until_dry(&mut r);
        assert_eq!(r.inner.asked[..3], [CHUNK, BURST, BURST]);
    }

    #[test]
    fn a_dry_socket_ends_the_burst() {
        let mut r = BurstReader::new(Probe::default(), BURST);
        r.inner.supply(&pattern(CHUNK));
        read_until_dry(&mut r);
        assert_eq!(r.inner.asked, [CHUNK, BURST], "hot after a full read");
        r.inner.supply(&[7u8; 100]);
        assert_eq!(read_until_dry(&mut r), [[7u8; 100]]);
        assert_eq!(
            r.inner.asked[2], CHUNK,
            "still hot after the socket ran dry"
        );
    }

    #[test]
    fn a_read_that_completes_a_partly_filled_buffer_counts_as_full() {
        // As `read_exact` does: one buffer, filled over several reads.
        let mut r = BurstReader::new(Probe::default(), BURST);
        r.inner.supply(&pattern(1000));
        r.inner.supply(&pattern(CHUNK - 1000));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut chunk = [0u8; CHUNK];
        let mut out = ReadBuf::new(&mut chunk);
        while out.remaining() > 0 {
            let left = out.remaining();
            match Pin::new(&mut r).poll_read(&mut cx, &mut out) {
                Poll::Ready(res) => res.unwrap(),
                Poll::Pending => panic!("Pending with data waiting"),
            }
            // An empty read would repeat forever: fail instead of hanging.
            assert!(
                out.remaining() < left,
                "an empty read while data was waiting"
            );
        }
        r.inner.supply(&pattern(CHUNK));
        read_until_dry(&mut r);
        // Short (cold), then the rest of the buffer (full: hot), then a burst-sized read.
        assert_eq!(r.inner.asked[..3], [CHUNK, CHUNK - 1000, BURST]);
    }

    #[test]
    fn long_reads_keep_the_burst_going() {
        let mut r = BurstReader::new(Probe::default(), BURST);
        // Each read of the socket while hot gets a whole burst: it stays hot.
        r.inner.supply(&pattern(CHUNK + 3 * BURST));
        assert_eq!(read_until_dry(&mut r).concat(), pattern(CHUNK + 3 * BURST));
        assert_eq!(r.inner.asked[..4], [CHUNK, BURST, BURST, BURST]);
    }

    #[test]
    fn reads_the_socket_fills_double_up_to_the_burst_and_a_dry_socket_starts_over() {
        const MAX: usize = 1 << 20;
        let mut r = BurstReader::new(Probe::default(), MAX);
        let total = CHUNK + (64 + 128 + 256 + 512) * 1024 + 2 * MAX;
        r.inner.supply(&pattern(total));
        assert_eq!(read_until_dry(&mut r).concat(), pattern(total));
        let k = 1024;
        assert_eq!(
            r.inner.asked[..7],
            [CHUNK, 64 * k, 128 * k, 256 * k, 512 * k, MAX, MAX]
        );
        assert_eq!(r.buf.capacity(), 0, "dry: the burst memory is given back");
        // The next burst starts small again; a read the socket does not fill keeps its size.
        r.inner.supply(&pattern(CHUNK));
        r.inner.supply(&pattern(40 * k));
        r.inner.supply(&pattern(64 * k));
        read_until_dry(&mut r);
        let next = &r.inner.asked[8..];
        assert_eq!(next[..3], [CHUNK, 64 * k, 64 * k], "reads asked {next:?}");
    }

    #[test]
    fn with_stamps_every_read_of_the_socket_that_returns_bytes_is_stamped_once() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut r = BurstReader::new(Probe::default(), BURST).with_stamps(true);
        r.inner.supply(&pattern(CHUNK));
        r.inner.supply(&pattern(2 * CHUNK));
        crate::clock::clear_read();
        let mut chunk = [0u8; CHUNK];
        let mut out = ReadBuf::new(&mut chunk);
        assert!(Pin::new(&mut r).poll_read(&mut cx, &mut out).is_ready());
        let first = crate::clock::take_read().expect("a cold read is stamped");
        // Hot: one burst-sized read of the socket, served in two reads from memory.
        let mut out = ReadBuf::new(&mut chunk);
        assert!(Pin::new(&mut r).poll_read(&mut cx, &mut out).is_ready());
        let second = crate::clock::take_read().expect("a burst read is stamped");
        assert!(second.monotonic_ns() >= first.monotonic_ns());
        let mut out = ReadBuf::new(&mut chunk);
        assert!(Pin::new(&mut r).poll_read(&mut cx, &mut out).is_ready());
        assert_eq!(
            crate::clock::take_read(),
            None,
            "served from memory: no read"
        );
        // A dry socket is no read either.
        let mut out = ReadBuf::new(&mut chunk);
        assert!(Pin::new(&mut r).poll_read(&mut cx, &mut out).is_pending());
        assert_eq!(crate::clock::take_read(), None);
        // Without the option nothing is stamped.
        let mut r = BurstReader::new(Probe::default(), BURST);
        r.inner.supply(&pattern(10));
        let mut out = ReadBuf::new(&mut chunk);
        assert!(Pin::new(&mut r).poll_read(&mut cx, &mut out).is_ready());
        assert_eq!(crate::clock::take_read(), None);
    }

    #[tokio::test]
    async fn writes_flushes_and_shutdown_pass_through() {
        let mut w = BurstReader::new(Probe::default(), BURST);
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
