//! Inflating compressed binary messages (gzip, zlib, raw deflate) before they are delivered.
//!
//! Inflating is incremental into one buffer per connection that never grows past the maximum
//! message size: a small message that would inflate to gigabytes (a "zip bomb") is refused at
//! the limit, having cost at most the limit in memory. The decompressor and the buffer are
//! reused from message to message; each delivered message costs one allocation, its `Bytes`.
//!
//! flate2 runs on zlib-rs (pure Rust, like miniz_oxide): it inflates a 1 KiB JSON message in
//! about 33,000 instructions where miniz_oxide takes 71,000 (callgrind, two run lengths).
//! The gzip header and trailer are read here so that gzip reuses the raw inflater.

use bytes::Bytes;
use flate2::{Crc, Decompress, FlushDecompress, Status};

use crate::config::Compression;
use crate::error::ConnectionError;

/// Output buffer space added at a time, at least.
const STEP: usize = 16 << 10;
/// Above this, the buffer is given back after a message, so one large message does not keep
/// its size allocated for the connection's life.
const RETAIN: usize = 1 << 20;

/// The decompressors and output buffer of one connection.
pub(crate) struct Inflater {
    kind: Compression,
    max: usize,
    zlib: Decompress,
    raw: Decompress,
    out: Vec<u8>,
    /// The warnings about messages that could not be inflated.
    pub(crate) warnings: crate::logging::Throttle,
}

fn failed(msg: String) -> ConnectionError {
    ConnectionError::InflateFailed(msg)
}

/// Whether `b` starts with a zlib header (RFC 1950: deflate, a check value divisible by 31).
fn is_zlib(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] & 0x0f == 8 && b[0] >> 4 <= 7 && u16::from_be_bytes([b[0], b[1]]) % 31 == 0
}

fn is_gzip(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b])
}

/// The length of the gzip header (RFC 1952, 2.3) at the start of `b`.
fn gzip_header(b: &[u8]) -> Result<usize, ConnectionError> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    let short = || failed("truncated gzip header".into());
    if b.len() < 10 || !is_gzip(b) {
        return Err(failed("not a gzip stream (no gzip header)".into()));
    }
    if b[2] != 8 {
        return Err(failed(format!(
            "gzip compression method {} is not deflate",
            b[2]
        )));
    }
    let flags = b[3];
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let len = b.get(at..at + 2).ok_or_else(short)?;
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let rest = b.get(at..).ok_or_else(short)?;
            at += 1 + rest.iter().position(|&c| c == 0).ok_or_else(short)?;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    if at > b.len() {
        return Err(short());
    }
    Ok(at)
}

impl Inflater {
    /// An inflater for messages compressed as `kind`, refusing any that inflates past `max`.
    pub(crate) fn new(kind: Compression, max: usize) -> Self {
        Self {
            kind,
            max,
            zlib: Decompress::new(true),
            raw: Decompress::new(false),
            out: Vec::new(),
            warnings: crate::logging::Throttle::default(),
        }
    }

    /// The inflated message, or why it could not be inflated.
    pub(crate) fn inflate(&mut self, b: &[u8]) -> Result<Bytes, ConnectionError> {
        let r = self
            .inflate_into(b)
            .map(|()| Bytes::copy_from_slice(&self.out));
        if self.out.capacity() > RETAIN {
            self.out = Vec::new();
        }
        r
    }

    fn inflate_into(&mut self, b: &[u8]) -> Result<(), ConnectionError> {
        self.out.clear();
        match self.kind {
            Compression::Zlib => self.stream(b, true).map(drop),
            Compression::Deflate => self.stream(b, false).map(drop),
            Compression::Gzip => self.gzip(b),
            Compression::Auto if is_gzip(b) => self.gzip(b),
            Compression::Auto if is_zlib(b) => self.stream(b, true).map(drop),
            Compression::Auto => {
                self.out.extend_from_slice(b);
                Ok(())
            }
        }
    }

