//! `kh_hooks` and its growable successor `kh_hooks_ex`: C function pointers turned into
//! [`ReadHooks`]. `kh_hooks` keeps its layout for ever; `kh_hooks_ex` starts with its own size,
//! so a later version appends members and reads only the ones the caller's build knew.

use std::ffi::{CString, c_char, c_void};
use std::mem::{offset_of, size_of};
use std::sync::Arc;

use super::boundary::{Out, guard};
use super::result::error_message;
use super::{kh_conn_state, kh_result};
use crate::error::{ConnectionError, Result};
use crate::handle::StateChange;
use crate::hooks::ReadHooks;

/// Callbacks for one connection, passed by pointer to `kh_manager_add`, which copies the struct.
/// Its layout never changes: callbacks added later (`on_state`, ...) are only in its growable
/// successor `kh_hooks_ex` (`kh_manager_add_ex`). Every member may be NULL. Each callback gets `user_data` first and the connection's name
/// (`conn`, NUL-terminated) second.
///
/// Threading: callbacks run on the manager's runtime threads. The callbacks of one connection
/// never run concurrently with each other and see frames in arrival order; callbacks of
/// different connections may run at the same time on different threads, so shared `user_data`
/// needs its own locking. A slow callback slows only its own connection's socket (nothing is
/// dropped), but it also occupies a runtime thread: with one worker thread it delays every
/// connection, heartbeats included. A driven manager's (`kh_manager_new_driven`) callbacks run
/// on the thread that calls `kh_manager_poll` (or another call that drives it), inside that
/// call.
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

/// A lifecycle state change, lent to `on_state` of `kh_hooks_ex` for the duration of the call
/// (copy what you keep). A later version may append members at its end (the library allocates
/// it; never declare an array of it or copy it by `sizeof`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct kh_state_change {
    /// The state entered.
    pub state: kh_conn_state,
    /// The failure that caused the change, `KH_OK` when none did (a change the caller asked
    /// for, and every `KH_STATE_OPEN`): for `KH_STATE_RECONNECTING` the error that dropped the
    /// socket or failed the connect, for `KH_STATE_CLOSED` after giving up
    /// `KH_RETRIES_EXHAUSTED`.
    pub reason: kh_result,
    /// The failure's message, NUL-terminated ("" when `reason` is `KH_OK`). Never NULL.
    pub reason_message: *const c_char,
    /// On every `KH_STATE_OPEN` after the first: connect attempts since the drop, this
    /// successful one included (at least 1). 0 otherwise.
    pub attempts: u32,
    /// Always 0.
    pub reserved: u32,
    /// On every `KH_STATE_OPEN` after the first: how long the connection was not open, in
    /// nanoseconds (at least 1). 0 otherwise.
    pub down_for_ns: u64,
    /// On every `KH_STATE_OPEN`: which URL it opened on (0 the URL of `kh_config_new`, `i` the
    /// `i`-th `kh_config_add_fallback_url`), as `kh_manager_endpoint` reports. 0 otherwise.
    pub endpoint: usize,
    /// On every `KH_STATE_OPEN` after the first: when the last data message (text or binary)
    /// before the drop was received, in wall-clock nanoseconds since the Unix epoch; 0 when
    /// the connection never received one, and on every other change. Read once per poll of
    /// the connection that delivered data (never per message): at most that poll's length
    /// (microseconds) after the message's read; with receive timestamps on, the receive time
    /// of the last frame of that poll.
    pub last_message_wall_ns: u64,
}

