//! No log record holds a payload or a secret, at the most verbose filter (`trace`), through the
//! host-callback logger (`kh_log_set_callback`): a connection whose URL query, upgrade header
//! and init message carry secrets, a server that echoes them back, a message sent, a reconnect
//! and a close.
//!
//! Its own test binary: the `log` crate holds one logger per process, and this test installs it.

mod support;

use std::ffi::{CStr, c_char, c_void};
use std::ptr;
use std::sync::Mutex;

use kharbranth::WsManager;
use kharbranth::ffi::{kh_log_init, kh_log_level, kh_log_set_callback, kh_result};
use support::*;

const SECRET_INIT: &str = "init-secret-6b1f0c";
const SECRET_HEADER: &str = "header-secret-93d2aa";
const SECRET_QUERY: &str = "query-secret-44e0b7";
const SECRET_SENT: &str = "sent-secret-d51c3e";

/// Every record delivered: (level, target, message).
static RECORDS: Mutex<Vec<(kh_log_level, String, String)>> = Mutex::new(Vec::new());
static USER_DATA: u8 = 7;

unsafe extern "C" fn collect(
    user_data: *mut c_void,
    level: kh_log_level,
    target: *const c_char,
    message: *const c_char,
) {
    // SAFETY: the library passes NUL-terminated strings valid during the call.
    let (target, message) = unsafe { (CStr::from_ptr(target), CStr::from_ptr(message)) };
    let record = (
        level,
        target.to_string_lossy().into_owned(),
        message.to_string_lossy().into_owned(),
    );
    // A panic must not unwind into the library: record what went wrong instead.
    let record = if ptr::eq(user_data.cast_const().cast::<u8>(), &USER_DATA) {
        record
    } else {
        (level, "test".into(), "wrong user_data".into())
    };
    if let Ok(mut all) = RECORDS.lock() {
        all.push(record);
    }
}

fn records() -> Vec<(kh_log_level, String, String)> {
    RECORDS.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_record_holds_a_secret_at_trace() {
    // SAFETY: a valid callback, a pointer it only compares, a NUL-terminated filter.
    unsafe {
        assert_eq!(
            kh_log_set_callback(None, ptr::null_mut(), ptr::null()),
            kh_result::KH_INVALID_ARGUMENT
        );
        let ud = (&raw const USER_DATA).cast_mut().cast::<c_void>();
        assert_eq!(
            kh_log_set_callback(Some(collect), ud, c"trace".as_ptr()),
            kh_result::KH_OK
        );
        // Once per process: a second logger is refused, and kh_log_init changes nothing.
        assert_eq!(
            kh_log_set_callback(Some(collect), ud, c"trace".as_ptr()),
            kh_result::KH_ALREADY_EXISTS
        );
        assert_eq!(kh_log_init(c"trace".as_ptr()), kh_result::KH_OK);
    }

    let server = echo_server().await;
    let rec = Recorder::new();
    let mgr = WsManager::new();
    let url = format!("ws://127.0.0.1:{}/feed?token={SECRET_QUERY}", server.port);
    let config = cfg(url)
        .header("X-Api-Key", SECRET_HEADER)
        .init_text(format!(r#"{{"op":"auth","key":"{SECRET_INIT}"}}"#))
        .build()
        .unwrap();
    mgr.add("secret", config, rec.hooks()).unwrap();
    let echoed = |needle: &'static str, n: usize| {
        move |e: &[Ev]| {
            e.iter()
                .filter(|e| matches!(e, Ev::Text(t) if t.contains(needle)))
                .count()
                >= n
        }
    };
    rec.wait("the echoed init message", echoed(SECRET_INIT, 1))
        .await;
    mgr.send_text("secret", format!("order {SECRET_SENT}"))
        .unwrap();
    rec.wait("the echoed message", echoed(SECRET_SENT, 1)).await;
    mgr.restart("secret").unwrap();
    rec.wait(
        "the init message echoed after the reconnect",
        echoed(SECRET_INIT, 2),
    )
    .await;
    mgr.close("secret", 1000, "done").await.unwrap();
    mgr.shutdown().await;

    let all = records();
    // The filter really was `trace`: the library's own per-message records arrived.
    assert!(
        all.iter()
            .any(|(l, t, _)| *l == kh_log_level::KH_LOG_TRACE && t.starts_with("kharbranth")),
        "no trace record of kharbranth among {} records",
        all.len()
    );
    assert!(
        all.iter()
            .all(|(_, t, m)| t != "test" || m != "wrong user_data"),
        "the callback got another user_data"
    );
    for (level, target, message) in &all {
        for secret in [SECRET_INIT, SECRET_HEADER, SECRET_QUERY, SECRET_SENT] {
            assert!(
                !message.contains(secret) && !target.contains(secret),
                "a {level:?} record of {target} holds a secret: {message}"
            );
        }
        // The capped crates never log above their cap without being named in the filter.
        if target.starts_with("tungstenite") || target.starts_with("tokio_tungstenite") {
            assert!(
                (*level as u32) <= kh_log_level::KH_LOG_INFO as u32,
                "{level:?} record of {target}: {message}"
            );
        }
        if target.starts_with("rustls") {
            assert!((*level as u32) <= kh_log_level::KH_LOG_DEBUG as u32);
        }
    }
}
