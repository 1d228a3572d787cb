//! Queued small messages cost about their own size. Its own test binary: the resident set
//! size it measures is the whole process's.

mod support;

use futures_util::SinkExt;
use kharbranth::WsManager;
use support::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_thousand_queued_small_messages_take_a_few_megabytes() {
    const N: usize = 30_000;
    let mut server = Server::start().await;
    let mgr = WsManager::new();
    let events = mgr.events();
    mgr.add_polled("m", cfg(server.port).build().unwrap())
        .unwrap();
    let mut ws = server.next().await;
    eventually("the open event", || mgr.pending_events() == 1).await;
    let before = rss_kib();
    for i in 0..N {
        ws.feed(Message::text(format!("{i:064}"))).await.unwrap();
    }
    ws.flush().await.unwrap();
    eventually("every message queued", || mgr.pending_events() == N + 1).await;
    let grown = rss_kib().saturating_sub(before);
    // About 150 bytes each (the payload's allocation, the queue's slot): 4.3 MiB measured.
    assert!(
        grown < 32 * 1024,
        "{N} queued 64-byte messages grew the process by {grown} KiB"
    );
    drop(events);
    mgr.shutdown().await;
}
