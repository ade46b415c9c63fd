//! Random sequences of subscribe, publish (to one user or many), drain, drop, disconnect and
//! clock steps, run on one thread against a plain model of the hub. After every step the hub's
//! deliveries, publish counts, presence and stats must equal the model's; at the end, every
//! subscription's whole history must satisfy the lag guarantee, checked from the published
//! sequence alone (not from the model's queues): every event published to the device is delivered
//! in order or covered by exactly one `Lagged` placed where the missed run was.
#![cfg(not(loom))]

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use missive_fanout::{CloseReason, Delivery, Hub, HubConfig, Presence, Subscription};
use missive_log::{DeviceId, Timestamp, UserId};
use proptest::prelude::*;

const USERS: u64 = 4;
const DEVICES: u32 = 3;

#[derive(Clone, Debug)]
enum Op {
    Subscribe {
        user: u64,
        device: u32,
    },
    Drop {
        index: usize,
    },
    Disconnect {
        user: u64,
        device: u32,
    },
    PublishToUser {
        user: u64,
        except: Option<u32>,
    },
    Publish {
        users: Vec<u64>,
        except: Option<(u64, u32)>,
    },
    Drain {
        index: usize,
        max: usize,
    },
    Tick {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS;
    let device = 0..DEVICES;
    prop_oneof![
        3 => (user.clone(), device.clone()).prop_map(|(user, device)| Op::Subscribe { user, device }),
        1 => any::<usize>().prop_map(|index| Op::Drop { index }),
        1 => (user.clone(), device.clone()).prop_map(|(user, device)| Op::Disconnect { user, device }),
        6 => (user.clone(), proptest::option::of(device.clone()))
            .prop_map(|(user, except)| Op::PublishToUser { user, except }),
        3 => (
            proptest::collection::vec(user.clone(), 0..6),
            proptest::option::of((user, device)),
        )
            .prop_map(|(users, except)| Op::Publish { users, except }),
        4 => (any::<usize>(), 0..6usize).prop_map(|(index, max)| Op::Drain { index, max }),
        1 => (0..1_000u64).prop_map(|ms| Op::Tick { ms }),
    ]
}

/// The model of one subscription: the spec of the queue, plus what the guarantee check needs.
struct ModelSub {
    user: u64,
    device: u32,
    registered: bool,
    queue: VecDeque<u64>,
    missed: u64,
    closed: Option<CloseReason>,
    /// Every event published to this device while it was registered, in order.
    targeted: Vec<u64>,
    /// Every delivery the real subscription gave.
    delivered: Vec<Delivery<u64>>,
}

impl ModelSub {
    fn push(&mut self, event: u64, capacity: usize) -> bool {
        self.targeted.push(event);
        if self.missed > 0 || self.queue.len() >= capacity {
            self.missed += 1;
            false
        } else {
            self.queue.push_back(event);
            true
        }
    }

    fn pop(&mut self) -> Option<Delivery<u64>> {
        if let Some(event) = self.queue.pop_front() {
            Some(Delivery::Event(event))
        } else if self.missed > 0 {
            Some(Delivery::Lagged {
                missed: std::mem::take(&mut self.missed),
            })
        } else {
            self.closed.map(Delivery::Closed)
        }
    }
}

/// The guarantee, from the published sequence and the deliveries alone. `complete`: the
/// subscription was read until nothing more was ready, so every targeted event is accounted for.
fn check_guarantee(targeted: &[u64], delivered: &[Delivery<u64>], complete: bool) {
    let mut position = 0; // events of `targeted` accounted for so far
    let mut previous_was_lag = false;
    let mut closed = false;
    for delivery in delivered {
        assert!(
            !closed || matches!(delivery, Delivery::Closed(_)),
            "delivery after Closed"
        );
        match *delivery {
            Delivery::Event(event) => {
                assert_eq!(
                    targeted.get(position),
                    Some(&event),
                    "out of order or uncovered gap"
                );
                position += 1;
                previous_was_lag = false;
            }
            Delivery::Lagged { missed } => {
                assert!(missed > 0, "empty Lagged");
                assert!(!previous_was_lag, "two Lagged for one run of missed events");
                position += missed as usize;
                assert!(
                    position <= targeted.len(),
                    "Lagged counts events never published"
                );
                previous_was_lag = true;
            }
            Delivery::Closed(_) => closed = true,
        }
    }
    if complete {
        assert_eq!(
            position,
            targeted.len(),
            "published events neither delivered nor covered"
        );
    }
}

struct Harness {
    hub: Hub<u64>,
    capacity: usize,
    now: Arc<AtomicU64>,
    /// Live real subscriptions, by index into `model`.
    live: Vec<(usize, Subscription<u64>)>,
    model: Vec<ModelSub>,
    last_seen: HashMap<u64, Timestamp>,
    next_event: u64,
    queued: u64,
    missed: u64,
    lags: u64,
    published: u64,
}

impl Harness {
    fn new(capacity: usize, shard_count: usize) -> Harness {
        let now = Arc::new(AtomicU64::new(0));
        let read = Arc::clone(&now);
        let hub = Hub::with_clock(
            HubConfig {
                queue_capacity: capacity,
                shard_count,
            },
            Arc::new(move || Timestamp(read.load(Ordering::SeqCst))),
        );
        Harness {
            hub,
            capacity,
            now,
            live: Vec::new(),
            model: Vec::new(),
            last_seen: HashMap::new(),
            next_event: 0,
            queued: 0,
            missed: 0,
            lags: 0,
            published: 0,
        }
    }

