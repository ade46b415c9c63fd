//! Presence: online while a device is subscribed, offline with `last_seen` from the injected
//! clock when the last one leaves, and transitions reported to the listener in order, outside the
//! hub's locks (the listener publishes and subscribes through the hub without deadlock).
#![cfg(not(loom))]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use missive_fanout::{Delivery, Hub, HubConfig, Presence};
use missive_log::{DeviceId, Timestamp, UserId};

const ALICE: UserId = UserId(1);
const BOB: UserId = UserId(2);
const PHONE: DeviceId = DeviceId(0);
const LAPTOP: DeviceId = DeviceId(1);

/// A clock the test sets by hand.
fn fake_clock() -> (Arc<AtomicU64>, Arc<dyn Fn() -> Timestamp + Send + Sync>) {
    let now = Arc::new(AtomicU64::new(1_000));
    let read = Arc::clone(&now);
    (
        now,
        Arc::new(move || Timestamp(read.load(Ordering::SeqCst))),
    )
}

#[test]
fn online_while_any_device_is_subscribed_then_last_seen() {
    let (now, clock) = fake_clock();
    let hub: Hub<u32> = Hub::with_clock(HubConfig::default(), clock);
    assert_eq!(hub.presence(ALICE), Presence::Offline { last_seen: None });

    let phone = hub.subscribe(ALICE, PHONE);
    let laptop = hub.subscribe(ALICE, LAPTOP);
    assert_eq!(hub.presence(ALICE), Presence::Online);
    assert_eq!(hub.stats().users_online, 1);

    now.store(5_000, Ordering::SeqCst);
    drop(phone);
    assert!(hub.is_online(ALICE), "the laptop is still connected");
    now.store(7_000, Ordering::SeqCst);
    drop(laptop);
    assert_eq!(
        hub.presence(ALICE),
        Presence::Offline {
            last_seen: Some(Timestamp(7_000))
        }
    );
    assert_eq!(hub.stats().users_online, 0);

    // Back online, and offline again through a disconnect: last_seen moves on.
    let _phone = hub.subscribe(ALICE, PHONE);
    assert!(hub.is_online(ALICE));
    now.store(9_000, Ordering::SeqCst);
    hub.disconnect(ALICE, PHONE);
    assert_eq!(
        hub.presence(ALICE),
        Presence::Offline {
            last_seen: Some(Timestamp(9_000))
        }
    );
    assert_eq!(hub.presence(BOB), Presence::Offline { last_seen: None });
}

#[test]
fn the_listener_sees_transitions_in_order_and_not_replacements() {
    let (now, clock) = fake_clock();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let hub: Hub<u32> = Hub::builder(HubConfig::default())
        .clock(clock)
        .presence_listener(Arc::new(move |user, presence| {
            log.lock().unwrap().push((user, presence))
        }))
        .build();

    let phone = hub.subscribe(ALICE, PHONE);
    let laptop = hub.subscribe(ALICE, LAPTOP); // not a transition
    let replacement = hub.subscribe(ALICE, PHONE); // not a transition
    drop(phone); // replaced already: nothing
    drop(laptop);
    now.store(2_000, Ordering::SeqCst);
    drop(replacement);
    let bob = hub.subscribe(BOB, PHONE);
    now.store(3_000, Ordering::SeqCst);
    hub.close();
    drop(bob);

    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (ALICE, Presence::Online),
            (
                ALICE,
                Presence::Offline {
                    last_seen: Some(Timestamp(2_000))
                }
            ),
            (BOB, Presence::Online),
            (
                BOB,
                Presence::Offline {
                    last_seen: Some(Timestamp(3_000))
                }
            ),
        ]
    );
}

#[test]
fn the_listener_may_publish_and_subscribe_through_the_hub() {
    // The engine's use: tell a user's contacts when they come and go.
    let hub_cell: Arc<OnceLock<Hub<(UserId, Presence)>>> = Arc::new(OnceLock::new());
    let cell = Arc::clone(&hub_cell);
    let parked = Arc::new(Mutex::new(Vec::new()));
    let parked_in_listener = Arc::clone(&parked);
    let hub = Hub::builder(HubConfig::default())
        .presence_listener(Arc::new(move |user, presence| {
            let hub: &Hub<_> = cell.get().expect("set before the first subscribe");
            // Would deadlock if the listener ran under a registry lock. Bob is everyone's contact.
            if user != BOB {
                hub.publish([BOB], None, &(user, presence));
            }
            assert_eq!(hub.is_online(user), presence.is_online());
            if user == ALICE && presence.is_online() {
                // A transition caused from inside the listener is delivered after this call.
                parked_in_listener
                    .lock()
                    .unwrap()
                    .push(hub.subscribe(UserId(99), PHONE));
            }
        }))
        .build();
    hub_cell.set(hub.clone()).unwrap();

    let mut bob = hub.subscribe(BOB, PHONE);
    assert_eq!(bob.try_next(), None);
    let alice = hub.subscribe(ALICE, PHONE);
    drop(alice);
    let deliveries: Vec<_> = std::iter::from_fn(|| bob.try_next()).collect();
    assert_eq!(deliveries.len(), 3);
    assert_eq!(deliveries[0], Delivery::Event((ALICE, Presence::Online)));
    assert_eq!(
        deliveries[1],
        Delivery::Event((UserId(99), Presence::Online))
    );
    assert!(matches!(
        deliveries[2],
        Delivery::Event((ALICE, Presence::Offline { .. }))
    ));
    parked.lock().unwrap().clear();
}

#[test]
fn concurrent_connects_and_disconnects_leave_consistent_presence() {
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&transitions);
    let hub: Hub<u8> = Hub::builder(HubConfig {
        shard_count: 2,
        ..HubConfig::default()
    })
    .presence_listener(Arc::new(move |user, presence| {
        log.lock().unwrap().push((user, presence.is_online()));
    }))
    .build();
    let workers: Vec<_> = (0..4u32)
        .map(|t| {
            let hub = hub.clone();
            thread::spawn(move || {
                for i in 0..2_000u64 {
                    let user = UserId(i % 8);
                    let sub = hub.subscribe(user, DeviceId(t));
                    if i % 3 == 0 {
                        hub.publish_to_user(user, None, &1);
                    }
                    drop(sub);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let stats = hub.stats();
    assert_eq!((stats.subscriptions, stats.users_online), (0, 0));
    // Per user, the listener saw online and offline strictly alternating, ending offline.
    let transitions = transitions.lock().unwrap();
    for user in (0..8).map(UserId) {
        let states: Vec<bool> = transitions
            .iter()
            .filter(|(u, _)| *u == user)
            .map(|&(_, online)| online)
            .collect();
        assert!(!states.is_empty());
        assert!(
            states
                .iter()
                .enumerate()
                .all(|(i, &online)| online == (i % 2 == 0)),
            "{user:?}"
        );
        assert!(!hub.is_online(user));
    }
}
