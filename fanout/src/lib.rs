//! `missive-fanout`: the live delivery hub of Missive.
//!
//! The engine owns the log and the indexes: it decides who receives what, builds the events
//! (messages, receipts, group changes, typing, presence) and publishes them here. The [`Hub`]
//! only routes each event to the bounded queues of the recipients' connected devices. Nothing here
//! is durable: the log already holds every message, so a device that falls behind is told so and
//! catches up from its inbox instead of making the sender wait.
//!
//! - [`Hub::subscribe`] registers one device of one user and returns its [`Subscription`]; a
//!   second subscribe of the same device replaces the first; dropping the subscription
//!   unregisters the device. Read it with [`Subscription::try_next`],
//!   [`Subscription::next_timeout`] (blocking) or [`Subscription::next`] (async, on any
//!   executor).
//! - [`Hub::publish_to_user`] and [`Hub::publish`] (many users: one lock per registry shard)
//!   clone the event into each queue and never block on a subscriber.
//! - [`Hub::presence`]: a user is online while one of their devices is subscribed; when the last
//!   leaves they are offline with `last_seen` from the hub's clock. Transitions go to an optional
//!   listener, outside the hub's locks, so the engine can publish them to the user's contacts.
//! - [`Hub::stats`]: counters for metrics.
//!
//! # The lag guarantee
//!
//! Each subscription has a queue of [`HubConfig::queue_capacity`] events. A publish that finds it
//! full does not queue the event: it counts it as *missed* and the subscription is *lagging*.
//! While lagging, every later publish to it is missed too, even if the subscriber has made room.
//! The subscriber first receives the events already queued (all published before the first missed
//! one), then exactly one [`Delivery::Lagged`]` { missed }` with the number of events missed, and
//! from then on new events flow again. So, for every event published to a device between its
//! `subscribe` and the end of its subscription (drop, replacement, disconnect or shutdown):
//!
//! > either the event is delivered, or a `Lagged` is delivered after every delivered event
//! > published before it and before every delivered event published after it;
//!
//! events are delivered in publish order; the `missed` counts add up to exactly the events not
//! delivered; and two `Lagged` are always separated by at least one delivered event.
//!
//! "Publish order" is the order in which publishes reach the device's queue (they take its
//! mutex). It respects happens-before: the events one thread publishes arrive in the order it
//! published them, and concurrent publishers' events interleave into one order for which the
//! guarantee holds.
//!
//! A `Lagged` tells the engine to read the device's inbox from its delivered watermark; live
//! events that follow may repeat what the inbox returns, and the engine skips them by
//! `(chat, seq)`. A closed subscription still yields what it had queued and a pending `Lagged`
//! before [`Delivery::Closed`].
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use missive_fanout::{Delivery, Hub, HubConfig};
//! use missive_log::{DeviceId, UserId};
//!
//! # if missive_fanout::__BUILT_FOR_LOOM { return; } // that build runs only inside loom models
//! let hub: Hub<&'static str> = Hub::new(HubConfig { queue_capacity: 2, ..HubConfig::default() });
//! let (alice, bob) = (UserId(1), UserId(2));
//! let mut phone = hub.subscribe(bob, DeviceId(0));
//! assert!(hub.is_online(bob) && !hub.is_online(alice));
//!
//! assert_eq!(hub.publish_to_user(bob, None, &"hi"), 1);
//! assert_eq!(phone.next_timeout(Duration::from_secs(1)), Some(Delivery::Event("hi")));
//!
//! // Bob's phone falls behind: the queue holds two events, the next two are missed.
//! for text in ["a", "b", "c", "d"] {
//!     hub.publish_to_user(bob, None, &text);
//! }
//! assert_eq!(phone.try_next(), Some(Delivery::Event("a")));
//! assert_eq!(phone.try_next(), Some(Delivery::Event("b")));
//! assert_eq!(phone.try_next(), Some(Delivery::Lagged { missed: 2 })); // catch up from the inbox
//! assert_eq!(phone.try_next(), None);
//! hub.publish(vec![alice, bob], None, &"e"); // a group message: live again
//! assert_eq!(phone.try_next(), Some(Delivery::Event("e")));
//!
//! drop(phone);
//! assert!(!hub.is_online(bob));
//! ```
//!
//! With the `loom` cfg (`RUSTFLAGS="--cfg loom"`) the hub is built on loom's primitives for the
//! model tests in `tests/loom_hub.rs`, and cannot be used outside a `loom::model`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod device_queue;
mod hub;
mod presence;
mod subscription;
mod sync;

pub use hub::{
    Hub, HubBuilder, HubConfig, HubStats, QUEUE_CAPACITY_DEFAULT, QUEUE_CAPACITY_MAX,
    SHARD_COUNT_DEFAULT, SHARD_COUNT_MAX,
};
pub use presence::Presence;
pub use subscription::{CloseReason, Delivery, Subscription};

/// Whether the crate was built with `--cfg loom`, where a [`Hub`] works only inside
/// `loom::model`; lets the doctests skip themselves in that build.
#[doc(hidden)]
pub const __BUILT_FOR_LOOM: bool = cfg!(loom);
