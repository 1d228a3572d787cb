//! A driven manager (`kh_manager_new_driven`) called the way a C program calls it, against local
//! servers: its connections run on the thread that polls, inside `kh_manager_poll` and the other
//! calls that wait, and nowhere else; what its callbacks may call; a free from one of them;
//! and backpressure on a slow poller.

mod support;

use std::ffi::{CString, c_char, c_void};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use kharbranth::ffi::*;
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// A driven manager's pointer, shared by threads and callbacks as a C program shares it.
#[derive(Clone, Copy)]
struct Mgr(*mut kh_manager);
// SAFETY: every kh_manager function but kh_manager_free may be called from any thread.
unsafe impl Send for Mgr {}
unsafe impl Sync for Mgr {}

impl Mgr {
    fn new() -> Self {
        let mut p = null_mut();
        // SAFETY: a valid out-pointer.
        assert_eq!(unsafe { kh_manager_new_driven(&mut p) }, kh_result::KH_OK);
        Mgr(p)
    }

    /// The pointer (a method, so that closures capture the whole `Mgr`, which is `Send`).
    fn ptr(self) -> *mut kh_manager {
        self.0
    }

    /// Adds `name` for the server on `port`: polled without `hooks`, else with them.
    fn add(self, name: &str, port: u16, hooks: Option<&kh_hooks>) {
        let url = CString::new(format!("ws://127.0.0.1:{port}/")).unwrap();
        let name = CString::new(name).unwrap();
        let mut cfg = null_mut();
        // SAFETY (all below): valid strings and pointers; cfg is freed after the add copied it.
        unsafe {
            assert_eq!(kh_config_new(url.as_ptr(), &mut cfg), kh_result::KH_OK);
            assert_eq!(kh_config_set_close_timeout_ms(cfg, 2_000), kh_result::KH_OK);
            let rc = match hooks {
                Some(h) => kh_manager_add(self.0, name.as_ptr(), cfg, h),
                None => kh_manager_add_polled(self.0, name.as_ptr(), cfg),
            };
            assert_eq!(rc, kh_result::KH_OK);
            kh_config_free(cfg);
        }
    }

    /// One poll into `out` (cleared first); the events' pointers are valid until the next.
    fn poll(self, out: &mut Vec<kh_event>, cap: usize, timeout_ms: i32) -> kh_result {
        out.clear();
        out.reserve(cap);
        let mut n = 0;
        // SAFETY: `out` has room for `cap` events; kh_manager_poll wrote the first `n`.
        unsafe {
            let rc = kh_manager_poll(self.0, out.as_mut_ptr(), cap, timeout_ms, &mut n);
            out.set_len(n);
            rc
        }
    }

    fn wait_open(self, name: &str, ms: u32) -> kh_result {
        let name = CString::new(name).unwrap();
        // SAFETY: valid pointers.
        unsafe { kh_manager_wait_open(self.0, name.as_ptr(), ms) }
    }

    fn send(self, name: &str, text: &str) -> kh_result {
        let name = CString::new(name).unwrap();
        // SAFETY: valid pointers; `text.len()` readable bytes.
        unsafe { kh_manager_send_text(self.0, name.as_ptr(), text.as_ptr().cast(), text.len()) }
    }