    fn registered(&mut self, user: u64) -> impl Iterator<Item = &mut ModelSub> {
        self.model
            .iter_mut()
            .filter(move |m| m.registered && m.user == user)
    }

    fn leave(&mut self, model: usize, reason: Option<CloseReason>) {
        let sub = &mut self.model[model];
        sub.registered = false;
        sub.closed = reason;
        let user = sub.user;
        if self.registered(user).next().is_none() {
            self.last_seen
                .insert(user, Timestamp(self.now.load(Ordering::SeqCst)));
        }
    }

    fn publish_model(&mut self, user: u64, except: Option<u32>, event: u64) -> usize {
        let capacity = self.capacity;
        let mut taken = 0;
        let (mut missed, mut lags) = (0, 0);
        for sub in self.registered(user).filter(|m| Some(m.device) != except) {
            let was_lagging = sub.missed > 0;
            if sub.push(event, capacity) {
                taken += 1;
            } else {
                missed += 1;
                lags += u64::from(!was_lagging);
            }
        }
        self.queued += taken as u64;
        self.missed += missed;
        self.lags += lags;
        taken
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Subscribe { user, device } => {
                let replaced: Vec<usize> = (0..self.model.len())
                    .filter(|&i| {
                        let m = &self.model[i];
                        m.registered && m.user == user && m.device == device
                    })
                    .collect();
                for i in replaced {
                    let sub = &mut self.model[i];
                    sub.registered = false;
                    sub.closed = Some(CloseReason::Replaced);
                }
                let sub = self.hub.subscribe(UserId(user), DeviceId(device));
                self.model.push(ModelSub {
                    user,
                    device,
                    registered: true,
                    queue: VecDeque::new(),
                    missed: 0,
                    closed: None,
                    targeted: Vec::new(),
                    delivered: Vec::new(),
                });
                self.live.push((self.model.len() - 1, sub));
            }
            Op::Drop { index } => {
                if self.live.is_empty() {
                    return;
                }
                let (model, sub) = self.live.remove(index % self.live.len());
                drop(sub);
                if self.model[model].registered {
                    self.leave(model, None);
                }
                // Its history is a prefix: checked at the end as incomplete.
                self.model[model].queue.clear();
            }
            Op::Disconnect { user, device } => {
                let found = self
                    .model
                    .iter()
                    .position(|m| m.registered && m.user == user && m.device == device);
                assert_eq!(
                    self.hub.disconnect(UserId(user), DeviceId(device)),
                    found.is_some()
                );
                if let Some(model) = found {
                    self.leave(model, Some(CloseReason::Disconnected));
                }
            }
            Op::PublishToUser { user, except } => {
                let event = self.next_event;
                self.next_event += 1;
                self.published += 1;
                let expected = self.publish_model(user, except, event);
                let got = self
                    .hub
                    .publish_to_user(UserId(user), except.map(DeviceId), &event);
                assert_eq!(got, expected);
            }
            Op::Publish { users, except } => {
                let event = self.next_event;
                self.next_event += 1;
                self.published += 1;
                let mut distinct = users.clone();
                distinct.sort_unstable();
                distinct.dedup();
                let expected: usize = distinct
                    .iter()
                    .map(|&user| {
                        let except = except.filter(|&(u, _)| u == user).map(|(_, d)| d);
                        self.publish_model(user, except, event)
                    })
                    .sum();
                let except = except.map(|(u, d)| (UserId(u), DeviceId(d)));
                let got = self
                    .hub
                    .publish(users.into_iter().map(UserId), except, &event);
                assert_eq!(got, expected);
            }
            Op::Drain { index, max } => {
                if self.live.is_empty() {
                    return;
                }
                let slot = index % self.live.len();
                let (model, sub) = &mut self.live[slot];
                for _ in 0..max {
                    let got = sub.try_next();
                    assert_eq!(got, self.model[*model].pop());
                    match got {
                        Some(delivery) => self.model[*model].delivered.push(delivery),
                        None => break,
                    }
                }
            }
            Op::Tick { ms } => {
                self.now.fetch_add(ms, Ordering::SeqCst);
            }
        }
        self.check_state();
    }

