//! Logging set-up for programs that do not configure `log` themselves (and for the C ABI).
//!
//! Both loggers the library can install (the stderr one of [`init_logging`] / `kh_log_init`
//! and the host callback of `kh_log_set_callback`) hold the records of the WebSocket and TLS
//! crates back at their verbose levels, because those levels print what must never reach a
//! log: tungstenite's trace records print every frame with its payload and the upgrade request
//! with its headers (API keys), its debug records the peer's close frames with their reason;
//! rustls's trace records print handshake messages and session tickets. The cap is lifted for
//! a crate only when the filter names it explicitly (e.g. `tungstenite=trace`): an operator
//! who asks for those records by name gets them, a blanket `trace` does not.

use log::{Level, LevelFilter, Log, Metadata, Record, SetLoggerError};

/// The crates whose records are capped, and the most verbose level let through for each unless
/// the filter names the crate.
const CAPPED: [(&str, Level); 3] = [
    ("tungstenite", Level::Info),
    ("tokio_tungstenite", Level::Info),
    ("rustls", Level::Debug),
];

/// Installs `env_logger` with a `RUST_LOG`-style filter (`None` reads `RUST_LOG`, default
/// `info`). Calling it again, or after another logger was installed, changes nothing and is not
/// an error.
///
/// Records of `tungstenite` and `tokio_tungstenite` above `info`, and of `rustls` above
/// `debug`, are dropped unless the filter names that crate (see the module documentation).
pub fn init_logging(filter: Option<&str>) {
    let _ = install_stderr(filter);
}

/// [`init_logging`], telling whether a logger was installed by this call.
pub(crate) fn install_stderr(filter: Option<&str>) -> Result<(), SetLoggerError> {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if let Some(f) = filter {
        builder.parse_filters(f);
    }
    let logger = builder.build();
    let max = logger.filter();
    install_capped(Box::new(logger), &effective_spec(filter), max)
}

/// The filter a logger applies: `RUST_LOG` (default `info`), then `filter`, whose directives
/// win, as env_logger reads them.
pub(crate) fn effective_spec(filter: Option<&str>) -> String {
    let mut spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
    if let Some(f) = filter {
        spec.push(',');
        spec.push_str(f);
    }
    spec
}

/// A filter parsed like `RUST_LOG` (for a logger that writes somewhere else than stderr).
pub(crate) fn matcher(spec: &str) -> env_logger::Logger {
    env_logger::Builder::new().parse_filters(spec).build()
}

/// Installs `inner` as the process's logger behind the cap for `spec`, with `max` as the
/// global level (the cheap check the `log` macros make before building a record).
pub(crate) fn install_capped(
    inner: Box<dyn Log>,
    spec: &str,
    max: LevelFilter,
) -> Result<(), SetLoggerError> {
    log::set_boxed_logger(Box::new(Capped {
        inner,
        cap: Cap::for_spec(spec),
    }))?;
    log::set_max_level(max);
    Ok(())
}

/// Which capped crates a filter names explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cap {
    named: [bool; CAPPED.len()],
}

impl Cap {
    /// Reads the directives of a `RUST_LOG`-style spec (`a=level,b,level/substring`).
    pub(crate) fn for_spec(spec: &str) -> Self {
        let directives = spec.split('/').next().unwrap_or_default();
        let mut named = [false; CAPPED.len()];
        for directive in directives.split(',') {
            let module = directive.split('=').next().unwrap_or_default().trim();
            for (slot, (krate, _)) in named.iter_mut().zip(CAPPED) {
                *slot |= is_in(module, krate);
            }
        }
        Self { named }
    }

    /// Whether a record of `target` at `level` may be logged at all.
    pub(crate) fn allows(&self, target: &str, level: Level) -> bool {
        CAPPED
            .iter()
            .zip(self.named)
            .all(|((krate, max), named)| named || level <= *max || !is_in(target, krate))
    }
}

/// `path` is the crate `krate` or one of its modules.
fn is_in(path: &str, krate: &str) -> bool {
    path.strip_prefix(krate)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

struct Capped {
    inner: Box<dyn Log>,
    cap: Cap,
}

impl Log for Capped {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.cap.allows(metadata.target(), metadata.level()) && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if self.cap.allows(record.target(), record.level()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// How often a [`Throttle`] lets a record through at most.
const THROTTLE_PERIOD: std::time::Duration = std::time::Duration::from_secs(10);

/// Holds back a repeated warning: a peer that sends nothing but bad frames must not flood the
/// log with one record per frame. The first record goes out, then at most one per
/// `THROTTLE_PERIOD`, telling how many were held back meanwhile. Reads the clock only when
/// asked, i.e. on the failure path.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    last: Option<std::time::Instant>,
    held: u64,
}

impl Throttle {
    /// `Some(n)` when a record may go out now, `n` being how many were held back since the last
    /// one; `None` when this one is held back.
    pub(crate) fn allow(&mut self) -> Option<u64> {
        self.allow_at(std::time::Instant::now())
    }

    fn allow_at(&mut self, now: std::time::Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < THROTTLE_PERIOD => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_lets_the_first_record_through_then_one_per_period_with_the_count_held() {
        let mut t = Throttle::default();
        let t0 = std::time::Instant::now();
        assert_eq!(t.allow_at(t0), Some(0));
        for i in 1..=99 {
            assert_eq!(t.allow_at(t0 + THROTTLE_PERIOD * i / 100), None);
        }
        assert_eq!(t.allow_at(t0 + THROTTLE_PERIOD), Some(99));
        assert_eq!(t.allow_at(t0 + THROTTLE_PERIOD * 3 / 2), None);
        assert_eq!(t.allow_at(t0 + THROTTLE_PERIOD * 5), Some(1));
        assert_eq!(t.allow_at(t0 + THROTTLE_PERIOD * 5), None);
    }

    #[test]
    fn verbose_records_of_the_websocket_and_tls_crates_are_capped_unless_named() {
        let cap = Cap::for_spec("trace");
        assert!(!cap.allows("tungstenite::protocol", Level::Trace));
        assert!(!cap.allows("tungstenite", Level::Debug));
        assert!(cap.allows("tungstenite::protocol", Level::Info));
        assert!(!cap.allows("tokio_tungstenite::compat", Level::Trace));
        assert!(!cap.allows("rustls::client::hs", Level::Trace));
        assert!(cap.allows("rustls::client::hs", Level::Debug));
        assert!(cap.allows("kharbranth::supervisor", Level::Trace));
        // A crate whose name merely starts like a capped one is not capped.
        assert!(cap.allows("tungstenite_extra", Level::Trace));
        assert!(cap.allows("rustls_native_certs", Level::Trace));

        let named = Cap::for_spec("info,tungstenite::protocol=trace, rustls=trace/frame");
        assert!(named.allows("tungstenite::protocol", Level::Trace));
        assert!(named.allows("rustls", Level::Trace));
        assert!(!named.allows("tokio_tungstenite", Level::Trace));
        // A shorter prefix such as `tokio` does not name tokio_tungstenite.
        assert!(!Cap::for_spec("tokio=trace").allows("tokio_tungstenite", Level::Trace));
    }
}
