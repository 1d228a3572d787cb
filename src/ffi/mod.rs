//! The C ABI (`include/kharbranth.h`, every symbol prefixed `kh_`).
//!
//! This layer is thin on purpose: it checks and converts arguments, then calls the Rust API.
//! Every exported function runs its body through [`guard`], the single panic boundary, and
//! reads pointers only through the checked helpers below, so no function hand-rolls a NULL
//! check or a `catch_unwind`.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)] // The safety contract of each function is in the header.

mod config;
mod hooks;
mod manager;
mod result;

use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

pub use config::*;
pub use hooks::*;
pub use manager::*;
pub use result::*;

use crate::error::{ConnectionError, Result};

/// Runs an exported function's body: catches any panic and turns every outcome into a
/// `kh_result`, recording the message of a failure for `kh_last_error`.
pub(crate) fn guard(body: impl FnOnce() -> Result<()>) -> kh_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => kh_result::KH_OK,
        Ok(Err(e)) => {
            let code = kh_result::from(&e);
            result::set_last_error(e.to_string());
            code
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            result::set_last_error(format!("internal error (panic): {what}"));
            kh_result::KH_PANIC
        }
    }
}

/// Like [`guard`] for functions that return nothing (the `_free` functions).
pub(crate) fn guard_void(body: impl FnOnce()) {
    let _ = guard(|| {
        body();
        Ok(())
    });
}

fn invalid(msg: String) -> ConnectionError {
    ConnectionError::InvalidArgument(msg)
}

/// A shared reference from a pointer the caller promised is valid or NULL.
pub(crate) unsafe fn arg_ref<'a, T>(p: *const T, what: &str) -> Result<&'a T> {
    // SAFETY: the caller passes either NULL (refused here) or a pointer from the matching
    // `_new` that it has not freed, as the header requires.
    unsafe { p.as_ref() }.ok_or_else(|| invalid(format!("{what} is NULL")))
}

/// A mutable reference from a pointer the caller promised is valid or NULL.
pub(crate) unsafe fn arg_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T> {
    // SAFETY: as for `arg_ref`; the header forbids concurrent use of one builder.
    unsafe { p.as_mut() }.ok_or_else(|| invalid(format!("{what} is NULL")))
}

/// A UTF-8 string from a NUL-terminated C string.
pub(crate) unsafe fn arg_str<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and, per the header, NUL-terminated and valid for the call.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|e| invalid(format!("{what} is not valid UTF-8 ({e})")))
}

/// A byte slice from pointer + length; NULL is allowed only with length 0.
pub(crate) unsafe fn arg_bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL but its length is {len}")));
    }
    if len > isize::MAX as usize {
        return Err(invalid(format!("{what} length {len} is too large")));
    }
    // SAFETY: non-NULL, and the caller guarantees `len` readable bytes for the call.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Writes an out-parameter (only ever on success).
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T, what: &str) -> Result<()> {
    if out.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and, per the header, valid for writes of T.
    unsafe { out.write(value) };
    Ok(())
}
