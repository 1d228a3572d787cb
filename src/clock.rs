//! Receive timestamps: the clocks read once per read of a socket, and where the time of the
//! message being delivered waits for the code that asks for it.
//!
//! The [`Stamped`](crate::stamped::Stamped) reader of a connection with
//! `receive_timestamps(true)` reads both clocks after every read that returned bytes and leaves
//! the time in a thread-local slot; the session, which polled that read on the same thread an
//! instant before, takes it from there, so a reader needs no link to its session. While a hook
//! runs for a message, the message's time sits in a second slot that
//! [`receive_time`] (C: `kh_receive_time`) reads, like `errno`.

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When a message was received: both clocks, read once for the socket read that completed it
/// (see [`ConfigBuilder::receive_timestamps`](crate::ConfigBuilder::receive_timestamps)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceiveTime {
    mono_ns: u64,
    wall_ns: u64,
}

impl ReceiveTime {
    /// No time (0, 0): what a slot holds when nothing was stamped.
    pub(crate) const NONE: Self = Self {
        mono_ns: 0,
        wall_ns: 0,
    };

    /// Both clocks now, as the library reads them for a stamp: for comparing a receive time
    /// with the program's own readings.
    pub fn now() -> Self {
        Self {
            mono_ns: monotonic_ns(),
            wall_ns: Self::now_wall_ns(),
        }
    }

    /// The wall clock alone, in nanoseconds since the Unix epoch (at least 1).
    pub(crate) fn now_wall_ns() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| (d.as_nanos().min(u64::MAX as u128) as u64).max(1))
    }

    /// Monotonic nanoseconds: `CLOCK_MONOTONIC` on Unix (the clock C's
    /// `clock_gettime(CLOCK_MONOTONIC)` reads), elsewhere since an arbitrary start in this
    /// process. Only differences mean something.
    pub fn monotonic_ns(&self) -> u64 {
        self.mono_ns
    }

    /// Wall-clock nanoseconds since the Unix epoch (it may jump when the system clock is set).
    pub fn wall_ns(&self) -> u64 {
        self.wall_ns
    }

    /// The wall-clock time as a [`SystemTime`].
    pub fn system_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.wall_ns)
    }

    /// `None` for the empty time.
    pub(crate) fn get(self) -> Option<Self> {
        (self.mono_ns != 0).then_some(self)
    }
}

#[cfg(unix)]
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC exists on every Unix we build for.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 1;
    }
    // Never 0, which means "no time".
    ((ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64).max(1)
}

#[cfg(not(unix))]
fn monotonic_ns() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    (start.elapsed().as_nanos().min(u64::MAX as u128) as u64).saturating_add(1)
}

thread_local! {
    /// The time of the last socket read on this thread that returned bytes, until a session
    /// takes it.
    static READ_AT: Cell<ReceiveTime> = const { Cell::new(ReceiveTime::NONE) };
    /// The time of the message whose hooks run on this thread.
    static HOOK_AT: Cell<ReceiveTime> = const { Cell::new(ReceiveTime::NONE) };
}

/// A read returned bytes: stamp it (once per read, whatever number of messages it holds).
#[inline]
pub(crate) fn note_read() {
    READ_AT.with(|c| c.set(ReceiveTime::now()));
}

/// Forgets a read stamp no session took (before a session polls its socket).
#[inline]
pub(crate) fn clear_read() {
    READ_AT.with(|c| c.set(ReceiveTime::NONE));
}

/// The stamp of the read made since [`clear_read`], if one returned bytes.
#[inline]
pub(crate) fn take_read() -> Option<ReceiveTime> {
    READ_AT.with(|c| c.replace(ReceiveTime::NONE)).get()
}

/// Sets (or with [`ReceiveTime::NONE`] clears) the time hooks see on this thread.
#[inline]
pub(crate) fn set_hook_time(t: ReceiveTime) {
    HOOK_AT.with(|c| c.set(t));
}

/// The receive time of the message whose hook is running on this thread: `Some` inside any
/// hook a received frame runs (text, binary, frame, ping, pong, close; an inflate failure too)
/// of a connection with
/// [`receive_timestamps(true)`](crate::ConfigBuilder::receive_timestamps); `None` anywhere
/// else (other hooks, outside hooks, the option off).
///
/// ```
/// use kharbranth::{ReadHooks, receive_time};
/// let hooks = ReadHooks::new().on_text(|name, _| {
///     if let Some(t) = receive_time() {
///         println!("{name}: received at {} ns", t.monotonic_ns());
///     }
/// });
/// # drop(hooks);
/// assert_eq!(receive_time(), None);
/// ```
pub fn receive_time() -> Option<ReceiveTime> {
    HOOK_AT.with(|c| c.get()).get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_stamp_is_taken_once_and_the_clocks_agree_with_std() {
        clear_read();
        assert_eq!(take_read(), None);
        let wall_before = SystemTime::now();
        note_read();
        let t = take_read().expect("a stamp");
        assert!(t.system_time() >= wall_before && t.system_time() <= SystemTime::now());
        assert_eq!(take_read(), None, "a stamp is taken once");
        let later = ReceiveTime::now();
        assert!(later.monotonic_ns() >= t.monotonic_ns());
    }

    /// `CLOCK_MONOTONIC` in nanoseconds, read directly.
    #[cfg(unix)]
    fn clock_monotonic_ns() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid out-pointer.
        assert_eq!(
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) },
            0
        );
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    #[cfg(unix)]
    #[test]
    fn the_monotonic_time_is_clock_monotonic_in_nanoseconds_and_the_wall_time_the_system_clock() {
        for _ in 0..3 {
            let (mono_before, wall_before) = (clock_monotonic_ns(), SystemTime::now());
            let t = ReceiveTime::now();
            let (mono_after, wall_after) = (clock_monotonic_ns(), SystemTime::now());
            assert!(
                (mono_before..=mono_after).contains(&t.monotonic_ns()),
                "{mono_before} <= {} <= {mono_after}",
                t.monotonic_ns()
            );
            let ns = |w: SystemTime| w.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
            assert!((ns(wall_before)..=ns(wall_after)).contains(&t.wall_ns()));
            assert_eq!(ns(t.system_time()), t.wall_ns());
            // Across a pause, the monotonic time advances by at least the pause.
            std::thread::sleep(Duration::from_millis(2));
            let later = ReceiveTime::now();
            assert!(later.monotonic_ns() >= t.monotonic_ns() + 2_000_000);
        }
    }

    #[test]
    fn a_read_stamp_no_session_took_is_forgotten_by_clear_read() {
        note_read();
        clear_read();
        assert_eq!(take_read(), None);
        note_read();
        assert!(take_read().is_some());
    }

    #[test]
    fn the_hook_time_is_none_unless_set() {
        assert_eq!(receive_time(), None);
        let t = ReceiveTime::now();
        set_hook_time(t);
        assert_eq!(receive_time(), Some(t));
        set_hook_time(ReceiveTime::NONE);
        assert_eq!(receive_time(), None);
    }
}
