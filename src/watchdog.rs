//! The data watchdog of one socket: fails the connection when no data message arrived for a
//! whole period, even while the peer answers pings (feeds that keep the socket alive after
//! their data stopped).
//!
//! It reads no clock per message: a timer fires once per period and compares the session's
//! count of data messages (kept anyway for the stats) with its value at the previous check.
//! A silence is therefore caught between one and two periods after the last data message.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep, sleep_until};

use crate::error::ConnectionError;

/// The watchdog's timer and the message count it last saw.
pub(crate) struct IdleWatchdog {
    timer: Pin<Box<Sleep>>,
    period: Duration,
    seen: u64,
}

impl IdleWatchdog {
    /// Starts watching: the first period counts from now, from `count` data messages.
    pub(crate) fn new(period: Duration, count: u64) -> Self {
        Self {
            timer: Box::pin(sleep_until(Instant::now() + period)),
            period,
            seen: count,
        }
    }

    /// Checks at the end of each period that `count` moved since the last check; fails with
    /// `IdleTimeout` when it did not. Registers the timer's waker for the next check.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, count: u64) -> Result<(), ConnectionError> {
        while self.timer.as_mut().poll(cx).is_ready() {
            if count == self.seen {
                return Err(ConnectionError::IdleTimeout(self.period));
            }
            self.seen = count;
            let next = Instant::now() + self.period;
            self.timer.as_mut().reset(next);
        }
        Ok(())
    }

    /// Reads start again after a stall (see `Session::stall`): the peer's data may have waited
    /// unread in the socket, so a new period starts now.
    pub(crate) fn resumed(&mut self, count: u64) {
        self.seen = count;
        let next = Instant::now() + self.period;
        self.timer.as_mut().reset(next);
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::task::Poll;

    use super::*;

    /// Polls `w` with the count `count()` gives until it fails; bounded by 2 s.
    async fn until_failure(w: &mut IdleWatchdog, mut count: impl FnMut() -> u64) -> Duration {
        let start = Instant::now();
        let wait = poll_fn(|cx| match w.poll(cx, count()) {
            Err(e) => Poll::Ready(e),
            Ok(()) => Poll::Pending,
        });
        let e = tokio::time::timeout(Duration::from_secs(2), wait)
            .await
            .expect("no idle timeout within 2 s");
        assert!(matches!(e, ConnectionError::IdleTimeout(d) if d == w.period));
        start.elapsed()
    }

    #[tokio::test]
    async fn a_silent_peer_fails_after_one_period() {
        let mut w = IdleWatchdog::new(Duration::from_millis(30), 5);
        let took = until_failure(&mut w, || 5).await;
        assert!(took >= Duration::from_millis(30), "after {took:?}");
    }

    #[tokio::test]
    async fn data_in_every_period_keeps_it_quiet_and_silence_after_it_fails_within_two() {
        let mut w = IdleWatchdog::new(Duration::from_millis(20), 0);
        let start = Instant::now();
        // Data keeps arriving for 100 ms (five periods), then stops.
        let took = until_failure(&mut w, || {
            if start.elapsed() < Duration::from_millis(100) {
                start.elapsed().as_millis() as u64 + 1
            } else {
                1000
            }
        })
        .await;
        assert!(took >= Duration::from_millis(100), "after {took:?}");
        assert!(
            took < Duration::from_millis(100 + 2 * 20 + 500),
            "after {took:?}"
        );
    }

    #[tokio::test]
    async fn a_resume_starts_a_new_period() {
        let mut w = IdleWatchdog::new(Duration::from_millis(40), 0);
        tokio::time::sleep(Duration::from_millis(60)).await;
        // The period passed while reads were stalled: it does not count.
        w.resumed(0);
        let waker = std::task::Waker::noop();
        assert!(w.poll(&mut Context::from_waker(waker), 0).is_ok());
        let took = until_failure(&mut w, || 0).await;
        assert!(took >= Duration::from_millis(30), "after {took:?}");
    }
}
