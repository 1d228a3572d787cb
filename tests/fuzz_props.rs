//! Issue 4, fuzzing with proptest (the stable toolchain here cannot run libFuzzer):
//!
//! * arbitrary server bytes (raw, and structurally plausible frames with random flags, opcodes,
//!   lengths and masks) fed into a `Connection` after the handshake, over `tokio::io::duplex`:
//!   no panic, the run ends within 5 s of the server half closing, no hook sees a message above
//!   `max_message_size` (64 KiB), and RSS stays bounded over the whole run;
//! * arbitrary arguments into every `Config` builder setter: `build()` never panics, and a
//!   configuration it accepts is usable (a `Connection` and the backoff run with it).
//!
//! Bounded for CI: FUZZ_CASES cases per property (default 10,000; about 10-20 s in all
//! in a debug build on 2 cores). A longer run: `FUZZ_CASES=20000 cargo test --release --test fuzz_props`.
//! Inputs that once failed are kept in tests/corpus/fuzz_props.txt and replayed first; hand-made
//! interesting server byte streams in tests/corpus/server_bytes/ are replayed by
//! `corpus_server_bytes`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kharbranth::{Config, Connection, Heartbeat, ReadHooks};
use proptest::prelude::*;
use support::rss_kib;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAX: usize = 64 * 1024;

/// RSS may grow by at most this much over the whole run (KiB): nothing is buffered unbounded.
const RSS_SLACK_KIB: u64 = 128 * 1024;

fn check_rss() {
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(rss_kib);
    let now = rss_kib();
    assert!(
        now <= start + RSS_SLACK_KIB,
        "RSS grew from {start} to {now} KiB"
    );
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// Runs a Connection whose server side writes `chunks` and then closes; returns the largest
/// message payload a hook saw.
fn feed_connection(config: Config, chunks: Vec<Vec<u8>>) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (client, server) = tokio::io::duplex(16 * 1024);
        // The link stays alive for the run: dropping every link closes the connection.
        let (conn, _link) = Connection::new("fuzz", client, config);
        let biggest = Arc::new(AtomicUsize::new(0));
        let b = biggest.clone();
        let mut hooks = ReadHooks::new().on_frame(move |_, _, payload| {
            b.fetch_max(payload.len(), Ordering::Relaxed);
        });
        let (mut rd, mut wr) = tokio::io::split(server);
        let writer = tokio::spawn(async move {
            for c in chunks {
                if wr.write_all(&c).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
            wr
        });
        // Drain what the client writes (pongs, close replies) so it never blocks on us.
        let drain = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = rd.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
        let ended = tokio::time::timeout(Duration::from_secs(5), conn.run(&mut hooks)).await;
        assert!(
            ended.is_ok(),
            "the connection did not end within 5 s of EOF"
        );
        drain.abort();
        let _ = writer.await;
        biggest.load(Ordering::Relaxed)
    })
}

fn fuzz_config() -> Config {
    Config::builder("ws://fuzz.invalid/")
        .max_message_size(MAX)
        .ping_interval(Duration::from_millis(100))
        .pong_timeout(Duration::from_millis(100))
        .close_timeout(Duration::from_millis(100))
        .build()
        .unwrap()
}

/// A server frame with arbitrary header bits, a length field that may lie, optional mask.
fn arb_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),                                // FIN, RSV1-3, opcode
        any::<bool>(),                              // masked (servers must not)
        0u8..4,                                     // length encoding
        prop::option::of(any::<u64>()),             // a lying length
        prop::collection::vec(any::<u8>(), 0..300), // payload
        any::<[u8; 4]>(),                           // mask key
    )
        .prop_map(|(b0, masked, enc, lie, payload, key)| {
            let mut f = vec![b0];
            let len = lie.unwrap_or(payload.len() as u64);
            let m = if masked { 0x80 } else { 0 };
            match enc {
                0 if len < 126 => f.push(m | len as u8),
                0 | 1 => {
                    f.push(m | 126);
                    f.extend_from_slice(&(len as u16).to_be_bytes());
                }
                _ => {
                    f.push(m | 127);
                    f.extend_from_slice(&len.to_be_bytes());
                }
            }
            if masked {
                f.extend_from_slice(&key);
            }
            f.extend_from_slice(&payload);
            f
        })
}

