//! `kh_config`: the caller-owned configuration builder.

use std::ffi::c_char;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;

use super::boundary::{Out, arg_bytes, arg_mut, arg_str, free_box, guard, guard_void};
use super::result::kh_result;
use crate::config::{ClientCert, Config, ConfigBuilder, Heartbeat};
use crate::error::{ConnectionError, Result};
use crate::limits::{self, BufferSetting, DurationSetting};

/// A connection configuration being built. Create with `kh_config_new`, change with the
/// `kh_config_set_*`/`kh_config_add_*` functions, pass to `kh_manager_add` (which copies it; the
/// same builder may be used for several connections) and destroy with `kh_config_free`.
/// It is checked (and its CA files read) at the first `kh_manager_add` after a change; the
/// connections added from it until the next change share that checked copy.
/// Not thread-safe: do not use one builder from two threads at once.
pub struct kh_config {
    builder: ConfigBuilder,
    /// What the builder last built: the connections added from one unchanged builder share one
    /// checked `Config` (its URL, headers and TLS set-up), as the Rust API's `config.clone()`
    /// does, instead of holding a copy each. Reset by every change.
    built: OnceLock<Config>,
}

impl kh_config {
    fn new(url: &str) -> Self {
        Self {
            builder: Config::builder(url),
            built: OnceLock::new(),
        }
    }

    pub(crate) fn build(&self) -> Result<Config> {
        if let Some(c) = self.built.get() {
            return Ok(c.clone());
        }
        let config = self.builder.clone().build()?;
        Ok(self.built.get_or_init(|| config).clone())
    }

    fn update(&mut self, f: impl FnOnce(ConfigBuilder) -> ConfigBuilder) {
        let b = std::mem::replace(&mut self.builder, Config::builder(""));
        self.builder = f(b);
        self.built = OnceLock::new();
    }
}

fn invalid(msg: String) -> ConnectionError {
    ConnectionError::InvalidArgument(msg)
}

/// A duration setter's value: milliseconds, checked by the rule `Config::build` applies.
fn millis(setting: DurationSetting, ms: u64) -> Result<Duration> {
    limits::duration(setting, Duration::from_millis(ms))
}

/// Runs a setter: checks the builder pointer, then applies `f` (which validates first).
fn set(cfg: *mut kh_config, f: impl FnOnce(&mut kh_config) -> Result<()>) -> kh_result {
    guard(|| {
        // SAFETY: NULL or a live builder, per the header.
        let cfg = unsafe { arg_mut(cfg, "cfg") }?;
        f(cfg)
    })
}

/// Runs a duration setter: checks the builder pointer and the range, then applies `apply`.
fn set_millis(
    cfg: *mut kh_config,
    setting: DurationSetting,
    ms: u64,
    apply: fn(ConfigBuilder, Duration) -> ConfigBuilder,
) -> kh_result {
    set(cfg, |c| {
        let d = millis(setting, ms)?;
        c.update(|b| apply(b, d));
        Ok(())
    })
}

/// Creates a configuration for `url` (`ws://` or `wss://`, no credentials in it, a port, if
/// given, of 1..=65535) with the library's defaults, and writes it to `*out`. The caller owns
/// it: free it with `kh_config_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_new(url: *const c_char, out: *mut *mut kh_config) -> kh_result {
    guard(|| {
        // SAFETY: NULL or a NUL-terminated string, per the header.
        let (url, out) = unsafe { (arg_str(url, "url")?, Out::new(out, "out")?) };
        limits::url(url)?;
        out.write_box(kh_config::new(url));
        Ok(())
    })
}

/// Destroys a configuration. NULL is ignored. Connections added with it are not affected.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_free(cfg: *mut kh_config) {
    // SAFETY: NULL or a pointer from kh_config_new, freed once, per the header.
    guard_void(|| unsafe { free_box(cfg) })
}

/// Interval between heartbeats, in milliseconds (1 ms to one year; default 15000).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_ping_interval_ms(cfg: *mut kh_config, ms: u64) -> kh_result {
    set_millis(
        cfg,
        DurationSetting::PingInterval,
        ms,
        ConfigBuilder::ping_interval,
    )
}

/// How long after a heartbeat the peer has to answer, in milliseconds (1 ms to one year;
/// default 10000). Any frame from the peer counts as the answer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_pong_timeout_ms(cfg: *mut kh_config, ms: u64) -> kh_result {
    set_millis(
        cfg,
        DurationSetting::PongTimeout,
        ms,
        ConfigBuilder::pong_timeout,
    )
}

