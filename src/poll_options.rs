//! What a polled connection puts in the event queue beyond its frames, open and error events.
//!
//! Everything here is opt-in, per connection, so that a poller written for the events of
//! [`WsManager::add_polled`](crate::WsManager::add_polled) sees exactly those.

/// Options of a connection added with
/// [`WsManager::add_polled_with`](crate::WsManager::add_polled_with). The default (all off) is
/// what [`add_polled`](crate::WsManager::add_polled) does.
///
/// ```
/// use kharbranth::PollOptions;
/// let opts = PollOptions::new().state_events(true);
/// assert!(opts.has_state_events());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollOptions {
    state_events: bool,
}

impl PollOptions {
    /// All options off: the events of `add_polled`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue every lifecycle state change as [`Event::State`](crate::Event::State) (C:
    /// `KH_EVENT_STATE`), the same changes `ReadHooks::on_state` gets, in the same place
    /// among the connection's events (`State(Open)` just before `Open`). Like open and error
    /// events they are never held back while the queue is full. Off by default.
    pub fn state_events(mut self, on: bool) -> Self {
        self.state_events = on;
        self
    }

    /// Whether state changes are queued.
    pub fn has_state_events(&self) -> bool {
        self.state_events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_events_are_off_by_default_and_follow_the_last_setting() {
        assert!(!PollOptions::new().has_state_events());
        assert!(!PollOptions::default().has_state_events());
        let on = PollOptions::new().state_events(true);
        assert!(on.has_state_events());
        assert!(!on.state_events(false).has_state_events());
    }
}
