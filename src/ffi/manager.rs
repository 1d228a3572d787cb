//! `kh_manager` exports: each converts its arguments, calls the [`WsManager`], and converts the
//! result. How the manager is hosted on its runtime is in `runtime`.
//!
//! [`WsManager`]: crate::WsManager

use std::ffi::c_char;
use std::mem::size_of;
use std::time::Duration;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::boundary::{Out, arg_bytes, arg_ref, arg_str, guard, guard_void, opt_ref, opt_str};
use super::hooks::{check_struct_size, kh_hooks_ex, read_hooks};
use super::runtime::{self, in_callback, kh_manager};
use super::{kh_config, kh_hooks, kh_result};
use crate::ConnState;
use crate::error::{ConnectionError, Result};
use crate::limits;
use crate::manager::WsManager;

/// Lifecycle state of a connection, as written by `kh_manager_state`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum kh_conn_state {
    /// The first connect attempt is in progress.
    KH_STATE_CONNECTING = 0,
    /// Open: messages flow.
    KH_STATE_OPEN = 1,
    /// Not open after a failure; waiting for, or making, another attempt.
    KH_STATE_RECONNECTING = 2,
    /// A close handshake is in progress.
    KH_STATE_CLOSING = 3,
    /// Stopped for good (it gave up after the configured attempts).
    KH_STATE_CLOSED = 4,
}

impl From<ConnState> for kh_conn_state {
    fn from(s: ConnState) -> Self {
        match s {
            ConnState::Connecting => Self::KH_STATE_CONNECTING,
            ConnState::Open => Self::KH_STATE_OPEN,
            ConnState::Reconnecting => Self::KH_STATE_RECONNECTING,
            ConnState::Closing => Self::KH_STATE_CLOSING,
            ConnState::Closed => Self::KH_STATE_CLOSED,
        }
    }
}

/// Counters of a connection, as written by `kh_manager_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct kh_conn_stats {
    /// Text and binary messages received.
    pub messages_in: u64,
    /// Payload bytes of those messages as they came off the wire (before inflating, for a
    /// connection with `kh_config_set_inflate`).
    pub bytes_in: u64,
    /// Text and binary messages written to the socket (init messages included).
    pub messages_out: u64,
    /// Payload bytes of those messages.
    pub bytes_out: u64,
    /// Successful connects after the first one.
    pub reconnects: u64,
    /// Round-trip time of the last answered heartbeat ping in microseconds (at least 1);
    /// 0 while none was measured. Pings sent with `kh_manager_send_ping` and text heartbeats
    /// are not measured.
    pub last_rtt_us: u64,
}

/// Counters and lifecycle of a connection, as written by `kh_manager_stats_ex`: the growable
/// successor of `kh_conn_stats`.
///
/// Versioning: set `struct_size` to `sizeof(kh_conn_stats_ex)` before the call
/// (`kh_conn_stats_ex s = KH_CONN_STATS_EX_INIT;`). The library writes only the members that
/// fit in `struct_size` and leaves `struct_size` as it was, so a program built against an older
/// header keeps working with a newer library, which only appends members. `struct_size` below
/// `KH_CONN_STATS_EX_MIN_SIZE` (the members up to `last_rtt_us`) or above 4096 is refused with
/// `KH_INVALID_ARGUMENT` and nothing is written.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct kh_conn_stats_ex {
    /// `sizeof(kh_conn_stats_ex)` as the caller's build saw it; set by the caller.
    pub struct_size: usize,
    /// As in `kh_conn_stats`.
    pub messages_in: u64,
    /// As in `kh_conn_stats`.
    pub bytes_in: u64,
    /// As in `kh_conn_stats`.
    pub messages_out: u64,
    /// As in `kh_conn_stats`.
    pub bytes_out: u64,
    /// As in `kh_conn_stats`.
    pub reconnects: u64,
    /// As in `kh_conn_stats`.
    pub last_rtt_us: u64,
    /// Which URL the connection uses or last used, as `kh_manager_endpoint` writes it.
    pub endpoint: u64,
    /// Completed rotations (switches to a fresh socket); 0 until rotation is configured.
    pub rotations: u64,
    /// Wall-clock time the current socket opened, in nanoseconds since the Unix epoch
    /// (compare with `clock_gettime(CLOCK_REALTIME)`); 0 while the connection is not open.
    pub connected_since_ns: u64,
    /// Time spent not open after having been open, in nanoseconds, summed over every completed
    /// outage (the one in progress is not included; the first connect is not an outage).
    pub down_time_ns: u64,
    /// Why the connection last dropped (the failure or the peer's close that ended an open
    /// socket); `KH_OK` when it never did. Closes and restarts the caller asked for do not
    /// count.
    pub last_disconnect: kh_result,
    /// Always 0.
    pub reserved: u32,
    /// The message of `last_disconnect`, NUL-terminated, cut to fit (at a UTF-8 character
    /// boundary); "" when none.
    pub last_disconnect_message: [c_char; 128],
}

