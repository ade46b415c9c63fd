//! Routing and queue behaviour of the hub, one behaviour per test: publish order, multi-device
//! fan-out, the sender's own device, replacement, disconnect, shutdown, drop, the lag signal,
//! blocking and async reads, and a multi-threaded stress run of the lag guarantee.
#![cfg(not(loom))]

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use missive_fanout::{CloseReason, Delivery, Hub, HubConfig, HubStats};
use missive_log::{DeviceId, UserId};

const ALICE: UserId = UserId(1);
const BOB: UserId = UserId(2);
const CAROL: UserId = UserId(3);
const PHONE: DeviceId = DeviceId(0);
const LAPTOP: DeviceId = DeviceId(1);

fn hub(queue_capacity: usize) -> Hub<u64> {
    Hub::new(HubConfig {
        queue_capacity,
        ..HubConfig::default()
    })
}

fn drain<E: Clone + Send + 'static>(sub: &mut missive_fanout::Subscription<E>) -> Vec<Delivery<E>> {
    std::iter::from_fn(|| sub.try_next()).take(10_000).collect()
}

fn events(values: impl IntoIterator<Item = u64>) -> Vec<Delivery<u64>> {
    values.into_iter().map(Delivery::Event).collect()
}

#[test]
fn events_arrive_in_publish_order() {
    let hub = hub(64);
    let mut sub = hub.subscribe(ALICE, PHONE);
    for i in 0..50 {
        assert_eq!(hub.publish_to_user(ALICE, None, &i), 1);
    }
    assert_eq!(drain(&mut sub), events(0..50));
    assert_eq!(sub.try_next(), None);
}

#[test]
fn publishing_to_a_user_without_devices_reaches_no_one() {
    let hub = hub(4);
    assert_eq!(hub.publish_to_user(ALICE, None, &1), 0);
    assert_eq!(hub.publish([ALICE, BOB], None, &1), 0);
    assert_eq!(hub.stats().events_published, 2);
}

#[test]
fn every_device_of_a_user_receives_the_event() {
    let hub = hub(4);
    let mut phone = hub.subscribe(ALICE, PHONE);
    let mut laptop = hub.subscribe(ALICE, LAPTOP);
    let mut other = hub.subscribe(BOB, PHONE);
    assert_eq!(hub.publish_to_user(ALICE, None, &7), 2);
    assert_eq!(drain(&mut phone), events([7]));
    assert_eq!(drain(&mut laptop), events([7]));
    assert_eq!(drain(&mut other), vec![]);
    assert_eq!(phone.user(), ALICE);
    assert_eq!(laptop.device(), LAPTOP);
}

#[test]
fn the_senders_own_device_is_skipped() {
    let hub = hub(4);
    let mut phone = hub.subscribe(ALICE, PHONE);
    let mut laptop = hub.subscribe(ALICE, LAPTOP);
    let mut bob = hub.subscribe(BOB, PHONE);
    assert_eq!(hub.publish_to_user(ALICE, Some(PHONE), &1), 1);
    // In a group publish, `except` names one (user, device): Bob's phone is not Alice's phone.
    assert_eq!(hub.publish([ALICE, BOB], Some((ALICE, PHONE)), &2), 2);
    assert_eq!(drain(&mut phone), vec![]);
    assert_eq!(drain(&mut laptop), events([1, 2]));
    assert_eq!(drain(&mut bob), events([2]));
}

#[test]
fn group_publish_reaches_each_user_once_across_shards() {
    for shard_count in [1, 2, 64] {
        let hub: Hub<u64> = Hub::new(HubConfig {
            queue_capacity: 8,
            shard_count,
        });
        let mut subs: Vec<_> = (0..40).map(|u| hub.subscribe(UserId(u), PHONE)).collect();
        let members = (0..40).chain(0..40).chain([1000, 1001]).map(UserId);
        assert_eq!(hub.publish(members, None, &5), 40, "shards {shard_count}");
        for sub in &mut subs {
            assert_eq!(drain(sub), events([5]));
        }
    }
}

