//! wss:// against a local TLS WebSocket server whose certificate is generated in the test
//! (rcgen) and trusted through `add_ca_file`; untrusted certificates are refused.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use kharbranth::{Config, ConnectionError, WsManager};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::*;

/// A certificate authority made for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    /// Writes the CA certificate as PEM to a fresh temp file.
    fn pem_file(&self) -> TempFile {
        let path = temp_path("ca.pem");
        std::fs::write(&path, self.issuer.pem()).unwrap();
        TempFile(path)
    }

    /// A server certificate chain and key for `names`, signed by this CA.
    fn leaf(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let chain = vec![cert.der().clone(), self.issuer.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (chain, key)
    }
}

/// Removes its file when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A TLS WebSocket echo server on 127.0.0.1:0 presenting `chain`.
async fn tls_echo_server(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Server {
    serve_tls_echo(tls_acceptor(chain, key)).await
}

/// A WebSocket echo server on 127.0.0.1:0 behind `acceptor`'s TLS.
async fn serve_tls_echo(acceptor: tokio_rustls::TlsAcceptor) -> Server {
    Server::raw(move |tcp, _| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            if let Ok(ws) = tokio_tungstenite::accept_async(tls).await {
                echo(ws).await;
            }
        }
    })
    .await
}

fn wss(port: u16, host: &str) -> kharbranth::ConfigBuilder {
    cfg(format!("wss://{host}:{port}/"))
        .ping_interval(Duration::from_millis(200))
        .pong_timeout(Duration::from_secs(5))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_a_ca_from_add_ca_file_connects_and_echoes() {
    let ca = Ca::new("kharbranth test CA");
    let ca_file = ca.pem_file();
    let (chain, key) = ca.leaf(&["127.0.0.1", "localhost"]);
    let server = tls_echo_server(chain, key).await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = wss(server.port, "127.0.0.1")
        .add_ca_file(&ca_file.0)
        .build()
        .unwrap();
    assert!(config.is_tls());
    mgr.add("tls", config, rec.hooks()).unwrap();
    // A failed connect fails the test at once instead of at the deadline.
    rec.wait_opens("the connection to open", 1, |_| false).await;
    mgr.send_text("tls", "over tls").unwrap();
    mgr.send_binary("tls", vec![0u8, 255]).unwrap();
    rec.wait("the echoes", |e| {
        e.contains(&Ev::Text("over tls".into())) && e.contains(&Ev::Binary(vec![0, 255]))
    })
    .await;
    // The heartbeat works over TLS too.
    eventually("a pong over TLS", || {
        mgr.stats("tls").unwrap().last_rtt.is_some()
    })
    .await;
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    mgr.close("tls", 1000, "done").await.unwrap();
}

/// Connects with one attempt and returns the errors reported.
async fn refused(config: Config) -> Vec<ConnectionError> {
    let rec = Recorder::new();
    let mgr = WsManager::new();
    mgr.add("tls", config, rec.hooks()).unwrap();
    rec.wait("RetriesExhausted", |e| {
        e.iter()
            .any(|e| matches!(e, Ev::Error(ConnectionError::RetriesExhausted(_))))
    })
    .await;
    assert_eq!(rec.opens(), 0);
    mgr.close("tls", 1000, "done").await.unwrap();
    rec.errors()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_an_untrusted_certificate_is_refused_with_a_clear_error() {
    let trusted = Ca::new("trusted CA");
    let ca_file = trusted.pem_file();
    let stranger = Ca::new("unknown CA");
    let (chain, key) = stranger.leaf(&["127.0.0.1"]);
    let server = tls_echo_server(chain, key).await;
    let config = wss(server.port, "127.0.0.1")
        .add_ca_file(&ca_file.0)
        .max_reconnect_attempts(1)
        .build()
        .unwrap();
    let errors = refused(config).await;
    match &errors[0] {
        ConnectionError::ConnectFailed(m) => {
            let m = m.to_lowercase();
            assert!(m.contains("certificate"), "unclear error: {m}");
            assert!(
                m.contains("unknownissuer") || m.contains("unknown issuer"),
                "{m}"
            );
        }
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_a_certificate_for_another_name_is_refused() {
    let ca = Ca::new("trusted CA");
    let ca_file = ca.pem_file();
    let (chain, key) = ca.leaf(&["feed.example.invalid"]);
    let server = tls_echo_server(chain, key).await;
    let config = wss(server.port, "127.0.0.1")
        .add_ca_file(&ca_file.0)
        .max_reconnect_attempts(1)
        .build()
        .unwrap();
    let errors = refused(config).await;
    match &errors[0] {
        ConnectionError::ConnectFailed(m) => {
            assert!(
                m.to_lowercase().contains("certificate"),
                "unclear error: {m}"
            )
        }
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
}

impl Ca {
    /// A client certificate and key signed by this CA, as PEM.
    fn client_pem(&self, name: &str) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A TLS WebSocket echo server that requires a client certificate signed by `client_ca`.
async fn mtls_echo_server(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: &Ca,
) -> Server {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca.issuer.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    serve_tls_echo(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_client_certificate_from_files_or_memory_connects() {
    let ca = Ca::new("server CA");
    let ca_file = ca.pem_file();
    let clients = Ca::new("client CA");
    let (chain, key) = ca.leaf(&["127.0.0.1"]);
    let server = mtls_echo_server(chain, key, &clients).await;
    let (cert_pem, key_pem) = clients.client_pem("feed client");
    let (cert_file, key_file) = (
        TempFile(temp_path("client.pem")),
        TempFile(temp_path("client.key")),
    );
    std::fs::write(&cert_file.0, &cert_pem).unwrap();
    std::fs::write(&key_file.0, &key_pem).unwrap();
    let from_files = wss(server.port, "127.0.0.1")
        .add_ca_file(&ca_file.0)
        .client_cert_files(&cert_file.0, &key_file.0)
        .build()
        .unwrap();
    let from_memory = wss(server.port, "127.0.0.1")
        .add_ca_file(&ca_file.0)
        .client_cert_pem(cert_pem.as_bytes(), key_pem.as_bytes())
        .build()
        .unwrap();
    // The key is a secret: not in the configuration's Debug output.
    let secret_line = key_pem.lines().nth(1).unwrap();
    assert!(!format!("{from_memory:?}").contains(secret_line));
    for (name, config) in [("files", from_files), ("memory", from_memory)] {
        let rec = Recorder::new();
        let mgr = WsManager::new();
        mgr.add(name, config, rec.hooks()).unwrap();
        // A failed connect fails the test at once instead of at the deadline.
        rec.wait_opens("the connection to open", 1, |_| false).await;
        mgr.send_text(name, "authenticated").unwrap();
        rec.wait("the echo", |e| {
            e.contains(&Ev::Text("authenticated".into()))
        })
        .await;
        mgr.close(name, 1000, "done").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_requires_a_client_certificate_refuses_a_client_without_one() {
    let ca = Ca::new("server CA");
    let ca_file = ca.pem_file();
    let clients = Ca::new("client CA");
    let (chain, key) = ca.leaf(&["127.0.0.1"]);
    let server = mtls_echo_server(chain, key, &clients).await;
    // No certificate, then one the server does not trust.
    let stranger = Ca::new("unknown client CA");
    let (cert_pem, key_pem) = stranger.client_pem("intruder");
    for builder in [
        wss(server.port, "127.0.0.1"),
        wss(server.port, "127.0.0.1").client_cert_pem(cert_pem.as_bytes(), key_pem.as_bytes()),
    ] {
        let config = builder
            .add_ca_file(&ca_file.0)
            .max_reconnect_attempts(1)
            .build()
            .unwrap();
        let errors = refused(config).await;
        assert!(
            errors.iter().any(|e| matches!(
                e,
                ConnectionError::ConnectFailed(_) | ConnectionError::ConnectionDropped(_)
            )),
            "{errors:?}"
        );
        // TLS 1.3: the server's verdict arrives as an alert after the client's handshake,
        // so it is reported by the WebSocket upgrade that reads it.
        let text = format!("{errors:?}").to_lowercase();
        assert!(
            text.contains("certificaterequired") || text.contains("unknownca"),
            "unclear error: {text}"
        );
    }
}

#[test]
fn a_bad_client_certificate_or_a_key_that_does_not_match_is_refused_at_build() {
    let ca = Ca::new("client CA");
    let (cert_a, _key_a) = ca.client_pem("a");
    let (_cert_b, key_b) = ca.client_pem("b");
    let url = "wss://127.0.0.1:1/";
    let message = |b: kharbranth::ConfigBuilder| match b.build() {
        Err(ConnectionError::InvalidArgument(m)) => m,
        other => panic!("expected InvalidArgument, got {other:?}"),
    };
    let m = message(Config::builder(url).client_cert_pem(cert_a.as_bytes(), key_b.as_bytes()));
    assert!(m.contains("client certificate"), "{m}");
    let secret_line = key_b.lines().nth(1).unwrap();
    assert!(
        !m.contains(secret_line),
        "the key leaked into the error: {m}"
    );
    let m = message(Config::builder(url).client_cert_pem(&b"no pem here"[..], key_b.as_bytes()));
    assert!(m.contains("client certificate"), "{m}");
    let m = message(Config::builder(url).client_cert_pem(cert_a.as_bytes(), &b"garbage"[..]));
    assert!(m.contains("client key"), "{m}");
    let m =
        message(Config::builder(url).client_cert_files("/nonexistent/c.pem", "/nonexistent/k.pem"));
    assert!(m.contains("/nonexistent/c.pem"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_through_http_and_socks5_proxies_checks_the_targets_certificate_end_to_end() {
    let ca = Ca::new("server CA");
    let ca_file = ca.pem_file();
    // A certificate for "localhost" only: the name the client checks is the target's.
    let (chain, key) = ca.leaf(&["localhost"]);
    let server = tls_echo_server(chain, key).await;
    let http = TestProxy::http(ProxyMode::Tunnel { auth: true }).await;
    let socks = TestProxy::socks5(ProxyMode::Tunnel { auth: false }).await;
    for proxy in [
        format!(
            "http://{USER}:{PASS_ENCODED}@127.0.0.1:{}",
            http.server.port
        ),
        format!("socks5://127.0.0.1:{}", socks.server.port),
    ] {
        let rec = Recorder::new();
        let mgr = WsManager::new();
        let config = wss(server.port, "localhost")
            .add_ca_file(&ca_file.0)
            .proxy(proxy)
            .build()
            .unwrap();
        mgr.add("tunnel", config, rec.hooks()).unwrap();
        // A failed connect fails the test at once instead of at the deadline.
        rec.wait_opens("the connection to open", 1, |_| false).await;
        mgr.send_text("tunnel", "tls in a tunnel").unwrap();
        rec.wait("the echo", |e| {
            e.contains(&Ev::Text("tls in a tunnel".into()))
        })
        .await;
        mgr.close("tunnel", 1000, "done").await.unwrap();
    }
    assert_eq!(http.targets(), vec![format!("localhost:{}", server.port)]);
    assert_eq!(
        socks.targets(),
        vec![format!("name:localhost:{}", server.port)]
    );
    // The same tunnel to a name the certificate does not cover is refused.
    let config = wss(server.port, "127.0.0.1")
        .add_ca_file(&ca_file.0)
        .proxy(format!("socks5://127.0.0.1:{}", socks.server.port))
        .max_reconnect_attempts(1)
        .build()
        .unwrap();
    let errors = refused(config).await;
    assert!(
        format!("{errors:?}").to_lowercase().contains("certificate"),
        "{errors:?}"
    );
}

/// A message larger than the socket buffers crosses TLS whole and in order, with no later
/// write (the heartbeat is off) to push out anything the TLS layer might still hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_the_socket_buffers_reaches_a_tls_peer_whole() {
    let ca = Ca::new("kharbranth test CA");
    let ca_file = ca.pem_file();
    let (chain, key) = ca.leaf(&["127.0.0.1"]);
    let server = tls_echo_server(chain, key).await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let config = wss(server.port, "127.0.0.1")
        .add_ca_file(&ca_file.0)
        .ping_interval(Duration::from_secs(30))
        .pong_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    mgr.add("big", config, rec.hooks_without_frames()).unwrap();
    rec.wait_opens("the TLS connection to open", 1, |_| false)
        .await;
    let big: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    mgr.send_binary("big", big.clone()).unwrap();
    rec.wait("the echo of 4 MiB", |e| {
        e.iter()
            .any(|e| matches!(e, Ev::Binary(b) if b.len() == big.len()))
    })
    .await;
    assert!(rec.events().contains(&Ev::Binary(big)), "the echo differs");
    mgr.close("big", 1000, "done").await.unwrap();
}