pub(super) unsafe fn manager<'a>(mgr: *const kh_manager) -> Result<&'a kh_manager> {
    // SAFETY: NULL or a live manager, per the header.
    unsafe { arg_ref(mgr, "mgr") }
}

/// Creates a manager with a default number of worker threads (the number of CPUs, at least 2
/// and at most 8) and writes it to `*out`. Free it with `kh_manager_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_new(out: *mut *mut kh_manager) -> kh_result {
    // SAFETY: forwarded unchanged.
    unsafe { kh_manager_new_with_threads(0, out) }
}

/// Creates a manager whose runtime has `workers` threads (1..=1024; 0 picks the default of
/// `kh_manager_new`). With two or more workers, a callback that blocks holds only its own
/// connection (and its worker thread): the others keep reading and answering heartbeats. With
/// one worker, a blocking callback stops every connection of the manager until it returns (their
/// timers stop too, so no pong timeout is reported here, but peers may time the client out).
/// The thread count does not grow with the number of connections: `workers` plus one helper
/// thread (`kh-nudge`) when `workers` > 1.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_new_with_threads(
    workers: u32,
    out: *mut *mut kh_manager,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid for writes, per the header.
        let out = unsafe { Out::new(out, "out") }?;
        let workers = limits::workers(workers)?;
        out.write_box(kh_manager::start(workers)?);
        Ok(())
    })
}

/// Creates a manager driven by its caller, like `curl_multi_poll`: no thread of its own runs its
/// connections; they run on the thread that calls `kh_manager_poll`, inside that call, and
/// only then (also inside the other calls that wait: `kh_manager_wait_open`, `kh_manager_close`
/// and `kh_manager_free`). Writes it to `*out`; free it with `kh_manager_free`. Threads it may
/// still use: short-lived ones of tokio's blocking pool for host name lookups, a helper that
/// drives it for a caller on a thread of a tokio runtime (where the runtime cannot be run), and
/// `kh-free` for a free from a callback.
///
/// What this buys: events reach the poller without a hand-off between threads (no wake-up, no
/// context switch), the fastest way to consume a feed from one thread. What it costs: between
/// polls nothing moves. Sockets are not read (TCP holds the data back, nothing is lost), pings
/// are not answered, so a program that stops polling for longer than a peer's heartbeat timeout
/// may be disconnected by it; reconnects, subscribe messages, sends (`kh_manager_send_text` and
/// the like only queue them) and rate-limited writes all happen inside the next poll. Time runs
/// on meanwhile: a pong timeout or idle timeout (`kh_config_set_idle_timeout_ms`) that passes
/// between polls (a ping went out, its pong waits unread) can fail its connection in the next
/// poll, which then reconnects it. Poll at least that often, with a timeout no longer than the
/// shortest delay you can accept.
///
/// Callbacks (`kh_manager_add` hooks, `on_drop`, `kh_log_set_callback` records of its
/// connections) run on the thread that drives it, inside the call: usually the polling thread;
/// like every callback they must not call the functions that wait (those return
/// `KH_INVALID_ARGUMENT`). Polls of one manager still run one at a time, and a driven poll may
/// outlast its timeout by the time the callbacks it runs take.
///
/// A callback may call `kh_manager_free` on this manager. The call that runs it (a poll, or
/// `kh_manager_wait_open` or `kh_manager_close`) then returns `KH_SHUTTING_DOWN` (a poll without
/// events), and from then on the pointer is dangling: note the free in the callback, make no
/// call on the manager after that return, and do not free it again (a second
/// `kh_manager_free` from a callback before that is ignored). The shutdown runs on `kh-free`:
/// the callbacks it runs (the close of each connection, `on_drop`) may run at the same time as
/// the code after that return, so guard what they share. The memory is freed after the call
/// returned and the last `on_drop` ran.
///
/// `kh_manager_event_fd` is refused (`KH_INVALID_ARGUMENT`): with no thread reading the sockets
/// no descriptor could tell when to poll. Use `kh_manager_poll` with a timeout, or a manager
/// with threads. Everything else is as with `kh_manager_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_new_driven(out: *mut *mut kh_manager) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid for writes, per the header.
        let out = unsafe { Out::new(out, "out") }?;
        out.write_box(kh_manager::start_driven()?);
        Ok(())
    })
}

