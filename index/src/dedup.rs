//! The idempotent-send memory: which `client_msg_id`s a sender used in a chat recently, and
//! which seq the send got.
//!
//! A client that lost the answer to a send retries it with the same `client_msg_id`; the engine
//! looks it up here and returns the original `(seq, timestamp)` instead of storing it twice. The
//! memory is a cache of the log like the rest of the index: every message record carries its
//! sender and client id, so applying the log rebuilds it, and checkpoints keep it.
//!
//! It covers a window of server time (default [`DEDUP_WINDOW_MS`]): per shard, entries older
//! than the window before the newest message applied in that shard are forgotten, and at most
//! [`DEDUP_CAPACITY`] are kept. Per shard, so the state does not depend on how shards' records
//! interleave while applying (a live index and one rebuilt shard by shard agree).
//!
//! **Compact form.** A send is remembered by a 64-bit keyed hash of `(chat, sender,
//! client_msg_id)` and its seq: ~50 bytes per send in memory (a hash table of `hash → seq` and a
//! queue of `(timestamp, hash, seq)` in arrival order) and 24 in a checkpoint, where the whole
//! key took ~130 and 56. A hit is only a candidate: [`Index::find_sent`](crate::Index::find_sent)
//! reads the message at that seq and checks its sender and client id, so a hash collision can
//! never answer a retry with someone else's message (it can at worst make the memory forget
//! the older of the two sends, with odds of about n²/2⁶⁴). The hash is keyed by a secret drawn
//! from the log's random id, so clients cannot aim for collisions.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use missive_log::{ChatId, UserId};

/// How long a `client_msg_id` is remembered by default: five minutes of server time.
pub const DEDUP_WINDOW_MS: u64 = 5 * 60 * 1000;

/// At most this many sends are remembered per shard by default (the oldest go first): bounds
/// the memory (~50 bytes each) and the checkpoint (24 bytes each) at high send rates. At 10,000
/// sends/s in a shard it still covers 100 s of retries.
pub const DEDUP_CAPACITY: usize = 1 << 20;

/// What a remembered send stored: its seq and timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The seq it got.
    pub seq: u64,
    /// The server time it was stored.
    pub timestamp: u64,
}

/// A hasher for keys that are already well-mixed 64-bit hashes: it passes them through.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; anything else is folded in, still correct if slower.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type PassThroughMap = HashMap<u64, u64, BuildHasherDefault<PassThrough>>;

/// The 64-bit keyed hash a send is remembered by. Stable across versions of this crate (it is
/// stored in checkpoints): a multiply–xorshift mix of the key's five words and the secret.
pub(crate) fn key_hash(secret: u64, chat: ChatId, sender: UserId, client_msg_id: [u8; 16]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let chat = chat.to_u128();
    let id = u128::from_le_bytes(client_msg_id);
    let words = [
        (chat >> 64) as u64,
        chat as u64,
        sender.0,
        (id >> 64) as u64,
        id as u64,
    ];
    let mut h = secret ^ K;
    for word in words {
        h = (h ^ word).wrapping_mul(K);
        h ^= h >> 29;
    }
    // splitmix64's finalizer.
    h ^= h >> 30;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// One shard's remembered sends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Dedup {
    /// Key hash → seq.
    pub(crate) sent: PassThroughMap,
    /// `(timestamp, key hash, seq)` in the order applied: what to forget first.
    pub(crate) order: VecDeque<(u64, u64, u64)>,
    /// The newest timestamp applied.
    pub(crate) newest: u64,
}

impl std::fmt::Debug for PassThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PassThrough")
    }
}

impl Dedup {
    /// Remembers that the send hashed to `hash` got `seq` at `timestamp`, and forgets what left
    /// the window or the capacity.
    pub(crate) fn remember(
        &mut self,
        hash: u64,
        seq: u64,
        timestamp: u64,
        window_ms: u64,
        capacity: usize,
    ) {
        self.newest = self.newest.max(timestamp);
        // A collision replaces the older send: the newer one is the likelier retry.
        self.sent.insert(hash, seq);
        self.order.push_back((timestamp, hash, seq));
        let horizon = self.newest.saturating_sub(window_ms);
        while let Some(&(timestamp, hash, seq)) = self.order.front() {
            if timestamp >= horizon && self.order.len() <= capacity {
                break;
            }
            self.order.pop_front();
            // Only if it still maps to this send (not to a newer one with the same hash).
            if self.sent.get(&hash) == Some(&seq) {
                self.sent.remove(&hash);
            }
        }
    }

    /// The seq of the send remembered under `hash`: a candidate, to be checked against the
    /// stored message.
    pub(crate) fn get(&self, hash: u64) -> Option<u64> {
        self.sent.get(&hash).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_what_left_the_window() {
        let mut dedup = Dedup::default();
        let chat = ChatId::direct(UserId(1), UserId(2));
        let key = |n: u8| key_hash(7, chat, UserId(1), [n; 16]);
        for n in 0..10u8 {
            dedup.remember(
                key(n),
                u64::from(n) + 1,
                u64::from(n) * 100,
                250,
                usize::MAX,
            );
        }
        // Newest 900: everything from 650 on is remembered.
        assert_eq!(dedup.get(key(6)), None);
        assert_eq!(dedup.get(key(7)), Some(8));
        assert_eq!(dedup.sent.len(), 3);
        assert_eq!(dedup.order.len(), 3);
        // And by count: the oldest go first.
        dedup.remember(key(10), 11, 950, 250, 2);
        assert_eq!(dedup.get(key(8)), None);
        assert_eq!(dedup.sent.len(), 2);
    }

    #[test]
    fn a_collision_keeps_the_newer_send_and_forgetting_the_older_keeps_it() {
        let mut dedup = Dedup::default();
        dedup.remember(42, 1, 100, 1_000, usize::MAX);
        dedup.remember(42, 2, 200, 1_000, usize::MAX);
        assert_eq!(dedup.get(42), Some(2));
        // The first entry leaves the window; the second still maps.
        dedup.remember(43, 3, 1_150, 1_000, usize::MAX);
        assert_eq!(dedup.get(42), Some(2));
        dedup.remember(44, 4, 1_250, 1_000, usize::MAX);
        assert_eq!(dedup.get(42), None);
    }

    #[test]
    fn the_hash_depends_on_every_part_of_the_key_and_on_the_secret() {
        let chat = ChatId::direct(UserId(1), UserId(2));
        let base = key_hash(1, chat, UserId(1), [0; 16]);
        let mut id = [0u8; 16];
        id[15] = 1;
        for other in [
            key_hash(2, chat, UserId(1), [0; 16]),
            key_hash(1, ChatId::direct(UserId(1), UserId(3)), UserId(1), [0; 16]),
            key_hash(1, chat, UserId(2), [0; 16]),
            key_hash(1, chat, UserId(1), id),
        ] {
            assert_ne!(base, other);
        }
        // Stable: checkpoints store it. A change here needs a new checkpoint version.
        assert_eq!(
            key_hash(0, ChatId::from_u128(0), UserId(0), [0; 16]),
            0xe56f_6dec_7948_6370
        );
    }
}
