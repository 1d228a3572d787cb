//! Connection configuration: built once, validated once, then immutable.
//!
//! A [`Config`] is cheap to clone (it is reference counted) and never changes under a running
//! connection: a reconnect uses exactly the configuration the connection was added with. The
//! rules [`ConfigBuilder::build`] checks live in `limits`, shared with the C setters; the TLS
//! setup lives in `tls`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::error::{ConnectionError, Result};
use crate::limits::{self, BufferSetting, DurationSetting};

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
    /// coming, and grows to this from 64 KiB only while the socket fills every read (see
    /// `wire.rs`); an idle connection holds only the small frame buffer below.
    pub const READ_BUFFER_SIZE: usize = 1024 * 1024;
    /// tungstenite's own read buffer, allocated (and zero-filled) per connection.
    /// tungstenite's default is 128 KiB, which would make every idle connection large; at
    /// 4 KiB, 10,000 idle connections take about 9 KiB each.
    pub const FRAME_READ_BUFFER: usize = 4 * 1024;
    /// Outgoing bytes buffered before a write to the socket is forced (it is flushed whenever the
    /// send queue runs empty anyway).
    pub const WRITE_BUFFER_SIZE: usize = 64 * 1024;
}

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
    /// The settings as checked by `build` (without the raw headers, which `headers` holds).
    set: ConfigBuilder,
    /// The URLs, checked: the main one first, then the fallbacks in the order added.
    endpoints: Vec<Endpoint>,
    headers: Vec<(HeaderName, HeaderValue)>,
    ws_config: WebSocketConfig,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    proxy: Option<Proxy>,
}

/// One URL a connection may dial.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) uri: Uri,
    /// `wss://`.
    pub(crate) tls: bool,
}

