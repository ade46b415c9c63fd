//! Clock jumps reorder nothing and delete nothing early.
//!
//! The engine reads time from a [`ManualClock`] that the tests step a day back and ten years
//! forward. Whatever the clock does: timestamps never decrease within a chat and seqs keep
//! their order (across a reopen too); a message that disappeared (TTL) stays gone when the
//! clock steps back; `expire(now)` after a step back removes nothing; after ten years with a
//! retention period it removes the old segments — and only then: until `expire` runs, and for
//! everything younger than the retention period afterwards, every acknowledged message that has
//! not disappeared is still there.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{T0, open_sim};
use missive::log::{ChatId, DeviceId, Seq, SimStorage, Timestamp, UserId};
use missive::{Config, Engine, History, ManualClock, Outgoing, To};

const MINUTE: u64 = 60_000;
const DAY: u64 = 24 * 60 * MINUTE;
const YEAR: u64 = 365 * DAY;
const RETENTION: Duration = Duration::from_secs(2 * 24 * 3600);
const USERS: u64 = 6;

/// A message the test sent, as acknowledged.
#[derive(Clone, Debug)]
struct Stored {
    chat: ChatId,
    seq: Seq,
    timestamp: Timestamp,
    ttl_ms: u64,
    body: Vec<u8>,
}

struct Harness {
    sim: SimStorage,
    clock: ManualClock,
    engine: Option<Engine>,
    group: ChatId,
    chats: Vec<(UserId, ChatId)>,
    stored: Vec<Stored>,
    sends: u64,
}

fn config(clock: &ManualClock) -> Config {
    Config {
        shards: Some(2),
        segment_window: Duration::from_secs(60),
        segment_bytes_max: 4 << 10,
        retention: RETENTION,
        checkpoint_interval: None,
        retention_interval: None,
        clock: std::sync::Arc::new(clock.clone()),
        ..Config::default()
    }
}

impl Harness {
    fn new() -> Harness {
        let clock = ManualClock::new(T0);
        let sim = SimStorage::new();
        let engine = open_sim(&sim, config(&clock));
        let users: Vec<UserId> = (1..=USERS).map(UserId).collect();
        let group = engine.create_group(users[0], &users[1..]).unwrap();
        let mut chats: Vec<(UserId, ChatId)> = (2..=USERS)
            .map(|other| (UserId(1), ChatId::direct(UserId(1), UserId(other))))
            .collect();
        chats.push((UserId(3), ChatId::direct(UserId(3), UserId(4))));
        chats.push((UserId(2), group));
        // Both shards hold chats, so retention has segments to remove in each.
        let shards: std::collections::BTreeSet<u32> =
            chats.iter().map(|(_, chat)| chat.shard(2).0).collect();
        assert_eq!(shards.len(), 2, "the chats cover both shards");
        Harness {
            sim,
            clock,
            engine: Some(engine),
            group,
            chats,
            stored: Vec::new(),
            sends: 0,
        }
    }

    fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("open")
    }

    fn reopen(&mut self) {
        let engine = self.engine.take().expect("open");
        engine.close().unwrap();
        drop(engine);
        self.engine = Some(open_sim(&self.sim, config(&self.clock)));
    }

    /// Sends one message to every chat (TTL `ttl_ms`, 0: none) and checks the timestamps.
    fn send_round(&mut self, ttl_ms: u64) {
        for (from, chat) in self.chats.clone() {
            self.sends += 1;
            let body = format!("message {}", self.sends).into_bytes();
            let mut out = Outgoing::text(To::Chat(chat), [0; 16], body.clone());
            out.client_msg_id[..8].copy_from_slice(&self.sends.to_le_bytes());
            out.ttl_ms = Some(ttl_ms);
            let sent = self.engine().send(from, DeviceId(0), out).unwrap();
            let previous = self.stored.iter().rev().find(|s| s.chat == chat);
            if let Some(previous) = previous {
                assert!(sent.seq > previous.seq, "seqs keep their order");
                assert!(
                    sent.timestamp >= previous.timestamp,
                    "timestamps never go back in a chat: {:?} after {:?}",
                    sent.timestamp,
                    previous.timestamp
                );
            }
            self.stored.push(Stored {
                chat,
                seq: sent.seq,
                timestamp: sent.timestamp,
                ttl_ms,
                body,
            });
        }
    }

    /// Every chat's history: seqs rise, timestamps never fall, and the test's messages are
    /// there exactly when they must be. `cutoff`: messages stored before it may have been
    /// removed by retention; `removed_before`: those stored before it must have been.
    fn check(&self, cutoff: Timestamp, removed_before: Timestamp) {
        let engine = self.engine();
        let now = engine.now();
        for &(reader, chat) in &self.chats {
            let history = engine
                .history(reader, chat, History::Latest(100_000))
                .unwrap();
            for pair in history.windows(2) {
                assert!(pair[0].message.seq < pair[1].message.seq);
                assert!(pair[0].timestamp <= pair[1].timestamp);
            }
            let found: BTreeMap<Seq, &missive::MessageView> =
                history.iter().map(|m| (m.message.seq, m)).collect();
            for stored in self.stored.iter().filter(|s| s.chat == chat) {
                let expired =
                    stored.ttl_ms > 0 && stored.timestamp.0.saturating_add(stored.ttl_ms) <= now.0;
                let removable = stored.timestamp < cutoff;
                match found.get(&stored.seq) {
                    Some(view) => {
                        assert!(
                            !expired,
                            "{stored:?} disappeared at {now:?} but was returned"
                        );
                        assert!(
                            stored.timestamp >= removed_before,
                            "{stored:?} should have been removed by retention"
                        );
                        assert_eq!(view.timestamp, stored.timestamp);
                        assert_eq!(view.message.body, stored.body);
                    }
                    None => assert!(
                        expired || removable,
                        "{stored:?} lost (now {now:?}, cutoff {cutoff:?})"
                    ),
                }
            }
        }
    }
}