    /// Drives `name` open with `kh_manager_wait_open` on a plain thread while `server` takes
    /// the connection; the server's end.
    async fn open(self, name: &str, server: &mut Server) -> ServerWs {
        let name = name.to_string();
        let opened = tokio::spawn(on_plain_thread("wait_open", move || {
            self.wait_open(&name, 5000)
        }));
        let ws = server.next().await;
        assert_eq!(opened.await.unwrap(), kh_result::KH_OK);
        ws
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

/// Runs `f` on a new plain thread (no tokio runtime there, as in a C program) and waits for it
/// with the deadline.
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

/// The bytes an event lends.
fn data(e: &kh_event) -> &[u8] {
    // SAFETY: `data` points to `len` bytes until the next poll.
    unsafe { std::slice::from_raw_parts(e.data, e.len) }
}

/// Polls (50 ms at a time) until `want` texts came or the deadline passed; their payloads.
fn poll_texts(mgr: Mgr, want: usize, cap: usize) -> Vec<String> {
    let mut got = Vec::new();
    let mut events = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while got.len() < want && Instant::now() < deadline {
        assert_eq!(mgr.poll(&mut events, cap, 50), kh_result::KH_OK);
        for e in &events {
            if e.kind == kh_event_kind::KH_EVENT_TEXT {
                got.push(String::from_utf8(data(e).to_vec()).unwrap());
            }
        }
    }
    got
}

/// Nothing moves between calls: the connection is not even dialled until a call drives the
/// manager. `kh_manager_wait_open` drives it open, and a poll then reads what the server sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_move_only_inside_the_calls_that_drive_the_manager() {
    let mut server = Server::start().await;
    let mgr = Mgr::new();
    mgr.add("feed", server.port, None);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), server.next())
            .await
            .is_err(),
        "a driven manager dialled without being driven"
    );
    let mut ws = mgr.open("feed", &mut server).await;
    ws.send(Message::text("first")).await.unwrap();
    let got = on_plain_thread("the poll", move || poll_texts(mgr, 1, 16)).await;
    assert_eq!(got, ["first"]);
    drop(ws);
    mgr.free().await;
}

/// A poll with timeout 0 still reads the sockets that are readable now: a message the server
/// wrote before the poll comes out of that one poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_without_waiting_reads_what_has_arrived() {
    let mut server = Server::start().await;
    let mgr = Mgr::new();
    mgr.add("feed", server.port, None);
    let mut ws = mgr.open("feed", &mut server).await;
    // On loopback a flushed write is in the client's receive buffer when the flush returns.
    ws.send(Message::text("ready")).await.unwrap();
    let kinds = on_plain_thread("the poll", move || {
        let mut events = Vec::new();
        assert_eq!(mgr.poll(&mut events, 16, 0), kh_result::KH_OK);
        events
            .iter()
            .map(|e| (e.kind, data(e).to_vec()))
            .collect::<Vec<_>>()
    })
    .await;
    assert_eq!(
        kinds,
        [
            (kh_event_kind::KH_EVENT_OPEN, vec![]),
            (kh_event_kind::KH_EVENT_TEXT, b"ready".to_vec())
        ]
    );
    drop(ws);
    mgr.free().await;
}

/// A slow poller on a fast feed with a small queue: every numbered message comes once, in
/// order (the connection stops reading while the queue is full; TCP holds the rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_poller_gets_every_numbered_message_once_in_order() {
    const N: usize = 20_000;
    let mut server = Server::start().await;
    let mgr = Mgr::new();
    // SAFETY: a live manager.
    assert_eq!(
        unsafe { kh_manager_set_event_capacity(mgr.ptr(), 8) },
        kh_result::KH_OK
    );
    mgr.add("feed", server.port, None);
    let poller = tokio::spawn(on_plain_thread("the slow poller", move || {
        let mut got = Vec::with_capacity(N);
        let mut events = Vec::new();
        let deadline = Instant::now() + DEADLINE * 3;
        while got.len() < N && Instant::now() < deadline {
            assert_eq!(mgr.poll(&mut events, 3, 50), kh_result::KH_OK);
            assert!(events.len() <= 3);
            for e in &events {
                if e.kind == kh_event_kind::KH_EVENT_TEXT {
                    let s = std::str::from_utf8(data(e)).unwrap();
                    got.push(s.parse::<usize>().unwrap());
                }
            }
            if got.len() % 1000 == 0 {
                std::thread::sleep(Duration::from_millis(2)); // slow, now and then
            }
        }
        got
    }));
    let mut ws = server.next().await;
    for i in 0..N {
        ws.feed(Message::text(i.to_string())).await.unwrap();
    }
    ws.flush().await.unwrap();
    let got = poller.await.unwrap();
    assert_eq!(got.len(), N, "messages lost or the poller was too slow");
    assert!(got.iter().enumerate().all(|(i, &k)| i == k), "out of order");
    drop(ws);
    mgr.free().await;
}

