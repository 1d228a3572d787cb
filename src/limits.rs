//! Every limit and validation rule, written once.
//!
//! [`ConfigBuilder::build`](crate::ConfigBuilder::build), the manager and the C setters all call
//! these functions, so a value is refused by the same rule, with the same words, whichever way
//! it came in. The C setters call them at once, so a bad value is refused by the setter itself
//! rather than later by `kh_manager_add`.

use std::time::Duration;

use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Uri};

use crate::error::{ConnectionError, Result};

/// Shortest accepted duration setting: the C setters count in milliseconds, and nothing below
/// one is a sensible interval or timeout.
pub(crate) const MIN_DURATION: Duration = Duration::from_millis(1);
/// Longest accepted duration setting (one year): timers add these to `Instant::now()`, which
/// panics on overflow, so a "forever" such as `Duration::MAX` must be refused up front, not
/// crash a connection task later. One year is far below any overflow.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// Largest send queue: the queue grows on demand, but a capacity beyond this is a mistake
/// (a full queue of small messages would already take gigabytes).
pub(crate) const MAX_SEND_QUEUE_CAPACITY: usize = 1 << 24;
/// Smallest read and frame buffer: smaller buffers only multiply system calls.
pub(crate) const MIN_BUFFER_SIZE: usize = 256;
/// Largest read and frame buffer: the frame buffer is held by every connection for its whole
/// life, so a typo here multiplies by the number of connections.
pub(crate) const MAX_BUFFER_SIZE: usize = 64 << 20;
/// Largest worker thread count of a C manager's runtime.
pub(crate) const MAX_WORKERS: u32 = 1024;
/// Longest close reason: a close frame's payload is at most 125 bytes, two of them the code.
pub(crate) const MAX_CLOSE_REASON: usize = 123;

fn invalid(msg: String) -> ConnectionError {
    ConnectionError::InvalidArgument(msg)
}

/// The duration settings, each named as in its error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DurationSetting {
    PingInterval,
    PongTimeout,
    ConnectTimeout,
    CloseTimeout,
    BackoffMin,
    BackoffMax,
    IdleTimeout,
    MaxConnectionAge,
}

impl DurationSetting {
    fn name(self) -> &'static str {
        match self {
            Self::PingInterval => "ping_interval",
            Self::PongTimeout => "pong_timeout",
            Self::ConnectTimeout => "connect_timeout",
            Self::CloseTimeout => "close_timeout",
            Self::BackoffMin => "reconnect backoff minimum",
            Self::BackoffMax => "reconnect backoff maximum",
            Self::IdleTimeout => "idle_timeout",
            Self::MaxConnectionAge => "max_connection_age",
        }
    }
}

/// A duration setting: 1 ms up to [`MAX_DURATION`].
pub(crate) fn duration(setting: DurationSetting, d: Duration) -> Result<Duration> {
    if (MIN_DURATION..=MAX_DURATION).contains(&d) {
        return Ok(d);
    }
    Err(invalid(format!(
        "{} must be 1 ms..=1 year ({} ms), not {d:?}",
        setting.name(),
        MAX_DURATION.as_millis()
    )))
}

/// The reconnect backoff: each bound a valid duration, and the minimum not above the maximum.
pub(crate) fn backoff(min: Duration, max: Duration) -> Result<()> {
    duration(DurationSetting::BackoffMin, min)?;
    duration(DurationSetting::BackoffMax, max)?;
    if min > max {
        return Err(invalid(format!(
            "reconnect backoff minimum {min:?} exceeds maximum {max:?}"
        )));
    }
    Ok(())
}

/// The largest message, in and out: positive (tungstenite would refuse every message).
pub(crate) fn max_message_size(n: usize) -> Result<usize> {
    if n == 0 {
        return Err(invalid("max_message_size must be positive".into()));
    }
    Ok(n)
}

/// The largest incoming frame: positive.
pub(crate) fn max_frame_size(n: usize) -> Result<usize> {
    if n == 0 {
        return Err(invalid("max_frame_size must be positive".into()));
    }
    Ok(n)
}

