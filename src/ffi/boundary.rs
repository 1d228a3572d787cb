//! The one panic boundary and every argument helper of the C ABI.
//!
//! Everything that trusts a C caller's pointer is here, next to the promise in the header it
//! relies on, so the exported functions contain no NULL check and no `catch_unwind` of their
//! own. Each helper refuses NULL with `KH_INVALID_ARGUMENT` and a message naming the argument,
//! unless its name says the pointer is optional.

use std::ffi::{CStr, c_char};
use std::mem::MaybeUninit;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::result::{kh_result, set_last_error};
use crate::error::{ConnectionError, Result};

/// Runs the body of a function that returns `kh_result`: turns every outcome into a code,
/// records the message of a failure for `kh_last_error`, and stops any panic here, since
/// unwinding into C is undefined behaviour.
pub(crate) fn guard(body: impl FnOnce() -> Result<()>) -> kh_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => kh_result::KH_OK,
        Ok(Err(e)) => {
            let code = kh_result::from(&e);
            set_last_error(e.to_string());
            code
        }
        Err(payload) => {
            record_panic(payload.as_ref());
            kh_result::KH_PANIC
        }
    }
}

/// Like [`guard`] for the `_free` functions, which return nothing: a panic is recorded for
/// `kh_last_error` and otherwise swallowed.
pub(crate) fn guard_void(body: impl FnOnce()) {
    guard_or((), body);
}

/// Like [`guard`] for functions that return a value rather than a code (`kh_last_error`,
/// `kh_result_str`): a panic gives `default`.
pub(crate) fn guard_or<T>(default: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        record_panic(payload.as_ref());
        default
    })
}

fn record_panic(payload: &(dyn std::any::Any + Send)) {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    set_last_error(format!("internal error (panic): {what}"));
}

fn invalid(msg: String) -> ConnectionError {
    ConnectionError::InvalidArgument(msg)
}

/// A required object pointer, read-only.
pub(crate) unsafe fn arg_ref<'a, T>(p: *const T, what: &str) -> Result<&'a T> {
    // SAFETY: not NULL here; the header requires a pointer from the matching `_new` that has
    // not been freed.
    unsafe { opt_ref(p) }.ok_or_else(|| invalid(format!("{what} is NULL")))
}

/// A required object pointer the call changes.
pub(crate) unsafe fn arg_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T> {
    // SAFETY: as for `arg_ref`; the header forbids using one builder from two threads at once,
    // so nothing else holds a reference meanwhile.
    unsafe { p.as_mut() }.ok_or_else(|| invalid(format!("{what} is NULL")))
}

/// An optional pointer: NULL gives `None`.
pub(crate) unsafe fn opt_ref<'a, T>(p: *const T) -> Option<&'a T> {
    // SAFETY: NULL, or valid for reads during the call, as the header requires.
    unsafe { p.as_ref() }
}

/// A required NUL-terminated UTF-8 string.
pub(crate) unsafe fn arg_str<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    // SAFETY: forwarded; the header requires NULL or a NUL-terminated string.
    unsafe { opt_str(p, what) }?.ok_or_else(|| invalid(format!("{what} is NULL")))
}

/// An optional NUL-terminated UTF-8 string: NULL gives `None`; invalid UTF-8 is refused.
pub(crate) unsafe fn opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: not NULL and, per the header, NUL-terminated and valid for the call.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(Some)
        .map_err(|e| invalid(format!("{what} is not valid UTF-8 ({e})")))
}

/// Pointer + length of input bytes; NULL is allowed only with length 0.
pub(crate) unsafe fn arg_bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL but its length is {len}")));
    }
    // `from_raw_parts` requires it, and no real buffer is larger.
    if len > isize::MAX as usize {
        return Err(invalid(format!("{what} length {len} is too large")));
    }
    // SAFETY: not NULL, and the caller guarantees `len` readable bytes for the call.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Pointer + length of a caller's output buffer, possibly uninitialised: `None` when NULL or
