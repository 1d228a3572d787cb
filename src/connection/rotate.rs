//! Rotation: a second socket opened beside the running one, and delivery switched to it once it
//! carries data, so that a server's scheduled cut or maintenance leaves no gap. Cold path: the
//! loop of a connection that is not rotating never comes here.

use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::sleep;

use super::session::{Dialer, Rotation, Step};
use crate::error::ConnectionError;
use crate::handle::Shared;
use crate::hooks::{Event, ReadHooks};
use crate::queue::{self, Control, Receiver};

use super::Session;

/// What ended the overlap of the two sockets.
enum Overlap {
    /// The old socket's loop stopped.
    Old(Step),
    /// The new socket ended before its first data message.
    New(Step),
    /// The new socket delivered data: switch.
    Switch,
    /// The new socket delivered nothing within the bound.
    Silent,
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Opens a second socket while this one keeps running and switches to it (see
    /// [`Link::rotate`](crate::Link::rotate)). On a switch `self` becomes the new session.
    pub(super) async fn rotate(
        &mut self,
        dial: Dialer<'_, S>,
        mailbox: &mut Receiver,
        hooks: &mut ReadHooks,
    ) -> Rotation {
        log::info!("[{}] rotating: opening a second socket", self.name);
        let mut connecting = dial();
        // The old socket runs (reads, sends, heartbeat) while the new one dials.
        let (dialled, skipped) = loop {
            let r = poll_fn(|cx| {
                if let Poll::Ready(r) = connecting.as_mut().poll(cx) {
                    return Poll::Ready(Ok(r));
                }
                self.poll_step(cx, mailbox, hooks).map(Err)
            })
            .await;
            match r {
                Ok(r) => break r,
                Err(Step::Control(Control::Rotate)) => self.already_rotating(),
                Err(step) => return Rotation::Interrupted(step),
            }
        };
        for e in skipped {
            hooks.dispatch(&self.name, Event::Error(e));
        }
        let (ws, endpoint) = match dialled {
            Ok(d) => d,
            Err(e) => {
                log::warn!(
                    "[{}] rotation failed, keeping the old socket: {e}",
                    self.name
                );
                hooks.dispatch(&self.name, Event::Error(e));
                return Rotation::Failed;
            }
        };
        // The new socket counts apart until the switch: its first data message is the signal.
        let counted = Arc::new(Shared::new());
        let mut next = Session::new(&self.name, ws, self.config.clone(), counted.clone());
        next.queue_init_messages();
        mailbox.open_next_socket(&mut next.priority);
        // Sends go to the old socket until the switch: the new one polls an empty queue whose
        // sender is kept, so it never reads as "every sender gone".
        let (_keep, mut no_sends) = queue::queue(0, None);
        let mut bound = Box::pin(sleep(self.config.connect_timeout()));
        let overlap = poll_fn(|cx| {
            loop {
                match self.poll_step(cx, mailbox, hooks) {
                    Poll::Ready(Step::Control(Control::Rotate)) => self.already_rotating(),
                    Poll::Ready(step) => return Poll::Ready(Overlap::Old(step)),
                    Poll::Pending => break,
                }
            }
            if let Poll::Ready(step) = next.poll_step(cx, &mut no_sends, hooks) {
                return Poll::Ready(Overlap::New(step));
            }
            if counted.messages_in() > 0 {
                return Poll::Ready(Overlap::Switch);
            }
            if bound.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Overlap::Silent);
            }
            Poll::Pending
        })
        .await;
        let failure = match overlap {
            Overlap::Switch => {
                mailbox.switch_socket();
                return self.switch(next, endpoint, None, hooks).await;
            }
            Overlap::Old(step @ Step::Control(_)) => {
                // A close or restart wins; the new socket is not needed any more.
                mailbox.abandon_next_socket();
                Box::pin(next.close(1000, "rotation abandoned", None, hooks)).await;
                return Rotation::Interrupted(step);
            }
            // The old socket ended first: the open new one takes over at once.
            Overlap::Old(step) => {
                mailbox.switch_socket();
                return self.switch(next, endpoint, Some(step), hooks).await;
            }
            Overlap::New(Step::ReadFailed(e, _) | Step::Failed(e)) => e,
            Overlap::New(_) => ConnectionError::ConnectionDropped(
                "the new socket of a rotation closed before its first message".into(),
            ),
            Overlap::Silent => {
                Box::pin(next.close(1000, "rotation abandoned", None, hooks)).await;
                ConnectionError::Timeout(format!(
                    "the new socket of a rotation delivered no message within {:?}",
                    self.config.connect_timeout()
                ))
            }
        };
        mailbox.abandon_next_socket();
        log::warn!(
            "[{}] rotation failed, keeping the old socket: {failure}",
            self.name
        );
        hooks.dispatch(&self.name, Event::Error(failure));
        Rotation::Failed
    }

    fn already_rotating(&self) {
        self.shared.control_pending.store(false, Relaxed);
        log::debug!(
            "[{}] rotation already in progress: request ignored",
            self.name
        );
    }

    /// Makes `next` the connection's socket, marks the switch, then ends the old one: with a
    /// close handshake (1000), or as `ended` says when it stopped on its own.
    async fn switch(
        &mut self,
        mut next: Session<S>,
        endpoint: usize,
        ended: Option<Step>,
        hooks: &mut ReadHooks,
    ) -> Rotation {
        let shared = self.shared.clone();
        shared.absorb(&next.shared);
        next.shared = shared.clone();
        shared.set_endpoint(endpoint);
        shared.count_rotation();
        let mut old = std::mem::replace(self, next);
        // The old socket's close must not mark the connection closing (sends would be refused);
        // it counts apart and is added after.
        let counted = Arc::new(Shared::new());
        old.shared = counted.clone();
        log::info!("[{}] rotated to the new socket", self.name);
        hooks.dispatch(&self.name, Event::Rotated);
        // What the old socket took from the queue and has not flushed yet goes out before its
        // close frame; what is still queued is the new socket's now.
        match ended {
            None => Box::pin(old.close(1000, "rotated", None, hooks)).await,
            Some(Step::ReadEnded) if old.peer_closed => {
                log::info!("[{}] the old socket was closed by the peer", self.name);
            }
            Some(Step::ReadEnded) => {
                let e = ConnectionError::ConnectionDropped("the old socket closed".into());
                Box::pin(old.fail(e, None, hooks)).await;
            }
            Some(Step::Failed(e)) => {
                Box::pin(old.fail(e, None, hooks)).await;
            }
            Some(Step::ReadFailed(e, code)) => {
                Box::pin(old.fail(e, code, hooks)).await;
            }
            Some(Step::Control(_)) => {}
        }
        shared.absorb(&counted);
        Rotation::Switched
    }
}
