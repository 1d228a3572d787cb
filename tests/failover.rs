//! Endpoint failover: a connection with several URLs moves to the next when one fails, the
//! backoff applies per round over all of them, and the URL in use is reported.

mod support;

use std::time::Duration;

use std::sync::{Arc, Mutex};

use kharbranth::{ConnState, ConnectionError, WsManager};
use support::*;

/// A port on 127.0.0.1 where nobody listens.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_url_that_opens_is_used_after_two_that_refuse() {
    let refusing = Server::raw(|tcp, _| refuse_upgrade(tcp, "503 Service Unavailable")).await;
    let good = echo_server().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(dead_port())
        .fallback_url(refusing.url("feed"))
        .fallback_url(good.url("feed"))
        .build()
        .unwrap();
    // The open event says which URL it used, as the stats do.
    let opened_on: Arc<Mutex<Vec<usize>>> = Arc::default();
    let o = opened_on.clone();
    let hooks = rec.hooks().on_state(move |_, c| {
        if c.state == ConnState::Open {
            o.lock().unwrap().push(c.endpoint);
        }
    });
    mgr.add("f", config, hooks).unwrap();
    within("wait_open", mgr.wait_open("f", DEADLINE))
        .await
        .unwrap();
    assert_eq!(mgr.stats("f").unwrap().endpoint, 2);
    assert_eq!(*opened_on.lock().unwrap(), [2]);
    mgr.send_text("f", "via the third").unwrap();
    rec.wait("the echo", |e| {
        e.contains(&Ev::Text("via the third".into()))
    })
    .await;
    // Both failures were reported, in order, and nothing else went wrong.
    let errors = rec.errors();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].to_string().contains("TCP connect"),
        "{}",
        errors[0]
    );
    assert!(errors[1].to_string().contains("503"), "{}", errors[1]);
    assert_eq!(rec.opens(), 1);
    mgr.close("f", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backoff_and_the_attempt_limit_count_rounds_not_urls() {
    let servers = [
        Server::raw(|tcp, _| refuse_upgrade(tcp, "503 Service Unavailable")).await,
        Server::raw(|tcp, _| refuse_upgrade(tcp, "502 Bad Gateway")).await,
        Server::raw(|tcp, _| refuse_upgrade(tcp, "500 Internal Server Error")).await,
    ];
    let backoff = Duration::from_millis(400);
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(servers[0].url(""))
        .fallback_url(servers[1].url(""))
        .fallback_url(servers[2].url(""))
        .reconnect_backoff(backoff, backoff)
        .max_reconnect_attempts(2)
        .build()
        .unwrap();
    mgr.add("f", config, rec.hooks()).unwrap();
    rec.wait("RetriesExhausted", |e| {
        e.iter()
            .any(|e| matches!(e, Ev::Error(ConnectionError::RetriesExhausted(2))))
    })
    .await;
    // Two rounds of three URLs, every failure reported.
    assert_eq!(rec.errors().len(), 2 * 3 + 1, "{:?}", rec.errors());
    let times: Vec<Vec<_>> = servers.iter().map(|s| s.accept_times()).collect();
    assert!(times.iter().all(|t| t.len() == 2), "{times:?}");
    for round in [0, 1] {
        // Within a round the next URL is tried at once...
        for (i, pair) in times.windows(2).enumerate() {
            let gap = pair[1][round].duration_since(pair[0][round]);
            assert!(
                gap < backoff / 2,
                "round {round}: URL {} waited {gap:?}",
                i + 1
            );
        }
    }
    // ...and between rounds the backoff applies (jitter never goes below half of it).
    let between = times[0][1].duration_since(times[2][0]);
    assert!(between >= backoff / 2, "rounds {between:?} apart");
    mgr.close("f", 1000, "done").await.unwrap();
}

#[test]
fn a_bad_fallback_url_is_refused_and_named() {
    match cfg(1u16).fallback_url("http://example.invalid/").build() {
        Err(ConnectionError::InvalidArgument(m)) => {
            assert!(m.starts_with("fallback URL"), "{m}")
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}