/// What the callbacks of a test share with it (`user_data`).
struct Shared {
    mgr: AtomicPtr<kh_manager>,
    /// The threads the callbacks ran on.
    threads: Mutex<Vec<ThreadId>>,
    /// Results of the calls the callbacks made, `u32::MAX` until made.
    waited: AtomicU32,
    polled: AtomicU32,
    sent: AtomicU32,
    texts: AtomicUsize,
    drops: AtomicUsize,
}

impl Shared {
    fn new(mgr: Mgr) -> Box<Self> {
        Box::new(Self {
            mgr: AtomicPtr::new(mgr.0),
            threads: Mutex::new(Vec::new()),
            waited: AtomicU32::new(u32::MAX),
            polled: AtomicU32::new(u32::MAX),
            sent: AtomicU32::new(u32::MAX),
            texts: AtomicUsize::new(0),
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

/// In `on_open`: notes the thread, then tries what a callback may and may not call.
unsafe extern "C" fn try_calls(ud: *mut c_void, _conn: *const c_char) {
    // SAFETY: the test's Shared outlives the manager.
    let s = unsafe { shared(ud) };
    s.threads.lock().unwrap().push(std::thread::current().id());
    let m = Mgr(s.mgr.load(SeqCst));
    s.waited.store(m.wait_open("hooked", 1000) as u32, SeqCst);
    let mut events = Vec::new();
    s.polled.store(m.poll(&mut events, 4, 0) as u32, SeqCst);
    s.sent.store(m.send("hooked", "echo me") as u32, SeqCst);
}

unsafe extern "C" fn note_text(
    ud: *mut c_void,
    _conn: *const c_char,
    _d: *const c_char,
    _n: usize,
) {
    // SAFETY: the test's Shared outlives the manager.
    let s = unsafe { shared(ud) };
    s.threads.lock().unwrap().push(std::thread::current().id());
    s.texts.fetch_add(1, SeqCst);
}

/// Callbacks run on the polling thread, inside the poll; there a wait or a poll is refused
/// and a send is queued (and goes out within that same poll: the echo comes back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_run_on_the_polling_thread_where_waits_are_refused() {
    let server = echo_server().await;
    let mgr = Mgr::new();
    let sh = Shared::new(mgr);
    let hooks = kh_hooks {
        on_open: Some(try_calls),
        on_text: Some(note_text),
        ..sh.hooks()
    };
    mgr.add("hooked", server.port, Some(&hooks));
    let sh_ptr = &*sh as *const Shared as usize;
    let poller = on_plain_thread("the poll", move || {
        // SAFETY: the Box outlives this thread, which the test joins.
        let sh = unsafe { &*(sh_ptr as *const Shared) };
        let mut events = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        while sh.texts.load(SeqCst) == 0 && Instant::now() < deadline {
            // No polled connection: each poll drives the manager for its timeout.
            assert_eq!(mgr.poll(&mut events, 4, 50), kh_result::KH_OK);
            assert!(events.is_empty());
        }
        std::thread::current().id()
    })
    .await;
    assert_eq!(
        sh.texts.load(SeqCst),
        1,
        "the callback's send was not echoed"
    );
    let threads = sh.threads.lock().unwrap().clone();
    assert!(
        threads.len() >= 2 && threads.iter().all(|t| *t == poller),
        "{threads:?}"
    );
    assert_eq!(
        sh.waited.load(SeqCst),
        kh_result::KH_INVALID_ARGUMENT as u32
    );
    assert_eq!(
        sh.polled.load(SeqCst),
        kh_result::KH_INVALID_ARGUMENT as u32
    );
    assert_eq!(sh.sent.load(SeqCst), kh_result::KH_OK as u32);
    mgr.free().await;
    assert_eq!(
        sh.drops.load(SeqCst),
        1,
        "on_drop before kh_manager_free returned"
    );
}

/// In `on_text`: frees the manager that runs it.
unsafe extern "C" fn free_own_manager(
    ud: *mut c_void,
    _conn: *const c_char,
    _d: *const c_char,
    _n: usize,
) {
    // SAFETY: the test's Shared outlives the manager.
    let s = unsafe { shared(ud) };
    s.texts.fetch_add(1, SeqCst);
    // SAFETY: the test makes no call on the manager after this one.
    unsafe { kh_manager_free(s.mgr.load(SeqCst)) };
}

/// A callback that frees its own manager ends the poll that runs it with `KH_SHUTTING_DOWN`
/// and no events; the shutdown then closes the connection with 1001 and calls `on_drop`. The
/// hook frees on every text and gets two: the second free, from a callback still running,
/// is ignored (a second helper would free the manager twice). Polled from a plain thread and
/// from a tokio thread (whose drives run on a helper thread, and which must not be the one to
/// drop the runtime).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_that_frees_its_manager_ends_the_poll_and_the_manager_goes_away() {
    for from_tokio in [false, true] {
        let mut server = Server::start().await;
        let mgr = Mgr::new();
        let sh = Shared::new(mgr);
        let hooks = kh_hooks {
            on_text: Some(free_own_manager),
            ..sh.hooks()
        };
        mgr.add("hooked", server.port, Some(&hooks));
        let polls = move || {
            let mut events = Vec::new();
            let deadline = Instant::now() + DEADLINE;
            loop {
                let rc = mgr.poll(&mut events, 4, 50);
                if rc != kh_result::KH_OK || Instant::now() > deadline {
                    return (rc, events.len());
                }
            }
        };
        let polls = if from_tokio {
            tokio::task::spawn_blocking(polls)
        } else {
            tokio::spawn(on_plain_thread("the polls", polls))
        };
        let mut ws = server.next().await;
        ws.feed(Message::text("free it")).await.unwrap();
        ws.feed(Message::text("free it again")).await.unwrap();
        ws.flush().await.unwrap();
        let polled = within("the poll that frees", polls).await.unwrap();
        assert_eq!(
            polled,
            (kh_result::KH_SHUTTING_DOWN, 0),
            "from tokio: {from_tokio}"
        );
        match recv_data(&mut ws).await {
            Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1001),
            other => panic!("expected a close frame, got {other:?}"),
        }
        drain(&mut ws).await;
        eventually("on_drop", || sh.drops.load(SeqCst) == 1).await;
        assert!(sh.texts.load(SeqCst) >= 1);
    }
}

/// The wake-up ends a poll that would wait without limit; the event descriptor is refused (no
/// thread reads the sockets, so none could say when to poll); bad arguments get their errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wakeup_ends_an_endless_poll_and_the_descriptor_is_refused() {
    let mgr = Mgr::new();
    let mut fd = -1;
    // SAFETY (all below): a live manager and valid or deliberately NULL pointers.
    unsafe {
        assert_eq!(
            kh_manager_event_fd(mgr.ptr(), &mut fd),
            kh_result::KH_INVALID_ARGUMENT
        );
        assert_eq!(fd, -1, "a refused call wrote its output");
        let mut n = 7;
        assert_eq!(
            kh_manager_poll(mgr.ptr(), null_mut(), 4, 0, &mut n),
            kh_result::KH_INVALID_ARGUMENT
        );
        assert_eq!(n, 7);
    }
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let poll = tokio::spawn(on_plain_thread("the endless poll", move || {
        let mut events = Vec::new();
        let _ = started_tx.send(());
        (mgr.poll(&mut events, 4, -1), events.len())
    }));
    started_rx.recv_timeout(DEADLINE).unwrap();
    // Without limit means without limit: nothing comes, so the poll is still waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !poll.is_finished(),
        "a poll without a timeout returned without a wake-up"
    );
    // SAFETY: a live manager.
    assert_eq!(unsafe { kh_manager_wakeup(mgr.ptr()) }, kh_result::KH_OK);
    assert_eq!(poll.await.unwrap(), (kh_result::KH_OK, 0));
    mgr.free().await;
}

