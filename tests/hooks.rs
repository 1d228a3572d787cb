//! Every read hook fires with the right data, in arrival order, `on_frame` first.

mod support;

use futures_util::SinkExt;
use kharbranth::{ConnectionError, ReadHooks, WsManager};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_frame_runs_before_each_type_specific_hook_in_arrival_order() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    mgr.add("h", cfg(server.port).build().unwrap(), rec.hooks())
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
    rec.wait("on_close", |e| e.iter().any(|e| matches!(e, Ev::Close(..))))
        .await;
    let expected = vec![
        Ev::Open,
        Ev::Frame(1, b"hello".to_vec()),
        Ev::Text("hello".into()),
        Ev::Frame(2, vec![1, 2, 3]),
        Ev::Binary(vec![1, 2, 3]),
        Ev::Frame(9, b"p1".to_vec()),
        Ev::Ping(b"p1".to_vec()),
        Ev::Frame(10, b"p2".to_vec()),
        Ev::Pong(b"p2".to_vec()),
        Ev::Frame(8, b"bye now".to_vec()),
        Ev::Close(4001, "bye now".into()),
    ];
    let got = rec.events();
    assert_eq!(&got[..expected.len()], &expected[..], "all events: {got:?}");
    mgr.close("h", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_binary_payloads_arrive_unchanged() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    mgr.add("h", cfg(server.port).build().unwrap(), rec.hooks())
        .unwrap();
    let mut ws = server.next().await;
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let big_text = "é✓".repeat(50_000);
    ws.send(Message::text("héllo ✓ 🦀")).await.unwrap();
    ws.send(Message::binary(all_bytes.clone())).await.unwrap();
    ws.send(Message::text("")).await.unwrap();
    ws.send(Message::binary(Vec::new())).await.unwrap();
    ws.send(Message::text(big_text.clone())).await.unwrap();
    rec.wait_count("5 messages", 5, |e| {
        matches!(e, Ev::Text(_) | Ev::Binary(_))
    })
    .await;
    let data: Vec<Ev> = rec
        .main_events()
        .into_iter()
        .filter(|e| matches!(e, Ev::Text(_) | Ev::Binary(_)))
        .collect();
    assert_eq!(
        data,
        vec![
            Ev::Text("héllo ✓ 🦀".into()),
            Ev::Binary(all_bytes),
            Ev::Text(String::new()),
            Ev::Binary(Vec::new()),
            Ev::Text(big_text),
        ]
    );
    mgr.close("h", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_ping_is_answered_promptly_with_exactly_one_pong() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    // The heartbeat is far away, and the application writes nothing: the pong must be flushed
    // on its own.
    mgr.add("h", cfg(server.port).build().unwrap(), rec.hooks())
        .unwrap();
    let mut ws = server.next().await;
    ws.send(Message::Ping("are-you-there".into()))
        .await
        .unwrap();
    let first = recv(&mut ws).await;
    assert_eq!(first, Message::Pong("are-you-there".into()));
    rec.wait("on_ping", |e| {
        e.contains(&Ev::Ping(b"are-you-there".to_vec()))
    })
    .await;
    // Everything else the client writes until it closes: no second pong.
    mgr.send_text("h", "after").unwrap();
    mgr.close("h", 1000, "done").await.unwrap();
    let rest = drain(&mut ws).await;
    let pongs = rest.iter().filter(|m| m.is_pong()).count();
    assert_eq!(pongs, 0, "a second pong was sent: {rest:?}");
    assert_eq!(rest.first(), Some(&Message::text("after")), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_frame_without_status_reports_1005() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    mgr.add("h", cfg(server.port).build().unwrap(), rec.hooks())
        .unwrap();
    let mut ws = server.next().await;
    ws.send(Message::Close(None)).await.unwrap();
    rec.wait("on_close", |e| e.iter().any(|e| matches!(e, Ev::Close(..))))
        .await;
    assert!(rec.events().contains(&Ev::Frame(8, Vec::new())));
    assert!(rec.events().contains(&Ev::Close(1005, String::new())));
    mgr.close("h", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_reports_connect_failed_for_a_refused_port() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let rec = Recorder::new();
    let mgr = WsManager::new();
    mgr.add("h", cfg(port).build().unwrap(), rec.hooks())
        .unwrap();
    rec.wait("an error", |e| e.iter().any(|e| matches!(e, Ev::Error(_))))
        .await;
    let err = &rec.errors()[0];
    assert!(
        matches!(err, ConnectionError::ConnectFailed(m) if m.contains(&port.to_string())),
        "{err:?}"
    );
    assert_eq!(rec.opens(), 0);
    mgr.close("h", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violation_reports_read_error_and_closes_with_1002() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    mgr.add("h", cfg(server.port).build().unwrap(), rec.hooks())
        .unwrap();
    let mut ws = server.next().await;
    // A text frame with all three reserved bits set (no extension was negotiated).
    ws.get_mut().write_all(&[0xF1, 0x01, b'x']).await.unwrap();
    rec.wait("an error", |e| e.iter().any(|e| matches!(e, Ev::Error(_))))
        .await;
    let err = &rec.errors()[0];
    assert!(matches!(err, ConnectionError::ReadError(_)), "{err:?}");
    match recv(&mut ws).await {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1002),
        other => panic!("expected a 1002 close, got {other:?}"),
    }
    // It is a failure like any other: the client comes back.
    let _ws2 = server.next().await;
    rec.wait_count("a second on_open", 2, |e| *e == Ev::Open)
        .await;
    mgr.close("h", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_text_arrives_whole() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    mgr.add("h", cfg(server.port).build().unwrap(), rec.hooks())
        .unwrap();
    let mut ws = server.next().await;
    // "héllo wörld" split inside a multi-byte character, in three frames.
    let whole = "héllo wörld".as_bytes();
    let frames = [
        Frame::message(whole[..2].to_vec(), OpCode::Data(Data::Text), false),
        Frame::message(whole[2..9].to_vec(), OpCode::Data(Data::Continue), false),
        Frame::message(whole[9..].to_vec(), OpCode::Data(Data::Continue), true),
    ];
    for f in frames {
        ws.send(Message::Frame(f)).await.unwrap();
    }
    rec.wait("the text", |e| e.iter().any(|e| matches!(e, Ev::Text(_))))
        .await;
    assert_eq!(rec.texts(), ["héllo wörld"]);
    assert_eq!(
        rec.count(|e| matches!(e, Ev::Frame(1, _))),
        1,
        "on_frame saw fragments: {:?}",
        rec.events()
    );
    mgr.close("h", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_binary_with_a_ping_between_fragments_arrives_whole() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    mgr.add("h", cfg(server.port).build().unwrap(), rec.hooks())
        .unwrap();
    let mut ws = server.next().await;
    // Crafted bytes: binary "ab" (not final), ping "x", continuation "cd" (final).
    let raw = [
        0x02, 0x02, b'a', b'b', // binary, FIN=0
        0x89, 0x01, b'x', // ping, FIN=1
        0x80, 0x02, b'c', b'd', // continuation, FIN=1
    ];
    ws.get_mut().write_all(&raw).await.unwrap();
    rec.wait("the binary", |e| {
        e.iter().any(|e| matches!(e, Ev::Binary(_)))
    })
    .await;
    let main: Vec<Ev> = rec.main_events();
    assert_eq!(
        main,
        vec![
            Ev::Open,
            Ev::Ping(b"x".to_vec()),
            Ev::Binary(b"abcd".to_vec())
        ]
    );
    // The ping in the middle was answered.
    assert_eq!(recv(&mut ws).await, Message::Pong("x".into()));
    mgr.close("h", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_hook_does_not_stop_the_connection() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let r = rec.clone();
    let hooks = ReadHooks::new().on_text(move |_, t| {
        if t.as_str() == "boom" {
            panic!("hook panics on purpose");
        }
        r.push(Ev::Text(t.to_string()));
    });
    let mgr = WsManager::new();
    mgr.add("h", cfg(server.port).build().unwrap(), hooks)
        .unwrap();
    let mut ws = server.next().await;
    ws.send(Message::text("boom")).await.unwrap();
    ws.send(Message::text("still here")).await.unwrap();
    rec.wait("the second text", |e| !e.is_empty()).await;
    assert_eq!(rec.texts(), ["still here"]);
    assert_eq!(mgr.stats("h").unwrap().reconnects, 0);
    mgr.close("h", 1000, "done").await.unwrap();
}
