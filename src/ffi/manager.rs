//! `kh_manager`: a [`WsManager`] that owns its own tokio runtime.

use std::cell::Cell;
use std::ffi::c_char;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::{Handle, Runtime};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::hooks::read_hooks;
use super::{
    arg_bytes, arg_ref, arg_str, guard, guard_void, kh_config, kh_hooks, kh_result, write_out,
};
use crate::connection::ConnState;
use crate::error::{ConnectionError, Result};
use crate::manager::WsManager;

/// A manager of named connections with its own background runtime (worker threads named
/// `kh-worker`). Create with `kh_manager_new`, destroy with `kh_manager_free`. Every function
/// taking a `kh_manager *` may be called from any thread at the same time, except
/// `kh_manager_free`, which must be the last call on it.
pub struct kh_manager {
    /// Taken (and dropped) by the shutdown; `handle` serves every other call.
    runtime: Mutex<Option<Runtime>>,
    handle: Handle,
    manager: WsManager,
    nudger: Option<Nudger>,
}

/// Keeps the runtime's I/O and timer driver polled while a callback blocks a worker.
///
/// tokio polls its driver from a parked worker. When the worker that was parked on the driver
/// is woken to run a task whose callback then blocks, the other workers may all sleep on their
/// condition variable, and nobody polls the driver: no socket is read and no timer fires on any
/// connection until the callback returns. A tiny task spawned from outside every
/// [`NUDGE_INTERVAL`] wakes a sleeping worker, which then parks on the free driver again. The
/// cost is one thread per manager and ten no-op wake-ups a second.
struct Nudger {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

const NUDGE_INTERVAL: Duration = Duration::from_millis(100);

impl Nudger {
    fn start(handle: Handle) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("kh-nudge".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    std::thread::park_timeout(NUDGE_INTERVAL);
                    drop(handle.spawn(async {}));
                }
            })?;
        Ok(Self { stop, thread })
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
    }
}

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
    /// Payload bytes of those messages.
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

thread_local! {
    /// Which manager's runtime owns this thread (0: none). Set once per worker thread, so the
    /// library can tell its own callbacks from other threads.
    static OWNER: Cell<u64> = const { Cell::new(0) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Where a call comes from, which decides whether it may wait.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// A thread of some kharbranth manager's runtime: a callback. Waiting there could need the
    /// very thread that waits, or form a cycle with another manager's callback, so calls that
    /// wait either only start their work (close, free) or are refused (wait_open).
    Callback,
    /// A thread of a tokio runtime that is not ours (a Rust host): may wait, but not with
    /// `block_on`, which panics there.
    ForeignRuntime,
    /// A plain thread.
    Plain,
}

fn caller() -> Caller {
    if OWNER.try_with(Cell::get).unwrap_or(0) != 0 {
        Caller::Callback
    } else if Handle::try_current().is_ok() {
        Caller::ForeignRuntime
    } else {
        Caller::Plain
    }
}

impl kh_manager {
    /// Runs a future of this manager to completion and waits for it (refused in callbacks).
    fn wait<T: Send + 'static>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        match caller() {
            Caller::Callback => Err(ConnectionError::InvalidArgument(format!(
                "{what} waits and cannot be called from inside a callback"
            ))),
            _ if self.manager.is_shut_down() => Err(ConnectionError::ShuttingDown),
            Caller::ForeignRuntime => {
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                self.handle.spawn(async move {
                    let _ = tx.send(fut.await);
                });
                rx.recv().unwrap_or(Err(ConnectionError::ShuttingDown))
            }
            Caller::Plain => self.handle.block_on(fut),
        }
    }

    /// Closes every connection, then stops the runtime. Takes `&self`: callbacks may still
    /// hold the manager while this runs, so it is only freed after every runtime thread ended.
    fn shutdown(&self) {
        let rt = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(rt) = rt else {
            return;
        };
        rt.block_on(self.manager.shutdown());
        if let Some(n) = &self.nudger {
            n.stop();
        }
        // Dropping the runtime waits for its threads: a callback still running (only possible
        // when it blocks) finishes before the manager's memory goes away. Tasks still alive
        // are dropped with it, which runs their on_drop.
        drop(rt);
        log::info!("manager freed");
    }
}

/// Frees a manager whose runtime has stopped.
unsafe fn free_stopped(mgr: *mut kh_manager) {
    // SAFETY: from kh_manager_new, and every thread that could hold it has ended.
    let m = unsafe { Box::from_raw(mgr) };
    if let Some(n) = m.nudger {
        n.stop();
        let _ = n.thread.join();
    }
}

/// A manager pointer handed to the shutdown thread.
struct SendPtr(*mut kh_manager);
// SAFETY: kh_manager is Sync; the pointer is only used by the shutdown thread from then on.
unsafe impl Send for SendPtr {}