/// The send queue capacity: 1 up to [`MAX_SEND_QUEUE_CAPACITY`].
pub(crate) fn send_queue_capacity(n: usize) -> Result<usize> {
    if !(1..=MAX_SEND_QUEUE_CAPACITY).contains(&n) {
        return Err(invalid(format!(
            "send_queue_capacity must be 1..={MAX_SEND_QUEUE_CAPACITY}, not {n}"
        )));
    }
    Ok(n)
}

/// A rate limit (`what` names it in the message): `messages` and `burst` positive, `per`
/// 1 ms up to [`MAX_DURATION`], and at most one permit per nanosecond (`per / messages` must
/// not round to zero, or the limit would not limit).
pub(crate) fn rate(
    what: &str,
    messages: u32,
    per: Duration,
    burst: u32,
) -> Result<crate::ratelimit::Rate> {
    if messages == 0 {
        return Err(invalid(format!(
            "{what}: a rate of zero messages would never send; leave the limit unset for none"
        )));
    }
    if burst == 0 {
        return Err(invalid(format!(
            "{what}: the burst must be at least 1, not 0"
        )));
    }
    if !(MIN_DURATION..=MAX_DURATION).contains(&per) {
        return Err(invalid(format!(
            "{what}: the period must be 1 ms..=1 year ({} ms), not {per:?}",
            MAX_DURATION.as_millis()
        )));
    }
    if (per / messages).is_zero() {
        return Err(invalid(format!(
            "{what}: {messages} per {per:?} is more than one per nanosecond"
        )));
    }
    Ok(crate::ratelimit::Rate {
        messages,
        per,
        burst,
    })
}

/// Largest connect-attempt count per window: the limiter keeps one instant per attempt.
pub(crate) const MAX_CONNECT_ATTEMPTS: u32 = 1_000_000;

/// The manager's connect-attempt limit: 1 up to [`MAX_CONNECT_ATTEMPTS`] attempts per window
/// of 1 ms up to [`MAX_DURATION`].
pub(crate) fn connect_rate(attempts: u32, per: Duration) -> Result<(u32, Duration)> {
    if !(1..=MAX_CONNECT_ATTEMPTS).contains(&attempts) {
        return Err(invalid(format!(
            "connect_rate_limit: attempts must be 1..={MAX_CONNECT_ATTEMPTS}, not {attempts}"
        )));
    }
    if !(MIN_DURATION..=MAX_DURATION).contains(&per) {
        return Err(invalid(format!(
            "connect_rate_limit: the window must be 1 ms..=1 year ({} ms), not {per:?}",
            MAX_DURATION.as_millis()
        )));
    }
    Ok((attempts, per))
}

/// The buffer settings, each named as in its error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BufferSetting {
    Read,
    Frame,
    /// May be 0: every message is then written at once. tungstenite panics on a write buffer
    /// that is not below its hard limit (`usize::MAX`), so the bound is needed.
    Write,
}

/// A buffer size: [`MIN_BUFFER_SIZE`] (0 for the write buffer) up to [`MAX_BUFFER_SIZE`].
pub(crate) fn buffer_size(setting: BufferSetting, n: usize) -> Result<usize> {
    let (name, min) = match setting {
        BufferSetting::Read => ("read_buffer_size", MIN_BUFFER_SIZE),
        BufferSetting::Frame => ("frame_buffer_size", MIN_BUFFER_SIZE),
        BufferSetting::Write => ("write_buffer_size", 0),
    };
    if (min..=MAX_BUFFER_SIZE).contains(&n) {
        return Ok(n);
    }
    Err(invalid(format!(
        "{name} must be {min}..={MAX_BUFFER_SIZE} bytes (64 MiB), not {n}"
    )))
}

/// A text heartbeat: not empty (an empty message is indistinguishable from no heartbeat to
/// many servers, and would never be answered).
pub(crate) fn heartbeat_text(text: &str) -> Result<()> {
    if text.is_empty() {
        return Err(invalid("a text heartbeat must not be empty".into()));
    }
    Ok(())
}

