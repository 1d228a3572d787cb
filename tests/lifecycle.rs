//! Lifecycle state events and the gap they report (issue 11 item 3): the first open, a drop,
//! refused reconnects, the re-open with its attempts and down time, the close; and the stats
//! that go with them (connected-since, down time, last disconnect reason).

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::SinkExt;
use kharbranth::{ConnState, ConnectionError, ReadHooks, StateChange, WsManager};
use support::*;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

type Changes = Arc<Mutex<Vec<(StateChange, Instant)>>>;

/// Hooks that record every state change (with when it arrived) and count the opens.
fn recording() -> (ReadHooks, Changes, Arc<Mutex<Vec<String>>>) {
    let changes: Changes = Arc::default();
    let order: Arc<Mutex<Vec<String>>> = Arc::default();
    let (c, o1, o2) = (changes.clone(), order.clone(), order.clone());
    let hooks = ReadHooks::new()
        .on_state(move |_, s| {
            o1.lock().unwrap().push(format!("state {:?}", s.state));
            c.lock().unwrap().push((s.clone(), Instant::now()));
        })
        .on_open(move |_| o2.lock().unwrap().push("open".into()));
    (hooks, changes, order)
}

fn states(changes: &Changes) -> Vec<ConnState> {
    changes
        .lock()
        .unwrap()
        .iter()
        .map(|(c, _)| c.state)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopen_after_refused_connects_reports_attempts_and_down_time() {
    // Connection 0 opens, sends one message and drops; 1 and 2 are refused; 3 opens and stays.
    let server = Server::raw(|mut tcp, i| async move {
        match i {
            0 => {
                raw_upgrade(&mut tcp).await;
                let mut ws = server_ws(tcp).await;
                let _ = ws.send(Message::text("tick")).await;
                let _ = ws.flush().await;
                // Let the client read it before the socket goes away without a close.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            1 | 2 => refuse_upgrade(tcp, "503 Service Unavailable").await,
            _ => {
                raw_upgrade(&mut tcp).await;
                hold(server_ws(tcp).await).await;
            }
        }
    })
    .await;
    let (hooks, changes, order) = recording();
    let mgr = WsManager::new();
    let wall_before = SystemTime::now();
    mgr.add("g", cfg(server.port).build().unwrap(), hooks)
        .unwrap();
    eventually("the second open", || {
        states(&changes)
            .iter()
            .filter(|s| **s == ConnState::Open)
            .count()
            == 2
    })
    .await;
    let got = changes.lock().unwrap().clone();
    let seq: Vec<ConnState> = got.iter().map(|(c, _)| c.state).collect();
    assert_eq!(
        seq,
        [
            ConnState::Connecting,
            ConnState::Open,
            ConnState::Reconnecting,
            ConnState::Open
        ]
    );
    // The first open is no gap.
    assert_eq!((got[1].0.attempts, got[1].0.down_for), (0, None));
    // The drop says why.
    assert!(
        matches!(
            got[2].0.reason,
            Some(ConnectionError::ConnectionDropped(_) | ConnectionError::ReadError(_))
        ),
        "{:?}",
        got[2].0.reason
    );
    // Two refused attempts, then the one that opened.
    let reopen = &got[3].0;
    assert_eq!(reopen.attempts, 3, "{reopen:?}");
    assert_eq!(reopen.reason, None);
    let down = reopen.down_for.expect("a re-open carries its down time");
    let observed = got[3].1 - got[2].1;
    // Measured by the library from the drop to the re-open: not longer than what the test saw
    // between the two events plus slack, and at least the backoff between two failed attempts.
    assert!(down >= Duration::from_millis(20), "{down:?}");
    assert!(
        down <= observed + Duration::from_millis(200),
        "{down:?} vs {observed:?}"
    );
    // State(Open) runs just before on_open, both times.
    let o = order.lock().unwrap().clone();
    let opens: Vec<usize> = (0..o.len()).filter(|&i| o[i] == "open").collect();
    assert_eq!(opens.len(), 2);
    for i in opens {
        assert_eq!(o[i - 1], "state Open");
    }

    let s = mgr.stats("g").unwrap();
    assert_eq!(s.reconnects, 1);
    assert_eq!(s.rotations, 0);
    assert!(s.down_time >= down && s.down_time <= down + Duration::from_millis(1));
    let since = s.connected_since.expect("open: connected_since is set");
    assert!(
        since >= wall_before && since <= SystemTime::now(),
        "{since:?}"
    );
    assert!(matches!(
        mgr.last_disconnect("g").unwrap(),
        Some(ConnectionError::ConnectionDropped(_) | ConnectionError::ReadError(_))
    ));

    mgr.close("g", 1000, "done").await.unwrap();
    let tail: Vec<ConnState> = states(&changes)[4..].to_vec();
    assert_eq!(tail, [ConnState::Closing, ConnState::Closed]);
    let last = changes.lock().unwrap().last().unwrap().0.clone();
    assert_eq!(
        last.reason, None,
        "a close the caller asked for has no reason"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giving_up_ends_in_closed_with_retries_exhausted() {
    let server = Server::raw(|tcp, _| refuse_upgrade(tcp, "503 Service Unavailable")).await;
    let (hooks, changes, _) = recording();
    let mgr = WsManager::new();
    let config = cfg(server.port).max_reconnect_attempts(3).build().unwrap();
    mgr.add("x", config, hooks).unwrap();
    eventually("the closed state", || {
        states(&changes).last() == Some(&ConnState::Closed)
    })
    .await;
    let got = changes.lock().unwrap().clone();
    let seq: Vec<ConnState> = got.iter().map(|(c, _)| c.state).collect();
    // One Reconnecting per outage, not one per failed attempt.
    assert_eq!(
        seq,
        [
            ConnState::Connecting,
            ConnState::Reconnecting,
            ConnState::Closed
        ]
    );
    assert!(matches!(
        got[1].0.reason,
        Some(ConnectionError::ConnectFailed(_))
    ));
    assert_eq!(got[2].0.reason, Some(ConnectionError::RetriesExhausted(3)));
    // It never opened: no disconnect, no down time, not connected.
    let s = mgr.stats("x").unwrap();
    assert_eq!((s.connected_since, s.down_time), (None, Duration::ZERO));
    assert_eq!(mgr.last_disconnect("x").unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reports_closing_then_a_reopen_without_a_disconnect_reason() {
    let server = echo_server().await;
    let (hooks, changes, _) = recording();
    let mgr = WsManager::new();
    mgr.add("r", cfg(server.port).build().unwrap(), hooks)
        .unwrap();
    mgr.wait_open("r", DEADLINE).await.unwrap();
    mgr.restart("r").unwrap();
    eventually("the re-open", || {
        states(&changes)
            .iter()
            .filter(|s| **s == ConnState::Open)
            .count()
            == 2
    })
    .await;
    let got = changes.lock().unwrap().clone();
    let seq: Vec<ConnState> = got.iter().map(|(c, _)| c.state).collect();
    assert_eq!(
        seq,
        [
            ConnState::Connecting,
            ConnState::Open,
            ConnState::Closing,
            ConnState::Open
        ]
    );
    assert_eq!(got[3].0.attempts, 1);
    assert!(got[3].0.down_for.is_some());
    // A restart the caller asked for is not a disconnect.
    assert_eq!(mgr.last_disconnect("r").unwrap(), None);
    mgr.close("r", 1000, "done").await.unwrap();
}
