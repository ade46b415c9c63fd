//! [`Hub`]: the registry of connected devices and the routing of live events to their queues.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::marker::PhantomData;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam::utils::CachePadded;
use missive_log::{DeviceId, Timestamp, UserId};

use crate::device_queue::{DeviceQueue, Push, QueueTotals};
use crate::presence::{Presence, PresenceNotifier};
use crate::subscription::{CloseReason, Subscription};
use crate::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, Ordering, RwLock};

/// Default [`HubConfig::queue_capacity`]: events a device may fall behind before it lags.
pub const QUEUE_CAPACITY_DEFAULT: usize = 1024;
/// Largest accepted [`HubConfig::queue_capacity`].
pub const QUEUE_CAPACITY_MAX: usize = 1 << 20;
/// Default [`HubConfig::shard_count`].
pub const SHARD_COUNT_DEFAULT: usize = 32;
/// Largest accepted [`HubConfig::shard_count`].
pub const SHARD_COUNT_MAX: usize = 1024;

const _: () = assert!(QUEUE_CAPACITY_DEFAULT >= 1 && QUEUE_CAPACITY_DEFAULT <= QUEUE_CAPACITY_MAX);
const _: () =
    assert!(SHARD_COUNT_DEFAULT.is_power_of_two() && SHARD_COUNT_DEFAULT <= SHARD_COUNT_MAX);
const _: () = assert!(SHARD_COUNT_MAX.is_power_of_two());

/// Sizes of a [`Hub`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// Events each subscription may hold before it lags, `1..=QUEUE_CAPACITY_MAX`. Default 1024.
    pub queue_capacity: usize,
    /// Shards of the device registry, a power of two in `1..=SHARD_COUNT_MAX`. More shards mean
    /// less contention between subscribe/unsubscribe (write locks) and publishers. Default 32.
    pub shard_count: usize,
}

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            queue_capacity: QUEUE_CAPACITY_DEFAULT,
            shard_count: SHARD_COUNT_DEFAULT,
        }
    }
}

/// Counters and gauges of a [`Hub`], for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Live subscriptions (registered devices).
    pub subscriptions: usize,
    /// Users with at least one subscription.
    pub users_online: usize,
    /// Calls of `publish` and `publish_to_user` since the hub started.
    pub events_published: u64,
    /// Events put into a queue (one per receiving device).
    pub events_queued: u64,
    /// Events not queued because the device was lagging.
    pub events_missed: u64,
    /// Subscriptions lagging now (a `Lagged` is pending for them).
    pub subscriptions_lagged: usize,
    /// Lag episodes since the hub started (each ends with one `Delivery::Lagged`).
    pub lags_total: u64,
    /// The deepest queue now.
    pub queue_depth_max: usize,
    /// The deepest any queue has been since the hub started.
    pub queue_depth_high_water: usize,
}

/// One registered device.
struct DeviceEntry<E> {
    device: DeviceId,
    /// The subscription's id, so that dropping a replaced subscription leaves its successor alone.
    id: u64,
    queue: Arc<DeviceQueue<E>>,
}

/// One user's devices, and when the last of them left.
struct UserEntry<E> {
    /// Usually one to four devices: a linear scan beats any map.
    devices: Vec<DeviceEntry<E>>,
    last_seen: Option<Timestamp>,
}

impl<E> UserEntry<E> {
    fn presence(&self) -> Presence {
        if self.devices.is_empty() {
            Presence::Offline {
                last_seen: self.last_seen,
            }
        } else {
            Presence::Online
        }
    }
}

/// One shard of the registry.
///
/// Statistics cost the hot path one relaxed increment (`published`, on the cache line of this
/// shard's lock, which the publish has just written anyway): the per-device counts (queued, missed, lags) are kept by each queue under the mutex the
/// push takes anyway, and folded into `departed` under the write lock when the device leaves, so
/// a reader holding the read lock sees every count exactly once.
struct Shard<E> {
    state: RwLock<ShardState<E>>,
    /// Publish calls counted in this shard.
    published: AtomicU64,
}

struct ShardState<E> {
    users: HashMap<UserId, UserEntry<E>, UserIdHasher>,
    /// Totals of the queues that left this shard.
    departed: QueueTotals,
}