    fn gzip(&mut self, b: &[u8]) -> Result<(), ConnectionError> {
        let header = gzip_header(b)?;
        let used = self.stream(&b[header..], false)?;
        let trailer = b
            .get(header + used..header + used + 8)
            .ok_or_else(|| failed("gzip trailer missing".into()))?;
        let mut crc = Crc::new();
        crc.update(&self.out);
        let want_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let want_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        if crc.sum() != want_crc {
            return Err(failed("gzip CRC-32 mismatch".into()));
        }
        // ISIZE is the length modulo 2^32.
        if self.out.len() as u32 != want_len {
            return Err(failed("gzip length mismatch".into()));
        }
        Ok(())
    }

    /// Inflates one zlib (`zlib`) or raw deflate stream from `input` into `self.out`, never
    /// past `self.max` bytes; the input bytes it used.
    fn stream(&mut self, input: &[u8], zlib: bool) -> Result<usize, ConnectionError> {
        let d = if zlib { &mut self.zlib } else { &mut self.raw };
        d.reset(zlib);
        loop {
            let used = d.total_in() as usize;
            if self.out.len() == self.out.capacity() {
                // Saturating: `max_message_size(usize::MAX)` is a valid setting.
                let room = self.max.saturating_add(1) - self.out.len();
                if room == 0 {
                    break;
                }
                self.out.reserve_exact(room.min(self.out.len().max(STEP)));
            }
            let produced = self.out.len();
            // Not `Finish`: that tells the inflater the whole output fits the buffer (miniz_oxide
            // fails otherwise), and the buffer here grows in steps up to the limit.
            let status = d
                .decompress_vec(&input[used..], &mut self.out, FlushDecompress::None)
                .map_err(|e| failed(format!("corrupt compressed data: {e}")))?;
            if self.out.len() > self.max {
                break;
            }
            match status {
                Status::StreamEnd => return Ok(d.total_in() as usize),
                Status::Ok | Status::BufError => {
                    let stuck = d.total_in() as usize == used && self.out.len() == produced;
                    if stuck && self.out.len() < self.out.capacity() {
                        return Err(failed("truncated compressed data".into()));
                    }
                }
            }
        }
        Err(failed(format!(
            "the message inflates to more than the maximum message size of {} bytes",
            self.max
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};

    use super::*;

    /// Set once a body ran out of time: its thread still spins, and so does any other that
    /// hung, so later bodies are not started (on two cores a few spinning threads would stall
    /// every other test of the binary).
    static HUNG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// Runs a test's body on its own thread and fails it if the body has not returned within
    /// 5 s (each takes milliseconds): inflating is a loop, and a loop that makes no progress
    /// must fail the test, not hang it. The spinning thread ends with the test binary.
    fn bounded(body: impl FnOnce() + Send + 'static) {
        use std::sync::atomic::Ordering::SeqCst;
        assert!(!HUNG.load(SeqCst), "not run: an earlier inflate test hung");
        let (done, finished) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            body();
            let _ = done.send(());
        });
        match finished.recv_timeout(std::time::Duration::from_secs(5)) {
            Ok(()) => worker.join().unwrap(),
            // The body panicked: its panic is the test's failure.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                if let Err(panic) = worker.join() {
                    std::panic::resume_unwind(panic);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                HUNG.store(true, SeqCst);
                panic!("inflating did not finish within 5 s")
            }
        }
    }

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }
    fn zl(b: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }
    fn raw(b: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }
    fn message(r: Result<Bytes, ConnectionError>) -> String {
        match r {
            Err(ConnectionError::InflateFailed(m)) => m,
            other => panic!("not an inflate failure: {other:?}"),
        }
    }

    #[test]
    fn each_format_inflates_and_the_state_is_reused_across_messages() {
        bounded(|| {
            let text: Vec<u8> = (0..100_000u32)
                .flat_map(|i| (i % 251).to_le_bytes())
                .collect();
            for (kind, pack) in [
                (Compression::Gzip, gz as fn(&[u8]) -> Vec<u8>),
                (Compression::Zlib, zl),
                (Compression::Deflate, raw),
            ] {
                let mut i = Inflater::new(kind, 1 << 20);
                for n in [0, 1, 5000, text.len()] {
                    assert_eq!(
                        i.inflate(&pack(&text[..n])).unwrap(),
                        &text[..n],
                        "{kind:?} {n}"
                    );
                }
            }
            let mut unlimited = Inflater::new(Compression::Zlib, usize::MAX);
            assert_eq!(unlimited.inflate(&zl(&text)).unwrap(), &text[..]);
            let mut auto = Inflater::new(Compression::Auto, 1 << 20);
            assert_eq!(auto.inflate(&gz(b"gzip")).unwrap(), &b"gzip"[..]);
            assert_eq!(auto.inflate(&zl(b"zlib")).unwrap(), &b"zlib"[..]);
            assert_eq!(auto.inflate(b"plain").unwrap(), &b"plain"[..]);
        });
    }

    #[test]
    fn a_bomb_is_refused_at_the_limit_and_the_buffer_is_given_back() {
        bounded(|| {
            let bomb = zl(&vec![0u8; 16 << 20]);
            let mut i = Inflater::new(Compression::Zlib, 2 << 20);
            let m = message(i.inflate(&bomb));
            assert!(m.contains("maximum message size of 2097152"), "{m}");
            assert_eq!(i.out.capacity(), 0);
            // Exactly at the limit is fine.
            let mut i = Inflater::new(Compression::Gzip, 1000);
            assert_eq!(i.inflate(&gz(&[7; 1000])).unwrap().len(), 1000);
            assert!(message(i.inflate(&gz(&[7; 1001]))).contains("maximum"));
        });
    }

    #[test]
    fn corrupt_truncated_and_mismatched_input_is_refused_and_the_next_message_inflates() {
        bounded(|| {
            let mut i = Inflater::new(Compression::Gzip, 1 << 20);
            let good = gz(b"hello hello hello");
            let mut bad_crc = good.clone();
            let n = bad_crc.len();
            bad_crc[n - 8] ^= 1;
            assert!(message(i.inflate(&bad_crc)).contains("CRC"));
            assert!(message(i.inflate(&good[..good.len() - 4])).contains("trailer"));
            assert!(message(i.inflate(&good[..5])).contains("header"));
            assert!(message(i.inflate(b"plain")).contains("no gzip header"));
            assert_eq!(i.inflate(&good).unwrap(), &b"hello hello hello"[..]);

            let mut z = Inflater::new(Compression::Zlib, 1 << 20);
            let good = zl(b"abcabcabcabc");
            assert!(message(z.inflate(&good[..good.len() / 2])).contains("truncated"));
            assert!(message(z.inflate(&[0x78, 0x9c, 0xff, 0xff, 0xff])).contains("corrupt"));
            assert_eq!(z.inflate(&good).unwrap(), &b"abcabcabcabc"[..]);
        });
    }

    /// `gz(body)` with its header's flags set to `flags` and `fields` (the optional fields, in
    /// RFC 1952 order) inserted after the fixed 10 bytes.
    fn gz_with(body: &[u8], flags: u8, fields: &[u8]) -> Vec<u8> {
        let plain = gz(body);
        let mut v = plain[..10].to_vec();
        v[3] = flags;
        v.extend_from_slice(fields);
        v.extend_from_slice(&plain[10..]);
        v
    }

    #[test]
    fn gzip_headers_with_optional_fields_are_skipped_whole() {
        bounded(|| {
            let body = b"the same message behind every header";
            // FEXTRA: two length bytes, then that many bytes; FNAME and FCOMMENT: NUL-terminated;
            // FHCRC: two bytes. Each alone, then all four.
            let extra = [5u8, 0, b'a', b'b', b'c', b'd', b'e'];
            let cases: Vec<(u8, Vec<u8>)> = vec![
                (4, extra.to_vec()),
                (8, b"name.json\0".to_vec()),
                (16, b"a comment\0".to_vec()),
                (2, vec![0xab, 0xcd]),
                (
                    4 | 8 | 16 | 2,
                    [&extra[..], b"n\0", b"c\0", &[1, 2]].concat(),
                ),
            ];
            let mut i = Inflater::new(Compression::Gzip, 1 << 20);
            let mut auto = Inflater::new(Compression::Auto, 1 << 20);
            for (flags, fields) in cases {
                let packed = gz_with(body, flags, &fields);
                assert_eq!(i.inflate(&packed).unwrap(), &body[..], "flags {flags:#x}");
                assert_eq!(
                    auto.inflate(&packed).unwrap(),
                    &body[..],
                    "flags {flags:#x}"
                );
            }
        });
    }

    #[test]
    fn truncated_or_foreign_gzip_headers_are_refused_by_name() {
        bounded(|| {
            let mut i = Inflater::new(Compression::Gzip, 1 << 20);
            let header = |flags: u8, fields: &[u8]| {
                let mut v = vec![0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 3];
                v.extend_from_slice(fields);
                v
            };
            for (what, input) in [
                ("FEXTRA without its length", header(4, &[])),
                ("FEXTRA longer than the input", header(4, &[9, 0, 1, 2])),
                ("FNAME without its NUL", header(8, b"name")),
                ("FCOMMENT without its NUL", header(16, b"comment")),
                ("FHCRC cut short", header(2, &[1])),
            ] {
                let m = message(i.inflate(&input));
                assert!(m.contains("truncated gzip header"), "{what}: {m}");
            }
            let m = message(i.inflate(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0]));
            assert!(m.contains("gzip header"), "under 10 bytes: {m}");
            let mut other_method = gz(b"x");
            other_method[2] = 7;
            let m = message(i.inflate(&other_method));
            assert!(m.contains("method 7 is not deflate"), "{m}");
            // A complete header with nothing behind it: the header is fine, the data missing.
            for fields in [(0, &[][..]), (4, &[1, 0, b'x'][..])] {
                let m = message(i.inflate(&header(fields.0, fields.1)));
                assert!(!m.contains("header"), "{fields:?}: {m}");
            }
            let m = message(i.inflate(b"{\"not\": \"gzip at all\"}"));
            assert!(m.contains("not a gzip stream"), "{m}");
            let mut bad_len = gz(b"hello");
            let n = bad_len.len();
            bad_len[n - 1] ^= 1;
            assert!(message(i.inflate(&bad_len)).contains("length mismatch"));
            assert_eq!(i.inflate(&gz(b"hello")).unwrap(), &b"hello"[..]);
        });
    }

    #[test]
    fn auto_inflates_only_what_starts_like_zlib_and_passes_the_rest_through() {
        bounded(|| {
            let mut auto = Inflater::new(Compression::Auto, 1 << 20);
            // Each fails exactly one check of the RFC 1950 header: length, method, window size,
            // check value; and text that happens to meet the method nibble ("h" is 0x68).
            for plain in [
                &b"x"[..],
                &[0x79, 0x18, 1, 2],
                &[0x88, 0x1c, 1, 2],
                &[0x78, 0x9d, 1, 2],
                b"hello",
            ] {
                assert_eq!(auto.inflate(plain).unwrap(), plain, "{plain:?}");
            }
            // A zlib header with no data behind it is zlib, and truncated.
            assert!(message(auto.inflate(&[0x78, 0x9c])).contains("truncated"));
            for level in [0, 1, 6, 9] {
                let mut e = ZlibEncoder::new(Vec::new(), flate2::Compression::new(level));
                e.write_all(b"levels").unwrap();
                let packed = e.finish().unwrap();
                assert_eq!(
                    auto.inflate(&packed).unwrap(),
                    &b"levels"[..],
                    "level {level}"
                );
            }
        });
    }

    #[test]
    fn a_small_message_keeps_the_buffer_for_the_next_and_a_large_one_gives_it_back() {
        bounded(|| {
            let mut i = Inflater::new(Compression::Zlib, 8 << 20);
            i.inflate(&zl(&[1; 5000])).unwrap();
            let kept = i.out.capacity();
            assert!(kept >= 5000, "{kept}");
            i.inflate(&zl(&[2; 100])).unwrap();
            assert_eq!(i.out.capacity(), kept, "reused, not reallocated");
            let big = vec![3; 2 << 20];
            assert_eq!(i.inflate(&zl(&big)).unwrap(), &big[..]);
            assert_eq!(i.out.capacity(), 0, "over 1 MiB is given back");
        });
    }
}