/// Well-formed text/binary frames, ping, close and continuation, mixed with garbage.
fn arb_stream() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let valid = (0usize..6, prop::collection::vec(any::<u8>(), 0..200)).prop_map(|(k, p)| {
        let (b0, p) = match k {
            0 => (0x81, b"hello \xe2\x9c\x93".to_vec()),
            1 => (0x82, p),
            2 => (0x89, p.into_iter().take(125).collect()),
            3 => (0x01, b"frag".to_vec()), // text, not final
            4 => (0x80, b"ment".to_vec()), // continuation, final
            _ => (0x88, vec![0x03, 0xe8]), // close 1000
        };
        let mut f = vec![b0, p.len().min(125) as u8];
        f.extend_from_slice(&p[..p.len().min(125)]);
        f
    });
    let piece = prop_oneof![
        3 => valid,
        2 => arb_frame(),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ];
    prop::collection::vec(piece, 0..24)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("tests/corpus/fuzz_props.txt"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_server_bytes(raw in prop::collection::vec(any::<u8>(), 0..4096), split in 1usize..512) {
        let chunks: Vec<Vec<u8>> = raw.chunks(split).map(<[u8]>::to_vec).collect();
        let biggest = feed_connection(fuzz_config(), chunks);
        prop_assert!(biggest <= MAX);
        check_rss();
    }

    #[test]
    fn arbitrary_server_frames(frames in arb_stream()) {
        let biggest = feed_connection(fuzz_config(), frames);
        prop_assert!(biggest <= MAX);
        check_rss();
    }

    #[test]
    fn arbitrary_config_arguments(
        url in prop_oneof![
            3 => Just("ws://fuzz.invalid/feed?x=1".to_string()),
            1 => any::<String>(),
            1 => "(ws|wss|http|WS|wSs)://[a-z0-9.:@\\[\\]%-]{0,30}(/[ -~]{0,20})?",
        ],
        durations in prop::collection::vec(
            prop_oneof![
                60 => (1u64..5_000).prop_map(Duration::from_millis),
                1 => any::<u64>().prop_map(Duration::from_nanos),
                1 => any::<u64>().prop_map(Duration::from_secs),
                1 => (1u64..4).prop_map(|y| Duration::from_secs(y * 365 * 24 * 3600 - 1)),
                1 => Just(Duration::ZERO),
                1 => Just(Duration::MAX),
            ],
            8,
        ),
        sizes in prop::collection::vec(
            prop_oneof![8 => 256usize..100_000, 1 => any::<usize>(), 1 => 0usize..300, 1 => Just(usize::MAX)],
            6,
        ),
        attempts in any::<u32>(),
        order_backoff in prop::bool::weighted(0.8),
        headers in prop::collection::vec(
            (
                prop_oneof![2 => "[A-Za-z-]{1,12}", 1 => any::<String>()],
                prop_oneof![2 => "[ -~]{0,30}".prop_map(String::into_bytes), 1 => prop::collection::vec(any::<u8>(), 0..40)],
            ),
            0..3,
        ),
        subprotocols in prop::collection::vec(prop_oneof!["[a-z.0-9]{1,10}", any::<String>()], 0..3),
        texts in prop::collection::vec(any::<String>(), 0..3),
        heartbeat in prop::option::of(any::<String>()),
        ca in prop::option::weighted(0.05, any::<String>()),
    ) {
        let backoff = if order_backoff {
            (durations[3].min(durations[4]), durations[3].max(durations[4]))
        } else {
            (durations[3], durations[4])
        };
        let mut b = Config::builder(url)
            .ping_interval(durations[0])
            .pong_timeout(durations[1])
            .connect_timeout(durations[2])
            .reconnect_backoff(backoff.0, backoff.1)
            .backoff_reset_after(durations[5])
            .close_timeout(durations[6])
            .max_reconnect_attempts(attempts)
            .max_message_size(sizes[0])
            .max_frame_size(sizes[1])
            .send_queue_capacity(sizes[2] % (1 << 20)) // the queue is allocated lazily, but keep it sane
            .read_buffer_size(sizes[3] % (1 << 20))
            .write_buffer_size(sizes[4]);
        for (n, v) in headers {
            b = b.header(n, v);
        }
        for p in subprotocols {
            b = b.subprotocol(p);
        }
        for t in texts {
            b = b.init_text(t);
        }
        b = b.init_binary(vec![0u8; sizes[5] % 4096]);
        if let Some(h) = heartbeat {
            b = b.heartbeat(Heartbeat::Text(h));
        }
        if let Some(p) = ca {
            b = b.add_ca_file(p);
        }
        if let Ok(config) = b.build() {
            // An accepted configuration is usable: a connection runs with it (the backoff's
            // bounds for every accepted range are a property test in src/backoff.rs).
            let close = vec![vec![0x88, 0x02, 0x03, 0xe8]];
            feed_connection(config, close);
        }
    }
}

/// Extreme but positive durations: refused by `build()`, or usable (no Instant overflow).
#[test]
fn huge_durations_are_refused_or_usable() {
    for d in [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::from_secs(1 << 40),
    ] {
        let built = Config::builder("ws://fuzz.invalid/")
            .ping_interval(d)
            .pong_timeout(d)
            .connect_timeout(d)
            .reconnect_backoff(d, d)
            .backoff_reset_after(d)
            .close_timeout(d)
            .build();
        if let Ok(config) = built {
            feed_connection(config, vec![vec![0x88, 0x02, 0x03, 0xe8]]);
        }
    }
}

/// Replays the committed corpus of interesting server byte streams.
#[test]
fn corpus_server_bytes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/server_bytes");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let biggest = feed_connection(fuzz_config(), vec![bytes]);
        assert!(biggest <= MAX, "{}", path.display());
        n += 1;
    }
    assert!(n >= 5, "corpus missing");
}
