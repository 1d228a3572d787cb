//! The one error type of the library.
//!
//! Every failure a caller can see, whether returned from a call or reported to
//! [`ReadHooks::on_error`](crate::ReadHooks::on_error), is a [`ConnectionError`]. The C ABI maps
//! each variant to one `kh_result` code, so variants are only ever appended.

use std::time::Duration;

/// What went wrong with a connection or a call on the manager.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// Writing the heartbeat ping to the socket failed.
    #[error("ping failed: {0}")]
    PingFailed(String),
    /// Nothing arrived from the peer within the pong timeout after a ping was sent.
    #[error("no pong received within {0:?} of the ping")]
    PongReceiveTimeout(Duration),
    /// Reading from the socket failed, or the peer broke the protocol (the message says which).
    #[error("read error: {0}")]
    ReadError(String),
    /// A message accepted by `send_*` could not be written to the socket.
    #[error("write error: {0}")]
    WriteError(String),
    /// The socket went away without a close handshake, or the connection is not open right now.
    #[error("connection dropped: {0}")]
    ConnectionDropped(String),
    /// No connection has this name.
    #[error("connection not found: {0:?}")]
    ConnectionNotFound(String),
    /// The TCP connect, the TLS handshake or the WebSocket upgrade failed (including an HTTP
    /// status other than 101, such as 401).
    #[error("connect failed: {0}")]
    ConnectFailed(String),
    /// An argument or configuration value was refused; nothing was changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A connection with this name exists already.
    #[error("connection already exists: {0:?}")]
    AlreadyExists(String),
    /// The connection's send queue is full; the message was not queued. Try again later.
    #[error("send queue of {0:?} is full")]
    QueueFull(String),
    /// The manager is shutting down or has shut down.
    #[error("the manager is shutting down")]
    ShuttingDown,
    /// A bounded wait ran out (connect timeout, `wait_open`, close handshake).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The configured number of reconnect attempts failed in a row; the connection stopped.
    #[error("gave up after {0} failed connect attempts")]
    RetriesExhausted(u32),
    /// An outgoing message is larger than the configured maximum message size.
    #[error("message of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// Size of the refused message.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The operating system refused a resource (a thread, the runtime).
    #[error("system error: {0}")]
    System(String),
    /// No data message (text or binary) arrived within the idle timeout, although the peer may
    /// have answered pings: the connection reconnects.
    #[error("no data message received within {0:?}")]
    IdleTimeout(Duration),
    /// A binary message could not be inflated (corrupt, truncated, or inflating past the
    /// maximum message size). Reported instead of the message; the connection goes on.
    #[error("inflate failed: {0}")]
    InflateFailed(String),
    /// The connection has no subscription with this key (`unsubscribe`).
    #[error("no subscription with key {0:?}")]
    SubscriptionNotFound(String),
    /// The connection has a subscription with this key already (`subscribe`); nothing changed.
    #[error("a subscription with key {0:?} exists already")]
    SubscriptionExists(String),
}

impl ConnectionError {
    /// A short, stable, machine-friendly name of the variant (used in logs and by the C ABI).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PingFailed(_) => "ping_failed",
            Self::PongReceiveTimeout(_) => "pong_receive_timeout",
            Self::ReadError(_) => "read_error",
            Self::WriteError(_) => "write_error",
            Self::ConnectionDropped(_) => "connection_dropped",
            Self::ConnectionNotFound(_) => "connection_not_found",
            Self::ConnectFailed(_) => "connect_failed",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::AlreadyExists(_) => "already_exists",
            Self::QueueFull(_) => "queue_full",
            Self::ShuttingDown => "shutting_down",
            Self::Timeout(_) => "timeout",
            Self::RetriesExhausted(_) => "retries_exhausted",
            Self::MessageTooLarge { .. } => "message_too_large",
            Self::System(_) => "system_error",
            Self::IdleTimeout(_) => "idle_timeout",
            Self::InflateFailed(_) => "inflate_failed",
            Self::SubscriptionNotFound(_) => "subscription_not_found",
            Self::SubscriptionExists(_) => "subscription_exists",
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = ConnectionError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_its_own_snake_case_name() {
        let all = [
            ConnectionError::PingFailed(String::new()),
            ConnectionError::PongReceiveTimeout(Duration::ZERO),
            ConnectionError::ReadError(String::new()),
            ConnectionError::WriteError(String::new()),
            ConnectionError::ConnectionDropped(String::new()),
            ConnectionError::ConnectionNotFound(String::new()),
            ConnectionError::ConnectFailed(String::new()),
            ConnectionError::InvalidArgument(String::new()),
            ConnectionError::AlreadyExists(String::new()),
            ConnectionError::QueueFull(String::new()),
            ConnectionError::ShuttingDown,
            ConnectionError::Timeout(String::new()),
            ConnectionError::RetriesExhausted(0),
            ConnectionError::MessageTooLarge { size: 0, max: 0 },
            ConnectionError::System(String::new()),
            ConnectionError::IdleTimeout(Duration::ZERO),
            ConnectionError::InflateFailed(String::new()),
            ConnectionError::SubscriptionNotFound(String::new()),
            ConnectionError::SubscriptionExists(String::new()),
        ];
        let kinds: std::collections::HashSet<&str> = all.iter().map(|e| e.kind()).collect();
        assert_eq!(
            kinds.len(),
            all.len(),
            "two variants share a kind: {kinds:?}"
        );
        for k in kinds {
            assert!(
                !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{k:?}"
            );
        }
        assert_eq!(
            ConnectionError::ConnectFailed(String::new()).kind(),
            "connect_failed"
        );
    }
}
