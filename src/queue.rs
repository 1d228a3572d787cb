//! A connection's inbox from the outside world: queued writes and control requests.
//!
//! One lock-protected queue with one waker instead of two tokio channels: tokio's channels
//! allocate a first block of 32 slots each up front, over 3 KiB per connection before anything
//! is sent, which matters to a manager holding thousands of mostly idle connections. Here an
//! idle connection holds an empty `VecDeque` (no allocation) and a slot for one request.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures_util::task::AtomicWaker;
use tokio_tungstenite::tungstenite::Message;

/// Requests to a connection that are not data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    /// Close cleanly and connect again at once.
    Restart,
    /// Close for good with this code and reason.
    Close { code: u16, reason: String },
    /// Open a second socket and switch to it once it delivers data (see
    /// [`Link::rotate`](crate::Link::rotate)). Never replaces another pending request.
    Rotate,
}

#[derive(Debug)]
struct State {
    writes: VecDeque<Message>,
    control: Option<Control>,
    senders: usize,
    closed: bool,
    /// The live subscriptions; boxed on first use, so that a connection without any (most
    /// of thousands of idle ones) pays one pointer.
    subs: Option<Box<Subs>>,
    /// A socket took its snapshot of the subscriptions and has not ended yet. Taking the
    /// snapshot and setting this happen under the lock, and so does every change of the set:
    /// each change lands either in a snapshot or in `Subs::writes` of the socket after it,
    /// never both.
    live: bool,
    /// A rotation's second socket took its snapshot and runs beside the live one: changes go
    /// to both (`Subs::next` for the second) until the switch or the rotation's end.
    rotating: bool,
}

#[derive(Debug, Default)]
struct Subs {
    /// By key, in the order added: replayed on every socket.
    set: Vec<(Box<str>, Message)>,
    /// Subscribe and unsubscribe messages for the socket that is open now (`live`), written
    /// before `State::writes`. Kept apart from those because they belong to one socket: a
    /// socket that ends drops them, and the next one gets the set itself from the replay.
    writes: VecDeque<Message>,
    /// The same for a rotation's second socket (`State::rotating`): its `writes` once it takes
    /// over.
    next: VecDeque<Message>,
}

impl State {
    /// Room for one more write while a socket is open.
    fn full(&self, capacity: usize) -> bool {
        self.writes.len() + self.subs.as_ref().map_or(0, |b| b.writes.len()) >= capacity
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    waker: AtomicWaker,
    capacity: usize,
    /// Takes the wakes made outside every connection's poll, when the manager has one (a
    /// driven manager's, whose tasks only run inside its caller's polls: see
    /// `kh_manager_new_driven`).
    outside: Option<Arc<dyn WakeRelay>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every operation; a panic elsewhere is no reason to
        // stop delivering.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

thread_local! {
    /// The queue whose connection is being polled on this thread (null: none). A send from
    /// that connection's own hook needs no wake-up: the connection writes its queue before it
    /// next waits. Waking it anyway would reschedule the running task, which costs a second
    /// poll and, with idle workers, a cross-core wake-up per echoed message.
    static POLLING: Cell<*const Shared> = const { Cell::new(std::ptr::null()) };
}

/// Wakes a task from a thread that is not running a connection's hooks.
///
/// tokio's multi-thread scheduler puts a task woken on a worker thread into that worker's LIFO
/// slot, which no other worker can steal. A hook that sends to another connection and then
/// blocks would hold that connection's task there, heartbeats included, until it returns.
/// `disable_lifo_slot` would avoid that but needs `--cfg tokio_unstable`, which a build of the
/// library outside this repository does not have. So a runtime that runs blocking hooks (the
/// C ABI's) installs a relay on its worker threads, and wakes made while a connection is being
/// polled there go through it: woken from the relay's thread, the task lands in the runtime's
/// shared queue, which every worker takes from.
pub(crate) trait WakeRelay: Send + Sync + std::fmt::Debug {
    /// Wakes `waker` soon: from another thread (a worker's relay), or once the runtime runs
    /// again (a driven manager's, see `Shared::outside`).
    fn relay(&self, waker: Waker);
}

thread_local! {
    /// The relay of this thread's runtime, if it installed one.
    static RELAY: RefCell<Option<Arc<dyn WakeRelay>>> = const { RefCell::new(None) };
}

/// Installs the relay for wakes made on this thread (call it when a worker thread starts).
pub(crate) fn install_wake_relay(relay: Arc<dyn WakeRelay>) {
    let _ = RELAY.try_with(|r| *r.borrow_mut() = Some(relay));
}

impl Shared {
    /// Wakes the receiver's task. A write needs no wake when this thread is polling that very
    /// task (`skip_own`: it looks at its queue before it next waits). From inside another
    /// connection's poll the wake goes through the thread's relay, if any (see [`WakeRelay`]);
    /// from outside every connection's poll, through the manager's (`outside`), if any.
    fn wake(self: &Arc<Self>, skip_own: bool) {
        let polling = POLLING.try_with(Cell::get).unwrap_or(std::ptr::null());
        let own = std::ptr::eq(polling, Arc::as_ptr(self));
        if own && skip_own {
            return;
        }
        if polling.is_null()
            && let Some(outside) = &self.outside
        {
            if let Some(w) = self.waker.take() {
                outside.relay(w);
            }
            return;
        }
        if !polling.is_null() && !own {
            let relayed = RELAY
                .try_with(|r| match r.try_borrow().ok().and_then(|r| r.clone()) {
                    Some(relay) => {
                        if let Some(w) = self.waker.take() {
                            relay.relay(w);
                        }
                        true
                    }
                    None => false,
                })
                .unwrap_or(false);
            if relayed {
                return;
            }
        }
        self.waker.wake();
    }
}

/// Marks a queue as being polled on this thread until dropped.
pub(crate) struct Polling {
    previous: *const Shared,
}

impl Drop for Polling {
    fn drop(&mut self) {
        let _ = POLLING.try_with(|p| p.set(self.previous));
    }
}

/// Why a message was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    Full,
    Closed,
}

/// Why a subscription was not added or removed; nothing changed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SubError {
    Full,
    Closed,
    Exists,
    NotFound,
}

