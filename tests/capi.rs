//! The C ABI called from Rust the way a C program calls it, against local servers: a callback
//! that sends to another connection and then blocks, waits from a plain thread, from a tokio
//! runtime's thread and from inside a callback, and `kh_manager_free` closing every connection.

mod support;

use std::ffi::{CString, c_char, c_void};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use kharbranth::ffi::*;
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// A manager pointer that threads and callbacks share, as a C program shares it.
#[derive(Clone, Copy)]
struct Mgr(*mut kh_manager);
// SAFETY: every kh_manager function but kh_manager_free may be called from any thread.
unsafe impl Send for Mgr {}
unsafe impl Sync for Mgr {}

impl Mgr {
    fn new(workers: u32) -> Self {
        let mut p = null_mut();
        // SAFETY: a valid out-pointer.
        assert_eq!(
            unsafe { kh_manager_new_with_threads(workers, &mut p) },
            kh_result::KH_OK
        );
        Mgr(p)
    }

    /// The pointer (a method, so that closures capture the whole `Mgr`, which is `Send`).
    fn ptr(self) -> *mut kh_manager {
        self.0
    }

    /// Adds `name` for the server on `port` (no heartbeat traffic during a test).
    fn add(self, name: &str, port: u16, hooks: Option<&kh_hooks>) {
        let url = CString::new(format!("ws://127.0.0.1:{port}/")).unwrap();
        let name = CString::new(name).unwrap();
        let mut cfg = null_mut();
        // SAFETY (all below): valid strings and pointers; cfg is freed after the add copied it.
        unsafe {
            assert_eq!(kh_config_new(url.as_ptr(), &mut cfg), kh_result::KH_OK);
            assert_eq!(
                kh_config_set_ping_interval_ms(cfg, 30_000),
                kh_result::KH_OK
            );
            assert_eq!(kh_config_set_pong_timeout_ms(cfg, 30_000), kh_result::KH_OK);
            assert_eq!(kh_config_set_close_timeout_ms(cfg, 2_000), kh_result::KH_OK);
            let hooks = hooks.map_or(std::ptr::null(), |h| h as *const kh_hooks);
            assert_eq!(
                kh_manager_add(self.0, name.as_ptr(), cfg, hooks),
                kh_result::KH_OK
            );
            kh_config_free(cfg);
        }
    }

    fn is_open(self, name: &str) -> bool {
        let name = CString::new(name).unwrap();
        let mut s = kh_conn_state::KH_STATE_CLOSED;
        // SAFETY: valid pointers.
        let rc = unsafe { kh_manager_state(self.0, name.as_ptr(), &mut s) };
        rc == kh_result::KH_OK && s == kh_conn_state::KH_STATE_OPEN
    }

    fn wait_open(self, name: &str, ms: u32) -> kh_result {
        let name = CString::new(name).unwrap();
        // SAFETY: valid pointers.
        unsafe { kh_manager_wait_open(self.0, name.as_ptr(), ms) }
    }

    fn close(self, name: &str) -> kh_result {
        let name = CString::new(name).unwrap();
        // SAFETY: valid pointers; a NUL-terminated reason.
        unsafe { kh_manager_close(self.0, name.as_ptr(), 1000, c"bye".as_ptr()) }
    }

    /// Frees the manager on a plain thread (a C program's main thread), bounded.
    async fn free(self) {
        on_plain_thread("kh_manager_free to return", move || {
            // SAFETY: the last call on the manager.
            unsafe { kh_manager_free(self.ptr()) }
        })
        .await;
    }
}

/// Runs `f` on a new plain thread (no tokio runtime there) and waits for it with the deadline.
async fn on_plain_thread<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    within(what, rx).await.expect("the thread panicked")
}

/// What the callbacks of a test share with it (`user_data`).
struct Shared {
    mgr: AtomicPtr<kh_manager>,
    /// Results of the calls the callbacks made, `u32::MAX` until made.
    first: AtomicU32,
    second: AtomicU32,
    drops: AtomicUsize,
}

impl Shared {
    fn new(mgr: Mgr) -> Box<Self> {
        Box::new(Self {
            mgr: AtomicPtr::new(mgr.0),
            first: AtomicU32::new(u32::MAX),
            second: AtomicU32::new(u32::MAX),
            drops: AtomicUsize::new(0),
        })
    }

    fn hooks(&self) -> kh_hooks {
        kh_hooks {
            user_data: self as *const Self as *mut c_void,
            on_drop: Some(count_drop),
            ..Default::default()
        }
    }
}