/// Bound on TCP connect + TLS handshake + WebSocket upgrade, in milliseconds (1 ms to one year;
/// default 10000).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_connect_timeout_ms(
    cfg: *mut kh_config,
    ms: u64,
) -> kh_result {
    set_millis(
        cfg,
        DurationSetting::ConnectTimeout,
        ms,
        ConfigBuilder::connect_timeout,
    )
}

/// How long a close waits for the peer's close reply, in milliseconds (1 ms to one year;
/// default 2000).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_close_timeout_ms(cfg: *mut kh_config, ms: u64) -> kh_result {
    set_millis(
        cfg,
        DurationSetting::CloseTimeout,
        ms,
        ConfigBuilder::close_timeout,
    )
}

/// Rotates every socket once it has been open `ms` milliseconds (0, the default: never; else
/// 1 ms to one year): like `kh_manager_rotate` at that age, for servers that cut connections
/// after a fixed time (e.g. 85800000, 23 h 50 min, for a 24 h limit). A failed rotation is
/// reported (`on_error` / `KH_EVENT_ERROR`) and tried again after the largest reconnect delay;
/// the old socket keeps running meanwhile.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_max_connection_age_ms(
    cfg: *mut kh_config,
    ms: u64,
) -> kh_result {
    set(cfg, |c| {
        if ms == 0 {
            c.update(ConfigBuilder::no_max_connection_age);
        } else {
            let d = millis(DurationSetting::MaxConnectionAge, ms)?;
            c.update(|b| b.max_connection_age(d));
        }
        Ok(())
    })
}

/// Reconnect delay bounds in milliseconds: the delay starts near `min_ms`, doubles per failed
/// attempt (with jitter) and never exceeds `max_ms` (1 ms <= min <= max <= one year; defaults
/// 500 and 30000).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_reconnect_backoff_ms(
    cfg: *mut kh_config,
    min_ms: u64,
    max_ms: u64,
) -> kh_result {
    set(cfg, |c| {
        let (min, max) = (Duration::from_millis(min_ms), Duration::from_millis(max_ms));
        limits::backoff(min, max)?;
        c.update(|b| b.reconnect_backoff(min, max));
        Ok(())
    })
}

/// Data watchdog, in milliseconds (1 ms to one year; off by default): when no data message
/// (text or binary) arrives for this long, the connection reports `KH_IDLE_TIMEOUT` to
/// `on_error` and reconnects, even while the peer answers pings. Checked once per period
/// against the count of data messages, so a silence is detected between `ms` and `2 * ms`
/// after the last data message. Time during which reads wait for room in a polled
/// connection's event queue does not count: a new period starts when reads resume.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_idle_timeout_ms(cfg: *mut kh_config, ms: u64) -> kh_result {
    set_millis(
        cfg,
        DurationSetting::IdleTimeout,
        ms,
        ConfigBuilder::idle_timeout,
    )
}

/// How received binary messages are compressed, for `kh_config_set_inflate`. Values are fixed;
/// new ones are only appended.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum kh_inflate {
    /// Deliver binary messages as they came (the default).
    KH_INFLATE_NONE = 0,
    /// gzip (RFC 1952); its CRC-32 and length are checked.
    KH_INFLATE_GZIP = 1,
    /// zlib (RFC 1950); its Adler-32 is checked.
    KH_INFLATE_ZLIB = 2,
    /// Raw deflate (RFC 1951), no header.
    KH_INFLATE_DEFLATE = 3,
    /// gzip or zlib, told apart by their headers; a message with neither header is delivered
    /// as it came.
    KH_INFLATE_AUTO = 4,
}

