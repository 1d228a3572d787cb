//! Options, the watchdog, /proc readings and the one-line JSON result.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

pub struct Opts(pub HashMap<String, String>);

impl Opts {
    pub fn num(&self, key: &str, default: u64) -> u64 {
        self.0
            .get(key)
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{key}={v} is not a number"))
            })
            .unwrap_or(default)
    }
    pub fn str(&self, key: &str, default: &str) -> String {
        self.0
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
    pub fn opt_num(&self, key: &str) -> Option<usize> {
        self.0.get(key).map(|v| v.parse().expect("a number"))
    }
}

/// Ends the process with status 3 after `limit`, whatever it is doing.
pub fn watchdog(limit: Duration, role: &str) {
    let role = role.to_string();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("wsbench {role}: hard timeout after {limit:?}");
        std::process::exit(3);
    });
}

/// A field of /proc/self/status in its own unit (kB for memory).
pub fn proc_status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The p-th percentile (0..=100) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// One result line; `extra` holds already-encoded `"key":value` pairs.
pub struct Report<'a> {
    pub client: &'a str,
    pub workload: String,
    pub msgs: u64,
    pub bytes: u64,
    pub secs: f64,
    pub ok: bool,
    pub extra: Vec<(String, String)>,
}

impl Report<'_> {
    pub fn print(&self) {
        let secs = self.secs.max(1e-9);
        let mut s = String::new();
        let _ = write!(
            s,
            r#"{{"client":"{}","workload":"{}","msgs":{},"bytes":{},"secs":{:.6},"msgs_per_sec":{:.1},"mb_per_sec":{:.2},"ok":{}"#,
            self.client,
            self.workload,
            self.msgs,
            self.bytes,
            self.secs,
            self.msgs as f64 / secs,
            self.bytes as f64 / 1e6 / secs,
            self.ok
        );
        for (k, v) in &self.extra {
            let _ = write!(s, r#","{k}":{v}"#);
        }
        s.push('}');
        println!("{s}");
    }
}

pub fn kv(k: &str, v: impl std::fmt::Display) -> (String, String) {
    (k.to_string(), v.to_string())
}

pub fn kv_str(k: &str, v: &str) -> (String, String) {
    (k.to_string(), format!("\"{v}\""))
}

/// The workload name used in the tables: `push_64B`, `push_1KiB`, `echo_64B`, `idle`.
pub fn workload_name(kind: &str, size: u64) -> String {
    let size = if size >= 1 << 20 && size % (1 << 20) == 0 {
        format!("{}MiB", size >> 20)
    } else if size >= 1024 && size % 1024 == 0 {
        format!("{}KiB", size >> 10)
    } else {
        format!("{size}B")
    };
    match kind {
        "idle" => "idle".to_string(),
        k => format!("{k}_{size}"),
    }
}