/// A thread of a tokio runtime (a Rust host) cannot run the manager's runtime itself; its
/// waits run on a helper thread and still complete: from a task's own thread and from
/// `spawn_blocking`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_from_a_tokio_thread_drives_the_manager_on_a_helper() {
    let mut server = Server::start().await;
    let mgr = Mgr::new();
    mgr.add("feed", server.port, None);
    let accept = tokio::spawn(async move {
        let ws = server.next().await;
        (server, ws)
    });
    // From this very thread, a worker of the test's runtime inside a task, where the driven
    // runtime cannot be started (tokio would panic): a helper thread runs it.
    assert_eq!(mgr.wait_open("feed", 5000), kh_result::KH_OK);
    let (_server, mut ws) = accept.await.unwrap();
    ws.send(Message::text("hello")).await.unwrap();
    let got = tokio::task::spawn_blocking(move || poll_texts(mgr, 1, 4))
        .await
        .unwrap();
    assert_eq!(got, ["hello"]);
    // Nothing answers a close from the server between calls: the free makes the handshake.
    let freed = tokio::spawn(mgr.free());
    match recv_data(&mut ws).await {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1001),
        other => panic!("expected a close frame, got {other:?}"),
    }
    drain(&mut ws).await;
    freed.await.unwrap();
}