/// A message sent after every connect: not above the message size limit, or every connect
/// would fail.
pub(crate) fn init_message(len: usize, max_message_size: usize) -> Result<()> {
    if len > max_message_size {
        return Err(invalid(format!(
            "init message of {len} bytes exceeds max_message_size {max_message_size}"
        )));
    }
    Ok(())
}

/// Headers the library sets itself: a second copy would break the upgrade.
const RESERVED_HEADERS: [&str; 6] = [
    "host",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
];

/// An extra upgrade header: the name an HTTP token and not one the library sets, the value
/// free of CR, LF and NUL. The value is marked sensitive and never appears in a message.
pub(crate) fn header(name: &str, value: &[u8]) -> Result<(HeaderName, HeaderValue)> {
    let Ok(hname) = HeaderName::from_bytes(name.as_bytes()) else {
        return Err(invalid(format!(
            "header name {name:?} is not a valid HTTP token"
        )));
    };
    // HeaderValue accepts obs-text but refuses CR, LF and NUL: exactly the injection guard needed.
    let Ok(mut hvalue) = HeaderValue::from_bytes(value) else {
        return Err(invalid(format!(
            "value of header {name:?} contains a control character (CR, LF or NUL)"
        )));
    };
    if RESERVED_HEADERS.contains(&hname.as_str()) {
        return Err(invalid(format!(
            "header {name:?} is set by the library (use subprotocol() for Sec-WebSocket-Protocol)"
        )));
    }
    hvalue.set_sensitive(true);
    Ok((hname, hvalue))
}

/// An offered subprotocol: an HTTP token (RFC 6455, 4.1), since it goes into a header as is.
pub(crate) fn subprotocol(p: &str) -> Result<()> {
    let token_ok = !p.is_empty()
        && p.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if !token_ok {
        return Err(invalid(format!("subprotocol {p:?} is not a valid token")));
    }
    Ok(())
}

/// Parses and checks a WebSocket URL: scheme ws/wss, a host, no credentials, and a port, if
/// given, of 1..=65535. Returns the URI and whether it is `wss://`.
///
/// No message echoes the URL: its query string may carry a token.
pub(crate) fn url(url: &str) -> Result<(Uri, bool)> {
    let bad = |msg: &str| Err(invalid(msg.to_string()));
    let uri: Uri = match url.parse() {
        Ok(u) => u,
        // The parser's message may echo the URL: keep it out.
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
    // The parser accepts any port text, and `Uri::port_u16` then gives None for one that is no
    // u16 (99999, -1), which would silently connect to the default port; 0 cannot be dialled.
    if let Some(port) = port_text(authority.as_str())
        && !valid_port(port)
    {
        return bad("URL port must be 1..=65535");
    }
    Ok((uri, tls))
}

/// Decimal digits only (`u16::from_str` would also take a sign) and a value of 1..=65535.
/// A proxy URL: `http://[user:password@]host:port` (HTTP `CONNECT`) or
/// `socks5://[user:password@]host:port` (also `socks5h://`: SOCKS5 always lets the proxy
/// resolve the target's name). Credentials may be percent-encoded. No message repeats the URL
/// or any part of the credentials.
pub(crate) fn proxy(url: &str) -> Result<crate::config::Proxy> {
    use crate::config::{Proxy, ProxyKind};
    let bad = |msg: &str| Err(invalid(format!("proxy URL: {msg}")));
    let Some((scheme, rest)) = url.split_once("://") else {
        return bad("must start with http:// or socks5://");
    };
    let kind = match scheme.to_ascii_lowercase().as_str() {
        "http" => ProxyKind::Http,
        "socks5" | "socks5h" => ProxyKind::Socks5,
        _ => return bad("the scheme must be http://, socks5:// or socks5h://"),
    };
    // Nothing after the authority but an optional `/`.
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return bad("must be scheme://[user:password@]host:port, without a path");
    }
    let (auth, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, hp)) => {
            let Some((user, pass)) = userinfo.split_once(':') else {
                return bad("credentials must be user:password@");
            };
            let (Some(user), Some(pass)) = (percent_decode(user), percent_decode(pass)) else {
                return bad("credentials are not valid percent-encoded UTF-8");
            };
            if user.is_empty() || user.len() > 255 || pass.len() > 255 {
                return bad("user must be 1 to 255 bytes and password at most 255");
            }
            (Some((user, pass)), hp)
        }
        None => (None, authority),
    };
    let Some(port) = port_text(host_port) else {
        return bad("needs a port (host:port)");
    };
    if !valid_port(port) {
        return bad("port must be 1..=65535");
    }
    let host = &host_port[..host_port.len() - port.len() - 1];
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.len() > 255 || host.contains(['[', ']', ' ', '@']) {
        return bad("has no valid host");
    }
    Ok(Proxy {
        kind,
        host: host.to_string(),
        port: port.parse().unwrap_or(0),
        auth,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

fn valid_port(port: &str) -> bool {
    !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0)
}

/// The text after the host's `:` in an authority without credentials, if there is a colon.
fn port_text(authority: &str) -> Option<&str> {
    // An IPv6 literal is bracketed and full of colons: only a colon after `]` starts a port.
    let after_host = match authority.rfind(']') {
        Some(end) => &authority[end + 1..],
        None => authority,
    };
    after_host.rsplit_once(':').map(|(_, port)| port)
}

/// A connection name: not empty, and free of NUL (the C ABI hands it to callbacks as a
/// NUL-terminated string).
pub(crate) fn connection_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid("a connection name must not be empty".into()));
    }
    if name.contains('\0') {
        return Err(invalid("a connection name must not contain NUL".into()));
    }
    Ok(())
}

