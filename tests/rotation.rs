//! Rotation to a fresh socket without a gap: under a numbered feed whose server cuts every
//! socket after 2 s, rotating by maximum age or from a hook on a maintenance notice loses no
//! number, and a failing second socket leaves the first one running.

mod support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kharbranth::{ConnState, ConnectionError, Event, ReadHooks, WsManager};
use support::*;
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior, interval_at, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// One number every this long, the same global sequence on every socket.
const TICK: Duration = Duration::from_millis(5);
/// How long the server lets a socket live.
const LIFETIME: Duration = Duration::from_secs(2);

/// What the hooks saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    /// Socket index (the server's accept order) and number.
    Num(usize, u64),
    Rotated,
    Error(String),
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Serves socket `index` of the feed: "index:n" for every tick n of the global clock from
/// the socket's opening on, optionally a "maintenance" notice after `notice`, and a close
/// (1001) after [`LIFETIME`].
async fn feed(tcp: TcpStream, index: usize, start: Instant, notice: Option<Duration>) {
    feed_recording(tcp, index, start, notice, None).await;
}

/// Pings the feed's first socket and its later ones received (only the heartbeat test reads
/// them; it is the one test of this binary with a short ping interval).
static PINGS: [std::sync::atomic::AtomicUsize; 2] = [
    std::sync::atomic::AtomicUsize::new(0),
    std::sync::atomic::AtomicUsize::new(0),
];

/// What a feed server received from its clients: socket index and text.
type Got = Arc<Mutex<Vec<(usize, String)>>>;

/// [`feed`], also recording every text the client sends into `got`.
async fn feed_recording(
    tcp: TcpStream,
    index: usize,
    start: Instant,
    notice: Option<Duration>,
    got: Option<Got>,
) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let opened = Instant::now();
    let first = (opened - start).as_nanos() / TICK.as_nanos() + 1;
    let mut n = first as u64;
    let mut ticks = interval_at(start + TICK * n as u32, TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut noticed = notice.is_none();
    let end = opened + LIFETIME;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if Instant::now() >= end {
                    break;
                }
                if !noticed && opened.elapsed() >= notice.unwrap_or_default() {
                    noticed = true;
                    if ws.send(Message::text("maintenance")).await.is_err() {
                        return;
                    }
                }
                if ws.send(Message::text(format!("{index}:{n}"))).await.is_err() {
                    return;
                }
                n += 1;
            }
            m = ws.next() => match m {
                // The client closed (a rotation's end): finish its handshake.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
                    return;
                }
                Some(Ok(Message::Text(t))) => {
                    if let Some(g) = &got {
                        g.lock().unwrap().push((index, t.to_string()));
                    }
                }
                Some(Ok(Message::Ping(_))) => {
                    PINGS[index.min(1)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Some(Ok(_)) => {}
            }
        }
    }
    let frame = CloseFrame {
        code: 1001.into(),
        reason: "socket lifetime over".into(),
    };
    let _ = ws.close(Some(frame)).await;
    let _ = timeout(Duration::from_secs(1), async {
        while ws.next().await.is_some() {}
    })
    .await;
}

/// A feed server; `notice`: when each socket announces maintenance.
async fn feed_server(notice: Option<Duration>) -> Server {
    let start = Instant::now();
    Server::raw(move |tcp, i| feed(tcp, i, start, notice)).await
}

/// Hooks that log numbers, rotations and errors; `on_notice` runs on "maintenance".
fn logging_hooks(log: &Log, on_notice: impl Fn() + Send + 'static) -> ReadHooks {
    let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
    ReadHooks::new()
        .on_text(move |_, t| {
            if t.as_str() == "maintenance" {
                return on_notice();
            }
            let (i, n) = t.as_str().split_once(':').expect("index:number");
            let seen = Seen::Num(i.parse().unwrap(), n.parse().unwrap());
            l1.lock().unwrap().push(seen);
        })
        .on_rotated(move |_| l2.lock().unwrap().push(Seen::Rotated))
        .on_error(move |_, e| l3.lock().unwrap().push(Seen::Error(e.to_string())))
}

