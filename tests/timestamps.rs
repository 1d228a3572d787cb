//! Receive timestamps (issue 11 item 6): each message carries the time of the socket read that
//! completed it, on both clocks, read once per read: messages of one read share one time, a
//! message split over two reads gets the second, times never go back, and every time lies
//! between the test's own clock readings taken before the server sent and after the message
//! was seen. Off by default: then no time anywhere.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kharbranth::{Event, ReadHooks, ReceiveTime, WsManager, receive_time};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

/// The server's clock readings: before the first batch, before the second half of the split
/// message (its first half went out earlier, alone).
#[derive(Default, Debug, Clone, Copy)]
struct ServerTimes {
    first_batch: Option<ReceiveTime>,
    second_half: Option<ReceiveTime>,
}

/// A server that, once upgraded, writes ten text frames `a0`..`a9` in one write; after the test
/// says it saw them, writes the first half of frame `split` alone, then (a gap later) its
/// second half together with `b0`..`b4` and a message in two fragments, `frag` `ment` (which
/// tungstenite reads, not the wire's own frame reader), in one write. Then it holds the
/// socket.
async fn scripted() -> (Server, Arc<Notify>, Arc<Mutex<ServerTimes>>) {
    let go = Arc::new(Notify::new());
    let times: Arc<Mutex<ServerTimes>> = Arc::default();
    let (g, t) = (go.clone(), times.clone());
    let server = Server::raw(move |mut tcp, _| {
        let (go, times) = (g.clone(), t.clone());
        async move {
            raw_upgrade(&mut tcp).await;
            let batch: Vec<u8> = (0..10)
                .flat_map(|i| frame(0x81, format!("a{i}").as_bytes()))
                .collect();
            times.lock().unwrap().first_batch = Some(ReceiveTime::now());
            tcp.write_all(&batch).await.unwrap();
            within("the test's go", go.notified()).await;
            let split = frame(0x81, b"split message");
            let (head, tail) = split.split_at(5);
            tcp.write_all(head).await.unwrap();
            tcp.flush().await.unwrap();
            // A gap between the halves, so that their reads have different times (not a
            // synchronisation: the assertions hold whichever read the client makes when).
            tokio::time::sleep(Duration::from_millis(30)).await;
            let mut rest = tail.to_vec();
            for i in 0..5 {
                rest.extend(frame(0x81, format!("b{i}").as_bytes()));
            }
            rest.extend(frame(0x01, b"frag"));
            rest.extend(frame(0x80, b"ment"));
            times.lock().unwrap().second_half = Some(ReceiveTime::now());
            tcp.write_all(&rest).await.unwrap();
            hold(server_ws(tcp).await).await;
        }
    })
    .await;
    (server, go, times)
}

/// A received text with its time and the test's clock reading when it was seen.
type Seen = Arc<Mutex<Vec<(String, Option<ReceiveTime>, ReceiveTime)>>>;