#[test]
fn a_second_subscribe_replaces_the_first() {
    let hub = hub(4);
    let mut old = hub.subscribe(ALICE, PHONE);
    hub.publish_to_user(ALICE, None, &1);
    let mut new = hub.subscribe(ALICE, PHONE);
    assert_eq!(hub.publish_to_user(ALICE, None, &2), 1);
    // The old one still yields what it had, then ends; the new one gets what came after.
    assert_eq!(old.try_next(), Some(Delivery::Event(1)));
    assert_eq!(
        old.try_next(),
        Some(Delivery::Closed(CloseReason::Replaced))
    );
    assert_eq!(
        old.try_next(),
        Some(Delivery::Closed(CloseReason::Replaced))
    );
    assert_eq!(drain(&mut new), events([2]));
    assert_eq!(hub.stats().subscriptions, 1);
    // Dropping the replaced subscription must not unregister its successor.
    drop(old);
    assert!(hub.is_online(ALICE));
    assert_eq!(hub.publish_to_user(ALICE, None, &3), 1);
    assert_eq!(drain(&mut new), events([3]));
}

#[test]
fn dropping_a_subscription_unregisters_the_device() {
    let hub = hub(4);
    let phone = hub.subscribe(ALICE, PHONE);
    let mut laptop = hub.subscribe(ALICE, LAPTOP);
    drop(phone);
    assert_eq!(hub.publish_to_user(ALICE, None, &1), 1);
    assert_eq!(drain(&mut laptop), events([1]));
    assert!(hub.is_online(ALICE));
    drop(laptop);
    assert!(!hub.is_online(ALICE));
    assert_eq!(hub.publish_to_user(ALICE, None, &2), 0);
    assert_eq!(hub.stats().subscriptions, 0);
}

#[test]
fn disconnect_closes_the_device_after_its_queue() {
    let hub = hub(4);
    let mut phone = hub.subscribe(ALICE, PHONE);
    hub.publish_to_user(ALICE, None, &1);
    assert!(hub.disconnect(ALICE, PHONE));
    assert!(!hub.disconnect(ALICE, PHONE));
    assert!(!hub.disconnect(BOB, PHONE));
    assert_eq!(hub.publish_to_user(ALICE, None, &2), 0);
    assert_eq!(
        drain(&mut phone)[..2],
        [
            Delivery::Event(1),
            Delivery::Closed(CloseReason::Disconnected)
        ]
    );
    assert!(!hub.is_online(ALICE));
    assert_eq!(hub.stats().subscriptions, 0);
}

#[test]
fn close_shuts_every_subscription_and_later_ones() {
    let hub = hub(4);
    let mut a = hub.subscribe(ALICE, PHONE);
    let mut b = hub.subscribe(BOB, LAPTOP);
    hub.publish_to_user(BOB, None, &9);
    hub.close();
    assert_eq!(a.try_next(), Some(Delivery::Closed(CloseReason::Shutdown)));
    assert_eq!(b.try_next(), Some(Delivery::Event(9)));
    assert_eq!(b.try_next(), Some(Delivery::Closed(CloseReason::Shutdown)));
    let mut late = hub.subscribe(CAROL, PHONE);
    assert_eq!(
        late.try_next(),
        Some(Delivery::Closed(CloseReason::Shutdown))
    );
    assert!(!hub.is_online(ALICE) && !hub.is_online(CAROL));
    assert_eq!(hub.publish([ALICE, BOB, CAROL], None, &1), 0);
    let stats = hub.stats();
    assert_eq!((stats.subscriptions, stats.users_online), (0, 0));
}

