//! The connection loop under conditions a real server rarely produces on cue: a read burst that
//! never lets the socket run dry, a long send queue, an idle socket, a peer that stops reading.
//! Driven over `tokio::io::duplex` with the peer's bytes written up front, so the scenario is
//! exact.

mod support;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::SinkExt;
use kharbranth::{Config, ConnState, Connection, ConnectionError, Ended, Link, ReadHooks};
use support::*;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

fn config() -> kharbranth::ConfigBuilder {
    cfg("ws://duplex.invalid/")
}

/// A pipe whose far end already holds `n` text frames "0", "1", ...: the connection reads them
/// back to back, the socket never running dry until the last.
async fn prefilled(n: usize) -> (DuplexStream, WebSocketStream<DuplexStream>) {
    let (c, s) = tokio::io::duplex(1 << 20);
    let mut peer = WebSocketStream::from_raw_socket(s, Role::Server, None).await;
    for i in 0..n {
        peer.feed(Message::text(i.to_string())).await.unwrap();
    }
    peer.flush().await.unwrap();
    (c, peer)
}

async fn open<S>(stream: S, config: Config, hooks: ReadHooks) -> (Link, JoinHandle<Ended>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (conn, link) = Connection::new("c", stream, config);
    let mut hooks = hooks;
    let task = tokio::spawn(async move { conn.run(&mut hooks).await });
    let l = link.clone();
    eventually("the connection to open", || l.state() == ConnState::Open).await;
    (link, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_queued_during_a_long_read_burst_goes_out_before_the_burst_ends() {
    const N: usize = 2000;
    let (c, mut peer) = prefilled(N).await;
    let seen = Arc::new(AtomicUsize::new(0));
    let link: Arc<OnceLock<Link>> = Arc::default();
    let (s, l) = (seen.clone(), link.clone());
    let hooks = ReadHooks::new().on_text(move |_, t| {
        if t.as_str() == "0" {
            // A reply from the hook itself: the connection is mid-burst and not woken for it.
            let link = l.get().expect("the link is set before the first read");
            link.send(Message::text("reply")).unwrap();
        }
        // A slow consumer: the burst lasts about half a second.
        std::thread::sleep(Duration::from_micros(200));
        s.fetch_add(1, SeqCst);
    });
    let (conn, l) = Connection::new("c", c, config().build().unwrap());
    link.set(l).unwrap();
    let mut hooks = hooks;
    let task = tokio::spawn(async move { conn.run(&mut hooks).await });
    let reply = within("the reply", futures_util::StreamExt::next(&mut peer)).await;
    let read_by_then = seen.load(SeqCst);
    assert_eq!(reply.unwrap().unwrap(), Message::text("reply"));
    assert!(
        read_by_then < N / 2,
        "the reply went out only after {read_by_then} of {N} frames: writes wait for the burst"
    );
    eventually("every frame read", || seen.load(SeqCst) == N).await;
    drop(peer);
    within("the run to end", task).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_long_read_burst_lets_other_tasks_on_its_thread_run() {
    const N: usize = 4000;
    let (c, peer) = prefilled(N).await;
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    // Bounded, like every loop here; far more turns than the test needs. It wakes itself as
    // the connection does when it yields (tokio's yield_now would defer the wake until the
    // scheduler next polls its driver, which a busy thread does only every few dozen turns).
    let ticker = AbortOnDrop(tokio::spawn(async move {
        for _ in 0..10_000_000 {
            t.fetch_add(1, SeqCst);
            let mut woke = false;
            std::future::poll_fn(|cx| {
                if std::mem::replace(&mut woke, true) {
                    return Poll::Ready(());
                }
                cx.waker().wake_by_ref();
                Poll::Pending
            })
            .await;
        }
    }));
    let at: Arc<[AtomicUsize; 2]> = Arc::default();
    let (a, t) = (at.clone(), ticks.clone());
    let hooks = ReadHooks::new().on_text(move |_, m| match m.as_str() {
        "0" => a[0].store(t.load(SeqCst), SeqCst),
        "3999" => a[1].store(t.load(SeqCst), SeqCst),
        _ => {}
    });
    let (_link, task) = open(c, config().build().unwrap(), hooks).await;
    eventually("the last frame", || at[1].load(SeqCst) > 0).await;
    let (first, last) = (at[0].load(SeqCst), at[1].load(SeqCst));
    assert!(
        last > first,
        "the ticker did not run once during {N} frames (ticks {first} -> {last})"
    );
    drop(ticker);
    drop(peer);
    within("the run to end", task).await.unwrap();
}

/// A stream that counts how often it is polled for reading.
struct Counting<S> {
    inner: S,
    reads: Arc<AtomicUsize>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.reads.fetch_add(1, SeqCst);
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_sleeps_until_something_happens() {
    let (c, _peer) = tokio::io::duplex(4096);
    let reads = Arc::new(AtomicUsize::new(0));
    let stream = Counting {
        inner: c,
        reads: reads.clone(),
    };
    let (link, task) = open(stream, config().build().unwrap(), ReadHooks::new()).await;
    link.send(Message::text("one write, then nothing")).unwrap();
    let before = reads.load(SeqCst);
    // The idle period being measured (no heartbeat falls due in it), not a synchronisation.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let polls = reads.load(SeqCst) - before;
    assert!(polls < 20, "polled {polls} times in 300 ms of silence");
    link.close(1000, "").unwrap();
    drop(_peer);
    within("the run to end", task).await.unwrap();
}

/// Queues three messages to a peer that reads nothing through a pipe too small for them, and
/// waits until all three were handed to the socket (and wait there, unflushed).
async fn stuck_writes(config: Config, rec: &Recorder) -> (DuplexStream, Link, JoinHandle<Ended>) {
    let (c, peer) = tokio::io::duplex(64);
    let (link, task) = open(c, config, rec.hooks()).await;
    for _ in 0..3 {
        link.send(Message::text("x".repeat(100))).unwrap();
    }
    let l = link.clone();
    eventually("three writes handed to the socket", || {
        l.stats().messages_out == 3
    })
    .await;
    (peer, link, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_lost_with_a_broken_socket_are_counted_in_the_error() {
    let rec = Recorder::new();
    let (peer, _link, task) = stuck_writes(config().build().unwrap(), &rec).await;
    drop(peer);
    let ended = within("the run to end", task).await.unwrap();
    assert!(
        matches!(ended, Ended::Failed(ConnectionError::WriteError(_))),
        "{ended:?}"
    );
    let errors = rec.errors();
    assert!(
        matches!(&errors[..], [ConnectionError::WriteError(m)]
            if m.contains("; 3 message(s) accepted since the last flush may not have been sent")),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_stuck_behind_a_peer_that_breaks_the_protocol_are_reported_after_the_failure() {
    let rec = Recorder::new();
    let config = config()
        .close_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let (mut peer, _link, task) = stuck_writes(config, &rec).await;
    // A text frame with reserved bits set: the read fails while the writes still wait.
    peer.write_all(&[0xF1, 0x01, b'x']).await.unwrap();
    let ended = within("the run to end", task).await.unwrap();
    assert!(
        matches!(ended, Ended::Failed(ConnectionError::ReadError(_))),
        "{ended:?}"
    );
    let errors = rec.errors();
    assert!(
        matches!(&errors[..], [ConnectionError::ReadError(_), ConnectionError::WriteError(m)]
            if m == "3 accepted message(s) may not have been sent before the failure"),
        "{errors:?}"
    );
    drop(peer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_send_queue_does_not_keep_reads_waiting_until_it_is_written() {
    const N: u64 = 1000;
    let (c, mut peer) = prefilled(1).await;
    let link: Arc<OnceLock<Link>> = Arc::default();
    let written_at_read = Arc::new(AtomicUsize::new(usize::MAX));
    let (l1, l2, w) = (link.clone(), link.clone(), written_at_read.clone());
    let hooks = ReadHooks::new()
        .on_open(move |_| {
            let link = l1.get().expect("the link is set before the run");
            for i in 0..N {
                link.send(Message::text(i.to_string())).unwrap();
            }
        })
        .on_text(move |_, _| {
            let out = l2.get().unwrap().stats().messages_out;
            w.store(out as usize, SeqCst);
        });
    let (conn, l) = Connection::new("c", c, config().build().unwrap());
    link.set(l).unwrap();
    let mut hooks = hooks;
    let task = tokio::spawn(async move { conn.run(&mut hooks).await });
    eventually("the peer's message read", || {
        written_at_read.load(SeqCst) != usize::MAX
    })
    .await;
    let out = written_at_read.load(SeqCst) as u64;
    assert!(
        out < N,
        "the peer's message was read only after all {out} queued writes"
    );
    for _ in 0..N {
        within(
            "the queued writes",
            futures_util::StreamExt::next(&mut peer),
        )
        .await
        .unwrap()
        .unwrap();
    }
    drop(peer);
    within("the run to end", task).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_breaks_the_protocol_is_told_why_even_when_it_reads_slowly() {
    let rec = Recorder::new();
    // The close frame that names the violation may wait up to 1 s for room in the socket.
    let (mut peer, _link, task) = stuck_writes(config().build().unwrap(), &rec).await;
    peer.write_all(&[0xF1, 0x01, b'x']).await.unwrap();
    // The peer's own slowness: it reads again only 200 ms after the violation.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut peer = WebSocketStream::from_raw_socket(peer, Role::Server, None).await;
    let mut got = Vec::new();
    within("the client's frames up to its close", async {
        while let Some(Ok(m)) = futures_util::StreamExt::next(&mut peer).await {
            let close = m.is_close();
            got.push(m);
            if close {
                break;
            }
        }
    })
    .await;
    let code = match got.last() {
        Some(Message::Close(Some(f))) => Some(u16::from(f.code)),
        _ => None,
    };
    assert_eq!(
        code,
        Some(1002),
        "frames read: {} , last {:?}",
        got.len(),
        got.last()
    );
    within("the run to end", task).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_a_close_cannot_get_out_are_reported_with_their_count() {
    let rec = Recorder::new();
    let config = config()
        .close_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let (peer, link, task) = stuck_writes(config, &rec).await;
    link.close(1000, "bye").unwrap();
    let ended = within("the run to end", task).await.unwrap();
    assert!(matches!(ended, Ended::Closed), "{ended:?}");
    assert_eq!(
        rec.errors(),
        [ConnectionError::WriteError(
            "3 queued message(s) were not written before the close".into()
        )]
    );
    drop(peer);
}

// One thread: the connection's task cannot run between the sends and the close below, so both
// messages are still queued when it sees the close.
#[tokio::test(flavor = "current_thread")]
async fn a_close_writes_and_counts_what_was_queued_and_delivers_frames_until_the_reply() {
    let (c, s) = tokio::io::duplex(1 << 16);
    let mut peer = WebSocketStream::from_raw_socket(s, Role::Server, None).await;
    let rec = Recorder::new();
    let (link, task) = open(c, config().build().unwrap(), rec.hooks()).await;
    // Queued together with the close: written before it.
    link.send(Message::text("a")).unwrap();
    link.send(Message::binary(vec![1u8, 2])).unwrap();
    link.close(1000, "bye").unwrap();
    // A slow peer: it sends two more frames 100 ms later, then reads and answers the close.
    tokio::time::sleep(Duration::from_millis(100)).await;
    peer.send(Message::text("late 1")).await.unwrap();
    peer.send(Message::text("late 2")).await.unwrap();
    let mut got = Vec::new();
    within("the client's close", async {
        while let Some(Ok(m)) = futures_util::StreamExt::next(&mut peer).await {
            let close = m.is_close();
            got.push(m);
            if close {
                break;
            }
        }
    })
    .await;
    assert_eq!(got.len(), 3, "{got:?}");
    // Answer the close and hang up, as a server does.
    let _ = within("the close reply", peer.close(None)).await;
    drop(peer);
    let ended = within("the run to end", task).await.unwrap();
    assert!(matches!(ended, Ended::Closed), "{ended:?}");
    let s = link.stats();
    assert_eq!((s.messages_out, s.bytes_out), (2, 3), "{s:?}");
    let texts: Vec<_> = rec
        .events()
        .into_iter()
        .filter(|e| matches!(e, Ev::Text(_)))
        .collect();
    assert_eq!(
        texts,
        [Ev::Text("late 1".into()), Ev::Text("late 2".into())]
    );
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_refused_with_1009() {
    let (c, mut s) = tokio::io::duplex(1 << 16);
    let config = config().max_message_size(1024).build().unwrap();
    // The connection applies the configuration's limits to the stream it is given.
    let (conn, _link) = Connection::new("c", c, config);
    let mut hooks = ReadHooks::new();
    let task = tokio::spawn(async move { conn.run(&mut hooks).await });
    // A binary frame announcing 1 MiB: refused from its header.
    s.write_all(&[0x82, 127, 0, 0, 0, 0, 0, 0x10, 0, 0])
        .await
        .unwrap();
    let mut peer = WebSocketStream::from_raw_socket(s, Role::Server, None).await;
    let close = within(
        "the client's close",
        futures_util::StreamExt::next(&mut peer),
    )
    .await;
    match close {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1009),
        other => panic!("expected a close frame, got {other:?}"),
    }
    let ended = within("the run to end", task).await.unwrap();
    assert!(
        matches!(ended, Ended::Failed(ConnectionError::ReadError(_))),
        "{ended:?}"
    );
}