    fn check_state(&self) {
        for user in 0..USERS {
            let online = self.model.iter().any(|m| m.registered && m.user == user);
            let expected = if online {
                Presence::Online
            } else {
                Presence::Offline {
                    last_seen: self.last_seen.get(&user).copied(),
                }
            };
            assert_eq!(self.hub.presence(UserId(user)), expected, "user {user}");
        }
        let registered = || self.model.iter().filter(|m| m.registered);
        let stats = self.hub.stats();
        assert_eq!(stats.subscriptions, registered().count());
        let mut online: Vec<u64> = registered().map(|m| m.user).collect();
        online.sort_unstable();
        online.dedup();
        assert_eq!(stats.users_online, online.len());
        assert_eq!(stats.events_published, self.published);
        assert_eq!(stats.events_queued, self.queued);
        assert_eq!(stats.events_missed, self.missed);
        assert_eq!(stats.lags_total, self.lags);
        assert_eq!(
            stats.subscriptions_lagged,
            registered().filter(|m| m.missed > 0).count()
        );
        assert_eq!(
            stats.queue_depth_max,
            registered().map(|m| m.queue.len()).max().unwrap_or(0)
        );
    }

    /// Reads every live subscription to the end, then checks every history.
    fn finish(mut self) {
        for (model, sub) in &mut self.live {
            while let Some(delivery) = sub.try_next() {
                assert_eq!(Some(&delivery), self.model[*model].pop().as_ref());
                let closed = matches!(delivery, Delivery::Closed(_));
                self.model[*model].delivered.push(delivery);
                if closed {
                    break;
                }
            }
        }
        let complete: Vec<usize> = self.live.iter().map(|(model, _)| *model).collect();
        for (i, sub) in self.model.iter().enumerate() {
            check_guarantee(&sub.targeted, &sub.delivered, complete.contains(&i));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn hub_matches_the_model_and_keeps_the_lag_guarantee(
        capacity in 1..4usize,
        shard_count in prop_oneof![Just(1usize), Just(2), Just(32)],
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let mut harness = Harness::new(capacity, shard_count);
        for op in ops {
            harness.step(op);
        }
        harness.finish();
    }
}

#[test]
fn the_guarantee_checker_rejects_what_it_should() {
    let ok = [
        Delivery::Event(0),
        Delivery::Lagged { missed: 2 },
        Delivery::Event(3),
    ];
    check_guarantee(&[0, 1, 2, 3], &ok, true);
    for bad in [
        vec![Delivery::Event(0), Delivery::Event(3)], // no Lagged
        vec![
            Delivery::Event(0),
            Delivery::Event(2),
            Delivery::Lagged { missed: 2 },
        ], // late
        vec![
            Delivery::Lagged { missed: 1 },
            Delivery::Lagged { missed: 1 },
        ], // split
        vec![Delivery::Event(1), Delivery::Event(0)], // order
        vec![Delivery::Event(0)],                     // lost
    ] {
        let result = std::panic::catch_unwind(|| check_guarantee(&[0, 1, 2, 3], &bad, true));
        assert!(result.is_err(), "{bad:?} accepted");
    }
}
