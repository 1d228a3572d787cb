//! Live subscriptions (issue 11, item 2): sent now when open, replayed after every reconnect
//! and restart right after the init messages, in the order added, exactly once per socket;
//! unsubscribe removes them from the replay and sends its message. Against our test server and
//! a Python `websockets` server.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kharbranth::{ConnectionError, Message, WsManager};
use support::*;
use tokio::sync::mpsc;

fn text(m: Message) -> String {
    match m {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

async fn next_text(ws: &mut ServerWs) -> String {
    text(recv_data(ws).await)
}

/// Sends `marker` once the connection is open again and reads up to it: what the socket got
/// before it, so nothing sent twice can hide after the last expected message.
async fn up_to_marker(mgr: &WsManager, name: &str, ws: &mut ServerWs, marker: &str) -> Vec<String> {
    within("open", mgr.wait_open(name, DEADLINE)).await.unwrap();
    mgr.send_text(name, marker.to_string()).unwrap();
    let mut got = Vec::new();
    loop {
        let t = next_text(ws).await;
        if t == marker {
            return got;
        }
        got.push(t);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_sent_when_added_and_replayed_after_a_drop_after_the_init_messages() {
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    let config = cfg(server.port).init_text("login").build().unwrap();
    mgr.add("s", config, Default::default()).unwrap();
    let mut ws = server.next().await;
    within("open", mgr.wait_open("s", DEADLINE)).await.unwrap();
    mgr.subscribe("s", "b", Message::text("sub-b")).unwrap();
    mgr.subscribe("s", "a", Message::binary(vec![1u8, 2]))
        .unwrap();
    mgr.subscribe("s", "c", Message::text("sub-c")).unwrap();
    assert_eq!(mgr.subscriptions("s").unwrap(), ["b", "a", "c"]);
    assert_eq!(next_text(&mut ws).await, "login");
    assert_eq!(next_text(&mut ws).await, "sub-b");
    assert_eq!(recv_data(&mut ws).await, Message::binary(vec![1u8, 2]));
    assert_eq!(next_text(&mut ws).await, "sub-c");
    drop(ws);
    // Twice: the set is replayed on every socket, not once.
    for round in 0..2 {
        let mut ws = server.next().await;
        assert_eq!(next_text(&mut ws).await, "login", "round {round}");
        assert_eq!(next_text(&mut ws).await, "sub-b", "round {round}");
        assert_eq!(recv_data(&mut ws).await, Message::binary(vec![1u8, 2]));
        let rest = up_to_marker(&mgr, "s", &mut ws, &format!("end-{round}")).await;
        assert_eq!(rest, ["sub-c"], "round {round}");
    }
    mgr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_sends_its_message_and_leaves_the_replay() {
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    mgr.add(
        "s",
        cfg(server.port).init_text("login").build().unwrap(),
        Default::default(),
    )
    .unwrap();
    let mut ws = server.next().await;
    within("open", mgr.wait_open("s", DEADLINE)).await.unwrap();
    for k in ["a", "b", "c"] {
        mgr.subscribe("s", k, Message::text(format!("sub-{k}")))
            .unwrap();
    }
    assert!(
        mgr.unsubscribe("s", "b", Some(Message::text("unsub-b")))
            .unwrap()
    );
    // Without a message: removed, nothing sent.
    assert!(!mgr.unsubscribe("s", "c", None).unwrap());
    assert_eq!(mgr.subscriptions("s").unwrap(), ["a"]);
    let got = up_to_marker(&mgr, "s", &mut ws, "end-1").await;
    assert_eq!(got, ["login", "sub-a", "sub-b", "sub-c", "unsub-b"]);
    drop(ws);
    let mut ws = server.next().await;
    let got = up_to_marker(&mgr, "s", &mut ws, "end-2").await;
    assert_eq!(got, ["login", "sub-a"]);
    // The key is free again.
    mgr.subscribe("s", "b", Message::text("sub-b2")).unwrap();
    assert_eq!(mgr.subscriptions("s").unwrap(), ["a", "b"]);
    mgr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_set_and_a_close_drops_it() {
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    mgr.add("s", cfg(server.port).build().unwrap(), Default::default())
        .unwrap();
    let mut ws = server.next().await;
    within("open", mgr.wait_open("s", DEADLINE)).await.unwrap();
    mgr.subscribe("s", "a", Message::text("sub-a")).unwrap();
    assert_eq!(next_text(&mut ws).await, "sub-a");
    mgr.restart("s").unwrap();
    // The old socket sees the close; let it finish so the restart goes on.
    let old = tokio::spawn(async move { while ws.next().await.is_some() {} });
    let mut ws = server.next().await;
    let got = up_to_marker(&mgr, "s", &mut ws, "end").await;
    assert_eq!(got, ["sub-a"]);
    assert_eq!(mgr.subscriptions("s").unwrap(), ["a"]);
    let _ = within("old socket", old).await;
    let closer = tokio::spawn(async move { while ws.next().await.is_some() {} });
    mgr.close("s", 1000, "bye").await.unwrap();
    let _ = within("closed socket", closer).await;
    assert!(matches!(
        mgr.subscriptions("s"),
        Err(ConnectionError::ConnectionNotFound(_))
    ));
    // A connection added again under the name starts with no subscriptions.
    mgr.add("s", cfg(server.port).build().unwrap(), Default::default())
        .unwrap();
    let mut ws = server.next().await;
    assert!(up_to_marker(&mgr, "s", &mut ws, "fresh").await.is_empty());
    mgr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_added_while_connecting_is_sent_once_when_it_opens() {
    // The server accepts TCP at once but completes the upgrade only when told, so the adds
    // certainly happen while the connection is connecting.
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let (ws_tx, mut ws_rx) = mpsc::unbounded_channel();
    let server = Server::raw(move |tcp, _| {
        let (mut go, ws_tx) = (go_rx.clone(), ws_tx.clone());
        async move {
            let _ = go.wait_for(|g| *g).await;
            if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                let _ = ws_tx.send(ws);
            }
        }
    })
    .await;
    let mgr = WsManager::new();
    mgr.add(
        "s",
        cfg(server.port).init_text("login").build().unwrap(),
        Default::default(),
    )
    .unwrap();
    mgr.subscribe("s", "a", Message::text("sub-a")).unwrap();
    eventually("the TCP accept", || server.accepted() == 1).await;
    mgr.subscribe("s", "b", Message::text("sub-b")).unwrap();
    assert_eq!(mgr.state("s").unwrap(), kharbranth::ConnState::Connecting);
    go_tx.send(true).unwrap();
    let mut ws = within("the upgrade", ws_rx.recv()).await.unwrap();
    let got = up_to_marker(&mgr, "s", &mut ws, "end").await;
    assert_eq!(got, ["login", "sub-a", "sub-b"]);
    mgr.shutdown().await;
}

/// Every socket the storm server accepted, with the data messages it got, in order.
type Sockets = Arc<Mutex<Vec<Vec<String>>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_racing_a_reconnect_storm_reach_every_socket_at_most_once_and_the_last_in_full() {
    const N: usize = 150;
    let storm = Arc::new(AtomicBool::new(true));
    let sockets: Sockets = Arc::default();
    let (s2, log) = (storm.clone(), sockets.clone());
    let server = Server::raw(move |tcp, _| {
        let (storm, log) = (s2.clone(), log.clone());
        async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            let i = {
                let mut l = log.lock().unwrap();
                l.push(Vec::new());
                l.len() - 1
            };
            // During the storm each socket lives a few milliseconds, dropped without a close.
            let life = tokio::time::sleep(Duration::from_millis(3 + (i % 5) as u64));
            tokio::pin!(life);
            loop {
                tokio::select! {
                    m = ws.next() => match m {
                        Some(Ok(Message::Text(t))) => log.lock().unwrap()[i].push(t.to_string()),
                        Some(Ok(_)) => {}
                        _ => return,
                    },
                    () = &mut life, if storm.load(Ordering::SeqCst) => return,
                }
            }
        }
    })
    .await;
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .init_text("login")
        .reconnect_backoff(Duration::from_millis(1), Duration::from_millis(2))
        .build()
        .unwrap();
    mgr.add("s", config, Default::default()).unwrap();
    for i in 0..N {
        mgr.subscribe("s", &format!("k{i}"), Message::text(format!("sub-{i}")))
            .unwrap();
        if i % 3 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    storm.store(false, Ordering::SeqCst);
    // The socket open now, or the next one, stays. A marker may meet a socket the storm
    // dropped already (its write fails, reported): send one every 100 ms until one lands.
    let mut last_sent = tokio::time::Instant::now() - Duration::from_secs(1);
    let mut n = 0;
    eventually("a marker on a lasting socket", || {
        if last_sent.elapsed() >= Duration::from_millis(100)
            && mgr.send_text("s", format!("end-{n}")).is_ok()
        {
            last_sent = tokio::time::Instant::now();
            n += 1;
        }
        let l = sockets.lock().unwrap();
        l.last()
            .is_some_and(|s| s.last().is_some_and(|m| m.starts_with("end-")))
    })
    .await;
    let l = sockets.lock().unwrap().clone();
    assert!(l.len() > 3, "no storm: only {} socket(s)", l.len());
    for (i, s) in l.iter().enumerate() {
        assert_eq!(
            s.first().map(String::as_str),
            Some("login"),
            "socket {i}: {s:?}"
        );
        let subs: Vec<&String> = s.iter().filter(|m| m.starts_with("sub-")).collect();
        let mut seen = std::collections::HashSet::new();
        for m in &subs {
            assert!(seen.insert(*m), "socket {i} got {m} twice: {s:?}");
        }
        // In the order added: a socket gets a replay in order, then later adds in order.
        let idx: Vec<usize> = subs.iter().map(|m| m[4..].parse().unwrap()).collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "socket {i}: {idx:?}");
    }
    eprintln!("{} sockets during the storm", l.len());
    let last: Vec<&String> = l
        .last()
        .unwrap()
        .iter()
        .filter(|m| !m.starts_with("end-"))
        .collect();
    let want: Vec<String> = std::iter::once("login".to_string())
        .chain((0..N).map(|i| format!("sub-{i}")))
        .collect();
    let want: Vec<&String> = want.iter().collect();
    assert_eq!(last, want, "the lasting socket after {} sockets", l.len());
    mgr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscription_calls_get_clear_errors_and_change_nothing() {
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    let config = cfg(server.port).max_message_size(8).build().unwrap();
    mgr.add("s", config, Default::default()).unwrap();
    mgr.subscribe("s", "a", Message::text("sub-a")).unwrap();
    let e = mgr.subscribe("s", "a", Message::text("again")).unwrap_err();
    assert_eq!(e, ConnectionError::SubscriptionExists("a".into()));
    assert_eq!(e.kind(), "subscription_exists");
    let e = mgr.unsubscribe("s", "zz", None).unwrap_err();
    assert_eq!(e, ConnectionError::SubscriptionNotFound("zz".into()));
    assert!(matches!(
        mgr.subscribe("s", "big", Message::text("123456789")),
        Err(ConnectionError::MessageTooLarge { size: 9, max: 8 })
    ));
    assert!(matches!(
        mgr.unsubscribe("s", "a", Some(Message::binary(vec![0u8; 9]))),
        Err(ConnectionError::MessageTooLarge { size: 9, max: 8 })
    ));
    for (key, msg) in [
        ("", Message::text("x")),
        (&*"k".repeat(257), Message::text("x")),
        ("p", Message::Ping(vec![1u8].into())),
    ] {
        assert!(
            matches!(
                mgr.subscribe("s", key, msg),
                Err(ConnectionError::InvalidArgument(_))
            ),
            "key of {} bytes",
            key.len()
        );
    }
    assert!(matches!(
        mgr.subscribe("nope", "a", Message::text("x")),
        Err(ConnectionError::ConnectionNotFound(_))
    ));
    // Nothing changed: only the first subscription, sent once.
    assert_eq!(mgr.subscriptions("s").unwrap(), ["a"]);
    let mut ws = server.next().await;
    assert_eq!(up_to_marker(&mgr, "s", &mut ws, "end").await, ["sub-a"]);
    mgr.shutdown().await;
    for r in [
        mgr.subscribe("s", "b", Message::text("x")).map(|_| false),
        mgr.unsubscribe("s", "a", None),
        mgr.subscriptions("s").map(|_| false),
    ] {
        assert_eq!(r, Err(ConnectionError::ShuttingDown));
    }
    drop(ws.close(None).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_from_the_connections_own_hook_reaches_that_socket() {
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    let m2 = mgr.clone();
    let hooks = kharbranth::ReadHooks::new().on_text(move |name, t| {
        if t.as_str() == "please-subscribe" {
            m2.subscribe(name, "h", Message::text("sub-from-hook"))
                .unwrap();
        }
    });
    mgr.add("s", cfg(server.port).build().unwrap(), hooks)
        .unwrap();
    let mut ws = server.next().await;
    ws.send(Message::text("please-subscribe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "sub-from-hook");
    drop(ws);
    let mut ws = server.next().await;
    assert_eq!(
        up_to_marker(&mgr, "s", &mut ws, "end").await,
        ["sub-from-hook"]
    );
    mgr.shutdown().await;
}

const PY_SERVER: &str = r#"
import asyncio
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

count = 0

async def handler(ws):
    global count
    count += 1
    n = count
    got = []
    try:
        async for msg in ws:
            got.append(msg)
            if msg == "drop-me":
                ws.transport.abort()
                return
            if msg.startswith("end"):
                break
    except ConnectionClosed:
        pass
    finally:
        print("socket " + "|".join(got), flush=True)

async def main():
    async with serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
        print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Future()

asyncio.run(main())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_websockets_server_gets_the_replay_after_a_drop() {
    let Some(mut server) = PythonServer::start(
        "a_python_websockets_server_gets_the_replay_after_a_drop",
        PY_SERVER,
    )
    .await
    else {
        return;
    };
    let port = server.port;
    let mgr = WsManager::new();
    let config = cfg(format!("ws://127.0.0.1:{port}/"))
        .init_text("login")
        .build()
        .unwrap();
    mgr.add("py", config, Default::default()).unwrap();
    within("open", mgr.wait_open("py", DEADLINE)).await.unwrap();
    mgr.subscribe("py", "a", Message::text("sub-a")).unwrap();
    mgr.subscribe("py", "b", Message::text("sub-b")).unwrap();
    mgr.unsubscribe("py", "a", Some(Message::text("unsub-a")))
        .unwrap();
    mgr.subscribe("py", "c", Message::text("sub-c")).unwrap();
    mgr.send_text("py", "drop-me").unwrap();
    assert_eq!(
        server.next_line("the first socket").await,
        "socket login|sub-a|sub-b|unsub-a|sub-c|drop-me"
    );
    // The reconnect: the Python server dropped the socket without a close. The marker goes
    // out once the new socket is open (sent earlier, it could meet the dying one).
    eventually("the reconnect", || {
        mgr.stats("py").unwrap().reconnects == 1
            && mgr.state("py").unwrap() == kharbranth::ConnState::Open
    })
    .await;
    mgr.send_text("py", "end").unwrap();
    assert_eq!(
        server.next_line("the second socket").await,
        "socket login|sub-b|sub-c|end"
    );
    mgr.shutdown().await;
}
