//! Connection configuration: built once, validated once, then immutable.
//!
//! A [`Config`] is cheap to clone (it is reference counted) and never changes under a running
//! connection: a reconnect uses exactly the configuration the connection was added with.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::error::{ConnectionError, Result};

/// Defaults, chosen for an exchange market-data feed over a WAN link, and for managers that hold
/// thousands of mostly idle connections.
pub mod defaults {
    use std::time::Duration;

    /// Interval between heartbeat pings.
    pub const PING_INTERVAL: Duration = Duration::from_secs(15);
    /// How long after a ping the peer has to show it is alive.
    pub const PONG_TIMEOUT: Duration = Duration::from_secs(10);
    /// Bound on TCP connect + TLS handshake + WebSocket upgrade.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// First reconnect delay.
    pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
    /// Largest reconnect delay.
    pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
    /// A connection open this long counts as healthy: the next failure starts the backoff anew.
    pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);
    /// How long a caller-initiated close waits for the peer's close reply.
    pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
    /// Largest accepted incoming (and outgoing) message: 16 MiB holds the biggest order-book
    /// snapshots we know of while keeping a hostile peer from eating memory.
    pub const MAX_MESSAGE_SIZE: usize = 16 << 20;
    /// Largest accepted single frame.
    pub const MAX_FRAME_SIZE: usize = 16 << 20;
    /// Messages that may wait in a connection's send queue.
    pub const SEND_QUEUE_CAPACITY: usize = 1024;
    /// Largest read while a connection is busy. The buffer exists only while data keeps
    /// coming (see `burst.rs`); an idle connection holds only the
    /// small frame buffer below.
    pub const READ_BUFFER_SIZE: usize = 64 * 1024;
    /// tungstenite's own read buffer, allocated (and zero-filled) per connection.
    /// tungstenite's default is 128 KiB, which would make every idle connection large; at
    /// 4 KiB, 10,000 idle connections take about 9 KiB each.
    pub const FRAME_READ_BUFFER: usize = 4 * 1024;
    /// Outgoing bytes buffered before a write to the socket is forced (it is flushed whenever the
    /// send queue runs empty anyway).
    pub const WRITE_BUFFER_SIZE: usize = 64 * 1024;
}

/// Longest accepted duration setting (one year): far below where `Instant + Duration` overflows.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// What the heartbeat sends every [`ping_interval`](ConfigBuilder::ping_interval).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heartbeat {
    /// A WebSocket ping control frame; the round-trip time is measured from its pong.
    Ping,
    /// An application-level text message, e.g. `{"op":"ping"}`, for servers that want one.
    /// Any message from the peer then counts as the answer.
    Text(String),
}

/// A message sent after every successful connect (subscriptions, authentication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitMessage {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

/// A validated, immutable connection configuration. Create one with [`Config::builder`].
#[derive(Clone)]
pub struct Config {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    uri: Uri,
    tls: bool,
    ping_interval: Duration,
    pong_timeout: Duration,
    heartbeat: Heartbeat,
    connect_timeout: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    backoff_reset_after: Duration,
    max_reconnect_attempts: u32,
    close_timeout: Duration,
    headers: Vec<(HeaderName, HeaderValue)>,
    subprotocols: Vec<String>,
    init_messages: Vec<InitMessage>,
    ws_config: WebSocketConfig,
    send_queue_capacity: usize,
    read_buffer_size: usize,
    tls_config: Option<Arc<rustls::ClientConfig>>,
}

