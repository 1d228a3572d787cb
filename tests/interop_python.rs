//! Interoperability with a second implementation: a Python `websockets` server (child process,
//! port 0). Skipped, with a message, when Python or the package is missing.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kharbranth::{Config, WsManager};
use support::*;
use tokio::sync::mpsc;

const SERVER: &str = r#"
import asyncio
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

async def handler(ws):
    try:
        async for msg in ws:
            if msg == "ping-me":
                waiter = await ws.ping(b"py-ping")
                await asyncio.wait_for(waiter, 10)
                await ws.send("pong-received")
            elif msg == "close-me":
                await ws.close(4321, "py-bye")
            else:
                await ws.send(msg)
    except ConnectionClosed:
        pass
    finally:
        print(f"closed {ws.close_code} {ws.close_reason}", flush=True)

async def main():
    async with serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
        print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Future()

asyncio.run(main())
"#;

/// Kills and reaps the child in every case, also when the test fails.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python_websockets_available() -> bool {
    Command::new("python3")
        .args(["-c", "import websockets.asyncio.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

async fn next_line(lines: &mut mpsc::UnboundedReceiver<String>, what: &str) -> String {
    // Python may start slowly on a loaded machine.
    match tokio::time::timeout(Duration::from_secs(30), lines.recv()).await {
        Ok(Some(l)) => l,
        Ok(None) => panic!("the Python server exited while waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what} from the Python server"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_server_echo_ping_and_close_codes() {
    if !python_websockets_available() {
        eprintln!(
            "SKIPPED python_websockets_server_echo_ping_and_close_codes: \
             `python3 -c \"import websockets\"` failed (run scripts/deps.sh)"
        );
        return;
    }
    let mut child = KillOnDrop(
        Command::new("python3")
            .args(["-u", "-c", SERVER])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 starts"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, mut lines) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = next_line(&mut lines, "the port").await;
    let port: u16 = first
        .strip_prefix("port ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));

    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = Config::builder(format!("ws://127.0.0.1:{port}/"))
        .ping_interval(Duration::from_millis(100))
        .pong_timeout(Duration::from_secs(5))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .unwrap();
    mgr.add("py", config, rec.hooks()).unwrap();
    within("wait_open", mgr.wait_open("py", DEADLINE))
        .await
        .unwrap();

    // Echo, text and binary.
    mgr.send_text("py", "hello py ✓").unwrap();
    mgr.send_binary("py", vec![0u8, 1, 254, 255]).unwrap();
    rec.wait("the echoes", |e| {
        e.contains(&Ev::Text("hello py ✓".into())) && e.contains(&Ev::Binary(vec![0, 1, 254, 255]))
    })
    .await;

    // Our heartbeat pings are answered by Python.
    eventually("a round-trip time from Python's pong", || {
        mgr.stats("py").unwrap().last_rtt.is_some()
    })
    .await;

    // A ping from Python reaches on_ping and Python sees our pong.
    mgr.send_text("py", "ping-me").unwrap();
    rec.wait("Python to see the pong", |e| {
        e.contains(&Ev::Text("pong-received".into()))
    })
    .await;
    assert!(rec.events().contains(&Ev::Frame(9, b"py-ping".to_vec())));
    assert!(rec.events().contains(&Ev::Ping(b"py-ping".to_vec())));

    // A close from Python: code and reason reach on_close, then the client reconnects.
    mgr.send_text("py", "close-me").unwrap();
    rec.wait("on_close", |e| {
        e.contains(&Ev::Close(4321, "py-bye".into()))
    })
    .await;
    assert_eq!(
        next_line(&mut lines, "the first close").await,
        "closed 4321 py-bye"
    );
    rec.wait_count("a reconnect", 2, |e| *e == Ev::Open).await;

    // Our close code reaches Python.
    within("close", mgr.close("py", 4000, "client-bye"))
        .await
        .unwrap();
    assert_eq!(
        next_line(&mut lines, "the second close").await,
        "closed 4000 client-bye"
    );
    let unexpected: Vec<_> = rec.errors();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    drop(child);
}
