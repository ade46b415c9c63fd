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
    let engine = open_sim(&sim, small_config(&clock));
    assert_eq!(histories(&engine), before);
    engine.checkpoint().unwrap();
    assert!(idx_files(&sim).len() >= 5);
    engine.close().unwrap();
}