/// A keyed mix of the user id: far cheaper than SipHash for one `u64`, and keyed per hub so the
/// layout is not predictable (user ids come from the embedding application, not from peers).
#[derive(Clone, Copy)]
struct UserIdHasher {
    key: u64,
}

impl BuildHasher for UserIdHasher {
    type Hasher = UserIdHash;
    fn build_hasher(&self) -> UserIdHash {
        UserIdHash {
            key: self.key,
            hash: 0,
        }
    }
}

struct UserIdHash {
    key: u64,
    hash: u64,
}

impl Hasher for UserIdHash {
    fn finish(&self) -> u64 {
        self.hash
    }
    fn write(&mut self, bytes: &[u8]) {
        // `UserId` hashes through `write_u64`; anything else still works, just slower.
        for &byte in bytes {
            self.hash = splitmix64(self.hash ^ self.key ^ u64::from(byte));
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.hash = splitmix64(value ^ self.key);
    }
}

/// The finaliser of SplitMix64.
const fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The state behind every [`Hub`] handle and [`Subscription`].
pub(crate) struct Shared<E> {
    shards: Box<[CachePadded<Shard<E>>]>,
    /// `shard_count - 1`.
    shard_mask: usize,
    /// Keys the shard choice; independent of the map's hash key, so users of one shard do not
    /// share the bits the map uses to place them.
    shard_key: u64,
    queue_capacity: usize,
    clock: std::sync::Arc<dyn Fn() -> Timestamp + Send + Sync>,
    presence: PresenceNotifier,
    closed: AtomicBool,
    next_id: AtomicU64,
    subscriptions: AtomicUsize,
    users_online: AtomicUsize,
}

/// The live delivery hub: routes events the engine publishes to the bounded queues of the
/// connected devices. A cheap handle: clones share one hub.
///
/// See the [crate documentation](crate) for the delivery guarantee.
///
/// The registry keeps a small entry (its `last_seen`) for every user who has been online since
/// the hub started, so its memory grows with the number of distinct users seen, not with traffic.
pub struct Hub<E: Clone + Send + 'static> {
    shared: Arc<Shared<E>>,
}

impl<E: Clone + Send + 'static> Clone for Hub<E> {
    fn clone(&self) -> Hub<E> {
        Hub {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Builds a [`Hub`] with a custom clock or a presence listener.
pub struct HubBuilder<E> {
    config: HubConfig,
    clock: Option<std::sync::Arc<dyn Fn() -> Timestamp + Send + Sync>>,
    listener: Option<std::sync::Arc<dyn Fn(UserId, Presence) + Send + Sync>>,
    event: PhantomData<fn() -> E>,
}

impl<E: Clone + Send + 'static> HubBuilder<E> {
    /// The clock that stamps `last_seen` (default: system time in milliseconds).
    pub fn clock(mut self, clock: std::sync::Arc<dyn Fn() -> Timestamp + Send + Sync>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Called on every online/offline transition of a user, in the order the transitions
    /// happened, one call at a time, with no hub lock held: it may publish the change to the
    /// user's contacts through the hub. Replacing a device's subscription is not a transition.
    ///
    /// The call may run on another thread than the one that caused the transition (whichever
    /// thread is delivering transitions at the time), and may still be pending when `subscribe`
    /// or the drop of a subscription returns.
    pub fn presence_listener(
        mut self,
        listener: std::sync::Arc<dyn Fn(UserId, Presence) + Send + Sync>,
    ) -> Self {
        self.listener = Some(listener);
        self
    }

    /// The hub.
    ///
    /// # Panics
    /// If the config is out of range (see [`HubConfig`]).
    pub fn build(self) -> Hub<E> {
        let HubConfig {
            queue_capacity,
            shard_count,
        } = self.config;
        assert!(
            (1..=QUEUE_CAPACITY_MAX).contains(&queue_capacity),
            "queue_capacity {queue_capacity} not in 1..={QUEUE_CAPACITY_MAX}"
        );
        assert!(
            shard_count.is_power_of_two() && shard_count <= SHARD_COUNT_MAX,
            "shard_count {shard_count} is not a power of two in 1..={SHARD_COUNT_MAX}"
        );
        let random = RandomState::new();
        let map_key = random.hash_one(0_u64);
        let shard_key = random.hash_one(1_u64);
        let shards = (0..shard_count)
            .map(|_| {
                CachePadded::new(Shard {
                    state: RwLock::new(ShardState {
                        users: HashMap::with_hasher(UserIdHasher { key: map_key }),
                        departed: QueueTotals::default(),
                    }),
                    published: AtomicU64::new(0),
                })
            })
            .collect();
        let clock = self
            .clock
            .unwrap_or_else(|| std::sync::Arc::new(system_clock));
        Hub {
            shared: Arc::new(Shared {
                shards,
                shard_mask: shard_count - 1,
                shard_key,
                queue_capacity,
                clock,
                presence: PresenceNotifier::new(self.listener),
                closed: AtomicBool::new(false),
                next_id: AtomicU64::new(1),
                subscriptions: AtomicUsize::new(0),
                users_online: AtomicUsize::new(0),
            }),
        }
    }
}

impl<E> fmt::Debug for HubBuilder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBuilder")
            .field("config", &self.config)
            .field("clock", &self.clock.is_some())
            .field("presence_listener", &self.listener.is_some())
            .finish()
    }
}

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
fn system_clock() -> Timestamp {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
}

