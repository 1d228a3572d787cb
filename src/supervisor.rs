//! The supervisor of one connection: connects, runs the session, and reconnects with backoff
//! until the caller closes it or the attempts run out. Each connection has its own, so
//! connections never wait on each other.

use std::sync::Arc;

use tokio::time::{Instant, timeout_at};

use crate::backoff::Backoff;
use crate::config::Config;
use crate::connection::{DialFuture, Ended, Session};
use crate::dial::{connect, describe_target};
use crate::error::ConnectionError;
use crate::handle::{ConnState, Shared, StateChange};
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
    // The gap of the current outage: when the open socket went away and the connect attempts
    // made since (`None` before the first open and while open).
    let mut down: Option<(Instant, u32)> = None;
    let change = |hooks: &mut ReadHooks, c: StateChange| hooks.state(&name, c);
    change(&mut hooks, StateChange::to(ConnState::Connecting, None));
    let mut gave_up = None;
    // A rotation's second socket is dialled like a reconnect: same URLs, same order. Its
    // failures on the way are collected, for the session owns the hooks meanwhile.
    let dialer = {
        let (name, config, limiter) = (name.clone(), config.clone(), limiter.clone());
        move || -> DialFuture<_> {
            let (name, config, limiter) = (name.clone(), config.clone(), limiter.clone());
            Box::pin(async move {
                let mut skipped = Vec::new();
                let r = dial_round(&name, &config, &limiter, |e| skipped.push(e)).await;
                (r, skipped)
            })
        }
    };
    'outer: loop {
        if let Some((_, tries)) = down.as_mut() {
            *tries += 1;
        }
        let attempt = tokio::select! {
            biased;
            c = next_control(&mut mailbox) => match c {
                // `next_control` never yields a rotation.
                Some(Control::Restart | Control::Rotate) => continue 'outer,
                Some(Control::Close { .. }) | None => break 'outer,
            },
            r = dial_round(&name, &config, &limiter, |e| hooks.dispatch(&name, Event::Error(e))) => r,
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
                let gap = down.take().map(|(since, tries)| (since.elapsed(), tries));
                shared.mark_open(gap.map(|(d, _)| d));
                match gap {
                    Some((d, tries)) => {
                        log::info!("[{name}] open after {d:?} down and {tries} attempt(s)")
                    }
                    None => log::info!("[{name}] open"),
                }
                change(
                    &mut hooks,
                    StateChange {
                        state: ConnState::Open,
                        reason: None,
                        attempts: gap.map_or(0, |(_, t)| t),
                        down_for: gap.map(|(d, _)| d),
                        endpoint,
                        last_message_at: gap.and_then(|_| shared.last_data_at()),
                    },
                );
                let opened = Instant::now();
                let session = Session::new(&name, ws, config.clone(), shared.clone());
                let ended = session.run(&mut mailbox, &mut hooks, Some(&dialer)).await;
                let reason = match &ended {
                    Ended::Closed | Ended::Restart => None,
                    Ended::PeerClosed => Some(ConnectionError::ConnectionDropped(
                        "closed by the peer".into(),
                    )),
                    Ended::Failed(e) => Some(e.clone()),
                };
                shared.mark_down(reason.clone());
                down = Some((Instant::now(), 0));
                match ended {
                    Ended::Closed => break 'outer,
                    Ended::Restart => continue 'outer,
                    Ended::PeerClosed | Ended::Failed(_) => {
                        if opened.elapsed() >= config.backoff_reset_after() {
                            backoff.reset();
                        }
                    }
                }
                change(&mut hooks, StateChange::to(ConnState::Reconnecting, reason));
            }
            Err(e) => {
                failed_attempts += 1;
                log::warn!("[{name}] connect attempt {failed_attempts} failed: {e}");
                shared.set_last_failure(Some(e.clone()));
                hooks.dispatch(&name, Event::Error(e.clone()));
                let cap = config.max_reconnect_attempts();
                if cap > 0 && failed_attempts >= cap {
                    log::error!("[{name}] giving up after {failed_attempts} failed attempts");
                    let e = ConnectionError::RetriesExhausted(failed_attempts);
                    hooks.dispatch(&name, Event::Error(e.clone()));
                    gave_up = Some(e);
                    break 'outer;
                }
                // The first failure of a row changes the state; the later ones only report.
                if failed_attempts == 1 && shared.state() != ConnState::Reconnecting {
                    change(
                        &mut hooks,
                        StateChange::to(ConnState::Reconnecting, Some(e)),
                    );
                }
            }
        }
        shared.set_state(ConnState::Reconnecting);
        let delay = backoff.next_delay();
        log::info!("[{name}] reconnecting in {delay:?}");
        let wake = Instant::now() + delay;
        match timeout_at(wake, next_control(&mut mailbox)).await {
            Err(_) => {}
            Ok(Some(Control::Restart | Control::Rotate)) => continue 'outer,
            Ok(Some(Control::Close { .. }) | None) => break 'outer,
        }
    }
    shared.set_state(ConnState::Closed);
    change(&mut hooks, StateChange::to(ConnState::Closed, gave_up));
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

