//! Rate limits as a GCRA (generic cell rate algorithm): one instant of state, no timer of its
//! own, no allocation per permit. The caller reads the clock and arms its own timer for the
//! instant [`Gcra::try_take`] names, so a limit never busy-loops and never sleeps per message.
//!
//! With `messages` per `per` and a burst of `burst`, the k-th permit (counting from 0) of a run
//! that starts idle is granted no earlier than `(k + 1 - burst) * per / messages` after the
//! first: up to `burst` at once, then one every emission interval.

use std::time::Duration;

use tokio::time::Instant;

/// A send rate limit as configured: `messages` per `per`, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    pub(crate) messages: u32,
    pub(crate) per: Duration,
    pub(crate) burst: u32,
}

impl Rate {
    /// The time between two permits at the sustained rate (at least 1 ns: checked by
    /// `limits::rate`).
    pub(crate) fn interval(&self) -> Duration {
        self.per / self.messages.max(1)
    }
}

/// The state of one limiter: the theoretical arrival time of the next permit.
#[derive(Debug)]
pub(crate) struct Gcra {
    interval: Duration,
    /// How far ahead of `now` the theoretical arrival time may run: `burst - 1` intervals.
    tolerance: Duration,
    tat: Instant,
}

impl Gcra {
    /// A limiter that starts idle: a full burst is available at `now`.
    pub(crate) fn new(rate: Rate, now: Instant) -> Self {
        let interval = rate.interval();
        Self {
            interval,
            tolerance: interval.saturating_mul(rate.burst.max(1) - 1),
            tat: now,
        }
    }

    /// Takes a permit at `now`, or says when the next one is granted (later than `now`).
    #[inline]
    pub(crate) fn try_take(&mut self, now: Instant) -> Result<(), Instant> {
        // `checked_sub` fails only when `tat` is within `tolerance` of the clock's origin:
        // then the permit is due already.
        if let Some(earliest) = self.tat.checked_sub(self.tolerance)
            && earliest > now
        {
            return Err(earliest);
        }
        self.tat = self.tat.max(now) + self.interval;
        Ok(())
    }

    /// Counts a frame that was sent (or will be, unasked) without waiting for its permit: the
    /// limiter goes into debt, and later permits wait until it is paid back.
    pub(crate) fn charge(&mut self, now: Instant) {
        self.tat = self.tat.max(now) + self.interval;
    }
}

/// A limit on connection attempts shared by every connection of a manager: at most `attempts`
/// in any window of `per` (a sliding window, not a GCRA, whose burst would let up to twice the
/// count through one window).
///
/// A caller reserves its slot under a short lock (no await inside) and then sleeps until it
/// outside: slots are handed out in the order callers asked, so no connection starves, and the
/// log of the last `attempts` slots is the whole state. A caller that stops waiting (close,
/// restart, shutdown) leaves its slot unused: the limit is never exceeded, at worst a slot is
/// wasted.
#[derive(Debug, Default)]
pub(crate) struct ConnectLimiter {
    state: std::sync::Mutex<Option<Window>>,
}

#[derive(Debug)]
struct Window {
    attempts: usize,
    per: Duration,
    /// The last `attempts` slots handed out, oldest first (never decreasing).
    slots: std::collections::VecDeque<Instant>,
}

impl ConnectLimiter {
    /// Sets the limit (`None`: none). Slots already handed out are kept; the new window counts
    /// from them, so a change never lets more through than the tighter of the two limits would.
    pub(crate) fn set(&self, limit: Option<(u32, Duration)>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let old = state.take().map(|w| w.slots).unwrap_or_default();
        *state = limit.map(|(attempts, per)| {
            let attempts = attempts as usize;
            let skip = old.len().saturating_sub(attempts);
            Window {
                attempts,
                per,
                slots: old.into_iter().skip(skip).collect(),
            }
        });
    }