impl<E: Clone + Send + 'static> Hub<E> {
    /// A hub with the system clock and no presence listener.
    ///
    /// # Panics
    /// If the config is out of range (see [`HubConfig`]).
    pub fn new(config: HubConfig) -> Hub<E> {
        Hub::builder(config).build()
    }

    /// A hub whose `last_seen` times come from `clock`.
    ///
    /// # Panics
    /// If the config is out of range (see [`HubConfig`]).
    pub fn with_clock(
        config: HubConfig,
        clock: std::sync::Arc<dyn Fn() -> Timestamp + Send + Sync>,
    ) -> Hub<E> {
        Hub::builder(config).clock(clock).build()
    }

    /// A builder, to set a clock and a presence listener.
    pub fn builder(config: HubConfig) -> HubBuilder<E> {
        HubBuilder {
            config,
            clock: None,
            listener: None,
            event: PhantomData,
        }
    }

    /// Registers `device` of `user` and returns its stream of live events.
    ///
    /// Every event published after this returns reaches the subscription (see the crate
    /// documentation for the exact guarantee). A second subscribe of the same `(user, device)`
    /// replaces the first, which then ends with [`Delivery::Closed`]`(`[`CloseReason::Replaced`]`)`
    /// after what it had queued. The user's first subscription makes them online. After
    /// [`Hub::close`] the subscription is already closed with [`CloseReason::Shutdown`].
    ///
    /// [`Delivery::Closed`]: crate::Delivery::Closed
    pub fn subscribe(&self, user: UserId, device: DeviceId) -> Subscription<E> {
        let shared = &self.shared;
        let queue = Arc::new(DeviceQueue::new(shared.queue_capacity));
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let subscription = Subscription::new(
            user,
            device,
            id,
            Arc::clone(&queue),
            Arc::clone(&self.shared),
        );
        let replaced = {
            let mut state = shared.shard(user).state.write();
            let ShardState { users, departed } = &mut *state;
            // Checked under the shard lock: `close` sets the flag before it sweeps the shards, so
            // a registration either sees the flag or is swept.
            if shared.closed.load(Ordering::Acquire) {
                queue.close(CloseReason::Shutdown);
                return subscription;
            }
            let entry = users.entry(user).or_insert_with(|| UserEntry {
                devices: Vec::new(),
                last_seen: None,
            });
            let entry_new = DeviceEntry { device, id, queue };
            match entry.devices.iter_mut().find(|d| d.device == device) {
                Some(existing) => {
                    let replaced = std::mem::replace(existing, entry_new);
                    departed.absorb(replaced.queue.gauge().totals);
                    Some(replaced)
                }
                None => {
                    entry.devices.push(entry_new);
                    shared.subscriptions.fetch_add(1, Ordering::Relaxed);
                    if entry.devices.len() == 1 {
                        shared.users_online.fetch_add(1, Ordering::Relaxed);
                        shared.presence.record(user, Presence::Online);
                    }
                    None
                }
            }
        };
        if let Some(replaced) = replaced {
            replaced.queue.close(CloseReason::Replaced);
        }
        shared.presence.flush();
        subscription
    }

    /// Queues `event` for every subscribed device of `user` except `except` (the sender's own
    /// device), and returns how many queues took it. Never blocks on a subscriber: a full queue
    /// counts the event as missed and the device later receives a `Lagged`.
    ///
    /// Takes one shard read lock and one mutex per device; allocates nothing but what cloning
    /// `E` allocates (make `E` an `Arc` or a small value).
    pub fn publish_to_user(&self, user: UserId, except: Option<DeviceId>, event: &E) -> usize {
        let shard = self.shared.shard(user);
        let queued = match shard.state.read().users.get(&user) {
            Some(entry) => push_to(entry, except, event),
            None => 0,
        };
        shard.published.fetch_add(1, Ordering::Relaxed);
        queued
    }

    /// Queues `event` for every subscribed device of every user in `users` (each user once, even
    /// if listed twice), except the one `(user, device)` in `except`; returns how many queues
    /// took it. Like [`Hub::publish_to_user`], never blocks on a subscriber.
    ///
    /// Sorts the users by registry shard (one `Vec` allocation) and takes one read lock per shard
    /// that holds any of them, not one per user.
    ///
    /// Each device receives the events in the order of the `publish` calls that reach it; this
    /// call is not atomic across devices (a device may receive it before another device of
    /// another user does).
    pub fn publish(
        &self,
        users: impl IntoIterator<Item = UserId>,
        except: Option<(UserId, DeviceId)>,
        event: &E,
    ) -> usize {
        let shared = &self.shared;
        let mut targets: Vec<(usize, UserId)> = users
            .into_iter()
            .map(|user| (shared.shard_index(user), user))
            .collect();
        targets.sort_unstable();
        targets.dedup();
        let mut queued = 0;
        for group in targets.chunk_by(|a, b| a.0 == b.0) {
            let state = shared.shards[group[0].0].state.read();
            for &(_, user) in group {
                if let Some(entry) = state.users.get(&user) {
                    let except = except.filter(|&(u, _)| u == user).map(|(_, d)| d);
                    queued += push_to(entry, except, event);
                }
            }
        }
        // Counted once, in the first member's shard (any shard would do: stats sum them all).
        let counted_in = targets.first().map_or(0, |&(shard, _)| shard);
        shared.shards[counted_in]
            .published
            .fetch_add(1, Ordering::Relaxed);
        queued
    }

    /// Whether `user` has a subscription.
    pub fn is_online(&self, user: UserId) -> bool {
        self.presence(user).is_online()
    }

    /// Whether `user` is online, and if not, when they were last seen.
    pub fn presence(&self, user: UserId) -> Presence {
        let state = self.shared.shard(user).state.read();
        match state.users.get(&user) {
            Some(entry) => entry.presence(),
            None => Presence::Offline { last_seen: None },
        }
    }

    /// Removes `device` of `user` (an unlinked device, a banned session): its subscription ends
    /// with [`CloseReason::Disconnected`] after what it had queued. Returns whether it was
    /// subscribed.
    pub fn disconnect(&self, user: UserId, device: DeviceId) -> bool {
        let shared = &self.shared;
        let now = (shared.clock)();
        let removed = {
            let mut state = shared.shard(user).state.write();
            let ShardState { users, departed } = &mut *state;
            let Some(entry) = users.get_mut(&user) else {
                return false;
            };
            let Some(position) = entry.devices.iter().position(|d| d.device == device) else {
                return false;
            };
            let removed = entry.devices.swap_remove(position);
            departed.absorb(removed.queue.gauge().totals);
            shared.devices_left(user, entry, 1, now);
            removed
        };
        removed.queue.close(CloseReason::Disconnected);
        shared.presence.flush();
        true
    }

    /// Shuts the hub down: every subscription ends with [`CloseReason::Shutdown`] after what it
    /// had queued, every user goes offline, and later subscriptions are closed from the start.
    /// Publishing afterwards reaches no one.
    pub fn close(&self) {
        let shared = &self.shared;
        shared.closed.store(true, Ordering::Release);
        let now = (shared.clock)();
        for shard in shared.shards.iter() {
            let mut retired = Vec::new();
            {
                let mut state = shard.state.write();
                let ShardState { users, departed } = &mut *state;
                for (&user, entry) in users.iter_mut() {
                    let count = entry.devices.len();
                    if count == 0 {
                        continue;
                    }
                    for removed in entry.devices.drain(..) {
                        departed.absorb(removed.queue.gauge().totals);
                        retired.push(removed.queue);
                    }
                    shared.devices_left(user, entry, count, now);
                }
            }
            for queue in retired {
                queue.close(CloseReason::Shutdown);
            }
        }
        shared.presence.flush();
    }

    /// Counters and gauges. Visits every queue, so call it at metrics-scrape rate, not per event.
    ///
    /// Each shard is read under its lock, so every device's counts are included exactly once
    /// (the counters never go backwards); shards are read one after another, so a snapshot taken
    /// during heavy traffic is not one instant across shards.
    pub fn stats(&self) -> HubStats {
        let shared = &self.shared;
        let mut stats = HubStats {
            subscriptions: shared.subscriptions.load(Ordering::Relaxed),
            users_online: shared.users_online.load(Ordering::Relaxed),
            ..HubStats::default()
        };
        let mut totals = QueueTotals::default();
        for shard in shared.shards.iter() {
            let state = shard.state.read();
            stats.events_published += shard.published.load(Ordering::Relaxed);
            totals.absorb(state.departed);
            for device in state.users.values().flat_map(|entry| &entry.devices) {
                let gauge = device.queue.gauge();
                totals.absorb(gauge.totals);
                stats.subscriptions_lagged += usize::from(gauge.lagging);
                stats.queue_depth_max = stats.queue_depth_max.max(gauge.depth);
            }
        }
        stats.events_queued = totals.queued;
        stats.events_missed = totals.missed;
        stats.lags_total = totals.lags;
        stats.queue_depth_high_water = totals.depth_high_water;
        stats
    }
}

