//! `kh_hooks`: C function pointers turned into [`ReadHooks`].

use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

use super::kh_result;
use crate::hooks::ReadHooks;

/// Callbacks for one connection, passed by pointer to `kh_manager_add`, which copies the struct.
/// Every member may be NULL. Each callback gets `user_data` first and the connection's name
/// (`conn`, NUL-terminated) second.
///
/// Threading: callbacks run on the manager's runtime threads. The callbacks of one connection
/// never run concurrently with each other and see frames in arrival order; callbacks of
/// different connections may run at the same time on different threads, so shared `user_data`
/// needs its own locking. A slow callback slows only its own connection's socket (nothing is
/// dropped), but it also occupies a runtime thread: with one worker thread it delays every
/// connection, heartbeats included.
///
/// Lifetime: every pointer handed to a callback (`conn`, `data`, `reason`, `message`) is valid
/// only until the callback returns: copy what you keep. `data` is never NULL (it may point to 0
/// bytes) and is not NUL-terminated.
///
/// Re-entrancy: a callback may call `kh_manager_send_*`, `kh_manager_restart*`,
/// `kh_manager_state`, `kh_manager_stats`, `kh_manager_close` and `kh_manager_free` on its own
/// or any other manager; from a callback, close and free only start their work and return at
/// once (see those functions). `kh_manager_wait_open` is refused there with
/// `KH_INVALID_ARGUMENT`. A callback must return normally: no C++ exception or `longjmp` may
/// leave it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct kh_hooks {
    /// Passed as the first argument of every callback; never read by the library.
    pub user_data: *mut c_void,
    /// The connection opened (after every successful connect and reconnect; the init messages
    /// are queued before this runs).
    pub on_open: Option<unsafe extern "C" fn(user_data: *mut c_void, conn: *const c_char)>,
    /// A complete text message (UTF-8, `len` bytes).
    pub on_text: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            conn: *const c_char,
            data: *const c_char,
            len: usize,
        ),
    >,
    /// A complete binary message.
    pub on_binary: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            conn: *const c_char,
            data: *const u8,
            len: usize,
        ),
    >,
    /// A ping from the peer (the library answers it with a pong itself).
    pub on_ping: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            conn: *const c_char,
            data: *const u8,
            len: usize,
        ),
    >,
    /// A pong from the peer.
    pub on_pong: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            conn: *const c_char,
            data: *const u8,
            len: usize,
        ),
    >,
    /// A close frame from the peer: its code (1005 when it carried none) and reason (UTF-8,
    /// `len` bytes). A close started by the peer is followed by a reconnect. It also runs for
    /// the peer's reply to a close or restart the caller started (echoing that code).
    pub on_close: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            conn: *const c_char,
            code: u16,
            reason: *const c_char,
            len: usize,
        ),
    >,
    /// Every received frame, before the type-specific callback, with its opcode: 1 text,
    /// 2 binary, 8 close, 9 ping, 10 pong.
    pub on_frame: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            conn: *const c_char,
            opcode: u8,
            data: *const u8,
            len: usize,
        ),
    >,
    /// A failure, with its code and a NUL-terminated message. The connection reconnects after
    /// it unless it was closed by the caller or `code` is `KH_RETRIES_EXHAUSTED`; after that
    /// one the name stays registered in `KH_STATE_CLOSED` (its stats stay readable) until
    /// `kh_manager_close` forgets it. A
    /// `KH_WRITE_ERROR` here reports messages that were accepted by a send but not written.
    /// `KH_INFLATE_FAILED` reports one binary message that could not be inflated, delivered
    /// in its place; the connection goes on.
    pub on_error: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            conn: *const c_char,
            code: kh_result,
            message: *const c_char,
        ),
    >,
    /// Called exactly once, when the manager is done with `user_data`: after the connection was
    /// closed (by `kh_manager_close`, by giving up, or by `kh_manager_free`). No other callback
    /// of the connection runs after it. Not called when `kh_manager_add` fails. It may run on a
    /// runtime thread or on the thread that called `kh_manager_close`/`kh_manager_free`.
    pub on_drop: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

/// The copied hooks and the connection's name as a C string, made once per connection so no
/// callback allocates.
struct CHooks {
    hooks: kh_hooks,
    name: CString,
}

// SAFETY: the header requires `user_data` and the callbacks to be usable from the manager's
// threads; the library itself only passes the pointer back.
unsafe impl Send for CHooks {}
unsafe impl Sync for CHooks {}

/// Turns C callbacks into Rust hooks; only the members that are set get a Rust closure.
pub(crate) fn read_hooks(hooks: &kh_hooks, name: &str) -> ReadHooks {
    // Names are checked for NUL before this is reached.
    let name = CString::new(name).unwrap_or_default();
    let c = Arc::new(CHooks {
        hooks: *hooks,
        name,
    });
    let h = hooks;
    let mut r = ReadHooks::new();
    // SAFETY (all calls below): the function pointers and user_data come from the caller, who
    // guarantees they stay valid until on_drop; the pointers passed live for the call.
    if let Some(f) = h.on_open {
        let c = c.clone();
        r = r.on_open(move |_| unsafe { f(c.hooks.user_data, c.name.as_ptr()) });
    }
    if let Some(f) = h.on_text {
        let c = c.clone();
        r = r.on_text(move |_, t| unsafe {
            f(
                c.hooks.user_data,
                c.name.as_ptr(),
                t.as_str().as_ptr().cast(),
                t.len(),
            )
        });
    }
    if let Some(f) = h.on_binary {
        let c = c.clone();
        r = r.on_binary(move |_, b| unsafe {
            f(c.hooks.user_data, c.name.as_ptr(), b.as_ptr(), b.len())
        });
    }
    if let Some(f) = h.on_ping {
        let c = c.clone();
        r = r.on_ping(move |_, b| unsafe {
            f(c.hooks.user_data, c.name.as_ptr(), b.as_ptr(), b.len())
        });
    }
    if let Some(f) = h.on_pong {
        let c = c.clone();
        r = r.on_pong(move |_, b| unsafe {
            f(c.hooks.user_data, c.name.as_ptr(), b.as_ptr(), b.len())
        });
    }
    if let Some(f) = h.on_close {
        let c = c.clone();
        r = r.on_close(move |_, code, reason| unsafe {
            f(
                c.hooks.user_data,
                c.name.as_ptr(),
                code,
                reason.as_ptr().cast(),
                reason.len(),
            )
        });
    }
    if let Some(f) = h.on_frame {
        let c = c.clone();
        r = r.on_frame(move |_, op, data| unsafe {
            f(
                c.hooks.user_data,
                c.name.as_ptr(),
                op,
                data.as_ptr(),
                data.len(),
            )
        });
    }
    if let Some(f) = h.on_error {
        let c = c.clone();
        r = r.on_error(move |_, e| {
            let msg = CString::new(e.to_string().replace('\0', " ")).unwrap_or_default();
            unsafe {
                f(
                    c.hooks.user_data,
                    c.name.as_ptr(),
                    kh_result::from(e),
                    msg.as_ptr(),
                )
            }
        });
    }
    if let Some(f) = h.on_drop {
        r = r.on_drop(move || unsafe { f(c.hooks.user_data) });
    }
    r
}
