//! Helpers shared by the engine's integration tests: a small configuration on a simulated disk
//! with a hand-driven clock, and a snapshot of everything a user can observe.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use missive::log::{ChatId, DeviceId, SimStorage, Timestamp, UserId};
use missive::{ChatSummary, Config, Engine, History, ManualClock, MessageView, Role};

/// Where the hand-driven clocks start: 2023-11-14.
pub const T0: Timestamp = Timestamp(1_700_000_000_000);

/// The engine's folder on the simulated disk.
pub const DIR: &str = "/missive";

/// A small engine: one shard, tiny segments, no background threads (tests drive time and
/// checkpoints by hand; the scrub has a test of its own).
pub fn small_config(clock: &ManualClock) -> Config {
    Config {
        shards: Some(1),
        segment_window: Duration::from_secs(60),
        segment_bytes_max: 4 << 10,
        checkpoint_interval: None,
        retention_interval: None,
        scrub_on_open: false,
        clock: Arc::new(clock.clone()),
        ..Config::default()
    }
}

/// Opens the engine on the simulated disk.
pub fn open_sim(sim: &SimStorage, config: Config) -> Engine {
    Engine::open_with(Arc::new(sim.clone()), DIR, config).expect("open the engine")
}

/// Everything `users` can observe of the chats they are in, and the engine's write counters.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub chats: Vec<(UserId, Vec<ChatSummary>)>,
    pub histories: Vec<(UserId, ChatId, Vec<MessageView>)>,
    pub members: Vec<(ChatId, Vec<(UserId, Role)>)>,
    pub watermarks: Vec<(UserId, ChatId, u64, Vec<u64>)>,
    pub unread: Vec<(UserId, ChatId, u64)>,
    pub writes: [u64; 5],
}

/// Takes a [`Snapshot`] of `users` with devices `0..devices`.
pub fn snapshot(engine: &Engine, users: &[UserId], devices: u32) -> Snapshot {
    let mut snapshot = Snapshot {
        chats: Vec::new(),
        histories: Vec::new(),
        members: Vec::new(),
        watermarks: Vec::new(),
        unread: Vec::new(),
        writes: [0; 5],
    };
    for &user in users {
        let chats = engine.chats(user).expect("chat list");
        for summary in &chats {
            let chat = summary.chat;
            let history = engine
                .history(user, chat, History::Latest(10_000))
                .expect("history");
            snapshot.histories.push((user, chat, history));
            snapshot
                .unread
                .push((user, chat, engine.unread(user, chat).expect("unread")));
            let delivered = (0..devices)
                .map(|d| engine.delivered_up_to(user, DeviceId(d), chat).unwrap().0)
                .collect();
            let read = engine.read_up_to(user, chat).unwrap().0;
            snapshot.watermarks.push((user, chat, read, delivered));
            if !chat.is_direct() {
                snapshot
                    .members
                    .push((chat, engine.members(user, chat).expect("members")));
            }
        }
        snapshot.chats.push((user, chats));
    }
    let stats = engine.stats();
    snapshot.writes = [
        stats.sends,
        stats.receipts,
        stats.deletes,
        stats.group_changes,
        stats.bytes_appended,
    ];
    snapshot
}
