//! Reconnect delays: exponential, capped, with jitter so that many connections dropped at the
//! same moment do not reconnect in lockstep.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The delay schedule of one connection.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// A schedule starting at `min` and doubling up to `max`.
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        // RandomState is seeded per process and per instance by std: enough entropy for jitter
        // without a dependency.
        let seed = RandomState::new().build_hasher().finish() | 1;
        Self {
            min,
            max,
            attempt: 0,
            rng: seed,
        }
    }

    /// Delays handed out since the last reset.
    #[cfg(test)]
    pub(crate) fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts the schedule anew (after a connection proved healthy).
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The ceiling of the next delay, before jitter: `min * 2^attempt`, capped at `max`.
    pub(crate) fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The next delay: uniform in `[max(ceiling/2, min), ceiling]`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let floor = (ceiling / 2).max(self.min);
        let span = ceiling.saturating_sub(floor).as_nanos() as u64;
        if span == 0 {
            return floor;
        }
        floor + Duration::from_nanos(self.random() % (span + 1))
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: tiny, fast, and plenty for spreading reconnects.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubles_and_caps() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut b = Backoff::new(min, max);
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            let c = b.ceiling();
            let d = b.next_delay();
            assert!(
                d <= c && d >= (c / 2).max(min),
                "{d:?} outside [{c:?}/2, {c:?}]"
            );
            ceilings.push(c.as_millis());
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
        for _ in 0..5 {
            b.next_delay();
        }
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(10));
        assert_eq!(b.attempts(), 0);
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..1000 {
            assert!(b.next_delay() <= Duration::from_secs(60));
        }
    }

    /// `n` delays drawn for attempt number `attempt` (the schedule rewound before each draw).
    fn draws(b: &mut Backoff, attempt: u32, n: usize) -> Vec<Duration> {
        (0..n)
            .map(|_| {
                b.attempt = attempt;
                b.next_delay()
            })
            .collect()
    }

    #[test]
    fn delays_for_one_attempt_spread_over_their_whole_window() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(60));
        let mut b = Backoff::new(min, max);
        // Attempt 3: ceiling 800 ms, window [400 ms, 800 ms], cut into 10 slices of 40 ms.
        let (floor, width) = (Duration::from_millis(400), Duration::from_millis(400));
        let mut slices = [0usize; 10];
        let delays = draws(&mut b, 3, 2000);
        for d in &delays {
            assert!(
                *d >= floor && *d <= floor + width,
                "{d:?} outside [400ms, 800ms]"
            );
            let i = ((d.as_nanos() - floor.as_nanos()) * 10 / width.as_nanos()).min(9);
            slices[i as usize] += 1;
        }
        // Uniform: 200 a slice expected; 100 is far outside chance (and catches a skew).
        assert!(slices.iter().all(|&n| n >= 100), "uneven spread {slices:?}");
        let mut distinct = delays.clone();
        distinct.sort();
        distinct.dedup();
        assert!(
            distinct.len() > 1900,
            "only {} distinct delays",
            distinct.len()
        );
    }

    #[test]
    fn a_window_of_a_few_nanoseconds_is_covered_end_to_end() {
        // min 2 ns, attempt 1: ceiling 4 ns, window [2 ns, 4 ns] holds three values.
        let mut b = Backoff::new(Duration::from_nanos(2), Duration::from_secs(1));
        let mut seen: Vec<u64> = draws(&mut b, 1, 300)
            .iter()
            .map(|d| d.as_nanos() as u64)
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, [2, 3, 4]);
    }

    #[test]
    fn two_schedules_with_the_same_bounds_differ() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(60));
        let (mut a, mut b) = (Backoff::new(min, max), Backoff::new(min, max));
        let (da, db) = (draws(&mut a, 5, 20), draws(&mut b, 5, 20));
        let same = da.iter().zip(&db).filter(|(x, y)| x == y).count();
        assert!(same < 2, "{same} of 20 delays equal: {da:?} vs {db:?}");
    }

    #[test]
    fn a_window_of_zero_width_gives_exactly_its_floor() {
        // min == max: every delay is min.
        let mut fixed = Backoff::new(Duration::from_millis(250), Duration::from_millis(250));
        for _ in 0..50 {
            assert_eq!(fixed.next_delay(), Duration::from_millis(250));
        }
        // The first delay of any schedule is its minimum (ceiling == floor == min).
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(60));
        assert_eq!(draws(&mut b, 0, 50), [Duration::from_millis(100); 50]);
    }

    #[test]
    fn every_bit_of_the_generator_is_as_often_set_as_clear() {
        // Delays take the draw modulo the window: a bit that sticks skews them for some
        // widths. 4096 draws: each bit is set 2048 +- 32 times; 1700..2400 is over 10 sigma.
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_secs(1));
        let mut set = [0u32; 64];
        for _ in 0..4096 {
            let x = b.random();
            for (bit, n) in set.iter_mut().enumerate() {
                *n += (x >> bit & 1) as u32;
            }
        }
        assert!(
            set.iter().all(|n| (1700..=2400).contains(n)),
            "bits set per 4096 draws: {set:?}"
        );
    }

    proptest::proptest! {
        /// Any range a `Config` accepts gives delays within `[min, max]`, at every attempt.
        #[test]
        fn delays_stay_within_bounds(min_ms in 1u64..=31_536_000_000, factor in 1u64..1000, n in 1usize..80) {
            let max_ms = min_ms.saturating_mul(factor).min(31_536_000_000);
            let (min, max) = (Duration::from_millis(min_ms), Duration::from_millis(max_ms));
            let mut b = Backoff::new(min, max);
            for _ in 0..n {
                let d = b.next_delay();
                proptest::prop_assert!(d >= min && d <= max, "{d:?} outside [{min:?}, {max:?}]");
            }
        }
    }
}