/// A send between two polls is held until the next call drives the manager (nothing runs
/// between calls, and waking the runtime then would cost system calls for nothing), and goes
/// out with that call. A send made while another thread's poll waits goes out at once: that
/// poll must not sleep through it until its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_go_out_with_the_next_poll_or_at_once_while_one_waits() {
    let mut server = Server::start().await;
    let mgr = Mgr::new();
    mgr.add("feed", server.port, None);
    let mut ws = mgr.open("feed", &mut server).await;

    // Between calls: queued, and written by the next poll (which need not wait for anything).
    assert_eq!(mgr.send("feed", "between polls"), kh_result::KH_OK);
    let polled = on_plain_thread("a poll without waiting", move || {
        mgr.poll(&mut Vec::new(), 4, 0)
    })
    .await;
    assert_eq!(polled, kh_result::KH_OK);
    assert_eq!(recv_data(&mut ws).await, Message::text("between polls"));

    // While a poll waits (far longer than the test's deadline) on another thread: the send
    // reaches the server while that poll still waits, and the server's answer ends it.
    let waiting = Arc::new(AtomicBool::new(false));
    let w = waiting.clone();
    let poll = tokio::spawn(on_plain_thread("the long poll", move || {
        w.store(true, SeqCst);
        let started = Instant::now();
        let mut events = Vec::new();
        loop {
            assert_eq!(mgr.poll(&mut events, 4, 60_000), kh_result::KH_OK);
            if events
                .iter()
                .any(|e| e.kind == kh_event_kind::KH_EVENT_TEXT)
            {
                return (
                    events.iter().map(|e| data(e).to_vec()).collect::<Vec<_>>(),
                    started.elapsed(),
                );
            }
        }
    }));
    eventually("the poll to start", || waiting.load(SeqCst)).await;
    assert_eq!(mgr.send("feed", "while one waits"), kh_result::KH_OK);
    assert_eq!(recv_data(&mut ws).await, Message::text("while one waits"));
    ws.send(Message::text("answer")).await.unwrap();
    let (got, took) = within("the long poll", poll).await.unwrap();
    assert_eq!(got, [b"answer".to_vec()]);
    assert!(took < DEADLINE, "the poll returned after {took:?}");
    drop(ws);
    mgr.free().await;
}

/// What one connection's events say, in order, as a test compares them.
#[derive(Debug, PartialEq)]
enum Seen {
    Open,
    Text(usize),
    Big(usize),
    Close(u16, String),
}

