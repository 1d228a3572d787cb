//! Hosting a [`WsManager`] on a runtime of its own: building it, telling callbacks from other
//! callers, waiting without deadlock, and shutting down from any thread.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};

use super::boundary::{opt_ref, take_box};
use crate::error::{ConnectionError, Result};
use crate::manager::WsManager;
use crate::queue::{WakeRelay, install_wake_relay};

/// A manager of named connections with its own background runtime (worker threads named
/// `kh-worker`), or, made by `kh_manager_new_driven`, without threads: driven by its caller's
/// calls to `kh_manager_poll`. Create with `kh_manager_new`, destroy with `kh_manager_free`.
/// Every function taking a `kh_manager *` may be called from any thread at the same time,
/// except `kh_manager_free`, which must be the last call on it.
pub struct kh_manager {
    /// Taken (and dropped) by the shutdown; `handle` serves every other call, and a driven
    /// manager's calls that wait run it (shared so that they need not hold the lock meanwhile).
    runtime: Mutex<Option<Arc<Runtime>>>,
    handle: Handle,
    /// This manager's mark in [`OWNER`] on the threads that run its callbacks.
    id: u64,
    /// Set for a manager driven by its callers (`kh_manager_new_driven`).
    driven: Option<Driven>,
    /// A free from a callback (or a foreign runtime's thread) handed the manager to a helper.
    free_started: AtomicBool,
    pub(super) manager: WsManager,
    nudger: Option<Nudger>,
    /// The events the last `kh_manager_poll` lent the caller.
    pub(super) lent: super::poll::LentEvents,
}

/// Keeps the runtime's I/O and timer driver polled while a callback blocks a worker, and
/// relays wakes made inside callbacks.
///
/// tokio polls its driver from a parked worker. When the worker that was parked on the driver
/// is woken to run a task whose callback then blocks, the other workers may all sleep on their
/// condition variable, and nobody polls the driver: no socket is read and no timer fires on any
/// connection until the callback returns. A tiny task spawned from outside every
/// [`NUDGE_INTERVAL`] wakes a sleeping worker, which then parks on the free driver again.
///
/// A task woken on a worker (a callback sending to another connection) would wait in that
/// worker's LIFO slot, which the other workers cannot steal, until the callback returns. The
/// same thread wakes such tasks instead (see [`WakeRelay`]), so they land in the queue every
/// worker takes from. tokio's `disable_lifo_slot` would do that too, but only in builds with
/// `--cfg tokio_unstable`, which the library's packagers and Rust users do not set.
///
/// The cost is one thread per manager, ten no-op wake-ups a second, and a hand-off for each
/// wake a callback makes of another connection.
struct Nudger {
    relay: Arc<Relay>,
    thread: std::thread::JoinHandle<()>,
}

const NUDGE_INTERVAL: Duration = Duration::from_millis(100);

/// A manager without threads of its own: a current-thread runtime that runs, on the caller's
/// thread, only inside the manager's calls that wait (`kh_manager_poll` above all). Events
/// reach the poller without a hand-off between threads, which on a busy machine costs two
/// context switches per wake-up; in exchange nothing moves between those calls.
struct Driven {
    /// Threads inside a call that drives the runtime. Shared, so that a free requested by one
    /// of its callbacks can wait for the call to leave the manager before freeing it.
    inside: Arc<InsideCount>,
    /// A callback freed the manager while a call drove it: that call stops driving at once.
    freed: tokio::sync::Notify,
    free_requested: AtomicBool,
    /// The wakes of connections made between two driving calls.
    held: Arc<HeldWakes>,
}

/// Holds the wakes of a driven manager's connections (a send, a request) made while no call
/// drives it, until the next one does.
///
/// Why: the runtime runs only inside those calls, so a task woken between them moves no
/// sooner either way; but a wake from outside the runtime also wakes its driver, a write to
/// its eventfd: a system call per message for a program that answers each message it polls
/// (echo, 64 bytes, same core, `strace -c -f`: 6,006 writes for 5,000 round trips, none
/// since). Woken by the next driving call from inside the runtime, the task is only queued. While a call drives the
/// manager (on another thread, say) a wake goes through at once, as that call must see it.
#[derive(Debug, Default)]
struct HeldWakes {
    /// (calls driving the runtime now, the wakes held)
    state: Mutex<(usize, Vec<Waker>)>,
}

