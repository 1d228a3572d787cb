//! The Rust clients: `drain` (bytes only), raw tokio-tungstenite, and kharbranth's Rust API.
//!
//! Push: count messages and bytes until the marker `END`; time from the first message to the
//! marker. Echo: one 64-byte message in flight at a time, round trip per message. Idle: open
//! `n` connections, measure VmRSS growth per connection, time to open them all, thread count.

use std::io::{Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use kharbranth::{Config, Link, Message, ReadHooks, Utf8Bytes, WsManager};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::util::{Opts, Report, kv, kv_str, percentile, proc_status, workload_name};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The runtime of the raw client: `rt=ct` (current-thread, the default) or `rt=mt` (the
/// multi-thread scheduler with one worker, as a `#[tokio::main]` user would have).
fn raw_runtime(o: &Opts) -> tokio::runtime::Runtime {
    match o.str("rt", "ct").as_str() {
        "ct" => runtime(),
        "mt" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime"),
        r => panic!("rt={r}: ct or mt"),
    }
}

/// Runs `f` on `rt`: in a spawned task (`loop=task`, the default, as kharbranth's connections
/// run) or as the future `block_on` polls itself (`loop=main`, the plain
/// `while let Some(m) = ws.next().await` in `main`).
fn run_loop<T: Send + 'static>(
    o: &Opts,
    rt: &tokio::runtime::Runtime,
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    match o.str("loop", "task").as_str() {
        "task" => rt.block_on(async { tokio::spawn(f).await.expect("client task") }),
        "main" => rt.block_on(f),
        l => panic!("loop={l}: task or main"),
    }
}

fn host_port_path(url: &str) -> (String, String) {
    let rest = url.strip_prefix("ws://").expect("a ws:// URL");
    let (hp, path) = rest.split_once('/').unwrap_or((rest, ""));
    (hp.to_string(), format!("/{path}"))
}

/// The server's ceiling: a blocking TCP client that does the upgrade by hand and then only
/// counts bytes, 16 KiB per read, until all frames and the marker have arrived.
pub fn drain(o: &Opts) {
    let url = o.str("url", "ws://127.0.0.1:9301/push/1000000/64");
    let (n, s) = (o.num("n", 1_000_000), o.num("s", 64));
    let (hp, path) = host_port_path(&url);
    let mut tcp = StdTcpStream::connect(&hp).expect("connect");
    let _ = tcp.set_nodelay(true);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {hp}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).expect("write request");
    let hdr = match s {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    let expected = n * (s + hdr) + 5;
    // 16 KiB reads by default: on loopback they measured fastest (the copy stays in cache).
    let mut buf = vec![0u8; o.opt_num("rbuf").unwrap_or(16 << 10)];
    let mut got: u64;
    let mut head = Vec::new();
    loop {
        let r = tcp.read(&mut buf).expect("read");
        assert!(r > 0, "server closed during the handshake");
        head.extend_from_slice(&buf[..r]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(head.starts_with(b"HTTP/1.1 101"), "upgrade refused");
            got = (head.len() - i - 4) as u64;
            break;
        }
    }
    // The rest through tokio (epoll), like the clients: blocking reads wake up per segment and
    // measured slower than the clients themselves.
    // Like the clients, time from the first frame byte (not from the handshake: the server may
    // still be preparing its batch).
    tcp.set_nonblocking(true).expect("nonblocking");
    let mut start = (got > 0).then(Instant::now);
    got = runtime().block_on(async {
        use tokio::io::AsyncReadExt;
        let mut tcp = tokio::net::TcpStream::from_std(tcp).expect("tokio stream");
        while got < expected {
            let r = tcp.read(&mut buf).await.expect("read");
            if r == 0 {
                break;
            }
            start.get_or_insert_with(Instant::now);
            got += r as u64;
        }
        got
    });
    let start = start.unwrap_or_else(Instant::now);
    let secs = start.elapsed().as_secs_f64();
    Report {
        client: "drain (bytes only)",
        workload: workload_name("push", s),
        msgs: n,
        bytes: n * s,
        secs,
        ok: got == expected,
        extra: vec![kv("wire_bytes", got)],
    }
    .print();
}

/// Raw tokio-tungstenite: the floor of our own stack.
pub fn tt(o: &Opts) {
    let workload = o.str("workload", "push");
    let rbuf = o.opt_num("rbuf");
    let mut cfg = WebSocketConfig::default();
    if let Some(r) = rbuf {
        cfg = cfg.read_buffer_size(r);
    }
    let rbuf_used = cfg.read_buffer_size;
    let url = o.str("url", "ws://127.0.0.1:9301/echo");
    let (n, s) = (o.num("n", 1_000_000), o.num("s", 64));
    let warmup = o.num("warmup", 1000);
    let bin = o.num("bin", 0) == 1;
    let rt = raw_runtime(o);
    let mut r = match workload.as_str() {
        "push" => run_loop(o, &rt, async move {
            let (mut ws, _) = tokio_tungstenite::connect_async_with_config(&url, Some(cfg), true)
                .await
                .expect("connect");
            let (mut count, mut bytes, mut start) = (0u64, 0u64, None);
            while let Some(m) = ws.next().await {
                let len = match m.expect("read") {
                    Message::Text(t) if t.as_str() == "END" => break,
                    Message::Binary(b) if b.as_ref() == b"END" => break,
                    Message::Text(t) => t.len(),
                    Message::Binary(b) => b.len(),
                    _ => continue,
                };
                start.get_or_insert_with(Instant::now);
                count += 1;
                bytes += len as u64;
            }
            let secs = start.map_or(0.0, |t| t.elapsed().as_secs_f64());
            let _ = ws.close(None).await;
            push_report("tokio-tungstenite", s, bin, n, count, bytes, secs)
        }),
        "echo" => run_loop(o, &rt, async move {
            let (mut ws, _) = tokio_tungstenite::connect_async_with_config(&url, Some(cfg), true)
                .await
                .expect("connect");
            let payload = Utf8Bytes::from("x".repeat(s as usize));
            let total = n + warmup;
            let mut rtts = Vec::with_capacity(total as usize);
            let start = Instant::now();
            for _ in 0..total {
                let t0 = Instant::now();
                ws.send(Message::Text(payload.clone())).await.expect("send");
                loop {
                    match ws.next().await.expect("open").expect("read") {
                        Message::Text(_) | Message::Binary(_) => break,
                        _ => continue,
                    }
                }
                rtts.push(t0.elapsed());
            }
            let secs = start.elapsed().as_secs_f64();
            let _ = ws.close(None).await;
            echo_report("tokio-tungstenite", s, n, rtts, secs)
        }),
        "idle" => rt.block_on(async {
            let before = proc_status("VmRSS");
            let opened = Arc::new(AtomicUsize::new(0));
            let failed = Arc::new(AtomicUsize::new(0));
            let start = Instant::now();
            for _ in 0..n {
                let (url, opened, failed) = (url.clone(), opened.clone(), failed.clone());
                tokio::spawn(async move {
                    match tokio_tungstenite::connect_async_with_config(&url, Some(cfg), true).await
                    {
                        Ok((mut ws, _)) => {
                            opened.fetch_add(1, Ordering::Relaxed);
                            // Being read, like a real feed connection.
                            while let Some(Ok(_)) = ws.next().await {}
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
            while opened.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < n as usize {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let open_secs = start.elapsed().as_secs_f64();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let opened = opened.load(Ordering::Relaxed) as u64;
            idle_report(
                "tokio-tungstenite",
                n,
                opened,
                before,
                open_secs,
                start.elapsed(),
            )
        }),
        w => panic!("unknown workload {w}"),
    };
    r.extra.push(kv("rbuf", rbuf_used));
    r.extra.push(kv_str("rt", &o.str("rt", "ct")));
    r.extra.push(kv_str("loop", &o.str("loop", "task")));
    r.print();
    if workload == "idle" {
        // Skip 10,000 close handshakes: the measurement is done.
        std::process::exit(0);
    }
}

/// kharbranth through its Rust API: a `WsManager`, counting `ReadHooks`.
pub fn kh(o: &Opts) {
    let workload = o.str("workload", "push");
    let url = o.str("url", "ws://127.0.0.1:9301/echo");
    let (n, s) = (o.num("n", 1_000_000), o.num("s", 64));
    let mut builder = Config::builder(url.as_str());
    let rbuf = o.opt_num("rbuf");
    if let Some(r) = rbuf {
        builder = builder.read_buffer_size(r);
    }
    // stamps=1: receive timestamps on, to measure what they cost (default off).
    let stamps = o.num("stamps", 0) == 1;
    let config = builder
        .max_message_size(64 << 20)
        .receive_timestamps(stamps)
        .build()
        .expect("config");
    let rbuf_used = rbuf.unwrap_or(kharbranth::defaults::READ_BUFFER_SIZE);
    let bin = o.num("bin", 0) == 1;
    let rt = runtime();
    let mut r = match workload.as_str() {
        "push" => rt.block_on(async {
            let mgr = WsManager::new();
            let (tx, rx) = tokio::sync::oneshot::channel::<(u64, u64, f64)>();
            let mut tx = Some(tx);
            let (mut count, mut bytes, mut start) = (0u64, 0u64, None::<Instant>);
            // One counter closure, fed by whichever hook the payload type reaches; no lock or
            // atomic per message.
            let mut on_msg = move |payload: &[u8]| {
                if payload == b"END" {
                    let secs = start.map_or(0.0, |t| t.elapsed().as_secs_f64());
                    if let Some(tx) = tx.take() {
                        let _ = tx.send((count, bytes, secs));
                    }
                    return;
                }
                start.get_or_insert_with(Instant::now);
                count += 1;
                bytes += payload.len() as u64;
            };
            // The lent hooks: the payload is not kept, so no reference to the buffer is taken.
            let hooks = if bin {
                ReadHooks::new().on_binary_ref(move |_, b: &[u8]| on_msg(b))
            } else {
                ReadHooks::new().on_text_ref(move |_, t: &str| on_msg(t.as_bytes()))
            };
            mgr.add("bench", config, hooks).expect("add");
            let (count, bytes, secs) = rx.await.expect("marker");
            let _ = mgr.close("bench", 1000, "done").await;
            push_report("kharbranth-rust", s, bin, n, count, bytes, secs)
        }),
        "echo" => rt.block_on(async {
            let mgr = WsManager::new();
            let total = n + o.num("warmup", 1000);
            let payload = Utf8Bytes::from("x".repeat(s as usize));
            let link: Arc<OnceLock<Link>> = Arc::default();
            let state = Arc::new(Mutex::new((
                Instant::now(),
                Vec::with_capacity(total as usize),
            )));
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let mut tx = Some(tx);
            let hooks = {
                let (link, state, payload) = (link.clone(), state.clone(), payload.clone());
                // The hook sends the next message itself: the path a callback user takes.
                ReadHooks::new().on_text_ref(move |_, _t| {
                    let mut st = state.lock().unwrap();
                    let rtt = st.0.elapsed();
                    st.1.push(rtt);
                    if (st.1.len() as u64) < total {
                        st.0 = Instant::now();
                        link.get()
                            .unwrap()
                            .send(Message::Text(payload.clone()))
                            .expect("send");
                    } else if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                })
            };
            mgr.add("bench", config, hooks).expect("add");
            mgr.wait_open("bench", Duration::from_secs(10))
                .await
                .expect("open");
            let l = mgr.link("bench").expect("link");
            let _ = link.set(l.clone());
            let start = Instant::now();
            state.lock().unwrap().0 = Instant::now();
            l.send(Message::Text(payload)).expect("send");
            rx.await.expect("done");
            let secs = start.elapsed().as_secs_f64();
            let rtts = std::mem::take(&mut state.lock().unwrap().1);
            let _ = mgr.close("bench", 1000, "done").await;
            echo_report("kharbranth-rust", s, n, rtts, secs)
        }),
        "idle" => rt.block_on(async {
            let before = proc_status("VmRSS");
            let mgr = WsManager::new();
            let start = Instant::now();
            for i in 0..n {
                mgr.add(&format!("c{i}"), config.clone(), ReadHooks::new())
                    .expect("add");
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut opened = 0;
            for i in 0..n {
                let left = deadline.saturating_duration_since(Instant::now());
                if mgr.wait_open(&format!("c{i}"), left).await.is_ok() {
                    opened += 1;
                }
            }
            let open_secs = start.elapsed().as_secs_f64();
            tokio::time::sleep(Duration::from_secs(1)).await;
            idle_report(
                "kharbranth-rust",
                n,
                opened,
                before,
                open_secs,
                start.elapsed(),
            )
        }),
        w => panic!("unknown workload {w}"),
    };
    r.extra.push(kv("rbuf", rbuf_used));
    r.print();
    if workload == "idle" {
        std::process::exit(0);
    }
}

/// `bin`: binary frames, reported as their own workload (`push_64B_bin`).
fn push_report(
    client: &str,
    s: u64,
    bin: bool,
    n: u64,
    count: u64,
    bytes: u64,
    secs: f64,
) -> Report<'_> {
    let kind = workload_name("push", s);
    Report {
        client,
        workload: if bin { format!("{kind}_bin") } else { kind },
        msgs: count,
        bytes,
        secs,
        ok: count == n,
        extra: vec![],
    }
}

fn echo_report(client: &str, s: u64, n: u64, rtts: Vec<Duration>, secs: f64) -> Report<'_> {
    let total = rtts.len() as u64;
    let mut measured: Vec<Duration> = rtts[(total.saturating_sub(n)) as usize..].to_vec();
    measured.sort_unstable();
    Report {
        client,
        workload: workload_name("echo", s),
        msgs: total,
        bytes: total * s,
        secs,
        ok: measured.len() as u64 == n,
        extra: vec![
            kv("p50_us", format!("{:.2}", percentile(&measured, 50.0))),
            kv("p99_us", format!("{:.2}", percentile(&measured, 99.0))),
        ],
    }
}

fn idle_report(
    client: &str,
    n: u64,
    opened: u64,
    rss_before_kib: u64,
    open_secs: f64,
    total: Duration,
) -> Report<'_> {
    let after = proc_status("VmRSS");
    let per = (after.saturating_sub(rss_before_kib)) as f64 / opened.max(1) as f64;
    Report {
        client,
        workload: "idle".into(),
        msgs: opened,
        bytes: 0,
        secs: total.as_secs_f64(),
        ok: opened == n,
        extra: vec![
            kv("conns", opened),
            kv("open_secs", format!("{open_secs:.3}")),
            kv("rss_per_conn_kib", format!("{per:.2}")),
            kv("rss_kib", after),
            kv("threads", proc_status("Threads")),
            kv_str("note", "rss delta after open + 1 s"),
        ],
    }
}