/// Checks the log of a run with `switches` rotations: every number from the first to the last
/// arrived, each socket's in order, one Rotated event per switch, and at each switch the new
/// socket's first number is at most the old one's last + 1.
fn check_no_gap(log: &[Seen], switches: u64) {
    let nums: Vec<(usize, u64)> = log
        .iter()
        .filter_map(|s| match s {
            Seen::Num(i, n) => Some((*i, *n)),
            _ => None,
        })
        .collect();
    let errors: Vec<&Seen> = log.iter().filter(|s| matches!(s, Seen::Error(_))).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let rotated = log.iter().filter(|s| **s == Seen::Rotated).count() as u64;
    assert_eq!(rotated, switches, "one Rotated event per switch");
    let sockets = nums.iter().map(|(i, _)| *i).max().unwrap() + 1;
    assert!(
        sockets as u64 > switches,
        "{sockets} sockets for {switches} switches"
    );
    let mut last_of = vec![None::<u64>; sockets];
    let mut first_of = vec![None::<u64>; sockets];
    for &(i, n) in &nums {
        if let Some(prev) = last_of[i] {
            assert_eq!(n, prev + 1, "socket {i} skipped or reordered after {prev}");
        }
        last_of[i] = Some(n);
        first_of[i].get_or_insert(n);
    }
    for i in 1..=switches as usize {
        let (old_last, new_first) = (last_of[i - 1].unwrap(), first_of[i].unwrap());
        // The overlap's duplicates: what a consumer drops by sequence number.
        eprintln!(
            "switch {i}: old socket's last {old_last}, new socket's first {new_first}, {} duplicate(s)",
            (old_last + 1).saturating_sub(new_first)
        );
        assert!(
            new_first <= old_last + 1,
            "gap at switch {i}: old socket ended at {old_last}, new one began at {new_first}"
        );
    }
    let (lo, hi) = (
        nums.iter().map(|x| x.1).min().unwrap(),
        nums.iter().map(|x| x.1).max().unwrap(),
    );
    let mut got = vec![false; (hi - lo + 1) as usize];
    for &(_, n) in &nums {
        got[(n - lo) as usize] = true;
    }
    let missing: Vec<u64> = (lo..=hi).filter(|n| !got[(n - lo) as usize]).collect();
    assert!(missing.is_empty(), "numbers lost: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_maximum_age_loses_no_number_across_three_switches() {
    let server = feed_server(None).await;
    let log: Log = Log::default();
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .max_connection_age(Duration::from_millis(1200))
        .build()
        .unwrap();
    mgr.add("feed", config, logging_hooks(&log, || {})).unwrap();
    mgr.wait_open("feed", DEADLINE).await.unwrap();
    eventually("three rotations", || {
        mgr.stats("feed").unwrap().rotations >= 3
    })
    .await;
    mgr.close("feed", 1000, "done").await.unwrap();
    let log = log.lock().unwrap().clone();
    // Each socket lived 1.2 s of its 2 s: no reconnect was needed.
    check_no_gap(
        &log,
        log.iter().filter(|s| **s == Seen::Rotated).count() as u64,
    );
    assert!(log.iter().filter(|s| **s == Seen::Rotated).count() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotate_from_a_hook_on_a_maintenance_notice_loses_no_number() {
    let server = feed_server(Some(Duration::from_millis(1000))).await;
    let log: Log = Log::default();
    let mgr = WsManager::new();
    let handle: Arc<OnceLock<WsManager>> = Arc::default();
    let h = handle.clone();
    let hooks = logging_hooks(&log, move || {
        if let Some(m) = h.get() {
            m.rotate("feed").unwrap();
        }
    });
    let _ = handle.set(mgr.clone());
    mgr.add("feed", cfg(server.port).build().unwrap(), hooks)
        .unwrap();
    mgr.wait_open("feed", DEADLINE).await.unwrap();
    eventually("two rotations", || {
        mgr.stats("feed").unwrap().rotations >= 2
    })
    .await;
    let stats = mgr.stats("feed").unwrap();
    assert_eq!(stats.reconnects, 0, "a socket dropped instead of rotating");
    mgr.close("feed", 1000, "done").await.unwrap();
    let log = log.lock().unwrap().clone();
    let switches = log.iter().filter(|s| **s == Seen::Rotated).count() as u64;
    check_no_gap(&log, switches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_second_socket_is_reported_and_the_first_keeps_delivering() {
    let start = Instant::now();
    let server = Server::raw(move |tcp, i| async move {
        if i == 0 {
            feed(tcp, i, start, None).await;
        } else {
            refuse_upgrade(tcp, "503 Service Unavailable").await;
        }
    })
    .await;
    let log: Log = Log::default();
    let mgr = WsManager::new();
    mgr.add(
        "feed",
        cfg(server.port).build().unwrap(),
        logging_hooks(&log, || {}),
    )
    .unwrap();
    mgr.wait_open("feed", DEADLINE).await.unwrap();
    eventually("the first numbers", || log.lock().unwrap().len() >= 5).await;
    mgr.rotate("feed").unwrap();
    eventually("the failure", || {
        log.lock()
            .unwrap()
            .iter()
            .any(|s| matches!(s, Seen::Error(_)))
    })
    .await;
    let seen_at_failure = log.lock().unwrap().len();
    eventually("numbers after the failure", || {
        log.lock().unwrap().len() >= seen_at_failure + 10
    })
    .await;
    assert_eq!(mgr.state("feed").unwrap(), ConnState::Open);
    let stats = mgr.stats("feed").unwrap();
    assert_eq!((stats.rotations, stats.reconnects), (0, 0));
    assert_eq!(server.accepted(), 2);
    let log = log.lock().unwrap().clone();
    let errors: Vec<&Seen> = log.iter().filter(|s| matches!(s, Seen::Error(_))).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(!log.contains(&Seen::Rotated));
    // Everything came from the first socket, in order.
    let nums: Vec<u64> = log
        .iter()
        .filter_map(|s| match s {
            Seen::Num(0, n) => Some(*n),
            Seen::Num(i, _) => panic!("a number from socket {i}"),
            _ => None,
        })
        .collect();
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    mgr.close("feed", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_of_an_unknown_name_a_connecting_one_a_closed_one_or_twice_has_a_defined_result() {
    let mgr = WsManager::new();
    assert!(matches!(
        mgr.rotate("nobody"),
        Err(ConnectionError::ConnectionNotFound(n)) if n == "nobody"
    ));
    // Connecting: a server that accepts TCP and never answers the upgrade.
    let silent = Server::raw(|tcp, _| never_answer(tcp)).await;
    mgr.add("slow", cfg(silent.port).build().unwrap(), ReadHooks::new())
        .unwrap();
    assert!(matches!(
        mgr.rotate("slow"),
        Err(ConnectionError::ConnectionDropped(m)) if m.contains("not open")
    ));
    // Twice in a row: one rotation.
    let server = feed_server(None).await;
    let log: Log = Log::default();
    mgr.add(
        "feed",
        cfg(server.port).build().unwrap(),
        logging_hooks(&log, || {}),
    )
    .unwrap();
    mgr.wait_open("feed", DEADLINE).await.unwrap();
    let link = mgr.link("feed").unwrap();
    link.rotate().unwrap();
    link.rotate().unwrap();
    eventually("the rotation", || link.stats().rotations == 1).await;
    assert!(!wait_until(Duration::from_millis(300), || link.stats().rotations > 1).await);
    // During the close: refused once the connection is closing, ignored (Ok) while the close
    // is still pending; either way the close goes on and no rotation happens.
    mgr.request_close("feed", 1000, "done").unwrap();
    let during = link.rotate();
    assert!(
        match &during {
            Ok(()) => true,
            Err(ConnectionError::ConnectionDropped(m)) => m.contains("closed"),
            Err(_) => false,
        },
        "{during:?}"
    );
    assert!(matches!(
        mgr.rotate("feed"),
        Err(ConnectionError::ConnectionNotFound(_))
    ));
    eventually("closed", || link.state() == ConnState::Closed).await;
    assert!(link.rotate().is_err());
    assert_eq!(link.stats().rotations, 1);
    mgr.shutdown().await;
    assert!(matches!(
        mgr.rotate("slow"),
        Err(ConnectionError::ShuttingDown)
    ));
    let log = log.lock().unwrap().clone();
    check_no_gap(&log, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_during_rotations_reach_the_server_once_each_in_order() {
    let start = Instant::now();
    let got: Got = Got::default();
    let g = got.clone();
    let server =
        Server::raw(move |tcp, i| feed_recording(tcp, i, start, None, Some(g.clone()))).await;
    let log: Log = Log::default();
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .max_connection_age(Duration::from_millis(500))
        .build()
        .unwrap();
    mgr.add("feed", config, logging_hooks(&log, || {})).unwrap();
    mgr.wait_open("feed", DEADLINE).await.unwrap();
    let link = mgr.link("feed").unwrap();
    // A send every 2 ms across at least two switches; every one is accepted.
    let mut sent = 0u64;
    let until = Instant::now() + DEADLINE;
    while link.stats().rotations < 2 {
        assert!(
            Instant::now() < until,
            "no two rotations within {DEADLINE:?}"
        );
        link.send(Message::text(format!("c{sent}"))).unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // And some for the socket after the second switch.
    for _ in 0..20 {
        link.send(Message::text(format!("c{sent}"))).unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    mgr.close("feed", 1000, "done").await.unwrap();
    let got = got.lock().unwrap().clone();
    let texts: Vec<u64> = got
        .iter()
        .map(|(_, t)| t.strip_prefix('c').unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        texts,
        (0..sent).collect::<Vec<_>>(),
        "lost, doubled or reordered"
    );
    let sockets: std::collections::BTreeSet<usize> = got.iter().map(|(i, _)| *i).collect();
    assert!(sockets.len() >= 3, "sends reached only sockets {sockets:?}");
    let log = log.lock().unwrap().clone();
    check_no_gap(
        &log,
        log.iter().filter(|s| **s == Seen::Rotated).count() as u64,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_connection_gets_one_rotated_event_per_switch() {
    let server = feed_server(None).await;
    let mgr = WsManager::new();
    let mut events = mgr.events();
    mgr.add_polled("feed", cfg(server.port).build().unwrap())
        .unwrap();
    mgr.wait_open("feed", DEADLINE).await.unwrap();
    mgr.rotate("feed").unwrap();
    let (mut rotated, mut after) = (0, 0);
    let limit = Instant::now() + DEADLINE;
    while after < 20 {
        let e = timeout(limit - Instant::now(), events.recv())
            .await
            .expect("events within the deadline")
            .expect("the stream ended");
        match e.event() {
            Event::Rotated => rotated += 1,
            Event::Text(_) if rotated > 0 => after += 1,
            Event::Error(err) => panic!("{err}"),
            _ => {}
        }
    }
    assert_eq!(rotated, 1);
    assert_eq!(mgr.stats("feed").unwrap().rotations, 1);
    mgr.shutdown().await;
}

/// A server whose first socket is a feed and whose later sockets open but never send data.
async fn silent_second_socket_server() -> Server {
    let start = Instant::now();
    Server::raw(move |tcp, i| async move {
        if i == 0 {
            feed(tcp, i, start, None).await;
        } else if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
            hold(ws).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_socket_that_sends_nothing_is_given_up_within_the_connect_timeout() {
    let server = silent_second_socket_server().await;
    let log: Log = Log::default();
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    mgr.add("feed", config, logging_hooks(&log, || {})).unwrap();
    mgr.wait_open("feed", DEADLINE).await.unwrap();
    let asked = Instant::now();
    mgr.rotate("feed").unwrap();
    eventually("the failure", || {
        log.lock()
            .unwrap()
            .iter()
            .any(|s| matches!(s, Seen::Error(_)))
    })
    .await;
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let errors: Vec<Seen> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| matches!(s, Seen::Error(_)))
        .cloned()
        .collect();
    assert!(
        matches!(&errors[..], [Seen::Error(m)] if m.contains("timed out") && m.contains("no message")),
        "{errors:?}"
    );
    let n = log.lock().unwrap().len();
    eventually("more numbers", || log.lock().unwrap().len() > n + 10).await;
    assert_eq!(mgr.stats("feed").unwrap().rotations, 0);
    assert_eq!(mgr.state("feed").unwrap(), ConnState::Open);
    mgr.close("feed", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_during_the_overlap_closes_both_sockets_at_once() {
    let server = silent_second_socket_server().await;
    let log: Log = Log::default();
    let mgr = WsManager::new();
    mgr.add(
        "feed",
        cfg(server.port).build().unwrap(),
        logging_hooks(&log, || {}),
    )
    .unwrap();
    mgr.wait_open("feed", DEADLINE).await.unwrap();
    mgr.rotate("feed").unwrap();
    eventually("the second socket", || server.accepted() == 2).await;
    let link = mgr.link("feed").unwrap();
    let t0 = Instant::now();
    within("close", mgr.close("feed", 1000, "done"))
        .await
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_eq!(link.state(), ConnState::Closed);
    assert_eq!(link.stats().rotations, 0);
    let errors: Vec<Seen> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| matches!(s, Seen::Error(_)))
        .cloned()
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// The old socket ends during the overlap with a close handshake its server began (before the
/// new socket's first message): the new socket takes over with one Rotated event and no error,
/// since a peer's close is a clean end, and it delivers what comes next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_socket_closed_by_its_peer_during_the_overlap_hands_over_without_an_error() {
    let mut server = Server::start().await;
    let rec = Recorder::new();
    let rotated = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = rotated.clone();
    let hooks = rec
        .hooks_without_frames()
        .on_rotated(move |_| _ = r.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let mgr = WsManager::new();
    let config = cfg(server.port).init_text("hello").build().unwrap();
    mgr.add("r", config, hooks).unwrap();
    let mut old = server.next_unless_connect_fails(&rec).await;
    assert_eq!(recv_data(&mut old).await, Message::text("hello"));
    mgr.wait_open("r", DEADLINE).await.unwrap();
    mgr.rotate("r").unwrap();
    let mut new = server.next_unless_connect_fails(&rec).await;
    // The new socket's init message is written by the overlap's loop: the overlap is running.
    assert_eq!(recv_data(&mut new).await, Message::text("hello"));
    let frame = CloseFrame {
        code: 1001.into(),
        reason: "maintenance".into(),
    };
    within("the server's close", old.close(Some(frame)))
        .await
        .unwrap();
    drain(&mut old).await;
    drop(old);
    eventually("the switch", || {
        rotated.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;
    new.send(Message::text("after")).await.unwrap();
    rec.wait("the new socket's message", |evs| {
        evs.contains(&Ev::Text("after".into()))
    })
    .await;
    assert_eq!(rec.errors(), vec![], "a peer's close is no error");
    assert!(
        rec.events()
            .contains(&Ev::Close(1001, "maintenance".into()))
    );
    assert_eq!(mgr.stats("r").unwrap().rotations, 1);
    assert_eq!(mgr.state("r").unwrap(), ConnState::Open);
    // The server ends the TCP connection once it answered the close, as RFC 6455 asks.
    let end = async move {
        drain(&mut new).await;
        drop(new);
    };
    let (closed, ()) = tokio::join!(mgr.close("r", 1000, "done"), end);
    closed.unwrap();
}

#[test]
fn the_maximum_age_is_off_by_default_and_checked_by_build() {
    let plain = cfg(1).build().unwrap();
    assert_eq!(plain.max_connection_age(), None);
    let day = Duration::from_secs(23 * 3600 + 50 * 60);
    let c = cfg(1).max_connection_age(day).build().unwrap();
    assert_eq!(c.max_connection_age(), Some(day));
    for bad in [Duration::ZERO, Duration::from_secs(400 * 24 * 3600)] {
        match cfg(1).max_connection_age(bad).build() {
            Err(ConnectionError::InvalidArgument(m)) => {
                assert!(m.contains("max_connection_age"), "{m}")
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_run_on_both_sockets_during_the_overlap() {
    use std::sync::atomic::Ordering::Relaxed;
    let start = Instant::now();
    let quiet = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let q = quiet.clone();
    // Socket 0: the feed (its pings counted by `feed`); later sockets: open, silent, their
    // pings counted here.
    let server = Server::raw(move |tcp, i| {
        let q = q.clone();
        async move {
            if i == 0 {
                return feed(tcp, i, start, None).await;
            }
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            let _ = timeout(Duration::from_secs(10), async {
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_ping() {
                        q.fetch_add(1, Relaxed);
                    }
                }
            })
            .await;
        }
    })
    .await;
    let log: Log = Log::default();
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .ping_interval(Duration::from_millis(100))
        .pong_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_millis(1200))
        .build()
        .unwrap();
    mgr.add("feed", config, logging_hooks(&log, || {})).unwrap();
    mgr.wait_open("feed", DEADLINE).await.unwrap();
    mgr.rotate("feed").unwrap();
    eventually("the second socket", || server.accepted() == 2).await;
    let old_before = PINGS[0].load(Relaxed);
    // The overlap lasts until the silent socket is given up (1.2 s).
    eventually("the failure", || {
        log.lock()
            .unwrap()
            .iter()
            .any(|s| matches!(s, Seen::Error(_)))
    })
    .await;
    let (old, new) = (PINGS[0].load(Relaxed) - old_before, quiet.load(Relaxed));
    assert!(
        old >= 5 && new >= 5,
        "pings during the overlap: old {old}, new {new}"
    );
    mgr.close("feed", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_changed_across_rotations_reach_every_socket_exactly_once() {
    let start = Instant::now();
    let got: Got = Got::default();
    let g = got.clone();
    let server =
        Server::raw(move |tcp, i| feed_recording(tcp, i, start, None, Some(g.clone()))).await;
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .max_connection_age(Duration::from_millis(300))
        .build()
        .unwrap();
    mgr.add("feed", config, ReadHooks::new()).unwrap();
    mgr.wait_open("feed", DEADLINE).await.unwrap();
    let link = mgr.link("feed").unwrap();
    // Adds (and every third one removed again) while the connection rotates, so that changes
    // land before, during and after overlaps.
    let mut k = 0u64;
    let until = Instant::now() + DEADLINE;
    while link.stats().rotations < 3 {
        assert!(
            Instant::now() < until,
            "no three rotations within {DEADLINE:?}"
        );
        mgr.subscribe("feed", &format!("k{k}"), Message::text(format!("sub:k{k}")))
            .unwrap();
        if k % 3 == 2 {
            let key = format!("k{}", k - 1);
            mgr.unsubscribe("feed", &key, Some(Message::text(format!("unsub:{key}"))))
                .unwrap();
        }
        k += 1;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let want: std::collections::BTreeSet<String> =
        mgr.subscriptions("feed").unwrap().into_iter().collect();
    // Let the last socket write what it was given.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let last_socket = {
        let got = got.lock().unwrap();
        got.iter().map(|(i, _)| *i).max().unwrap()
    };
    mgr.close("feed", 1000, "done").await.unwrap();
    let got = got.lock().unwrap().clone();
    let mut per_socket: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
    for (i, t) in got {
        per_socket.entry(i).or_default().push(t);
    }
    assert!(
        per_socket.len() >= 4,
        "only sockets {:?}",
        per_socket.keys()
    );
    for (i, texts) in &per_socket {
        // Per socket and key: subscribe and unsubscribe alternate, starting with subscribe.
        let mut on = std::collections::BTreeSet::new();
        for t in texts {
            if let Some(key) = t.strip_prefix("sub:") {
                assert!(
                    on.insert(key.to_string()),
                    "socket {i}: {key} subscribed twice"
                );
            } else if let Some(key) = t.strip_prefix("unsub:") {
                assert!(
                    on.remove(key),
                    "socket {i}: {key} unsubscribed while not subscribed"
                );
            }
        }
        if *i == last_socket {
            assert_eq!(
                on, want,
                "the last socket's subscriptions differ from the set"
            );
        }
    }
}
