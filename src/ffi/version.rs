//! The library's version and its log.

use std::ffi::c_char;

use super::boundary::{guard, guard_or, opt_str};
use super::result::kh_result;

/// The library version, e.g. `"0.1.0"` (static; equals `KH_VERSION_STRING` of the header the
/// library was built with).
#[unsafe(no_mangle)]
pub extern "C" fn kh_version() -> *const c_char {
    const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    guard_or(V.as_ptr().cast(), || V.as_ptr().cast())
}

/// Sends the library's log to stderr through `env_logger`, filtered like `RUST_LOG` (e.g.
/// `"info"`, `"kharbranth=debug"`); NULL reads `RUST_LOG` (default `info`). Calling it again,
/// or after another logger was installed (`kh_log_set_callback`), changes nothing and returns
/// `KH_OK`. `kh_log_set_callback` sends the log to the host's logger instead.
///
/// No record holds a message payload or a secret at any level: records of `tungstenite` and
/// `tokio_tungstenite` above info, and of `rustls` above debug, are dropped unless the filter
/// names that crate explicitly (as for `kh_log_set_callback`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_log_init(filter: *const c_char) -> kh_result {
    guard(|| {
        // SAFETY: NULL or a NUL-terminated string, per the header.
        let filter = unsafe { opt_str(filter, "filter") }?;
        crate::logging::init_logging(filter);
        Ok(())
    })
}
