//! The send rate limit, over real sockets: queued sends are written no faster than the rate,
//! all of them and in order, the queue's bound still applies, and heartbeats take permits when
//! asked to.

mod support;

use std::time::{Duration, Instant};

use kharbranth::{ConnectionError, WsManager};
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// How early a frame may arrive against its GCRA schedule: the first frame, from which the
/// schedule is counted, may itself be late by up to this (timer and scheduling jitter).
const TOLERANCE: Duration = Duration::from_millis(15);

/// Reads frames (pings included) until `n` data messages came, with their arrival times.
/// One deadline for all of them: heartbeats alone must not keep the wait going.
async fn read_timed(ws: &mut ServerWs, n: usize) -> Vec<(Message, Instant)> {
    within("the data messages at the server", async {
        let mut got = Vec::new();
        let mut data = 0;
        while data < n {
            let m = recv(ws).await;
            if m.is_text() || m.is_binary() {
                data += 1;
            }
            got.push((m, Instant::now()));
        }
        got
    })
    .await
}

/// The text messages among `got`, in order.
fn texts(got: &[(Message, Instant)]) -> Vec<String> {
    got.iter()
        .filter(|(m, _)| m.is_text())
        .map(|(m, _)| m.to_text().unwrap_or_default().to_owned())
        .collect()
}

