//! What a connection's supervisor does between sockets: when the backoff starts anew, and how
//! the reconnect counter and the last failure follow the sockets.

mod support;

use std::time::Duration;

use futures_util::SinkExt;
use kharbranth::{ConnState, ConnectionError, WsManager};
use support::*;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Accepts every upgrade; socket `i` is held for `hold(i)` and then dropped (the scenario's
/// own timing, not a synchronisation).
async fn dropping_server(hold: fn(usize) -> Duration) -> Server {
    Server::raw(move |mut tcp, i| async move {
        if raw_upgrade(&mut tcp).await.is_some() {
            let ws = server_ws(tcp).await;
            let _ = tokio::time::timeout(hold(i), support::hold(ws)).await;
        }
    })
    .await
}

/// Gaps between consecutive opens.
fn gaps(opens: &[Instant]) -> Vec<Duration> {
    opens.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_die_young_keep_the_backoff_growing() {
    // Every socket is dropped as soon as it opens: far shorter than backoff_reset_after, so
    // each reconnect waits longer than the one before (50, 50..100, 100..200, 200..400 ms).
    let server = dropping_server(|_| Duration::ZERO).await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(2))
        .backoff_reset_after(Duration::from_secs(10))
        .build()
        .unwrap();
    mgr.add("young", config, rec.hooks()).unwrap();
    eventually("five opens", || rec.opens() >= 5).await;
    mgr.close("young", 1000, "done").await.unwrap();
    let g = gaps(&rec.open_times());
    assert!(
        g[3] >= Duration::from_millis(195),
        "the fourth reconnect came after {:?}: the backoff started anew after a short-lived \
         socket; gaps {g:?}",
        g[3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_stayed_open_long_enough_starts_the_backoff_anew() {
    // Four sockets die at once (the delay grows to 200..400 ms, next 400..800 ms); the fifth
    // stays open 600 ms, longer than backoff_reset_after: the reconnect after it waits only
    // the minimum again.
    let server = dropping_server(|i| match i {
        0..=3 => Duration::ZERO,
        4 => Duration::from_millis(600),
        _ => Duration::from_secs(30),
    })
    .await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(2))
        .backoff_reset_after(Duration::from_millis(300))
        .build()
        .unwrap();
    mgr.add("healthy", config, rec.hooks()).unwrap();
    eventually("six opens", || rec.opens() >= 6).await;
    mgr.close("healthy", 1000, "done").await.unwrap();
    let g = gaps(&rec.open_times());
    // Gap 4 is the 600 ms the fifth socket lived plus the reconnect delay (50 ms after a
    // reset, at least 400 ms without one).
    assert!(
        g[4] < Duration::from_millis(600 + 350),
        "reconnect after a healthy socket took {:?}: the backoff was not reset; gaps {g:?}",
        g[4]
    );
    assert!(g[3] >= Duration::from_millis(195), "gaps {g:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_still_queued_when_the_connection_stops_are_reported() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    // No reconnect within the test: the first delay is 10 s.
    let config = cfg(server.port)
        .reconnect_backoff(Duration::from_secs(10), Duration::from_secs(10))
        .close_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    mgr.add("q", config, rec.hooks()).unwrap();
    let mut ws = server.next().await;
    // The server closes but keeps the socket: writes queued now wait for the next connection.
    ws.send(Message::Close(None)).await.unwrap();
    rec.wait("on_close", |e| e.iter().any(|e| matches!(e, Ev::Close(..))))
        .await;
    let link = mgr.link("q").unwrap();
    link.send(Message::text("a")).unwrap();
    link.send(Message::text("b")).unwrap();
    eventually("the wait before reconnecting", || {
        link.state() == ConnState::Reconnecting
    })
    .await;
    mgr.close("q", 1000, "done").await.unwrap();
    let errors = rec.errors();
    assert!(
        errors.contains(&ConnectionError::WriteError(
            "2 queued message(s) were not written: the connection stopped".into()
        )),
        "{errors:?}"
    );
    drop(ws);
}