/// The growable successor of `kh_hooks`, passed by pointer to `kh_manager_add_ex`, which copies
/// it. The same callbacks with the same rules (threading, lifetime, re-entrancy: see
/// `kh_hooks`), plus new ones.
///
/// Versioning: set `struct_size` to `sizeof(kh_hooks_ex)` of the header you compile against,
/// and every member you do not use to NULL: `kh_hooks_ex h = KH_HOOKS_EX_INIT;` or `memset` to
/// 0 then set `struct_size`. The library reads only the members that fit in `struct_size` and
/// treats the rest as NULL, so a program built against an older header keeps working with a
/// newer library. A later version only appends members. `struct_size` below
/// `KH_HOOKS_EX_MIN_SIZE` (the members up to `on_drop`) or above 4096 is refused with
/// `KH_INVALID_ARGUMENT`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct kh_hooks_ex {
    /// `sizeof(kh_hooks_ex)` as the caller's build saw it.
    pub struct_size: usize,
    /// As in `kh_hooks`.
    pub user_data: *mut c_void,
    /// As in `kh_hooks`.
    pub on_open: Option<unsafe extern "C" fn(user_data: *mut c_void, conn: *const c_char)>,
    /// As in `kh_hooks`.
    pub on_text: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            conn: *const c_char,
            data: *const c_char,
            len: usize,
        ),
    >,
    /// As in `kh_hooks`.
    pub on_binary: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            conn: *const c_char,
            data: *const u8,
            len: usize,
        ),
    >,
    /// As in `kh_hooks`.
    pub on_ping: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            conn: *const c_char,
            data: *const u8,
            len: usize,
        ),
    >,
    /// As in `kh_hooks`.
    pub on_pong: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            conn: *const c_char,
            data: *const u8,
            len: usize,
        ),
    >,
    /// As in `kh_hooks`.
    pub on_close: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            conn: *const c_char,
            code: u16,
            reason: *const c_char,
            len: usize,
        ),
    >,
    /// As in `kh_hooks`.
    pub on_frame: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            conn: *const c_char,
            opcode: u8,
            data: *const u8,
            len: usize,
        ),
    >,
    /// As in `kh_hooks`.
    pub on_error: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            conn: *const c_char,
            code: kh_result,
            message: *const c_char,
        ),
    >,
    /// As in `kh_hooks`.
    pub on_drop: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    /// Every lifecycle state change: `KH_STATE_CONNECTING` (the first attempt),
    /// `KH_STATE_OPEN` (just before `on_open`; after a drop it carries the gap: attempts and
    /// down time), `KH_STATE_RECONNECTING` (with the failure that caused it; once per outage,
    /// later failed attempts go to `on_error` only), `KH_STATE_CLOSING` (when an open socket is
    /// closed or restarted) and `KH_STATE_CLOSED`. Polled connections get them as `KH_EVENT_STATE`
    /// events when added with `kh_manager_add_polled_ex` and `KH_POLL_STATE_EVENTS`.
    /// `change` and what it points to are valid only during the call. Same thread rules as the
    /// other callbacks.
    pub on_state: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            conn: *const c_char,
            change: *const kh_state_change,
        ),
    >,
    /// A rotation (`kh_manager_rotate`, `kh_config_set_max_connection_age_ms`) switched
    /// delivery to its new socket; the old one is closed with 1000 right after. Messages before
    /// this call may come from either socket (each in its own order), so a consumer drops
    /// duplicates by sequence number around it. Same thread rules as the other callbacks.
    pub on_rotated: Option<unsafe extern "C" fn(user_data: *mut c_void, conn: *const c_char)>,
}

/// The smallest `struct_size` of a `kh_hooks_ex` (its members up to `on_drop`).
pub(crate) const HOOKS_EX_MIN: usize = offset_of!(kh_hooks_ex, on_state);
/// The largest `struct_size` taken: far above any real version, far below a stray value.
pub(crate) const STRUCT_SIZE_MAX: usize = 4096;

impl kh_hooks_ex {
    /// The same callbacks as an old `kh_hooks`, the new members NULL.
    pub(crate) fn from_v0(h: &kh_hooks) -> Self {
        Self {
            struct_size: size_of::<Self>(),
            user_data: h.user_data,
            on_open: h.on_open,
            on_text: h.on_text,
            on_binary: h.on_binary,
            on_ping: h.on_ping,
            on_pong: h.on_pong,
            on_close: h.on_close,
            on_frame: h.on_frame,
            on_error: h.on_error,
            on_drop: h.on_drop,
            on_state: None,
            on_rotated: None,
        }
    }

    /// Copies the members that fit in the caller's `struct_size`, the rest NULL.
    ///
    /// # Safety
    /// `p` points to a `struct_size` (its first member) followed by at least `struct_size`
    /// readable bytes in all: a caller's struct may be smaller than ours, so no `&Self` to it
    /// is ever made.
    pub(crate) unsafe fn read(p: *const Self) -> Result<Self> {
        // SAFETY: the first member of every version is the size.
        let size = unsafe { p.cast::<usize>().read() };
        check_struct_size("hooks", size, HOOKS_EX_MIN)?;
        let mut out = Self::from_v0(&kh_hooks::default());
        let n = size.min(size_of::<Self>());
        // SAFETY: the caller's struct has `size` readable bytes and ours `size_of::<Self>()`;
        // every member is a pointer or an `Option` of a function pointer, for which any bytes
        // the caller wrote (0 for NULL) are what C would read.
        unsafe {
            std::ptr::copy_nonoverlapping(p.cast::<u8>(), (&mut out as *mut Self).cast::<u8>(), n);
        }
        out.struct_size = n;
        Ok(out)
    }
}

