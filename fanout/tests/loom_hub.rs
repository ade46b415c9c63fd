//! loom models of the hub: every interleaving (up to the preemption bound) of a publisher thread
//! against a subscriber reading its bounded queue, proving that the lag signal is exact and that
//! no wake-up is lost (loom's timed waits never time out, so a lost wake-up is a deadlock that
//! loom reports).
//!
//! The oracle: a device's deliveries are fully determined by what each publish returned. A run of
//! publishes that returned 0 (missed) becomes exactly one `Lagged { missed: run length }`, placed
//! where the run was; publishes that returned 1 are delivered in order. (A run cannot be split:
//! once the subscriber has taken the `Lagged`, its queue is empty, so the next publish is queued.)
//!
//! Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=/work/target-loom-fanout cargo test -p missive-fanout --release`.
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use loom::thread;
use missive_fanout::{CloseReason, Delivery, Hub, HubConfig, Presence};
use missive_log::{DeviceId, UserId};

const USER: UserId = UserId(7);
const DEVICE: DeviceId = DeviceId(0);

fn hub(queue_capacity: usize) -> Hub<u32> {
    Hub::new(HubConfig {
        queue_capacity,
        shard_count: 1,
    })
}

/// Runs `f` under `loom::model` and reports how many interleavings it explored.
fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    let iterations = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&iterations);
    loom::model(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    eprintln!(
        "{name}: {} interleavings",
        iterations.load(Ordering::Relaxed)
    );
}

/// What the subscriber must see, given each publish's result in publish order.
fn expected(results: &[(u32, usize)]) -> Vec<Delivery<u32>> {
    let mut deliveries = Vec::new();
    let mut run = 0;
    for &(event, taken) in results {
        if taken == 1 {
            if run > 0 {
                deliveries.push(Delivery::Lagged { missed: run });
                run = 0;
            }
            deliveries.push(Delivery::Event(event));
        } else {
            run += 1;
        }
    }
    if run > 0 {
        deliveries.push(Delivery::Lagged { missed: run });
    }
    deliveries
}

/// Publishes `events` to the device from a new thread, then disconnects it if `disconnect`.
fn spawn_publisher(
    hub: &Hub<u32>,
    events: u32,
    disconnect: bool,
) -> thread::JoinHandle<Vec<(u32, usize)>> {
    let hub = hub.clone();
    thread::spawn(move || {
        let results = (0..events)
            .map(|e| (e, hub.publish_to_user(USER, None, &e)))
            .collect();
        if disconnect {
            hub.disconnect(USER, DEVICE);
        }
        results
    })
}

/// Whether `deliveries` account for all of `events` publishes (delivered or counted missed).
fn accounts_for(deliveries: &[Delivery<u32>], events: u32) -> bool {
    let accounted: u64 = deliveries
        .iter()
        .map(|d| match d {
            Delivery::Event(_) => 1,
            Delivery::Lagged { missed } => *missed,
            Delivery::Closed(_) => 0,
        })
        .sum();
    accounted == u64::from(events)
}

/// The subscriber blocks until every publish is accounted for. Nothing else wakes it, so a
/// publish that forgets to notify the condition variable deadlocks the model.
fn lag_signal_is_exact_blocking(capacity: usize, events: u32) {
    let hub = hub(capacity);
    let mut sub = hub.subscribe(USER, DEVICE);
    let publisher = spawn_publisher(&hub, events, false);
    let mut got = Vec::new();
    while !accounts_for(&got, events) {
        got.push(sub.next_blocking());
    }
    let results = publisher.join().unwrap();
    assert_eq!(got, expected(&results), "{results:?}");
    assert_eq!(sub.try_next(), None);
    hub.disconnect(USER, DEVICE);
    assert_eq!(
        sub.try_next(),
        Some(Delivery::Closed(CloseReason::Disconnected))
    );
}

#[test]
fn lag_signal_is_exact_with_capacity_1() {
    model("capacity 1", || lag_signal_is_exact_blocking(1, 4));
}

#[test]
fn lag_signal_is_exact_with_capacity_2() {
    model("capacity 2", || lag_signal_is_exact_blocking(2, 5));
}

#[test]
fn async_next_is_woken_and_sees_the_exact_lag() {
    model("async", || {
        let hub = hub(1);
        let mut sub = hub.subscribe(USER, DEVICE);
        let publisher = spawn_publisher(&hub, 4, false);
        let got = loom::future::block_on(async {
            let mut deliveries = Vec::new();
            while !accounts_for(&deliveries, 4) {
                deliveries.push(sub.next().await);
            }
            deliveries
        });
        let results = publisher.join().unwrap();
        assert_eq!(got, expected(&results), "{results:?}");
    });
}

