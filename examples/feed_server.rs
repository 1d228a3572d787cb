//! A small local WebSocket server for the C/C++/Python examples and tests (no internet needed).
//!
//! ```text
//! cargo run --release --example feed_server -- [--port 0] [--exit-on-stdin-eof] [--exit-after-secs N]
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
//! It runs until it is interrupted (Ctrl-C, SIGTERM), so it can be started by hand, also in
//! the background. Test harnesses ask for more: `--exit-on-stdin-eof` exits when stdin reaches
//! end-of-file (the harness holds the other end of a pipe, so the server dies with it), and
//! `--exit-after-secs N` exits after N seconds even if the harness was killed.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const USAGE: &str = "usage: feed_server [--port PORT] [--exit-on-stdin-eof] [--exit-after-secs N]";

#[derive(Default)]
struct Args {
    port: u16,
    exit_on_stdin_eof: bool,
    exit_after: Option<Duration>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |what: &str| it.next().with_context(|| format!("{what} needs a value"));
        match a.as_str() {
            "--port" => {
                let v = value("--port")?;
                args.port = v.parse().with_context(|| format!("--port {v}"))?;
            }
            "--exit-on-stdin-eof" => args.exit_on_stdin_eof = true,
            "--exit-after-secs" => {
                let v = value("--exit-after-secs")?;
                let s: u64 = v
                    .parse()
                    .with_context(|| format!("--exit-after-secs {v}"))?;
                args.exit_after = Some(Duration::from_secs(s));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(args)
}

// SIGINT and SIGTERM keep their default action (the process ends), so no handler is needed;
// tokio's `signal` feature would also compile tokio, and with it the library, a second time.
fn main() -> anyhow::Result<()> {
    // A usage error gets the usage and status 2, not an error report with a backtrace.
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("feed_server: {e:#}\n{USAGE}");
        std::process::exit(2);
    });
    if args.exit_on_stdin_eof {
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
    }
    if let Some(limit) = args.exit_after {
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            eprintln!("feed_server: --exit-after-secs elapsed, exiting");
            std::process::exit(0);
        });
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(serve(args.port))
}

async fn serve(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot bind 127.0.0.1:{port}"))?;
    let port = listener.local_addr().context("local address")?.port();
    {
        // Harnesses wait for this line: a failure to write it is a failure to start.
        let mut out = std::io::stdout().lock();
        writeln!(out, "LISTENING {port}").context("stdout")?;
        out.flush().context("stdout")?;
    }
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                tokio::spawn(async move {
                    if let Err(e) = client(tcp, peer).await {
                        eprintln!("feed_server: {peer}: {e:#}");
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

async fn client(tcp: TcpStream, peer: SocketAddr) -> anyhow::Result<()> {
    let _ = tcp.set_nodelay(true);
    let mut ws = tokio_tungstenite::accept_async(tcp).await?;
    eprintln!("feed_server: {peer} connected");
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        match msg {
            Message::Text(t) => {
                let text = t.as_str();
                if let Some(n) = text.strip_prefix("push ") {
                    let n: u64 = n.trim().parse().with_context(|| format!("push {n:?}"))?;
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
