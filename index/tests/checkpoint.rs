//! Damaged, foreign and stale checkpoints are detected and never trusted.
//!
//! Proves that a checkpoint with any flipped bit, cut at any length, with another version or
//! magic, written for another log, or reflecting more of the log than the log holds, is rejected
//! with a reason, and that the index then rebuilt from the log equals the one that wrote the
//! checkpoint; and that a good checkpoint is loaded and only the records after it are replayed.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use missive_index::codec::{
    ContentKind, GroupChange, GroupOp, Message, Payload, Receipt, ReceiptKind,
};
use missive_index::{CHECKPOINT_VERSION, Index};
use missive_log::{
    ChatId, DeviceId, Durability, Log, LogConfig, Record, Seq, SimStorage, Timestamp, UserId,
};

const INDEX: &str = "/index/INDEX";

fn config() -> LogConfig {
    LogConfig {
        shard_count: Some(2),
        segment_window_ms: 1000,
        segment_bytes_max: 4096,
        durability: Durability::Always,
        compression: true,
        huge_pages: false,
    }
}

fn open(disk: &SimStorage, dir: &str) -> Log {
    Log::open_with(Arc::new(disk.clone()), Path::new(dir), config()).unwrap()
}

fn append(log: &Log, chat: ChatId, ts: u64, payload: Payload) {
    let record = Record {
        kind: payload.kind(),
        chat,
        timestamp: Timestamp(ts),
        payload: payload.encode(),
    };
    log.append(record).unwrap().wait().unwrap();
}

/// A log with 1:1 and group traffic and receipts, and its index checkpointed.
fn fixture(disk: &SimStorage, dir: &str, messages: u64) -> (Log, Index) {
    let log = open(disk, dir);
    let group = ChatId::group(7);
    let create = GroupChange {
        op: GroupOp::Create,
        by: UserId(1),
        users: vec![UserId(2), UserId(3)],
    };
    append(&log, group, 1, Payload::GroupChange(create));
    for n in 1..=messages {
        let chat = if n % 3 == 0 {
            group
        } else {
            ChatId::direct(UserId(1), UserId(2 + n % 2))
        };
        let message = |seq| Message {
            seq: Seq(seq),
            sender: UserId(1),
            sender_device: DeviceId(0),
            client_msg_id: [n as u8; 16],
            content: ContentKind::Text,
            ttl_ms: 0,
            reply_to: None,
            media: Bytes::new(),
            body: Bytes::from(vec![n as u8; 40]),
        };
        let head = next_seq(&log, chat);
        append(&log, chat, 10 + n, Payload::Message(message(head)));
        if n % 4 == 0 {
            let receipt = Receipt {
                user: UserId(2),
                device: DeviceId(1),
                kind: ReceiptKind::Read,
                up_to: Seq(head),
            };
            append(&log, chat, 10 + n, Payload::Receipt(receipt));
        }
    }
    let mut index = Index::empty(&log, Path::new("/index"));
    index.catch_up(&log).unwrap();
    index.checkpoint().unwrap();
    (log, index)
}

/// The fixture's chats' messages (seq, body), newest 100 of each, as `index` answers.
fn answers(log: &Log, index: &Index) -> Vec<Vec<(u64, Bytes)>> {
    let chats = [
        ChatId::group(7),
        ChatId::direct(UserId(1), UserId(2)),
        ChatId::direct(UserId(1), UserId(3)),
    ];
    chats
        .iter()
        .map(|chat| {
            index
                .latest(log, *chat, 100, Timestamp(0))
                .unwrap()
                .into_iter()
                .map(|m| (m.message.seq.0, m.message.body))
                .collect()
        })
        .collect()
}

/// The next seq of `chat`, from an index rebuilt for the purpose (the fixture is small).
fn next_seq(log: &Log, chat: ChatId) -> u64 {
    let mut index = Index::empty(log, Path::new("/index"));
    index.catch_up(log).unwrap();
    index.head(chat).0 + 1
}

#[test]
fn a_good_checkpoint_is_loaded_and_only_the_rest_replayed() {
    let disk = SimStorage::new();
    let (log, index) = fixture(&disk, "/log", 30);
    let (loaded, report) = Index::open(&log, Path::new("/index")).unwrap();
    assert!(
        report.from_checkpoint && report.rejected.is_none(),
        "{report:?}"
    );
    assert_eq!(report.replayed, 0);
    assert_eq!(loaded, index);
    // Two more records after the checkpoint: replay applies exactly those.
    let chat = ChatId::direct(UserId(1), UserId(3));
    let receipt = Receipt {
        user: UserId(3),
        device: DeviceId(0),
        kind: ReceiptKind::Delivered,
        up_to: Seq(1),
    };
    append(&log, chat, 99, Payload::Receipt(receipt));
    append(
        &log,
        chat,
        99,
        Payload::Receipt(Receipt {
            kind: ReceiptKind::Read,
            ..receipt
        }),
    );
    let (loaded, report) = Index::open(&log, Path::new("/index")).unwrap();
    assert_eq!(report.replayed, 2);
    let mut rebuilt = Index::empty(&log, Path::new("/index"));
    rebuilt.catch_up(&log).unwrap();
    assert_eq!(loaded, rebuilt);
}