/// Inflates every received binary message before it is delivered, `mode` being a
/// `kh_inflate` value (`KH_INVALID_ARGUMENT` for any other; `KH_INFLATE_NONE`, the default,
/// turns it off). Text messages are never inflated. The maximum message size applies to the
/// inflated size, and inflating stops at that limit, so a small message that would inflate
/// to gigabytes costs at most the limit in memory. A message that cannot be inflated
/// (corrupt, truncated, or larger than the limit once inflated) is not delivered: an error
/// event `KH_INFLATE_FAILED` (to `on_error`, or in the event queue) takes its place, and the
/// connection goes on with the next message. The compressed bytes are not delivered because a
/// consumer that asked for inflated messages could not tell them from inflated ones.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_inflate(cfg: *mut kh_config, mode: u32) -> kh_result {
    set(cfg, |c| {
        use crate::config::Compression as C;
        let kind = match mode {
            m if m == kh_inflate::KH_INFLATE_NONE as u32 => None,
            m if m == kh_inflate::KH_INFLATE_GZIP as u32 => Some(C::Gzip),
            m if m == kh_inflate::KH_INFLATE_ZLIB as u32 => Some(C::Zlib),
            m if m == kh_inflate::KH_INFLATE_DEFLATE as u32 => Some(C::Deflate),
            m if m == kh_inflate::KH_INFLATE_AUTO as u32 => Some(C::Auto),
            m => {
                return Err(invalid(format!(
                    "inflate mode {m} is not a kh_inflate value"
                )));
            }
        };
        c.update(|b| b.set_inflate(kind));
        Ok(())
    })
}

/// Consecutive failed connect attempts before the connection gives up (reporting
/// `KH_RETRIES_EXHAUSTED` to `on_error`); 0 (the default) retries forever.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_max_reconnect_attempts(
    cfg: *mut kh_config,
    attempts: u32,
) -> kh_result {
    set(cfg, |c| {
        c.update(|b| b.max_reconnect_attempts(attempts));
        Ok(())
    })
}

/// Adds an HTTP header to the upgrade request (e.g. an API key). Names must be HTTP tokens;
/// values must not contain CR, LF or NUL. Values are never logged. Host, Connection, Upgrade
/// and Sec-WebSocket-* are set by the library and refused here.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_add_header(
    cfg: *mut kh_config,
    name: *const c_char,
    value: *const c_char,
) -> kh_result {
    set(cfg, |c| {
        // SAFETY: NULL or NUL-terminated strings, per the header.
        let (name, value) = unsafe { (arg_str(name, "name")?, arg_str(value, "value")?) };
        limits::header(name, value.as_bytes())?;
        c.update(|b| b.header(name, value));
        Ok(())
    })
}

/// Offers a subprotocol in `Sec-WebSocket-Protocol` (an HTTP token).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_add_subprotocol(
    cfg: *mut kh_config,
    protocol: *const c_char,
) -> kh_result {
    set(cfg, |c| {
        // SAFETY: NULL or a NUL-terminated string, per the header.
        let p = unsafe { arg_str(protocol, "protocol") }?;
        limits::subprotocol(p)?;
        c.update(|b| b.subprotocol(p));
        Ok(())
    })
}

/// Adds a text message (`len` bytes of UTF-8, no NUL needed) sent after every successful
/// connect, before any queued message, in the order added. The bytes are copied.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_add_init_text(
    cfg: *mut kh_config,
    data: *const c_char,
    len: usize,
) -> kh_result {
    set(cfg, |c| {
        // SAFETY: NULL (with len 0) or `len` readable bytes, per the header.
        let bytes = unsafe { arg_bytes(data.cast(), len, "data") }?;
        let text = std::str::from_utf8(bytes)
            .map_err(|e| invalid(format!("init text is not valid UTF-8 ({e})")))?;
        c.update(|b| b.init_text(text));
        Ok(())
    })
}

/// Adds a binary message sent after every successful connect (like `kh_config_add_init_text`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_add_init_binary(
    cfg: *mut kh_config,
    data: *const u8,
    len: usize,
) -> kh_result {
    set(cfg, |c| {
        // SAFETY: NULL (with len 0) or `len` readable bytes, per the header.
        let bytes = unsafe { arg_bytes(data, len, "data") }?;
        let owned = Bytes::copy_from_slice(bytes);
        c.update(|b| b.init_binary(owned));
        Ok(())
    })
}

/// Makes the heartbeat an application text message (e.g. `{"op":"ping"}`) instead of a
/// WebSocket ping frame (`len` bytes of UTF-8, not empty). Any message from the peer then
/// counts as the answer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_ping_text(
    cfg: *mut kh_config,
    data: *const c_char,
    len: usize,
) -> kh_result {
    set(cfg, |c| {
        // SAFETY: NULL (with len 0) or `len` readable bytes, per the header.
        let bytes = unsafe { arg_bytes(data.cast(), len, "data") }?;
        let text = std::str::from_utf8(bytes)
            .map_err(|e| invalid(format!("ping text is not valid UTF-8 ({e})")))?;
        limits::heartbeat_text(text)?;
        let hb = Heartbeat::Text(text.to_string());
        c.update(|b| b.heartbeat(hb));
        Ok(())
    })
}

