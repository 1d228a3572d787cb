//! What this process holds (for the soak and fault bounds), and temp files.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn status_field(name: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// OS threads of this process.
pub fn threads() -> u64 {
    status_field("Threads:")
}

/// Resident set size in KiB.
pub fn rss_kib() -> u64 {
    status_field("VmRSS:")
}

/// The soft limit on open files.
pub fn nofile_limit() -> u64 {
    let s = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// A unique path in the temp directory for files a test writes.
pub fn temp_path(stem: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("kharbranth-{}-{stem}-{n}", std::process::id()))
}