/// The key of a live subscription: not empty, at most 256 bytes. Keys are compared on every
/// add and remove, so a bound keeps those cheap.
pub(crate) fn subscription_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(invalid("a subscription key must not be empty".into()));
    }
    if key.len() > MAX_SUBSCRIPTION_KEY {
        return Err(invalid(format!(
            "a subscription key must be at most {MAX_SUBSCRIPTION_KEY} bytes, not {}",
            key.len()
        )));
    }
    Ok(())
}

/// The longest subscription key, in bytes.
pub(crate) const MAX_SUBSCRIPTION_KEY: usize = 256;

/// A close the caller asks for: a code an endpoint may send (RFC 6455, 7.4: 1000-1003,
/// 1007-1014 and 3000-4999) and a reason that fits the close frame.
pub(crate) fn close(code: u16, reason: &str) -> Result<()> {
    if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
        return Err(invalid(format!(
            "close code {code} may not be sent (use 1000, 1001, or 3000-4999)"
        )));
    }
    if reason.len() > MAX_CLOSE_REASON {
        return Err(invalid(format!(
            "a close reason holds at most {MAX_CLOSE_REASON} bytes, not {}",
            reason.len()
        )));
    }
    Ok(())
}

/// Largest ping payload (RFC 6455, 5.5: control frames carry at most 125 bytes).
pub(crate) const MAX_PING_PAYLOAD: usize = 125;

/// A ping sent by the caller fits in a control frame.
pub(crate) fn ping_payload(len: usize) -> Result<()> {
    if len > MAX_PING_PAYLOAD {
        return Err(invalid(format!(
            "a ping payload holds at most {MAX_PING_PAYLOAD} bytes, not {len}"
        )));
    }
    Ok(())
}

/// The worker thread count of a C manager: 0 (the default) up to [`MAX_WORKERS`].
pub(crate) fn workers(n: u32) -> Result<u32> {
    if n > MAX_WORKERS {
        return Err(invalid(format!(
            "workers must be 0..={MAX_WORKERS}, not {n}"
        )));
    }
    Ok(n)
}

/// Largest event queue capacity (see [`event_capacity`]).
pub(crate) const MAX_EVENT_CAPACITY: usize = 1 << 24;

/// The capacity of a manager's event queue: 1 up to [`MAX_EVENT_CAPACITY`]. The queue grows on
/// demand, so a large capacity costs nothing until a slow poller lets events pile up; beyond
/// this bound a full queue of small messages would already take gigabytes.
pub(crate) fn event_capacity(n: usize) -> Result<usize> {
    if !(1..=MAX_EVENT_CAPACITY).contains(&n) {
        return Err(invalid(format!(
            "the event capacity must be 1..={MAX_EVENT_CAPACITY}, not {n}"
        )));
    }
    Ok(n)
}

