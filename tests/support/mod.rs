//! The integration tests' one toolkit: local servers on 127.0.0.1:0 (WebSocket or raw TCP), a
//! hook recorder, waits that always have a deadline, the shared configuration, hand-made
//! protocol bytes, test proxies and process metrics.
//!
//! Each test binary uses a part of it.
#![allow(dead_code, unused_imports)]

mod config;
mod process;
mod proxy;
mod python;
mod raw;
mod recorder;
mod server;
mod wait;

pub use config::*;
pub use process::*;
pub use proxy::*;
pub use python::*;
pub use raw::*;
pub use recorder::*;
pub use server::*;
pub use wait::*;
