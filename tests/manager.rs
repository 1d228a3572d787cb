//! The manager: names, restart (method and channel), close, many connections, errors of
//! writes, stats, wait_open and shutdown.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc as std_mpsc};
use std::time::Duration;

use futures_util::SinkExt;
use kharbranth::{ConnState, ConnectionError, ReadHooks, Restart, WsManager};
use support::*;
use tokio_tungstenite::tungstenite::Message;

fn close_of(m: &Message) -> Option<(u16, String)> {
    match m {
        Message::Close(Some(f)) => Some((u16::from(f.code), f.reason.to_string())),
        _ => None,
    }
}

/// Backoff so long that a reconnect seen within the test deadline cannot come from it.
fn no_backoff_cfg(port: u16) -> kharbranth::ConfigBuilder {
    cfg(port).reconnect_backoff(Duration::from_secs(30), Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_method_closes_cleanly_and_reconnects_at_once() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    mgr.add(
        "m",
        no_backoff_cfg(server.port).build().unwrap(),
        rec.hooks(),
    )
    .unwrap();
    let mut ws1 = server.next().await;
    mgr.wait_open("m", DEADLINE).await.unwrap();
    mgr.restart("m").unwrap();
    let m = recv_data(&mut ws1).await;
    assert_eq!(close_of(&m), Some((1000, "restart".into())), "{m:?}");
    drop(ws1);
    let _ws2 = server.next().await;
    rec.wait_count("a second on_open", 2, |e| *e == Ev::Open)
        .await;
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    mgr.close("m", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_sender_one_restarts_only_that_connection() {
    let (mut sa, mut sb) = (Server::start().await, Server::start().await);
    let (ra, rb) = (Recorder::new(), Recorder::new());
    let mgr = WsManager::new();
    mgr.add("a", no_backoff_cfg(sa.port).build().unwrap(), ra.hooks())
        .unwrap();
    mgr.add("b", no_backoff_cfg(sb.port).build().unwrap(), rb.hooks())
        .unwrap();
    let mut wa = sa.next().await;
    let _wb = sb.next().await;
    mgr.wait_open("a", DEADLINE).await.unwrap();
    mgr.wait_open("b", DEADLINE).await.unwrap();
    let tx = mgr.restart_sender();
    tx.send(Restart::One("a".into())).unwrap();
    let m = recv_data(&mut wa).await;
    assert_eq!(close_of(&m), Some((1000, "restart".into())), "{m:?}");
    drop(wa);
    let _wa2 = sa.next().await;
    ra.wait_count("a reopened", 2, |e| *e == Ev::Open).await;
    assert_eq!(rb.opens(), 1);
    assert_eq!(sb.accepted(), 1);
    assert_eq!(mgr.state("b").unwrap(), ConnState::Open);
    // An unknown name through the channel is ignored, not fatal.
    tx.send(Restart::One("nope".into())).unwrap();
    mgr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_sender_all_restarts_every_connection() {
    let (mut sa, mut sb) = (Server::start().await, Server::start().await);
    let (ra, rb) = (Recorder::new(), Recorder::new());
    let mgr = WsManager::new();
    mgr.add("a", no_backoff_cfg(sa.port).build().unwrap(), ra.hooks())
        .unwrap();
    mgr.add("b", no_backoff_cfg(sb.port).build().unwrap(), rb.hooks())
        .unwrap();
    let (mut wa, mut wb) = (sa.next().await, sb.next().await);
    mgr.wait_open("a", DEADLINE).await.unwrap();
    mgr.wait_open("b", DEADLINE).await.unwrap();
    mgr.restart_sender().send(Restart::All).unwrap();
    for ws in [&mut wa, &mut wb] {
        let m = recv_data(ws).await;
        assert_eq!(close_of(&m), Some((1000, "restart".into())), "{m:?}");
    }
    drop((wa, wb));
    let (_wa2, _wb2) = (sa.next().await, sb.next().await);
    ra.wait_count("a reopened", 2, |e| *e == Ev::Open).await;
    rb.wait_count("b reopened", 2, |e| *e == Ev::Open).await;
    mgr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_sends_code_and_reason_and_forgets_the_name() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    mgr.add("m", cfg(server.port).build().unwrap(), rec.hooks())
        .unwrap();
    let mut ws = server.next().await;
    mgr.wait_open("m", DEADLINE).await.unwrap();
    let server_side = tokio::spawn(async move { drain(&mut ws).await });
    within("close", mgr.close("m", 4000, "all done"))
        .await
        .unwrap();
    let got = within("the server", server_side).await.unwrap();
    assert_eq!(
        got.iter().filter_map(close_of).collect::<Vec<_>>(),
        [(4000, "all done".to_string())],
        "{got:?}"
    );
    assert!(matches!(
        mgr.state("m"),
        Err(ConnectionError::ConnectionNotFound(_))
    ));
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    // The name is free again.
    mgr.add("m", cfg(server.port).build().unwrap(), ReadHooks::new())
        .unwrap();
    mgr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_hook_runs_after_close_returns() {
    let mut server = Server::start().await;
    let closed = Arc::new(AtomicBool::new(false));
    let (calls, late) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c1, l1, f1) = (calls.clone(), late.clone(), closed.clone());
    let (l2, f2) = (late.clone(), closed.clone());
    let hooks = ReadHooks::new()
        .on_text(move |_, _| {
            c1.fetch_add(1, Ordering::SeqCst);
            if f1.load(Ordering::SeqCst) {
                l1.fetch_add(1, Ordering::SeqCst);
            }
        })
        .on_error(move |_, _| {
            if f2.load(Ordering::SeqCst) {
                l2.fetch_add(1, Ordering::SeqCst);
            }
        });
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .close_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    mgr.add("m", config, hooks).unwrap();
    let mut ws = server.next().await;
    // The server floods text and never reads: the close handshake has to time out while
    // messages keep arriving.
    let flood = AbortOnDrop(tokio::spawn(async move {
        let mut i = 0u64;
        while ws.send(Message::text(format!("flood {i}"))).await.is_ok() {
            i += 1;
        }
    }));
    eventually("the flood to arrive", || calls.load(Ordering::SeqCst) > 100).await;
    within("close", mgr.close("m", 1000, "bye")).await.unwrap();
    closed.store(true, Ordering::SeqCst);
    let at_close = calls.load(Ordering::SeqCst);
    // Observation window for late hook calls.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(late.load(Ordering::SeqCst), 0, "a hook ran after close");
    assert_eq!(calls.load(Ordering::SeqCst), at_close);
    drop(flood);
}

/// The manager's debug output counts its connections, from the moment they are added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_output_counts_the_connections() {
    let server = Server::start().await;
    let mgr = WsManager::new();
    assert_eq!(format!("{mgr:?}"), "WsManager { connections: 0, .. }");
    for name in ["a", "b"] {
        mgr.add(name, cfg(server.port).build().unwrap(), ReadHooks::new())
            .unwrap();
    }
    assert_eq!(format!("{mgr:?}"), "WsManager { connections: 2, .. }");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_connections_at_once_on_one_manager() {
    let echo = echo_server().await;
    let port = echo.port;
    let mgr = WsManager::new();
    let recs: Vec<Recorder> = (0..100).map(|_| Recorder::new()).collect();
    for (i, rec) in recs.iter().enumerate() {
        mgr.add(&format!("c{i}"), cfg(port).build().unwrap(), rec.hooks())
            .unwrap();
    }
    assert_eq!(mgr.names().len(), 100);
    let waits = (0..100).map(|i| {
        let mgr = mgr.clone();
        async move { mgr.wait_open(&format!("c{i}"), DEADLINE).await }
    });
    for r in futures_util::future::join_all(waits).await {
        r.unwrap();
    }
    for i in 0..100 {
        mgr.send_text(&format!("c{i}"), format!("hello from c{i}"))
            .unwrap();
    }
    for (i, rec) in recs.iter().enumerate() {
        rec.wait("the echo", |e| e.iter().any(|e| matches!(e, Ev::Text(_))))
            .await;
        assert_eq!(rec.texts(), [format!("hello from c{i}")]);
        assert!(rec.errors().is_empty(), "c{i}: {:?}", rec.errors());
    }
    within("shutdown", mgr.shutdown()).await;
    assert!(mgr.names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_name_is_connection_not_found() {
    let mgr = WsManager::new();
    let nf = |r: Result<(), ConnectionError>| {
        assert!(
            matches!(&r, Err(ConnectionError::ConnectionNotFound(n)) if n == "ghost"),
            "{r:?}"
        )
    };
    nf(mgr.send_text("ghost", "x"));
    nf(mgr.send_binary("ghost", vec![1u8]));
    nf(mgr.send_ping("ghost", vec![1u8]));
    nf(mgr.restart("ghost"));
    nf(mgr.close("ghost", 1000, "x").await);
    nf(mgr.request_close("ghost", 1000, "x"));
    nf(mgr.wait_open("ghost", Duration::from_millis(10)).await);
    nf(mgr.state("ghost").map(drop));
    nf(mgr.stats("ghost").map(drop));
    nf(mgr.link("ghost").map(drop));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_name_is_already_exists_and_leaves_the_first_alone() {
    let echo = echo_server().await;
    let port = echo.port;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    mgr.add("dup", cfg(port).build().unwrap(), rec.hooks())
        .unwrap();
    let err = mgr
        .add("dup", cfg(port).build().unwrap(), ReadHooks::new())
        .unwrap_err();
    assert_eq!(err, ConnectionError::AlreadyExists("dup".into()));
    mgr.wait_open("dup", DEADLINE).await.unwrap();
    mgr.send_text("dup", "still mine").unwrap();
    rec.wait("the echo", |e| e.contains(&Ev::Text("still mine".into())))
        .await;
    mgr.close("dup", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_while_disconnected_fails_at_once_with_connection_dropped() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    mgr.add(
        "m",
        no_backoff_cfg(server.port).build().unwrap(),
        rec.hooks(),
    )
    .unwrap();
    let ws = server.next().await;
    mgr.wait_open("m", DEADLINE).await.unwrap();
    drop(ws);
    // The next attempt is 30 s away: the connection stays disconnected for the test.
    eventually("state Reconnecting", || {
        mgr.state("m").unwrap() == ConnState::Reconnecting
    })
    .await;
    let started = std::time::Instant::now();
    for r in [
        mgr.send_text("m", "x"),
        mgr.send_binary("m", vec![1u8]),
        mgr.send_ping("m", vec![1u8]),
    ] {
        assert!(
            matches!(r, Err(ConnectionError::ConnectionDropped(_))),
            "{r:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    mgr.close("m", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_before_the_first_connect_fails_with_connection_dropped() {
    // Accepts TCP and never answers the upgrade: the connection stays Connecting.
    let server = Server::raw(|tcp, _| never_answer(tcp)).await;
    let port = server.port;
    let mgr = WsManager::new();
    mgr.add("m", cfg(port).build().unwrap(), ReadHooks::new())
        .unwrap();
    assert_eq!(mgr.state("m").unwrap(), ConnState::Connecting);
    let r = mgr.send_text("m", "too early");
    assert!(
        matches!(r, Err(ConnectionError::ConnectionDropped(_))),
        "{r:?}"
    );
    mgr.close("m", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_send_queue_returns_queue_full_and_accepted_messages_are_written() {
    let mut server = Server::start().await;
    let entered = Arc::new(AtomicBool::new(false));
    let (release_tx, release_rx) = std_mpsc::channel::<()>();
    let e = entered.clone();
    // The hook holds the connection's task, so nothing drains the queue meanwhile.
    let hooks = ReadHooks::new().on_text(move |_, _| {
        e.store(true, Ordering::SeqCst);
        let _ = release_rx.recv_timeout(DEADLINE);
    });
    let mgr = WsManager::new();
    let config = cfg(server.port).send_queue_capacity(4).build().unwrap();
    mgr.add("q", config, hooks).unwrap();
    let mut ws = server.next().await;
    mgr.wait_open("q", DEADLINE).await.unwrap();
    ws.send(Message::text("block")).await.unwrap();
    // While the hook blocks a runtime worker, tokio timers may not be driven (the blocked worker
    // may be the one that would park on the driver), so wait here with a plain thread sleep.
    let deadline = std::time::Instant::now() + DEADLINE;
    while !entered.load(Ordering::SeqCst) {
        assert!(std::time::Instant::now() < deadline, "the hook never ran");
        std::thread::sleep(Duration::from_millis(2));
    }
    for i in 0..4 {
        mgr.send_text("q", format!("m{i}")).unwrap();
    }
    assert_eq!(
        mgr.send_text("q", "one too many"),
        Err(ConnectionError::QueueFull("q".into()))
    );
    release_tx.send(()).unwrap();
    for i in 0..4 {
        assert_eq!(recv_data(&mut ws).await, Message::text(format!("m{i}")));
    }
    drop(ws);
    mgr.close("q", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_open_times_out_when_the_handshake_never_completes() {
    let server = Server::raw(|tcp, _| never_answer(tcp)).await;
    let port = server.port;
    let mgr = WsManager::new();
    mgr.add("m", cfg(port).build().unwrap(), ReadHooks::new())
        .unwrap();
    let started = std::time::Instant::now();
    let r = within("wait_open", mgr.wait_open("m", Duration::from_millis(200))).await;
    assert!(matches!(r, Err(ConnectionError::Timeout(_))), "{r:?}");
    assert!(started.elapsed() >= Duration::from_millis(190));
    mgr.close("m", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_messages_bytes_and_reconnects() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(server.port).init_text("init").build().unwrap();
    mgr.add("s", config, rec.hooks()).unwrap();
    let mut ws = server.next().await;
    mgr.wait_open("s", DEADLINE).await.unwrap();
    assert_eq!(mgr.stats("s").unwrap().messages_in, 0);
    for t in ["abc", "defg"] {
        mgr.send_text("s", t).unwrap();
    }
    mgr.send_binary("s", vec![0u8; 5]).unwrap();
    // Echo the init message and the three writes: 4 + 3 + 4 + 5 = 16 bytes each way.
    for _ in 0..4 {
        let m = recv_data(&mut ws).await;
        ws.send(m).await.unwrap();
    }
    rec.wait_count("four messages", 4, |e| {
        matches!(e, Ev::Text(_) | Ev::Binary(_))
    })
    .await;
    let s = mgr.stats("s").unwrap();
    assert_eq!(
        (s.messages_out, s.bytes_out, s.messages_in, s.bytes_in),
        (4, 16, 4, 16),
        "{s:?}"
    );
    assert_eq!(s.reconnects, 0);
    assert_eq!(s.last_rtt, None, "no ping was answered yet");
    drop(ws);
    let mut ws2 = server.next().await;
    assert_eq!(recv_data(&mut ws2).await, Message::text("init"));
    eventually("the reconnect counter", || {
        mgr.stats("s").unwrap().reconnects == 1
    })
    .await;
    let s = mgr.stats("s").unwrap();
    assert_eq!((s.messages_out, s.bytes_out), (5, 20), "{s:?}");
    mgr.close("s", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_connection_with_1001() {
    let (mut sa, mut sb) = (Server::start().await, Server::start().await);
    let mgr = WsManager::new();
    mgr.add("a", cfg(sa.port).build().unwrap(), ReadHooks::new())
        .unwrap();
    mgr.add("b", cfg(sb.port).build().unwrap(), ReadHooks::new())
        .unwrap();
    let (mut wa, mut wb) = (sa.next().await, sb.next().await);
    mgr.wait_open("a", DEADLINE).await.unwrap();
    mgr.wait_open("b", DEADLINE).await.unwrap();
    let ta = tokio::spawn(async move { drain(&mut wa).await });
    let tb = tokio::spawn(async move { drain(&mut wb).await });
    within("shutdown", mgr.shutdown()).await;
    for t in [ta, tb] {
        let got = within("the server", t).await.unwrap();
        assert_eq!(
            got.iter().filter_map(close_of).collect::<Vec<_>>(),
            [(1001, "going away".to_string())]
        );
    }
    assert!(mgr.is_shut_down());
    assert_eq!(
        mgr.add("c", cfg(sa.port).build().unwrap(), ReadHooks::new()),
        Err(ConnectionError::ShuttingDown)
    );
    assert_eq!(mgr.send_text("a", "x"), Err(ConnectionError::ShuttingDown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_open_names_why_the_last_attempt_failed() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mgr = WsManager::new();
    mgr.add("retrying", cfg(port).build().unwrap(), ReadHooks::new())
        .unwrap();
    let err = mgr
        .wait_open("retrying", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConnectionError::Timeout(m)
            if m.contains("last attempt") && m.contains(&format!("127.0.0.1:{port}"))),
        "{err}"
    );
    // A connection that gives up says why it never opened, not only that it stopped.
    let one_try = cfg(port).max_reconnect_attempts(1).build().unwrap();
    mgr.add("once", one_try, ReadHooks::new()).unwrap();
    let err = mgr.wait_open("once", DEADLINE).await.unwrap_err();
    assert!(
        matches!(&err, ConnectionError::ConnectionDropped(m)
            if m.contains("stopped before it opened") && m.contains("TCP connect")),
        "{err}"
    );
    mgr.shutdown().await;
}

/// A send does not wait for a flood to end: while the connection reads frames back to back
/// (its consumer slower than the peer, so the socket never runs dry), it still writes its
/// queue every few frames. When the client's message reaches the server, the client has read
/// a small part of the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_goes_out_during_a_flood_the_consumer_cannot_keep_up_with() {
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const FLOOD: usize = 400_000;
    const CHUNK: usize = 1_000;
    // Messages the client had read when its first bytes reached the server (usize::MAX: none
    // yet), counted by its hook.
    let got = Arc::new(AtomicUsize::new(0));
    let at_reply = Arc::new(AtomicUsize::new(usize::MAX));
    let (seen, read) = (at_reply.clone(), got.clone());
    let server = Server::raw(move |mut tcp, _| {
        let (seen, read) = (seen.clone(), read.clone());
        async move {
            raw_upgrade(&mut tcp).await;
            let (mut rd, mut wr) = tcp.into_split();
            let _writer = AbortOnDrop(tokio::spawn(async move {
                let chunk: Vec<u8> = (0..CHUNK).flat_map(|_| frame(0x81, &[b'x'; 60])).collect();
                for _ in 0..FLOOD / CHUNK {
                    if wr.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                hold_half(wr).await;
            }));
            let mut b = [0u8; 64];
            if matches!(rd.read(&mut b).await, Ok(n) if n > 0) {
                seen.store(read.load(Ordering::SeqCst), Ordering::SeqCst);
            }
            // Keeps the writer going until the test ends.
            let _ = rd.read(&mut b).await;
        }
    })
    .await;
    let g = got.clone();
    let hooks = ReadHooks::new().on_text_ref(move |_, _| {
        g.fetch_add(1, Ordering::SeqCst);
        // A consumer slower than the peer: a few microseconds of work per message.
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(3) {}
    });
    let mgr = WsManager::new();
    mgr.add("f", cfg(server.port).build().unwrap(), hooks)
        .unwrap();
    eventually("the flood to arrive", || got.load(Ordering::SeqCst) > 0).await;
    mgr.send_text("f", "hello").unwrap();
    eventually("the message to reach the server", || {
        at_reply.load(Ordering::SeqCst) != usize::MAX
    })
    .await;
    // Whatever the socket buffers hold: the client had read a small part of the flood.
    let at = at_reply.load(Ordering::SeqCst);
    assert!(
        at < FLOOD / 4,
        "the send reached the server after the client had read {at} of {FLOOD} messages"
    );
    mgr.shutdown().await;
}

/// Holds a write half open (the peer sees no end) until the task is aborted.
async fn hold_half(_wr: tokio::net::tcp::OwnedWriteHalf) {
    std::future::pending::<()>().await
}
