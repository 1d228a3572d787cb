//! `Connection<S>` driven directly over `tokio::io::duplex`, with a server-side
//! `WebSocketStream` on the other end: no network, no manager.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kharbranth::{Config, ConnState, Connection, ConnectionError, Ended, Link};
use support::*;
use tokio::io::DuplexStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

type Peer = WebSocketStream<DuplexStream>;

fn config() -> kharbranth::ConfigBuilder {
    cfg("ws://duplex.invalid/")
}

/// Starts a connection over a duplex pipe; returns the server end, the link and the run task.
async fn start(config: Config, rec: &Recorder) -> (Peer, Link, JoinHandle<Ended>) {
    let (c, s) = tokio::io::duplex(64 * 1024);
    let server = WebSocketStream::from_raw_socket(s, Role::Server, None).await;
    let (conn, link) = Connection::new("d", c, config);
    let mut hooks = rec.hooks();
    let task = tokio::spawn(async move { conn.run(&mut hooks).await });
    let l = link.clone();
    eventually("the connection to open", || l.state() == ConnState::Open).await;
    (server, link, task)
}

async fn next(peer: &mut Peer) -> Message {
    match within("a message at the peer", peer.next()).await {
        Some(Ok(m)) => m,
        other => panic!("peer expected a message, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplex_connection_sends_init_first_and_moves_messages_both_ways() {
    let rec = Recorder::new();
    let (mut peer, link, task) = start(config().init_text("init").build().unwrap(), &rec).await;
    link.send(Message::text("up")).unwrap();
    assert_eq!(next(&mut peer).await, Message::text("init"));
    assert_eq!(next(&mut peer).await, Message::text("up"));
    peer.send(Message::binary(vec![1u8, 2])).await.unwrap();
    peer.send(Message::text("down")).await.unwrap();
    rec.wait("the text", |e| e.contains(&Ev::Text("down".into())))
        .await;
    assert_eq!(
        rec.main_events(),
        [Ev::Open, Ev::Binary(vec![1, 2]), Ev::Text("down".into())]
    );
    let s = link.stats();
    assert_eq!((s.messages_out, s.messages_in), (2, 2), "{s:?}");
    link.close(1000, "bye").unwrap();
    let m = next(&mut peer).await;
    assert_eq!(
        m,
        Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into()
        }))
    );
    // The peer answers the close (tungstenite does so while reading) and the run ends.
    let _ = within("the peer stream to end", peer.next()).await;
    drop(peer);
    let ended = within("the run to end", task).await.unwrap();
    assert!(matches!(ended, Ended::Closed), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplex_connection_ends_peer_closed_when_the_server_closes() {
    let rec = Recorder::new();
    let (mut peer, _link, task) = start(config().build().unwrap(), &rec).await;
    peer.send(Message::Close(Some(CloseFrame {
        code: CloseCode::from(4003),
        reason: "go".into(),
    })))
    .await
    .unwrap();
    // Read the client's reply, then hang up as a server does.
    let _ = within("the close reply", peer.next()).await;
    drop(peer);
    let ended = within("the run to end", task).await.unwrap();
    assert!(matches!(ended, Ended::PeerClosed), "{ended:?}");
    assert_eq!(rec.main_events(), [Ev::Open, Ev::Close(4003, "go".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplex_connection_fails_with_pong_timeout_when_the_peer_is_silent() {
    let rec = Recorder::new();
    let config = config()
        .ping_interval(Duration::from_millis(50))
        .pong_timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let (peer, _link, task) = start(config, &rec).await;
    let ended = within("the run to end", task).await.unwrap();
    let expected = ConnectionError::PongReceiveTimeout(Duration::from_millis(150));
    assert!(
        matches!(&ended, Ended::Failed(e) if *e == expected),
        "{ended:?}"
    );
    assert_eq!(rec.errors(), [expected]);
    drop(peer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplex_connection_reports_a_dropped_peer() {
    let rec = Recorder::new();
    let (peer, _link, task) = start(config().build().unwrap(), &rec).await;
    drop(peer);
    let ended = within("the run to end", task).await.unwrap();
    assert!(
        matches!(ended, Ended::Failed(ConnectionError::ConnectionDropped(_))),
        "{ended:?}"
    );
    assert!(matches!(
        rec.errors()[..],
        [ConnectionError::ConnectionDropped(_)]
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplex_restart_request_closes_with_1000_and_ends_restart() {
    let rec = Recorder::new();
    let (mut peer, link, task) = start(config().build().unwrap(), &rec).await;
    link.restart().unwrap();
    match next(&mut peer).await {
        Message::Close(Some(f)) => {
            assert_eq!((u16::from(f.code), f.reason.as_str()), (1000, "restart"))
        }
        other => panic!("expected a close, got {other:?}"),
    }
    drop(peer);
    let ended = within("the run to end", task).await.unwrap();
    assert!(matches!(ended, Ended::Restart), "{ended:?}");
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
}