#[test]
fn a_day_back_reorders_nothing_and_deletes_nothing() {
    let mut h = Harness::new();
    for minute in 0..20 {
        // Every fourth round disappears after 5 minutes, every fifth after a day.
        let ttl = match minute % 20 {
            m if m % 4 == 0 => 5 * MINUTE,
            m if m % 5 == 0 => DAY,
            _ => 0,
        };
        h.send_round(ttl);
        h.clock.advance(MINUTE as i64);
    }
    let high = h.engine().now();
    h.check(Timestamp(0), Timestamp(0));
    let visible_before: Vec<usize> = h
        .chats
        .iter()
        .map(|&(u, c)| {
            h.engine()
                .history(u, c, History::Latest(1000))
                .unwrap()
                .len()
        })
        .collect();

    h.clock.advance(-(DAY as i64));
    // The engine's time does not go back: what disappeared stays gone, nothing reappears.
    assert_eq!(h.engine().now(), high);
    h.check(Timestamp(0), Timestamp(0));
    let visible_after: Vec<usize> = h
        .chats
        .iter()
        .map(|&(u, c)| {
            h.engine()
                .history(u, c, History::Latest(1000))
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(visible_before, visible_after);

    // Retention at the stepped-back time, or at the engine's time, removes nothing.
    for now in [h.clock_now(), high] {
        let report = h.engine().expire(now).unwrap();
        assert_eq!(
            report.segments_removed, 0,
            "expire({now:?}) removed segments"
        );
    }
    h.check(Timestamp(0), Timestamp(0));

    // Sending while the clock is behind: timestamps hold, seqs continue; and across a reopen.
    for _ in 0..5 {
        h.send_round(0);
        h.clock.advance(MINUTE as i64);
    }
    h.reopen();
    assert!(
        h.engine().now() >= high,
        "a reopened engine does not go back either"
    );
    for _ in 0..5 {
        h.send_round(2 * MINUTE);
        h.clock.advance(MINUTE as i64);
    }
    h.check(Timestamp(0), Timestamp(0));

    // The clock catches up and passes: just before the oldest message is older than the
    // retention period, retention removes nothing; the short TTLs run out as the time passes.
    h.clock
        .set(Timestamp(T0.0 + RETENTION.as_millis() as u64 - MINUTE));
    let report = h.engine().expire(h.clock_now()).unwrap();
    assert_eq!(report.segments_removed, 0);
    h.check(Timestamp(0), Timestamp(0));
    let unread: Vec<u64> = h
        .chats
        .iter()
        .map(|&(u, c)| h.engine().unread(u, c).unwrap())
        .collect();
    assert!(
        unread.iter().all(|&n| n == 0),
        "senders have read their own chats"
    );
}

#[test]
fn ten_years_on_retention_removes_old_segments_and_nothing_else() {
    let mut h = Harness::new();
    for minute in 0..15 {
        h.send_round(if minute % 3 == 0 { 30 * MINUTE } else { 0 });
        h.clock.advance(MINUTE as i64);
    }
    h.check(Timestamp(0), Timestamp(0));
    let heads: Vec<Seq> = h
        .chats
        .iter()
        .map(|&(u, c)| {
            h.engine().history(u, c, History::Latest(1)).unwrap()[0]
                .message
                .seq
        })
        .collect();

    h.clock.advance((10 * YEAR) as i64);
    let later = h.clock_now();
    // Before retention runs, nothing acknowledged and not disappeared is lost (the TTLs ran out).
    h.check(Timestamp(0), Timestamp(0));
    h.reopen();
    h.check(Timestamp(0), Timestamp(0));
    assert_eq!(h.engine().stats().segments_expired, 0);

    // New messages in every chat (both shards) seal the old segments.
    h.send_round(0);
    h.check(Timestamp(0), Timestamp(0));
    let report = h.engine().expire(later).unwrap();
    assert!(report.segments_removed > 0, "ten years on, old segments go");
    assert_eq!(
        h.engine().stats().segments_expired,
        report.segments_removed as u64
    );
    let cutoff = Timestamp(later.0 - RETENTION.as_millis() as u64);
    assert_eq!(report.cutoff, cutoff);
    // Everything from before the jump is gone, everything after it is there.
    h.check(cutoff, cutoff);
    for (i, &(reader, chat)) in h.chats.iter().enumerate() {
        let history = h
            .engine()
            .history(reader, chat, History::Latest(1000))
            .unwrap();
        assert_eq!(history.len(), 1, "only the new message is left in {chat:?}");
        assert_eq!(history[0].message.seq.0, heads[i].0 + 1, "seqs continue");
    }
    // The group survived its old records: members, and sends by them.
    let members = h.engine().members(UserId(2), h.group).unwrap();
    assert_eq!(members.len(), USERS as usize);
    h.reopen();
    h.check(cutoff, cutoff);
    h.send_round(0);

    // The clock is corrected back ten years: timestamps still do not go back, and retention at
    // the corrected time removes nothing more.
    h.clock.set(T0);
    h.send_round(0);
    let report = h.engine().expire(T0).unwrap();
    assert_eq!(report.segments_removed, 0);
    h.check(cutoff, cutoff);
    h.reopen();
    h.send_round(0);
    h.check(cutoff, cutoff);
    let newest = h.stored.last().unwrap().timestamp;
    assert!(newest >= later, "{newest:?} went back before {later:?}");
}

impl Harness {
    fn clock_now(&self) -> Timestamp {
        use missive::Clock;
        self.clock.now()
    }
}