#[test]
fn disconnect_wakes_a_blocked_reader_after_its_queue() {
    model("disconnect", || {
        let hub = hub(1);
        let mut sub = hub.subscribe(USER, DEVICE);
        let publisher = spawn_publisher(&hub, 2, true);
        let mut got = Vec::new();
        loop {
            let delivery = sub.next_blocking();
            let closed = matches!(delivery, Delivery::Closed(_));
            got.push(delivery);
            if closed {
                break;
            }
        }
        let results = publisher.join().unwrap();
        let mut want = expected(&results);
        want.push(Delivery::Closed(CloseReason::Disconnected));
        assert_eq!(got, want, "{results:?}");
    });
}

#[test]
fn two_publishers_each_keep_their_order_and_every_event_is_accounted_for() {
    model("two publishers", || {
        let hub = hub(1);
        let mut sub = hub.subscribe(USER, DEVICE);
        let publishers: Vec<_> = [0, 10]
            .into_iter()
            .map(|base| {
                let hub = hub.clone();
                thread::spawn(move || {
                    (base..base + 2)
                        .map(|e| hub.publish_to_user(USER, None, &e))
                        .sum::<usize>()
                })
            })
            .collect();
        let mut got = Vec::new();
        while !accounts_for(&got, 4) {
            got.push(sub.next_blocking());
        }
        let taken: usize = publishers.into_iter().map(|p| p.join().unwrap()).sum();
        let events: Vec<u32> = got
            .iter()
            .filter_map(|d| {
                if let Delivery::Event(e) = d {
                    Some(*e)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(events.len(), taken, "{got:?}");
        for base in [0, 10] {
            let mine: Vec<u32> = events
                .iter()
                .copied()
                .filter(|e| e / 10 == base / 10)
                .collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "{got:?}");
        }
        assert!(
            !got.windows(2)
                .any(|w| { matches!(w, [Delivery::Lagged { .. }, Delivery::Lagged { .. }]) })
        );
        assert_eq!(sub.try_next(), None);
    });
}

#[test]
fn replacing_a_subscription_while_publishing_loses_nothing() {
    model("replace", || {
        let hub = hub(2);
        let mut old = hub.subscribe(USER, DEVICE);
        let publisher = {
            let hub = hub.clone();
            thread::spawn(move || {
                (0..2)
                    .map(|e| hub.publish_to_user(USER, None, &e))
                    .sum::<usize>()
            })
        };
        let mut new = hub.subscribe(USER, DEVICE);
        let taken = publisher.join().unwrap();
        assert_eq!(
            taken, 2,
            "exactly one subscription is registered at any time"
        );
        let mut got = Vec::new();
        loop {
            match old.try_next() {
                Some(Delivery::Event(e)) => got.push(e),
                Some(Delivery::Closed(CloseReason::Replaced)) => break,
                other => panic!("old subscription yielded {other:?}"),
            }
        }
        while let Some(delivery) = new.try_next() {
            match delivery {
                Delivery::Event(e) => got.push(e),
                other => panic!("new subscription yielded {other:?}"),
            }
        }
        assert_eq!(
            got,
            [0, 1],
            "the old one has a prefix, the new one the rest"
        );
    });
}

#[test]
fn presence_listener_runs_outside_locks_in_transition_order() {
    model("presence", || {
        // The listener publishes each transition to a watcher through the hub itself.
        let cell = Arc::new(Mutex::new(None::<Hub<(UserId, bool)>>));
        let in_listener = Arc::clone(&cell);
        let hub: Hub<(UserId, bool)> = Hub::builder(HubConfig {
            queue_capacity: 4,
            shard_count: 1,
        })
        .presence_listener(std::sync::Arc::new(
            move |user: UserId, presence: Presence| {
                let hub = in_listener.lock().unwrap().clone();
                if let Some(hub) = hub {
                    hub.publish_to_user(UserId(0), None, &(user, presence.is_online()));
                }
            },
        ))
        .build();
        *cell.lock().unwrap() = Some(hub.clone());
        let mut watcher = hub.subscribe(UserId(0), DEVICE);
        let leaving = hub.subscribe(UserId(1), DEVICE);

        let other = {
            let hub = hub.clone();
            thread::spawn(move || {
                let arriving = hub.subscribe(UserId(2), DEVICE);
                assert!(hub.is_online(UserId(2)));
                arriving
            })
        };
        drop(leaving);
        let arriving = other.join().unwrap();

        let mut got = Vec::new();
        while let Some(Delivery::Event(event)) = watcher.try_next() {
            got.push(event);
        }
        let of = |user| {
            got.iter()
                .filter(|e| e.0 == user)
                .map(|e| e.1)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            of(UserId(0)),
            [true],
            "the watcher hears its own arrival: {got:?}"
        );
        assert_eq!(of(UserId(1)), [true, false], "{got:?}");
        assert_eq!(of(UserId(2)), [true], "{got:?}");
        assert!(!hub.is_online(UserId(1)) && hub.is_online(UserId(2)));
        drop(arriving);
        // Break the hub -> listener -> hub cycle.
        cell.lock().unwrap().take();
    });
}