/// The sending side; cloneable. When the last sender is dropped the receiver sees `None`.
#[derive(Debug)]
pub(crate) struct Sender {
    shared: Arc<Shared>,
}

/// The receiving side, owned by the connection's task.
#[derive(Debug)]
pub(crate) struct Receiver {
    shared: Arc<Shared>,
    /// The last write [`poll_write`](Self::poll_write) took was a subscription message of
    /// the open socket: [`put_back`](Self::put_back) returns it there, so that it still ends
    /// with its socket and is not written again after the next socket's replay.
    took_sub: bool,
}

/// A queue holding at most `capacity` writes; `outside` takes the wakes made outside every
/// connection's poll (see [`Shared::wake`]).
pub(crate) fn queue(capacity: usize, outside: Option<Arc<dyn WakeRelay>>) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            writes: VecDeque::new(),
            control: None,
            senders: 1,
            closed: false,
            subs: None,
            live: false,
            rotating: false,
        }),
        waker: AtomicWaker::new(),
        capacity,
        outside,
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver {
            shared,
            took_sub: false,
        },
    )
}

impl Sender {
    pub(crate) fn try_send(&self, msg: Message) -> Result<(), SendError> {
        {
            let mut s = self.shared.lock();
            if s.closed {
                return Err(SendError::Closed);
            }
            if s.writes.len() >= self.shared.capacity {
                return Err(SendError::Full);
            }
            s.writes.push_back(msg);
        }
        self.shared.wake(true);
        Ok(())
    }

    /// Posts a request. A pending close is never replaced by a restart.
    pub(crate) fn control(&self, c: Control) -> Result<(), SendError> {
        {
            let mut s = self.shared.lock();
            if s.closed {
                return Err(SendError::Closed);
            }
            let keep = match (&s.control, &c) {
                (Some(Control::Close { .. }), _) => true,
                // A rotation is the weakest request: it yields to any other one pending.
                (Some(_), Control::Rotate) => true,
                _ => false,
            };
            if !keep {
                s.control = Some(c);
            }
        }
        self.shared.wake(false);
        Ok(())
    }
}