/// # Safety
/// `ud` is a live [`Shared`].
unsafe fn shared<'a>(ud: *mut c_void) -> &'a Shared {
    // SAFETY: per the function's contract.
    unsafe { &*(ud as *const Shared) }
}

unsafe extern "C" fn count_drop(ud: *mut c_void) {
    // SAFETY: the test's Shared outlives the manager.
    unsafe { shared(ud) }.drops.fetch_add(1, SeqCst);
}

/// How long the callback of the first test blocks its worker thread.
const BLOCK: Duration = Duration::from_millis(2500);

/// Sends "from a" to connection "b", then blocks like a slow C callback.
unsafe extern "C" fn send_to_b_then_block(
    ud: *mut c_void,
    _conn: *const c_char,
    _data: *const c_char,
    _len: usize,
) {
    // SAFETY: the test's Shared outlives the manager.
    let s = unsafe { shared(ud) };
    let msg = b"from a";
    // SAFETY: a live manager, a NUL-terminated name, `msg.len()` readable bytes.
    let rc = unsafe {
        kh_manager_send_text(
            s.mgr.load(SeqCst),
            c"b".as_ptr(),
            msg.as_ptr().cast(),
            msg.len(),
        )
    };
    s.first.store(rc as u32, SeqCst);
    std::thread::sleep(BLOCK);
}

/// A callback that sends to another connection wakes that connection's task on a thread of
/// its own, so the message goes out while the callback still blocks its worker (tokio would
/// otherwise keep the woken task in that worker's slot until the callback returns).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_a_callback_sends_to_another_connection_goes_out_while_the_callback_blocks() {
    let mut server = Server::start().await;
    let mgr = Mgr::new(2);
    let sh = Shared::new(mgr);
    let hooks = kh_hooks {
        on_text: Some(send_to_b_then_block),
        ..sh.hooks()
    };
    mgr.add("a", server.port, Some(&hooks));
    let mut a = server.next().await;
    mgr.add("b", server.port, None);
    let mut b = server.next().await;
    eventually("both open", || mgr.is_open("a") && mgr.is_open("b")).await;
    a.send(Message::text("go")).await.unwrap();
    let t0 = Instant::now();
    let got = tokio::time::timeout(BLOCK / 2, recv_data(&mut b)).await;
    assert_eq!(
        got.ok(),
        Some(Message::text("from a")),
        "the message of a blocking callback waited for the callback to return"
    );
    assert!(t0.elapsed() < BLOCK);
    // The message may reach the server before the callback stored what the send returned.
    eventually("the send's result", || sh.first.load(SeqCst) != u32::MAX).await;
    assert_eq!(sh.first.load(SeqCst), kh_result::KH_OK as u32);
    // The server answers both closes of the free at once.
    let ends = tokio::spawn(async move {
        tokio::join!(drain(&mut a), drain(&mut b));
    });
    mgr.free().await;
    assert_eq!(sh.drops.load(SeqCst), 1);
    ends.await.unwrap();
}

/// `kh_manager_free` from a plain thread closes every connection with 1001 (the server sees
/// the close frame) and returns once `on_drop` ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kh_manager_free_closes_every_connection_with_1001_and_returns_after_on_drop() {
    let mut server = Server::start().await;
    let mgr = Mgr::new(2);
    let sh = Shared::new(mgr);
    mgr.add("a", server.port, Some(&sh.hooks()));
    let mut a = server.next().await;
    eventually("open", || mgr.is_open("a")).await;
    let freed = tokio::spawn(mgr.free());
    match recv_data(&mut a).await {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1001),
        other => panic!("expected a close frame, got {other:?}"),
    }
    drain(&mut a).await;
    drop(a);
    freed.await.unwrap();
    assert_eq!(
        sh.drops.load(SeqCst),
        1,
        "on_drop ran before kh_manager_free returned"
    );
}

/// In `on_open` of "a": waits for "a" (refused in a callback), then closes it (only started).
unsafe extern "C" fn wait_then_close_self(ud: *mut c_void, _conn: *const c_char) {
    // SAFETY: the test's Shared outlives the manager.
    let s = unsafe { shared(ud) };
    let m = Mgr(s.mgr.load(SeqCst));
    s.first.store(m.wait_open("a", 1000) as u32, SeqCst);
    s.second.store(m.close("a") as u32, SeqCst);
}