/// Stops every connection and frees the manager. NULL is ignored.
///
/// Called from outside any callback: closes every connection (close code 1001, each bounded by
/// its close timeout), stops the runtime, and returns when no callback runs any more and every
/// `on_drop` has been called. It is bounded in time even when a peer never answers the close;
/// only a callback that blocks can make it wait longer (it waits for that callback to return,
/// so never hold a lock that a callback takes while calling this).
///
/// Called from inside a callback (of this or any other kharbranth manager): starts the same
/// shutdown on a helper thread and returns at once; the shutdown completes after the callback
/// returned, and the memory is freed after the last `on_drop`, which is the signal that it is
/// done (a process that exits before may lose those `on_drop` calls). Calls on the manager made
/// meanwhile by callbacks still running return `KH_SHUTTING_DOWN`, and a second
/// `kh_manager_free` from one of them is ignored.
///
/// A driven manager (`kh_manager_new_driven`) is closed the same way: outside a callback its
/// connections run on the calling thread until they closed; from its own callback, the call
/// that runs the callback returns `KH_SHUTTING_DOWN` and the helper thread frees the manager
/// once that call has returned (see `kh_manager_new_driven`).
///
/// In both cases `mgr` must not be used by the caller after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_free(mgr: *mut kh_manager) {
    // SAFETY: NULL or a live manager, and the caller's last call on it, per the header.
    guard_void(|| unsafe { runtime::free(mgr) })
}

/// Adds a connection named `name` (UTF-8, not empty) and starts connecting it in the
/// background; does not wait for the handshake (see `kh_manager_wait_open`). `cfg` is copied
/// (the caller still owns and frees it); `hooks` is copied and may be NULL for no callbacks.
/// Fails with `KH_ALREADY_EXISTS` when the name is taken, `KH_INVALID_ARGUMENT` when the
/// configuration is refused; `on_drop` is not called on failure.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_add(
    mgr: *mut kh_manager,
    name: *const c_char,
    cfg: *const kh_config,
    hooks: *const kh_hooks,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers, per the header.
        let (m, name, cfg) =
            unsafe { (manager(mgr)?, arg_str(name, "name")?, arg_ref(cfg, "cfg")?) };
        // SAFETY: NULL or a valid kh_hooks, per the header.
        let hooks = unsafe { opt_ref(hooks) }.map(kh_hooks_ex::from_v0);
        add(m, name, cfg, hooks.as_ref())
    })
}