impl Sender {
    /// Adds a subscription under `key`; an open socket gets its message now (after what it was
    /// given before), later sockets in their replay. Counts against the queue's bound while a
    /// socket is open, as a send does.
    pub(crate) fn subscribe(&self, key: &str, msg: Message) -> Result<(), SubError> {
        let live = {
            let mut s = self.shared.lock();
            if s.closed {
                return Err(SubError::Closed);
            }
            if s.subs
                .as_ref()
                .is_some_and(|b| b.set.iter().any(|(k, _)| &**k == key))
            {
                return Err(SubError::Exists);
            }
            let (live, rotating) = (s.live, s.rotating);
            if live && s.full(self.shared.capacity) {
                return Err(SubError::Full);
            }
            let subs = s.subs.get_or_insert_default();
            if live {
                subs.writes.push_back(msg.clone());
            }
            if rotating {
                subs.next.push_back(msg.clone());
            }
            subs.set.push((key.into(), msg));
            live
        };
        if live {
            self.shared.wake(true);
        }
        Ok(())
    }

    /// Removes the subscription `key`. `msg` (an unsubscribe message) goes to the open socket,
    /// the only one that got the subscription; with no socket open there is nothing to undo
    /// (the next socket's replay leaves the subscription out) and `msg` is not sent.
    /// Returns whether `msg` was queued.
    pub(crate) fn unsubscribe(&self, key: &str, msg: Option<Message>) -> Result<bool, SubError> {
        let queued = {
            let mut s = self.shared.lock();
            if s.closed {
                return Err(SubError::Closed);
            }
            let found = s
                .subs
                .as_ref()
                .and_then(|b| b.set.iter().position(|(k, _)| &**k == key));
            let Some(i) = found else {
                return Err(SubError::NotFound);
            };
            let send = msg.filter(|_| s.live);
            if send.is_some() && s.full(self.shared.capacity) {
                return Err(SubError::Full);
            }
            let queued = send.is_some();
            let rotating = s.rotating;
            if let Some(subs) = s.subs.as_mut() {
                if rotating {
                    subs.next.extend(send.clone());
                }
                subs.writes.extend(send);
                // Order matters for the replay: remove, do not swap.
                subs.set.remove(i);
            }
            queued
        };
        if queued {
            self.shared.wake(true);
        }
        Ok(queued)
    }

    /// The keys of the subscriptions, in the order added.
    pub(crate) fn subscriptions(&self) -> Vec<String> {
        match &self.shared.lock().subs {
            Some(b) => b.set.iter().map(|(k, _)| k.to_string()).collect(),
            None => Vec::new(),
        }
    }
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let last = {
            let mut s = self.shared.lock();
            s.senders -= 1;
            s.senders == 0
        };
        if last {
            self.shared.wake(false);
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // The connection is gone: later sends fail instead of piling up unread.
        self.close();
    }
}

impl Receiver {
    /// Marks this queue as polled by the current thread (see `POLLING`) until the guard drops.
    /// The caller must look at its queued writes before it next returns `Pending`.
    pub(crate) fn polling(&self) -> Polling {
        let ptr = Arc::as_ptr(&self.shared);
        let previous = POLLING
            .try_with(|p| p.replace(ptr))
            .unwrap_or(std::ptr::null());
        Polling { previous }
    }

    /// The next request; `Ready(None)` once every sender is gone.
    pub(crate) fn poll_control(&mut self, cx: &mut Context<'_>) -> Poll<Option<Control>> {
        self.poll_with(cx, |s| match s.control.take() {
            Some(c) => Some(Some(c)),
            None if s.senders == 0 => Some(None),
            None => None,
        })
    }

    /// The next queued write; `Pending` when none is queued. Subscription messages first: they
    /// belong to this socket only.
    pub(crate) fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Message> {
        let took = self.poll_with(cx, |s| {
            let sub = s.subs.as_mut().and_then(|b| b.writes.pop_front());
            match sub {
                Some(m) => Some((m, true)),
                None => s.writes.pop_front().map(|m| (m, false)),
            }
        });
        took.map(|(m, sub)| {
            self.took_sub = sub;
            m
        })
    }