/// The next request while no socket is open. A rotation needs an open socket: dropped.
async fn next_control(mailbox: &mut Receiver) -> Option<Control> {
    loop {
        match mailbox.recv_control().await {
            Some(Control::Rotate) => log::debug!("rotation ignored: the connection is not open"),
            other => return other,
        }
    }
}

/// One attempt: the URLs in order until one opens, giving the socket and the URL's index.
/// Failures before the last URL are reported here and the next URL is tried at once; the last
/// one is returned, for the backoff.
async fn dial_round(
    name: &str,
    config: &Config,
    limiter: &ConnectLimiter,
    mut report: impl FnMut(ConnectionError),
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
                report(e);
            }
            Err(e) => return Err(e),
        }
    }
    // `endpoints` always yields the main URL.
    Err(ConnectionError::ConnectFailed(
        "no URL to connect to".into(),
    ))
}

/// Runs a connection's task. A panic in it is a bug of the library (a hook's panic is
/// contained where the hook runs): the connection then ends as closed, its queue refuses
/// sends (the mailbox went with the task) and its hooks are dropped (`on_drop` runs), and the
/// log says so, instead of the connection staying listed as open with nothing serving it. The
/// panic's message is not logged: it may quote what the library was handling (a `str`
/// slicing panic prints the text).
///
/// A combinator, not an `async fn`: an `async fn` would hold the task future twice (as its
/// argument and as the future it awaits), which doubled every idle connection's task
/// (10,000 idle connections: 9.1 -> 11.5 KiB RSS each).
pub(crate) fn contained(
    name: Arc<str>,
    shared: Arc<Shared>,
    task: impl Future<Output = ()>,
) -> impl Future<Output = ()> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(task)
        .catch_unwind()
        .map(move |ended| {
            if ended.is_err() {
                log::error!(
                    "[{name}] the connection's task panicked (a bug of kharbranth); the \
                     connection is closed"
                );
                // `wait_open` and the stats tell why it stopped.
                shared.set_last_failure(Some(ConnectionError::ConnectionDropped(
                    "the connection's task panicked (a bug of kharbranth)".into(),
                )));
                shared.set_state(ConnState::Closed);
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_connection_task_ends_its_connection_closed() {
        let shared = Arc::new(Shared::new());
        shared.set_state(ConnState::Open);
        let s = shared.clone();
        let task = tokio::spawn(contained("x".into(), s, async {
            panic!("a bug");
        }));
        assert!(task.await.is_ok(), "the panic left the task");
        assert_eq!(shared.state(), ConnState::Closed);
        assert!(matches!(
            shared.last_failure(),
            Some(ConnectionError::ConnectionDropped(_))
        ));
        // A task that ends normally keeps its state.
        let s = shared.clone();
        shared.set_state(ConnState::Open);
        contained("x".into(), s, async {}).await;
        assert_eq!(shared.state(), ConnState::Open);
    }

    /// Every idle connection holds its supervisor task for its whole life: keep it small
    /// (cold states are boxed, TLS is boxed in `Transport`). 10,000 idle connections measured
    /// 9.1 KiB RSS each with this at 1952 bytes.
    #[test]
    fn a_connection_task_stays_small() {
        let config = crate::Config::builder("ws://127.0.0.1:1/").build().unwrap();
        let (link, mailbox) = crate::handle::channel("x", &config, None);
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
        let shared = link.shared.clone();
        let wrapped = std::mem::size_of_val(&super::contained("x".into(), shared, task));
        assert!(
            wrapped <= size + 64,
            "the panic guard made the task {wrapped} bytes (the future alone: {size})"
        );
    }
}