impl Config {
    /// Starts a configuration for `url` (`ws://` or `wss://`) with the [`defaults`].
    pub fn builder(url: impl Into<String>) -> ConfigBuilder {
        ConfigBuilder::new(url)
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.inner.url
    }
    pub(crate) fn uri(&self) -> &Uri {
        &self.inner.uri
    }
    /// Whether the URL is `wss://`.
    pub fn is_tls(&self) -> bool {
        self.inner.tls
    }
    /// Interval between heartbeats.
    pub fn ping_interval(&self) -> Duration {
        self.inner.ping_interval
    }
    /// How long after a heartbeat the peer has to answer.
    pub fn pong_timeout(&self) -> Duration {
        self.inner.pong_timeout
    }
    /// What the heartbeat sends.
    pub fn heartbeat(&self) -> &Heartbeat {
        &self.inner.heartbeat
    }
    /// Bound on connect + TLS + upgrade.
    pub fn connect_timeout(&self) -> Duration {
        self.inner.connect_timeout
    }
    /// Smallest and largest reconnect delay.
    pub fn backoff(&self) -> (Duration, Duration) {
        (self.inner.backoff_min, self.inner.backoff_max)
    }
    /// How long a connection must stay open before the backoff starts anew.
    pub fn backoff_reset_after(&self) -> Duration {
        self.inner.backoff_reset_after
    }
    /// Consecutive failed connect attempts before giving up; 0 means never give up.
    pub fn max_reconnect_attempts(&self) -> u32 {
        self.inner.max_reconnect_attempts
    }
    /// How long a caller-initiated close waits for the peer's close reply.
    pub fn close_timeout(&self) -> Duration {
        self.inner.close_timeout
    }
    /// Extra HTTP headers of the upgrade request.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.inner.headers
    }
    /// Offered subprotocols.
    pub fn subprotocols(&self) -> &[String] {
        &self.inner.subprotocols
    }
    /// Messages sent after every successful connect.
    pub fn init_messages(&self) -> &[InitMessage] {
        &self.inner.init_messages
    }
    /// Largest accepted message, in and out.
    pub fn max_message_size(&self) -> usize {
        self.inner.ws_config.max_message_size.unwrap_or(usize::MAX)
    }
    /// Capacity of the send queue.
    pub fn send_queue_capacity(&self) -> usize {
        self.inner.send_queue_capacity
    }
    /// Largest read while the connection is busy (0: no batching beyond tungstenite's buffer).
    pub(crate) fn burst_read_size(&self) -> usize {
        let n = self.inner.read_buffer_size;
        if n > defaults::FRAME_READ_BUFFER {
            n
        } else {
            0
        }
    }
    pub(crate) fn ws_config(&self) -> WebSocketConfig {
        self.inner.ws_config
    }
    pub(crate) fn tls_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.inner.tls_config.clone()
    }
}

impl fmt::Debug for Config {
    // Header values often carry secrets (API keys, cookies, bearer tokens): print names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Config")
            .field("url", &i.url)
            .field("ping_interval", &i.ping_interval)
            .field("pong_timeout", &i.pong_timeout)
            .field("heartbeat", &i.heartbeat)
            .field("connect_timeout", &i.connect_timeout)
            .field("backoff", &(i.backoff_min, i.backoff_max))
            .field("max_reconnect_attempts", &i.max_reconnect_attempts)
            .field(
                "headers",
                &i.headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("subprotocols", &i.subprotocols)
            .field("init_messages", &i.init_messages.len())
            .field("max_message_size", &i.ws_config.max_message_size)
            .field("send_queue_capacity", &i.send_queue_capacity)
            .finish_non_exhaustive()
    }
}

/// Builder for [`Config`]. Setters never fail; [`build`](Self::build) checks everything at once
/// and names the first offending field.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    url: String,
    ping_interval: Duration,
    pong_timeout: Duration,
    heartbeat: Heartbeat,
    connect_timeout: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    backoff_reset_after: Duration,
    max_reconnect_attempts: u32,
    close_timeout: Duration,
    headers: Vec<(String, Vec<u8>)>,
    subprotocols: Vec<String>,
    init_messages: Vec<InitMessage>,
    max_message_size: usize,
    max_frame_size: usize,
    send_queue_capacity: usize,
    read_buffer_size: usize,
    frame_buffer_size: usize,
    write_buffer_size: usize,
    ca_files: Vec<PathBuf>,
}

