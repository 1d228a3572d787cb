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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
