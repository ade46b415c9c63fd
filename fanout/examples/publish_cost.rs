//! A quick measurement of what a publish costs, not a criterion benchmark:
//! `cargo run --release -p missive-fanout --example publish_cost`.
//!
//! The event is an `Arc`, as the engine's will be, so a publish clones a pointer per device.

use std::hint::black_box;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use missive_fanout::{Delivery, Hub, HubConfig, Subscription};
use missive_log::{DeviceId, UserId};

type Event = Arc<[u8; 64]>;

const ROUNDS: u64 = 4_000;
const BATCH: u64 = 512;

fn drain(sub: &mut Subscription<Event>) -> u64 {
    let mut n = 0;
    while let Some(delivery) = sub.try_next() {
        assert!(matches!(delivery, Delivery::Event(_)));
        n += 1;
    }
    n
}

fn per_op(elapsed: Duration, ops: u64) -> f64 {
    elapsed.as_nanos() as f64 / ops as f64
}

fn main() {
    let event: Event = Arc::new([7; 64]);

    // One user with one device: the hot path (one read lock, one mutex, one Arc clone).
    let hub: Hub<Event> = Hub::new(HubConfig::default());
    let mut sub = hub.subscribe(UserId(1), DeviceId(0));
    let (mut publishing, mut draining) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..BATCH {
            black_box(hub.publish_to_user(UserId(1), None, &event));
        }
        publishing += start.elapsed();
        let start = Instant::now();
        assert_eq!(drain(&mut sub), BATCH);
        draining += start.elapsed();
    }
    let ops = ROUNDS * BATCH;
    println!(
        "publish_to_user, 1 device:      {:6.1} ns/publish",
        per_op(publishing, ops)
    );
    println!(
        "try_next, 1 device:             {:6.1} ns/event",
        per_op(draining, ops)
    );

    // Three devices of one user, the sender's own excluded.
    let mut subs: Vec<_> = (0..3)
        .map(|d| hub.subscribe(UserId(2), DeviceId(d)))
        .collect();
    let start = Instant::now();
    for _ in 0..ROUNDS {
        for _ in 0..BATCH / 4 {
            black_box(hub.publish_to_user(UserId(2), Some(DeviceId(0)), &event));
        }
        for sub in &mut subs {
            drain(sub);
        }
    }
    let ops = ROUNDS * BATCH / 4;
    println!(
        "publish_to_user, 2 of 3 devices: {:5.1} ns/publish (with draining)",
        per_op(start.elapsed(), ops)
    );

    // A 256-member group, one device each, spread over the default 32 shards.
    let members: Vec<UserId> = (1_000..1_256).map(UserId).collect();
    let mut subs: Vec<_> = members
        .iter()
        .map(|&u| hub.subscribe(u, DeviceId(0)))
        .collect();
    let rounds = 2_000;
    let mut publishing = Duration::ZERO;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..8 {
            black_box(hub.publish(
                members.iter().copied(),
                Some((members[0], DeviceId(0))),
                &event,
            ));
        }
        publishing += start.elapsed();
        for sub in &mut subs {
            drain(sub);
        }
    }
    let publishes = rounds * 8;
    println!(
        "publish, 256-member group:      {:6.1} us/publish ({:.1} ns/recipient)",
        per_op(publishing, publishes) / 1_000.0,
        per_op(publishing, publishes * 255)
    );

    // One publisher thread and one reader blocked in `next_timeout` on another core: the queue's
    // mutex and cache lines move between cores, and the reader is woken when its queue empties.
    let per_thread = 4_000_000;
    let hub: Hub<Event> = Hub::new(HubConfig::default());
    let mut sub = hub.subscribe(UserId(1), DeviceId(0));
    let reader = thread::spawn(move || {
        let mut accounted = 0u64;
        loop {
            match sub.next_timeout(Duration::from_millis(200)) {
                Some(Delivery::Event(_)) => accounted += 1,
                Some(Delivery::Lagged { missed }) => accounted += missed,
                _ => return accounted,
            }
        }
    });
    let start = Instant::now();
    for _ in 0..per_thread {
        hub.publish_to_user(UserId(1), None, &event);
    }
    let elapsed = start.elapsed();
    assert_eq!(reader.join().unwrap(), per_thread);
    let stats = hub.stats();
    println!(
        "publisher + reader threads:     {:6.1} ns/publish ({} of {} queued, {} lag episodes)",
        per_op(elapsed, per_thread),
        stats.events_queued,
        per_thread,
        stats.lags_total
    );
}
