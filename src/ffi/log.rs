//! The library's log delivered to the host's own logger (`kh_log_set_callback`).
//!
//! The convention follows rustls-ffi's `rustls_log_callback` (user data first, a level, the
//! text valid during the call only), with the record's target added so a host can route the
//! library's records like its own, and with NUL-terminated strings so they can go straight to
//! a C logging API.

use std::cell::Cell;
use std::ffi::{CString, c_char, c_void};

use ::log::{Level, Log, Metadata, Record};

use super::boundary::{guard, opt_str};
use super::result::kh_result;
use crate::error::ConnectionError;
use crate::logging;

/// Severity of a log record passed to a `kh_log_callback` (the values of Rust's `log::Level`:
/// a smaller value is more severe).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum kh_log_level {
    /// Something failed.
    KH_LOG_ERROR = 1,
    /// Something unexpected the library recovered from (e.g. a failed connect attempt).
    KH_LOG_WARN = 2,
    /// Lifecycle events: connecting, open, reconnecting, closed.
    KH_LOG_INFO = 3,
    /// Details useful when debugging.
    KH_LOG_DEBUG = 4,
    /// Per-message details (sizes and kinds, never contents).
    KH_LOG_TRACE = 5,
}

impl From<Level> for kh_log_level {
    fn from(level: Level) -> Self {
        match level {
            Level::Error => Self::KH_LOG_ERROR,
            Level::Warn => Self::KH_LOG_WARN,
            Level::Info => Self::KH_LOG_INFO,
            Level::Debug => Self::KH_LOG_DEBUG,
            Level::Trace => Self::KH_LOG_TRACE,
        }
    }
}

/// Receives one log record: `user_data` as given to `kh_log_set_callback`, the record's level,
/// its target (the Rust module that logged it, e.g. `"kharbranth::supervisor"`) and its
/// message. `target` and `message` are NUL-terminated UTF-8, never NULL, and valid only until
/// the callback returns.
pub type kh_log_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: kh_log_level,
        target: *const c_char,
        message: *const c_char,
    ),
>;

/// Sends the library's log to `callback` instead of stderr, filtered like `kh_log_init` (`filter`
/// like `RUST_LOG`, e.g. `"info"`, `"kharbranth=debug"`; NULL reads `RUST_LOG`, default `info`).
///
/// Once per process: Rust's `log` crate holds one logger for the whole process, and it cannot
/// be replaced or removed. A second call, or a call after `kh_log_init` installed the stderr
/// logger (or after any other Rust code in the process installed one), changes nothing and
/// returns `KH_ALREADY_EXISTS`; a NULL `callback` returns `KH_INVALID_ARGUMENT`. Call it
/// before `kh_manager_new` so no record is lost.
///
/// The callback may be called from any thread of the library (the managers' runtime threads
/// and the threads that call `kh_` functions), several at once: it must be thread-safe. It
/// must return normally (no C++ exception, no longjmp), should be quick (it runs on the threads
/// that serve the connections), and must not call `kh_log_init` or `kh_log_set_callback`;
/// records the library would log while the callback runs on the same thread are dropped, so
/// it may call the other `kh_` functions. `user_data` is kept for the rest of the process.
///
/// No record holds a message payload, a header value or other secret at any level: records of
/// `tungstenite` and `tokio_tungstenite` above info, and of `rustls` above debug, are dropped
/// unless `filter` names that crate explicitly (e.g. `"trace,tungstenite=trace"`, which may
/// print payloads and headers).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_log_set_callback(
    callback: kh_log_callback,
    user_data: *mut c_void,
    filter: *const c_char,
) -> kh_result {
    guard(|| {
        let callback = callback
            .ok_or_else(|| ConnectionError::InvalidArgument("callback is NULL".to_string()))?;
        // SAFETY: NULL or a NUL-terminated string, per the header.
        let filter = unsafe { opt_str(filter, "filter") }?;
        let spec = logging::effective_spec(filter);
        let matcher = logging::matcher(&spec);
        let max = matcher.filter();
        let logger = HostLogger {
            matcher,
            callback,
            user_data: UserData(user_data),
        };
        logging::install_capped(Box::new(logger), &spec, max).map_err(|_| {
            ConnectionError::AlreadyExists(
                "a logger is installed already (kh_log_set_callback and kh_log_init work once \
                 per process)"
                    .to_string(),
            )
        })
    })
}

/// The caller's pointer, handed back to the callback only.
struct UserData(*mut c_void);

// SAFETY: the library never dereferences it; the header requires a callback that is safe to
// call from any thread with it.
unsafe impl Send for UserData {}
// SAFETY: as above.
unsafe impl Sync for UserData {}

struct HostLogger {
    matcher: env_logger::Logger,
    callback: unsafe extern "C" fn(*mut c_void, kh_log_level, *const c_char, *const c_char),
    user_data: UserData,
}

thread_local! {
    /// Set while this thread runs the host's callback: a `kh_` call made from the callback
    /// could log, and delivering that record would recurse into the callback.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// A string for C: NUL bytes inside it (possible in a formatted message) become U+FFFD, so the
/// text is not cut short.
fn c_string(text: String) -> CString {
    let text = if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    };
    CString::new(text).unwrap_or_default()
}

impl Log for HostLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.matcher.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.matcher.matches(record) {
            return;
        }
        // try_with: a record logged from a thread-local destructor after ours was destroyed is
        // dropped rather than panicking.
        if IN_CALLBACK.try_with(Cell::get).unwrap_or(true) {
            return;
        }
        // Formatted before the flag is set: nothing between setting and clearing it can panic.
        let target = c_string(record.target().to_string());
        let message = c_string(record.args().to_string());
        let _ = IN_CALLBACK.try_with(|busy| busy.set(true));
        // SAFETY: a function pointer the caller gave for this purpose; both strings live until
        // it returns, as the header promises.
        unsafe {
            (self.callback)(
                self.user_data.0,
                record.level().into(),
                target.as_ptr(),
                message.as_ptr(),
            )
        };
        let _ = IN_CALLBACK.try_with(|busy| busy.set(false));
    }

    fn flush(&self) {}
}