/// Adds a connection like `kh_manager_add`, with the growable `kh_hooks_ex` (NULL for no
/// callbacks). `hooks->struct_size` out of range gives `KH_INVALID_ARGUMENT` and adds nothing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_add_ex(
    mgr: *mut kh_manager,
    name: *const c_char,
    cfg: *const kh_config,
    hooks: *const kh_hooks_ex,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers, per the header.
        let (m, name, cfg) =
            unsafe { (manager(mgr)?, arg_str(name, "name")?, arg_ref(cfg, "cfg")?) };
        // SAFETY: NULL or a kh_hooks_ex of at least its struct_size bytes, per the header;
        // only its first member is borrowed here.
        let hooks = match unsafe { opt_ref(hooks.cast::<usize>()) } {
            Some(size) => Some(unsafe { kh_hooks_ex::read((size as *const usize).cast()) }?),
            None => None,
        };
        add(m, name, cfg, hooks.as_ref())
    })
}

/// What both `kh_manager_add` and `kh_manager_add_ex` do once the hooks are read.
fn add(m: &kh_manager, name: &str, cfg: &kh_config, hooks: Option<&kh_hooks_ex>) -> Result<()> {
    {
        let config = cfg.build()?;
        let rust_hooks = match hooks {
            Some(h) => read_hooks(h, name),
            None => crate::hooks::ReadHooks::new(),
        };
        m.manager
            .try_add(name, config, rust_hooks)
            .map_err(|(e, mut h)| {
                h.forget_on_drop();
                e
            })
    }
}

/// Queues a text message (`len` bytes of UTF-8; no NUL needed; copied). Returns at once:
/// `KH_CONNECTION_DROPPED` when the connection is not open, `KH_QUEUE_FULL` when its queue is
/// full, `KH_MESSAGE_TOO_LARGE`, `KH_INVALID_ARGUMENT` for invalid UTF-8. A queued message is
/// written, or reported to `on_error` as `KH_WRITE_ERROR`: never dropped silently.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_send_text(
    mgr: *mut kh_manager,
    name: *const c_char,
    data: *const c_char,
    len: usize,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers with `len` readable bytes, per the header.
        let (m, name, bytes) = unsafe {
            (
                manager(mgr)?,
                arg_str(name, "name")?,
                arg_bytes(data.cast(), len, "data")?,
            )
        };
        let text = std::str::from_utf8(bytes).map_err(|e| {
            ConnectionError::InvalidArgument(format!("text is not valid UTF-8 ({e})"))
        })?;
        m.manager.send_text(name, Utf8Bytes::from(text))
    })
}

/// Checks the arguments of a binary or ping send, copies the payload and hands it to `send`.
unsafe fn send_bytes(
    mgr: *mut kh_manager,
    name: *const c_char,
    data: *const u8,
    len: usize,
    send: fn(&WsManager, &str, Bytes) -> Result<()>,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers with `len` readable bytes, per the header.
        let (m, name, bytes) = unsafe {
            (
                manager(mgr)?,
                arg_str(name, "name")?,
                arg_bytes(data, len, "data")?,
            )
        };
        send(&m.manager, name, Bytes::copy_from_slice(bytes))
    })
}

/// Queues a binary message (copied); same rules as `kh_manager_send_text`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_send_binary(
    mgr: *mut kh_manager,
    name: *const c_char,
    data: *const u8,
    len: usize,
) -> kh_result {
    // SAFETY: forwarded unchanged; the header states what the pointers must be.
    unsafe { send_bytes(mgr, name, data, len, |m, n, b| m.send_binary(n, b)) }
}

/// Queues a ping frame with up to 125 bytes of payload; same rules as `kh_manager_send_text`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_send_ping(
    mgr: *mut kh_manager,
    name: *const c_char,
    data: *const u8,
    len: usize,
) -> kh_result {
    // SAFETY: forwarded unchanged; the header states what the pointers must be.
    unsafe { send_bytes(mgr, name, data, len, |m, n, b| m.send_ping(n, b)) }
}

