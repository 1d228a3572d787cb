//! Dialling (src/dial/): what the upgrade request carries, which upgrade responses are
//! accepted, and what a failed connect says about its target. Each test runs against a server on
//! 127.0.0.1 that answers the upgrade by hand, so the exact bytes on the wire are the test's.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kharbranth::{ConnectionError, WsManager};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The value of the request header `name` (case-insensitive), if the request has one.
fn header<'a>(req: &'a str, name: &str) -> Option<&'a str> {
    req.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A 101 response to `req` with `extra` header lines (each ending in CRLF) before the blank line.
fn switching_protocols(req: &str, extra: &str) -> String {
    let key = header(req, "sec-websocket-key").unwrap_or_default();
    let accept = derive_accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
}

/// `total` bytes or a little more of filler header lines, each under 100 bytes.
fn filler_headers(total: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < total {
        s.push_str(&format!("X-Filler-{i}: {}\r\n", "f".repeat(64)));
        i += 1;
    }
    s
}

/// A server that records each upgrade request and answers it with `respond(request)`, followed
/// by a text frame "hello" in the same write, then holds the socket.
async fn answering(
    respond: impl Fn(&str) -> String + Send + Sync + 'static,
) -> (Server, Arc<Mutex<Vec<String>>>) {
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let (r2, respond) = (requests.clone(), Arc::new(respond));
    let server = Server::raw(move |mut tcp: TcpStream, _| {
        let (requests, respond) = (r2.clone(), respond.clone());
        async move {
            let Some(req) = read_request(&mut tcp).await else {
                return;
            };
            requests.lock().unwrap().push(req.clone());
            let mut bytes = respond(&req).into_bytes();
            // The first WebSocket bytes arrive with the head: they belong to the WebSocket.
            bytes.extend_from_slice(&frame(0x81, b"hello"));
            if tcp.write_all(&bytes).await.is_err() {
                return;
            }
            hold(server_ws(tcp).await).await;
        }
    })
    .await;
    (server, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_timeout_names_its_target_without_the_query() {
    let server = Server::raw(|tcp, _| never_answer(tcp)).await;
    let mgr = WsManager::new();
    let r = Recorder::default();
    let limit = Duration::from_millis(200);
    let c = cfg(server.url("feed/v1?token=S3CRET"))
        .connect_timeout(limit)
        .build()
        .unwrap();
    mgr.add("t", c, r.hooks_without_frames()).unwrap();
    r.wait_count("the first on_error", 1, |e| matches!(e, Ev::Error(_)))
        .await;
    let e = r.errors()[0].clone();
    let ConnectionError::Timeout(msg) = &e else {
        panic!("expected a connect timeout, got {e:?}");
    };
    let target = format!("ws://127.0.0.1:{}/feed/v1", server.port);
    assert!(msg.contains(&target), "{msg:?} does not name {target}");
    assert!(
        !msg.contains("S3CRET"),
        "the query reached the message: {msg:?}"
    );
    mgr.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offered_subprotocols_reach_the_server_in_one_header() {
    let (server, requests) =
        answering(|req| switching_protocols(req, "Sec-WebSocket-Protocol: feed.v2\r\n")).await;
    let mgr = WsManager::new();
    let r = Recorder::default();
    let c = cfg(server.url("p"))
        .subprotocol("feed.v1")
        .subprotocol("feed.v2")
        .build()
        .unwrap();
    mgr.add("p", c, r.hooks_without_frames()).unwrap();
    r.wait_opens("the connection to open", 1, |_| false).await;
    let req = requests.lock().unwrap()[0].clone();
    assert_eq!(
        header(&req, "sec-websocket-protocol"),
        Some("feed.v1, feed.v2"),
        "{req}"
    );
    mgr.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_subprotocol_header_is_sent_when_none_is_offered() {
    let (server, requests) = answering(|req| switching_protocols(req, "")).await;
    let mgr = WsManager::new();
    let r = Recorder::default();
    mgr.add(
        "n",
        cfg(server.url("n")).build().unwrap(),
        r.hooks_without_frames(),
    )
    .unwrap();
    r.wait_opens("the connection to open", 1, |_| false).await;
    let req = requests.lock().unwrap()[0].clone();
    assert_eq!(header(&req, "sec-websocket-protocol"), None, "{req}");
    mgr.shutdown().await;
    server.stop().await;
}

/// Some gateways add many headers (cookies, tracing, CORS) to the 101: up to the 16 KiB bound
/// they are read, and the WebSocket bytes sent right behind the head are not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_response_with_kilobytes_of_headers_is_accepted() {
    for size in [4 * 1024, 15 * 1024] {
        let (server, _) =
            answering(move |req| switching_protocols(req, &filler_headers(size))).await;
        let mgr = WsManager::new();
        let r = Recorder::default();
        mgr.add(
            "h",
            cfg(server.url("h")).build().unwrap(),
            r.hooks_without_frames(),
        )
        .unwrap();
        r.wait_opens(&format!("open with {size} bytes of headers"), 1, |_| false)
            .await;
        r.wait_count("the text sent behind the head", 1, |e| {
            matches!(e, Ev::Text(_))
        })
        .await;
        assert_eq!(r.texts(), ["hello"], "{size} bytes of headers");
        mgr.shutdown().await;
        server.stop().await;
    }
}

/// A peer that keeps sending a head without ever ending it is refused once the head passes
/// 16 KiB, at once and with a reason, instead of being buffered until the connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_response_head_over_16_kib_is_refused() {
    let server = Server::raw(|mut tcp, _| async move {
        let Some(req) = read_request(&mut tcp).await else {
            return;
        };
        let head = switching_protocols(&req, &filler_headers(20 * 1024));
        // Without its blank line: the head never ends. In pieces of 1000 bytes, so that the
        // client's buffer grows in steps that do not land on 16 KiB exactly.
        for piece in head.as_bytes()[..head.len() - 2].chunks(1000) {
            if tcp.write_all(piece).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        never_answer(tcp).await;
    })
    .await;
    let mgr = WsManager::new();
    let r = Recorder::default();
    // The default connect timeout (5 s) is far off: the refusal must come from the bound.
    let c = cfg(server.url("big")).build().unwrap();
    mgr.add("big", c, r.hooks_without_frames()).unwrap();
    r.wait_count("the first on_error", 1, |e| matches!(e, Ev::Error(_)))
        .await;
    let e = r.errors()[0].clone();
    assert!(
        matches!(&e, ConnectionError::ConnectFailed(m) if m.contains("oversized upgrade response")),
        "{e:?}"
    );
    assert_eq!(r.opens(), 0);
    mgr.shutdown().await;
    server.stop().await;
}

/// What the test HTTP proxy does after reading a `CONNECT`.
#[derive(Clone, Copy)]
enum ProxyAnswer {
    /// Answers with the head and then serves the WebSocket itself, as if it were the target.
    Tunnel(&'static str, usize),
    /// Writes the head and then keeps the socket open without another byte.
    Stall(&'static str, usize),
    /// Writes half a status line, then closes (FIN).
    CloseMidAnswer,
    /// Writes half a status line, then resets the connection (RST).
    ResetMidAnswer,
}

/// A one-trick HTTP proxy on 127.0.0.1 that answers every `CONNECT` as `answer` says (a status
/// line, then that many bytes of filler headers).
async fn http_proxy(answer: ProxyAnswer) -> Server {
    Server::raw(move |mut tcp, _| async move {
        let Some(req) = read_request(&mut tcp).await else {
            return;
        };
        assert!(
            req.starts_with("CONNECT target.test:80 HTTP/1.1\r\n"),
            "{req}"
        );
        match answer {
            ProxyAnswer::Tunnel(status, filler) => {
                let head = format!("{status}\r\n{}\r\n", filler_headers(filler));
                if tcp.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                if raw_upgrade(&mut tcp).await.is_none() {
                    return;
                }
                let _ = tcp.write_all(&frame(0x81, b"hello")).await;
                hold(server_ws(tcp).await).await;
            }
            ProxyAnswer::Stall(status, filler) => {
                let head = format!("{status}\r\n{}", filler_headers(filler));
                let _ = tcp.write_all(head.as_bytes()).await;
                never_answer(tcp).await;
            }
            ProxyAnswer::CloseMidAnswer => {
                let _ = tcp.write_all(b"HTTP/1.1 20").await;
                let _ = tcp.shutdown().await;
            }
            ProxyAnswer::ResetMidAnswer => {
                let _ = tcp.write_all(b"HTTP/1.1 20").await;
                // Let the bytes leave before the reset, so the client sees them and then it.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tcp.set_zero_linger();
                drop(tcp);
            }
        }
    })
    .await
}

/// One attempt at `ws://target.test/` through `proxy`; the events once it opened or failed.
async fn through(proxy: &Server) -> Recorder {
    let mgr = WsManager::new();
    let r = Recorder::default();
    let c = cfg("ws://target.test/")
        .proxy(format!("http://127.0.0.1:{}", proxy.port))
        .max_reconnect_attempts(1)
        .build()
        .unwrap();
    mgr.add("p", c, r.hooks_without_frames()).unwrap();
    r.wait("an open or a failure", |evs| {
        evs.iter().any(|e| matches!(e, Ev::Open | Ev::Error(_)))
    })
    .await;
    if r.opens() > 0 {
        r.wait_count("the text behind the upgrade", 1, |e| {
            matches!(e, Ev::Text(_))
        })
        .await;
    }
    mgr.shutdown().await;
    r
}

/// The first error of `r`'s connection, as text; panics if it opened.
fn refusal(r: &Recorder) -> String {
    assert_eq!(r.opens(), 0, "opened: {:?}", r.events());
    match r.errors().first() {
        Some(ConnectionError::ConnectFailed(m)) => m.clone(),
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_proxy_answer_with_kilobytes_of_headers_opens_the_tunnel() {
    for (status, filler) in [
        ("HTTP/1.1 200 Connection established", 4 * 1024),
        ("HTTP/1.0 200 OK", 15 * 1024),
    ] {
        let proxy = http_proxy(ProxyAnswer::Tunnel(status, filler)).await;
        let r = through(&proxy).await;
        assert_eq!(
            r.texts(),
            ["hello"],
            "{status}, {filler} bytes: {:?}",
            r.events()
        );
        proxy.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_proxy_answer_over_16_kib_is_refused_at_once() {
    let proxy = http_proxy(ProxyAnswer::Stall("HTTP/1.1 200 OK", 20 * 1024)).await;
    let m = refusal(&through(&proxy).await);
    assert!(m.contains("over 16384 bytes"), "{m}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_proxy_answer_that_is_not_an_http_status_is_refused() {
    for status in [
        "HTTP/1.1 2000 OK",
        "HTTP/1.1 2x0 OK",
        "HTTP/1.1 20 OK",
        "RTSP/1.0 200 OK",
        "HTTP/2 200 OK",
    ] {
        let proxy = http_proxy(ProxyAnswer::Tunnel(status, 0)).await;
        let m = refusal(&through(&proxy).await);
        assert!(
            m.contains("did not answer CONNECT with HTTP"),
            "{status}: {m}"
        );
        proxy.stop().await;
    }
    let proxy = http_proxy(ProxyAnswer::Tunnel("HTTP/1.1 502 Bad Gateway", 0)).await;
    let m = refusal(&through(&proxy).await);
    assert!(m.contains("refused CONNECT with 502 (proxy"), "{m}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_hangs_up_during_its_answer_is_told_apart_from_a_reset() {
    let proxy = http_proxy(ProxyAnswer::CloseMidAnswer).await;
    let m = refusal(&through(&proxy).await);
    assert!(m.contains("closed the connection during CONNECT"), "{m}");
    proxy.stop().await;
    let proxy = http_proxy(ProxyAnswer::ResetMidAnswer).await;
    let m = refusal(&through(&proxy).await);
    assert!(m.contains("reading the CONNECT answer failed"), "{m}");
    proxy.stop().await;
}

/// `head` with `{accept}` replaced by the right `Sec-WebSocket-Accept` value for `req`, and the
/// blank line that ends a head.
fn answer_with(req: &str, head: &str) -> String {
    let key = header(req, "sec-websocket-key").unwrap_or_default();
    let accept = derive_accept_key(key.as_bytes());
    format!("{}\r\n\r\n", head.replace("{accept}", &accept))
}

/// One attempt at a server answering the upgrade with `head` (see [`answer_with`]), offering
/// `subprotocols`; the events once it opened or failed.
async fn upgrade_answered_with(head: &'static str, subprotocols: &[&str]) -> Recorder {
    let (server, _) = answering(move |req| answer_with(req, head)).await;
    let mgr = WsManager::new();
    let r = Recorder::default();
    let mut c = cfg(server.url("u")).max_reconnect_attempts(1);
    for p in subprotocols {
        c = c.subprotocol(*p);
    }
    mgr.add("u", c.build().unwrap(), r.hooks_without_frames())
        .unwrap();
    r.wait("an open or a failure", |evs| {
        evs.iter().any(|e| matches!(e, Ev::Open | Ev::Error(_)))
    })
    .await;
    mgr.shutdown().await;
    server.stop().await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_responses_that_break_rfc_6455_are_refused_with_the_reason() {
    for (head, offered, want) in [
        (
            "RTSP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}",
            &[][..],
            "malformed upgrade response",
        ),
        (
            "HTTP/1.1 abc Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}",
            &[],
            "malformed upgrade response",
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}",
            &[],
            "without Upgrade/Connection headers",
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}",
            &[],
            "without Upgrade/Connection headers",
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}",
            &[],
            "without Upgrade/Connection headers",
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==",
            &[],
            "wrong Sec-WebSocket-Accept",
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: feed.v9",
            &["feed.v1"],
            "a subprotocol that was not offered",
        ),
    ] {
        let r = upgrade_answered_with(head, offered).await;
        let m = refusal(&r);
        assert!(m.contains(want), "{head:?}: {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_responses_written_differently_but_valid_are_accepted() {
    for (head, offered) in [
        // Token lists and any case, as RFC 7230 allows.
        (
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\nsec-websocket-accept: {accept}",
            &[][..],
        ),
        // The one subprotocol offered, chosen.
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: feed.v1",
            &["feed.v1"],
        ),
        // None chosen of those offered: the server speaks the default protocol.
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}",
            &["feed.v1"],
        ),
    ] {
        let r = upgrade_answered_with(head, offered).await;
        assert_eq!(r.opens(), 1, "{head:?}: {:?}", r.events());
    }
}