impl Config {
    /// Starts a configuration for `url` (`ws://` or `wss://`, no credentials, a port if any of
    /// 1..=65535) with the [`defaults`]. The URL is checked by [`build`](ConfigBuilder::build).
    pub fn builder(url: impl Into<String>) -> ConfigBuilder {
        ConfigBuilder::new(url)
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.inner.set.url
    }
    #[cfg(test)]
    pub(crate) fn uri(&self) -> &Uri {
        &self.inner.endpoints[0].uri
    }
    /// Whether the URL is `wss://`.
    pub fn is_tls(&self) -> bool {
        self.inner.endpoints[0].tls
    }
    /// Interval between heartbeats.
    pub fn ping_interval(&self) -> Duration {
        self.inner.set.ping_interval
    }
    /// How long after a heartbeat the peer has to answer.
    pub fn pong_timeout(&self) -> Duration {
        self.inner.set.pong_timeout
    }
    /// What the heartbeat sends.
    pub fn heartbeat(&self) -> &Heartbeat {
        &self.inner.set.heartbeat
    }
    /// Bound on connect + TLS + upgrade.
    pub fn connect_timeout(&self) -> Duration {
        self.inner.set.connect_timeout
    }
    /// Smallest and largest reconnect delay.
    pub fn backoff(&self) -> (Duration, Duration) {
        (self.inner.set.backoff_min, self.inner.set.backoff_max)
    }
    /// How long a connection must stay open before the backoff starts anew.
    pub fn backoff_reset_after(&self) -> Duration {
        self.inner.set.backoff_reset_after
    }
    /// Consecutive failed connect attempts before giving up; 0 means never give up.
    pub fn max_reconnect_attempts(&self) -> u32 {
        self.inner.set.max_reconnect_attempts
    }
    /// Age at which a socket is rotated, if any (see
    /// [`ConfigBuilder::max_connection_age`]).
    pub fn max_connection_age(&self) -> Option<Duration> {
        self.inner.set.max_connection_age
    }
    /// How long a caller-initiated close waits for the peer's close reply.
    pub fn close_timeout(&self) -> Duration {
        self.inner.set.close_timeout
    }
    /// Extra HTTP headers of the upgrade request.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.inner.headers
    }
    /// Offered subprotocols.
    pub fn subprotocols(&self) -> &[String] {
        &self.inner.set.subprotocols
    }
    /// Messages sent after every successful connect.
    pub fn init_messages(&self) -> &[InitMessage] {
        &self.inner.set.init_messages
    }
    /// Largest accepted message, in and out.
    pub fn max_message_size(&self) -> usize {
        self.inner.ws_config.max_message_size.unwrap_or(usize::MAX)
    }
    /// Capacity of the send queue.
    pub fn send_queue_capacity(&self) -> usize {
        self.inner.set.send_queue_capacity
    }
    /// Largest read while the connection is busy (0: no batching beyond tungstenite's buffer).
    pub(crate) fn burst_read_size(&self) -> usize {
        let n = self.inner.set.read_buffer_size;
        // Against the frame buffer configured, not the default: reads of at most its size
        // gain nothing from a burst buffer.
        if n > self.inner.set.frame_buffer_size {
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

    /// How many URLs each attempt may dial: the main one, then the fallbacks.
    pub(crate) fn endpoint_count(&self) -> usize {
        self.inner.endpoints.len()
    }

    /// The `i`-th URL to dial (0: the main one), `i` < [`endpoint_count`](Self::endpoint_count).
    pub(crate) fn endpoint(&self, i: usize) -> Endpoint {
        self.inner.endpoints[i.min(self.inner.endpoints.len() - 1)].clone()
    }

    /// The data watchdog's period, if it is on.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.inner.set.idle_timeout
    }
    /// How received binary messages are inflated, if at all.
    pub fn inflate(&self) -> Option<Compression> {
        self.inner.set.inflate
    }

    /// The proxy connections are tunnelled through, if any.
    /// The send rate limit: messages, per, burst (see
    /// [`ConfigBuilder::send_rate_limit`]); `None`: no limit.
    pub fn send_rate_limit(&self) -> Option<(u32, Duration, u32)> {
        self.inner.set.send_rate
    }
    /// Whether heartbeats take a permit of the send rate limit.
    pub fn rate_limit_pings(&self) -> bool {
        self.inner.set.rate_limit_pings
    }
    /// Whether received messages carry their receive time (see
    /// [`ConfigBuilder::receive_timestamps`]).
    pub fn receive_timestamps(&self) -> bool {
        self.inner.set.receive_timestamps
    }
    /// The checked send rate limit, for the session.
    pub(crate) fn send_rate(&self) -> Option<crate::ratelimit::Rate> {
        self.inner
            .set
            .send_rate
            .map(|(messages, per, burst)| crate::ratelimit::Rate {
                messages,
                per,
                burst,
            })
    }
    pub(crate) fn proxy(&self) -> Option<&Proxy> {
        self.inner.proxy.as_ref()
    }
}

/// The URL without its query, which may carry a token.
fn without_query(url: &str) -> &str {
    url.split('?').next().unwrap_or_default()
}

impl fmt::Debug for Config {
    // Header values often carry secrets (API keys, cookies, bearer tokens): print names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (i, s) = (&self.inner, &self.inner.set);
        f.debug_struct("Config")
            .field("url", &without_query(&s.url))
            .field("ping_interval", &s.ping_interval)
            .field("pong_timeout", &s.pong_timeout)
            .field("heartbeat", &s.heartbeat)
            .field("connect_timeout", &s.connect_timeout)
            .field("backoff", &(s.backoff_min, s.backoff_max))
            .field("max_reconnect_attempts", &s.max_reconnect_attempts)
            .field(
                "headers",
                &i.headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("subprotocols", &s.subprotocols)
            .field("init_messages", &s.init_messages.len())
            .field("max_message_size", &i.ws_config.max_message_size)
            .field("send_queue_capacity", &s.send_queue_capacity)
            .field("proxy", &i.proxy)
            .field("fallback_urls", &(i.endpoints.len() - 1))
            .field("idle_timeout", &s.idle_timeout)
            .field("inflate", &s.inflate)
            .finish_non_exhaustive()
    }
}

