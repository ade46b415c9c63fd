//! Resident memory of idle chats and inbox entries, counted exactly.
//!
//! A counting allocator wraps the system one, so the figures are the bytes the index holds on
//! the heap (what `RssAnon` shows, without the allocator's retained free memory and the page
//! granularity that blur it). The scenario is the index benchmark's worst case: 20,000 idle 1:1
//! chats between 40,000 users (each user in one chat, so no per-user cost is shared), 1–3
//! messages each, every message in its own batch, the segment holding them sealed, the index
//! reopened from its checkpoint.
//!
//! Each user's first device's delivered watermark in a 1:1 chat is kept in the chat, so the
//! recipient's device 1 watermark (the "inbox entry" below) costs nothing more; a further
//! device's would be a map entry (~47 bytes).
//!
//! The bound asserted is the target, 256 bytes per idle chat; the measured figures are
//! printed (`cargo test -p missive-index --test memory -- --nocapture`) and recorded in
//! `benches/RESULTS.md`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicIsize, Ordering};

use bytes::Bytes;
use missive_index::Index;
use missive_index::codec::{ContentKind, Message, Payload, Receipt, ReceiptKind};
use missive_log::{ChatId, DeviceId, Durability, Log, LogConfig, Record, Seq, Timestamp, UserId};

/// Live heap bytes of the whole process.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees hold; the counter is only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CHATS: u64 = 20_000;
const WINDOW_MS: u64 = 3_600_000;

fn record(chat: ChatId, ts: u64, payload: Payload) -> Record {
    Record {
        kind: payload.kind(),
        chat,
        timestamp: Timestamp(ts),
        payload: payload.encode(),
    }
}

fn users(c: u64) -> (UserId, UserId) {
    (UserId(1 + 2 * c), UserId(2 + 2 * c))
}

/// Appends every idle chat's messages (round-robin, so each message is in its own batch),
/// optionally one delivered receipt per chat from the recipient's device 1, then a record an
/// hour later that seals the segment holding them.
fn build(log: &Log, receipts: bool) {
    let mut tickets = Vec::new();
    for pass in 0..3u64 {
        for c in (0..CHATS).filter(|c| 1 + c % 3 > pass) {
            let (sender, recipient) = users(c);
            let message = Message {
                seq: Seq(pass + 1),
                sender,
                sender_device: DeviceId(0),
                client_msg_id: [pass as u8; 16],
                content: ContentKind::Text,
                ttl_ms: 0,
                reply_to: None,
                media: Bytes::new(),
                body: Bytes::from_static(&[7; 64]),
            };
            let chat = ChatId::direct(sender, recipient);
            tickets.push(
                log.append(record(chat, 1, Payload::Message(message)))
                    .unwrap(),
            );
        }
    }
    if receipts {
        for c in 0..CHATS {
            let (sender, recipient) = users(c);
            let receipt = Receipt {
                user: recipient,
                device: DeviceId(1),
                kind: ReceiptKind::Delivered,
                up_to: Seq(1 + c % 3),
            };
            let chat = ChatId::direct(sender, recipient);
            tickets.push(
                log.append(record(chat, 1, Payload::Receipt(receipt)))
                    .unwrap(),
            );
        }
    }
    for ticket in tickets {
        ticket.wait().unwrap();
    }
    // Another chat's message in the next window seals the segment.
    let tick = ChatId::direct(UserId(u64::MAX - 1), UserId(u64::MAX));
    let message = Message {
        seq: Seq(1),
        sender: UserId(u64::MAX),
        sender_device: DeviceId(0),
        client_msg_id: [0; 16],
        content: ContentKind::Text,
        ttl_ms: 0,
        reply_to: None,
        media: Bytes::new(),
        body: Bytes::new(),
    };
    log.append(record(tick, 1 + WINDOW_MS, Payload::Message(message)))
        .unwrap()
        .wait()
        .unwrap();
}

/// Heap bytes per idle chat held by an index reopened from its checkpoint.
fn per_chat(receipts: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        shard_count: Some(1),
        segment_window_ms: WINDOW_MS,
        durability: Durability::Os,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path().join("log"), config).unwrap();
    build(&log, receipts);
    let index_dir = dir.path().join("index");
    let (index, _) = Index::open(&log, &index_dir).unwrap();
    index.checkpoint().unwrap();
    drop(index);

    let before = LIVE.load(Ordering::Relaxed);
    let (index, report) = Index::open(&log, Path::new(&index_dir)).unwrap();
    let held = LIVE.load(Ordering::Relaxed) - before;
    assert!(report.from_checkpoint, "{report:?}");
    assert_eq!(index.inbox(users(5).1, DeviceId(0)).len(), 1);
    drop(index);
    held as f64 / CHATS as f64
}

#[test]
fn an_idle_chat_costs_at_most_256_bytes() {
    let chat = per_chat(false);
    let with_inbox = per_chat(true);
    let entry = with_inbox - chat;
    println!(
        "heap per idle chat: {chat:.0} B; per inbox entry (a device's delivered watermark): \
         {entry:.0} B; both: {with_inbox:.0} B ({CHATS} chats, 2 users each, reopened from a \
         checkpoint, segment sealed)"
    );
    assert!(chat <= 256.0, "{chat:.0} B per idle chat");
    assert!(entry <= 96.0, "{entry:.0} B per inbox entry");
}
