//! `wsbench sizes`: the in-memory size of what every connection holds, for the idle-memory
//! budget (the task of a connection is allocated at the size of its largest state).

use std::mem::{size_of, size_of_val};

use kharbranth::{Config, Connection, ReadHooks};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub fn run() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
        let config = Config::builder("ws://127.0.0.1:1/").build().expect("config");
        let (a, _b) = tokio::io::duplex(64);
        let (conn, _l) = Connection::new("x", a, config.clone());
        let conn_duplex = size_of_val(&conn);
        let mut hooks = ReadHooks::new();
        let run = conn.run(&mut hooks);
        let run_duplex = size_of_val(&run);
        drop(run);
        // The connect path of tokio-tungstenite, as kharbranth's manager awaits it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let tcp = TcpStream::connect(listener.local_addr().unwrap()).await.expect("tcp");
        let connect = tokio_tungstenite::client_async_tls_with_config(
            "ws://127.0.0.1/",
            tcp,
            None,
            None,
        );
        let connect_size = size_of_val(&connect);
        drop(connect);
        // The run future of a connection over the stream type the manager uses.
        let tcp = TcpStream::connect(listener.local_addr().unwrap()).await.expect("tcp");
        let (conn, _l) = Connection::new("x", MaybeTlsStream::Plain(tcp), config.clone());
        let run = conn.run(&mut hooks);
        let run_tcp = size_of_val(&run);
        drop(run);
        println!(
            "{{\"tool\":\"sizes\",\"websocket_stream_maybe_tls_tcp\":{},\"connection_maybe_tls_tcp\":{},\
             \"connection_over_duplex\":{conn_duplex},\"run_future_over_duplex\":{run_duplex},\
             \"run_future_maybe_tls_tcp\":{run_tcp},\"tt_connect_future\":{connect_size},\"read_hooks\":{},\"message\":{}}}",
            size_of::<Ws>(),
            size_of::<Connection<MaybeTlsStream<TcpStream>>>(),
            size_of::<ReadHooks>(),
            size_of::<kharbranth::Message>(),
        );
    });
}