/// Builder for [`Config`]. Setters never fail; [`build`](Self::build) checks everything at once
/// and names the first offending field.
#[derive(Clone)]
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
    client_cert: Option<ClientCert>,
    proxy: Option<String>,
    fallback_urls: Vec<String>,
    send_rate: Option<(u32, Duration, u32)>,
    rate_limit_pings: bool,
    max_connection_age: Option<Duration>,
    idle_timeout: Option<Duration>,
    inflate: Option<Compression>,
    receive_timestamps: bool,
}

/// How received binary messages are compressed, for [`ConfigBuilder::inflate`]. Text messages
/// are never inflated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// gzip (RFC 1952): header, raw deflate, CRC-32 and size trailer (both checked).
    Gzip,
    /// zlib (RFC 1950): two-byte header, deflate, Adler-32 trailer (checked).
    Zlib,
    /// Raw deflate (RFC 1951) without header or trailer.
    Deflate,
    /// gzip or zlib, told apart by their headers; a binary message that starts with neither
    /// header is delivered as it came (for feeds that compress only some messages).
    Auto,
}

/// Which protocol the proxy speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProxyKind {
    /// An HTTP proxy that opens tunnels with `CONNECT`.
    Http,
    /// A SOCKS5 proxy; the target's host name is resolved by the proxy.
    Socks5,
}

/// A proxy as checked by the configuration: where it is and how to log in.
#[derive(Clone)]
pub(crate) struct Proxy {
    /// HTTP or SOCKS5.
    pub(crate) kind: ProxyKind,
    /// Host name or IP address (IPv6 without brackets).
    pub(crate) host: String,
    /// Port, given explicitly in the URL.
    pub(crate) port: u16,
    /// Username and password, percent-decoded.
    pub(crate) auth: Option<(String, String)>,
}

/// `http://proxy:3128`, never the credentials: what logs and errors say.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            ProxyKind::Http => "http",
            ProxyKind::Socks5 => "socks5",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proxy({self}")?;
        if self.auth.is_some() {
            f.write_str(", with credentials")?;
        }
        f.write_str(")")
    }
}

/// A client certificate chain and its private key for mutual TLS, as given to the builder.
/// The key is a secret: it is never printed, logged or put in an error message.
#[derive(Clone)]
pub(crate) enum ClientCert {
    /// PEM files, read when the configuration is built.
    Files {
        /// The certificate chain, leaf first.
        chain: PathBuf,
        /// The private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// PEM held in memory.
    Pem {
        /// The certificate chain, leaf first.
        chain: Vec<u8>,
        /// The private key.
        key: Vec<u8>,
    },
}

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientCert::Files { chain, .. } => write!(f, "ClientCert::Files({})", chain.display()),
            ClientCert::Pem { .. } => f.write_str("ClientCert::Pem"),
        }
    }
}