/// when the length is 0 (both mean "no room").
pub(crate) unsafe fn opt_buf<'a>(p: *mut c_char, len: usize) -> Option<&'a mut [MaybeUninit<u8>]> {
    if p.is_null() || len == 0 {
        return None;
    }
    // No real buffer is larger, and `from_raw_parts_mut` requires it.
    let len = len.min(isize::MAX as usize);
    // SAFETY: not NULL, and the caller guarantees `len` writable bytes for the call.
    Some(unsafe { std::slice::from_raw_parts_mut(p.cast(), len) })
}

/// A caller's output array of `len` elements, possibly uninitialised. Refuses NULL and a length
/// of 0 (a call could write nothing into it).
pub(crate) unsafe fn arg_out_array<'a, T>(
    p: *mut T,
    len: usize,
    what: &str,
) -> Result<&'a mut [MaybeUninit<T>]> {
    if len == 0 {
        return Err(invalid(format!("the capacity of {what} is 0")));
    }
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL but its capacity is {len}")));
    }
    // No real array is larger, and `from_raw_parts_mut` requires it.
    let len = len.min(isize::MAX as usize / size_of::<T>().max(1));
    // SAFETY: not NULL, and the caller guarantees room for `len` elements for the call.
    Ok(unsafe { std::slice::from_raw_parts_mut(p.cast(), len) })
}

/// An out-parameter, checked for NULL before the call does its work and written only when it
/// succeeds, as the header promises.
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    /// Refuses a NULL `p`.
    pub(crate) unsafe fn new(p: *mut T, what: &str) -> Result<Self> {
        if p.is_null() {
            return Err(invalid(format!("{what} is NULL")));
        }
        Ok(Self(p))
    }

    /// Writes the result (consumes the `Out`: written at most once).
    pub(crate) fn write(self, value: T) {
        // SAFETY: not NULL (checked by `new`) and, per the header, valid for writes of T. The
        // old value is not dropped: it may be uninitialised memory.
        unsafe { self.0.write(value) }
    }
}

impl<T> Out<*mut T> {
    /// Hands a new object to the caller, who frees it with the matching `_free`.
    pub(crate) fn write_box(self, value: T) {
        self.write(Box::into_raw(Box::new(value)));
    }
}

/// Takes back an object given out by [`Out::write_box`]; NULL gives `None`.
pub(crate) unsafe fn take_box<T>(p: *mut T) -> Option<Box<T>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per the header, a pointer from the matching `_new`, passed to `_free` once.
    Some(unsafe { Box::from_raw(p) })
}

/// Frees an object given out by [`Out::write_box`]; NULL is ignored.
pub(crate) unsafe fn free_box<T>(p: *mut T) {
    // SAFETY: forwarded.
    drop(unsafe { take_box(p) });
}

#[cfg(test)]
mod tests {
    use super::super::result::kh_last_error;
    use super::*;

    /// This thread's `kh_last_error` message.
    fn last_error() -> String {
        let mut buf = [0 as c_char; 256];
        // SAFETY: a writable buffer of that length.
        let n = unsafe { kh_last_error(buf.as_mut_ptr(), buf.len()) };
        // SAFETY: kh_last_error terminates what it writes.
        let s = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
        assert_eq!(n, s.len(), "returned length and copied message disagree");
        s.to_string()
    }