/// Largest message accepted in either direction, in bytes (> 0; default 16 MiB). A larger
/// incoming message fails the connection with close code 1009; a larger outgoing one is
/// refused with `KH_MESSAGE_TOO_LARGE`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_max_message_size(
    cfg: *mut kh_config,
    bytes: usize,
) -> kh_result {
    set(cfg, |c| {
        let bytes = limits::max_message_size(bytes)?;
        c.update(|b| b.max_message_size(bytes).max_frame_size(bytes));
        Ok(())
    })
}

/// Messages that may wait in the connection's send queue (1 to 16777216; default 1024). A send
/// to a full queue returns `KH_QUEUE_FULL` at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_send_queue_capacity(
    cfg: *mut kh_config,
    messages: usize,
) -> kh_result {
    set(cfg, |c| {
        let messages = limits::send_queue_capacity(messages)?;
        c.update(|b| b.send_queue_capacity(messages));
        Ok(())
    })
}

/// Largest read while the connection is busy, in bytes (256 to 64 MiB; default 1048576): reads
/// start at 65536 bytes (or this, when smaller) and double while the socket fills them. That
/// buffer exists only while data arrives faster than the callbacks take it and is freed when the
/// socket runs dry; an idle connection holds only its frame buffer (see
/// `kh_config_set_frame_buffer_size`). Not above the frame buffer turns batching off.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_read_buffer_size(
    cfg: *mut kh_config,
    bytes: usize,
) -> kh_result {
    set(cfg, |c| {
        let bytes = limits::buffer_size(BufferSetting::Read, bytes)?;
        c.update(|b| b.read_buffer_size(bytes));
        Ok(())
    })
}

/// tungstenite's read buffer in bytes, held by every connection for its whole life (256 to
/// 64 MiB; default 4096). 16384 brings the throughput of 1 KiB messages up to raw
/// tokio-tungstenite's, for 12 KiB more per connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_frame_buffer_size(
    cfg: *mut kh_config,
    bytes: usize,
) -> kh_result {
    set(cfg, |c| {
        let bytes = limits::buffer_size(BufferSetting::Frame, bytes)?;
        c.update(|b| b.frame_buffer_size(bytes));
        Ok(())
    })
}

/// Trusts the CA certificates in the PEM file at `path` for `wss://`, in addition to the
/// system's roots. The file is read and checked now. Certificate verification is always on.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_add_ca_file(
    cfg: *mut kh_config,
    path: *const c_char,
) -> kh_result {
    set(cfg, |c| {
        // SAFETY: NULL or a NUL-terminated string, per the header.
        let path = unsafe { arg_str(path, "path") }?;
        crate::tls::check_ca_file(std::path::Path::new(path))?;
        c.update(|b| b.add_ca_file(path));
        Ok(())
    })
}

/// Authenticates to `wss://` servers with a client certificate (mutual TLS): `chain_path` is a
/// PEM file with the certificate chain (leaf first), `key_path` a PEM file with its private key
/// (PKCS#8, PKCS#1 or SEC1). Both are read now and checked to belong together; a bad file or a
/// key that does not match the certificate is refused with `KH_INVALID_ARGUMENT` and changes
/// nothing. Replaces an earlier client certificate. The key is never logged and never appears
/// in an error message. Ignored (with a warning) for `ws://`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_client_cert_files(
    cfg: *mut kh_config,
    chain_path: *const c_char,
    key_path: *const c_char,
) -> kh_result {
    set(cfg, |c| {
        // SAFETY: NULL or NUL-terminated strings, per the header.
        let (chain, key) = unsafe {
            (
                arg_str(chain_path, "chain_path")?,
                arg_str(key_path, "key_path")?,
            )
        };
        let cert = ClientCert::Files {
            chain: chain.into(),
            key: key.into(),
        };
        crate::tls::check_client_cert(&cert)?;
        c.update(|b| b.client_cert_files(chain, key));
        Ok(())
    })
}

