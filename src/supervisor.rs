//! The supervisor of one connection: connects, runs the session, and reconnects with backoff
//! until the caller closes it or the attempts run out. Each connection has its own, so
//! connections never wait on each other.

use std::sync::Arc;

use tokio::time::{Instant, timeout_at};

use crate::backoff::Backoff;
use crate::config::Config;
use crate::connection::{Ended, Session};
use crate::dial::{connect, describe_target};
use crate::error::ConnectionError;
use crate::handle::{ConnState, Shared};
use crate::hooks::{Event, ReadHooks};
use crate::queue::{Control, Receiver};
use crate::ratelimit::ConnectLimiter;
use crate::transport::Socket;

/// Runs one connection for its whole life. The mailbox outlives every socket, so messages
/// queued while the connection is down are written after the next connect.
pub(crate) async fn supervise(
    name: Arc<str>,
    config: Config,
    shared: Arc<Shared>,
    mut mailbox: Receiver,
    mut hooks: ReadHooks,
    limiter: Arc<ConnectLimiter>,
) {
    let (min, max) = config.backoff();
    let mut backoff = Backoff::new(min, max);
    let mut ever_open = false;
    let mut failed_attempts = 0u32;
    'outer: loop {
        let attempt = tokio::select! {
            biased;
            c = mailbox.recv_control() => match c {
                Some(Control::Restart) => continue 'outer,
                Some(Control::Close { .. }) | None => break 'outer,
            },
            r = dial_round(&name, &config, &mut hooks, &limiter) => r,
        };
        match attempt {
            Ok((ws, endpoint)) => {
                failed_attempts = 0;
                shared.set_endpoint(endpoint);
                shared.set_last_failure(None);
                if ever_open {
                    shared.count_reconnect();
                }
                ever_open = true;
                log::info!("[{name}] open");
                let opened = Instant::now();
                let session = Session::new(&name, ws, config.clone(), shared.clone());
                match session.run(&mut mailbox, &mut hooks).await {
                    Ended::Closed => break 'outer,
                    Ended::Restart => continue 'outer,
                    Ended::PeerClosed | Ended::Failed(_) => {
                        if opened.elapsed() >= config.backoff_reset_after() {
                            backoff.reset();
                        }
                    }
                }
            }
            Err(e) => {
                failed_attempts += 1;
                log::warn!("[{name}] connect attempt {failed_attempts} failed: {e}");
                shared.set_last_failure(Some(e.clone()));
                hooks.dispatch(&name, Event::Error(e));
                let cap = config.max_reconnect_attempts();
                if cap > 0 && failed_attempts >= cap {
                    log::error!("[{name}] giving up after {failed_attempts} failed attempts");
                    let e = ConnectionError::RetriesExhausted(failed_attempts);
                    hooks.dispatch(&name, Event::Error(e));
                    break 'outer;
                }
            }
        }
        shared.set_state(ConnState::Reconnecting);
        let delay = backoff.next_delay();
        log::info!("[{name}] reconnecting in {delay:?}");
        let wake = Instant::now() + delay;
        match timeout_at(wake, mailbox.recv_control()).await {
            Err(_) => {}
            Ok(Some(Control::Restart)) => continue 'outer,
            Ok(Some(Control::Close { .. }) | None) => break 'outer,
        }
    }
    shared.set_state(ConnState::Closed);
    // Whatever the caller queued and no socket took is reported, never dropped silently.
    let left = mailbox.close();
    if left > 0 {
        let e = ConnectionError::WriteError(format!(
            "{left} queued message(s) were not written: the connection stopped"
        ));
        hooks.dispatch(&name, Event::Error(e));
    }
    log::info!("[{name}] stopped");
}

/// One attempt: the URLs in order until one opens, giving the socket and the URL's index.
/// Failures before the last URL are reported here and the next URL is tried at once; the last
/// one is returned, for the backoff.
async fn dial_round(
    name: &str,
    config: &Config,
    hooks: &mut ReadHooks,
    limiter: &ConnectLimiter,
) -> Result<(Socket, usize), ConnectionError> {
    let last = config.endpoint_count() - 1;
    for i in 0..=last {
        let endpoint = config.endpoint(i);
        let target = describe_target(&endpoint);
        // Each URL tried is one attempt of the manager's limit. The wait is part of this
        // future, which the supervisor drops on close, restart or shutdown; boxed, since most
        // attempts do not wait.
        if let Some(at) = limiter.reserve() {
            log::debug!("[{name}] waiting for a connect slot of the manager's limit");
            Box::pin(tokio::time::sleep_until(at)).await;
        }
        log::info!("[{name}] connecting to {target}");
        // Boxed: the dial future is the largest state of a connection's life, and only a
        // short one.
        match Box::pin(connect(config, &endpoint, &target)).await {
            Ok(ws) => return Ok((ws, i)),
            Err(e) if i < last => {
                log::warn!("[{name}] {target} failed, trying the next URL: {e}");
                hooks.dispatch(name, Event::Error(e));
            }
            Err(e) => return Err(e),
        }
    }
    // `endpoints` always yields the main URL.
    Err(ConnectionError::ConnectFailed(
        "no URL to connect to".into(),
    ))
}

#[cfg(test)]
mod tests {
    /// Every idle connection holds its supervisor task for its whole life: keep it small
    /// (cold states are boxed, TLS is boxed in `Transport`). 10,000 idle connections measured
    /// 9.1 KiB RSS each with this at 1952 bytes.
    #[test]
    fn a_connection_task_stays_small() {
        let config = crate::Config::builder("ws://127.0.0.1:1/").build().unwrap();
        let (link, mailbox) = crate::handle::channel("x", &config);
        let task = super::supervise(
            "x".into(),
            config,
            link.shared.clone(),
            mailbox,
            crate::ReadHooks::new(),
            Default::default(),
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 2560, "the supervisor future grew to {size} bytes");
    }
}