    fn refused<T>(r: Result<T>) -> String {
        match r {
            Err(ConnectionError::InvalidArgument(m)) => m,
            Err(e) => panic!("not InvalidArgument: {e:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn guard_gives_each_outcome_its_code_and_keeps_the_message() {
        assert_eq!(guard(|| Ok(())), kh_result::KH_OK);
        let full = guard(|| Err(ConnectionError::QueueFull("q".into())));
        assert_eq!(full, kh_result::KH_QUEUE_FULL);
        assert_eq!(last_error(), "send queue of \"q\" is full");
        assert_eq!(guard(|| panic!("static text")), kh_result::KH_PANIC);
        assert_eq!(last_error(), "internal error (panic): static text");
        let n = 7;
        assert_eq!(guard(|| panic!("formatted {n}")), kh_result::KH_PANIC);
        assert_eq!(last_error(), "internal error (panic): formatted 7");
        assert_eq!(guard(|| std::panic::panic_any(5u8)), kh_result::KH_PANIC);
        assert_eq!(last_error(), "internal error (panic): unknown panic");
    }

    #[test]
    fn guards_without_a_code_run_their_body_and_record_a_panic() {
        let mut ran = false;
        guard_void(|| ran = true);
        assert!(ran);
        guard_void(|| panic!("in a free function"));
        assert_eq!(last_error(), "internal error (panic): in a free function");
        assert_eq!(guard_or(1, || 2), 2);
        assert_eq!(guard_or(1, || panic!("in a getter")), 1);
        assert_eq!(last_error(), "internal error (panic): in a getter");
    }

    #[test]
    fn required_pointers_refuse_null_with_the_arguments_name() {
        let x = 5u32;
        let mut y = 6u32;
        // SAFETY (all below): NULL or pointers to live locals.
        unsafe {
            assert_eq!(*arg_ref(&x, "mgr").unwrap(), 5);
            assert_eq!(
                refused(arg_ref(std::ptr::null::<u32>(), "mgr")),
                "mgr is NULL"
            );
            *arg_mut(&mut y, "cfg").unwrap() = 8;
            assert_eq!(
                refused(arg_mut(std::ptr::null_mut::<u32>(), "cfg")),
                "cfg is NULL"
            );
            assert_eq!(opt_ref(std::ptr::null::<u32>()), None);
            assert_eq!(arg_str(c"feed".as_ptr(), "name").unwrap(), "feed");
            assert_eq!(refused(arg_str(std::ptr::null(), "name")), "name is NULL");
            assert_eq!(opt_str(std::ptr::null(), "name").unwrap(), None);
            let bad = [0xffu8, 0];
            assert!(
                refused(opt_str(bad.as_ptr().cast(), "name"))
                    .starts_with("name is not valid UTF-8 (")
            );
            let bytes = [1u8, 2, 3];
            assert_eq!(arg_bytes(bytes.as_ptr(), 3, "data").unwrap(), &bytes);
            assert!(arg_bytes(std::ptr::null(), 0, "data").unwrap().is_empty());
            assert_eq!(
                refused(arg_bytes(std::ptr::null(), 3, "data")),
                "data is NULL but its length is 3"
            );
            let huge = isize::MAX as usize + 1;
            assert_eq!(
                refused(arg_bytes(bytes.as_ptr(), huge, "data")),
                format!("data length {huge} is too large")
            );
        }
        assert_eq!(y, 8);
    }

    #[test]
    fn output_buffers_with_no_room_are_none() {
        let mut buf = [0 as c_char; 4];
        // SAFETY: NULL, or a writable buffer of at least the length given.
        unsafe {
            assert!(opt_buf(std::ptr::null_mut(), 4).is_none());
            assert!(opt_buf(buf.as_mut_ptr(), 0).is_none());
            assert_eq!(opt_buf(buf.as_mut_ptr(), 3).map(|b| b.len()), Some(3));
        }
    }

    #[test]
    fn out_parameters_are_written_once_and_boxes_come_back() {
        let mut v = 0u32;
        // SAFETY: pointers to live locals; the box is taken back once.
        unsafe {
            assert_eq!(
                refused(Out::new(std::ptr::null_mut::<u32>(), "out").map(|_| ())),
                "out is NULL"
            );
            Out::new(&mut v, "out").unwrap().write(9);
            let mut p: *mut String = std::ptr::null_mut();
            Out::new(&mut p, "out")
                .unwrap()
                .write_box("boxed".to_string());
            assert!(!p.is_null());
            assert_eq!(*take_box(p).unwrap(), "boxed");
            assert!(take_box(std::ptr::null_mut::<String>()).is_none());
            free_box(std::ptr::null_mut::<String>());
        }
        assert_eq!(v, 9);
    }
}
