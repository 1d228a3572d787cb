//! Result codes, their names and the per-thread message of the last failure.

use std::cell::RefCell;
use std::ffi::{CStr, c_char};

use super::boundary::{guard_or, opt_buf};
use crate::error::ConnectionError;

/// The result of every `kh_` call. `KH_OK` is 0; every other value names what went wrong, and
/// `kh_last_error` gives the details. Values are fixed and new codes are only ever appended.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum kh_result {
    /// Success.
    KH_OK = 0,
    /// Writing the heartbeat ping failed.
    KH_PING_FAILED = 1,
    /// No answer to the heartbeat within the pong timeout.
    KH_PONG_RECEIVE_TIMEOUT = 2,
    /// Reading failed or the peer broke the protocol.
    KH_READ_ERROR = 3,
    /// An accepted message could not be written.
    KH_WRITE_ERROR = 4,
    /// The connection is not open (dropped, reconnecting or closed).
    KH_CONNECTION_DROPPED = 5,
    /// No connection has this name.
    KH_CONNECTION_NOT_FOUND = 6,
    /// TCP connect, TLS handshake or WebSocket upgrade failed.
    KH_CONNECT_FAILED = 7,
    /// An argument was NULL, not UTF-8, out of range or otherwise refused.
    KH_INVALID_ARGUMENT = 8,
    /// A connection with this name exists already, or (from `kh_log_set_callback`) a logger is
    /// installed already.
    KH_ALREADY_EXISTS = 9,
    /// The send queue is full; nothing was queued.
    KH_QUEUE_FULL = 10,
    /// The manager is shutting down.
    KH_SHUTTING_DOWN = 11,
    /// A bounded wait ran out.
    KH_TIMEOUT = 12,
    /// An internal panic was caught at the boundary (a bug: please report it).
    KH_PANIC = 13,
    /// The configured number of reconnect attempts failed; the connection stopped.
    KH_RETRIES_EXHAUSTED = 14,
    /// A message exceeds the configured maximum size.
    KH_MESSAGE_TOO_LARGE = 15,
    /// The operating system refused a resource (threads for the runtime).
    KH_SYSTEM_ERROR = 16,
    /// No data message arrived within the idle timeout (`kh_config_set_idle_timeout_ms`),
    /// though pings may have been answered; the connection reconnects.
    KH_IDLE_TIMEOUT = 17,
    /// A binary message could not be inflated (`kh_config_set_inflate`): corrupt, truncated
    /// or larger than the maximum message size once inflated. Reported instead of the
    /// message; the connection goes on.
    KH_INFLATE_FAILED = 18,
    /// The connection has no subscription with this key (`kh_manager_unsubscribe_*`).
    KH_SUBSCRIPTION_NOT_FOUND = 19,
    /// The connection has a subscription with this key already; nothing changed.
    KH_SUBSCRIPTION_EXISTS = 20,
}

/// Defines `TABLE`: each code with its `kh_result_str` text, `NAME: description`, the name
/// taken from the variant itself. The list must name every variant (or the `match` below is not
/// exhaustive) in the order of their values (or the check after it fails): a code added to
/// the enum but not here, or a renumbering, does not compile.
macro_rules! result_table {
    ($($name:ident: $description:literal,)*) => {
        const TABLE: &[(kh_result, &CStr)] = &[$((
            kh_result::$name,
            match CStr::from_bytes_with_nul(
                concat!(stringify!($name), ": ", $description, "\0").as_bytes(),
            ) {
                Ok(s) => s,
                Err(_) => panic!("a description holds a NUL"),
            },
        ),)*];

        const _: fn(kh_result) = |r| match r {
            $(kh_result::$name => {})*
        };
    };
}

result_table! {
    KH_OK: "success",
    KH_PING_FAILED: "writing the heartbeat ping failed",
    KH_PONG_RECEIVE_TIMEOUT: "no answer to the heartbeat in time",
    KH_READ_ERROR: "read failed or the peer broke the protocol",
    KH_WRITE_ERROR: "an accepted message could not be written",
    KH_CONNECTION_DROPPED: "the connection is not open",
    KH_CONNECTION_NOT_FOUND: "no connection has this name",
    KH_CONNECT_FAILED: "connect, TLS or upgrade failed",
    KH_INVALID_ARGUMENT: "an argument was refused",
    KH_ALREADY_EXISTS: "a connection with this name exists",
    KH_QUEUE_FULL: "the send queue is full",
    KH_SHUTTING_DOWN: "the manager is shutting down",
    KH_TIMEOUT: "timed out",
    KH_PANIC: "internal error (please report)",
    KH_RETRIES_EXHAUSTED: "reconnect attempts exhausted",
    KH_MESSAGE_TOO_LARGE: "message exceeds the maximum size",
    KH_SYSTEM_ERROR: "the operating system refused a resource",
    KH_IDLE_TIMEOUT: "no data message within the idle timeout",
    KH_INFLATE_FAILED: "a binary message could not be inflated",
    KH_SUBSCRIPTION_NOT_FOUND: "no subscription has this key",
    KH_SUBSCRIPTION_EXISTS: "a subscription with this key exists",
}