/// Closes the connection cleanly and connects it again at once (no backoff); returns at once.
/// Messages still queued are written after the reconnect, after the init messages. A
/// connection that gave up (`KH_STATE_CLOSED`) cannot be restarted: `KH_CONNECTION_DROPPED`;
/// close it and add it again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_restart(
    mgr: *mut kh_manager,
    name: *const c_char,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers, per the header.
        let (m, name) = unsafe { (manager(mgr)?, arg_str(name, "name")?) };
        m.manager.restart(name)
    })
}

/// Rotates the connection to a fresh socket without a gap in delivery; returns at once and may
/// be called from inside a callback (e.g. on an exchange's maintenance notice). A second socket
/// is dialled with the same configuration (the URLs in the same order as a reconnect) and gets
/// the init messages; once it has delivered its first text or binary message, delivery
/// switches to it (`KH_EVENT_ROTATED` for a polled connection; the callback for hook
/// connections comes with the growable hooks struct) and the old socket is closed with 1000.
/// Until the switch both sockets deliver, one message at a time and each in its own order, so
/// a message may arrive twice (drop duplicates by the feed's sequence numbers); none is lost.
/// Sends go to the old socket until the switch, then to the new one: none lost or doubled.
/// Heartbeats run on both.
///
/// If the new socket fails (connect, upgrade, closes before its first message, or sends none
/// within the connect timeout) the failure is reported with its code (`on_error` /
/// `KH_EVENT_ERROR`) and the old socket keeps running. `KH_CONNECTION_DROPPED` while the
/// connection is not open (connecting, reconnecting, closing or closed); `KH_OK`, and nothing
/// happens, while a rotation is already in progress or a restart or close is pending.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_rotate(mgr: *mut kh_manager, name: *const c_char) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers, per the header.
        let (m, name) = unsafe { (manager(mgr)?, arg_str(name, "name")?) };
        m.manager.rotate(name)
    })
}

/// Restarts every connection of the manager, like `kh_manager_restart`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_restart_all(mgr: *mut kh_manager) -> kh_result {
    guard(|| {
        // SAFETY: NULL or a valid manager, per the header.
        let m = unsafe { manager(mgr) }?;
        m.manager.restart_all()
    })
}

/// Limits the connection attempts of all the manager's connections together to at most
/// `attempts` in any window of `per_ms` milliseconds (sliding). Each URL dialled counts as one
/// attempt, reconnects and restarts included; an attempt over the limit waits for its slot, in
/// the order the attempts asked (no connection starves), so 1,000 connections dropped at once
/// come back spread over the windows. The wait ends at once on `kh_manager_close`,
/// `kh_manager_restart` or `kh_manager_free`. May be called at any time: attempts that ask
/// afterwards follow the new limit, counted from the slots already handed out. `attempts` 0
/// removes the limit (`per_ms` is then ignored); otherwise `attempts` 1 to 1000000 and `per_ms`
/// 1 ms to one year, or `KH_INVALID_ARGUMENT`. Default: no limit.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_set_connect_rate_limit(
    mgr: *mut kh_manager,
    attempts: u32,
    per_ms: u64,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or a valid manager, per the header.
        let m = unsafe { manager(mgr) }?;
        if attempts == 0 {
            m.manager.clear_connect_rate_limit();
            return Ok(());
        }
        m.manager
            .set_connect_rate_limit(attempts, std::time::Duration::from_millis(per_ms))
    })
}

/// Closes a connection for good: writes the messages still queued, sends a close frame with
/// `code` (1000-1003, 1007-1014 or 3000-4999) and `reason` (NULL for none; at most 123 bytes of
/// UTF-8), waits for the peer's reply (bounded by the close timeout), then forgets the name.
///
/// Called from outside any callback, it returns when the close is complete: no callback of the
/// connection runs any more and its `on_drop` has been called (if a callback of the connection
/// is blocked, this waits for it). Called from inside a callback (of this or any other
/// kharbranth manager), it only starts the close and returns at once; the close completes after
/// the callback returns (frames arriving during the handshake still reach the callbacks).
/// `on_close` also runs for the peer's reply to this close.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_close(
    mgr: *mut kh_manager,
    name: *const c_char,
    code: u16,
    reason: *const c_char,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers, per the header.
        let (m, name, reason) = unsafe {
            (
                manager(mgr)?,
                arg_str(name, "name")?,
                opt_str(reason, "reason")?.unwrap_or(""),
            )
        };
        if in_callback() {
            return m.manager.request_close(name, code, reason);
        }
        let (mgr2, name, reason) = (m.manager.clone(), name.to_string(), reason.to_string());
        m.wait("kh_manager_close", async move {
            mgr2.close(&name, code, &reason).await
        })
    })
}

