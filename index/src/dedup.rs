//! The idempotent-send memory: which `client_msg_id`s a sender used in a chat recently, and what
//! the send stored.
//!
//! A client that lost the answer to a send retries it with the same `client_msg_id`; the engine
//! looks it up here and returns the original `(seq, timestamp)` instead of storing it twice. The
//! memory is a cache of the log like the rest of the index: every message record carries its
//! sender and client id, so applying the log rebuilds it, and checkpoints keep it.
//!
//! It covers a window of server time (default [`DEDUP_WINDOW_MS`]): per shard, entries older
//! than the window before the newest message applied in that shard are forgotten. Per shard, so
//! the state does not depend on how shards' records interleave while applying (a live index and
//! one rebuilt shard by shard agree). It costs ~130 bytes per message in the window (at 1,000
//! messages/s and five minutes, ~40 MB).

use std::collections::{HashMap, VecDeque};

use missive_log::ChatId;
use missive_log::UserId;

/// How long a `client_msg_id` is remembered by default: five minutes of server time.
pub const DEDUP_WINDOW_MS: u64 = 5 * 60 * 1000;

/// At most this many sends are remembered per shard by default (the oldest go first): bounds
/// the memory (~130 bytes each) and the checkpoint (56 bytes each) at high send rates. At
/// 10,000 sends/s in a shard it still covers 100 s of retries.
pub const DEDUP_CAPACITY: usize = 1 << 20;

/// The key of a remembered send.
pub(crate) type DedupKey = (ChatId, UserId, [u8; 16]);

/// What a remembered send stored: its seq and timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The seq it got.
    pub seq: u64,
    /// The server time it was stored.
    pub timestamp: u64,
}

/// One shard's remembered sends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Dedup {
    pub(crate) sent: HashMap<DedupKey, Sent>,
    /// Keys in the order applied, with their timestamps: what to forget first.
    pub(crate) order: VecDeque<(u64, DedupKey)>,
    /// The newest timestamp applied.
    pub(crate) newest: u64,
}

impl Dedup {
    pub(crate) fn remember(&mut self, key: DedupKey, sent: Sent, window_ms: u64, capacity: usize) {
        self.newest = self.newest.max(sent.timestamp);
        if self.sent.insert(key, sent).is_none() {
            self.order.push_back((sent.timestamp, key));
        }
        let horizon = self.newest.saturating_sub(window_ms);
        while let Some(&(timestamp, key)) = self.order.front() {
            if timestamp >= horizon && self.order.len() <= capacity {
                break;
            }
            self.order.pop_front();
            self.sent.remove(&key);
        }
    }

    pub(crate) fn get(&self, key: &DedupKey) -> Option<Sent> {
        self.sent.get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_what_left_the_window() {
        let mut dedup = Dedup::default();
        let chat = ChatId::direct(UserId(1), UserId(2));
        let key = |n: u8| (chat, UserId(1), [n; 16]);
        for n in 0..10u8 {
            let sent = Sent {
                seq: u64::from(n) + 1,
                timestamp: u64::from(n) * 100,
            };
            dedup.remember(key(n), sent, 250, usize::MAX);
        }
        // Newest 900: everything from 650 on is remembered.
        assert_eq!(dedup.get(&key(6)), None);
        assert_eq!(dedup.get(&key(7)).map(|s| s.seq), Some(8));
        assert_eq!(dedup.sent.len(), 3);
        assert_eq!(dedup.order.len(), 3);
        // And by count: the oldest go first.
        dedup.remember(
            key(10),
            Sent {
                seq: 11,
                timestamp: 950,
            },
            250,
            2,
        );
        assert_eq!(dedup.get(&key(8)), None);
        assert_eq!(dedup.sent.len(), 2);
    }
}
