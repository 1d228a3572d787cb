//! Polled connections: every event reaches the manager's event stream, and a full queue slows
//! the socket instead of dropping anything.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kharbranth::{ConnEvent, ConnectionError, Event, WsManager};
use support::*;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The next event of the stream, within the deadline.
async fn next(events: &mut kharbranth::EventStream) -> ConnEvent {
    within("an event", events.recv())
        .await
        .expect("the event stream ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_event_arrives_with_its_connection_name() {
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    let mut events = mgr.events();
    mgr.add_polled("p", cfg(server.port).build().unwrap())
        .unwrap();
    let mut ws = server.next().await;
    ws.send(Message::text("hello")).await.unwrap();
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    ws.send(Message::Ping("p1".into())).await.unwrap();
    ws.send(Message::Pong("p2".into())).await.unwrap();
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::from(4001),
        reason: "bye now".into(),
    })))
    .await
    .unwrap();
    let mut got = Vec::new();
    for _ in 0..6 {
        let e = next(&mut events).await;
        assert_eq!(e.name(), "p");
        got.push(e.into_event());
    }
    assert!(matches!(got[0], Event::Open), "{got:?}");
    assert!(
        matches!(&got[1], Event::Text(t) if t.as_str() == "hello"),
        "{got:?}"
    );
    assert!(
        matches!(&got[2], Event::Binary(b) if b[..] == [1, 2, 3]),
        "{got:?}"
    );
    assert!(
        matches!(&got[3], Event::Ping(b) if &b[..] == b"p1"),
        "{got:?}"
    );
    assert!(
        matches!(&got[4], Event::Pong(b) if &b[..] == b"p2"),
        "{got:?}"
    );
    assert!(
        matches!(&got[5], Event::Close(4001, r) if r.as_str() == "bye now"),
        "{got:?}"
    );
    // With the server gone, the reconnect fails: an error event (dropped or refused, by
    // whether the reconnect beat the server's stop).
    drop(ws);
    server.stop().await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < deadline, "no error event");
        if let Event::Error(e) = next(&mut events).await.into_event() {
            assert!(
                matches!(
                    e,
                    ConnectionError::ConnectFailed(_) | ConnectionError::ConnectionDropped(_)
                ),
                "unexpected error {e:?}"
            );
            break;
        }
    }
    mgr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_and_polled_connections_share_a_manager() {
    let server = echo_server().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let mut events = mgr.events();
    mgr.add("hooked", cfg(server.port).build().unwrap(), rec.hooks())
        .unwrap();
    mgr.add_polled("polled", cfg(server.port).build().unwrap())
        .unwrap();
    mgr.wait_open("hooked", DEADLINE).await.unwrap();
    mgr.wait_open("polled", DEADLINE).await.unwrap();
    mgr.send_text("hooked", "to the hooks").unwrap();
    mgr.send_text("polled", "to the queue").unwrap();
    assert!(matches!(next(&mut events).await.into_event(), Event::Open));
    let e = next(&mut events).await;
    assert_eq!(e.name(), "polled");
    assert!(matches!(e.event(), Event::Text(t) if t.as_str() == "to the queue"));
    rec.wait("the hooked echo", |e| {
        e.iter().any(|e| *e == Ev::Text("to the hooks".into()))
    })
    .await;
    assert!(
        events.try_recv().is_none(),
        "the hooked echo reached the queue"
    );
    mgr.shutdown().await;
}

/// A server that sends `n` numbered binary messages of `size` bytes as fast as the socket
/// takes them; returns when they were all written.
async fn numbered_feed(mut ws: ServerWs, n: u32, size: usize) -> ServerWs {
    for i in 0..n {
        let mut payload = vec![0u8; size];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        ws.feed(Message::binary(payload)).await.unwrap();
    }
    ws.flush().await.unwrap();
    ws
}