/// Writes the connection's state to `*out`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_state(
    mgr: *const kh_manager,
    name: *const c_char,
    out: *mut kh_conn_state,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers, per the header.
        let (m, name, out) =
            unsafe { (manager(mgr)?, arg_str(name, "name")?, Out::new(out, "out")?) };
        out.write(m.manager.state(name)?.into());
        Ok(())
    })
}

/// Writes the connection's counters to `*out`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_stats(
    mgr: *const kh_manager,
    name: *const c_char,
    out: *mut kh_conn_stats,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers, per the header.
        let (m, name, out) =
            unsafe { (manager(mgr)?, arg_str(name, "name")?, Out::new(out, "out")?) };
        let s = m.manager.stats(name)?;
        let stats = kh_conn_stats {
            messages_in: s.messages_in,
            bytes_in: s.bytes_in,
            messages_out: s.messages_out,
            bytes_out: s.bytes_out,
            reconnects: s.reconnects,
            last_rtt_us: last_rtt_us(&s),
        };
        out.write(stats);
        Ok(())
    })
}

/// `Stats::last_rtt` as `last_rtt_us` of the C structs: 0 for none, so a measured one is at
/// least 1.
fn last_rtt_us(s: &crate::Stats) -> u64 {
    s.last_rtt.map_or(0, |d| (d.as_micros() as u64).max(1))
}

/// Writes the connection's counters and lifecycle figures into `*out`, up to
/// `out->struct_size` bytes (see `kh_conn_stats_ex`). Nothing is written on failure.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_stats_ex(
    mgr: *const kh_manager,
    name: *const c_char,
    out: *mut kh_conn_stats_ex,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers, per the header; `out` has `struct_size` writable
        // bytes, of which only the first member is borrowed here.
        let (m, name, size) = unsafe {
            (
                manager(mgr)?,
                arg_str(name, "name")?,
                *arg_ref(out.cast::<usize>().cast_const(), "out")?,
            )
        };
        check_struct_size("out", size, STATS_EX_MIN)?;
        let s = m.manager.stats(name)?;
        let last = m.manager.last_disconnect(name)?;
        let mut stats = kh_conn_stats_ex {
            struct_size: size,
            messages_in: s.messages_in,
            bytes_in: s.bytes_in,
            messages_out: s.messages_out,
            bytes_out: s.bytes_out,
            reconnects: s.reconnects,
            last_rtt_us: last_rtt_us(&s),
            endpoint: s.endpoint as u64,
            rotations: s.rotations,
            connected_since_ns: s.connected_since.map_or(0, |t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| (d.as_nanos() as u64).max(1))
            }),
            down_time_ns: s.down_time.as_nanos().min(u64::MAX as u128) as u64,
            last_disconnect: last.as_ref().map_or(kh_result::KH_OK, kh_result::from),
            reserved: 0,
            last_disconnect_message: [0; 128],
        };
        if let Some(e) = &last {
            let msg = e.to_string().replace('\0', " ");
            let mut cut = msg.len().min(stats.last_disconnect_message.len() - 1);
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            for (d, b) in stats
                .last_disconnect_message
                .iter_mut()
                .zip(&msg.as_bytes()[..cut])
            {
                *d = *b as c_char;
            }
        }
        let n = size.min(size_of::<kh_conn_stats_ex>());
        // SAFETY: `out` has `size` writable bytes, per the header; `n` fits in both.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&stats as *const kh_conn_stats_ex).cast::<u8>(),
                out.cast::<u8>(),
                n,
            )
        };
        Ok(())
    })
}

