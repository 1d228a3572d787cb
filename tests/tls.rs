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
    let acceptor = tls_acceptor(chain, key);
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
    within("wait_open", mgr.wait_open("tls", DEADLINE))
        .await
        .unwrap();
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
