//! An event recorder for read hooks: every call, in order, with the moment it ran.

use std::sync::{Arc, Mutex};

use kharbranth::{ConnectionError, ReadHooks};
use tokio::time::Instant;

use super::{DEADLINE, wait_until};

/// What a hook saw, owned so it can be compared.
#[derive(Debug, Clone, PartialEq)]
pub enum Ev {
    Open,
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
    Frame(u8, Vec<u8>),
    Error(ConnectionError),
}

/// The events so far and, at the same index, when each was recorded.
#[derive(Default)]
struct Log {
    events: Vec<Ev>,
    at: Vec<Instant>,
}

/// Records every hook invocation of a connection, in order.
#[derive(Clone, Default)]
pub struct Recorder {
    log: Arc<Mutex<Log>>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&self, ev: Ev) {
        let mut log = self.log.lock().unwrap();
        log.events.push(ev);
        log.at.push(Instant::now());
    }

    /// Hooks that record everything, `on_frame` included.
    pub fn hooks(&self) -> ReadHooks {
        let r = self.clone();
        self.hooks_without_frames()
            .on_frame(move |_, op, x| r.push(Ev::Frame(op, x.to_vec())))
    }

    /// Hooks that record every kind but `on_frame`, so that messages take the library's path
    /// for connections without an `on_frame` hook.
    pub fn hooks_without_frames(&self) -> ReadHooks {
        let (a, b, c, d, e, f, g) = (
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
        );
        ReadHooks::new()
            .on_open(move |_| a.push(Ev::Open))
            .on_text(move |_, t| b.push(Ev::Text(t.to_string())))
            .on_binary(move |_, x| c.push(Ev::Binary(x.to_vec())))
            .on_ping(move |_, x| d.push(Ev::Ping(x.to_vec())))
            .on_pong(move |_, x| e.push(Ev::Pong(x.to_vec())))
            .on_close(move |_, code, reason| f.push(Ev::Close(code, reason.to_string())))
            .on_error(move |_, err| g.push(Ev::Error(err.clone())))
    }

    pub fn events(&self) -> Vec<Ev> {
        self.log.lock().unwrap().events.clone()
    }

    /// Events without the `on_frame` duplicates.
    pub fn main_events(&self) -> Vec<Ev> {
        self.pick(|e| (!matches!(e, Ev::Frame(..))).then(|| e.clone()))
    }

    pub fn count(&self, pred: impl Fn(&Ev) -> bool) -> usize {
        self.pick(|e| pred(e).then_some(())).len()
    }

    pub fn opens(&self) -> usize {
        self.count(|e| *e == Ev::Open)
    }

    /// When each `on_open` ran.
    pub fn open_times(&self) -> Vec<Instant> {
        self.pick_timed(|e| (*e == Ev::Open).then_some(()))
            .into_iter()
            .map(|((), t)| t)
            .collect()
    }

    pub fn errors(&self) -> Vec<ConnectionError> {
        self.timed_errors().into_iter().map(|(e, _)| e).collect()
    }

    /// Each `on_error` with when it ran.
    pub fn timed_errors(&self) -> Vec<(ConnectionError, Instant)> {
        self.pick_timed(|e| match e {
            Ev::Error(e) => Some(e.clone()),
            _ => None,
        })
    }

    pub fn texts(&self) -> Vec<String> {
        self.pick(|e| match e {
            Ev::Text(t) => Some(t.clone()),
            _ => None,
        })
    }

    /// Waits until `pred` holds for the recorded events; panics with them after the deadline.
    pub async fn wait(&self, what: &str, pred: impl Fn(&[Ev]) -> bool) {
        if !wait_until(DEADLINE, || pred(&self.log.lock().unwrap().events)).await {
            panic!(
                "timed out after {DEADLINE:?} waiting for {what}; events: {:?}",
                self.events()
            );
        }
    }

    pub async fn wait_count(&self, what: &str, n: usize, pred: impl Fn(&Ev) -> bool) {
        self.wait(what, |evs| evs.iter().filter(|e| pred(e)).count() >= n)
            .await
    }

    /// Waits until `on_open` has run `n` times; panics at once, with the events, at an error
    /// before that for which `expected` is false: a connection that fails where the test expects
    /// it to open fails the test within moments instead of at the deadline.
    pub async fn wait_opens(
        &self,
        what: &str,
        n: usize,
        expected: impl Fn(&ConnectionError) -> bool,
    ) {
        // Some(true): opened n times; Some(false): an unexpected error came first.
        let verdict = |evs: &[Ev]| {
            let mut opens = 0;
            for e in evs {
                match e {
                    Ev::Open => opens += 1,
                    Ev::Error(err) if !expected(err) => return Some(false),
                    _ => {}
                }
                if opens >= n {
                    return Some(true);
                }
            }
            None
        };
        let _ = wait_until(DEADLINE, || {
            verdict(&self.log.lock().unwrap().events).is_some()
        })
        .await;
        let events = self.events();
        match verdict(&events) {
            Some(true) => {}
            Some(false) => {
                panic!("an unexpected error while waiting for {what}; events: {events:?}")
            }
            None => panic!("timed out after {DEADLINE:?} waiting for {what}; events: {events:?}"),
        }
    }

    /// Resolves with the first failed connect attempt (`ConnectFailed` or `Timeout`) recorded;
    /// pending until one is. For racing a wait on the server side (see
    /// [`Server::next_unless_connect_fails`](super::Server::next_unless_connect_fails)).
    pub async fn connect_failure(&self) -> ConnectionError {
        loop {
            let failed = self.errors().into_iter().find(|e| {
                matches!(
                    e,
                    ConnectionError::ConnectFailed(_) | ConnectionError::Timeout(_)
                )
            });
            if let Some(e) = failed {
                return e;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// What `select` takes from each event, in order.
    fn pick<T>(&self, select: impl Fn(&Ev) -> Option<T>) -> Vec<T> {
        self.pick_timed(select)
            .into_iter()
            .map(|(v, _)| v)
            .collect()
    }

    /// What `select` takes from each event, with when the event was recorded.
    fn pick_timed<T>(&self, select: impl Fn(&Ev) -> Option<T>) -> Vec<(T, Instant)> {
        let log = self.log.lock().unwrap();
        log.events
            .iter()
            .zip(&log.at)
            .filter_map(|(e, t)| select(e).map(|v| (v, *t)))
            .collect()
    }
}