impl<E: Clone + Send + 'static> fmt::Debug for Hub<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("shard_count", &self.shared.shards.len())
            .field("queue_capacity", &self.shared.queue_capacity)
            .field("presence", &self.shared.presence)
            .finish_non_exhaustive()
    }
}

impl<E: Clone + Send + 'static> Shared<E> {
    fn shard_index(&self, user: UserId) -> usize {
        (splitmix64(user.0 ^ self.shard_key) as usize) & self.shard_mask
    }

    fn shard(&self, user: UserId) -> &Shard<E> {
        &self.shards[self.shard_index(user)]
    }

    /// Bookkeeping after `count` devices were removed from `entry`; `user` goes offline if they
    /// were the last. Called with the shard write-locked.
    fn devices_left(&self, user: UserId, entry: &mut UserEntry<E>, count: usize, now: Timestamp) {
        self.subscriptions.fetch_sub(count, Ordering::Relaxed);
        if entry.devices.is_empty() {
            entry.last_seen = Some(now);
            self.users_online.fetch_sub(1, Ordering::Relaxed);
            self.presence.record(
                user,
                Presence::Offline {
                    last_seen: Some(now),
                },
            );
        }
    }

    /// Removes the registration `id` of `(user, device)` if it is still the current one: called
    /// when its subscription is dropped.
    pub(crate) fn unregister(&self, user: UserId, device: DeviceId, id: u64) {
        // Read before locking: the clock is the embedder's code, kept out of the critical section.
        let now = (self.clock)();
        {
            let mut state = self.shard(user).state.write();
            let ShardState { users, departed } = &mut *state;
            let Some(entry) = users.get_mut(&user) else {
                return;
            };
            let Some(position) = entry
                .devices
                .iter()
                .position(|d| d.device == device && d.id == id)
            else {
                return; // replaced, disconnected or shut down: already accounted for
            };
            let removed = entry.devices.swap_remove(position);
            departed.absorb(removed.queue.gauge().totals);
            self.devices_left(user, entry, 1, now);
        }
        self.presence.flush();
    }
}

/// Pushes `event` to the devices of `entry` except `except`; returns how many queued it.
///
/// Runs under the shard's read lock, and a push wakes the subscriber's `Waker` (after releasing
/// the queue's mutex): a waker must not call back into the hub's registry (subscribe, drop a
/// subscription) synchronously, which no executor does.
fn push_to<E: Clone>(entry: &UserEntry<E>, except: Option<DeviceId>, event: &E) -> usize {
    let mut queued = 0;
    for device in &entry.devices {
        if Some(device.device) == except {
            continue;
        }
        match device.queue.push(event) {
            Push::Queued => queued += 1,
            Push::Missed => {}
            // Closed queues leave the registry under the write lock, so a publisher holding the
            // read lock cannot meet one.
            Push::Closed => debug_assert!(false, "a registered queue is never closed"),
        }
    }
    queued
}
