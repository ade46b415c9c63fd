//! The scrub after opening: it verifies every stored batch in the background, then each segment
//! as it seals, reports what it did in `stats()`, finds damage without disturbing anything
//! else, and never holds up a close or a reopen of the same folder.

mod common;

use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::{DIR, T0, open_sim, small_config};
use missive::log::{ChatId, DeviceId, SimStorage, Storage, UserId};
use missive::{Engine, History, ManualClock, Outgoing, Stats, To};

const ALICE: UserId = UserId(1);
const BOB: UserId = UserId(2);

fn send(engine: &Engine, from: UserId, to: UserId, n: u32) {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_le_bytes());
    id[4..12].copy_from_slice(&from.0.to_le_bytes());
    let message = Outgoing::text(To::User(to), id, Bytes::from(vec![b'x'; 200]));
    engine.send(from, DeviceId(0), message).unwrap();
}

/// The segment files of the engine's only shard, oldest first, with their sizes.
fn segments(sim: &SimStorage) -> Vec<(PathBuf, u64)> {
    let dir = Path::new(DIR).join("log").join("shard-0000");
    let mut names = sim.list_dir(&dir).unwrap();
    names.retain(|name| name.ends_with(".seg"));
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(name);
            let len = sim.file_content(&path).unwrap().len() as u64;
            (path, len)
        })
        .collect()
}

/// Waits (bounded) until the scrub either finished or found damage.
fn scrubbed(engine: &Engine) -> Stats {
    stats_once(engine, |stats| stats.scrub_done || stats.scrub_errors > 0)
}

/// The engine's stats once `done` holds of them, or after 20 s.
fn stats_once(engine: &Engine, done: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = engine.stats();
        if done(&stats) || Instant::now() > deadline {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Alice and Bob exchange `n` messages of 200 bytes over several tiny segments, and close.
fn filled(sim: &SimStorage, clock: &ManualClock, n: u32) {
    let engine = open_sim(sim, small_config(clock));
    for i in 0..n {
        clock.advance(1_000);
        let (from, to) = if i % 2 == 0 {
            (ALICE, BOB)
        } else {
            (BOB, ALICE)
        };
        send(&engine, from, to, i);
    }
    engine.close().unwrap();
}

fn scrubbing(clock: &ManualClock) -> missive::Config {
    missive::Config {
        scrub_on_open: true,
        ..small_config(clock)
    }
}

#[test]
fn the_scrub_verifies_every_stored_byte_after_opening() {
    let (sim, clock) = (SimStorage::new(), ManualClock::new(T0));
    filled(&sim, &clock, 120);
    let engine = open_sim(&sim, scrubbing(&clock));
    let stats = scrubbed(&engine);
    assert!(stats.scrub_done, "{stats:?}");
    assert_eq!(stats.scrub_errors, 0);
    let segments = segments(&sim);
    assert!(segments.len() > 2, "several segments: {segments:?}");
    let stored: u64 = segments.iter().map(|(_, len)| len).sum();
    assert_eq!(stats.scrubbed_bytes, stored, "every byte of every segment");
    let history = engine.history(ALICE, ChatId::direct(ALICE, BOB), History::Latest(200));
    assert_eq!(history.unwrap().len(), 120);
    engine.close().unwrap();
}

#[test]
fn segments_sealed_after_the_first_pass_are_scrubbed_too() {
    let (sim, clock) = (SimStorage::new(), ManualClock::new(T0));
    filled(&sim, &clock, 60);
    let engine = open_sim(&sim, scrubbing(&clock));
    let first = scrubbed(&engine);
    assert!(first.scrub_done, "{first:?}");
    let at_open = segments(&sim);
    for i in 0..60 {
        clock.advance(1_000);
        send(&engine, ALICE, BOB, 1_000 + i);
    }
    let now = segments(&sim);
    assert!(
        now.len() > at_open.len() + 1,
        "new segments sealed: {now:?}"
    );
    // Each segment sealed since the first pass once more in full: from the one active then
    // to the newest sealed one (the last is active).
    let sealed_since: u64 = now[at_open.len() - 1..now.len() - 1]
        .iter()
        .map(|(_, len)| len)
        .sum();
    let expected = first.scrubbed_bytes + sealed_since;
    let stats = stats_once(&engine, |stats| stats.scrubbed_bytes >= expected);
    assert_eq!(stats.scrubbed_bytes, expected, "{stats:?}");
    assert_eq!(stats.scrub_errors, 0);
    let history = engine.history(ALICE, ChatId::direct(ALICE, BOB), History::Latest(200));
    assert_eq!(history.unwrap().len(), 120);
    engine.close().unwrap();
}

#[test]
fn damage_is_reported_and_touches_nothing_else() {
    let (sim, clock) = (SimStorage::new(), ManualClock::new(T0));
    filled(&sim, &clock, 120);
    // Flip a bit in the middle of the oldest segment's first batch body.
    let segments = segments(&sim);
    assert!(segments.len() > 2, "{segments:?}");
    let (oldest, _) = &segments[0];
    let mut bytes = sim.file_content(oldest).unwrap();
    bytes[100] ^= 0x10;
    sim.set_file_content(oldest, bytes);

    let engine = open_sim(&sim, scrubbing(&clock));
    let stats = scrubbed(&engine);
    assert_eq!(stats.scrub_errors, 1, "{stats:?}");
    assert!(!stats.scrub_done);
    // The newest messages live in undamaged segments and still read.
    let latest = engine
        .history(ALICE, ChatId::direct(ALICE, BOB), History::Latest(5))
        .unwrap();
    assert_eq!(latest.len(), 5);
    // Sending still works and is stored after the damage.
    send(&engine, ALICE, BOB, 10_000);
    engine.close().unwrap();
}

#[test]
fn a_close_does_not_wait_for_the_scrub_and_the_folder_reopens_at_once() {
    let (sim, clock) = (SimStorage::new(), ManualClock::new(T0));
    filled(&sim, &clock, 120);
    for _ in 0..20 {
        let engine = open_sim(&sim, scrubbing(&clock));
        engine.close().unwrap();
        drop(engine);
        // Dropped without closing, too: the scrub holds neither the engine nor the folder lock.
        let engine = open_sim(&sim, scrubbing(&clock));
        drop(engine);
    }
    let engine = open_sim(&sim, small_config(&clock));
    assert_eq!(engine.stats().scrubbed_bytes, 0, "off when not asked for");
    engine.close().unwrap();
}
