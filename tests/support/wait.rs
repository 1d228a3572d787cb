//! Waits with a deadline: `within` for a future, `wait_until` (returns whether the condition
//! held in time) and `eventually` (panics when it did not) for a condition.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The bound on every wait that states none of its own. Generous: the machine may be loaded.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(5);

/// Runs `fut` with the [`DEADLINE`]; panics naming `what` when it runs out.
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}

/// Polls `cond` every few milliseconds until it holds or `limit` passes; returns whether it held.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return cond();
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `cond` until it holds; panics naming `what` after the [`DEADLINE`].
pub async fn eventually(what: &str, cond: impl FnMut() -> bool) {
    if !wait_until(DEADLINE, cond).await {
        panic!("timed out after {DEADLINE:?} waiting for {what}");
    }
}
