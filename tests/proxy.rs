//! Connections through an HTTP `CONNECT` proxy and a SOCKS5 proxy, both small real proxies on
//! 127.0.0.1 started by the test, with and without credentials, and proxies that refuse, answer
//! garbage, close mid-handshake or never answer.

mod support;

use std::time::Duration;

use kharbranth::{ConnectionError, WsManager};
use support::*;

/// Opens `target` through `proxy_url`, echoes one message and closes.
async fn echo_through(target: String, proxy_url: String) {
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(target).proxy(proxy_url).build().unwrap();
    mgr.add("p", config, rec.hooks()).unwrap();
    // A failed connect fails the test at once instead of at the deadline.
    rec.wait_opens("the connection to open", 1, |_| false).await;
    mgr.send_text("p", "through the tunnel").unwrap();
    rec.wait("the echo", |e| {
        e.contains(&Ev::Text("through the tunnel".into()))
    })
    .await;
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    mgr.close("p", 1000, "done").await.unwrap();
}

/// Tries once through `proxy_url` and returns the first error's text.
async fn refusal(target: String, proxy_url: String) -> String {
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = cfg(target)
        .proxy(proxy_url)
        .max_reconnect_attempts(1)
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    mgr.add("p", config, rec.hooks()).unwrap();
    rec.wait("RetriesExhausted", |e| {
        e.iter()
            .any(|e| matches!(e, Ev::Error(ConnectionError::RetriesExhausted(_))))
    })
    .await;
    assert_eq!(rec.opens(), 0);
    mgr.close("p", 1000, "done").await.unwrap();
    let errors = rec.errors();
    let text = format!("{errors:?}");
    assert!(
        !text.contains(PASS) && !text.contains(PASS_ENCODED),
        "credentials leaked: {text}"
    );
    assert!(!text.contains(USER), "user name leaked: {text}");
    errors[0].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connect_proxy_with_and_without_credentials() {
    let target = echo_server().await;
    let open = TestProxy::http(ProxyMode::Tunnel { auth: false }).await;
    echo_through(
        target.url(""),
        format!("http://127.0.0.1:{}", open.server.port),
    )
    .await;
    assert_eq!(open.targets(), vec![format!("127.0.0.1:{}", target.port)]);

    let locked = TestProxy::http(ProxyMode::Tunnel { auth: true }).await;
    let port = locked.server.port;
    echo_through(
        target.url(""),
        format!("http://{USER}:{PASS_ENCODED}@127.0.0.1:{port}/"),
    )
    .await;
    let m = refusal(
        target.url(""),
        format!("http://{USER}:wrong@127.0.0.1:{port}"),
    )
    .await;
    assert!(
        m.contains("407") && m.contains("refused the credentials"),
        "{m}"
    );
    let m = refusal(target.url(""), format!("http://127.0.0.1:{port}")).await;
    assert!(m.contains("407") && m.contains("wants credentials"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_proxy_with_and_without_credentials_resolves_the_name_itself() {
    let target = echo_server().await;
    let open = TestProxy::socks5(ProxyMode::Tunnel { auth: false }).await;
    echo_through(
        format!("ws://localhost:{}/", target.port),
        format!("socks5://127.0.0.1:{}", open.server.port),
    )
    .await;
    // The client sent the name, not an address it resolved itself.
    assert_eq!(
        open.targets(),
        vec![format!("name:localhost:{}", target.port)]
    );

    let locked = TestProxy::socks5(ProxyMode::Tunnel { auth: true }).await;
    let port = locked.server.port;
    echo_through(
        target.url(""),
        format!("socks5h://{USER}:{PASS_ENCODED}@127.0.0.1:{port}"),
    )
    .await;
    let m = refusal(
        target.url(""),
        format!("socks5://{USER}:wrong@127.0.0.1:{port}"),
    )
    .await;
    assert!(m.to_lowercase().contains("auth"), "{m}");
    let m = refusal(target.url(""), format!("socks5://127.0.0.1:{port}")).await;
    assert!(m.contains("SOCKS5"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_that_misbehave_fail_the_attempt_with_a_clear_error_in_time() {
    let target = echo_server().await;
    for (kind, scheme) in [("http", "http"), ("socks5", "socks5")] {
        for (mode, want) in [
            (ProxyMode::Garbage, ""),
            (ProxyMode::CloseMidHandshake, ""),
            (ProxyMode::Silent, "longer than"),
        ] {
            let proxy = match kind {
                "http" => TestProxy::http(mode).await,
                _ => TestProxy::socks5(mode).await,
            };
            let url = format!(
                "{scheme}://{USER}:{PASS_ENCODED}@127.0.0.1:{}",
                proxy.server.port
            );
            let started = std::time::Instant::now();
            let m = refusal(target.url(""), url).await;
            assert!(
                m.contains(&format!("{scheme}://127.0.0.1")) || m.contains("longer than"),
                "{m}"
            );
            assert!(m.contains(want), "{kind}: {m}");
            // One attempt, bounded by the 500 ms connect timeout (and a generous margin).
            assert!(started.elapsed() < Duration::from_secs(5), "{kind}: {m}");
        }
    }
    // Nobody listening at the proxy's address.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let m = refusal(target.url(""), format!("http://127.0.0.1:{port}")).await;
    assert!(m.contains("TCP connect to the proxy"), "{m}");
}

#[test]
fn bad_proxy_urls_are_refused_without_echoing_credentials() {
    for (url, want) in [
        ("ftp://127.0.0.1:21", "scheme"),
        ("127.0.0.1:3128", "must start with"),
        ("http://127.0.0.1", "needs a port"),
        ("http://127.0.0.1:0", "port must be"),
        ("http://127.0.0.1:99999", "port must be"),
        ("http://127.0.0.1:3128/path", "without a path"),
        ("http://user@127.0.0.1:3128", "user:password@"),
        ("http://user:s3cr%ZZet@127.0.0.1:3128", "percent-encoded"),
        ("socks5://:s3cret@127.0.0.1:1080", "user must be"),
        ("http://:3128", "no valid host"),
    ] {
        match cfg(1u16).proxy(url).build() {
            Err(ConnectionError::InvalidArgument(m)) => {
                assert!(m.contains(want), "{url}: {m}");
                assert!(
                    !m.contains("s3cr"),
                    "{url}: the error echoes the password: {m}"
                );
            }
            other => panic!("{url}: expected InvalidArgument, got {other:?}"),
        }
    }
    let config = cfg(1u16)
        .proxy(format!("http://{USER}:{PASS_ENCODED}@[::1]:3128"))
        .build()
        .unwrap();
    let shown = format!("{config:?}");
    assert!(shown.contains("http://[::1]:3128"), "{shown}");
    assert!(
        !shown.contains(USER) && !shown.contains("p%40ss"),
        "{shown}"
    );
}
