//! Segment index files are written after the index lock is released, not while applying: a
//! send that seals a segment does not make every other sender wait for the file. They are
//! still all written by a checkpoint, and one a crash kept from being written is rebuilt from
//! the log, with the same answers.

mod common;

use std::path::Path;

use bytes::Bytes;
use missive::log::storage::Damage;
use missive::log::{DeviceId, SimStorage, Storage, UserId};
use missive::{Durability, Engine, History, ManualClock, MessageView, Outgoing, To};

use common::{DIR, T0, open_sim, small_config};

const MESSAGES: u64 = 300;

fn idx_files(sim: &SimStorage) -> Vec<String> {
    let dir = Path::new(DIR).join("index");
    let mut names: Vec<String> = sim
        .list_dir(&dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|name| name.starts_with("seg-"))
        .collect();
    names.sort();
    names
}

fn send_all(engine: &Engine) {
    for n in 0..MESSAGES {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&n.to_le_bytes());
        let body = Bytes::from(vec![b'x'; 100]);
        let to = To::User(UserId(2 + n % 3));
        engine
            .send(UserId(1), DeviceId(0), Outgoing::text(to, id, body))
            .unwrap();
    }
}

fn histories(engine: &Engine) -> Vec<Vec<MessageView>> {
    engine
        .chats(UserId(1))
        .unwrap()
        .iter()
        .map(|chat| {
            engine
                .history(UserId(1), chat.chat, History::Latest(1000))
                .unwrap()
        })
        .collect()
}

#[test]
fn a_checkpoint_writes_every_sealed_segment_file() {
    let (sim, clock) = (SimStorage::new(), ManualClock::new(T0));
    let mut config = small_config(&clock);
    config.durability = Durability::Os;
    let engine = open_sim(&sim, config);
    send_all(&engine);
    let before = histories(&engine);
    assert_eq!(
        before.iter().map(Vec::len).sum::<usize>(),
        MESSAGES as usize
    );
    engine.checkpoint().unwrap();
    let files = idx_files(&sim);
    assert!(files.len() >= 5, "4 KiB segments seal often: {files:?}");
    assert!(files.iter().all(|name| name.ends_with(".idx")), "{files:?}");
    engine.close().unwrap();
    drop(engine);
    let engine = open_sim(&sim, small_config(&clock));
    assert_eq!(histories(&engine), before);
    engine.close().unwrap();
}

#[test]
fn files_a_crash_kept_from_being_written_are_rebuilt_from_the_log() {
    let (sim, clock) = (SimStorage::new(), ManualClock::new(T0));
    let engine = open_sim(&sim, small_config(&clock));
    send_all(&engine);
    let before = histories(&engine);
    // The process dies without a checkpoint or a close: whatever files were not yet written
    // and synced are gone, and the log (fsynced per send) is all there is.
    sim.power_off_after(0);
    drop(engine);
    sim.power_cut(Damage::DropUnsynced);
    let engine = reopen_when_released(&sim, small_config(&clock));
    assert_eq!(histories(&engine), before);
    engine.checkpoint().unwrap();
    assert!(idx_files(&sim).len() >= 5);
    engine.close().unwrap();
}

#[test]
fn checkpoints_retention_and_sends_at_once_leave_a_checkpoint_that_loads() {
    let (sim, clock) = (SimStorage::new(), ManualClock::new(T0));
    let mut config = small_config(&clock);
    config.durability = Durability::Os;
    config.segment_window = std::time::Duration::from_secs(1);
    config.retention = std::time::Duration::from_secs(5);
    let engine = open_sim(&sim, config.clone());
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                engine.checkpoint().unwrap();
            }
        });
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                engine.expire(engine.now()).unwrap();
            }
        });
        for n in 0..MESSAGES {
            // A second of server time per ten messages: segments seal and expire as it runs.
            if n % 10 == 0 {
                clock.advance(1000);
            }
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&n.to_le_bytes());
            let to = To::User(UserId(2 + n % 3));
            let body = Bytes::from(vec![b'y'; 60]);
            engine
                .send(UserId(1), DeviceId(0), Outgoing::text(to, id, body))
                .unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    // And once more now that all is sent (the thread may have run before anything expired).
    engine.expire(engine.now()).unwrap();
    assert!(engine.stats().segments_expired > 0, "retention ran");
    let before = histories(&engine);
    drop(engine);
    // Reopened without a close: from the last checkpoint written, which must be whole and
    // must not need records of segments retention removed after an earlier one was encoded.
    // (Without a close, a thread still writing a segment index file holds the engine, and its
    // folder, until that file is written.)
    let engine = reopen_when_released(&sim, config);
    assert!(engine.stats().opened_from_checkpoint);
    assert_eq!(histories(&engine), before);
    engine.close().unwrap();
}

/// Opens the engine once the dropped one released its folder (bounded: 5 s).
fn reopen_when_released(sim: &SimStorage, config: missive::Config) -> Engine {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match Engine::open_with(std::sync::Arc::new(sim.clone()), DIR, config.clone()) {
            Err(missive::Error::Storage(missive::log::Error::Locked { .. }))
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            opened => return opened.expect("reopen the engine"),
        }
    }
}
