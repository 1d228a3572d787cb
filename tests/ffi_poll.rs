//! `kh_manager_poll` called from Rust the way a C program calls it, against a local server:
//! what a `kh_event` lends (the connection's name, the payload, the receive times), and the
//! byte capacity bounding a queue of large messages.

mod support;

use std::ffi::{CStr, CString};
use std::ptr::null_mut;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use kharbranth::ffi::*;
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// A manager of one polled connection to the server on `port`, with receive timestamps as
/// asked; freed on drop.
struct Polled(*mut kh_manager);

// SAFETY: every kh_manager function but kh_manager_free may be called from any thread; the
// test polls from one thread at a time.
unsafe impl Send for Polled {}

impl Polled {
    fn new(port: u16, stamps: bool) -> Self {
        let mut m = null_mut();
        let url = CString::new(format!("ws://127.0.0.1:{port}/")).unwrap();
        let mut cfg = null_mut();
        // SAFETY (all below): valid strings and out-pointers; cfg is freed after the add.
        unsafe {
            assert_eq!(kh_manager_new_with_threads(1, &mut m), kh_result::KH_OK);
            assert_eq!(kh_config_new(url.as_ptr(), &mut cfg), kh_result::KH_OK);
            assert_eq!(
                kh_config_set_receive_timestamps(cfg, i32::from(stamps)),
                kh_result::KH_OK
            );
            // A bug that keeps the connection from reading fails a test within its deadline,
            // not that plus a long close when the manager is freed.
            assert_eq!(kh_config_set_close_timeout_ms(cfg, 1000), kh_result::KH_OK);
            assert_eq!(
                kh_manager_add_polled(m, c"feed".as_ptr(), cfg),
                kh_result::KH_OK
            );
            kh_config_free(cfg);
        }
        Polled(m)
    }

    /// One poll of up to `cap` events, waiting up to 50 ms; the events' pointers are valid
    /// until the next call.
    fn poll(&self, out: &mut Vec<kh_event>, cap: usize) -> usize {
        out.clear();
        out.reserve(cap);
        let mut n = 0;
        // SAFETY: `out` has room for `cap` events; kh_manager_poll wrote the first `n`.
        unsafe {
            assert_eq!(
                kh_manager_poll(self.0, out.as_mut_ptr(), cap, 50, &mut n),
                kh_result::KH_OK
            );
            out.set_len(n);
        }
        n
    }
}

impl Drop for Polled {
    fn drop(&mut self) {
        // SAFETY: the last call on this manager.
        unsafe { kh_manager_free(self.0) };
    }
}

/// The bytes an event lends.
fn data(e: &kh_event) -> &[u8] {
    // SAFETY: `data` points to `len` bytes until the next poll.
    unsafe { std::slice::from_raw_parts(e.data, e.len) }
}

/// Polls on a plain thread until `want` data messages came, keeping what each carried:
/// (kind, name, payload, receive time in monotonic ns).
async fn collect(mgr: Polled, want: usize) -> (Polled, Vec<(kh_event_kind, String, Vec<u8>, u64)>) {
    tokio::task::spawn_blocking(move || {
        let mut got = Vec::new();
        let mut events = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        while got.len() < want {
            assert!(
                Instant::now() < deadline,
                "only {} messages came",
                got.len()
            );
            mgr.poll(&mut events, 16);
            for e in &events {
                if matches!(
                    e.kind,
                    kh_event_kind::KH_EVENT_TEXT | kh_event_kind::KH_EVENT_BINARY
                ) {
                    assert!(!e.conn.is_null(), "a message without its connection's name");
                    // SAFETY: a NUL-terminated name, valid until the next poll.
                    let name = unsafe { CStr::from_ptr(e.conn) };
                    got.push((
                        e.kind,
                        name.to_str().unwrap().to_owned(),
                        data(e).to_vec(),
                        e.recv_mono_ns,
                    ));
                }
            }
        }
        (mgr, got)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_event_lends_its_connection_name_payload_and_receive_time() {
    for stamps in [true, false] {
        let mut server = Server::start().await;
        let mgr = Polled::new(server.port, stamps);
        let mut ws = server.next().await;
        let before = kharbranth::ReceiveTime::now().monotonic_ns();
        ws.send(Message::text("small")).await.unwrap();
        ws.send(Message::binary(vec![9u8; 5000])).await.unwrap();
        let (mgr, got) = within("two messages", collect(mgr, 2)).await;
        assert_eq!(got[0].0, kh_event_kind::KH_EVENT_TEXT);
        assert_eq!(got[1].0, kh_event_kind::KH_EVENT_BINARY);
        for (_, name, _, _) in &got {
            assert_eq!(name, "feed");
        }
        assert_eq!(got[0].2, b"small");
        assert_eq!(got[1].2, vec![9u8; 5000]);
        for (_, _, _, t) in &got {
            if stamps {
                assert!(*t >= before, "receive time {t} before the send at {before}");
            } else {
                assert_eq!(*t, 0, "a receive time without the option");
            }
        }
        // The server goes first, so the close handshake of kh_manager_free ends at once.
        drop(ws);
        drop(mgr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_takes_about_the_byte_capacity_and_the_queue_holds_no_more() {
    const SIZE: usize = 256 * 1024;
    const BYTES: usize = 1 << 20;
    const N: usize = 60;
    let mut server = Server::start().await;
    let mgr = Polled::new(server.port, false);
    // SAFETY: a live manager.
    assert_eq!(
        unsafe { kh_manager_set_event_byte_capacity(mgr.0, BYTES) },
        kh_result::KH_OK
    );
    let mut ws = server.next().await;
    let _feed = AbortOnDrop(tokio::spawn(async move {
        for i in 0..N {
            ws.feed(Message::binary(vec![i as u8; SIZE])).await.unwrap();
        }
        ws.flush().await.unwrap();
        futures_util::StreamExt::next(&mut ws).await;
    }));
    // Give the connection time to fill the queue, then take as much as one poll may.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mgr, counts) = tokio::task::spawn_blocking(move || {
        let mut events = Vec::new();
        let mut counts = Vec::new();
        let mut seen = 0;
        let deadline = Instant::now() + DEADLINE;
        while seen < N {
            assert!(Instant::now() < deadline, "only {seen} messages came");
            mgr.poll(&mut events, 1024);
            let mut here = 0;
            for e in &events {
                if e.kind == kh_event_kind::KH_EVENT_BINARY {
                    assert_eq!(data(e), vec![seen as u8; SIZE], "message {seen}");
                    seen += 1;
                    here += 1;
                }
            }
            counts.push(here);
        }
        (mgr, counts)
    })
    .await
    .unwrap();
    // One poll lends at most the capacity and one read's batch (256 KiB) beyond it.
    let most = counts.iter().max().copied().unwrap_or(0);
    assert!(
        most * SIZE <= BYTES + 2 * SIZE,
        "one poll took {most} messages of {SIZE} bytes with a byte capacity of {BYTES}"
    );
    assert!(
        most >= BYTES / SIZE,
        "no poll took a full queue: {counts:?}"
    );
    drop(mgr);
}