// Values ascend through the table. Codes are assigned per feature, so a value may be unused
// (17 and 18 were reserved for other features when 19 and 20 were added): a lookup searches.
const _: () = {
    let mut i = 1;
    while i < TABLE.len() {
        assert!(
            (TABLE[i - 1].0 as usize) < TABLE[i].0 as usize,
            "TABLE is not in the order of the values"
        );
        i += 1;
    }
};

impl From<&ConnectionError> for kh_result {
    fn from(e: &ConnectionError) -> Self {
        use ConnectionError as E;
        match e {
            E::PingFailed(_) => Self::KH_PING_FAILED,
            E::PongReceiveTimeout(_) => Self::KH_PONG_RECEIVE_TIMEOUT,
            E::ReadError(_) => Self::KH_READ_ERROR,
            E::WriteError(_) => Self::KH_WRITE_ERROR,
            E::ConnectionDropped(_) => Self::KH_CONNECTION_DROPPED,
            E::ConnectionNotFound(_) => Self::KH_CONNECTION_NOT_FOUND,
            E::ConnectFailed(_) => Self::KH_CONNECT_FAILED,
            E::InvalidArgument(_) => Self::KH_INVALID_ARGUMENT,
            E::AlreadyExists(_) => Self::KH_ALREADY_EXISTS,
            E::QueueFull(_) => Self::KH_QUEUE_FULL,
            E::ShuttingDown => Self::KH_SHUTTING_DOWN,
            E::Timeout(_) => Self::KH_TIMEOUT,
            E::RetriesExhausted(_) => Self::KH_RETRIES_EXHAUSTED,
            E::MessageTooLarge { .. } => Self::KH_MESSAGE_TOO_LARGE,
            E::System(_) => Self::KH_SYSTEM_ERROR,
            E::IdleTimeout(_) => Self::KH_IDLE_TIMEOUT,
            E::InflateFailed(_) => Self::KH_INFLATE_FAILED,
            E::SubscriptionNotFound(_) => Self::KH_SUBSCRIPTION_NOT_FOUND,
            E::SubscriptionExists(_) => Self::KH_SUBSCRIPTION_EXISTS,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records the message `kh_last_error` gives on this thread.
/// A failure's message as a C string for a callback or an event: a NUL inside (which a C
/// string cannot hold) becomes a space.
pub(crate) fn error_message(e: &ConnectionError) -> std::ffi::CString {
    std::ffi::CString::new(e.to_string().replace('\0', " ")).unwrap_or_default()
}

pub(crate) fn set_last_error(msg: String) {
    // try_with: a call from a thread-local destructor after ours was destroyed must not panic.
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut slot) = e.try_borrow_mut() {
            *slot = msg;
        }
    });
}

/// A static, NUL-terminated description of a `kh_result` value (e.g.
/// `"KH_QUEUE_FULL: the send queue is full"`). Never NULL; an unknown value gives
/// `"KH_UNKNOWN"`. The string lives for the whole process.
#[unsafe(no_mangle)]
pub extern "C" fn kh_result_str(result: u32) -> *const c_char {
    // Taken as an integer: a C caller may pass any value, and an out-of-range Rust enum would
    // be undefined behaviour.
    const UNKNOWN: &CStr = c"KH_UNKNOWN";
    guard_or(UNKNOWN.as_ptr(), || {
        let entry = TABLE.iter().find(|(code, _)| *code as u32 == result);
        entry.map_or(UNKNOWN, |(_, s)| s).as_ptr()
    })
}

/// Copies the message of the last failed `kh_` call on this thread into `buf` (at most `len`
/// bytes including the terminating NUL, always terminated when `len > 0`) and returns the full
/// length of the message without the NUL, like `snprintf`. `buf` may be NULL when `len` is 0,
/// to ask for the length. Returns 0 when no call has failed on this thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_last_error(buf: *mut c_char, len: usize) -> usize {
    guard_or(0, || {
        // try_with and try_borrow: called from a thread-local destructor, or while the message
        // is being replaced, this answers 0 rather than panicking.
        LAST_ERROR
            .try_with(|e| {
                let Ok(msg) = e.try_borrow() else {
                    return 0;
                };
                let bytes = msg.as_bytes();
                // SAFETY: NULL, or `len` writable bytes, per the header.
                if let Some(dst) = unsafe { opt_buf(buf, len) } {
                    let n = bytes.len().min(dst.len() - 1);
                    for (d, s) in dst.iter_mut().zip(&bytes[..n]) {
                        d.write(*s);
                    }
                    dst[n].write(0);
                }
                bytes.len()
            })
            .unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(code: u32) -> &'static str {
        // SAFETY: kh_result_str always returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(kh_result_str(code)) }
            .to_str()
            .unwrap()
    }

    #[test]
    fn every_code_has_its_name_and_unknown_values_have_none() {
        assert_eq!(text(0), "KH_OK: success");
        assert_eq!(text(10), "KH_QUEUE_FULL: the send queue is full");
        assert_eq!(
            text(kh_result::KH_SYSTEM_ERROR as u32),
            "KH_SYSTEM_ERROR: the operating system refused a resource"
        );
        for (code, _) in TABLE {
            assert!(text(*code as u32).starts_with(&format!("{code:?}: ")));
        }
        assert_eq!(
            text(19),
            "KH_SUBSCRIPTION_NOT_FOUND: no subscription has this key"
        );
        for v in [21, 99, u32::MAX] {
            assert_eq!(text(v), "KH_UNKNOWN");
        }
    }
}
