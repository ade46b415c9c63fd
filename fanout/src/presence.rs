//! [`Presence`] and the ordered, lock-free-for-the-caller delivery of presence changes to the
//! hub's listener.

use std::collections::VecDeque;
use std::fmt;

use missive_log::{Timestamp, UserId};

use crate::sync::Mutex;

/// Whether a user has a live subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Presence {
    /// At least one device of the user is subscribed.
    Online,
    /// No device is subscribed.
    Offline {
        /// When the user's last device left, by the hub's clock; `None` if the user has not been
        /// online since the hub started.
        last_seen: Option<Timestamp>,
    },
}

impl Presence {
    /// Whether this is [`Presence::Online`].
    pub fn is_online(self) -> bool {
        matches!(self, Presence::Online)
    }
}

/// The listener the hub calls on every online/offline transition.
type Listener = std::sync::Arc<dyn Fn(UserId, Presence) + Send + Sync>;

/// Hands presence transitions to the listener in the order they happened, one call at a time,
/// with no hub lock held.
///
/// Transitions are recorded while the registry shard's write lock is held (so their order is the
/// order of the registry changes), and delivered afterwards by [`PresenceNotifier::flush`]. The
/// first thread to flush becomes the drainer and calls the listener until the queue is empty;
/// threads that flush meanwhile leave their transitions to it. So the listener may call back into
/// the hub (publish, subscribe, even drop subscriptions) without deadlock: a transition it causes
/// is queued and delivered by the same loop after it returns.
pub(crate) struct PresenceNotifier {
    listener: Option<Listener>,
    pending: Mutex<Pending>,
}

struct Pending {
    transitions: VecDeque<(UserId, Presence)>,
    draining: bool,
}

impl PresenceNotifier {
    pub(crate) fn new(listener: Option<Listener>) -> PresenceNotifier {
        PresenceNotifier {
            listener,
            pending: Mutex::new(Pending {
                transitions: VecDeque::new(),
                draining: false,
            }),
        }
    }

    /// Records a transition. Called with the user's registry shard write-locked.
    pub(crate) fn record(&self, user: UserId, presence: Presence) {
        if self.listener.is_some() {
            self.pending.lock().transitions.push_back((user, presence));
        }
    }

    /// Delivers recorded transitions, unless another thread is already doing so. Call with no
    /// hub lock held.
    pub(crate) fn flush(&self) {
        let Some(listener) = &self.listener else {
            return;
        };
        let mut pending = self.pending.lock();
        if pending.draining {
            return;
        }
        pending.draining = true;
        // If the listener panics, let the next flush take over instead of stalling forever.
        let mut reset = DrainingReset {
            notifier: self,
            armed: true,
        };
        while let Some((user, presence)) = pending.transitions.pop_front() {
            drop(pending);
            listener(user, presence);
            pending = self.pending.lock();
        }
        // Cleared in the same critical section that saw the queue empty: a transition recorded
        // after this will be flushed by its own thread.
        pending.draining = false;
        reset.armed = false;
    }
}

struct DrainingReset<'a> {
    notifier: &'a PresenceNotifier,
    armed: bool,
}

impl Drop for DrainingReset<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.notifier.pending.lock().draining = false;
        }
    }
}

impl fmt::Debug for PresenceNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresenceNotifier")
            .field("listener", &self.listener.is_some())
            .finish_non_exhaustive()
    }
}