/// What the script's messages must show, given what was seen and the server's readings.
fn check_script(seen: &[(String, Option<ReceiveTime>, ReceiveTime)], server: ServerTimes) {
    let names: Vec<&str> = seen.iter().map(|(t, _, _)| t.as_str()).collect();
    let mut want: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
    want.push("split message".into());
    want.extend((0..5).map(|i| format!("b{i}")));
    want.push("fragment".into());
    assert_eq!(names, want);
    let times: Vec<ReceiveTime> = seen
        .iter()
        .map(|(t, at, _)| at.unwrap_or_else(|| panic!("{t} has no receive time")))
        .collect();
    for w in times.windows(2) {
        assert!(w[1].monotonic_ns() >= w[0].monotonic_ns(), "{w:?}");
    }
    // Every time lies between the server's reading before it sent and the test's after it saw.
    let before = server.first_batch.unwrap();
    for ((text, _, seen_at), at) in seen.iter().zip(&times) {
        assert!(
            at.monotonic_ns() >= before.monotonic_ns()
                && at.monotonic_ns() <= seen_at.monotonic_ns(),
            "{text}: {at:?} not within {before:?} .. {seen_at:?}"
        );
        assert!(
            at.wall_ns() >= before.wall_ns() && at.wall_ns() <= seen_at.wall_ns(),
            "{text}: wall {at:?} not within {before:?} .. {seen_at:?}"
        );
    }
    // One write of ten frames, one read: one time for all.
    assert!(
        times[..10].iter().all(|t| *t == times[0]),
        "{:?}",
        &times[..10]
    );
    // The split message was completed by a read after its second half was sent; the frames
    // that came with that half share its read.
    let half = server.second_half.unwrap();
    assert!(
        times[10].monotonic_ns() >= half.monotonic_ns(),
        "the split message has the time of its first read: {:?} < {half:?}",
        times[10]
    );
    assert!(times[10].monotonic_ns() > times[9].monotonic_ns());
    assert!(
        times[11..].iter().all(|t| *t == times[10]),
        "{:?}",
        &times[10..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_see_the_time_of_the_read_that_completed_each_message() {
    let (server, go, server_times) = scripted().await;
    let seen: Seen = Arc::default();
    let in_open: Arc<Mutex<Vec<Option<ReceiveTime>>>> = Arc::default();
    let (s, o) = (seen.clone(), in_open.clone());
    let hooks = ReadHooks::new()
        .on_text(move |_, t| {
            s.lock()
                .unwrap()
                .push((t.as_str().to_string(), receive_time(), ReceiveTime::now()))
        })
        .on_open(move |_| o.lock().unwrap().push(receive_time()));
    let mgr = WsManager::new();
    let config = cfg(server.port).receive_timestamps(true).build().unwrap();
    mgr.add("t", config, hooks).unwrap();
    eventually("the first batch", || seen.lock().unwrap().len() == 10).await;
    go.notify_one();
    eventually("the second batch", || seen.lock().unwrap().len() == 17).await;
    check_script(&seen.lock().unwrap(), *server_times.lock().unwrap());
    assert_eq!(
        *in_open.lock().unwrap(),
        [None],
        "on_open has no receive time"
    );
    assert_eq!(
        receive_time(),
        None,
        "outside a hook there is no receive time"
    );
    mgr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_events_carry_the_receive_time_and_lifecycle_events_none() {
    let (server, go, server_times) = scripted().await;
    let mgr = WsManager::new();
    let mut events = mgr.events();
    let config = cfg(server.port).receive_timestamps(true).build().unwrap();
    mgr.add_polled("t", config).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 17 {
        let e = within("an event", events.recv())
            .await
            .expect("the stream ended");
        let now = ReceiveTime::now();
        match e.event() {
            Event::Text(t) => seen.push((t.as_str().to_string(), e.received_at(), now)),
            Event::Open => assert_eq!(e.received_at(), None, "the open event has a time"),
            other => panic!("unexpected {other:?}"),
        }
        if seen.len() == 10 {
            go.notify_one();
        }
    }
    check_script(&seen, *server_times.lock().unwrap());
    mgr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_option_no_message_has_a_time() {
    let server = echo_server().await;
    let mgr = WsManager::new();
    let seen: Arc<Mutex<Vec<Option<ReceiveTime>>>> = Arc::default();
    let s = seen.clone();
    let hooks = ReadHooks::new().on_text(move |_, _| s.lock().unwrap().push(receive_time()));
    mgr.add("h", cfg(server.port).build().unwrap(), hooks)
        .unwrap();
    let mut events = mgr.events();
    mgr.add_polled("p", cfg(server.port).build().unwrap())
        .unwrap();
    mgr.wait_open("h", DEADLINE).await.unwrap();
    mgr.wait_open("p", DEADLINE).await.unwrap();
    mgr.send_text("h", "x").unwrap();
    mgr.send_text("p", "y").unwrap();
    eventually("the echo", || seen.lock().unwrap().len() == 1).await;
    assert_eq!(*seen.lock().unwrap(), [None]);
    loop {
        let e = within("an event", events.recv())
            .await
            .expect("the stream ended");
        assert_eq!(e.received_at(), None, "{e:?}");
        if matches!(e.event(), Event::Text(_)) {
            break;
        }
    }
    mgr.shutdown().await;
}

/// A Python `websockets` server that sends 20 texts `"{i} {CLOCK_MONOTONIC ns just before
/// sending}"` 5 ms apart (Python's `time.monotonic_ns` reads the clock the library stamps
/// with).
const PY_SERVER: &str = r#"
import asyncio, time
from websockets.asyncio.server import serve

async def handler(ws):
    for i in range(20):
        await ws.send(f"{i} {time.monotonic_ns()}")
        await asyncio.sleep(0.005)
    await ws.wait_closed()

async def main():
    async with serve(handler, "127.0.0.1", 0) as server:
        print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Future()

asyncio.run(main())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_python_websockets_each_time_follows_the_servers_send_on_the_same_clock() {
    let Some(server) = PythonServer::start(
        "against_python_websockets_each_time_follows_the_servers_send_on_the_same_clock",
        PY_SERVER,
    )
    .await
    else {
        return;
    };
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let hooks = ReadHooks::new().on_text(move |_, t| {
        s.lock()
            .unwrap()
            .push((t.as_str().to_string(), receive_time(), ReceiveTime::now()))
    });
    let mgr = WsManager::new();
    let config = cfg(server.port).receive_timestamps(true).build().unwrap();
    mgr.add("py", config, hooks).unwrap();
    eventually("20 messages", || seen.lock().unwrap().len() == 20).await;
    let mut last = 0;
    for (i, (text, at, seen_at)) in seen.lock().unwrap().iter().enumerate() {
        let (n, sent) = text.split_once(' ').expect("'i t'");
        assert_eq!(n.parse::<usize>().unwrap(), i);
        let sent: u64 = sent.parse().unwrap();
        let at = at.expect("a receive time");
        assert!(
            sent <= at.monotonic_ns() && at.monotonic_ns() <= seen_at.monotonic_ns(),
            "message {i}: sent at {sent}, received at {}, seen at {}",
            at.monotonic_ns(),
            seen_at.monotonic_ns()
        );
        assert!(at.monotonic_ns() >= last);
        last = at.monotonic_ns();
    }
    mgr.shutdown().await;
}
