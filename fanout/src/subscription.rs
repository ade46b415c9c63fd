//! [`Subscription`]: one connected device's stream of live events.

use std::fmt;
use std::future::poll_fn;
use std::time::{Duration, Instant};

use missive_log::{DeviceId, UserId};

use crate::device_queue::DeviceQueue;
use crate::hub::Shared;
use crate::sync::Arc;

/// What a [`Subscription`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery<E> {
    /// A live event, in publish order.
    Event(E),
    /// The queue was full and `missed` events (at least one) published to this device were not
    /// queued. Every event delivered before this one was published before all of them; every
    /// event delivered after it was published after all of them. Catch up from the durable inbox.
    Lagged {
        /// How many events were not queued.
        missed: u64,
    },
    /// The subscription ended; nothing more will come, and every later call returns this again.
    Closed(CloseReason),
}

/// Why a subscription ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The same `(user, device)` subscribed again; the newer subscription receives from now on.
    Replaced,
    /// [`Hub::disconnect`](crate::Hub::disconnect) removed this device.
    Disconnected,
    /// [`Hub::close`](crate::Hub::close) shut the hub down.
    Shutdown,
}

/// The live events of one device of one user, from [`Hub::subscribe`](crate::Hub::subscribe).
///
/// Dropping it unregisters the device (if it was not replaced or disconnected first); when it was
/// the user's last device, the user goes offline.
///
/// All three ways of reading share one order: the events queued so far, then at most one
/// [`Delivery::Lagged`] for a run of missed events, then later events, and finally
/// [`Delivery::Closed`] after the subscription was replaced, disconnected or shut down (what was
/// queued before that is still delivered first).
pub struct Subscription<E: Clone + Send + 'static> {
    user: UserId,
    device: DeviceId,
    /// Tells this registration apart from a later one of the same `(user, device)`.
    id: u64,
    queue: Arc<DeviceQueue<E>>,
    hub: Arc<Shared<E>>,
}

impl<E: Clone + Send + 'static> Subscription<E> {
    pub(crate) fn new(
        user: UserId,
        device: DeviceId,
        id: u64,
        queue: Arc<DeviceQueue<E>>,
        hub: Arc<Shared<E>>,
    ) -> Subscription<E> {
        Subscription {
            user,
            device,
            id,
            queue,
            hub,
        }
    }

    /// The subscribed user.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The subscribed device.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// The next delivery if one is ready, without waiting.
    pub fn try_next(&mut self) -> Option<Delivery<E>> {
        self.queue.try_pop()
    }

    /// The next delivery, blocking the thread for at most `timeout`; `None` if nothing came.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Delivery<E>> {
        // A timeout too large to represent waits forever.
        let deadline = Instant::now().checked_add(timeout);
        self.queue.pop_until(deadline)
    }

    /// The next delivery, blocking the thread until one comes. A closed subscription returns
    /// [`Delivery::Closed`] at once.
    pub fn next_blocking(&mut self) -> Delivery<E> {
        match self.queue.pop_until(None) {
            Some(delivery) => delivery,
            None => unreachable!("an untimed wait returns only with a delivery"),
        }
    }

    /// The next delivery, as a future that works on any executor (it only uses the task's
    /// `Waker`). Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Delivery<E> {
        poll_fn(|cx| self.queue.poll_pop(cx)).await
    }
}

impl<E: Clone + Send + 'static> Drop for Subscription<E> {
    fn drop(&mut self) {
        self.hub.unregister(self.user, self.device, self.id);
    }
}

impl<E: Clone + Send + 'static> fmt::Debug for Subscription<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("user", &self.user)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}