fn assert_rejected_and_rebuilt(log: &Log, expected: &Index, damage: &str) -> String {
    let (loaded, report) = Index::open(log, Path::new("/index")).unwrap();
    assert!(
        !report.from_checkpoint,
        "{damage}: a damaged checkpoint was trusted"
    );
    assert!(report.rejected.is_some(), "{damage}: no reason given");
    assert_eq!(&loaded, expected, "{damage}: the rebuild differs");
    report.rejected.unwrap()
}

#[test]
fn every_flipped_bit_and_every_truncation_is_rejected() {
    let disk = SimStorage::new();
    let (log, index) = fixture(&disk, "/log", 24);
    let original = disk.file_content(Path::new(INDEX)).unwrap();
    let mut cases = 0;
    for bit in (0..original.len() * 8).step_by(3) {
        let mut damaged = original.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        disk.set_file_content(Path::new(INDEX), damaged);
        let _ = assert_rejected_and_rebuilt(&log, &index, &format!("bit {bit}"));
        cases += 1;
    }
    for len in (0..original.len()).step_by(5) {
        disk.set_file_content(Path::new(INDEX), original[..len].to_vec());
        let _ = assert_rejected_and_rebuilt(&log, &index, &format!("cut at {len}"));
        cases += 1;
    }
    eprintln!(
        "{cases} damaged checkpoints rejected ({} bytes)",
        original.len()
    );
}

#[test]
fn another_version_another_log_or_a_checkpoint_ahead_of_the_log_is_rejected() {
    let disk = SimStorage::new();
    let (log, index) = fixture(&disk, "/log", 12);
    let original = disk.file_content(Path::new(INDEX)).unwrap();

    // A newer version, and the older one this build no longer reads.
    for version in [CHECKPOINT_VERSION + 1, CHECKPOINT_VERSION - 1] {
        let mut other = original.clone();
        other[8..10].copy_from_slice(&version.to_le_bytes());
        disk.set_file_content(Path::new(INDEX), other);
        let reason = assert_rejected_and_rebuilt(&log, &index, &format!("version {version}"));
        assert!(reason.contains("version"), "{reason}");
    }

    // The checkpoint of another log (same shape, other id) in this log's index folder.
    let other = SimStorage::new();
    fixture(&other, "/log", 12);
    disk.set_file_content(
        Path::new(INDEX),
        other.file_content(Path::new(INDEX)).unwrap(),
    );
    let reason = assert_rejected_and_rebuilt(&log, &index, "another log's checkpoint");
    assert!(reason.contains("another log"), "{reason}");

    // A checkpoint reflecting records the log does not hold (it lost them under a lax
    // durability level): trusting it would show messages that do not exist. Made from the
    // checkpoint of a longer log, relabelled with this log's id (and checksummed again), so
    // that only its LSNs are wrong.
    let short_disk = SimStorage::new();
    let (short, short_index) = fixture(&short_disk, "/log", 3);
    let long_disk = SimStorage::new();
    fixture(&long_disk, "/log", 12);
    let mut bytes = long_disk.file_content(Path::new(INDEX)).unwrap();
    bytes[24..32].copy_from_slice(&short.id().to_le_bytes()); // the body starts with the log id
    let body_crc = crc32fast::hash(&bytes[24..]);
    bytes[12..16].copy_from_slice(&body_crc.to_le_bytes());
    short_disk.set_file_content(Path::new(INDEX), bytes);
    let reason = assert_rejected_and_rebuilt(&short, &short_index, "ahead of the log");
    assert!(reason.contains("ahead"), "{reason}");
}

