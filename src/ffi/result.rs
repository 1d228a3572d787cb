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
    /// A connection with this name exists already.
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
}

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
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records the message `kh_last_error` gives on this thread.
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
        let s: &'static CStr = match result {
            0 => c"KH_OK: success",
            1 => c"KH_PING_FAILED: writing the heartbeat ping failed",
            2 => c"KH_PONG_RECEIVE_TIMEOUT: no answer to the heartbeat in time",
            3 => c"KH_READ_ERROR: read failed or the peer broke the protocol",
            4 => c"KH_WRITE_ERROR: an accepted message could not be written",
            5 => c"KH_CONNECTION_DROPPED: the connection is not open",
            6 => c"KH_CONNECTION_NOT_FOUND: no connection has this name",
            7 => c"KH_CONNECT_FAILED: connect, TLS or upgrade failed",
            8 => c"KH_INVALID_ARGUMENT: an argument was refused",
            9 => c"KH_ALREADY_EXISTS: a connection with this name exists",
            10 => c"KH_QUEUE_FULL: the send queue is full",
            11 => c"KH_SHUTTING_DOWN: the manager is shutting down",
            12 => c"KH_TIMEOUT: timed out",
            13 => c"KH_PANIC: internal error (please report)",
            14 => c"KH_RETRIES_EXHAUSTED: reconnect attempts exhausted",
            15 => c"KH_MESSAGE_TOO_LARGE: message exceeds the maximum size",
            16 => c"KH_SYSTEM_ERROR: the operating system refused a resource",
            _ => UNKNOWN,
        };
        s.as_ptr()
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
