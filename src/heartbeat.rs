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