    /// Reserves the next attempt's slot: `None` to go now, or the instant to wait for.
    pub(crate) fn reserve(&self) -> Option<Instant> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let w = state.as_mut()?;
        let now = Instant::now();
        let slot = if w.slots.len() < w.attempts {
            now.max(w.slots.back().copied().unwrap_or(now))
        } else {
            let oldest = w.slots.pop_front().unwrap_or(now);
            now.max(oldest + w.per)
        };
        w.slots.push_back(slot);
        (slot > now).then_some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_goes_into_debt_and_delays_the_next_permits() {
        let t0 = Instant::now();
        let rate = Rate {
            messages: 10,
            per: Duration::from_secs(1),
            burst: 2,
        };
        let mut g = Gcra::new(rate, t0);
        // A full burst of two, less one charged frame: one permit now, then the next after an
        // interval instead of at once.
        g.charge(t0);
        assert_eq!(g.try_take(t0), Ok(()));
        assert_eq!(g.try_take(t0), Err(t0 + Duration::from_millis(100)));
        // Charges beyond the burst push the next permit further out, one interval each.
        g.charge(t0);
        g.charge(t0);
        assert_eq!(g.try_take(t0), Err(t0 + Duration::from_millis(300)));
        assert_eq!(g.try_take(t0 + Duration::from_millis(300)), Ok(()));
    }

    fn rate(messages: u32, per_ms: u64, burst: u32) -> Rate {
        Rate {
            messages,
            per: Duration::from_millis(per_ms),
            burst,
        }
    }

    #[test]
    fn a_burst_then_one_per_interval() {
        let t0 = Instant::now();
        let mut g = Gcra::new(rate(10, 1000, 3), t0);
        for _ in 0..3 {
            assert_eq!(g.try_take(t0), Ok(()));
        }
        // The fourth is due one interval after the first, when one slot of the burst is back.
        assert_eq!(g.try_take(t0), Err(t0 + Duration::from_millis(100)));
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(g.try_take(t1), Ok(()));
        assert_eq!(g.try_take(t1), Err(t0 + Duration::from_millis(200)));
    }

    #[test]
    fn idle_time_refills_the_burst_but_no_more() {
        let t0 = Instant::now();
        let mut g = Gcra::new(rate(5, 1000, 2), t0);
        assert_eq!(g.try_take(t0), Ok(()));
        assert_eq!(g.try_take(t0), Ok(()));
        let later = t0 + Duration::from_secs(60);
        assert_eq!(g.try_take(later), Ok(()));
        assert_eq!(g.try_take(later), Ok(()));
        assert_eq!(
            g.try_take(later),
            Err(later + Duration::from_millis(200)),
            "a long idle time must not bank more than the burst"
        );
    }

    #[test]
    fn a_burst_of_one_spaces_every_permit() {
        let t0 = Instant::now();
        let mut g = Gcra::new(rate(4, 1000, 1), t0);
        assert_eq!(g.try_take(t0), Ok(()));
        assert_eq!(g.try_take(t0), Err(t0 + Duration::from_millis(250)));
        // A late caller is not owed the permits it missed beyond the burst.
        let t1 = t0 + Duration::from_millis(600);
        assert_eq!(g.try_take(t1), Ok(()));
        assert_eq!(g.try_take(t1), Err(t1 + Duration::from_millis(250)));
    }

    #[test]
    fn the_first_attempts_of_a_window_go_at_once_and_the_next_waits() {
        let limiter = ConnectLimiter::default();
        limiter.set(Some((3, Duration::from_secs(60))));
        let before = Instant::now();
        for k in 0..3 {
            assert_eq!(limiter.reserve(), None, "attempt {k} is within the limit");
        }
        let wait = limiter.reserve().expect("the fourth attempt waits");
        assert!(
            wait >= before + Duration::from_secs(60),
            "{:?} after the first",
            wait - before
        );
    }

    #[test]
    fn connect_slots_never_exceed_the_count_in_any_window() {
        let limiter = ConnectLimiter::default();
        assert_eq!(limiter.reserve(), None, "no limit: no wait");
        limiter.set(Some((3, Duration::from_secs(1))));
        let t0 = Instant::now();
        let slots: Vec<Instant> = (0..10).map(|_| limiter.reserve().unwrap_or(t0)).collect();
        for k in 3..slots.len() {
            assert!(
                slots[k] >= slots[k - 3] + Duration::from_secs(1),
                "slot {k} within a window of slot {}",
                k - 3
            );
        }
        // Asked in order, served in order.
        assert!(slots.windows(2).all(|w| w[0] <= w[1]));
        limiter.set(None);
        assert_eq!(limiter.reserve(), None);
    }
}
