//! The heartbeat of one socket: when to ping, and when the peer has been silent too long.
//!
//! The pong deadline is armed at each ping whether or not a pong was ever seen (a heartbeat
//! that only times out after a first pong never catches a peer that never answers), and any
//! frame from the peer counts as the answer, which also covers text heartbeats answered in text.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_tungstenite::tungstenite::Message;

use crate::config::{Config, Heartbeat};
use crate::error::ConnectionError;

/// Timers and bookkeeping of the heartbeat of one socket.
pub(crate) struct HeartbeatTimer {
    ping_timer: Pin<Box<Sleep>>,
    pong_timer: Pin<Box<Sleep>>,
    interval: Duration,
    timeout: Duration,
    awaiting_pong: bool,
    ping_due: bool,
    seq: u64,
    sent_at: Option<Instant>,
}

impl HeartbeatTimer {
    pub(crate) fn new(config: &Config) -> Self {
        let now = Instant::now();
        Self {
            ping_timer: Box::pin(sleep_until(now + config.ping_interval())),
            pong_timer: Box::pin(sleep_until(now + config.pong_timeout())),
            interval: config.ping_interval(),
            timeout: config.pong_timeout(),
            awaiting_pong: false,
            ping_due: false,
            seq: 0,
            sent_at: None,
        }
    }

