//! The WebSocket benchmark: a fast local server and the Rust clients, in one binary.
//!
//! `bash bench/run.sh` builds and drives it; see `bench/README.md`. Roles (first argument), the
//! rest are `key=value` options:
//!
//! - `server port=9301 [addrs=1] [secs=1200]`: the benchmark server on 127.0.0.1 (up to
//!   127.0.0.`addrs`). Paths:
//!   `/push/N/S` sends N text messages of S bytes then the text marker `END`; `/push/N/S/bin`
//!   does the same with binary messages and a binary marker; `/echo` echoes every message;
//!   `/idle` just holds the connection.
//! - `sizes`: the in-memory size of a connection's parts (for the idle-memory budget).
//! - `drain url=... n=N s=S`: the server's ceiling; a plain TCP client that only counts bytes.
//! - `tt ...` / `kh ...`: raw tokio-tungstenite / kharbranth's Rust API, with
//!   `workload=push|echo|idle`, `url=`, `n=`, `s=`, `bin=1`, `rbuf=BYTES` (read buffer size),
//!   `warmup=` (echo) and `secs=` (hard timeout); `tt` also takes `rt=ct|mt` (current-thread
//!   runtime or multi-thread with one worker) and `loop=task|main` (the receive loop in a
//!   spawned task or in the future `block_on` polls).
//!
//! Every client prints one JSON line. Run by `cargo bench -p kharbranth-bench` (which passes
//! `--bench`) with no role it does a short self-check (server + both Rust clients in one
//! process); with no role and no `--bench` (as `cargo test --all-targets` runs it) it does
//! nothing.

mod clients;
mod server;
mod sizes;
mod util;

use std::collections::HashMap;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let role = args
        .iter()
        .find(|a| !a.starts_with('-') && !a.contains('='))
        .cloned()
        .unwrap_or_default();
    let opts: HashMap<String, String> = args
        .iter()
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let opts = util::Opts(opts);
    // A hard timeout for every role: nothing may hang the suite.
    let default_secs = if role == "server" { 1200 } else { 120 };
    util::watchdog(Duration::from_secs(opts.num("secs", default_secs)), &role);
    match role.as_str() {
        "server" => server::run(opts.num("port", 9301) as u16, opts.num("addrs", 1) as u8),
        "drain" => clients::drain(&opts),
        "tt" => clients::tt(&opts),
        "kh" => clients::kh(&opts),
        "sizes" => sizes::run(),
        // `cargo bench` passes --bench: a short self-check. `cargo test --all-targets` runs
        // this target without it: do nothing there (the suite is not a test).
        _ if args.iter().any(|a| a == "--bench") => self_check(),
        _ => eprintln!("wsbench: no role given; the suite is `bash bench/run.sh`"),
    }
}

/// What `cargo bench` runs: a small push and echo through both Rust clients.
fn self_check() {
    let port = 19_000 + (std::process::id() % 20_000) as u16;
    std::thread::spawn(move || server::run(port, 1));
    std::thread::sleep(Duration::from_millis(200));
    eprintln!("wsbench self-check on 127.0.0.1:{port}; the real suite is `bash bench/run.sh`");
    let push = format!("url=ws://127.0.0.1:{port}/push/100000/64");
    let echo = format!("url=ws://127.0.0.1:{port}/echo");
    for args in [
        vec!["workload=push", push.as_str(), "n=100000", "s=64"],
        vec!["workload=echo", echo.as_str(), "n=2000", "s=64"],
    ] {
        let o = util::Opts(
            args.iter()
                .filter_map(|a| a.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        clients::tt(&o);
        clients::kh(&o);
    }
}