/// The smallest `struct_size` of a `kh_conn_stats_ex` (the members of `kh_conn_stats`).
const STATS_EX_MIN: usize = std::mem::offset_of!(kh_conn_stats_ex, endpoint);

/// Writes to `*out` which URL the connection uses, or last used: 0 for the URL of
/// `kh_config_new`, `i` for the `i`-th `kh_config_add_fallback_url` (0 before it ever opened).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_endpoint(
    mgr: *const kh_manager,
    name: *const c_char,
    out: *mut usize,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers, per the header.
        let (m, name, out) =
            unsafe { (manager(mgr)?, arg_str(name, "name")?, Out::new(out, "out")?) };
        out.write(m.manager.stats(name)?.endpoint);
        Ok(())
    })
}

/// Blocks until the connection is open (`KH_OK`), `timeout_ms` passes (`KH_TIMEOUT`), or it
/// stops for good (`KH_CONNECTION_DROPPED`). Refused with `KH_INVALID_ARGUMENT` inside any
/// callback (it could wait for the very thread it blocks).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_wait_open(
    mgr: *mut kh_manager,
    name: *const c_char,
    timeout_ms: u32,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers, per the header.
        let (m, name) = unsafe { (manager(mgr)?, arg_str(name, "name")?) };
        let within = Duration::from_millis(timeout_ms.into());
        let (mgr2, name) = (m.manager.clone(), name.to_string());
        m.wait("kh_manager_wait_open", async move {
            mgr2.wait_open(&name, within).await
        })
    })
}

/// Which kind of WebSocket message a subscription call takes; checks and copies the payload.
fn sub_message(bytes: &[u8], text: bool) -> Result<Message> {
    if !text {
        return Ok(Message::Binary(Bytes::copy_from_slice(bytes)));
    }
    let t = std::str::from_utf8(bytes)
        .map_err(|e| ConnectionError::InvalidArgument(format!("text is not valid UTF-8 ({e})")))?;
    Ok(Message::Text(Utf8Bytes::from(t)))
}

/// The common body of the subscribe and unsubscribe calls.
unsafe fn subscription(
    mgr: *mut kh_manager,
    name: *const c_char,
    key: *const c_char,
    data: *const u8,
    len: usize,
    add: bool,
    text: bool,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers with `len` readable bytes, per the header.
        let (m, name, key, bytes) = unsafe {
            (
                manager(mgr)?,
                arg_str(name, "name")?,
                arg_str(key, "key")?,
                arg_bytes(data, len, "data")?,
            )
        };
        if add {
            m.manager.subscribe(name, key, sub_message(bytes, text)?)
        } else {
            // No message (NULL or length 0) means "remove it, send nothing".
            let msg = (!bytes.is_empty())
                .then(|| sub_message(bytes, text))
                .transpose()?;
            m.manager.unsubscribe(name, key, msg).map(|_| ())
        }
    })
}

/// Adds a live subscription to connection `name` under `key` (UTF-8, 1 to 256 bytes, chosen
/// by the caller): the text message (`len` bytes of UTF-8, copied) is sent now when the
/// connection is open, and again on every later socket (reconnect, restart) right after the
/// init messages, with the other subscriptions in the order they were added. The set lives
/// as long as the connection; `kh_manager_close` drops it.
///
/// Exactly once per socket: each socket gets every subscription that exists while it is open
/// exactly once, also when the call races a connect, reconnect or restart. Sent while open, it
/// goes out before messages of `kh_manager_send_*` still waiting in the queue.
///
/// Fails, changing nothing: `KH_SUBSCRIPTION_EXISTS` (the key is taken),
/// `KH_MESSAGE_TOO_LARGE`, `KH_QUEUE_FULL` (open, and the send queue is full),
/// `KH_INVALID_ARGUMENT` (NULL, invalid UTF-8, an empty or over-long key),
/// `KH_CONNECTION_NOT_FOUND`, `KH_SHUTTING_DOWN`. May be called from any thread and from
/// inside any callback, the connection's own included (it never blocks).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_subscribe_text(
    mgr: *mut kh_manager,
    name: *const c_char,
    key: *const c_char,
    data: *const c_char,
    len: usize,
) -> kh_result {
    // SAFETY: forwarded unchanged; the header states what the pointers must be.
    unsafe { subscription(mgr, name, key, data.cast(), len, true, true) }
}