#[test]
fn a_full_queue_lags_once_then_events_flow_again() {
    let hub = hub(3);
    let mut sub = hub.subscribe(ALICE, PHONE);
    let taken: usize = (0..10).map(|i| hub.publish_to_user(ALICE, None, &i)).sum();
    assert_eq!(taken, 3);
    let stats = hub.stats();
    assert_eq!(
        (
            stats.subscriptions_lagged,
            stats.events_missed,
            stats.lags_total
        ),
        (1, 7, 1)
    );
    assert_eq!(stats.queue_depth_max, 3);

    // Room appears, but the device is still lagging: newer events must not overtake the signal.
    assert_eq!(sub.try_next(), Some(Delivery::Event(0)));
    assert_eq!(hub.publish_to_user(ALICE, None, &10), 0);
    assert_eq!(
        drain(&mut sub),
        vec![
            Delivery::Event(1),
            Delivery::Event(2),
            Delivery::Lagged { missed: 8 },
        ]
    );
    assert_eq!(hub.publish_to_user(ALICE, None, &11), 1);
    assert_eq!(hub.publish_to_user(ALICE, None, &12), 1);
    assert_eq!(drain(&mut sub), events([11, 12]));

    // A second episode is counted separately.
    for i in 13..20 {
        hub.publish_to_user(ALICE, None, &i);
    }
    assert_eq!(
        drain(&mut sub),
        vec![
            Delivery::Event(13),
            Delivery::Event(14),
            Delivery::Event(15),
            Delivery::Lagged { missed: 4 },
        ]
    );
    let stats = hub.stats();
    let HubStats {
        subscriptions,
        users_online,
        events_published,
        events_queued,
        ..
    } = stats;
    assert_eq!(
        (subscriptions, users_online, events_published, events_queued),
        (1, 1, 20, 8)
    );
    assert_eq!(
        (
            stats.events_missed,
            stats.subscriptions_lagged,
            stats.lags_total
        ),
        (12, 0, 2)
    );
    assert_eq!(
        (stats.queue_depth_max, stats.queue_depth_high_water),
        (0, 3)
    );
}

#[test]
fn a_lagging_device_does_not_hold_back_the_others() {
    let hub = hub(1);
    let mut slow = hub.subscribe(ALICE, PHONE);
    let mut fast = hub.subscribe(ALICE, LAPTOP);
    let mut got = Vec::new();
    for i in 0..5 {
        hub.publish_to_user(ALICE, None, &i);
        got.extend(drain(&mut fast));
    }
    assert_eq!(got, events(0..5));
    assert_eq!(
        drain(&mut slow),
        vec![Delivery::Event(0), Delivery::Lagged { missed: 4 }]
    );
}

#[test]
fn a_pending_lag_is_delivered_before_closed() {
    let hub = hub(1);
    let mut sub = hub.subscribe(ALICE, PHONE);
    hub.publish_to_user(ALICE, None, &1);
    hub.publish_to_user(ALICE, None, &2);
    let _new = hub.subscribe(ALICE, PHONE);
    assert_eq!(
        drain(&mut sub)[..3],
        [
            Delivery::Event(1),
            Delivery::Lagged { missed: 1 },
            Delivery::Closed(CloseReason::Replaced),
        ]
    );
}

#[test]
fn next_timeout_waits_for_a_publish_from_another_thread() {
    let hub = hub(4);
    let mut sub = hub.subscribe(ALICE, PHONE);
    let started = Instant::now();
    assert_eq!(sub.next_timeout(Duration::from_millis(20)), None);
    assert!(started.elapsed() >= Duration::from_millis(20));

    let publisher = hub.clone();
    let handle = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        publisher.publish_to_user(ALICE, None, &42);
        thread::sleep(Duration::from_millis(20));
        publisher.disconnect(ALICE, PHONE);
    });
    assert_eq!(
        sub.next_timeout(Duration::from_secs(10)),
        Some(Delivery::Event(42))
    );
    assert_eq!(
        sub.next_blocking(),
        Delivery::Closed(CloseReason::Disconnected)
    );
    handle.join().unwrap();
    // A huge timeout is "forever", not an overflow.
    assert_eq!(
        sub.next_timeout(Duration::MAX),
        Some(Delivery::Closed(CloseReason::Disconnected))
    );
}

/// A minimal executor: runs one future on this thread, parking between polls.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        thread::park();
    }
}

#[test]
fn next_is_a_future_woken_by_publish() {
    let hub = hub(2);
    let mut sub = hub.subscribe(ALICE, PHONE);
    let publisher = hub.clone();
    let handle = thread::spawn(move || {
        for i in 0..100 {
            publisher.publish_to_user(ALICE, None, &i);
            if i % 10 == 0 {
                thread::sleep(Duration::from_millis(1));
            }
        }
        publisher.disconnect(ALICE, PHONE);
    });
    let deliveries = block_on(async {
        let mut all = Vec::new();
        loop {
            let delivery = sub.next().await;
            let closed = matches!(delivery, Delivery::Closed(_));
            all.push(delivery);
            if closed {
                return all;
            }
        }
    });
    handle.join().unwrap();
    check_per_publisher(&deliveries, &[100]);
}