impl HeldWakes {
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, Vec<Waker>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a driving call until the guard is dropped, and hands it the wakes held so far,
    /// which it makes once it runs the runtime. The count and the hand-over are one step
    /// under the lock: a wake lands either in the list the call takes or after the count.
    fn drive(self: &Arc<Self>) -> (Driving, Vec<Waker>) {
        let mut st = self.lock();
        st.0 += 1;
        (Driving(self.clone()), std::mem::take(&mut st.1))
    }

    /// Runs `fut` on `rt` as a driving call: the held wakes are made first, inside the
    /// runtime, where a wake only queues its task and does not wake the driver.
    fn block_on<F: Future>(self: &Arc<Self>, rt: &Runtime, fut: F) -> F::Output {
        let (_driving, held) = self.drive();
        rt.block_on(async {
            held.into_iter().for_each(Waker::wake);
            fut.await
        })
    }
}

impl WakeRelay for HeldWakes {
    fn relay(&self, waker: Waker) {
        let mut st = self.lock();
        if st.0 == 0 {
            st.1.push(waker);
        } else {
            drop(st);
            waker.wake();
        }
    }
}

/// A call driving the runtime (see [`HeldWakes::drive`]).
struct Driving(Arc<HeldWakes>);

impl Drop for Driving {
    fn drop(&mut self) {
        self.0.lock().0 -= 1;
    }
}

/// Threads inside a driving call of a driven manager, and whether a free waits for none.
#[derive(Default)]
struct InsideCount {
    /// (threads inside, a free waits)
    state: Mutex<(usize, bool)>,
    left: Condvar,
}

