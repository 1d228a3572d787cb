use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kharbranth::{Config, ReadHooks, WsManager};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_roundtrip() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() || m.is_binary() {
                        ws.send(m).await.unwrap();
                    }
                }
            });
        }
    });
    let (tx, rx) = mpsc::channel();
    let mgr = WsManager::new();
    let cfg = Config::builder(format!("ws://127.0.0.1:{port}/"))
        .init_text("hello")
        .build()
        .unwrap();
    mgr.add("a", cfg, ReadHooks::new().on_text(move |_, t| tx.send(t.to_string()).unwrap()))
        .unwrap();
    mgr.wait_open("a", Duration::from_secs(5)).await.unwrap();
    mgr.send_text("a", "world").unwrap();
    let got: Vec<String> = tokio::task::spawn_blocking(move || {
        (0..2).map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap()).collect()
    })
    .await
    .unwrap();
    assert_eq!(got, ["hello", "world"]);
    mgr.close("a", 1000, "bye").await.unwrap();
    assert!(mgr.state("a").is_err());
}
