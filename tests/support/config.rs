//! The one configuration of the tests; a test that needs other timings calls builder methods on
//! it.

use std::time::Duration;

use kharbranth::{Config, ConfigBuilder};

/// Where a configuration connects: a port on 127.0.0.1 (`ws://127.0.0.1:{port}/`) or a URL.
pub trait Endpoint {
    fn url(self) -> String;
}

impl Endpoint for u16 {
    fn url(self) -> String {
        format!("ws://127.0.0.1:{self}/")
    }
}

impl Endpoint for &str {
    fn url(self) -> String {
        self.to_string()
    }
}

impl Endpoint for String {
    fn url(self) -> String {
        self
    }
}

/// A configuration for a local server: no heartbeat noise (long ping interval), quick
/// reconnects, bounded connect and close.
pub fn cfg(to: impl Endpoint) -> ConfigBuilder {
    Config::builder(to.url())
        .ping_interval(Duration::from_secs(30))
        .pong_timeout(Duration::from_secs(30))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .connect_timeout(Duration::from_secs(5))
        .close_timeout(Duration::from_secs(2))
}
