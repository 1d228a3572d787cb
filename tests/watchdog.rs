//! The data watchdog (`idle_timeout`): a peer that answers pings but sends no data is dropped
//! and reconnected with `IdleTimeout`; a feed with data, and a polled connection whose reads
//! wait for a slow poller, are not.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kharbranth::{ConnectionError, Event, WsManager};
use support::*;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const IDLE: Duration = Duration::from_millis(300);

fn is_idle(e: &ConnectionError) -> bool {
    matches!(e, ConnectionError::IdleTimeout(d) if *d == IDLE)
}

/// The next event of the stream, within the deadline.
async fn next(events: &mut kharbranth::EventStream) -> kharbranth::ConnEvent {
    within("an event", events.recv())
        .await
        .expect("the event stream ended")
}

/// Answers pings (tungstenite does while reading) and sends nothing else, until the socket ends.
async fn pings_only(mut ws: ServerWs) {
    while let Some(Ok(_)) = ws.next().await {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_answers_pings_but_sends_no_data_times_out_and_reconnects() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .ping_interval(Duration::from_millis(50))
        .pong_timeout(Duration::from_secs(5))
        .idle_timeout(IDLE)
        .build()
        .unwrap();
    mgr.add("quiet", config, rec.hooks()).unwrap();
    let first = server.next().await;
    let _first = AbortOnDrop(tokio::spawn(pings_only(first)));
    rec.wait("an idle timeout", |e| {
        e.iter().any(|e| matches!(e, Ev::Error(e) if is_idle(e)))
    })
    .await;
    // The heartbeat was answered all along: the watchdog, not the pong timeout, fired.
    assert!(rec.count(|e| matches!(e, Ev::Pong(_))) >= 2);
    let opened = rec.open_times()[0];
    let (e, failed) = rec.timed_errors()[0].clone();
    assert!(is_idle(&e), "first error {e:?}");
    let after = failed - opened;
    // Detected between one and two periods after the last data message (here: the open);
    // the slack is for a loaded machine.
    assert!(after >= IDLE, "timed out after {after:?}");
    assert!(
        after < 2 * IDLE + Duration::from_secs(1),
        "timed out after {after:?}"
    );
    // It reconnects.
    let second = within("the reconnect", server.next()).await;
    let _second = AbortOnDrop(tokio::spawn(pings_only(second)));
    rec.wait_count("the second open", 2, |e| *e == Ev::Open)
        .await;
    assert_eq!(e.kind(), "idle_timeout");
    mgr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_sends_data_within_every_period_never_times_out() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(server.port).idle_timeout(IDLE).build().unwrap();
    mgr.add("feed", config, rec.hooks()).unwrap();
    let mut ws = server.next().await;
    let until = Instant::now() + Duration::from_millis(1500);
    let mut sent = 0;
    while Instant::now() < until {
        ws.send(Message::text(format!("tick {sent}")))
            .await
            .unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    rec.wait_count("every tick", sent, |e| matches!(e, Ev::Text(_)))
        .await;
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    assert_eq!(mgr.stats("feed").unwrap().reconnects, 0);
    assert_eq!(server.accepted(), 1);
    mgr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_connection_stalled_by_a_full_event_queue_does_not_time_out() {
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    mgr.set_event_capacity(2).unwrap();
    let mut events = mgr.events();
    let config = cfg(server.port).idle_timeout(IDLE).build().unwrap();
    mgr.add_polled("slow", config).unwrap();
    let mut ws = server.next().await;
    // The peer sends within every period, all along; only the poller is slow.
    let feed = AbortOnDrop(tokio::spawn(async move {
        for i in 0u32.. {
            if ws
                .send(Message::binary(i.to_be_bytes().to_vec()))
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }));
    assert!(matches!(next(&mut events).await.into_event(), Event::Open));
    let mut expected = 0u32;
    let stop = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < stop {
        match next(&mut events).await.into_event() {
            Event::Binary(b) => {
                assert_eq!(b[..], expected.to_be_bytes(), "out of order");
                expected += 1;
            }
            other => panic!("unexpected event {other:?} after {expected} messages"),
        }
        if expected == 5 {
            // Four idle periods without a poll: the queue is full, reads wait, and the
            // frames pile up in the socket. That is not the peer's silence.
            tokio::time::sleep(4 * IDLE).await;
        }
    }
    assert!(expected > 20, "only {expected} messages");
    let stats = mgr.stats("slow").unwrap();
    assert_eq!(stats.reconnects, 0, "the stalled connection was dropped");
    assert_eq!(server.accepted(), 1);
    drop(feed);
    mgr.shutdown().await;
}