/// Like `kh_config_set_client_cert_files`, from PEM in memory: `chain_len` bytes at `chain` and
/// `key_len` bytes at `key` (no NUL needed), copied (the copy is dropped by the next change or
/// by `kh_config_free`; connections keep only the parsed key).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_client_cert_pem(
    cfg: *mut kh_config,
    chain: *const u8,
    chain_len: usize,
    key: *const u8,
    key_len: usize,
) -> kh_result {
    set(cfg, |c| {
        // SAFETY: NULL or pointers to `len` readable bytes, per the header.
        let (chain, key) = unsafe {
            (
                arg_bytes(chain, chain_len, "chain")?,
                arg_bytes(key, key_len, "key")?,
            )
        };
        let cert = ClientCert::Pem {
            chain: chain.to_vec(),
            key: key.to_vec(),
        };
        crate::tls::check_client_cert(&cert)?;
        c.update(|b| b.client_cert_pem(chain, key));
        Ok(())
    })
}

/// Connects through a proxy: `url` is `http://[user:password@]host:port` (HTTP `CONNECT`) or
/// `socks5://[user:password@]host:port` (the proxy resolves the target's host name).
/// Credentials may be percent-encoded; they are secrets, never logged and never in an error
/// message. TLS and the WebSocket upgrade run end to end through the tunnel (certificates
/// checked against the target's name), and the connect timeout covers the proxy too: a proxy
/// that refuses, answers garbage or never answers fails the attempt with a clear error, then
/// the normal backoff applies. Checked now: a bad URL is refused with `KH_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_proxy(cfg: *mut kh_config, url: *const c_char) -> kh_result {
    set(cfg, |c| {
        // SAFETY: NULL or a NUL-terminated string, per the header.
        let url = unsafe { arg_str(url, "url") }?;
        limits::proxy(url)?;
        c.update(|b| b.proxy(url));
        Ok(())
    })
}

/// Adds a URL to dial when the ones before it fail to connect (another region, a backup port),
/// checked like the URL of `kh_config_new`. Each attempt tries the main URL, then the fallbacks
/// in the order added; only a round in which every URL failed counts as a failed attempt and
/// waits for the backoff. Each failure is reported to `on_error`; `kh_manager_endpoint` says
/// which URL an open connection uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_add_fallback_url(
    cfg: *mut kh_config,
    url: *const c_char,
) -> kh_result {
    set(cfg, |c| {
        // SAFETY: NULL or a NUL-terminated string, per the header.
        let url = unsafe { arg_str(url, "url") }?;
        limits::url(url)?;
        c.update(|b| b.fallback_url(url));
        Ok(())
    })
}

/// Limits the data messages written on the connection's socket to `messages` per `per_ms`
/// milliseconds, with bursts of up to `burst` at once (a GCRA: after a burst, one message every
/// `per_ms / messages` ms). Text and binary messages count, the init messages included (they
/// still go first); heartbeats, pings and pongs count too after
/// `kh_config_set_rate_limit_pings(cfg, 1)`. A send above the rate is accepted and waits in
/// the send queue, in order, until the limit allows it; the queue's bound still applies (a
/// send to a full queue returns `KH_QUEUE_FULL`). Each new socket starts with a full burst.
/// Default: no limit. `messages` and `burst` positive, `per_ms` 1 ms to one year; otherwise
/// `KH_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_send_rate_limit(
    cfg: *mut kh_config,
    messages: u32,
    per_ms: u64,
    burst: u32,
) -> kh_result {
    set(cfg, |c| {
        let per = Duration::from_millis(per_ms);
        limits::rate("send_rate_limit", messages, per, burst)?;
        c.update(|b| b.send_rate_limit(messages, per, burst));
        Ok(())
    })
}

/// With a send rate limit (`kh_config_set_send_rate_limit`), heartbeats (pings or the text
/// heartbeat), pings sent with `kh_manager_send_ping` and pongs take permits too (`count`
/// nonzero), for exchanges that count them; the pongs written automatically in answer to the
/// peer's pings are charged for each ping received (the limit goes into debt and the next
/// sends wait). A due heartbeat then waits for its permit, ahead of
/// the queued messages but never twice in a row while a message waits. Default 0; without a
/// limit it does nothing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_rate_limit_pings(
    cfg: *mut kh_config,
    count: std::ffi::c_int,
) -> kh_result {
    set(cfg, |c| {
        c.update(|b| b.rate_limit_pings(count != 0));
        Ok(())
    })
}