/// The k-th frame must not arrive before (k + 1 - burst) intervals after the first.
fn assert_spaced(times: &[Instant], interval: Duration, burst: u32) {
    let first = times[0];
    for (k, t) in times.iter().enumerate() {
        let allowed = interval * (k as u32 + 1).saturating_sub(burst);
        let at = t.duration_since(first);
        assert!(
            at + TOLERANCE >= allowed,
            "frame {k} arrived {at:?} after the first, before its permit at {allowed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_sends_arrive_no_faster_than_the_rate_all_in_order_init_first() {
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    // 20 per second: one every 50 ms after a burst of 3.
    let config = cfg(server.port)
        .send_rate_limit(20, Duration::from_secs(1), 3)
        .init_text("login")
        .build()
        .unwrap();
    mgr.add("r", config, kharbranth::ReadHooks::new()).unwrap();
    let mut ws = server.next().await;
    mgr.wait_open("r", DEADLINE).await.unwrap();
    let started = Instant::now();
    for i in 0..12 {
        mgr.send_text("r", format!("m{i}")).unwrap();
    }
    let got = read_timed(&mut ws, 13).await;
    let texts = texts(&got);
    let mut want = vec!["login".to_owned()];
    want.extend((0..12).map(|i| format!("m{i}")));
    assert_eq!(
        texts, want,
        "every message, in order, the init message first"
    );
    let times: Vec<Instant> = got.iter().map(|(_, t)| *t).collect();
    assert_spaced(&times, Duration::from_millis(50), 3);
    // Sanity of the whole run: 13 frames, 3 at once, then 10 intervals of 50 ms.
    let took = times[12].duration_since(started);
    assert!(
        took < Duration::from_secs(3),
        "the limited sends took {took:?}"
    );
    mgr.close("r", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_still_refuses_sends_while_the_rate_holds_them() {
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .send_rate_limit(5, Duration::from_secs(1), 1)
        .send_queue_capacity(4)
        .build()
        .unwrap();
    mgr.add("q", config, kharbranth::ReadHooks::new()).unwrap();
    let mut ws = server.next().await;
    mgr.wait_open("q", DEADLINE).await.unwrap();
    let (mut accepted, mut full) = (Vec::new(), 0);
    for i in 0..20 {
        match mgr.send_text("q", format!("m{i}")) {
            Ok(()) => accepted.push(format!("m{i}")),
            Err(ConnectionError::QueueFull(_)) => full += 1,
            Err(e) => panic!("unexpected send error {e}"),
        }
    }
    assert!(
        full > 0,
        "20 sends at once into a queue of 4 at 5/s: none refused"
    );
    assert!(accepted.len() <= 6, "accepted {} of 20", accepted.len());
    // Everything accepted is written, in order.
    let got = read_timed(&mut ws, accepted.len()).await;
    let texts = texts(&got);
    assert_eq!(texts, accepted);
    let times: Vec<Instant> = got.iter().map(|(_, t)| *t).collect();
    assert_spaced(&times, Duration::from_millis(200), 1);
    mgr.close("q", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_writes_the_queued_messages_within_the_rate() {
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .send_rate_limit(10, Duration::from_secs(1), 1)
        .close_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    mgr.add("c", config, kharbranth::ReadHooks::new()).unwrap();
    let mut ws = server.next().await;
    mgr.wait_open("c", DEADLINE).await.unwrap();
    for i in 0..5 {
        mgr.send_text("c", format!("m{i}")).unwrap();
    }
    mgr.request_close("c", 1000, "bye").unwrap();
    let got = read_timed(&mut ws, 5).await;
    assert_eq!(texts(&got), ["m0", "m1", "m2", "m3", "m4"]);
    let times: Vec<Instant> = got.iter().map(|(_, t)| *t).collect();
    assert_spaced(&times, Duration::from_millis(100), 1);
    drop(ws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_take_permits_when_asked() {
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    // Pings fall due every 20 ms, but the limit allows one frame every 100 ms.
    let config = cfg(server.port)
        .ping_interval(Duration::from_millis(20))
        .send_rate_limit(10, Duration::from_secs(1), 1)
        .rate_limit_pings(true)
        .build()
        .unwrap();
    mgr.add("p", config, kharbranth::ReadHooks::new()).unwrap();
    let mut ws = server.next().await;
    mgr.wait_open("p", DEADLINE).await.unwrap();
    for i in 0..4 {
        mgr.send_text("p", format!("m{i}")).unwrap();
    }
    let got = read_timed(&mut ws, 4).await;
    let pings = got.iter().filter(|(m, _)| m.is_ping()).count();
    assert!(pings > 0, "no heartbeat went out: {got:?}");
    let texts = texts(&got);
    assert_eq!(texts, ["m0", "m1", "m2", "m3"]);
    let times: Vec<Instant> = got.iter().map(|(_, t)| *t).collect();
    assert_spaced(&times, Duration::from_millis(100), 1);
    mgr.close("p", 1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_counting_pings_heartbeats_pass_the_limit() {
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .ping_interval(Duration::from_millis(20))
        .send_rate_limit(1, Duration::from_secs(1), 1)
        .build()
        .unwrap();
    mgr.add("n", config, kharbranth::ReadHooks::new()).unwrap();
    let mut ws = server.next().await;
    mgr.wait_open("n", DEADLINE).await.unwrap();
    mgr.send_text("n", "a").unwrap();
    mgr.send_text("n", "b").unwrap();
    // "b" waits a second for its permit; the heartbeats meanwhile are not held.
    let got = read_timed(&mut ws, 2).await;
    let pings_between = got
        .iter()
        .skip_while(|(m, _)| !m.is_text())
        .filter(|(m, _)| m.is_ping())
        .count();
    assert!(
        pings_between >= 5,
        "heartbeats were held by the data limit: {pings_between} pings in the wait"
    );
    let gap = got[got.len() - 1].1.duration_since(
        got.iter()
            .find(|(m, _)| m.is_text())
            .map(|(_, t)| *t)
            .unwrap(),
    );
    assert!(
        gap + TOLERANCE >= Duration::from_secs(1),
        "b came {gap:?} after a"
    );
    mgr.close("n", 1000, "done").await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// The manager's connect-attempt limit: 1,000 connections dropped at once reconnect spread over
// the windows, never more than the limit in any window, and all come back.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_dropped_connections_reconnect_within_the_attempt_limit() {
    const CONNS: usize = 1000;
    const ATTEMPTS: usize = 250;
    const WINDOW: Duration = Duration::from_secs(1);
    // Accept times are taken after the dial and the accept loop's turn: the attempts of one
    // window start together, and on two shared cores the server accepts such a batch of 250
    // over up to ~100 ms, so its first accept may be late against its slot by that much.
    const JITTER: Duration = Duration::from_millis(150);
    let need_fds = 2 * CONNS as u64 + 200;
    let limit = nofile_limit();
    if limit < need_fds {
        eprintln!(
            "SKIPPED: RLIMIT_NOFILE {limit} < {need_fds}: raise it with `ulimit -n {need_fds}`"
        );
        return;
    }
    // Every socket of the first round is held until `drop_all` fires, then dropped together;
    // the reconnects are held for the rest of the test.
    let (drop_all, dropped) = tokio::sync::watch::channel(false);
    // A backlog above tokio's default 1024, so that no SYN of a window's batch is dropped
    // (and retried a second later, into the next window) while the accept loop is busy.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(4096).unwrap();
    let server = Server::serve(listener, move |tcp, i| {
        let mut dropped = dropped.clone();
        async move {
            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            if i < CONNS {
                let _ = dropped.wait_for(|d| *d).await;
                // Reset, not FIN: a server-side TIME_WAIT on loopback can catch a reconnect's
                // SYN (same port pair) and delay it by the 1 s SYN retry, which would move
                // attempts of one window into the next one and fail the count for the wrong
                // reason.
                #[allow(deprecated)]
                let _ = ws.get_ref().set_linger(Some(Duration::ZERO));
                drop(ws);
            } else {
                hold(ws).await;
            }
        }
    });
    let mgr = WsManager::new();
    let names: Vec<String> = (0..CONNS).map(|i| format!("c{i}")).collect();
    for n in &names {
        mgr.add(
            n,
            cfg(server.port).build().unwrap(),
            kharbranth::ReadHooks::new(),
        )
        .unwrap();
    }
    let all_open = |mgr: &WsManager| {
        names
            .iter()
            .all(|n| mgr.state(n).ok() == Some(kharbranth::ConnState::Open))
    };
    assert!(
        wait_until(Duration::from_secs(15), || all_open(&mgr)).await,
        "the first {CONNS} connections did not all open"
    );
    // Set at run time: the first round was not limited.
    mgr.set_connect_rate_limit(ATTEMPTS as u32, WINDOW).unwrap();
    let dropped_at = tokio::time::Instant::now();
    drop_all.send(true).unwrap();
    // Let the drops land before looking for "all open" again.
    assert!(
        wait_until(Duration::from_secs(5), || !all_open(&mgr)).await,
        "the server's drop was not seen"
    );
    assert!(
        wait_until(Duration::from_secs(15), || server.accepted() >= 2 * CONNS
            && all_open(&mgr))
        .await,
        "not all {CONNS} came back: {} reconnects accepted",
        server.accepted() - CONNS
    );
    let took = dropped_at.elapsed();
    let mut times = server.accept_times().split_off(CONNS);
    times.sort();
    let mut tightest = WINDOW * 10;
    for i in 0..times.len().saturating_sub(ATTEMPTS) {
        let span = times[i + ATTEMPTS].duration_since(times[i]);
        tightest = tightest.min(span);
        assert!(
            span + JITTER >= WINDOW,
            "{} attempts within {span:?} (limit {ATTEMPTS} per {WINDOW:?})",
            ATTEMPTS + 1
        );
    }
    // 1,000 attempts at 250 per second: the last window opens 3 s after the drop.
    assert!(
        took >= Duration::from_millis(2900),
        "all back within {took:?}: the limit did not spread them"
    );
    eprintln!(
        "{} reconnects, all open {took:?} after the drop; the tightest {} accepts spanned {tightest:?}",
        times.len(),
        ATTEMPTS + 1
    );
    mgr.shutdown().await;
}

/// One attempt per minute: a second connection's attempt waits for the next window; once the
/// limit is cleared a new connection's attempt goes at once, while the one already waiting
/// keeps its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_limit_holds_the_next_attempt_back_until_it_is_cleared() {
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    mgr.set_connect_rate_limit(1, Duration::from_secs(60))
        .unwrap();
    let port = server.port;
    let add = |name: &str| {
        mgr.add(
            name,
            cfg(port).build().unwrap(),
            kharbranth::ReadHooks::new(),
        )
        .unwrap()
    };
    add("a");
    mgr.wait_open("a", DEADLINE).await.unwrap();
    let a = server.next().await;
    add("b");
    let held = mgr.wait_open("b", Duration::from_millis(300)).await;
    assert!(matches!(held, Err(ConnectionError::Timeout(_))), "{held:?}");
    mgr.clear_connect_rate_limit();
    add("c");
    mgr.wait_open("c", DEADLINE).await.unwrap();
    let c = server.next().await;
    assert_eq!(mgr.state("b").unwrap(), kharbranth::ConnState::Connecting);
    assert_eq!(server.accepted(), 2);
    // The server answers the closes and ends both sockets, so the shutdown needs no timeout.
    let end = |mut ws: ServerWs| async move {
        drain(&mut ws).await;
    };
    tokio::join!(mgr.shutdown(), end(a), end(c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_tungstenite_writes_by_itself_are_charged_when_pings_count() {
    // The exchange counts every frame: data and pongs. It pings every 80 ms while the client
    // has 30 messages queued under a limit of 10 frames per 500 ms (burst 2): without the
    // charge for each pong, data (20/s) and pongs (12.5/s) would make about 16 frames per
    // window.
    let (messages, per, burst) = (10u32, Duration::from_millis(500), 2u32);
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    let config = cfg(server.port)
        .send_rate_limit(messages, per, burst)
        .rate_limit_pings(true)
        .build()
        .unwrap();
    mgr.add("x", config, kharbranth::ReadHooks::new()).unwrap();
    let mut ws = server.next().await;
    mgr.wait_open("x", DEADLINE).await.unwrap();
    for i in 0..30 {
        mgr.send_text("x", format!("m{i}")).unwrap();
    }
    let (frames, pings) = within("30 messages under the limit", async {
        let mut frames: Vec<(Message, Instant)> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(80));
        let mut pings = 0;
        while frames.iter().filter(|(m, _)| m.is_text()).count() < 30 {
            tokio::select! {
                _ = tick.tick() => {
                    futures_util::SinkExt::send(&mut ws, Message::Ping("x".into())).await.unwrap();
                    pings += 1;
                }
                m = recv(&mut ws) => frames.push((m, Instant::now())),
            }
        }
        (frames, pings)
    })
    .await;
    let counted: Vec<Instant> = frames
        .iter()
        .filter(|(m, _)| m.is_text() || m.is_pong())
        .map(|(_, t)| *t)
        .collect();
    let pongs = frames.iter().filter(|(m, _)| m.is_pong()).count();
    assert!(pongs >= 10, "{pongs} pongs for {pings} pings");
    assert_eq!(
        texts(&frames),
        (0..30).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    // The GCRA lets `burst` through at once, then one per interval: `messages + burst - 1` in
    // a window, and a pong written in debt at most one more. The server task reads a frame up
    // to JITTER after it arrived on a loaded machine, which can pack frames that arrived over
    // a whole window into a shorter span: frames read within `per - JITTER` of each other
    // arrived within `per`.
    const JITTER: Duration = Duration::from_millis(100);
    let most = (0..counted.len())
        .map(|i| {
            counted[i..]
                .iter()
                .take_while(|t| t.duration_since(counted[i]) < per - JITTER)
                .count()
        })
        .max()
        .unwrap();
    assert!(
        most <= (messages + burst) as usize,
        "{most} frames read within {:?} (limit {messages} per {per:?}, burst {burst})",
        per - JITTER
    );
    mgr.close("x", 1000, "done").await.unwrap();
}