impl ConfigBuilder {
    fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ping_interval: defaults::PING_INTERVAL,
            pong_timeout: defaults::PONG_TIMEOUT,
            heartbeat: Heartbeat::Ping,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            backoff_min: defaults::BACKOFF_MIN,
            backoff_max: defaults::BACKOFF_MAX,
            backoff_reset_after: defaults::BACKOFF_RESET_AFTER,
            max_reconnect_attempts: 0,
            close_timeout: defaults::CLOSE_TIMEOUT,
            headers: Vec::new(),
            subprotocols: Vec::new(),
            init_messages: Vec::new(),
            max_message_size: defaults::MAX_MESSAGE_SIZE,
            max_frame_size: defaults::MAX_FRAME_SIZE,
            send_queue_capacity: defaults::SEND_QUEUE_CAPACITY,
            read_buffer_size: defaults::READ_BUFFER_SIZE,
            frame_buffer_size: defaults::FRAME_READ_BUFFER,
            write_buffer_size: defaults::WRITE_BUFFER_SIZE,
            ca_files: Vec::new(),
        }
    }

    /// Interval between heartbeats (default 15 s).
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.ping_interval = d;
        self
    }
    /// How long after a heartbeat the peer has to show it is alive (default 10 s).
    pub fn pong_timeout(mut self, d: Duration) -> Self {
        self.pong_timeout = d;
        self
    }
    /// What the heartbeat sends (default a WebSocket ping frame).
    pub fn heartbeat(mut self, h: Heartbeat) -> Self {
        self.heartbeat = h;
        self
    }
    /// Bound on TCP connect + TLS handshake + WebSocket upgrade (default 10 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Smallest and largest reconnect delay (default 500 ms and 30 s).
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max;
        self
    }
    /// How long a connection must stay open before its backoff starts anew (default 10 s).
    pub fn backoff_reset_after(mut self, d: Duration) -> Self {
        self.backoff_reset_after = d;
        self
    }
    /// Consecutive failed connect attempts before giving up; 0 (the default) retries forever.
    pub fn max_reconnect_attempts(mut self, n: u32) -> Self {
        self.max_reconnect_attempts = n;
        self
    }
    /// How long a caller-initiated close waits for the peer's reply (default 2 s).
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }
    /// Adds an HTTP header to the upgrade request. Its value is never logged.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// Offers a subprotocol (`Sec-WebSocket-Protocol`).
    pub fn subprotocol(mut self, p: impl Into<String>) -> Self {
        self.subprotocols.push(p.into());
        self
    }
    /// Adds a text message sent after every successful connect, in the order added.
    pub fn init_text(mut self, text: impl Into<String>) -> Self {
        self.init_messages.push(InitMessage::Text(text.into()));
        self
    }
    /// Adds a binary message sent after every successful connect, in the order added.
    pub fn init_binary(mut self, data: impl Into<Bytes>) -> Self {
        self.init_messages.push(InitMessage::Binary(data.into()));
        self
    }
    /// Largest message accepted in either direction (default 16 MiB).
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.max_message_size = n;
        self
    }
    /// Largest single incoming frame (default 16 MiB; capped at the message size).
    pub fn max_frame_size(mut self, n: usize) -> Self {
        self.max_frame_size = n;
        self
    }
    /// Capacity of the send queue (default 1024 messages).
    pub fn send_queue_capacity(mut self, n: usize) -> Self {
        self.send_queue_capacity = n;
        self
    }
    /// Largest read while the connection is busy (default 64 KiB). That buffer is allocated
    /// only while data keeps arriving faster than the hooks take it and freed when the socket
    /// runs dry; an idle connection holds only the frame buffer
    /// ([`frame_buffer_size`](Self::frame_buffer_size)). Not above the frame buffer turns
    /// batching off.
    pub fn read_buffer_size(mut self, n: usize) -> Self {
        self.read_buffer_size = n;
        self
    }
    /// tungstenite's read buffer, held by every connection for its whole life (default 4 KiB).
    /// Each read from the socket (or from the burst buffer) is at most this large: 16 KiB
    /// brings the throughput of 1 KiB messages up to raw tokio-tungstenite's, for 12 KiB more
    /// per connection.
    pub fn frame_buffer_size(mut self, n: usize) -> Self {
        self.frame_buffer_size = n;
        self
    }
    /// Outgoing bytes buffered before a socket write is forced (default 64 KiB).
    pub fn write_buffer_size(mut self, n: usize) -> Self {
        self.write_buffer_size = n;
        self
    }
    /// Trusts the CA certificates of a PEM file for `wss://`, besides the system's roots.
    pub fn add_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self
    }

    /// Checks every field and freezes the configuration.
    pub fn build(self) -> Result<Config> {
        let bad = |msg: String| Err(ConnectionError::InvalidArgument(msg));
        let (uri, tls) = parse_url(&self.url)?;
        for (what, d) in [
            ("ping_interval", self.ping_interval),
            ("pong_timeout", self.pong_timeout),
            ("connect_timeout", self.connect_timeout),
            ("reconnect backoff minimum", self.backoff_min),
            ("reconnect backoff maximum", self.backoff_max),
            ("close_timeout", self.close_timeout),
        ] {
            if d.is_zero() {
                return bad(format!("{what} must be positive"));
            }
            // Timers add these to `Instant::now()`, which panics on overflow: a "forever" such
            // as Duration::MAX must be refused here, not crash the connection task later.
            if d > MAX_DURATION {
                return bad(format!(
                    "{what} must be at most {MAX_DURATION:?} (one year)"
                ));
            }
        }
        if self.backoff_min > self.backoff_max {
            return bad(format!(
                "reconnect backoff minimum {:?} exceeds maximum {:?}",
                self.backoff_min, self.backoff_max
            ));
        }
        if self.max_message_size == 0 || self.max_frame_size == 0 {
            return bad("max message and frame size must be positive".into());
        }
        if self.send_queue_capacity == 0 {
            return bad("send_queue_capacity must be positive".into());
        }
        if self.read_buffer_size < 256 {
            return bad("read_buffer_size must be at least 256 bytes".into());
        }
        if !(256..=(64 << 20)).contains(&self.frame_buffer_size) {
            return bad("frame_buffer_size must be 256 bytes to 64 MiB".into());
        }
        if let Heartbeat::Text(t) = &self.heartbeat
            && t.is_empty()
        {
            return bad("a text heartbeat must not be empty".into());
        }
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            headers.push(validate_header(name, value)?);
        }
        for p in &self.subprotocols {
            let token_ok = !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
            if !token_ok {
                return bad(format!("subprotocol {p:?} is not a valid token"));
            }
        }
        for m in &self.init_messages {
            let len = match m {
                InitMessage::Text(t) => t.len(),
                InitMessage::Binary(b) => b.len(),
            };
            if len > self.max_message_size {
                return bad(format!(
                    "init message of {len} bytes exceeds max_message_size {}",
                    self.max_message_size
                ));
            }
        }
        let tls_config = if tls {
            Some(Arc::new(tls_client_config(&self.ca_files)?))
        } else {
            if !self.ca_files.is_empty() {
                log::warn!("CA files given for a ws:// URL are ignored");
            }
            None
        };
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(self.frame_buffer_size)
            .write_buffer_size(self.write_buffer_size)
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_frame_size.min(self.max_message_size)));
        Ok(Config {
            inner: Arc::new(Inner {
                url: self.url,
                uri,
                tls,
                ping_interval: self.ping_interval,
                pong_timeout: self.pong_timeout,
                heartbeat: self.heartbeat,
                connect_timeout: self.connect_timeout,
                backoff_min: self.backoff_min,
                backoff_max: self.backoff_max,
                backoff_reset_after: self.backoff_reset_after,
                max_reconnect_attempts: self.max_reconnect_attempts,
                close_timeout: self.close_timeout,
                headers,
                subprotocols: self.subprotocols,
                init_messages: self.init_messages,
                ws_config,
                send_queue_capacity: self.send_queue_capacity,
                read_buffer_size: self.read_buffer_size,
                tls_config,
            }),
        })
    }
}

