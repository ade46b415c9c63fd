//! [`DeviceQueue`]: the bounded queue of one subscription, and its lag signal.
//!
//! # Why a `Mutex<VecDeque>` and not a lock-free ring
//!
//! The lag guarantee couples three pieces of state: the queued events, the count of missed
//! events, and the "closed" mark. A publisher must decide "queue it" or "count it as missed"
//! *atomically* with respect to the subscriber's "the queue is empty, so hand out the `Lagged`
//! and clear the count". With crossbeam's `ArrayQueue` plus an atomic counter the two can
//! interleave: the subscriber drains the queue, a publisher that found it full a moment ago bumps
//! the counter, another publisher pushes a newer event into the now-empty ring, and the subscriber
//! then sees that newer event *before* the `Lagged` that covers an older one. Closing that window
//! needs a lock anyway, and we also need one for the blocking wait (`Condvar`) and the async
//! `Waker` slot. One uncontended mutex per push is about as cheap as the CAS loop of a lock-free
//! ring, the critical sections are a few instructions long (push or pop plus an `Arc` clone of the
//! event), and only one publisher and one subscriber usually meet on a given device.
//!
//! The buffer grows on demand up to the capacity and keeps its allocation, so a hub with many idle
//! devices does not reserve `capacity` slots for each of them, and a busy device stops allocating
//! after its first burst.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::subscription::{CloseReason, Delivery};
use crate::sync::{Condvar, Mutex};

/// Capacity reserved when a queue is created: enough for the usual trickle of live events.
const RESERVED_ON_CREATE: usize = 8;

/// What a [`DeviceQueue::push`] did with the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Push {
    /// The event is in the queue.
    Queued,
    /// The queue was full or already lagging: the event was counted as missed.
    Missed,
    /// The queue is closed; nothing changed.
    Closed,
}

struct State<E> {
    queue: VecDeque<E>,
    /// Events not queued since the subscriber last received a `Lagged`. Non-zero means lagging:
    /// while lagging every publish is missed, even when the queue has room again, so no event can
    /// overtake the `Lagged` that covers an older one.
    missed: u64,
    closed: Option<CloseReason>,
    /// The task of a pending `Subscription::next` future.
    waker: Option<Waker>,
    /// Whether the subscriber's thread is (about to be) blocked on `ready`.
    waiting: bool,
    /// Counted here, under the lock the push holds anyway, rather than in shared atomics.
    totals: QueueTotals,
}

/// The bounded queue and lag state of one subscription. Shared by the registry (publishers) and
/// the [`Subscription`](crate::Subscription) (its one consumer).
pub(crate) struct DeviceQueue<E> {
    state: Mutex<State<E>>,
    ready: Condvar,
    capacity: usize,
}

/// What a queue has done since it was created, for [`HubStats`](crate::HubStats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct QueueTotals {
    /// Events queued.
    pub(crate) queued: u64,
    /// Events missed while lagging.
    pub(crate) missed: u64,
    /// Lag episodes.
    pub(crate) lags: u64,
    /// The deepest the queue has been.
    pub(crate) depth_high_water: usize,
}

impl QueueTotals {
    /// Adds `other`'s counts to these (high-water marks combine by maximum).
    pub(crate) fn absorb(&mut self, other: QueueTotals) {
        self.queued += other.queued;
        self.missed += other.missed;
        self.lags += other.lags;
        self.depth_high_water = self.depth_high_water.max(other.depth_high_water);
    }
}

/// A point-in-time view of one queue, for [`HubStats`](crate::HubStats).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct QueueGauge {
    pub(crate) depth: usize,
    pub(crate) lagging: bool,
    pub(crate) totals: QueueTotals,
}

impl<E: Clone> DeviceQueue<E> {
    /// An empty queue holding at most `capacity` events.
    ///
    /// # Panics
    /// If `capacity == 0` (the hub checks its config first).
    pub(crate) fn new(capacity: usize) -> DeviceQueue<E> {
        assert!(capacity > 0, "a device queue needs room for one event");
        DeviceQueue {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(capacity.min(RESERVED_ON_CREATE)),
                missed: 0,
                closed: None,
                waker: None,
                waiting: false,
                totals: QueueTotals::default(),
            }),
            ready: Condvar::new(),
            capacity,
        }
    }

    /// Queues a clone of `event`, or counts it as missed. Never blocks beyond the queue's mutex.
    pub(crate) fn push(&self, event: &E) -> Push {
        let (waker, notify) = {
            let mut state = self.state.lock();
            if state.closed.is_some() {
                return Push::Closed;
            }
            if state.missed > 0 || state.queue.len() >= self.capacity {
                state.missed += 1;
                state.totals.missed += 1;
                state.totals.lags += u64::from(state.missed == 1);
                return Push::Missed;
            }
            state.queue.push_back(event.clone());
            debug_assert!(state.queue.len() <= self.capacity);
            state.totals.queued += 1;
            state.totals.depth_high_water = state.totals.depth_high_water.max(state.queue.len());
            (state.waker.take(), state.waiting)
        };
        // Wake outside the lock, so the woken side does not immediately block on it.
        if notify {
            self.ready.notify_one();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
        Push::Queued
    }

    /// Marks the queue closed (the first reason wins). The subscriber still receives what is
    /// queued, then a pending `Lagged`, then `Closed(reason)`.
    pub(crate) fn close(&self, reason: CloseReason) {
        let (waker, notify) = {
            let mut state = self.state.lock();
            state.closed.get_or_insert(reason);
            (state.waker.take(), state.waiting)
        };
        if notify {
            self.ready.notify_one();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The next delivery if one is ready.
    pub(crate) fn try_pop(&self) -> Option<Delivery<E>> {
        Self::take(&mut self.state.lock())
    }

    /// The next delivery, waiting until `deadline` (`None`: forever) for one.
    pub(crate) fn pop_until(&self, deadline: Option<Instant>) -> Option<Delivery<E>> {
        let mut state = self.state.lock();
        loop {
            if let Some(delivery) = Self::take(&mut state) {
                return Some(delivery);
            }
            state.waiting = true;
            state = match deadline {
                None => self.ready.wait(state),
                Some(deadline) => {
                    if Instant::now() >= deadline {
                        state.waiting = false;
                        return None;
                    }
                    self.ready.wait_until(state, deadline)
                }
            };
            state.waiting = false;
        }
    }

    /// The next delivery, or `Pending` with the task's waker stored for the next push or close.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Delivery<E>> {
        let mut state = self.state.lock();
        if let Some(delivery) = Self::take(&mut state) {
            return Poll::Ready(delivery);
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Depth, lag flag and totals, for statistics.
    pub(crate) fn gauge(&self) -> QueueGauge {
        let state = self.state.lock();
        QueueGauge {
            depth: state.queue.len(),
            lagging: state.missed > 0,
            totals: state.totals,
        }
    }

    /// The order of deliveries: queued events (all older than any missed one), then the one
    /// `Lagged` covering the missed events, then `Closed`, which repeats forever.
    fn take(state: &mut State<E>) -> Option<Delivery<E>> {
        if let Some(event) = state.queue.pop_front() {
            return Some(Delivery::Event(event));
        }
        if state.missed > 0 {
            let missed = std::mem::take(&mut state.missed);
            return Some(Delivery::Lagged { missed });
        }
        state.closed.map(Delivery::Closed)
    }
}
