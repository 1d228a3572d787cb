//! How a session ends: a failure reported (telling a misbehaving peer why), or a close
//! handshake bounded in time. Cold paths, kept out of the loop's file.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::{Ended, Session};
use crate::error::ConnectionError;
use crate::handle::{ConnState, StateChange};
use crate::hooks::{Event, ReadHooks};
use crate::queue::Receiver;

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Reports a failure, tells a misbehaving peer why (1002/1007/1009) and ends the run.
    pub(super) async fn fail(
        mut self,
        e: ConnectionError,
        close_code: Option<u16>,
        hooks: &mut ReadHooks,
    ) -> Ended {
        log::warn!("[{}] {e}", self.name);
        if let Some(code) = close_code {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: Utf8Bytes::from_static("protocol error"),
            };
            let deadline = Instant::now() + self.config.close_timeout().min(Duration::from_secs(1));
            let _ = timeout_at(deadline, self.ws.send(Message::Close(Some(frame)))).await;
        }
        hooks.dispatch(&self.name, Event::Error(e.clone()));
        // Messages handed to the socket but not yet flushed died with it: say so.
        let lost = std::mem::take(&mut self.unflushed);
        if lost > 0 {
            let w = ConnectionError::WriteError(format!(
                "{lost} accepted message(s) may not have been sent before the failure"
            ));
            hooks.dispatch(&self.name, Event::Error(w));
        }
        Ended::Failed(e)
    }

    /// Close handshake bounded by the configured close timeout. With a mailbox, the messages
    /// already accepted are written first and what cannot be written is reported.
    pub(super) async fn close(
        &mut self,
        code: u16,
        reason: &str,
        mailbox: Option<&mut Receiver>,
        hooks: &mut ReadHooks,
    ) {
        self.shared.set_state(ConnState::Closing);
        let closing = StateChange::to(ConnState::Closing, None);
        hooks.state(&self.name, closing);
        log::info!("[{}] closing with {code}", self.name);
        let deadline = Instant::now() + self.config.close_timeout();
        let name = self.name.clone();
        let mut pending: Vec<Message> = Vec::new();
        if let Some(mb) = mailbox {
            pending.extend(self.priority.drain(..));
            while let Some(m) = mb.try_write() {
                pending.push(m);
            }
        }
        // Earlier messages handed to the socket but not flushed yet are at stake too.
        let total = pending.len() + std::mem::take(&mut self.unflushed);
        let mut sent = 0usize;
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from(reason),
        };
        let handshake = async {
            for m in pending {
                let (data, len) = (m.is_text() || m.is_binary(), m.len());
                // The send rate limit holds on the way out too; the close timeout bounds the
                // wait, and what it cuts off is reported like any unwritten message.
                if let Some(lim) = self.limiter.as_deref_mut()
                    && lim.counts(&m)
                {
                    while let Some(at) = lim.next_permit() {
                        self.ws.flush().await?;
                        tokio::time::sleep_until(at).await;
                    }
                }
                self.ws.feed(m).await?;
                if data {
                    self.shared.count_out(len);
                }
            }
            self.ws.flush().await?;
            // Written means handed to the kernel, which is as far as a sender can know.
            sent = total;
            self.ws.send(Message::Close(Some(frame))).await?;
            // Read until the peer's close reply ends the stream; frames still arriving reach the
            // hooks, since they were received before the close completed.
            // A polled connection reads on only while its event queue has room; the deadline
            // bounds that wait too.
            while let Some(r) = {
                std::future::poll_fn(|cx| {
                    // A hand-over to a consumer (see `Sink::take_handover`), set by the read
                    // loop or by a delivery below, is not a full queue: no waker would come.
                    hooks.take_handover();
                    hooks.poll_room(cx)
                })
                .await;
                self.before_read();
                self.ws.next().await
            } {
                self.deliver(r?, hooks);
                self.note_data();
                hooks.flush();
                // A peer that keeps sending never lets this loop wait, so the timeout around
                // it would never get to fire (one read can hold hundreds of frames, each with
                // a hook to run): check the deadline between frames.
                if Instant::now() >= deadline {
                    return Err(WsError::Io(std::io::ErrorKind::TimedOut.into()));
                }
            }
            Ok::<(), WsError>(())
        };
        match timeout_at(deadline, handshake).await {
            Ok(Ok(())) => log::info!("[{name}] closed"),
            Ok(Err(e)) => log::info!("[{name}] closed ({e})"),
            Err(_) => log::warn!(
                "[{name}] the peer did not finish the close handshake within {:?}",
                self.config.close_timeout()
            ),
        }
        if sent < total {
            let e = ConnectionError::WriteError(format!(
                "{} queued message(s) were not written before the close",
                total - sent
            ));
            hooks.dispatch(&name, Event::Error(e));
        }
    }
}

/// The error a failed read reports: the socket going away is `ConnectionDropped`, a peer
/// breaking the protocol is `ReadError`.
pub(super) fn read_error(e: WsError) -> ConnectionError {
    match e {
        WsError::Io(e) => ConnectionError::ConnectionDropped(e.to_string()),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            ConnectionError::ConnectionDropped("reset without a close handshake".into())
        }
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            ConnectionError::ConnectionDropped("the socket closed".into())
        }
        other => ConnectionError::ReadError(other.to_string()),
    }
}

/// The close code that tells a peer which broke the protocol why we leave (RFC 6455, 7.4.1).
pub(super) fn close_code_for(e: &WsError) -> Option<u16> {
    match e {
        WsError::Utf8(_) => Some(1007),
        WsError::Capacity(_) => Some(1009),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) | WsError::AttackAttempt => Some(1002),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_follow_the_rfc() {
        assert_eq!(close_code_for(&WsError::Utf8("bad".into())), Some(1007));
        let proto = WsError::Protocol(ProtocolError::NonZeroReservedBits);
        assert_eq!(close_code_for(&proto), Some(1002));
        let reset = WsError::Io(std::io::ErrorKind::ConnectionReset.into());
        assert_eq!(close_code_for(&reset), None);
    }
}