/// Largest event queue byte capacity (see [`event_bytes`]): 1 TiB.
pub(crate) const MAX_EVENT_BYTES: usize = 1 << 40;

/// The byte capacity of a manager's event queue: 1 up to [`MAX_EVENT_BYTES`] (a queue that
/// held more would not be bounded in any useful sense).
pub(crate) fn event_bytes(n: usize) -> Result<usize> {
    if !(1..=MAX_EVENT_BYTES).contains(&n) {
        return Err(invalid(format!(
            "the event byte capacity must be 1..={MAX_EVENT_BYTES}, not {n}"
        )));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Heartbeat};

    fn message<T>(r: Result<T>) -> String {
        match r {
            Err(ConnectionError::InvalidArgument(m)) => m,
            Err(e) => panic!("not InvalidArgument: {e:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn ports_outside_1_to_65535_are_refused_without_echoing_the_url() {
        for u in [
            "ws://127.0.0.1:99999/",
            "ws://127.0.0.1:65536/",
            "ws://127.0.0.1:-1/",
            "ws://127.0.0.1:0/",
            "ws://127.0.0.1:+80/",
            "ws://127.0.0.1:/",
            "ws://127.0.0.1:http/?token=s3cret",
            "wss://[::1]:70000/?token=s3cret",
        ] {
            assert_eq!(message(url(u)), "URL port must be 1..=65535", "{u}");
            let built = Config::builder(u).build();
            assert_eq!(message(built), "URL port must be 1..=65535", "{u}");
        }
    }

    #[test]
    fn ports_in_range_and_ipv6_literals_are_accepted() {
        for (u, port) in [
            ("ws://127.0.0.1:1/", Some(1)),
            ("ws://127.0.0.1:65535/", Some(65535)),
            ("ws://127.0.0.1:9001/feed?x=1:2", Some(9001)),
            ("ws://[::1]:9001/", Some(9001)),
            ("wss://[2001:db8::1]/", None),
            ("wss://example.com/", None),
        ] {
            let (uri, _) = url(u).unwrap_or_else(|e| panic!("{u}: {e}"));
            assert_eq!(uri.port_u16(), port, "{u}");
        }
        let c = Config::builder("ws://[::1]:9001/").build().unwrap();
        assert_eq!(
            (c.uri().host(), c.uri().port_u16()),
            (Some("[::1]"), Some(9001))
        );
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_credentials() {
        for u in [
            "",
            "http://x",
            "ws://",
            "x",
            "ws://user:pw@host:99999/",
            "wss:///p",
        ] {
            assert!(!message(url(u)).contains("pw"), "{u}");
        }
    }

    #[test]
    fn build_refuses_with_the_words_of_the_rule() {
        let b = || Config::builder("ws://h/");
        let (ms, s) = (Duration::from_millis, Duration::from_secs);
        for (built, want) in [
            (
                b().ping_interval(ms(0)),
                "ping_interval must be 1 ms..=1 year (31536000000 ms), not 0ns",
            ),
            (
                b().close_timeout(Duration::MAX),
                "close_timeout must be 1 ms..=1 year (31536000000 ms), not 18446744073709551615.999999999s",
            ),
            (
                b().connect_timeout(Duration::from_micros(999)),
                "connect_timeout must be 1 ms..=1 year (31536000000 ms), not 999µs",
            ),
            (
                b().reconnect_backoff(s(2), s(1)),
                "reconnect backoff minimum 2s exceeds maximum 1s",
            ),
            (
                b().send_queue_capacity(0),
                "send_queue_capacity must be 1..=16777216, not 0",
            ),
            (
                b().send_queue_capacity((1 << 24) + 1),
                "send_queue_capacity must be 1..=16777216, not 16777217",
            ),
            (
                b().read_buffer_size(255),
                "read_buffer_size must be 256..=67108864 bytes (64 MiB), not 255",
            ),
            (
                b().frame_buffer_size((64 << 20) + 1),
                "frame_buffer_size must be 256..=67108864 bytes (64 MiB), not 67108865",
            ),
            (
                b().write_buffer_size(usize::MAX),
                "write_buffer_size must be 0..=67108864 bytes (64 MiB), not 18446744073709551615",
            ),
            (b().max_message_size(0), "max_message_size must be positive"),
            (
                b().send_rate_limit(0, s(1), 1),
                "send_rate_limit: a rate of zero messages would never send; leave the limit unset for none",
            ),
            (
                b().send_rate_limit(5, s(1), 0),
                "send_rate_limit: the burst must be at least 1, not 0",
            ),
            (
                b().send_rate_limit(5, Duration::ZERO, 1),
                "send_rate_limit: the period must be 1 ms..=1 year (31536000000 ms), not 0ns",
            ),
            (
                b().send_rate_limit(u32::MAX, Duration::from_millis(1), 1),
                "send_rate_limit: 4294967295 per 1ms is more than one per nanosecond",
            ),
            (b().max_frame_size(0), "max_frame_size must be positive"),
            (
                b().heartbeat(Heartbeat::Text(String::new())),
                "a text heartbeat must not be empty",
            ),
            (
                b().subprotocol("a b"),
                "subprotocol \"a b\" is not a valid token",
            ),
            (
                b().max_message_size(2).init_text("abc"),
                "init message of 3 bytes exceeds max_message_size 2",
            ),
        ] {
            assert_eq!(message(built.build()), want);
        }
        assert!(
            b().ping_interval(ms(1))
                .close_timeout(MAX_DURATION)
                .build()
                .is_ok()
        );
        assert!(
            b().send_queue_capacity(1 << 24)
                .read_buffer_size(256)
                .build()
                .is_ok()
        );
        assert!(b().frame_buffer_size(64 << 20).build().is_ok());
    }

    #[test]
    fn headers_refuse_injection_bad_names_and_reserved_names() {
        for (name, value) in [
            ("X-Key", "a\r\nEvil: 1"),
            ("X-Key", "a\0"),
            ("X Key", "a"),
            ("Host", "a"),
        ] {
            assert!(
                Config::builder("ws://h/")
                    .header(name, value)
                    .build()
                    .is_err(),
                "{name}"
            );
        }
        assert!(header("Sec-WebSocket-Protocol", b"a").is_err());
        let (_, v) = header("X-Key", b"ok").unwrap();
        assert!(v.is_sensitive());
    }

    #[test]
    fn subprotocols_are_tokens() {
        assert!(subprotocol("graphql-ws").is_ok());
        for p in ["", "a b", "a,b", "é", "a/b"] {
            assert!(subprotocol(p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn names_and_closes() {
        assert!(connection_name("").is_err() && connection_name("a\0b").is_err());
        assert!(connection_name("feed").is_ok());
        for code in [1000, 1003, 1007, 1014, 3000, 4999] {
            assert!(close(code, "").is_ok(), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(close(code, "").is_err(), "{code}");
        }
        assert!(close(1000, &"x".repeat(123)).is_ok());
        assert!(close(1000, &"x".repeat(124)).is_err());
        assert!(workers(1024).is_ok() && workers(1025).is_err());
    }

    #[test]
    fn accepted_values_come_back_unchanged() {
        // The C setters store what these return, not what they were given.
        let d = Duration::from_millis(1234);
        for setting in [
            DurationSetting::PingInterval,
            DurationSetting::PongTimeout,
            DurationSetting::ConnectTimeout,
            DurationSetting::CloseTimeout,
        ] {
            assert_eq!(duration(setting, d).unwrap(), d);
        }
        assert_eq!(max_message_size(7).unwrap(), 7);
        assert_eq!(max_frame_size(9).unwrap(), 9);
        assert_eq!(send_queue_capacity(5).unwrap(), 5);
        assert_eq!(buffer_size(BufferSetting::Read, 300).unwrap(), 300);
        assert_eq!(buffer_size(BufferSetting::Frame, 301).unwrap(), 301);
        assert_eq!(workers(3).unwrap(), 3);
    }

    #[test]
    fn limits_hold_their_edge_values() {
        let s = Duration::from_secs;
        assert!(backoff(s(5), s(5)).is_ok(), "min == max is a fixed delay");
        assert_eq!(
            message(backoff(Duration::ZERO, s(1))),
            "reconnect backoff minimum must be 1 ms..=1 year (31536000000 ms), not 0ns"
        );
        assert_eq!(
            message(backoff(s(1), Duration::MAX)),
            "reconnect backoff maximum must be 1 ms..=1 year (31536000000 ms), not 18446744073709551615.999999999s"
        );
        assert!(max_message_size(1).is_ok() && max_frame_size(1).is_ok());
        // An init message as large as the limit still goes out.
        assert!(init_message(3, 3).is_ok());
        assert_eq!(
            message(init_message(4, 3)),
            "init message of 4 bytes exceeds max_message_size 3"
        );
        assert!(ping_payload(MAX_PING_PAYLOAD).is_ok() && ping_payload(0).is_ok());
        assert_eq!(
            message(ping_payload(MAX_PING_PAYLOAD + 1)),
            "a ping payload holds at most 125 bytes, not 126"
        );
        assert_eq!(
            message(workers(MAX_WORKERS + 1)),
            "workers must be 0..=1024, not 1025"
        );
        assert!(workers(0).is_ok());
    }

    #[test]
    fn the_scheme_decides_tls_whatever_its_case() {
        for (u, tls) in [
            ("ws://h/", false),
            ("WS://h/", false),
            ("wss://h/", true),
            ("WsS://h/", true),
        ] {
            assert_eq!(url(u).unwrap_or_else(|e| panic!("{u}: {e}")).1, tls, "{u}");
        }
        for (u, want) in [
            ("http://h/", "URL scheme must be ws:// or wss://"),
            ("wsx://h/", "URL scheme must be ws:// or wss://"),
            (
                "ws://u:p@h/",
                "URL must not contain credentials (user:password@); use a header instead",
            ),
            (
                "ws://u@h/",
                "URL must not contain credentials (user:password@); use a header instead",
            ),
            ("not a url", "URL does not parse"),
        ] {
            assert_eq!(message(url(u)), want, "{u}");
        }
    }

    #[test]
    fn only_a_colon_after_an_ipv6_literal_starts_a_port() {
        assert_eq!(port_text("[::1]:9001"), Some("9001"));
        assert_eq!(port_text("[::1]"), None);
        // A literal that ends in `::` has a colon right before its `]`.
        assert_eq!(port_text("[2001:db8::]"), None);
        assert_eq!(port_text("[2001:db8::]:9001"), Some("9001"));
        assert!(url("wss://[2001:db8::]/").is_ok());
        assert_eq!(port_text("h:80"), Some("80"));
        assert_eq!(port_text("h"), None);
    }

    #[test]
    fn rule_messages_name_the_setting() {
        for (setting, name) in [
            (DurationSetting::PingInterval, "ping_interval"),
            (DurationSetting::PongTimeout, "pong_timeout"),
            (DurationSetting::ConnectTimeout, "connect_timeout"),
            (DurationSetting::CloseTimeout, "close_timeout"),
            (DurationSetting::IdleTimeout, "idle_timeout"),
        ] {
            assert!(message(duration(setting, Duration::ZERO)).starts_with(name));
        }
        assert!(message(buffer_size(BufferSetting::Read, 0)).starts_with("read_buffer_size"));
        assert!(message(buffer_size(BufferSetting::Frame, 0)).starts_with("frame_buffer_size"));
        assert_eq!(
            message(header("Host", b"x")),
            "header \"Host\" is set by the library (use subprotocol() for Sec-WebSocket-Protocol)"
        );
        assert_eq!(
            message(header("X-Key", b"a\nb")),
            "value of header \"X-Key\" contains a control character (CR, LF or NUL)"
        );
        assert_eq!(
            message(connection_name("")),
            "a connection name must not be empty"
        );
        assert_eq!(
            message(connection_name("a\0")),
            "a connection name must not contain NUL"
        );
    }
}