/// Parses and checks a WebSocket URL: scheme ws/wss, a host, no credentials.
pub(crate) fn parse_url(url: &str) -> Result<(Uri, bool)> {
    let bad = |msg: &str| Err(ConnectionError::InvalidArgument(msg.to_string()));
    let uri: Uri = match url.parse() {
        Ok(u) => u,
        // The parser's message may echo the URL, which may hold a token: keep it out.
        Err(_) => return bad("URL does not parse"),
    };
    let tls = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("ws") => false,
        Some(s) if s.eq_ignore_ascii_case("wss") => true,
        _ => return bad("URL scheme must be ws:// or wss://"),
    };
    let Some(authority) = uri.authority() else {
        return bad("URL has no host");
    };
    if authority.as_str().contains('@') {
        return bad("URL must not contain credentials (user:password@); use a header instead");
    }
    if uri.host().is_none_or(str::is_empty) {
        return bad("URL has no host");
    }
    Ok((uri, tls))
}

pub(crate) fn validate_header(name: &str, value: &[u8]) -> Result<(HeaderName, HeaderValue)> {
    let name_ok = HeaderName::from_bytes(name.as_bytes());
    let Ok(hname) = name_ok else {
        return Err(ConnectionError::InvalidArgument(format!(
            "header name {name:?} is not a valid HTTP token"
        )));
    };
    // HeaderValue accepts obs-text but refuses CR, LF and NUL: exactly the injection guard needed.
    let Ok(hvalue) = HeaderValue::from_bytes(value) else {
        return Err(ConnectionError::InvalidArgument(format!(
            "value of header {name:?} contains a control character (CR, LF or NUL)"
        )));
    };
    const RESERVED: [&str; 6] = [
        "host",
        "connection",
        "upgrade",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
    ];
    if RESERVED.contains(&hname.as_str()) {
        return Err(ConnectionError::InvalidArgument(format!(
            "header {name:?} is set by the library (use subprotocol() for Sec-WebSocket-Protocol)"
        )));
    }
    let mut hvalue = hvalue;
    hvalue.set_sensitive(true);
    Ok((hname, hvalue))
}