impl InsideCount {
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, bool)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until no thread is inside a driving call.
    fn wait_for_none(&self) {
        let mut st = self.lock();
        st.1 = true;
        while st.0 > 0 {
            st = self.left.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Counts its thread as inside a driving call of its manager until dropped; see
/// [`Driven::inside`]. Hold it across every use of the manager in that call.
pub(super) struct Inside(Arc<InsideCount>);

impl Inside {
    fn new(count: &Arc<InsideCount>) -> Self {
        count.lock().0 += 1;
        Self(count.clone())
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.0 -= 1;
        // Only a waiting free is signalled: a notification is a system call even with nobody
        // waiting, and this runs once per poll.
        if st.1 && st.0 == 0 {
            self.0.left.notify_all();
        }
    }
}

/// Marks the thread as running `id`'s callbacks until dropped, then restores the previous mark.
struct Owning(u64);

impl Owning {
    fn mark(id: u64) -> Self {
        Self(OWNER.with(|o| o.replace(id)))
    }
}

impl Drop for Owning {
    fn drop(&mut self) {
        OWNER.with(|o| o.set(self.0));
    }
}

/// Wakes handed over by worker threads, woken by the nudger's thread.
#[derive(Debug, Default)]
struct Relay {
    wakers: Mutex<Vec<Waker>>,
    thread: OnceLock<std::thread::Thread>,
    stop: AtomicBool,
}

impl Relay {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        self.wakers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl WakeRelay for Relay {
    fn relay(&self, waker: Waker) {
        self.lock().push(waker);
        // Before the thread exists (while the runtime starts), its first round takes it.
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

impl Nudger {
    fn start(handle: Handle, relay: Arc<Relay>) -> std::io::Result<Self> {
        let r = relay.clone();
        let thread = std::thread::Builder::new()
            .name("kh-nudge".into())
            .spawn(move || {
                let mut nudged = Instant::now();
                while !r.stop.load(Ordering::Acquire) {
                    std::thread::park_timeout(NUDGE_INTERVAL);
                    let woken = std::mem::take(&mut *r.lock());
                    woken.into_iter().for_each(Waker::wake);
                    if nudged.elapsed() >= NUDGE_INTERVAL {
                        nudged = Instant::now();
                        drop(handle.spawn(async {}));
                    }
                }
            })?;
        let _ = relay.thread.set(thread.thread().clone());
        Ok(Self { relay, thread })
    }

    fn stop(&self) {
        self.relay.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
    }
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

/// Whether the calling thread runs a callback of some kharbranth manager, where calls that
/// wait must only start their work.
pub(super) fn in_callback() -> bool {
    caller() == Caller::Callback
}

impl kh_manager {
    /// Builds the runtime (`workers` threads; 0 picks 2..=8 by the number of CPUs), the
    /// manager on it, and the nudger when there is more than one worker.
    pub(super) fn start(workers: u32) -> Result<Self> {
        let n = match workers {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(2, 8),
            n => n as usize,
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        // With one worker there is nobody to nudge or relay to: a blocking callback stops
        // everything (documented on kh_manager_new_with_threads).
        let relay = (n > 1).then(|| Arc::new(Relay::default()));
        let worker_relay = relay.clone();
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder
            .worker_threads(n)
            .thread_name("kh-worker")
            .on_thread_start(move || {
                OWNER.with(|o| o.set(id));
                if let Some(r) = &worker_relay {
                    install_wake_relay(r.clone());
                }
            })
            .enable_all();
        let runtime = builder
            .build()
            .map_err(|e| ConnectionError::System(format!("starting the runtime: {e}")))?;
        let manager = WsManager::with_handle(runtime.handle().clone());
        let nudger = match relay {
            Some(relay) => Some(
                Nudger::start(runtime.handle().clone(), relay)
                    .map_err(|e| ConnectionError::System(format!("starting a thread: {e}")))?,
            ),
            None => None,
        };
        Ok(kh_manager {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(Arc::new(runtime))),
            id,
            driven: None,
            free_started: AtomicBool::new(false),
            manager,
            nudger,
            lent: Default::default(),
        })
    }

    /// Builds a driven manager: a current-thread runtime and no thread (see [`Driven`]).
    pub(super) fn start_driven() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ConnectionError::System(format!("starting the runtime: {e}")))?;
        let held = Arc::<HeldWakes>::default();
        let manager = WsManager::with_outside_wakes(runtime.handle().clone(), held.clone());
        Ok(kh_manager {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(Arc::new(runtime))),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            free_started: AtomicBool::new(false),
            driven: Some(Driven {
                inside: Arc::default(),
                freed: tokio::sync::Notify::new(),
                free_requested: AtomicBool::new(false),
                held,
            }),
            manager,
            nudger: None,
            lent: Default::default(),
        })
    }

    /// Whether the manager is driven by its callers.
    pub(super) fn is_driven(&self) -> bool {
        self.driven.is_some()
    }

    /// For a driven manager, counts the calling thread as inside a call that drives it (see
    /// [`Inside`]); `None` for any other.
    pub(super) fn enter(&self) -> Option<Inside> {
        self.driven.as_ref().map(|d| Inside::new(&d.inside))
    }

    fn runtime(&self) -> Option<Arc<Runtime>> {
        self.runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `fut` on a driven manager's runtime, on this thread (on a helper thread when this
    /// one runs a tokio runtime already, where `block_on` panics): the connections move, and
    /// their callbacks run, until it completes. Refused in callbacks; `ShuttingDown` when the
    /// manager is (or, from a callback of this drive, was meanwhile) freed. The caller holds an
    /// [`Inside`] of this manager.
    pub(super) fn drive<T: Send>(
        &self,
        what: &str,
        fut: impl Future<Output = T> + Send,
    ) -> Result<T> {
        let Some(d) = &self.driven else {
            return Err(ConnectionError::System(format!(
                "{what}: the manager is not driven"
            )));
        };
        let caller = caller();
        if caller == Caller::Callback {
            return Err(ConnectionError::InvalidArgument(format!(
                "{what} waits and cannot be called from inside a callback"
            )));
        }
        let rt = match self.runtime() {
            Some(rt) if !self.manager.is_shut_down() => rt,
            _ => return Err(ConnectionError::ShuttingDown),
        };
        let run = || {
            let _mark = Owning::mark(self.id);
            let freed = d.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            if d.free_requested.load(Ordering::Acquire) {
                return Err(ConnectionError::ShuttingDown);
            }
            // Pinned here, once: `block_on` then moves a reference, not the whole future.
            let fut = std::pin::pin!(fut);
            d.held.block_on(&rt, async {
                tokio::select! {
                    biased;
                    _ = freed => Err(ConnectionError::ShuttingDown),
                    out = fut => Ok(out),
                }
            })
        };
        match caller {
            Caller::ForeignRuntime => std::thread::scope(|s| {
                std::thread::Builder::new()
                    .name("kh-drive".into())
                    .spawn_scoped(s, run)
                    .map_err(|e| ConnectionError::System(format!("starting a thread: {e}")))?
                    .join()
                    .unwrap_or_else(|_| Err(ConnectionError::System(format!("{what} panicked"))))
            }),
            _ => run(),
        }
    }

    /// Runs a future of this manager to completion and waits for it (refused in callbacks).
    pub(super) fn wait<T: Send + 'static>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        if self.is_driven() {
            let _inside = self.enter();
            return self.drive(what, fut)?;
        }
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
        drop_runtime(self.stop());
    }

    /// Closes every connection on the runtime and hands the runtime back, for the caller to
    /// drop where nothing else holds it (`None` when the shutdown already took it).
    fn stop(&self) -> Option<Arc<Runtime>> {
        let rt = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        {
            // A driven manager's callbacks run here: mark them as such, so that what they
            // call that waits is refused instead of starting the runtime again inside itself.
            let _mark = self.driven.is_some().then(|| Owning::mark(self.id));
            // This drives a driven manager too: the closes it requests must not be held.
            let shutdown = self.manager.shutdown();
            match &self.driven {
                Some(d) => d.held.block_on(&rt, shutdown),
                None => rt.block_on(shutdown),
            }
        }
        if let Some(n) = &self.nudger {
            n.stop();
        }
        Some(rt)
    }
}

/// Drops a stopped runtime. Dropping the runtime waits for its threads: a callback still
/// running (only possible when it blocks) finishes before the manager's memory goes away. Tasks
/// still alive are dropped with it, which runs their on_drop.
fn drop_runtime(rt: Option<Arc<Runtime>>) {
    if let Some(rt) = rt {
        drop(rt);
        log::info!("manager freed");
    }
}

/// Frees a manager whose runtime has stopped.
unsafe fn free_stopped(mgr: *mut kh_manager) {
    // SAFETY: from kh_manager_new, and every thread that could hold it has ended.
    let Some(m) = (unsafe { take_box(mgr) }) else {
        return;
    };
    if let Some(n) = m.nudger {
        n.stop();
        let _ = n.thread.join();
    }
}

/// A manager pointer handed to the shutdown thread.
struct SendPtr(*mut kh_manager);
// SAFETY: kh_manager is Sync; the pointer is only used by the shutdown thread from then on.
unsafe impl Send for SendPtr {}

/// Shuts the manager down and frees it (NULL is ignored): on this thread when it is a plain
/// one, otherwise on a helper thread (see `kh_manager_free` for what each caller may expect).
pub(super) unsafe fn free(mgr: *mut kh_manager) {
    // SAFETY: NULL or a live manager from kh_manager_new; this is the caller's last call on it.
    let Some(m) = (unsafe { opt_ref(mgr) }) else {
        return;
    };
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
            // The manager is alive here: its callbacks still run, or this thread (of a foreign
            // runtime) holds its last call. A second free from a callback that runs before the
            // first completes must not start a second helper (a double free).
            if m.free_started.swap(true, Ordering::AcqRel) {
                return;
            }
            m.manager.begin_shutdown();
            let inside = m.driven.as_ref().map(|d| {
                // A drive of this manager (this callback's own, or another thread's) stops,
                // and the call that drove it leaves the manager before the helper frees it.
                d.free_requested.store(true, Ordering::Release);
                d.freed.notify_waiters();
                d.inside.clone()
            });
            let p = SendPtr(mgr);
            let spawned = std::thread::Builder::new()
                .name("kh-free".into())
                .spawn(move || {
                    let p = p;
                    // SAFETY: live until freed just below, on this thread.
                    let rt = unsafe { &*p.0 }.stop();
                    if let Some(inside) = inside {
                        inside.wait_for_none();
                    }
                    // After every drive left: a drive holds the runtime too, and must not be
                    // the one to drop it (on a tokio thread that panics; elsewhere it would
                    // wait for the runtime's threads inside a poll).
                    drop_runtime(rt);
                    // SAFETY: the runtime has stopped, and no call is inside the manager.
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts its wakes.
    #[derive(Default)]
    struct Count(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_wait_for_the_next_driving_call_and_pass_at_once_during_one() {
        let held = Arc::new(HeldWakes::default());
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let woken = || count.0.load(Ordering::SeqCst);
        held.relay(waker.clone());
        assert_eq!(woken(), 0, "woken between driving calls");
        let (driving, taken) = held.drive();
        assert_eq!(taken.len(), 1, "the next call takes the held wake");
        held.relay(waker.clone());
        assert_eq!(woken(), 1, "held while a call drives the manager");
        let (second, taken) = held.drive();
        assert!(taken.is_empty());
        drop(driving);
        held.relay(waker.clone());
        assert_eq!(woken(), 2, "held while a second call still drives it");
        drop(second);
        held.relay(waker);
        assert_eq!(woken(), 2, "woken after the last call left");
        assert_eq!(held.lock().1.len(), 1);
    }

    /// A manager of `workers` threads and a wait from one of its worker threads (a callback's
    /// thread) of a future that would give 7.
    fn wait_on_a_worker(m: &Arc<kh_manager>) -> (bool, Result<u32>) {
        let m2 = m.clone();
        let task = m.handle.spawn(async move {
            let r = m2.wait("a test wait", async { Ok(7) });
            (in_callback(), r)
        });
        m.handle.block_on(task).unwrap()
    }

    #[test]
    fn a_wait_runs_on_plain_and_foreign_runtime_threads_and_is_refused_on_a_callback_thread() {
        let m = Arc::new(kh_manager::start(2).unwrap());
        assert!(!in_callback());
        assert_eq!(m.wait("a test wait", async { Ok(7) }).unwrap(), 7);
        let foreign = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (inside, r) =
            foreign.block_on(async { (in_callback(), m.wait("a test wait", async { Ok(7) })) });
        assert!(!inside);
        assert_eq!(r.unwrap(), 7);
        let (inside, r) = wait_on_a_worker(&m);
        assert!(inside, "a worker thread is a callback's thread");
        assert!(
            matches!(&r, Err(ConnectionError::InvalidArgument(msg)) if msg.contains("inside a callback")),
            "{r:?}"
        );
        m.shutdown();
    }

    #[test]
    fn a_free_waits_until_the_last_call_inside_a_driven_manager_left() {
        let count = Arc::new(InsideCount::default());
        let (a, b) = (Inside::new(&count), Inside::new(&count));
        assert_eq!(*count.lock(), (2, false));
        drop(a);
        assert_eq!(*count.lock(), (1, false));
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let count = count.clone();
            std::thread::spawn(move || {
                count.wait_for_none();
                let _ = tx.send(());
            })
        };
        // One call is still inside: the free must not go on.
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        assert!(count.lock().1, "the free waits and says so");
        drop(b);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the free went on once the last call left");
        waiter.join().unwrap();
        assert_eq!(*count.lock(), (0, true));
        // Nobody inside: it does not wait at all.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            InsideCount::default().wait_for_none();
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a free with nobody inside went on at once");
    }

    #[test]
    fn a_wait_after_the_shutdown_is_refused_without_running_its_future() {
        let m = kh_manager::start(2).unwrap();
        m.shutdown();
        // The runtime is gone: a future that needs its timer would panic if it were run.
        let r = m.wait("a test wait", async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(())
        });
        assert!(matches!(r, Err(ConnectionError::ShuttingDown)), "{r:?}");
    }

    #[test]
    fn only_a_manager_of_more_than_one_worker_has_the_nudging_thread() {
        for (workers, nudged) in [(1, false), (2, true), (3, true)] {
            let m = kh_manager::start(workers).unwrap();
            assert_eq!(m.nudger.is_some(), nudged, "{workers} worker(s)");
            m.shutdown();
        }
    }

    #[test]
    fn the_nudging_thread_ends_when_the_manager_is_freed() {
        let m = kh_manager::start(2).unwrap();
        let thread = m.nudger.as_ref().unwrap().thread.thread().id();
        let p = SendPtr(Box::into_raw(Box::new(m)));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let p = p;
            // SAFETY: a manager in a box, freed once, from a plain thread.
            unsafe { free(p.0) };
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("kh_manager_free did not return: {thread:?} still runs"));
    }
}