/// Stamps every received message with its receive time (`on` nonzero; default 0): monotonic
/// nanoseconds (`CLOCK_MONOTONIC`, comparable with `clock_gettime(CLOCK_MONOTONIC)` in the same
/// process) and wall-clock nanoseconds since the Unix epoch (`CLOCK_REALTIME`). The clocks are
/// read once per read of the socket that returned bytes, not once per message: the messages
/// parsed from one read share its time, and a message that spans two reads gets the time of
/// the read that completed it (messages that came with the upgrade response get the time the
/// connection opened). Polled connections carry the times in `recv_mono_ns`/`recv_wall_ns` of
/// `kh_event`; callbacks ask `kh_receive_time` while they run.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_config_set_receive_timestamps(
    cfg: *mut kh_config,
    on: std::ffi::c_int,
) -> kh_result {
    set(cfg, |c| {
        c.update(|b| b.receive_timestamps(on != 0));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_config(url: &std::ffi::CStr) -> *mut kh_config {
        let mut cfg = std::ptr::null_mut();
        // SAFETY: a NUL-terminated URL and a writable out-pointer.
        assert_eq!(
            unsafe { kh_config_new(url.as_ptr(), &mut cfg) },
            kh_result::KH_OK
        );
        cfg
    }

    #[test]
    fn setters_reach_the_built_config_and_refuse_out_of_range_values() {
        let cfg = new_config(c"ws://h/feed");
        // SAFETY: a live builder from kh_config_new, freed once at the end.
        unsafe {
            assert_eq!(kh_config_set_ping_interval_ms(cfg, 1500), kh_result::KH_OK);
            assert_eq!(kh_config_set_close_timeout_ms(cfg, 700), kh_result::KH_OK);
            assert_eq!(
                kh_config_set_max_reconnect_attempts(cfg, 4),
                kh_result::KH_OK
            );
            assert_eq!(kh_config_set_send_queue_capacity(cfg, 3), kh_result::KH_OK);
            assert_eq!(
                kh_config_set_pong_timeout_ms(cfg, 0),
                kh_result::KH_INVALID_ARGUMENT
            );
            assert_eq!(
                kh_config_set_ping_interval_ms(std::ptr::null_mut(), 10),
                kh_result::KH_INVALID_ARGUMENT
            );
            let c = (*cfg).build().unwrap();
            assert_eq!(c.url(), "ws://h/feed");
            assert_eq!(c.ping_interval(), Duration::from_millis(1500));
            assert_eq!(c.close_timeout(), Duration::from_millis(700));
            assert_eq!(c.max_reconnect_attempts(), 4);
            assert_eq!(c.send_queue_capacity(), 3);
            // The refused setting left the default in place.
            assert_eq!(c.pong_timeout(), crate::config::defaults::PONG_TIMEOUT);
            kh_config_free(cfg);
        }
    }

    #[test]
    fn the_watchdog_and_inflate_setters_default_off_and_refuse_bad_values() {
        use crate::config::Compression;
        let cfg = new_config(c"ws://h/feed");
        // SAFETY: a live builder from kh_config_new, freed once at the end.
        unsafe {
            let c = (*cfg).build().unwrap();
            assert_eq!((c.idle_timeout(), c.inflate()), (None, None));
            assert_eq!(
                kh_config_set_idle_timeout_ms(cfg, 0),
                kh_result::KH_INVALID_ARGUMENT
            );
            assert_eq!(kh_config_set_idle_timeout_ms(cfg, 250), kh_result::KH_OK);
            for bad in [5, 99, u32::MAX] {
                assert_eq!(
                    kh_config_set_inflate(cfg, bad),
                    kh_result::KH_INVALID_ARGUMENT
                );
            }
            for (mode, want) in [
                (kh_inflate::KH_INFLATE_GZIP, Some(Compression::Gzip)),
                (kh_inflate::KH_INFLATE_ZLIB, Some(Compression::Zlib)),
                (kh_inflate::KH_INFLATE_DEFLATE, Some(Compression::Deflate)),
                (kh_inflate::KH_INFLATE_AUTO, Some(Compression::Auto)),
                (kh_inflate::KH_INFLATE_NONE, None),
            ] {
                assert_eq!(kh_config_set_inflate(cfg, mode as u32), kh_result::KH_OK);
                let c = (*cfg).build().unwrap();
                assert_eq!(c.inflate(), want, "{mode:?}");
                assert_eq!(c.idle_timeout(), Some(Duration::from_millis(250)));
            }
            kh_config_free(cfg);
        }
    }
}
