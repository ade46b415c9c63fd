//! Helpers shared by the log's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use missive_log::{
    ChatId, Durability, Entry, Log, LogConfig, Lsn, Record, RecordKind, ShardId, SimStorage,
    Timestamp, UserId,
};

/// A small deterministic RNG (xorshift64*), so failures replay from a printed seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

/// The seed from `SEED=` or a fresh one, printed so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{test}: SEED={seed}");
    seed
}

/// A count from the environment (for CI-versus-full runs), or the default.
pub fn count_from_env(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

pub const DIR: &str = "/log";

pub fn config(shards: u32, durability: Durability) -> LogConfig {
    LogConfig {
        shard_count: Some(shards),
        segment_window_ms: 1000,
        segment_bytes_max: 4096,
        durability,
        compression: true,
        huge_pages: false,
    }
}

pub fn open_sim(disk: &SimStorage, config: &LogConfig) -> missive_log::Result<Log> {
    Log::open_with(Arc::new(disk.clone()), Path::new(DIR), config.clone())
}

/// A message whose payload names its chat and number, so reads can be checked.
pub fn message(chat: ChatId, n: u64, timestamp: u64, pad: usize) -> Record {
    let mut payload = format!("{:032x}:{n}:", chat.to_u128()).into_bytes();
    payload.resize(payload.len() + pad, b'x');
    Record {
        kind: RecordKind::Message,
        chat,
        timestamp: Timestamp(timestamp),
        payload: Bytes::from(payload),
    }
}

pub fn chat(n: u64) -> ChatId {
    ChatId::direct(UserId(n), UserId(n + 1000))
}

/// Every readable record of every shard, panicking on a read error.
pub fn read_all(log: &Log) -> Vec<Vec<Entry>> {
    (0..log.shard_count())
        .map(|shard| {
            log.read_from(ShardId(shard), Lsn::FIRST)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap_or_else(|e| panic!("shard {shard}: {e}"))
        })
        .collect()
}