/// The system's root certificates, loaded once per process: loading them costs milliseconds and
/// thousands of connections share them.
fn system_roots() -> &'static rustls::RootCertStore {
    static ROOTS: OnceLock<rustls::RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = rustls::RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            log::warn!("loading a system root certificate failed: {e}");
        }
        let (added, ignored) = store.add_parsable_certificates(loaded.certs);
        log::debug!("system roots: {added} loaded, {ignored} ignored");
        store
    })
}

fn tls_client_config(ca_files: &[PathBuf]) -> Result<rustls::ClientConfig> {
    let mut roots = system_roots().clone();
    for path in ca_files {
        add_ca_file(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectionError::InvalidArgument(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Checks that a CA file can be read and holds at least one usable certificate.
pub(crate) fn check_ca_file(path: &Path) -> Result<()> {
    add_ca_file(&mut rustls::RootCertStore::empty(), path)
}

fn add_ca_file(roots: &mut rustls::RootCertStore, path: &Path) -> Result<()> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |msg: String| ConnectionError::InvalidArgument(msg);
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(format!("CA file {}: {e}", path.display())))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("CA file {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(bad(format!(
            "CA file {} holds no PEM certificate",
            path.display()
        )));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| bad(format!("CA file {}: {e}", path.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build() {
        let c = Config::builder("ws://127.0.0.1:1/feed").build().unwrap();
        assert_eq!(c.ping_interval(), defaults::PING_INTERVAL);
        assert!(!c.is_tls());
    }

    #[test]
    fn refuses_bad_urls() {
        for url in [
            "",
            "http://x",
            "ws://",
            "x",
            "ws://user:pw@host/",
            "wss:///path",
        ] {
            let err = Config::builder(url).build().unwrap_err();
            assert!(
                matches!(err, ConnectionError::InvalidArgument(_)),
                "{url}: {err}"
            );
            assert!(!err.to_string().contains("pw"), "credentials leaked: {err}");
        }
    }

    #[test]
    fn refuses_bad_durations_and_backoff() {
        let b = || Config::builder("ws://h/");
        assert!(b().ping_interval(Duration::ZERO).build().is_err());
        assert!(b().pong_timeout(Duration::ZERO).build().is_err());
        assert!(
            b().reconnect_backoff(Duration::from_secs(2), Duration::from_secs(1))
                .build()
                .is_err()
        );
        assert!(b().send_queue_capacity(0).build().is_err());
    }

    #[test]
    fn refuses_header_injection() {
        let b = || Config::builder("ws://h/");
        assert!(b().header("X-Key", "a\r\nEvil: 1").build().is_err());
        assert!(b().header("X Key", "a").build().is_err());
        assert!(b().header("Host", "a").build().is_err());
        assert!(b().header("X-Key", "ok").build().is_ok());
    }

    #[test]
    fn debug_hides_header_values() {
        let c = Config::builder("ws://h/")
            .header("Authorization", "Bearer s3cret")
            .build()
            .unwrap();
        let s = format!("{c:?}");
        assert!(s.contains("authorization"));
        assert!(!s.contains("s3cret"));
    }

    #[test]
    fn missing_ca_file_is_refused() {
        let err = Config::builder("wss://h/")
            .add_ca_file("/nonexistent/ca.pem")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"));
    }
}