/// The rule of every `struct_size` the library reads.
pub(crate) fn check_struct_size(what: &str, size: usize, min: usize) -> Result<()> {
    if size < min || size > STRUCT_SIZE_MAX {
        return Err(ConnectionError::InvalidArgument(format!(
            "{what}->struct_size is {size}: it must be between {min} and {STRUCT_SIZE_MAX} \
             (set it to sizeof of the struct)"
        )));
    }
    Ok(())
}

impl Default for kh_hooks {
    fn default() -> Self {
        Self {
            user_data: std::ptr::null_mut(),
            on_open: None,
            on_text: None,
            on_binary: None,
            on_ping: None,
            on_pong: None,
            on_close: None,
            on_frame: None,
            on_error: None,
            on_drop: None,
        }
    }
}

/// The copied hooks and the connection's name as a C string, made once per connection so no
/// callback allocates.
struct CHooks {
    hooks: kh_hooks_ex,
    name: CString,
}

// SAFETY: the header requires `user_data` and the callbacks to be usable from the manager's
// threads; the library itself only passes the pointer back.
unsafe impl Send for CHooks {}
unsafe impl Sync for CHooks {}

/// Turns C callbacks into Rust hooks; only the members that are set get a Rust closure.
pub(crate) fn read_hooks(hooks: &kh_hooks_ex, name: &str) -> ReadHooks {
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
        r = r.on_text_ref(move |_, t| unsafe {
            f(
                c.hooks.user_data,
                c.name.as_ptr(),
                t.as_ptr().cast(),
                t.len(),
            )
        });
    }
    if let Some(f) = h.on_binary {
        let c = c.clone();
        r = r.on_binary_ref(move |_, b| unsafe {
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
            let msg = error_message(e);
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
    if let Some(f) = h.on_state {
        let c = c.clone();
        r = r.on_state(move |_, s| {
            let (reason, msg) = match &s.reason {
                Some(e) => (kh_result::from(e), error_message(e)),
                None => (kh_result::KH_OK, CString::default()),
            };
            let change = state_change(s, reason, &msg);
            unsafe { f(c.hooks.user_data, c.name.as_ptr(), &change) }
        });
    }
    if let Some(f) = h.on_rotated {
        let c = c.clone();
        r = r.on_rotated(move |_| unsafe { f(c.hooks.user_data, c.name.as_ptr()) });
    }
    if let Some(f) = h.on_drop {
        r = r.on_drop(move || unsafe { f(c.hooks.user_data) });
    }
    r
}

/// The C view of a state change; `msg` must outlive it.
fn state_change(s: &StateChange, reason: kh_result, msg: &CString) -> kh_state_change {
    kh_state_change {
        state: s.state.into(),
        reason,
        reason_message: msg.as_ptr(),
        attempts: s.attempts,
        reserved: 0,
        down_for_ns: duration_ns(s.down_for),
        endpoint: s.endpoint,
        last_message_wall_ns: wall_ns(s.last_message_at),
    }
}

/// A wall-clock time in nanoseconds since the Unix epoch for C: 0 for none.
pub(super) fn wall_ns(t: Option<std::time::SystemTime>) -> u64 {
    t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| (d.as_nanos().min(u64::MAX as u128) as u64).max(1))
}

/// A gap in nanoseconds for C: 0 for none, at least 1 for one (however short).
pub(super) fn duration_ns(d: Option<std::time::Duration>) -> u64 {
    d.map_or(0, |d| (d.as_nanos().min(u64::MAX as u128) as u64).max(1))
}

/// Writes the receive time of the message whose callback is running on this thread (like
/// `errno`): `*mono_ns` in `CLOCK_MONOTONIC` nanoseconds and `*wall_ns` in wall-clock
/// nanoseconds since the Unix epoch, both read once for the socket read that completed the
/// message (see `kh_config_set_receive_timestamps`). Meaningful inside `on_text`, `on_binary`,
/// `on_frame`, `on_ping`, `on_pong`, `on_close` (and an `on_error` for `KH_INFLATE_FAILED`) of
/// a connection with receive timestamps on; anywhere else (other callbacks, outside a callback,
/// the option off) it writes 0 to both and still returns `KH_OK`, so 0 means "no time".
/// `KH_INVALID_ARGUMENT` (writing nothing) when either pointer is NULL. Never blocks; callable
/// from any thread at any time, also after `kh_manager_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_receive_time(mono_ns: *mut u64, wall_ns: *mut u64) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid out-pointers, per the header.
        let (mono, wall) =
            unsafe { (Out::new(mono_ns, "mono_ns")?, Out::new(wall_ns, "wall_ns")?) };
        let t = crate::clock::receive_time().unwrap_or_default();
        mono.write(t.monotonic_ns());
        wall.write(t.wall_ns());
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use tokio_tungstenite::tungstenite::Utf8Bytes;

    use super::*;

    #[test]
    fn a_struct_size_from_the_minimum_to_4096_is_taken_and_any_other_refused() {
        let min = HOOKS_EX_MIN;
        for ok in [min, size_of::<kh_hooks_ex>(), STRUCT_SIZE_MAX] {
            assert!(check_struct_size("hooks", ok, min).is_ok(), "{ok}");
        }
        for bad in [0, min - 1, STRUCT_SIZE_MAX + 1, usize::MAX] {
            match check_struct_size("hooks", bad, min) {
                Err(ConnectionError::InvalidArgument(m)) => {
                    assert!(
                        m.starts_with(&format!("hooks->struct_size is {bad}:")),
                        "{m}"
                    )
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    /// What the C callbacks below saw: (user data, connection name, text).
    type Seen = Mutex<Vec<(usize, String, String)>>;

    unsafe extern "C" fn record_text(
        ud: *mut c_void,
        conn: *const c_char,
        p: *const c_char,
        n: usize,
    ) {
        // SAFETY: the test passes a `Seen`, a NUL-terminated name and `n` bytes at `p`.
        let (seen, conn, text) = unsafe {
            (
                &*(ud as *const Seen),
                std::ffi::CStr::from_ptr(conn).to_str().unwrap().to_string(),
                std::slice::from_raw_parts(p.cast::<u8>(), n),
            )
        };
        let text = String::from_utf8(text.to_vec()).unwrap();
        seen.lock().unwrap().push((ud as usize, conn, text));
    }

    unsafe extern "C" fn no_drop(_: *mut c_void) {}

    #[test]
    fn old_hooks_become_new_ones_with_the_same_callbacks_and_run_with_the_connections_name() {
        let seen = Seen::default();
        let ud = &seen as *const Seen as *mut c_void;
        let old = kh_hooks {
            user_data: ud,
            on_text: Some(record_text),
            on_drop: Some(no_drop),
            ..Default::default()
        };
        let ex = kh_hooks_ex::from_v0(&old);
        assert_eq!(ex.struct_size, size_of::<kh_hooks_ex>());
        assert_eq!(ex.user_data, ud);
        assert!(ex.on_text.is_some() && ex.on_drop.is_some());
        assert!(ex.on_open.is_none() && ex.on_state.is_none() && ex.on_rotated.is_none());
        let mut hooks = read_hooks(&ex, "feed");
        hooks.text("feed", Utf8Bytes::from_static("hi"));
        hooks.text("feed", Utf8Bytes::from_static(""));
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (ud as usize, "feed".to_string(), "hi".to_string()),
                (ud as usize, "feed".to_string(), String::new())
            ]
        );
    }

    #[test]
    fn times_and_gaps_for_c_are_0_for_none_and_at_least_1_for_one() {
        assert_eq!(wall_ns(None), 0);
        assert_eq!(wall_ns(Some(UNIX_EPOCH)), 1);
        assert_eq!(wall_ns(Some(UNIX_EPOCH - Duration::from_secs(1))), 0);
        let t = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        assert_eq!(wall_ns(Some(t)), 1_700_000_000_123_456_789);
        assert!(wall_ns(Some(SystemTime::now())) > 1_700_000_000_000_000_000);
        assert_eq!(duration_ns(None), 0);
        assert_eq!(duration_ns(Some(Duration::ZERO)), 1);
        assert_eq!(duration_ns(Some(Duration::from_millis(3))), 3_000_000);
    }
}