/// Like `kh_manager_subscribe_text` with a binary message (copied).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_subscribe_binary(
    mgr: *mut kh_manager,
    name: *const c_char,
    key: *const c_char,
    data: *const u8,
    len: usize,
) -> kh_result {
    // SAFETY: forwarded unchanged; the header states what the pointers must be.
    unsafe { subscription(mgr, name, key, data, len, true, false) }
}

/// Removes the subscription `key` of connection `name`: later sockets no longer get it.
/// `data`/`len` is an optional unsubscribe text message (NULL or `len` 0: none; copied), sent
/// when a socket is open, after that socket's subscribe message. When no socket is open no
/// socket has the subscription and the message is not sent (nothing needs undoing); likewise
/// when the socket ends before writing it, as the next socket never gets the subscription.
///
/// Fails, changing nothing: `KH_SUBSCRIPTION_NOT_FOUND`, `KH_MESSAGE_TOO_LARGE`,
/// `KH_QUEUE_FULL` (only with a message), `KH_INVALID_ARGUMENT`, `KH_CONNECTION_NOT_FOUND`,
/// `KH_SHUTTING_DOWN`. Callable from inside callbacks, like `kh_manager_subscribe_text`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_unsubscribe(
    mgr: *mut kh_manager,
    name: *const c_char,
    key: *const c_char,
    data: *const c_char,
    len: usize,
) -> kh_result {
    // SAFETY: forwarded unchanged; the header states what the pointers must be.
    unsafe { subscription(mgr, name, key, data.cast(), len, false, true) }
}

/// Like `kh_manager_unsubscribe` with a binary unsubscribe message.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_unsubscribe_binary(
    mgr: *mut kh_manager,
    name: *const c_char,
    key: *const c_char,
    data: *const u8,
    len: usize,
) -> kh_result {
    // SAFETY: forwarded unchanged; the header states what the pointers must be.
    unsafe { subscription(mgr, name, key, data, len, false, false) }
}

/// Writes to `*out` how many live subscriptions connection `name` has.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_subscription_count(
    mgr: *const kh_manager,
    name: *const c_char,
    out: *mut usize,
) -> kh_result {
    guard(|| {
        // SAFETY: NULL or valid pointers, per the header.
        let (m, name, out) =
            unsafe { (manager(mgr)?, arg_str(name, "name")?, Out::new(out, "out")?) };
        out.write(m.manager.subscriptions(name)?.len());
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_round_trip_time_for_c_is_in_microseconds_0_for_none_and_at_least_1_for_one() {
        let rtt = |d: Option<Duration>| {
            last_rtt_us(&crate::Stats {
                last_rtt: d,
                ..Default::default()
            })
        };
        assert_eq!(rtt(None), 0);
        assert_eq!(rtt(Some(Duration::from_nanos(100))), 1);
        assert_eq!(rtt(Some(Duration::from_micros(2500))), 2500);
    }

    #[test]
    fn a_subscription_message_is_text_or_binary_as_asked_and_text_must_be_utf8() {
        assert_eq!(sub_message(b"sub", true).unwrap(), Message::text("sub"));
        assert_eq!(
            sub_message(b"sub", false).unwrap(),
            Message::binary(&b"sub"[..])
        );
        assert_eq!(
            sub_message(&[0xff], false).unwrap(),
            Message::binary(&[0xffu8][..])
        );
        assert!(matches!(
            sub_message(&[0xff], true),
            Err(ConnectionError::InvalidArgument(m)) if m.contains("UTF-8")
        ));
    }
}
