//! Reconnection: after a drop, a server close, refused connects and rejected handshakes; init
//! messages after every connect; backoff growth, cap and attempt limit.

mod support;

use std::time::Duration;

use futures_util::SinkExt;
use kharbranth::{ConnState, ConnectionError, WsManager};
use support::*;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_socket_reconnects_and_resends_init_messages() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .init_text(r#"{"op":"subscribe"}"#)
        .init_binary(vec![7u8, 8, 9])
        .build()
        .unwrap();
    mgr.add("r", config, rec.hooks()).unwrap();
    for round in 0..2 {
        let mut ws = server.next_unless_connect_fails(&rec).await;
        assert_eq!(
            recv_data(&mut ws).await,
            Message::text(r#"{"op":"subscribe"}"#),
            "round {round}"
        );
        assert_eq!(
            recv_data(&mut ws).await,
            Message::binary(vec![7u8, 8, 9]),
            "round {round}"
        );
        // Drop the socket without a close handshake.
        drop(ws);
    }
    rec.wait_count("two opens", 2, |e| *e == Ev::Open).await;
    rec.wait("a ConnectionDropped", |e| {
        e.iter()
            .any(|e| matches!(e, Ev::Error(ConnectionError::ConnectionDropped(_))))
    })
    .await;
    eventually("the reconnect counter", || {
        mgr.stats("r").unwrap().reconnects >= 1
    })
    .await;
    mgr.close("r", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_messages_are_written_before_writes_queued_in_on_open() {
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    let m = mgr.clone();
    let rec = Recorder::new();
    let (r, r2) = (rec.clone(), rec.clone());
    let hooks = kharbranth::ReadHooks::new()
        .on_open(move |name| {
            // Queued the moment the connection opens: it must still go after the init messages.
            let res = m.send_text(name, "app-write");
            r.push(Ev::Text(format!("{res:?}")));
        })
        .on_error(move |_, e| r2.push(Ev::Error(e.clone())));
    let config = cfg(server.port)
        .init_text("init-1")
        .init_text("init-2")
        .build()
        .unwrap();
    mgr.add("r", config, hooks).unwrap();
    for round in 0..2 {
        let mut ws = server.next_unless_connect_fails(&rec).await;
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(recv_data(&mut ws).await);
        }
        assert_eq!(
            got,
            [
                Message::text("init-1"),
                Message::text("init-2"),
                Message::text("app-write")
            ],
            "round {round}"
        );
        drop(ws);
    }
    assert!(
        rec.texts().iter().all(|t| t == "Ok(())"),
        "{:?}",
        rec.texts()
    );
    mgr.close("r", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_close_code_reaches_on_close_and_client_reconnects() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    mgr.add("r", cfg(server.port).build().unwrap(), rec.hooks())
        .unwrap();
    let mut ws = server.next_unless_connect_fails(&rec).await;
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::from(4002),
        reason: "maintenance".into(),
    })))
    .await
    .unwrap();
    // The client completes the close handshake.
    let rest = drain(&mut ws).await;
    assert!(rest.iter().all(|m| m.is_close()), "{rest:?}");
    // The server closes the TCP connection after the handshake (RFC 6455, 7.1.1).
    drop(ws);
    let _ws2 = server.next_unless_connect_fails(&rec).await;
    rec.wait_count("a second on_open", 2, |e| *e == Ev::Open)
        .await;
    assert_eq!(
        rec.main_events()[..3],
        [Ev::Open, Ev::Close(4002, "maintenance".into()), Ev::Open]
    );
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    eventually("the reconnect counter", || {
        mgr.stats("r").unwrap().reconnects == 1
    })
    .await;
    mgr.close("r", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_grows_and_is_capped() {
    // Every attempt reaches TCP and fails in the handshake: the listener hangs up at once.
    let server = Server::raw(|tcp, _| async move { drop(tcp) }).await;
    let (min, max) = (Duration::from_millis(40), Duration::from_millis(200));
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .reconnect_backoff(min, max)
        .build()
        .unwrap();
    mgr.add("b", config, rec.hooks()).unwrap();
    // Every error follows an accept (the server hangs up): an attempt that fails before it
    // reaches the server fails the test at once.
    let reached = || rec.errors().len() <= server.accepted();
    wait_until(DEADLINE, || !reached() || server.accepted() >= 9).await;
    assert!(
        reached(),
        "attempts failed before the server: {:?}",
        rec.errors()
    );
    assert!(
        server.accepted() >= 9,
        "{} connect attempts",
        server.accepted()
    );
    mgr.close("b", 1000, "done").await.unwrap();
    let t = server.accept_times();
    let gaps: Vec<Duration> = t.windows(2).map(|w| w[1] - w[0]).collect();
    // Delay i is drawn from [max(ceiling/2, min), ceiling], ceiling = min(40ms * 2^i, 200ms).
    let floors_ms = [40, 40, 80, 100, 100, 100, 100, 100];
    for (i, (gap, floor)) in gaps.iter().zip(floors_ms).enumerate() {
        assert!(
            *gap + Duration::from_millis(2) >= Duration::from_millis(floor),
            "gap {i} = {gap:?} is below the backoff floor {floor}ms; gaps {gaps:?}"
        );
    }
    // Uncapped, delays 5.. would be at least 640 ms, 1.28 s, 2.56 s. Capped at 200 ms they stay
    // well below that even on a loaded machine.
    for (i, gap) in gaps.iter().enumerate().skip(5) {
        assert!(
            *gap < Duration::from_millis(600),
            "gap {i} = {gap:?}: the backoff is not capped at {max:?}; gaps {gaps:?}"
        );
    }
    let errors = rec.errors();
    assert!(errors.len() >= 8, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, ConnectionError::ConnectFailed(_))),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_reconnect_attempts_gives_retries_exhausted_and_closed_state() {
    let server = Server::raw(|tcp, _| async move { drop(tcp) }).await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(20))
        .max_reconnect_attempts(3)
        .build()
        .unwrap();
    mgr.add("x", config, rec.hooks()).unwrap();
    rec.wait("RetriesExhausted", |e| {
        e.iter()
            .any(|e| matches!(e, Ev::Error(ConnectionError::RetriesExhausted(_))))
    })
    .await;
    eventually("state Closed", || {
        mgr.state("x").unwrap() == ConnState::Closed
    })
    .await;
    let errors = rec.errors();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(
        errors[..3]
            .iter()
            .all(|e| matches!(e, ConnectionError::ConnectFailed(_))),
        "{errors:?}"
    );
    assert_eq!(errors[3], ConnectionError::RetriesExhausted(3));
    assert_eq!(server.accepted(), 3);
    assert!(matches!(
        mgr.send_text("x", "late"),
        Err(ConnectionError::ConnectionDropped(_))
    ));
    assert!(matches!(
        mgr.wait_open("x", Duration::from_secs(1)).await,
        Err(ConnectionError::ConnectionDropped(_))
    ));
    mgr.close("x", 1000, "done").await.unwrap();
    assert!(matches!(
        mgr.state("x"),
        Err(ConnectionError::ConnectionNotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_401_rejection_is_backed_off_not_hot_looped() {
    let server = Server::raw(|tcp, _| refuse_upgrade(tcp, "401 Unauthorized")).await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1))
        .build()
        .unwrap();
    mgr.add("auth", config, rec.hooks()).unwrap();
    rec.wait("an error", |e| e.iter().any(|e| matches!(e, Ev::Error(_))))
        .await;
    let first = Instant::now();
    // Observation window: with delays of at least 100, 100, 200, 400 and 500 ms there is room
    // for at most 6 attempts in 1.5 s; a hot loop would make hundreds.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let attempts = server.accepted();
    let window = first.elapsed();
    mgr.close("auth", 1000, "done").await.unwrap();
    assert!(
        (2..=7).contains(&attempts),
        "{attempts} attempts in {window:?}"
    );
    let err = &rec.errors()[0];
    assert!(
        matches!(err, ConnectionError::ConnectFailed(m) if m.contains("401")),
        "{err:?}"
    );
    assert_eq!(rec.opens(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_that_keeps_the_socket_after_its_close_still_gets_a_prompt_reconnect() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    // Heartbeat far away: only the close handling can bring the client back in time.
    let config = cfg(server.port)
        .close_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    mgr.add("r", config, rec.hooks()).unwrap();
    let mut ws = server.next_unless_connect_fails(&rec).await;
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::from(4002),
        reason: "maintenance".into(),
    })))
    .await
    .unwrap();
    // The server reads the client's close reply but never closes the TCP connection
    // (RFC 6455, 7.1.1 lets the client drop it after a reasonable time).
    let reply = recv(&mut ws).await;
    assert!(reply.is_close(), "{reply:?}");
    let _ws2 = server.next_unless_connect_fails(&rec).await;
    rec.wait_count("a second on_open", 2, |e| *e == Ev::Open)
        .await;
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    drop(ws);
    mgr.close("r", 1000, "done").await.unwrap();
}