    /// A socket opened: appends the subscription messages to `out` (its replay, in the order
    /// added) and marks it as the socket later changes go to. See [`State::live`].
    pub(crate) fn open_socket(&mut self, out: &mut VecDeque<Message>) {
        let mut s = self.shared.lock();
        if let Some(b) = s.subs.as_mut() {
            b.writes = VecDeque::new();
            out.extend(b.set.iter().map(|(_, m)| m.clone()));
        }
        s.live = true;
    }

    /// The socket ended: subscription messages it did not write are dropped, as the next
    /// socket's replay carries the set as it is then.
    pub(crate) fn end_socket(&mut self) {
        let mut s = self.shared.lock();
        s.live = false;
        s.rotating = false;
        if let Some(b) = s.subs.as_mut() {
            b.writes = VecDeque::new();
            b.next = VecDeque::new();
        }
    }

    /// A rotation's second socket opened beside the live one: appends its replay to `out`;
    /// until [`switch_socket`](Self::switch_socket) or
    /// [`abandon_next_socket`](Self::abandon_next_socket), every change also goes to it, so
    /// each change reaches each socket exactly once.
    pub(crate) fn open_next_socket(&mut self, out: &mut VecDeque<Message>) {
        let mut s = self.shared.lock();
        if let Some(b) = s.subs.as_mut() {
            b.next = VecDeque::new();
            out.extend(b.set.iter().map(|(_, m)| m.clone()));
        }
        s.rotating = true;
    }

    /// The rotation switched: what the second socket has not been given yet becomes the live
    /// socket's, and what the old one had not written is dropped (the old one closes).
    pub(crate) fn switch_socket(&mut self) {
        let mut s = self.shared.lock();
        s.rotating = false;
        if let Some(b) = s.subs.as_mut() {
            b.writes = std::mem::take(&mut b.next);
        }
    }

    /// The rotation failed or was abandoned: the second socket is gone.
    pub(crate) fn abandon_next_socket(&mut self) {
        let mut s = self.shared.lock();
        s.rotating = false;
        if let Some(b) = s.subs.as_mut() {
            b.next = VecDeque::new();
        }
    }

    /// A queued write, without waiting.
    pub(crate) fn try_write(&mut self) -> Option<Message> {
        let mut s = self.shared.lock();
        if let Some(m) = s.subs.as_mut().and_then(|b| b.writes.pop_front()) {
            return Some(m);
        }
        let m = s.writes.pop_front();
        if s.writes.is_empty() && s.writes.capacity() > 64 {
            // A burst is over: do not keep its memory for the rest of the connection's life.
            s.writes = VecDeque::new();
        }
        m
    }

    /// Whether a write is queued, without taking it.
    pub(crate) fn has_write(&self) -> bool {
        !self.shared.lock().writes.is_empty()
    }

    /// Puts back a write taken by [`poll_write`](Self::poll_write) that may not be written
    /// yet (a rate limit): it stays first, and stays counted against the queue's bound. A
    /// subscription message goes back among its socket's, so it still ends with the socket.
    pub(crate) fn put_back(&mut self, msg: Message) {
        let mut s = self.shared.lock();
        match s.subs.as_mut().filter(|_| self.took_sub) {
            Some(b) => b.writes.push_front(msg),
            None => s.writes.push_front(msg),
        }
    }

    /// Waits for the next request (`None`: every sender is gone).
    pub(crate) async fn recv_control(&mut self) -> Option<Control> {
        std::future::poll_fn(|cx| self.poll_control(cx)).await
    }

    /// Refuses further sends and returns how many writes were still queued (now dropped).
    pub(crate) fn close(&mut self) -> usize {
        let mut s = self.shared.lock();
        s.closed = true;
        let n = s.writes.len() + s.subs.as_ref().map_or(0, |b| b.writes.len());
        s.writes = VecDeque::new();
        // The subscriptions end with the connection.
        s.subs = None;
        s.live = false;
        s.rotating = false;
        n
    }