/// The next message of a numbered feed, which must be number `expected` of `size` bytes
/// (pongs of the heartbeat are passed over).
async fn next_numbered(events: &mut kharbranth::EventStream, expected: u32, size: usize) {
    loop {
        match next(events).await.into_event() {
            Event::Binary(b) => {
                assert_eq!(b.len(), size);
                let i = u32::from_be_bytes(b[..4].try_into().unwrap());
                assert_eq!(i, expected, "message {i} arrived when {expected} was due");
                return;
            }
            Event::Pong(_) => {}
            other => panic!("unexpected event {other:?} when message {expected} was due"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_slows_the_socket_and_loses_nothing() {
    const N: u32 = 3000;
    const SIZE: usize = 16 * 1024;
    const CAPACITY: usize = 8;
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    mgr.set_event_capacity(CAPACITY).unwrap();
    let mut events = mgr.events();
    // A pong timeout shorter than the poller's pause: a stalled connection must not count the
    // time it does not read as the peer's silence.
    let config = cfg(server.port)
        .ping_interval(Duration::from_millis(100))
        .pong_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    mgr.add_polled("feed", config).unwrap();
    let ws = server.next().await;
    let feed = AbortOnDrop(tokio::spawn(async move {
        let ws = numbered_feed(ws, N, SIZE).await;
        // Keep the socket (and answer pings) until the test ends.
        let mut ws = ws;
        while let Some(Ok(_)) = ws.next().await {}
    }));
    let feed_done = {
        let h = &feed.0;
        move || h.is_finished()
    };
    assert!(matches!(next(&mut events).await.into_event(), Event::Open));
    for expected in 0..N {
        next_numbered(&mut events, expected, SIZE).await;
        if expected == 9 {
            // A slow poller: 48 MiB cannot fit the socket buffers, so the feed must wait.
            tokio::time::sleep(Duration::from_millis(800)).await;
            let pending = mgr.pending_events();
            assert!(
                pending <= CAPACITY + 1,
                "{pending} events queued with a capacity of {CAPACITY}"
            );
            assert!(!feed_done(), "the whole feed was read past a full queue");
        }
    }
    let stats = mgr.stats("feed").unwrap();
    assert_eq!(stats.reconnects, 0, "the stalled connection was dropped");
    mgr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_capacity_bounds_a_queue_of_large_messages_and_loses_nothing() {
    const N: u32 = 120;
    const SIZE: usize = 256 * 1024;
    const BYTES: usize = 1 << 20;
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    mgr.set_event_byte_capacity(BYTES).unwrap();
    assert!(mgr.set_event_byte_capacity(0).is_err());
    let mut events = mgr.events();
    mgr.add_polled("big", cfg(server.port).build().unwrap())
        .unwrap();
    let ws = server.next().await;
    let feed = AbortOnDrop(tokio::spawn(async move {
        let mut ws = numbered_feed(ws, N, SIZE).await;
        while let Some(Ok(_)) = ws.next().await {}
    }));
    assert!(matches!(next(&mut events).await.into_event(), Event::Open));
    for expected in 0..N {
        next_numbered(&mut events, expected, SIZE).await;
        if expected == 4 {
            // A slow poller: 30 MiB cannot fit the socket buffers, and the event capacity
            // (65,536) alone would let the queue take all of it.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let bytes = mgr.pending_event_bytes();
            assert!(
                bytes < BYTES + SIZE,
                "{bytes} payload bytes queued with a byte capacity of {BYTES}"
            );
            assert!(
                bytes >= BYTES,
                "only {bytes} bytes queued: the feed stalled early"
            );
            assert!(
                !feed.0.is_finished(),
                "the whole feed was read past a full queue"
            );
        }
    }
    assert_eq!(mgr.pending_event_bytes(), 0);
    mgr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_unpolled_events_is_bounded_and_ends_the_stream() {
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    mgr.set_event_capacity(4).unwrap();
    let mut events = mgr.events();
    mgr.add_polled("full", cfg(server.port).build().unwrap())
        .unwrap();
    let ws = server.next().await;
    let _feed = AbortOnDrop(tokio::spawn(async move {
        let mut ws = numbered_feed(ws, 10_000, 16 * 1024).await;
        while let Some(Ok(_)) = ws.next().await {}
    }));
    eventually("a full queue", || mgr.pending_events() >= 4).await;
    let started = Instant::now();
    within("the shutdown", mgr.shutdown()).await;
    // The close timeout (2 s) bounds it; a stalled connection must not add to that.
    assert!(started.elapsed() < Duration::from_secs(4));
    let mut left = 0;
    while let Some(e) = within("the rest of the stream", events.next()).await {
        drop(e);
        left += 1;
    }
    assert!(left >= 4, "only {left} events were left");
    assert!(
        mgr.set_event_capacity(0).is_err(),
        "capacity 0 was accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_reads_past_a_full_queue_to_the_peers_close_reply() {
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    mgr.set_event_capacity(4).unwrap();
    let events = mgr.events();
    // A close timeout far beyond the bound below: only reading the peer's reply ends the
    // close in time, and a connection waiting for room reads nothing.
    let config = cfg(server.port)
        .close_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    mgr.add_polled("full", config).unwrap();
    let ws = server.next().await;
    let _feed = AbortOnDrop(tokio::spawn(async move {
        // Small enough for the socket buffers: the server then reads, and answers the close.
        let mut ws = numbered_feed(ws, 64, 16 * 1024).await;
        while let Some(Ok(_)) = ws.next().await {}
    }));
    eventually("a full queue", || mgr.pending_events() >= 4).await;
    let bound = Duration::from_secs(5);
    assert!(
        tokio::time::timeout(bound, mgr.shutdown()).await.is_ok(),
        "the shutdown took over {bound:?}: the close waited for room"
    );
    drop(events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_stream_puts_its_batch_back() {
    let server = echo_server().await;
    let mgr = WsManager::new();
    mgr.add_polled("e", cfg(server.port).build().unwrap())
        .unwrap();
    mgr.wait_open("e", DEADLINE).await.unwrap();
    for i in 0..10 {
        mgr.send_text("e", format!("m{i}")).unwrap();
    }
    // The open event and ten echoes.
    eventually("eleven events", || mgr.pending_events() == 11).await;
    let mut first = mgr.events();
    assert!(matches!(next(&mut first).await.into_event(), Event::Open));
    drop(first);
    let mut second = mgr.events();
    for i in 0..10 {
        let e = next(&mut second).await;
        assert!(
            matches!(e.event(), Event::Text(t) if t.as_str() == format!("m{i}")),
            "{e:?}"
        );
    }
    mgr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_manager_ends_the_stream_even_with_stalled_connections() {
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    mgr.set_event_capacity(2).unwrap();
    let mut events = mgr.events();
    mgr.add_polled("d", cfg(server.port).build().unwrap())
        .unwrap();
    let ws = server.next().await;
    let _feed = AbortOnDrop(tokio::spawn(async move {
        let mut ws = numbered_feed(ws, 10_000, 16 * 1024).await;
        while let Some(Ok(_)) = ws.next().await {}
    }));
    eventually("a full queue", || mgr.pending_events() >= 2).await;
    drop(mgr);
    // The stream hands out what is queued, then ends: nothing waits for a manager that is gone.
    let mut n = 0;
    while within("the end of the stream", events.next())
        .await
        .is_some()
    {
        n += 1;
    }
    assert!(n >= 2, "only {n} events");
}

/// The payload of message `i` of the mixed feed: its size cycles over the boundaries of how
/// the queue holds payloads (copied into a batch below 4 KiB, kept as they are above).
fn mixed_payload(i: usize) -> Vec<u8> {
    const SIZES: [usize; 8] = [0, 1, 63, 4095, 4096, 4097, 70_000, 200];
    let size = SIZES[i % SIZES.len()];
    (0..size).map(|j| b'a' + ((i + j) % 26) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_large_text_and_binary_messages_arrive_whole_and_in_order() {
    const N: usize = 400;
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    // A small queue, so that batches are cut short and polls take parts of them.
    mgr.set_event_capacity(5).unwrap();
    let mut events = mgr.events();
    mgr.add_polled("mixed", cfg(server.port).build().unwrap())
        .unwrap();
    let mut ws = server.next().await;
    let _feed = AbortOnDrop(tokio::spawn(async move {
        for i in 0..N {
            let p = mixed_payload(i);
            let m = if i % 2 == 0 {
                Message::text(String::from_utf8(p).unwrap())
            } else {
                Message::binary(p)
            };
            ws.feed(m).await.unwrap();
        }
        ws.flush().await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    }));
    assert!(matches!(next(&mut events).await.into_event(), Event::Open));
    for i in 0..N {
        let e = next(&mut events).await;
        assert_eq!(e.name(), "mixed");
        let want = mixed_payload(i);
        match e.into_event() {
            Event::Text(t) if i % 2 == 0 => assert!(t.as_bytes() == want, "text {i} differs"),
            Event::Binary(b) if i % 2 == 1 => assert!(b[..] == want[..], "binary {i} differs"),
            other => panic!("message {i}: unexpected {other:?}"),
        }
    }
    mgr.shutdown().await;
}
