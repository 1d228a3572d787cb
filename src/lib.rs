//! # kharbranth
//!
//! A WebSocket *client* connection manager for programs that consume many streaming feeds.
//! You name connections; the [`WsManager`] connects them, keeps them alive with a ping/pong
//! heartbeat, reconnects them with backoff, resends their subscribe messages after every
//! reconnect, writes to them by name, restarts them on demand and closes them. Every received
//! frame reaches your [`ReadHooks`]; nothing is dropped: a slow hook slows its socket.
//!
//! The same library is shipped as a C ABI (`include/kharbranth.h`, functions prefixed `kh_`).
//!
//! ```no_run
//! use std::time::Duration;
//! use kharbranth::{Config, ReadHooks, WsManager};
//!
//! # async fn run() -> Result<(), kharbranth::ConnectionError> {
//! let manager = WsManager::new();
//! let config = Config::builder("wss://feed.example.com/ws")
//!     .ping_interval(Duration::from_secs(10))
//!     .init_text(r#"{"op":"subscribe","args":["trades"]}"#)
//!     .build()?;
//! let hooks = ReadHooks::new()
//!     .on_text(|name, text| println!("{name}: {}", text.as_str()))
//!     .on_error(|name, err| eprintln!("{name}: {err}"));
//! manager.add("trades", config, hooks)?;
//! manager.wait_open("trades", Duration::from_secs(5)).await?;
//! manager.send_text("trades", r#"{"op":"ping"}"#)?;
//! manager.close("trades", 1000, "bye").await?;
//! # Ok(()) }
//! ```

//! # A map of the crate
//!
//! Each mechanism has its own module, and each module uses only those listed before it:
//!
//! | layer | modules |
//! | --- | --- |
//! | vocabulary | `error` ([`ConnectionError`]), `config` ([`Config`]; its rules in `limits`, TLS set-up in `tls`), `events` (the event queue of polled connections: [`ConnEvent`], [`EventStream`]), `poll_options` ([`PollOptions`]: what else a polled connection queues), `hooks` ([`ReadHooks`], [`Event`]), `backoff`, `logging`, `clock` ([`ReceiveTime`]: receive timestamps) |
//! | one socket | `queue` (the send queue and control requests), `handle` ([`Link`], [`ConnState`], [`Stats`]), `heartbeat`, `watchdog` (the idle timeout), `inflate` (compressed binary messages), `stamped` (receive timestamps taken at the socket), `wire` (the WebSocket protocol over a stream, polled by the one task that owns it), `transport` (TCP or TLS), `connection` ([`Connection`]: the poll loop, its close and failure paths) |
//! | many sockets | `dial` (TCP, TLS, the HTTP upgrade), `supervisor` (connect, run, reconnect with backoff), `manager` ([`WsManager`]: the registry of names) |
//! | C ABI | `ffi` (feature `capi`: the `kh_` functions over [`WsManager`]) |

#![warn(missing_docs)]

mod backoff;
mod clock;
mod config;
mod connection;
mod dial;
mod error;
mod events;
#[cfg(feature = "capi")]
pub mod ffi;
mod handle;
mod heartbeat;
mod hooks;
mod inflate;
mod limits;
mod logging;
mod manager;
mod poll_options;
mod queue;
mod ratelimit;
mod stamped;
mod supervisor;
mod tls;
mod transport;
mod watchdog;
mod wire;

pub use clock::{ReceiveTime, receive_time};
pub use config::{Compression, Config, ConfigBuilder, Heartbeat, InitMessage, defaults};
pub use connection::{Connection, Ended};
pub use error::{ConnectionError, Result};
pub use events::{ConnEvent, DEFAULT_EVENT_BYTES, DEFAULT_EVENT_CAPACITY, EventStream};
pub use handle::{ConnState, Link, StateChange, Stats};
pub use hooks::{CLOSE_NO_STATUS, Event, ReadHooks, opcode};
pub use logging::init_logging;
pub use manager::{Restart, WsManager};
pub use poll_options::PollOptions;

/// Re-exports of the payload types handed to hooks.
pub use bytes::Bytes;
/// The WebSocket message type, for [`Link::send`] and for driving a [`Connection`] directly.
pub use tokio_tungstenite::tungstenite::Message;
pub use tokio_tungstenite::tungstenite::Utf8Bytes;

/// The README's Rust examples compile as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
