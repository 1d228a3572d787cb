//! Dialling: TCP connect, TLS handshake and the WebSocket upgrade, bounded by the connect
//! timeout, giving the [`Socket`] a connection runs over.

mod proxy;
mod upgrade;

use std::fmt;

use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::{Config, Endpoint};
use crate::error::{ConnectionError, Result};
use crate::stamped::Stamped;
use crate::transport::{Socket, Transport};

/// A host and port as people write them: IPv6 literals in brackets (`[::1]:9001`).
pub(crate) struct HostPort<'a>(pub &'a str, pub u16);

impl fmt::Display for HostPort<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let HostPort(host, port) = *self;
        if host.contains(':') {
            write!(f, "[{host}]:{port}")
        } else {
            write!(f, "{host}:{port}")
        }
    }
}

/// Scheme, host, port and path of the URL, for logs and errors: the query string may carry a
/// token, so it is left out.
pub(crate) fn describe_target(endpoint: &Endpoint) -> String {
    let scheme = if endpoint.tls { "wss" } else { "ws" };
    let (host, port) = host_port(endpoint);
    format!("{scheme}://{}{}", HostPort(host, port), endpoint.uri.path())
}

/// The host without IPv6 brackets, and the port (the scheme's default when the URL has none).
fn host_port(endpoint: &Endpoint) -> (&str, u16) {
    let uri = &endpoint.uri;
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if endpoint.tls { 443 } else { 80 });
    (host, port)
}

/// TCP connect, TLS and upgrade to `endpoint`, bounded by the connect timeout.
pub(crate) async fn connect(config: &Config, endpoint: &Endpoint, target: &str) -> Result<Socket> {
    let limit = config.connect_timeout();
    match timeout(limit, connect_unbounded(config, endpoint)).await {
        Ok(r) => r,
        Err(_) => Err(ConnectionError::Timeout(format!(
            "connecting to {target} took longer than {limit:?}"
        ))),
    }
}

async fn connect_unbounded(config: &Config, endpoint: &Endpoint) -> Result<Socket> {
    let (host, port) = host_port(endpoint);
    let addr = HostPort(host, port);
    let failed = |what: &str, e: &dyn fmt::Display| {
        ConnectionError::ConnectFailed(format!("{what} {addr}: {e}"))
    };
    let tcp = match config.proxy() {
        Some(p) => proxy::tunnel(p, host, port).await?,
        None => TcpStream::connect((host, port))
            .await
            .map_err(|e| failed("TCP connect to", &e))?,
    };
    // Feeds are latency-sensitive and writes are batched by the connection already.
    let _ = tcp.set_nodelay(true);
    let stream = match config.tls_config().filter(|_| endpoint.tls) {
        Some(tls) => {
            let server_name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| failed("TLS server name of", &e))?;
            let tls = tokio_rustls::TlsConnector::from(tls)
                .connect(server_name, tcp)
                .await
                .map_err(|e| failed("TLS handshake with", &e))?;
            Transport::Tls(Box::new(tls))
        }
        None => Transport::Plain(tcp),
    };
    // The wire batches reads itself (`wire::Input`): the reader only stamps them.
    let stream = Stamped::new(stream, config.receive_timestamps());
    upgrade::upgrade(config, &endpoint.uri, stream, &addr).await
}

#[cfg(test)]
mod tests {
    use super::HostPort;

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(HostPort("::1", 9001).to_string(), "[::1]:9001");
        assert_eq!(HostPort("127.0.0.1", 80).to_string(), "127.0.0.1:80");
        assert_eq!(
            HostPort("feed.example", 443).to_string(),
            "feed.example:443"
        );
    }
}
