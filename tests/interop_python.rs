//! Interoperability with a second implementation: a Python `websockets` server (child process,
//! port 0). Skipped, with a message, when Python or the package is missing.

mod support;

use std::time::Duration;

use kharbranth::{Config, WsManager};
use support::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_server_echo_ping_and_close_codes() {
    let Some(mut server) =
        PythonServer::start("python_websockets_server_echo_ping_and_close_codes", SERVER).await
    else {
        return;
    };
    let port = server.port;

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
        server.next_line("the first close").await,
        "closed 4321 py-bye"
    );
    rec.wait_count("a reconnect", 2, |e| *e == Ev::Open).await;

    // Our close code reaches Python.
    within("close", mgr.close("py", 4000, "client-bye"))
        .await
        .unwrap();
    assert_eq!(
        server.next_line("the second close").await,
        "closed 4000 client-bye"
    );
    let unexpected: Vec<_> = rec.errors();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    drop(server);
}