#[test]
fn missing_or_damaged_segment_index_files_are_rebuilt_from_the_log() {
    let disk = SimStorage::new();
    let (log, _) = fixture(&disk, "/log", 60);
    let storage = log.storage();
    let files: Vec<String> = storage
        .list_dir(Path::new("/index"))
        .unwrap()
        .into_iter()
        .filter(|name| name.starts_with("seg-") && name.ends_with(".idx"))
        .collect();
    assert!(files.len() >= 3, "the fixture seals segments: {files:?}");
    let answers = |index: &Index| answers(&log, index);
    let (index, _) = Index::open(&log, Path::new("/index")).unwrap();
    let expected = answers(&index);
    assert_eq!(
        expected.iter().map(Vec::len).sum::<usize>(),
        60,
        "every message answers"
    );
    // One file damaged, one missing, one of another version (1, whose run tables had no
    // heads: its places would be read wrongly): a fresh index (cold cache) still answers the
    // same.
    let path = |k: usize| Path::new("/index").join(&files[k]);
    let mut damaged = disk.file_content(&path(0)).unwrap();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x40;
    disk.set_file_content(&path(0), damaged);
    storage.remove_file(&path(1)).unwrap();
    let current = disk.file_content(&path(2)).unwrap();
    let version = u16::from_le_bytes([current[8], current[9]]);
    let mut older = current.clone();
    older[8..10].copy_from_slice(&(version - 1).to_le_bytes());
    disk.set_file_content(&path(2), older);
    let (index, _) = Index::open(&log, Path::new("/index")).unwrap();
    assert_eq!(answers(&index), expected);
    // And the files were written back, in the current version.
    assert!(storage.exists(&path(1)).unwrap());
    assert_eq!(disk.file_content(&path(2)).unwrap(), current);
}

#[test]
fn deferred_segment_index_files_answer_from_memory_until_written() {
    let disk = SimStorage::new();
    // The same traffic applied twice: once writing files as segments seal, once deferring.
    let (log, eager) = fixture(&disk, "/log", 60);
    let storage = log.storage();
    let idx_files = |dir: &str| -> Vec<String> {
        let mut names: Vec<String> = storage
            .list_dir(Path::new(dir))
            .unwrap_or_default()
            .into_iter()
            .filter(|name| name.starts_with("seg-") && name.ends_with(".idx"))
            .collect();
        names.sort();
        names
    };
    let written = idx_files("/index");
    assert!(
        written.len() >= 2,
        "the fixture seals segments: {written:?}"
    );
    let mut deferred = Index::empty(&log, Path::new("/deferred"));
    deferred.defer_segment_files(true);
    deferred.catch_up(&log).unwrap();
    assert_eq!(deferred, eager);
    // Nothing on disk yet, and every sealed segment waits.
    assert!(idx_files("/deferred").is_empty());
    assert!(deferred.has_unwritten_segment_files());
    let unwritten = deferred.unwritten_segment_files();
    assert_eq!(unwritten.len(), written.len());
    let answers = |index: &Index| answers(&log, index);
    let expected = answers(&eager);
    assert_eq!(expected.iter().map(Vec::len).sum::<usize>(), 60);
    // Answered from memory: still no file (a rebuild from the log would have written one).
    assert_eq!(answers(&deferred), expected);
    assert!(idx_files("/deferred").is_empty());
    // Written by the owner: the same files, byte for byte, as written at sealing.
    for file in &unwritten {
        file.write().unwrap();
        deferred.segment_file_written(file);
    }
    assert!(!deferred.has_unwritten_segment_files());
    assert!(deferred.unwritten_segment_files().is_empty());
    assert_eq!(idx_files("/deferred"), written);
    for name in &written {
        assert_eq!(
            disk.file_content(&Path::new("/deferred").join(name)),
            disk.file_content(&Path::new("/index").join(name)),
            "{name}"
        );
    }
    assert_eq!(answers(&deferred), expected);
}

#[test]
fn opening_removes_segment_files_of_no_live_segment_and_stale_temporaries() {
    let disk = SimStorage::new();
    let (log, _) = fixture(&disk, "/log", 60);
    let storage = log.storage();
    let dir = Path::new("/index");
    let listed = || -> Vec<String> {
        let mut names = storage.list_dir(dir).unwrap();
        names.sort();
        names
    };
    let before = listed();
    let live = before
        .iter()
        .find(|name| name.starts_with("seg-") && name.ends_with(".idx"))
        .expect("the fixture seals segments")
        .clone();
    // A file for a segment the log does not have, a temporary a crash left beside a live
    // file, and files that are none of the index's.
    let orphan = "seg-0001-00000000000999999999.idx";
    let temp = live.replace(".idx", ".tmp");
    for name in [orphan, temp.as_str(), "notes.txt", "seg-1-2.idx"] {
        let file = storage.open(&dir.join(name), true).unwrap();
        file.write_all_at(b"leftover", 0).unwrap();
    }
    let (index, _) = Index::open(&log, dir).unwrap();
    let after = listed();
    assert!(!after.contains(&orphan.to_owned()), "{after:?}");
    assert!(!after.contains(&temp), "{after:?}");
    for kept in ["notes.txt", "seg-1-2.idx"] {
        assert!(after.contains(&kept.to_owned()), "{kept}: {after:?}");
    }
    // The live segment's file is kept and still answers.
    assert!(after.contains(&live));
    let total: usize = answers(&log, &index).iter().map(Vec::len).sum();
    assert_eq!(total, 60);
}