    /// Polls both timers: marks a ping as due when the interval passed, and fails with
    /// `PongReceiveTimeout` when nothing arrived within the pong timeout of a ping.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Result<(), ConnectionError> {
        if self.ping_timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            self.ping_timer.as_mut().reset(now + self.interval);
            // Registers the timer's waker for the next interval.
            let _ = self.ping_timer.as_mut().poll(cx);
            self.ping_due = true;
            // An earlier unanswered ping keeps its (earlier) deadline.
            if !self.awaiting_pong {
                self.awaiting_pong = true;
                self.pong_timer.as_mut().reset(now + self.timeout);
            }
        }
        if self.awaiting_pong && self.pong_timer.as_mut().poll(cx).is_ready() {
            return Err(ConnectionError::PongReceiveTimeout(self.timeout));
        }
        Ok(())
    }

    /// The heartbeat message to write now, if one is due.
    pub(crate) fn take_due(&mut self, heartbeat: &Heartbeat) -> Option<Message> {
        if !std::mem::take(&mut self.ping_due) {
            return None;
        }
        Some(match heartbeat {
            Heartbeat::Ping => {
                self.seq += 1;
                Message::Ping(Bytes::copy_from_slice(&self.seq.to_be_bytes()))
            }
            Heartbeat::Text(t) => Message::text(t.as_str()),
        })
    }

    /// Whether a heartbeat is due, without taking it.
    pub(crate) fn is_due(&self) -> bool {
        self.ping_due
    }

    /// The heartbeat taken by [`take_due`](Self::take_due) was handed to the socket.
    pub(crate) fn sent(&mut self) {
        self.sent_at = Some(Instant::now());
    }

    /// A frame arrived: the peer is alive.
    #[inline]
    pub(crate) fn alive(&mut self) {
        self.awaiting_pong = false;
    }

    /// Reads start again after a stall (see `Session::stall`): a pong deadline that was armed
    /// counts from now, since the peer's answer may have waited unread in the socket.
    pub(crate) fn resumed(&mut self) {
        if self.awaiting_pong {
            self.pong_timer
                .as_mut()
                .reset(Instant::now() + self.timeout);
        }
    }

    /// The round-trip time, when `payload` answers the last heartbeat ping.
    pub(crate) fn rtt(&self, payload: &[u8]) -> Option<Duration> {
        let sent = self.sent_at?;
        (payload == self.seq.to_be_bytes()).then(|| sent.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::task::Poll;

    use super::*;

    fn timer(ping_ms: u64, pong_ms: u64) -> HeartbeatTimer {
        let config = Config::builder("ws://h/")
            .ping_interval(Duration::from_millis(ping_ms))
            .pong_timeout(Duration::from_millis(pong_ms))
            .build()
            .unwrap();
        HeartbeatTimer::new(&config)
    }

    fn poll_now(h: &mut HeartbeatTimer) -> Result<(), ConnectionError> {
        h.poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    /// Polls `h` as a connection does, woken by its timers, until a ping is due or it fails;
    /// bounded, so a timer that never fires fails the test within 2 s (the timers here are
    /// 1 to 50 ms) instead of hanging it.
    async fn next_due(h: &mut HeartbeatTimer) -> Result<Message, ConnectionError> {
        let wait = poll_fn(|cx| {
            if let Err(e) = h.poll(cx) {
                return Poll::Ready(Err(e));
            }
            match h.take_due(&Heartbeat::Ping) {
                Some(m) => Poll::Ready(Ok(m)),
                None => Poll::Pending,
            }
        });
        tokio::time::timeout(Duration::from_secs(2), wait)
            .await
            .expect("no heartbeat and no failure within 2 s")
    }

    fn seq(m: &Message) -> u64 {
        match m {
            Message::Ping(p) => u64::from_be_bytes(p[..].try_into().unwrap()),
            other => panic!("not a ping: {other:?}"),
        }
    }

    #[tokio::test]
    async fn pings_fall_due_once_per_interval_each_with_a_new_sequence_number() {
        let mut h = timer(30, 10_000);
        let start = Instant::now();
        poll_now(&mut h).unwrap();
        assert!(
            h.take_due(&Heartbeat::Ping).is_none(),
            "due before its interval"
        );
        let first = next_due(&mut h).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(30));
        h.sent();
        h.alive();
        // Taken once: the next poll right away finds nothing due.
        poll_now(&mut h).unwrap();
        assert!(
            h.take_due(&Heartbeat::Ping).is_none(),
            "due twice for one interval"
        );
        let second = next_due(&mut h).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(60));
        assert_eq!((seq(&first), seq(&second)), (1, 2));
    }

    #[tokio::test]
    async fn a_text_heartbeat_sends_its_text() {
        let mut h = timer(1, 10_000);
        let text = Heartbeat::Text("{\"op\":\"ping\"}".into());
        let m = tokio::time::timeout(
            Duration::from_secs(2),
            poll_fn(|cx| {
                h.poll(cx).unwrap();
                h.take_due(&text).map_or(Poll::Pending, Poll::Ready)
            }),
        )
        .await
        .expect("a heartbeat within 2 s");
        assert_eq!(m, Message::text("{\"op\":\"ping\"}"));
    }

    #[tokio::test]
    async fn a_peer_that_never_answers_fails_one_pong_timeout_after_the_first_ping() {
        let mut h = timer(20, 40);
        let start = Instant::now();
        next_due(&mut h).await.unwrap();
        h.sent();
        let mut failure = None;
        // Bounded: a heartbeat that never gives up would otherwise ping here forever.
        for _ in 0..100 {
            match next_due(&mut h).await {
                Ok(_) => h.sent(),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let e = failure.expect("still pinging after 100 unanswered pings");
        assert!(
            matches!(e, ConnectionError::PongReceiveTimeout(d) if d == Duration::from_millis(40))
        );
        // The second ping, still unanswered, does not move the deadline of the first.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(60),
            "failed after {elapsed:?}"
        );
        assert!(
            elapsed < Duration::from_secs(3),
            "failed only after {elapsed:?}"
        );
    }

    #[tokio::test]
    async fn a_peer_that_answers_every_ping_never_times_out_between_pings() {
        // The pong timeout is far shorter than the interval: an answered ping must not leave
        // its deadline armed until the next one.
        let mut h = timer(50, 15);
        for _ in 0..3 {
            let m = next_due(&mut h).await.expect("answered, yet failed");
            h.sent();
            h.alive();
            assert!(
                h.rtt(&match m {
                    Message::Ping(p) => p,
                    _ => unreachable!(),
                })
                .is_some()
            );
        }
    }

    #[tokio::test]
    async fn only_the_pong_of_the_last_ping_measures_a_round_trip() {
        let mut h = timer(1, 10_000);
        let payload = |n: u64| n.to_be_bytes();
        assert_eq!(h.rtt(&payload(0)), None, "no ping sent yet");
        let first = next_due(&mut h).await.unwrap();
        assert_eq!(h.rtt(&payload(1)), None, "taken but not sent");
        h.sent();
        let rtt = h
            .rtt(&payload(seq(&first)))
            .expect("answers the ping in flight");
        assert!(rtt < Duration::from_secs(5));
        assert_eq!(h.rtt(&payload(2)), None);
        assert_eq!(h.rtt(b"other"), None);
        next_due(&mut h).await.unwrap();
        h.sent();
        assert_eq!(h.rtt(&payload(1)), None, "a stale pong");
        assert!(h.rtt(&payload(2)).is_some());
    }
}