    fn poll_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut take: impl FnMut(&mut State) -> Option<T>,
    ) -> Poll<T> {
        if let Some(v) = take(&mut self.shared.lock()) {
            return Poll::Ready(v);
        }
        // Register, then look again: a send between the first look and the registration
        // would otherwise wake nobody.
        self.shared.waker.register(cx.waker());
        match take(&mut self.shared.lock()) {
            Some(v) => Poll::Ready(v),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fifo_with_full_and_closed() {
        let (tx, mut rx) = queue(2, None);
        tx.try_send(Message::text("a")).unwrap();
        tx.try_send(Message::text("b")).unwrap();
        assert_eq!(tx.try_send(Message::text("c")), Err(SendError::Full));
        assert_eq!(rx.try_write(), Some(Message::text("a")));
        tx.try_send(Message::text("c")).unwrap();
        assert_eq!(rx.close(), 2);
        assert_eq!(tx.try_send(Message::text("d")), Err(SendError::Closed));
    }

    #[test]
    fn a_rate_limited_subscription_message_put_back_still_ends_with_its_socket() {
        let (tx, mut rx) = queue(8, None);
        let mut replay = VecDeque::new();
        rx.open_socket(&mut replay);
        tx.try_send(Message::text("sent")).unwrap();
        tx.subscribe("a", Message::text("sub a")).unwrap();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // The limiter says "not yet" to the subscription message: it goes back, first.
        let Poll::Ready(m) = rx.poll_write(&mut cx) else {
            panic!("nothing to write")
        };
        assert_eq!(m, Message::text("sub a"));
        rx.put_back(m);
        // The socket drops before it is written: the next socket gets it once, by its replay.
        rx.end_socket();
        replay.clear();
        rx.open_socket(&mut replay);
        assert_eq!(
            Vec::from(std::mem::take(&mut replay)),
            [Message::text("sub a")]
        );
        assert_eq!(rx.try_write(), Some(Message::text("sent")));
        assert_eq!(
            rx.try_write(),
            None,
            "the subscription message was written twice"
        );
        // A send put back stays queued across the drop, as before.
        tx.try_send(Message::text("later")).unwrap();
        let Poll::Ready(m) = rx.poll_write(&mut cx) else {
            panic!("nothing to write")
        };
        rx.put_back(m);
        rx.end_socket();
        rx.open_socket(&mut replay);
        assert_eq!(rx.try_write(), Some(Message::text("later")));
    }

    #[test]
    fn a_subscription_reaches_each_socket_once_by_replay_or_by_its_own_write() {
        let (tx, mut rx) = queue(2, None);
        // No socket: kept for the replay only, and the queue's bound does not apply.
        for k in ["a", "b", "c"] {
            tx.subscribe(k, Message::text(k)).unwrap();
        }
        assert_eq!(rx.try_write(), None);
        assert_eq!(tx.subscribe("a", Message::text("x")), Err(SubError::Exists));
        let mut replay = VecDeque::new();
        rx.open_socket(&mut replay);
        assert_eq!(Vec::from(replay), ["a", "b", "c"].map(Message::text));
        // Open: written once, before earlier sends, within the queue's bound.
        tx.try_send(Message::text("sent")).unwrap();
        tx.subscribe("d", Message::text("d")).unwrap();
        assert_eq!(tx.subscribe("e", Message::text("e")), Err(SubError::Full));
        assert_eq!(
            tx.unsubscribe("a", Some(Message::text("un-a"))),
            Err(SubError::Full)
        );
        assert_eq!(
            tx.subscriptions(),
            ["a", "b", "c", "d"],
            "a refusal changed the set"
        );
        assert_eq!(rx.try_write(), Some(Message::text("d")));
        assert_eq!(tx.unsubscribe("b", Some(Message::text("un-b"))), Ok(true));
        assert_eq!(rx.try_write(), Some(Message::text("un-b")));
        assert_eq!(rx.try_write(), Some(Message::text("sent")));
        // The socket ends with a subscribe message unwritten: the next replay carries it.
        tx.subscribe("e", Message::text("e")).unwrap();
        rx.end_socket();
        assert_eq!(tx.unsubscribe("c", Some(Message::text("un-c"))), Ok(false));
        assert_eq!(tx.unsubscribe("c", None), Err(SubError::NotFound));
        assert_eq!(rx.try_write(), None);
        let mut replay = VecDeque::new();
        rx.open_socket(&mut replay);
        assert_eq!(Vec::from(replay), ["a", "d", "e"].map(Message::text));
        assert_eq!(rx.try_write(), None, "written twice on one socket");
        // Closing drops the set with the connection.
        rx.close();
        assert_eq!(tx.subscribe("f", Message::text("f")), Err(SubError::Closed));
        assert_eq!(tx.unsubscribe("a", None), Err(SubError::Closed));
        assert!(tx.subscriptions().is_empty());
    }

    #[tokio::test]
    async fn close_wins_over_restart_and_dropping_all_senders_ends_control() {
        let (tx, mut rx) = queue(1, None);
        let tx2 = tx.clone();
        tx.control(Control::Close {
            code: 1000,
            reason: "bye".into(),
        })
        .unwrap();
        tx2.control(Control::Restart).unwrap();
        assert!(matches!(
            within(rx.recv_control()).await,
            Some(Control::Close { code: 1000, .. })
        ));
        drop(tx);
        drop(tx2);
        assert_eq!(within(rx.recv_control()).await, None);
    }

    /// Bounds a wait of these tests: a queue answers at once or not at all.
    async fn within<F: std::future::Future>(fut: F) -> F::Output {
        tokio::time::timeout(std::time::Duration::from_secs(2), fut)
            .await
            .expect("the queue did not answer within 2 s")
    }

    #[test]
    fn sends_fail_once_the_receiver_is_gone() {
        let (tx, rx) = queue(4, None);
        tx.try_send(Message::text("before")).unwrap();
        drop(rx);
        assert_eq!(tx.try_send(Message::text("after")), Err(SendError::Closed));
        assert_eq!(tx.control(Control::Restart), Err(SendError::Closed));
        // Nothing is kept for a receiver that will never read it.
        assert!(tx.shared.lock().writes.is_empty());
    }

    #[test]
    fn control_ends_with_none_only_when_the_last_sender_goes() {
        let (tx, mut rx) = queue(4, None);
        let tx2 = tx.clone();
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(rx.poll_control(&mut cx).is_pending());
        drop(tx);
        assert!(rx.poll_control(&mut cx).is_pending(), "one sender is left");
        assert_eq!(count.get(), 0, "woken while a sender is left");
        let tx3 = tx2.clone();
        drop(tx2);
        assert!(rx.poll_control(&mut cx).is_pending(), "a clone is left");
        drop(tx3);
        assert_eq!(
            count.get(),
            1,
            "the last sender's drop did not wake the receiver"
        );
        assert_eq!(rx.poll_control(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn a_burst_of_queued_writes_is_read_whole_and_its_memory_given_back() {
        let (tx, mut rx) = queue(1000, None);
        for i in 0..1000 {
            tx.try_send(Message::text(i.to_string())).unwrap();
        }
        for i in 0..1000 {
            assert_eq!(rx.try_write(), Some(Message::text(i.to_string())));
        }
        assert_eq!(rx.try_write(), None);
        assert_eq!(rx.shared.lock().writes.capacity(), 0, "burst memory kept");
        // A small queue keeps its few slots: no reallocation per message.
        for _ in 0..2 {
            tx.try_send(Message::text("x")).unwrap();
            rx.try_write().unwrap();
        }
        assert!(rx.shared.lock().writes.capacity() > 0);
    }

    #[tokio::test]
    async fn a_send_wakes_a_waiting_receiver() {
        let (tx, mut rx) = queue(4, None);
        let waiter =
            tokio::spawn(async move { std::future::poll_fn(|cx| rx.poll_write(cx)).await });
        tokio::task::yield_now().await;
        tx.try_send(Message::text("x")).unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken within 5 s")
            .unwrap();
        assert_eq!(got, Message::text("x"));
    }

    /// Counts how often a task was woken.
    #[derive(Default)]
    struct Count(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    impl Count {
        fn get(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// Keeps relayed wakers instead of waking them, so the test sees which path a wake took.
    #[derive(Debug, Default)]
    struct Held(Mutex<Vec<Waker>>);
    impl WakeRelay for Held {
        fn relay(&self, waker: Waker) {
            self.0.lock().unwrap().push(waker);
        }
    }

    /// Registers a counting waker on `rx`, as a connection waiting for writes does.
    fn register(rx: &mut Receiver) -> Arc<Count> {
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        assert!(rx.poll_write(&mut Context::from_waker(&waker)).is_pending());
        count
    }

    #[test]
    fn wakes_from_inside_another_connections_poll_go_through_the_relay() {
        let held = Arc::new(Held::default());
        install_wake_relay(held.clone());
        let (a_tx, a_rx) = queue(4, None);
        let (b_tx, mut b_rx) = queue(4, None);
        let b_woken = register(&mut b_rx);
        {
            let _polling = a_rx.polling();
            b_tx.try_send(Message::text("to b")).unwrap();
            assert_eq!(b_woken.get(), 0, "woken on the polling thread itself");
            assert_eq!(held.0.lock().unwrap().len(), 1, "not handed to the relay");
            // A write to the queue being polled needs no wake at all.
            a_tx.try_send(Message::text("to a")).unwrap();
            assert_eq!(held.0.lock().unwrap().len(), 1);
        }
        held.0.lock().unwrap().drain(..).for_each(Waker::wake);
        assert_eq!(b_woken.get(), 1);
        // Outside any poll, wakes are direct again: the polling marker was restored.
        assert_eq!(b_rx.try_write(), Some(Message::text("to b")));
        let b_woken = register(&mut b_rx);
        b_tx.try_send(Message::text("later")).unwrap();
        assert_eq!(b_woken.get(), 1);
        assert!(held.0.lock().unwrap().is_empty());
    }

    #[test]
    fn wakes_from_outside_every_poll_go_to_the_managers_relay_when_it_has_one() {
        let outside = Arc::new(Held::default());
        let (tx, mut rx) = queue(4, Some(outside.clone()));
        let woken = register(&mut rx);
        tx.try_send(Message::text("between polls")).unwrap();
        tx.control(Control::Restart).unwrap();
        assert_eq!(woken.get(), 0, "woken past the relay");
        assert_eq!(outside.0.lock().unwrap().len(), 1, "the waker, once");
        outside.0.lock().unwrap().drain(..).for_each(Waker::wake);
        assert_eq!(woken.get(), 1);
        // From inside a connection's poll (its hooks) the wake is made as without the relay:
        // that task runs on a thread that drives the runtime.
        let (_other_tx, other_rx) = queue(4, None);
        assert_eq!(rx.try_write(), Some(Message::text("between polls")));
        let woken = register(&mut rx);
        {
            let _polling = other_rx.polling();
            tx.try_send(Message::text("from a hook")).unwrap();
        }
        assert_eq!(woken.get(), 1);
        assert!(outside.0.lock().unwrap().is_empty());
    }

    #[test]
    fn a_send_from_a_thread_that_polled_the_queue_before_still_wakes_it() {
        let (tx, mut rx) = queue(4, None);
        drop(rx.polling());
        let woken = register(&mut rx);
        tx.try_send(Message::text("x")).unwrap();
        assert_eq!(woken.get(), 1, "the polling marker outlived its guard");
    }

    #[test]
    fn a_control_request_from_the_connections_own_poll_still_wakes_it() {
        let (tx, mut rx) = queue(4, None);
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        assert!(
            rx.poll_control(&mut Context::from_waker(&waker))
                .is_pending()
        );
        let _polling = rx.polling();
        tx.control(Control::Restart).unwrap();
        assert_eq!(count.get(), 1);
    }

    fn take_all(rx: &mut Receiver) -> Vec<Message> {
        std::iter::from_fn(|| rx.try_write()).collect()
    }

    #[test]
    fn during_a_rotation_each_change_reaches_both_sockets_and_the_switch_keeps_the_new_ones() {
        let (tx, mut rx) = queue(8, None);
        tx.subscribe("a", Message::text("a")).unwrap();
        let mut live = VecDeque::new();
        rx.open_socket(&mut live);
        let mut next = VecDeque::new();
        rx.open_next_socket(&mut next);
        assert_eq!(
            Vec::from(next),
            [Message::text("a")],
            "the second socket's replay"
        );
        tx.subscribe("b", Message::text("b")).unwrap();
        assert_eq!(tx.unsubscribe("a", Some(Message::text("un-a"))), Ok(true));
        // The live socket writes its copies; the second socket's wait for the switch.
        assert_eq!(take_all(&mut rx), ["b", "un-a"].map(Message::text));
        rx.switch_socket();
        assert_eq!(take_all(&mut rx), ["b", "un-a"].map(Message::text));
        // After the switch a change goes to the one socket left, once.
        tx.subscribe("c", Message::text("c")).unwrap();
        assert_eq!(take_all(&mut rx), [Message::text("c")]);
        rx.end_socket();
        let mut replay = VecDeque::new();
        rx.open_socket(&mut replay);
        assert_eq!(Vec::from(replay), ["b", "c"].map(Message::text));
    }

    #[test]
    fn an_abandoned_or_ended_rotation_gives_its_changes_to_no_later_socket() {
        let (tx, mut rx) = queue(8, None);
        let mut out = VecDeque::new();
        rx.open_socket(&mut out);
        rx.open_next_socket(&mut out);
        tx.subscribe("x", Message::text("x")).unwrap();
        rx.abandon_next_socket();
        assert_eq!(take_all(&mut rx), [Message::text("x")]);
        // No longer rotating: a change goes to the live socket only, and no copy is kept for
        // a second socket that is gone.
        tx.subscribe("y", Message::text("y")).unwrap();
        assert_eq!(take_all(&mut rx), [Message::text("y")]);
        {
            let s = rx.shared.lock();
            assert!(!s.rotating);
            assert!(s.subs.as_ref().is_some_and(|b| b.next.is_empty()));
        }
        let mut next = VecDeque::new();
        rx.open_next_socket(&mut next);
        assert_eq!(Vec::from(next), ["x", "y"].map(Message::text));
        rx.switch_socket();
        assert_eq!(
            take_all(&mut rx),
            [],
            "the abandoned socket's copies came back"
        );
        // A socket that ends during a rotation ends it too.
        rx.open_next_socket(&mut VecDeque::new());
        rx.end_socket();
        tx.subscribe("z", Message::text("z")).unwrap();
        rx.open_socket(&mut VecDeque::new());
        rx.switch_socket();
        assert_eq!(
            take_all(&mut rx),
            [],
            "a change while no socket was open was written"
        );
    }

    #[tokio::test]
    async fn a_rotation_yields_to_any_other_request() {
        let (tx, mut rx) = queue(4, None);
        tx.control(Control::Restart).unwrap();
        tx.control(Control::Rotate).unwrap();
        assert_eq!(within(rx.recv_control()).await, Some(Control::Restart));
        tx.control(Control::Rotate).unwrap();
        tx.control(Control::Restart).unwrap();
        assert_eq!(within(rx.recv_control()).await, Some(Control::Restart));
        tx.control(Control::Rotate).unwrap();
        assert_eq!(within(rx.recv_control()).await, Some(Control::Rotate));
    }

    #[test]
    fn a_write_put_back_stays_first_and_counts_against_the_bound() {
        let (tx, mut rx) = queue(2, None);
        assert!(!rx.has_write());
        tx.try_send(Message::text("a")).unwrap();
        tx.try_send(Message::text("b")).unwrap();
        let a = rx.try_write().unwrap();
        rx.put_back(a);
        assert!(rx.has_write());
        assert_eq!(tx.try_send(Message::text("c")), Err(SendError::Full));
        assert_eq!(take_all(&mut rx), ["a", "b"].map(Message::text));
        assert!(!rx.has_write());
    }

    #[test]
    fn without_a_socket_the_bound_does_not_apply_to_subscriptions_and_close_counts_theirs() {
        let (tx, mut rx) = queue(1, None);
        tx.try_send(Message::text("queued")).unwrap();
        // No socket open: nothing is written now, so a full queue refuses no change of the set.
        tx.subscribe("a", Message::text("a")).unwrap();
        assert_eq!(tx.unsubscribe("a", Some(Message::text("un-a"))), Ok(false));
        tx.subscribe("b", Message::text("b")).unwrap();
        let mut replay = VecDeque::new();
        rx.open_socket(&mut replay);
        assert_eq!(Vec::from(replay), [Message::text("b")]);
        assert_eq!(rx.try_write(), Some(Message::text("queued")));
        tx.subscribe("c", Message::text("c")).unwrap();
        tx.try_send(Message::text("x")).unwrap();
        // Dropped by the close: the write and the unwritten subscribe message.
        assert_eq!(rx.close(), 2);
    }
}