/// A wait from a plain thread or from a tokio runtime's thread waits; one from inside a
/// callback is refused at once, and a close there only starts the close, while a close from
/// a plain thread returns once the connection is gone (its `on_drop` ran).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_run_outside_callbacks_and_are_refused_inside_where_close_only_starts() {
    let mut server = Server::start().await;
    let mgr = Mgr::new(2);
    let in_cb = Shared::new(mgr);
    let hooks = kh_hooks {
        on_open: Some(wait_then_close_self),
        ..in_cb.hooks()
    };
    mgr.add("a", server.port, Some(&hooks));
    let mut a = server.next().await;
    match recv_data(&mut a).await {
        Message::Close(Some(f)) => {
            assert_eq!((u16::from(f.code), f.reason.as_str()), (1000, "bye"))
        }
        other => panic!("expected the callback's close, got {other:?}"),
    }
    drain(&mut a).await;
    drop(a);
    // on_drop runs after every other callback returned, on_open included.
    eventually("a's on_drop", || in_cb.drops.load(SeqCst) == 1).await;
    assert_eq!(
        in_cb.first.load(SeqCst),
        kh_result::KH_INVALID_ARGUMENT as u32
    );
    assert_eq!(in_cb.second.load(SeqCst), kh_result::KH_OK as u32);

    let outside = Shared::new(mgr);
    mgr.add("b", server.port, Some(&outside.hooks()));
    let mut b = server.next().await;
    let rc = on_plain_thread("a wait from a plain thread", move || {
        mgr.wait_open("b", 5000)
    })
    .await;
    assert_eq!(rc, kh_result::KH_OK);
    // This thread is a worker of the test's tokio runtime.
    assert_eq!(mgr.wait_open("b", 5000), kh_result::KH_OK);
    let server_side = tokio::spawn(async move { drain(&mut b).await });
    let rc = on_plain_thread("a close from a plain thread", move || mgr.close("b")).await;
    assert_eq!(rc, kh_result::KH_OK);
    assert_eq!(
        outside.drops.load(SeqCst),
        1,
        "close returned before on_drop"
    );
    server_side.await.unwrap();
    mgr.free().await;
}

/// How long the callback of the blocking test blocks, each of its two rounds.
const BLOCK_AGAIN: Duration = Duration::from_millis(2000);

/// Marks that a callback began (1), blocks like a slow C callback, then marks its end (2).
unsafe extern "C" fn mark_and_block(
    ud: *mut c_void,
    _conn: *const c_char,
    _data: *const c_char,
    _len: usize,
) {
    // SAFETY: the test's Shared outlives the manager.
    let s = unsafe { shared(ud) };
    s.first.store(1, SeqCst);
    std::thread::sleep(BLOCK_AGAIN);
    s.first.store(2, SeqCst);
}

/// Marks that a message arrived.
unsafe extern "C" fn mark(
    ud: *mut c_void,
    _conn: *const c_char,
    _data: *const c_char,
    _len: usize,
) {
    // SAFETY: the test's Shared outlives the manager.
    unsafe { shared(ud) }.first.store(1, SeqCst);
}

/// While one connection's callback blocks its worker thread, another connection's socket is
/// still read: with two workers the runtime's I/O driver is kept polled (tokio would otherwise
/// leave the other worker asleep until the blocking callback returns).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_callback_does_not_stop_the_reads_of_another_connection() {
    let mut server = Server::start().await;
    let mgr = Mgr::new(2);
    let (sa, sb) = (Shared::new(mgr), Shared::new(mgr));
    let slow = kh_hooks {
        on_text: Some(mark_and_block),
        ..sa.hooks()
    };
    let quick = kh_hooks {
        on_text: Some(mark),
        ..sb.hooks()
    };
    mgr.add("a", server.port, Some(&slow));
    let mut a = server.next().await;
    mgr.add("b", server.port, Some(&quick));
    let mut b = server.next().await;
    eventually("both open", || mgr.is_open("a") && mgr.is_open("b")).await;
    // Two rounds: which worker thread was polling the driver when the blocking one took its
    // message depends on scheduling, and the second round starts from a settled runtime.
    for round in 0..2 {
        sa.first.store(0, SeqCst);
        sb.first.store(0, SeqCst);
        a.send(Message::text("block")).await.unwrap();
        eventually("a's callback to block", || sa.first.load(SeqCst) == 1).await;
        b.send(Message::text("x")).await.unwrap();
        let read = wait_until(BLOCK_AGAIN / 2, || sb.first.load(SeqCst) == 1).await;
        assert!(
            read,
            "round {round}: b's message waited for a's callback to return"
        );
        assert_eq!(
            sa.first.load(SeqCst),
            1,
            "round {round}: a's callback returned first"
        );
        eventually("a's callback to return", || sa.first.load(SeqCst) == 2).await;
    }
    let ends = tokio::spawn(async move {
        tokio::join!(drain(&mut a), drain(&mut b));
    });
    mgr.free().await;
    ends.await.unwrap();
}
