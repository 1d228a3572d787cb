//! A small local WebSocket server for the C/C++/Python examples and tests (no internet needed).
//!
//! ```text
//! cargo run --release --example feed_server -- [--port 0] [--exit-after-secs 300]
//! ```
//!
//! Binds `127.0.0.1:PORT` (port 0 = any free port), prints `LISTENING <port>` as its first line
//! on stdout, then serves every client:
//! - a text or binary message is echoed back;
//! - the text `push N` is answered with N text messages `msg 1` .. `msg N`;
//! - the text `ping X` makes the server send a ping frame with payload `X`;
//! - the text `close` makes the server close the connection with 1000 "bye";
//! - the text `drop` makes the server drop the TCP connection without a close handshake;
//! - pings are answered with pongs (tungstenite does that).
//!
//! The server exits when its stdin reaches end-of-file or after `--exit-after-secs` seconds, so
//! it can never outlive the test that started it for long.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

struct Args {
    port: u16,
    exit_after: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 0,
        exit_after: Duration::from_secs(300),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |what: &str| it.next().ok_or_else(|| format!("{what} needs a value"));
        match a.as_str() {
            "--port" => {
                let v = value("--port")?;
                args.port = v.parse().map_err(|e| format!("--port {v}: {e}"))?;
            }
            "--exit-after-secs" => {
                let v = value("--exit-after-secs")?;
                let s: u64 = v
                    .parse()
                    .map_err(|e| format!("--exit-after-secs {v}: {e}"))?;
                args.exit_after = Duration::from_secs(s);
            }
            "-h" | "--help" => {
                println!("usage: feed_server [--port PORT] [--exit-after-secs S]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("feed_server: {e}");
            std::process::exit(2);
        }
    };
    // Exit at stdin EOF: the process that started the server holds the other end.
    std::thread::spawn(|| {
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    eprintln!("feed_server: stdin closed, exiting");
                    std::process::exit(0);
                }
                Ok(_) => {}
            }
        }
    });
    let exit_after = args.exit_after;
    std::thread::spawn(move || {
        std::thread::sleep(exit_after);
        eprintln!("feed_server: --exit-after-secs elapsed, exiting");
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(serve(args.port));
}

async fn serve(port: u16) {
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("feed_server: cannot bind 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    let port = listener.local_addr().expect("local address").port();
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "LISTENING {port}");
        let _ = out.flush();
    }
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                tokio::spawn(async move {
                    if let Err(e) = client(tcp, peer).await {
                        eprintln!("feed_server: {peer}: {e}");
                    }
                });
            }
            Err(e) => {
                eprintln!("feed_server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn client(tcp: TcpStream, peer: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let _ = tcp.set_nodelay(true);
    let mut ws = tokio_tungstenite::accept_async(tcp).await?;
    eprintln!("feed_server: {peer} connected");
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        match msg {
            Message::Text(t) => {
                let text = t.as_str();
                if let Some(n) = text.strip_prefix("push ") {
                    let n: u64 = n.trim().parse().map_err(|e| format!("push {n:?}: {e}"))?;
                    for i in 1..=n {
                        ws.feed(Message::text(format!("msg {i}"))).await?;
                    }
                    ws.flush().await?;
                } else if let Some(payload) = text.strip_prefix("ping ") {
                    let data = Bytes::copy_from_slice(payload.as_bytes());
                    ws.send(Message::Ping(data)).await?;
                } else if text == "close" {
                    let frame = CloseFrame {
                        code: CloseCode::Normal,
                        reason: "bye".into(),
                    };
                    ws.send(Message::Close(Some(frame))).await?;
                    // Keep reading until the client's reply ends the stream.
                } else if text == "drop" {
                    eprintln!("feed_server: {peer} dropped on request");
                    return Ok(());
                } else {
                    ws.send(Message::Text(t)).await?;
                }
            }
            Message::Binary(b) => ws.send(Message::Binary(b)).await?,
            // Pongs are queued by tungstenite itself; close replies too.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            Message::Close(_) => {}
        }
    }
    eprintln!("feed_server: {peer} disconnected");
    Ok(())
}