impl fmt::Debug for ConfigBuilder {
    // Like Config's: no header value, no query string, no init message content.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigBuilder")
            .field("url", &without_query(&self.url))
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("init_messages", &self.init_messages.len())
            .finish_non_exhaustive()
    }
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
            client_cert: None,
            proxy: None,
            fallback_urls: Vec::new(),
            max_connection_age: None,
            idle_timeout: None,
            inflate: None,
            send_rate: None,
            rate_limit_pings: false,
            receive_timestamps: false,
        }
    }

    /// Data watchdog: when no data message (text or binary) arrives for this long, the
    /// connection fails with [`IdleTimeout`](crate::ConnectionError::IdleTimeout) and
    /// reconnects, even while the peer answers pings (default off; 1 ms to one year).
    /// Checked once per period against the count of data messages, not per message, so a
    /// silence is detected between `d` and `2 * d` after the last data message. Time during
    /// which reads wait for room in a polled connection's event queue does not count as
    /// silence: the watch starts a new period when reads resume.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = Some(d);
        self
    }
    /// Inflates every received binary message compressed as `c` before it is delivered
    /// (default off: binary messages are delivered as they came). The maximum message size
    /// applies to the inflated size: inflating stops at the limit. A message that cannot be
    /// inflated (corrupt, truncated, or larger than the limit once inflated) is not delivered;
    /// it is reported to `on_error` as [`InflateFailed`](crate::ConnectionError::InflateFailed)
    /// and the connection goes on with the next message.
    pub fn inflate(mut self, c: Compression) -> Self {
        self.inflate = Some(c);
        self
    }
    /// Like [`inflate`](Self::inflate); `None` turns inflating off again (for the C setter).
    pub(crate) fn set_inflate(mut self, c: Option<Compression>) -> Self {
        self.inflate = c;
        self
    }

    /// Interval between heartbeats (default 15 s; 1 ms to one year).
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.ping_interval = d;
        self
    }
    /// How long after a heartbeat the peer has to show it is alive (default 10 s; 1 ms to one
    /// year).
    pub fn pong_timeout(mut self, d: Duration) -> Self {
        self.pong_timeout = d;
        self
    }
    /// What the heartbeat sends (default a WebSocket ping frame; a text heartbeat must not be
    /// empty).
    pub fn heartbeat(mut self, h: Heartbeat) -> Self {
        self.heartbeat = h;
        self
    }
    /// Bound on TCP connect + TLS handshake + WebSocket upgrade (default 10 s; 1 ms to one year).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Smallest and largest reconnect delay (default 500 ms and 30 s; 1 ms <= min <= max <= one
    /// year).
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
    /// Rotates every socket once it has been open this long (default: never; 1 ms to one
    /// year): the same as a [`Link::rotate`](crate::Link::rotate) at that age, for servers that
    /// cut connections after a fixed time (for 24 h, e.g. 23 h 50 min). A failed rotation is
    /// tried again after the largest reconnect delay, on the old socket, which keeps running.
    pub fn max_connection_age(mut self, d: Duration) -> Self {
        self.max_connection_age = Some(d);
        self
    }
    /// Back to the default: no rotation by age (the C setter's 0).
    pub(crate) fn no_max_connection_age(mut self) -> Self {
        self.max_connection_age = None;
        self
    }
    /// Consecutive failed connect attempts before giving up; 0 (the default) retries forever.
    pub fn max_reconnect_attempts(mut self, n: u32) -> Self {
        self.max_reconnect_attempts = n;
        self
    }
    /// How long a caller-initiated close waits for the peer's reply (default 2 s; 1 ms to one
    /// year).
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }
    /// Adds an HTTP header to the upgrade request. Its value is never logged. The name must be an
    /// HTTP token other than Host, Connection, Upgrade and Sec-WebSocket-*; the value must not
    /// contain CR, LF or NUL.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// Offers a subprotocol (`Sec-WebSocket-Protocol`; an HTTP token).
    pub fn subprotocol(mut self, p: impl Into<String>) -> Self {
        self.subprotocols.push(p.into());
        self
    }
    /// Adds a text message sent after every successful connect, in the order added (at most
    /// [`max_message_size`](Self::max_message_size) bytes).
    pub fn init_text(mut self, text: impl Into<String>) -> Self {
        self.init_messages.push(InitMessage::Text(text.into()));
        self
    }
    /// Adds a binary message sent after every successful connect, in the order added (at most
    /// [`max_message_size`](Self::max_message_size) bytes).
    pub fn init_binary(mut self, data: impl Into<Bytes>) -> Self {
        self.init_messages.push(InitMessage::Binary(data.into()));
        self
    }
    /// Largest message accepted in either direction (default 16 MiB; positive).
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.max_message_size = n;
        self
    }
    /// Largest single incoming frame (default 16 MiB; positive; capped at the message size).
    pub fn max_frame_size(mut self, n: usize) -> Self {
        self.max_frame_size = n;
        self
    }
    /// Capacity of the send queue (default 1024 messages; 1 to 16777216).
    pub fn send_queue_capacity(mut self, n: usize) -> Self {
        self.send_queue_capacity = n;
        self
    }
    /// Largest read while the connection is busy (default 1 MiB; 256 bytes to 64 MiB): reads
    /// start at 64 KiB (or this, when smaller) and double while the socket fills them. That buffer is allocated
    /// only while data keeps arriving faster than the hooks take it and freed when the socket
    /// runs dry; an idle connection holds only the frame buffer
    /// ([`frame_buffer_size`](Self::frame_buffer_size)). Not above the frame buffer turns
    /// batching off.
    pub fn read_buffer_size(mut self, n: usize) -> Self {
        self.read_buffer_size = n;
        self
    }
    /// tungstenite's read buffer, held by every connection for its whole life (default 4 KiB;
    /// 256 bytes to 64 MiB).
    /// Each read from the socket (or from the burst buffer) is at most this large: 16 KiB
    /// brings the throughput of 1 KiB messages up to raw tokio-tungstenite's, for 12 KiB more
    /// per connection.
    pub fn frame_buffer_size(mut self, n: usize) -> Self {
        self.frame_buffer_size = n;
        self
    }
    /// Outgoing bytes buffered before a socket write is forced (default 64 KiB; 0, which writes
    /// every message at once, to 64 MiB).
    pub fn write_buffer_size(mut self, n: usize) -> Self {
        self.write_buffer_size = n;
        self
    }
    /// Trusts the CA certificates of a PEM file for `wss://`, besides the system's roots.
    pub fn add_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self
    }

    /// Authenticates to `wss://` servers with a client certificate (mutual TLS): `chain` is a
    /// PEM file with the certificate chain, leaf first, `key` a PEM file with its private key
    /// (PKCS#8, PKCS#1 or SEC1). Both are read, and checked to belong together, by
    /// [`build`](Self::build). Replaces an earlier client certificate. The key is never
    /// logged or put in an error message.
    pub fn client_cert_files(mut self, chain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some(ClientCert::Files {
            chain: chain.into(),
            key: key.into(),
        });
        self
    }

    /// Adds a URL to dial when the ones before it fail to connect (another region, a backup
    /// port): each attempt tries the main URL, then the fallbacks in the order added, and only
    /// a round in which every URL failed counts as a failed attempt and waits for the backoff.
    /// Each failure is reported to `on_error`; [`Stats::endpoint`](crate::Stats) says which URL
    /// the open connection uses. Checked like the main URL by [`build`](Self::build).
    pub fn fallback_url(mut self, url: impl Into<String>) -> Self {
        self.fallback_urls.push(url.into());
        self
    }

    /// Limits the data messages written on each socket to `messages` per `per`, with bursts of
    /// up to `burst` at once (a GCRA: after a burst, one message every `per / messages`), as
    /// exchanges require (Binance: 5 per second). Text and binary messages count, the init
    /// messages included (they still go first); heartbeats count too with
    /// [`rate_limit_pings`](Self::rate_limit_pings). A send above the rate is accepted and
    /// waits in the send queue, in order, until the limit allows it: the queue's bound still
    /// applies, so a caller that keeps sending faster than the rate gets
    /// [`QueueFull`](crate::ConnectionError::QueueFull). Each socket starts with a full burst.
    /// Default: no limit. `messages` and `burst` positive, `per` 1 ms to one year and at
    /// most one message per nanosecond, checked by [`build`](Self::build).
    pub fn send_rate_limit(mut self, messages: u32, per: Duration, burst: u32) -> Self {
        self.send_rate = Some((messages, per, burst));
        self
    }

    /// With a [`send_rate_limit`](Self::send_rate_limit), heartbeats (pings, or the text
    /// heartbeat) take a permit too, for exchanges that count them (default `false`). A due
    /// heartbeat then waits for its permit like a message, ahead of the queued messages, but never two heartbeats in a row while a message waits
    /// (heartbeats due faster than the rate do not starve the data); the pong timeout still
    /// counts from the moment it fell due. User pings
    /// ([`WsManager::send_ping`](crate::WsManager::send_ping)) and pongs count then too, the
    /// pongs tungstenite writes by itself in answer to the peer's pings included: each received
    /// ping charges the limit (it goes into debt; the next sends wait). Without a limit this does nothing.
    pub fn rate_limit_pings(mut self, count: bool) -> Self {
        self.rate_limit_pings = count;
        self
    }

    /// Stamps every received message with its receive time (default `false`): monotonic
    /// nanoseconds (`CLOCK_MONOTONIC`, comparable with `clock_gettime` in the same process)
    /// and wall-clock nanoseconds since the Unix epoch, read once per read of the socket that
    /// returned bytes, never once per message: the messages parsed from one read share its
    /// time, and a message that spans two reads gets the time of the read that completed it.
    /// Messages parsed from bytes read with the upgrade response get the time the connection
    /// opened. Polled connections carry it in [`ConnEvent::received_at`](crate::ConnEvent::received_at);
    /// hooks ask [`receive_time`](crate::receive_time) while they run. A
    /// [`Connection`](crate::Connection) over a caller's own stream reads no socket itself:
    /// its messages get no time.
    pub fn receive_timestamps(mut self, on: bool) -> Self {
        self.receive_timestamps = on;
        self
    }

    /// Connects through a proxy: `http://[user:password@]host:port` (HTTP `CONNECT`) or
    /// `socks5://[user:password@]host:port` (the proxy resolves the target's name). TLS and
    /// the WebSocket upgrade run end to end through the tunnel, certificates checked against
    /// the target's name; the connect timeout covers the proxy too. Credentials may be
    /// percent-encoded; they are secrets, never logged or put in an error message. Checked by
    /// [`build`](Self::build).
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }

    /// Like [`client_cert_files`](Self::client_cert_files), from PEM held in memory.
    pub fn client_cert_pem(mut self, chain: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.client_cert = Some(ClientCert::Pem {
            chain: chain.into(),
            key: key.into(),
        });
        self
    }

    /// Checks every field and freezes the configuration. The first offending field is named
    /// in the [`InvalidArgument`](crate::ConnectionError::InvalidArgument) error.
    pub fn build(self) -> Result<Config> {
        let (uri, tls) = limits::url(&self.url)?;
        let mut endpoints = Vec::with_capacity(1 + self.fallback_urls.len());
        endpoints.push(Endpoint { uri, tls });
        for url in &self.fallback_urls {
            let (uri, tls) = limits::url(url).map_err(|e| match e {
                ConnectionError::InvalidArgument(m) => {
                    ConnectionError::InvalidArgument(format!("fallback {m}"))
                }
                e => e,
            })?;
            endpoints.push(Endpoint { uri, tls });
        }
        let any_tls = endpoints.iter().any(|e| e.tls);
        for (setting, d) in [
            (DurationSetting::PingInterval, self.ping_interval),
            (DurationSetting::PongTimeout, self.pong_timeout),
            (DurationSetting::ConnectTimeout, self.connect_timeout),
        ] {
            limits::duration(setting, d)?;
        }
        limits::backoff(self.backoff_min, self.backoff_max)?;
        limits::duration(DurationSetting::CloseTimeout, self.close_timeout)?;
        if let Some(d) = self.idle_timeout {
            limits::duration(DurationSetting::IdleTimeout, d)?;
        }
        if let Some(d) = self.max_connection_age {
            limits::duration(DurationSetting::MaxConnectionAge, d)?;
        }
        limits::max_message_size(self.max_message_size)?;
        limits::max_frame_size(self.max_frame_size)?;
        limits::send_queue_capacity(self.send_queue_capacity)?;
        limits::buffer_size(BufferSetting::Read, self.read_buffer_size)?;
        limits::buffer_size(BufferSetting::Frame, self.frame_buffer_size)?;
        limits::buffer_size(BufferSetting::Write, self.write_buffer_size)?;
        if let Some((messages, per, burst)) = self.send_rate {
            limits::rate("send_rate_limit", messages, per, burst)?;
        }
        if let Heartbeat::Text(t) = &self.heartbeat {
            limits::heartbeat_text(t)?;
        }
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| limits::header(name, value))
            .collect::<Result<Vec<_>>>()?;
        for p in &self.subprotocols {
            limits::subprotocol(p)?;
        }
        for m in &self.init_messages {
            let len = match m {
                InitMessage::Text(t) => t.len(),
                InitMessage::Binary(b) => b.len(),
            };
            limits::init_message(len, self.max_message_size)?;
        }
        let tls_config = if any_tls {
            Some(Arc::new(crate::tls::client_config(
                &self.ca_files,
                self.client_cert.as_ref(),
            )?))
        } else {
            if !self.ca_files.is_empty() {
                log::warn!("CA files given for a ws:// URL are ignored");
            }
            if self.client_cert.is_some() {
                log::warn!("a client certificate given for a ws:// URL is ignored");
            }
            None
        };
        let proxy = self.proxy.as_deref().map(limits::proxy).transpose()?;
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(self.frame_buffer_size)
            .write_buffer_size(self.write_buffer_size)
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_frame_size.min(self.max_message_size)));
        let mut set = self;
        // Only the checked copies stay: the raw values may hold secrets.
        set.headers = Vec::new();
        set.client_cert = None;
        set.proxy = None;
        Ok(Config {
            inner: Arc::new(Inner {
                set,
                endpoints,
                headers,
                ws_config,
                tls_config,
                proxy,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The rules themselves, and that `build` applies them, are tested in `limits`.

    #[test]
    fn defaults_build() {
        let c = Config::builder("ws://127.0.0.1:1/feed").build().unwrap();
        assert_eq!(c.ping_interval(), defaults::PING_INTERVAL);
        assert!(!c.is_tls());
    }

    #[test]
    fn debug_hides_secrets_of_builders_and_configs() {
        let b = Config::builder("ws://h/feed?token=s3cret")
            .header("Authorization", "Bearer s3cret")
            .init_text("login s3cret");
        let built = b.clone().build().unwrap();
        for s in [format!("{b:?}"), format!("{built:?}")] {
            assert!(s.to_lowercase().contains("authorization"), "{s}");
            assert!(!s.contains("s3cret"), "{s}");
        }
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
    fn every_setting_reads_back_as_built() {
        let (ms, s) = (Duration::from_millis, Duration::from_secs);
        let c = Config::builder("wss://feed.example:9443/v1?token=x")
            .ping_interval(ms(1500))
            .pong_timeout(ms(700))
            .heartbeat(Heartbeat::Text("{\"op\":\"ping\"}".into()))
            .connect_timeout(s(3))
            .reconnect_backoff(ms(20), s(4))
            .backoff_reset_after(s(7))
            .max_reconnect_attempts(5)
            .close_timeout(ms(900))
            .header("X-Key", "k")
            .subprotocol("v2.feed")
            .init_text("sub")
            .init_binary(vec![1u8, 2])
            .max_message_size(1000)
            .max_frame_size(2000)
            .send_queue_capacity(33)
            .read_buffer_size(8192)
            .frame_buffer_size(1024)
            .write_buffer_size(512)
            .build()
            .unwrap();
        assert_eq!(c.url(), "wss://feed.example:9443/v1?token=x");
        assert_eq!(c.uri().port_u16(), Some(9443));
        assert!(c.is_tls() && c.tls_config().is_some());
        assert_eq!(c.ping_interval(), ms(1500));
        assert_eq!(c.pong_timeout(), ms(700));
        assert_eq!(c.heartbeat(), &Heartbeat::Text("{\"op\":\"ping\"}".into()));
        assert_eq!(c.connect_timeout(), s(3));
        assert_eq!(c.backoff(), (ms(20), s(4)));
        assert_eq!(c.backoff_reset_after(), s(7));
        assert_eq!(c.max_reconnect_attempts(), 5);
        assert_eq!(c.close_timeout(), ms(900));
        let headers: Vec<_> = c
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        assert_eq!(headers, [("x-key", &b"k"[..])]);
        assert_eq!(c.subprotocols(), ["v2.feed"]);
        assert_eq!(
            c.init_messages(),
            [
                InitMessage::Text("sub".into()),
                InitMessage::Binary(Bytes::from_static(&[1, 2]))
            ]
        );
        assert_eq!(c.max_message_size(), 1000);
        assert_eq!(c.send_queue_capacity(), 33);
        assert_eq!(c.burst_read_size(), 8192);
        let ws = c.ws_config();
        assert_eq!(ws.read_buffer_size, 1024);
        assert_eq!(ws.write_buffer_size, 512);
        assert_eq!(ws.max_message_size, Some(1000));
        // A frame is never allowed to be larger than a message.
        assert_eq!(ws.max_frame_size, Some(1000));
        let plain = Config::builder("ws://h/").build().unwrap();
        assert!(!plain.is_tls() && plain.tls_config().is_none());
    }

    #[test]
    fn defaults_are_the_documented_sizes_and_reach_a_default_config() {
        // README's defaults table and the builder docs state these numbers.
        assert_eq!(defaults::MAX_MESSAGE_SIZE, 16 * 1024 * 1024);
        assert_eq!(defaults::MAX_FRAME_SIZE, 16 * 1024 * 1024);
        assert_eq!(defaults::SEND_QUEUE_CAPACITY, 1024);
        assert_eq!(defaults::READ_BUFFER_SIZE, 1 << 20);
        assert_eq!(defaults::FRAME_READ_BUFFER, 4096);
        assert_eq!(defaults::WRITE_BUFFER_SIZE, 65536);
        let c = Config::builder("ws://h/").build().unwrap();
        let ws = c.ws_config();
        assert_eq!(ws.read_buffer_size, defaults::FRAME_READ_BUFFER);
        assert_eq!(ws.write_buffer_size, defaults::WRITE_BUFFER_SIZE);
        assert_eq!(ws.max_frame_size, Some(defaults::MAX_FRAME_SIZE));
        assert_eq!(c.max_message_size(), defaults::MAX_MESSAGE_SIZE);
        assert_eq!(c.burst_read_size(), defaults::READ_BUFFER_SIZE);
        assert_eq!(c.send_queue_capacity(), defaults::SEND_QUEUE_CAPACITY);
        assert_eq!(
            (c.ping_interval(), c.pong_timeout(), c.connect_timeout()),
            (
                defaults::PING_INTERVAL,
                defaults::PONG_TIMEOUT,
                defaults::CONNECT_TIMEOUT
            )
        );
        assert_eq!(c.backoff(), (defaults::BACKOFF_MIN, defaults::BACKOFF_MAX));
        assert_eq!(c.backoff_reset_after(), defaults::BACKOFF_RESET_AFTER);
        assert_eq!(c.close_timeout(), defaults::CLOSE_TIMEOUT);
        assert_eq!(c.max_reconnect_attempts(), 0);
        assert_eq!(c.heartbeat(), &Heartbeat::Ping);
        assert!(c.headers().is_empty() && c.subprotocols().is_empty());
        assert!(c.init_messages().is_empty());
    }

    #[test]
    fn batching_follows_the_configured_frame_buffer() {
        let burst = |read, frame| {
            Config::builder("ws://h/")
                .read_buffer_size(read)
                .frame_buffer_size(frame)
                .build()
                .unwrap()
                .burst_read_size()
        };
        // A small frame buffer: a read buffer above it batches, even below the default.
        assert_eq!(burst(2048, 1024), 2048);
        assert_eq!(burst(1024, 1024), 0);
        // A large frame buffer: a read buffer not above it does not.
        assert_eq!(burst(8192, 16384), 0);
        assert_eq!(burst(32768, 16384), 32768);
    }

    #[test]
    fn batching_is_on_only_for_a_read_buffer_above_the_frame_buffer() {
        let burst = |n| {
            Config::builder("ws://h/")
                .read_buffer_size(n)
                .build()
                .unwrap()
                .burst_read_size()
        };
        assert_eq!(burst(defaults::FRAME_READ_BUFFER), 0);
        assert_eq!(
            burst(defaults::FRAME_READ_BUFFER + 1),
            defaults::FRAME_READ_BUFFER + 1
        );
        assert_eq!(burst(256), 0);
        assert_eq!(
            burst(defaults::READ_BUFFER_SIZE),
            defaults::READ_BUFFER_SIZE
        );
    }

    #[test]
    fn debug_shows_the_url_without_its_query() {
        let b = Config::builder("ws://h:9/feed?token=s3cret");
        let c = b.clone().build().unwrap();
        for s in [format!("{b:?}"), format!("{c:?}")] {
            assert!(s.contains("\"ws://h:9/feed\""), "{s}");
        }
        assert_eq!(without_query("ws://h/a?b?c"), "ws://h/a");
        assert_eq!(without_query("ws://h/a"), "ws://h/a");
    }
}
