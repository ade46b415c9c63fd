//! Live delivery under concurrent senders: many threads send into the same chats at once, so
//! group commits are applied by whichever sender gets the index first and their live events
//! are published after the index lock is released. A subscribed device must still receive
//! every message exactly once, per chat in seq order, straight from its queue: a gap would
//! send it to the index to catch up (counted in `Stats::catch_ups`), which only a lagging
//! queue may cause, and this one never lags. And a send that returned has its live event
//! queued already.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use missive::log::{ChatId, DeviceId, SimStorage, UserId};
use missive::{Durability, Event, ManualClock, Outgoing, To};

use common::{T0, open_sim, small_config};

const SENDERS: u64 = 4;
const SENDS: u64 = 300;
const READER: UserId = UserId(100);

fn message(to: To, sender: u64, n: u64) -> Outgoing {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_le_bytes());
    id[8..].copy_from_slice(&sender.to_le_bytes());
    Outgoing::text(to, id, Bytes::from(format!("{sender}:{n}")))
}

/// Takes every event ready now, checking each chat's messages come in seq order, one each.
fn drain(subscription: &mut missive::Subscription, next: &mut HashMap<ChatId, u64>) -> usize {
    let mut messages = 0;
    while let Some(event) = subscription.try_next().unwrap() {
        if let Event::Message { chat, message } = event {
            let expected = next.entry(chat).or_insert(1);
            assert_eq!(message.message.seq.0, *expected, "{chat:?}: out of order");
            *expected += 1;
            messages += 1;
        }
    }
    messages
}

fn run(durability: Durability) {
    let (sim, clock) = (SimStorage::new(), ManualClock::new(T0));
    let mut config = small_config(&clock);
    config.durability = durability;
    config.segment_bytes_max = 64 << 10;
    config.queue_capacity = 1 << 16;
    let engine = open_sim(&sim, config);
    let members: Vec<UserId> = (1..=SENDERS).map(UserId).chain([READER]).collect();
    let group = engine.create_group(UserId(1), &members).unwrap();
    let mut subscription = engine.subscribe(READER, DeviceId(0)).unwrap();
    let mut next = HashMap::new();
    // The group's creation: its system message, from the backlog.
    let backlog = drain(&mut subscription, &mut next);
    assert_eq!(backlog, 1);

    let engine = Arc::new(engine);
    std::thread::scope(|scope| {
        for sender in 1..=SENDERS {
            let engine = Arc::clone(&engine);
            scope.spawn(move || {
                // Each sender watches a device of its own: once a send to the group returned,
                // its event is in that queue (published, not only applied).
                let mut own = engine.subscribe(UserId(sender), DeviceId(1)).unwrap();
                let mut seen = HashMap::new();
                for n in 0..SENDS {
                    let to = if n % 2 == 0 {
                        To::Chat(group)
                    } else {
                        To::User(READER)
                    };
                    let sent = engine.send(UserId(sender), DeviceId(0), message(to, sender, n));
                    let sent = sent.unwrap();
                    drain(&mut own, &mut seen);
                    assert!(
                        seen.get(&sent.chat).is_some_and(|&next| next > sent.seq.0),
                        "sender {sender}: seq {} of {:?} not delivered when its send returned",
                        sent.seq.0,
                        sent.chat
                    );
                }
            });
        }
    });

    let received = drain(&mut subscription, &mut next);
    assert_eq!(received as u64, SENDERS * SENDS);
    assert_eq!(next.get(&group), Some(&(1 + 1 + SENDERS * SENDS / 2)));
    for sender in 1..=SENDERS {
        let chat = ChatId::direct(UserId(sender), READER);
        assert_eq!(next.get(&chat), Some(&(1 + SENDS / 2)));
    }
    let stats = engine.stats();
    assert_eq!(stats.catch_ups, 0, "a live event came out of order");
    assert_eq!(stats.lags, 0);
    assert!(subscription.next_timeout(Duration::ZERO).unwrap().is_none());
    engine.close().unwrap();
}

#[test]
fn concurrent_buffered_sends_arrive_live_in_order() {
    run(Durability::Os);
}

#[test]
fn concurrent_durable_sends_arrive_live_in_order() {
    run(Durability::Always);
}