/// A driven poll writes messages straight into the caller's array (no queue in between) while
/// a connection has nothing queued; lifecycle events and close frames still go through the
/// queue. Two connections, each a numbered feed with large messages and a close among them,
/// polled with an odd capacity: each connection's events come once each, in order, with their
/// names, and the names stay readable until the next poll even after the connection is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_written_in_place_keep_each_connections_order_and_names() {
    const N: usize = 3_000;
    const BIG: usize = 5_000; // above the size the library copies: held in place, not copied
    let mut a = Server::start().await;
    let mut b = Server::start().await;
    let mgr = Mgr::new();
    mgr.add("a", a.port, None);
    mgr.add("b", b.port, None);
    let poller = tokio::spawn(on_plain_thread("the poller", move || {
        let mut seen: [Vec<Seen>; 2] = [Vec::new(), Vec::new()];
        let mut events = Vec::new();
        let deadline = Instant::now() + DEADLINE * 2;
        let done = |s: &Vec<Seen>| matches!(s.last(), Some(Seen::Close(..)));
        while !(done(&seen[0]) && done(&seen[1])) && Instant::now() < deadline {
            assert_eq!(mgr.poll(&mut events, 7, 50), kh_result::KH_OK);
            for e in &events {
                // SAFETY: `conn` is a NUL-terminated name, valid until the next poll.
                let name = unsafe { std::ffi::CStr::from_ptr(e.conn) }
                    .to_str()
                    .unwrap();
                let i = match name {
                    "a" => 0,
                    "b" => 1,
                    other => panic!("event of an unknown connection {other:?}"),
                };
                let d = data(e);
                seen[i].push(match e.kind {
                    kh_event_kind::KH_EVENT_OPEN => Seen::Open,
                    kh_event_kind::KH_EVENT_TEXT => {
                        Seen::Text(std::str::from_utf8(d).unwrap().parse().unwrap())
                    }
                    kh_event_kind::KH_EVENT_BINARY => {
                        assert_eq!(d.len(), BIG);
                        assert!(d.iter().all(|&x| x == d[0]), "a large payload was damaged");
                        Seen::Big(d[0] as usize)
                    }
                    kh_event_kind::KH_EVENT_CLOSE => {
                        Seen::Close(e.close_code, String::from_utf8(d.to_vec()).unwrap())
                    }
                    other => panic!("unexpected event {other:?}"),
                });
            }
        }
        seen
    }));
    let mut expected = vec![Seen::Open];
    for (k, ws) in [a.next().await, b.next().await].iter_mut().enumerate() {
        for i in 0..N {
            ws.feed(Message::text(i.to_string())).await.unwrap();
            if i % 1000 == 999 {
                let tag = (i / 1000) as u8;
                ws.feed(Message::binary(vec![tag; BIG])).await.unwrap();
                if k == 0 {
                    expected.push(Seen::Text(i));
                    expected.push(Seen::Big(tag as usize));
                }
                continue;
            }
            if k == 0 {
                expected.push(Seen::Text(i));
            }
        }
        ws.feed(Message::Close(Some(
            tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: 4000.into(),
                reason: "bye".into(),
            },
        )))
        .await
        .unwrap();
        ws.flush().await.unwrap();
    }
    expected.push(Seen::Close(4000, "bye".into()));
    let seen = poller.await.unwrap();
    assert_eq!(seen[0], expected, "connection a");
    assert_eq!(seen[1], expected, "connection b");

    // A name the last poll lent stays readable after its connection was closed for good.
    let mut c = Server::start().await;
    mgr.add("c", c.port, None);
    let opened = on_plain_thread("c to open", move || mgr.wait_open("c", 5_000)).await;
    assert_eq!(opened, kh_result::KH_OK);
    let mut ws = c.next().await;
    ws.send(Message::text("last")).await.unwrap();
    // Answers the close handshake.
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
    let lent = on_plain_thread("a poll of c", move || {
        let mut events = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            assert_eq!(mgr.poll(&mut events, 4, 50), kh_result::KH_OK);
            if let Some(e) = events
                .iter()
                .find(|e| e.kind == kh_event_kind::KH_EVENT_TEXT)
            {
                let conn = e.conn as usize;
                let name = CString::new("c").unwrap();
                // SAFETY: valid pointers; not inside a callback.
                let rc = unsafe { kh_manager_close(mgr.ptr(), name.as_ptr(), 1000, null_mut()) };
                assert_eq!(rc, kh_result::KH_OK);
                // SAFETY: lent until the next poll, which has not happened.
                return unsafe { std::ffi::CStr::from_ptr(conn as *const c_char) }
                    .to_str()
                    .unwrap()
                    .to_owned();
            }
        }
        panic!("no text from c");
    })
    .await;
    assert_eq!(lent, "c");
    within("c's server side to end", drain).await.unwrap();
    mgr.free().await;
}