/// Checks the lag guarantee on deliveries of events `publisher << 32 | k` from concurrent
/// publishers (each publishing k = 0, 1, ... to this device): per publisher, delivered events
/// increase; a gap in a publisher's sequence is preceded by a `Lagged`; and delivered plus missed
/// adds up to everything published.
fn check_per_publisher(deliveries: &[Delivery<u64>], published: &[u64]) {
    // Per publisher: the next k expected, and how many `Lagged` had come when its last event did.
    let mut next: HashMap<u64, (u64, usize)> = HashMap::new();
    let mut lags = 0;
    let mut previous_was_lag = false;
    let (mut delivered, mut missed) = (0, 0);
    for delivery in deliveries {
        match *delivery {
            Delivery::Event(value) => {
                let (publisher, k) = (value >> 32, value & 0xFFFF_FFFF);
                let (expected, lags_then) = next.entry(publisher).or_insert((0, 0));
                assert!(
                    k >= *expected,
                    "publisher {publisher}: {k} after {expected}"
                );
                assert!(k == *expected || lags > *lags_then, "gap without Lagged");
                (*expected, *lags_then) = (k + 1, lags);
                previous_was_lag = false;
                delivered += 1;
            }
            Delivery::Lagged { missed: m } => {
                assert!(m > 0 && !previous_was_lag, "empty or repeated Lagged");
                previous_was_lag = true;
                lags += 1;
                missed += m;
            }
            Delivery::Closed(_) => {}
        }
    }
    assert_eq!(delivered + missed, published.iter().sum::<u64>());
}

#[test]
fn concurrent_publishers_keep_each_ones_order_and_account_for_every_event() {
    const PUBLISHERS: u64 = 4;
    const EVENTS: u64 = 20_000;
    let hub = hub(64);
    let mut subs: Vec<_> = [(ALICE, PHONE), (ALICE, LAPTOP), (BOB, PHONE)]
        .into_iter()
        .map(|(u, d)| hub.subscribe(u, d))
        .collect();
    let readers: Vec<_> = subs
        .drain(..)
        .map(|mut sub| {
            thread::spawn(move || {
                let mut all = Vec::new();
                loop {
                    let delivery = sub.next_blocking();
                    let closed = matches!(delivery, Delivery::Closed(_));
                    all.push(delivery);
                    if closed {
                        return all;
                    }
                }
            })
        })
        .collect();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let hub = hub.clone();
            thread::spawn(move || {
                let mut taken = 0;
                for k in 0..EVENTS {
                    let event = (p << 32) | k;
                    taken += if k % 2 == 0 {
                        hub.publish_to_user(ALICE, None, &event)
                            + hub.publish_to_user(BOB, None, &event)
                    } else {
                        hub.publish([BOB, ALICE], None, &event)
                    };
                }
                taken
            })
        })
        .collect();
    let taken: usize = publishers.into_iter().map(|h| h.join().unwrap()).sum();
    hub.close();
    let mut delivered_events = 0;
    for reader in readers {
        let deliveries = reader.join().unwrap();
        delivered_events += deliveries
            .iter()
            .filter(|d| matches!(d, Delivery::Event(_)))
            .count();
        check_per_publisher(&deliveries, &[EVENTS; PUBLISHERS as usize]);
    }
    assert_eq!(delivered_events, taken);
    let stats = hub.stats();
    assert_eq!(stats.events_queued as usize, taken);
    assert_eq!(
        stats.events_queued + stats.events_missed,
        3 * PUBLISHERS * EVENTS
    );
    assert_eq!(stats.events_published, PUBLISHERS * (EVENTS + EVENTS / 2));
}

#[test]
fn hub_and_subscription_are_send_and_sync_where_needed() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Hub<Arc<String>>>();
    send::<missive_fanout::Subscription<Arc<String>>>();
}
