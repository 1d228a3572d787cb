//! Heartbeat: pings at the interval, round-trip time, pong timeout (also when no pong was ever
//! seen) followed by a reconnect, and the text heartbeat.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kharbranth::{ConnectionError, Heartbeat, WsManager};
use support::*;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const PING: Duration = Duration::from_millis(100);
const PONG_TIMEOUT: Duration = Duration::from_millis(300);

fn is_pong_timeout(e: &Ev) -> bool {
    matches!(e, Ev::Error(ConnectionError::PongReceiveTimeout(_)))
}

type Log = Arc<Mutex<Vec<(Instant, Message)>>>;

/// Reads `ws` in the background (answering pings), recording each message and when it came.
fn spawn_reader(mut ws: ServerWs) -> (Log, AbortOnDrop) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let task = tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            l.lock().unwrap().push((Instant::now(), m));
        }
    });
    (log, AbortOnDrop(task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_triggers_pong_timeout_without_any_pong_then_reconnects() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .ping_interval(PING)
        .pong_timeout(PONG_TIMEOUT)
        .build()
        .unwrap();
    mgr.add("hb", config, rec.hooks()).unwrap();
    // Handshake done, then the server never reads again: no pong, ever.
    let silent = server.next().await;
    let opened = Instant::now();
    rec.wait("PongReceiveTimeout", |e| e.iter().any(is_pong_timeout))
        .await;
    let after = opened.elapsed();
    // First ping at 100 ms, its deadline 300 ms later.
    assert!(
        after >= PING + PONG_TIMEOUT - Duration::from_millis(50),
        "timed out too early: {after:?}"
    );
    assert_eq!(rec.count(|e| matches!(e, Ev::Pong(_))), 0);
    assert_eq!(
        rec.errors()[0],
        ConnectionError::PongReceiveTimeout(PONG_TIMEOUT)
    );
    // Then it reconnects.
    let ws2 = server.next().await;
    let (_log, _reader) = spawn_reader(ws2);
    rec.wait_count("a second on_open", 2, |e| *e == Ev::Open)
        .await;
    drop(silent);
    mgr.close("hb", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_that_stops_answering_triggers_pong_timeout_after_earlier_pongs() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .ping_interval(PING)
        .pong_timeout(PONG_TIMEOUT)
        .build()
        .unwrap();
    mgr.add("hb", config, rec.hooks()).unwrap();
    let mut ws = server.next().await;
    // Answer pings (tungstenite replies while reading) until the client saw two pongs.
    within("two pongs at the client", async {
        while rec.count(|e| matches!(e, Ev::Pong(_))) < 2 {
            let _ = tokio::time::timeout(Duration::from_millis(20), ws.next()).await;
        }
    })
    .await;
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    // Now the server goes silent (it stops reading, so it answers nothing).
    rec.wait("PongReceiveTimeout", |e| e.iter().any(is_pong_timeout))
        .await;
    let _ws2 = server.next().await;
    rec.wait_count("a second on_open", 2, |e| *e == Ev::Open)
        .await;
    drop(ws);
    mgr.close("hb", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_pings_are_sent_every_interval_and_rtt_is_measured() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .ping_interval(PING)
        .pong_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    mgr.add("hb", config, rec.hooks()).unwrap();
    let (log, _reader) = spawn_reader(server.next().await);
    eventually("five heartbeat pings", || {
        log.lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| m.is_ping())
            .count()
            >= 5
    })
    .await;
    eventually("a measured round-trip time", || {
        mgr.stats("hb").unwrap().last_rtt.is_some()
    })
    .await;
    let pings: Vec<Instant> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, m)| m.is_ping())
        .map(|(t, _)| *t)
        .collect();
    for w in pings.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= PING - Duration::from_millis(20),
            "pings closer than the interval: {gap:?}"
        );
    }
    let rtt = mgr.stats("hb").unwrap().last_rtt.unwrap();
    assert!(rtt < Duration::from_secs(5), "{rtt:?}");
    assert!(rec.count(|e| matches!(e, Ev::Pong(_))) >= 1);
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    mgr.close("hb", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_heartbeat_is_sent_as_text_and_a_text_answer_keeps_the_connection() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .ping_interval(PING)
        .pong_timeout(PONG_TIMEOUT)
        .heartbeat(Heartbeat::Text(r#"{"op":"ping"}"#.into()))
        .build()
        .unwrap();
    mgr.add("hb", config, rec.hooks()).unwrap();
    let mut ws = server.next().await;
    let mut texts = 0;
    let mut others = Vec::new();
    // Eight heartbeats take about 800 ms: far past the 300 ms pong timeout.
    within("eight text heartbeats", async {
        while texts < 8 {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    assert_eq!(t.as_str(), r#"{"op":"ping"}"#);
                    texts += 1;
                    ws.send(Message::text(r#"{"op":"pong"}"#)).await.unwrap();
                }
                Some(Ok(m)) => others.push(m),
                other => panic!("server stream ended: {other:?}"),
            }
        }
    })
    .await;
    assert!(others.is_empty(), "non-text heartbeat frames: {others:?}");
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    assert_eq!(rec.opens(), 1);
    assert!(rec.texts().iter().all(|t| t == r#"{"op":"pong"}"#));
    mgr.close("hb", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_text_heartbeat_times_out() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .ping_interval(PING)
        .pong_timeout(PONG_TIMEOUT)
        .heartbeat(Heartbeat::Text("ping".into()))
        .build()
        .unwrap();
    mgr.add("hb", config, rec.hooks()).unwrap();
    // The server reads (it would answer WebSocket pings) but never answers in text.
    let (log, _reader) = spawn_reader(server.next().await);
    rec.wait("PongReceiveTimeout", |e| e.iter().any(is_pong_timeout))
        .await;
    let got: Vec<Message> = log.lock().unwrap().iter().map(|(_, m)| m.clone()).collect();
    assert!(!got.is_empty());
    assert!(got.iter().all(|m| *m == Message::text("ping")), "{got:?}");
    mgr.close("hb", 1000, "done").await.unwrap();
}