unsafe fn manager<'a>(mgr: *const kh_manager) -> Result<&'a kh_manager> {
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
        if out.is_null() {
            return Err(ConnectionError::InvalidArgument("out is NULL".into()));
        }
        crate::limits::workers(workers)?;
        let n = match workers {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(2, 8),
            n => n as usize,
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder
            .worker_threads(n)
            .thread_name("kh-worker")
            .on_thread_start(move || OWNER.with(|o| o.set(id)))
            .enable_all();
        // A task woken on a worker waits in that worker's LIFO slot, which the others cannot
        // steal: behind a blocking callback it would starve, heartbeats included. Without the
        // slot every woken task is stealable. (Needs `--cfg tokio_unstable`, set by this
        // repository's .cargo/config.toml.)
        #[cfg(tokio_unstable)]
        builder.disable_lifo_slot();
        let runtime = builder
            .build()
            .map_err(|e| ConnectionError::System(format!("starting the runtime: {e}")))?;
        let manager = WsManager::with_handle(runtime.handle().clone());
        // With one worker there is nobody to nudge: a blocking callback stops everything.
        let nudger = if n > 1 {
            Some(
                Nudger::start(runtime.handle().clone())
                    .map_err(|e| ConnectionError::System(format!("starting a thread: {e}")))?,
            )
        } else {
            None
        };
        let boxed = Box::new(kh_manager {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            manager,
            nudger,
        });
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, Box::into_raw(boxed), "out") }
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
/// meanwhile by callbacks still running return `KH_SHUTTING_DOWN`.
///
/// In both cases `mgr` must not be used by the caller after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_free(mgr: *mut kh_manager) {
    guard_void(|| {
        if mgr.is_null() {
            return;
        }
        // SAFETY: a live manager from kh_manager_new; this is the caller's last call on it.
        let m = unsafe { &*mgr };
        match caller() {
            Caller::Plain => {
                m.shutdown();
                // SAFETY: the runtime has stopped: nothing else holds the manager.
                unsafe { free_stopped(mgr) };
            }
            // A runtime cannot be stopped from a thread of a runtime (tokio panics), so a
            // helper thread does it. A foreign runtime's thread may wait for it; a callback
            // returns at once, and the helper finishes once the callback has returned.
            c => {
                m.manager.begin_shutdown();
                let p = SendPtr(mgr);
                let spawned = std::thread::Builder::new()
                    .name("kh-free".into())
                    .spawn(move || {
                        let p = p;
                        // SAFETY: live until freed just below, on this thread.
                        unsafe { &*p.0 }.shutdown();
                        // SAFETY: the runtime has stopped: nothing else holds the manager.
                        unsafe { free_stopped(p.0) };
                    });
                match spawned {
                    Ok(t) if c == Caller::ForeignRuntime => {
                        let _ = t.join();
                    }
                    Ok(_) => {}
                    Err(e) => log::error!("no thread for the shutdown ({e}); the manager leaks"),
                }
            }
        }
    })
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
        let hooks = unsafe { hooks.as_ref() };
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
    })
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

/// Queues a binary message (copied); same rules as `kh_manager_send_text`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_send_binary(
    mgr: *mut kh_manager,
    name: *const c_char,
    data: *const u8,
    len: usize,
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
        m.manager.send_binary(name, Bytes::copy_from_slice(bytes))
    })
}

/// Queues a ping frame with up to 125 bytes of payload; same rules as `kh_manager_send_text`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_send_ping(
    mgr: *mut kh_manager,
    name: *const c_char,
    data: *const u8,
    len: usize,
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
        m.manager.send_ping(name, Bytes::copy_from_slice(bytes))
    })
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

/// Restarts every connection of the manager, like `kh_manager_restart`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kh_manager_restart_all(mgr: *mut kh_manager) -> kh_result {
    guard(|| {
        // SAFETY: NULL or a valid manager, per the header.
        let m = unsafe { manager(mgr) }?;
        m.manager.restart_all()
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
        let (m, name) = unsafe { (manager(mgr)?, arg_str(name, "name")?) };
        let reason = if reason.is_null() {
            ""
        } else {
            // SAFETY: non-NULL and NUL-terminated, per the header.
            unsafe { arg_str(reason, "reason") }?
        };
        if caller() == Caller::Callback {
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
        let (m, name) = unsafe { (manager(mgr)?, arg_str(name, "name")?) };
        let s = m.manager.state(name)?;
        // SAFETY: NULL or valid for writes, per the header.
        unsafe { write_out(out, s.into(), "out") }
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
        let (m, name) = unsafe { (manager(mgr)?, arg_str(name, "name")?) };
        let s = m.manager.stats(name)?;
        let rtt = s.last_rtt.map_or(0, |d| (d.as_micros() as u64).max(1));
        let stats = kh_conn_stats {
            messages_in: s.messages_in,
            bytes_in: s.bytes_in,
            messages_out: s.messages_out,
            bytes_out: s.bytes_out,
            reconnects: s.reconnects,
            last_rtt_us: rtt,
        };
        // SAFETY: NULL or valid for writes, per the header.
        unsafe { write_out(out, stats, "out") }
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
