//! What the workloads do: users, chats, groups, the Zipf popularity of chats and the operations
//! every store receives, generated the same way for each of them.

use std::sync::Arc;

use bytes::Bytes;
use missive_benches::{PAYLOAD_BYTES, splitmix64};

/// Chats of the 1:1 workloads. Chat `c` is between users `2c + 1` and `2c + 2`.
pub const CHATS: u64 = 100_000;
/// Zipf exponent of chat (and group) popularity: chat of rank `k` gets weight `1 / (k + 1)^s`.
pub const ZIPF_EXPONENT: f64 = 1.0;
/// Members of every group.
pub const GROUP_MEMBERS: u64 = 256;
/// User ids of group members start here (disjoint from the 1:1 users).
pub const GROUP_USER_BASE: u64 = 10_000_000;
/// Producer threads of the write workloads.
pub const PRODUCERS: usize = 64;
/// Messages the latest-N read returns at most.
pub const LATEST_N: usize = 50;
/// Messages one inbox fetch returns at most.
pub const INBOX_N: usize = 100;
/// Days of timestamps the crash/TTL dataset spans; expiry removes the oldest one.
pub const FILL_DAYS: u64 = 8;
/// One day in milliseconds.
pub const DAY_MS: u64 = 24 * 3600 * 1000;
/// The fill's first timestamp: 2026-01-01T00:00:00Z.
pub const FILL_START_MS: u64 = 1_767_225_600_000;

/// The payload size, for rates.
pub const PAYLOAD_BYTES_F64: f64 = PAYLOAD_BYTES as f64;

const _: () = assert!(PAYLOAD_BYTES == 256);
const _: () = assert!(GROUP_USER_BASE > 2 * CHATS + 2);

/// The two users of 1:1 chat `c`.
pub fn chat_users(c: u64) -> (u64, u64) {
    (2 * c + 1, 2 * c + 2)
}

/// The members of group `g`; the first is its creator.
pub fn group_members(g: u64) -> Vec<u64> {
    (0..GROUP_MEMBERS)
        .map(|m| GROUP_USER_BASE + g * GROUP_MEMBERS + m)
        .collect()
}

/// A Zipf sampler over `0..n` by inverse CDF (binary search in a precomputed table).
#[derive(Clone, Debug)]
pub struct Zipf {
    cdf: Arc<[f64]>,
}

impl Zipf {
    /// Ranks `0..n` with weights `1 / (k + 1)^exponent`.
    ///
    /// # Panics
    /// If `n == 0`.
    pub fn new(n: u64, exponent: f64) -> Zipf {
        assert!(n > 0, "a Zipf distribution needs at least one rank");
        let mut total = 0.0;
        let mut cdf: Vec<f64> = (0..n)
            .map(|k| {
                total += 1.0 / ((k + 1) as f64).powf(exponent);
                total
            })
            .collect();
        for p in &mut cdf {
            *p /= total;
        }
        Zipf { cdf: cdf.into() }
    }

    /// A rank drawn with the generator state `rng`.
    pub fn sample(&self, rng: &mut u64) -> u64 {
        let u = (splitmix64(rng) >> 11) as f64 / (1u64 << 53) as f64;
        let k = self.cdf.partition_point(|&p| p <= u);
        k.min(self.cdf.len() - 1) as u64
    }

    /// The probability of rank `k`.
    #[cfg(test)]
    pub fn probability(&self, k: u64) -> f64 {
        let k = k as usize;
        self.cdf[k] - if k == 0 { 0.0 } else { self.cdf[k - 1] }
    }
}

/// One operation a producer submits.
#[derive(Clone, Debug)]
pub enum Op {
    /// A 1:1 message in chat `chat` from `sender` (one of its two users) to the other.
    Direct {
        /// The chat.
        chat: u64,
        /// Who sends.
        sender: u64,
        /// The sender's id for the message (for Missive's idempotent sends).
        id: [u8; 16],
        /// Server time, ms.
        ts: u64,
        /// 256 bytes.
        body: Bytes,
    },
    /// A message to group `group` from `sender` (a member), stored once with an inbox entry per
    /// other member.
    Group {
        /// The group's number.
        group: u64,
        /// Who sends.
        sender: u64,
        /// The sender's id for it.
        id: [u8; 16],
        /// Server time, ms.
        ts: u64,
        /// 256 bytes.
        body: Bytes,
    },
    /// `user` has read chat `chat` up to `up_to`: raise the watermark, drop the inbox entries.
    Receipt {
        /// Who read.
        user: u64,
        /// The 1:1 chat.
        chat: u64,
        /// The new watermark.
        up_to: u64,
    },
}

/// A client message id unique per producer and message.
pub fn message_id(producer: usize, n: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_le_bytes());
    id[8..12].copy_from_slice(&(producer as u32).to_le_bytes());
    id
}

/// The `n`th 1:1 message of `producer`: a Zipf-popular chat, a random side of it.
pub fn direct_op(
    zipf: &Zipf,
    rng: &mut u64,
    producer: usize,
    n: u64,
    ts: u64,
    bodies: &[Bytes],
) -> Op {
    let chat = zipf.sample(rng);
    let (a, b) = chat_users(chat);
    let sender = if splitmix64(rng) & 1 == 0 { a } else { b };
    Op::Direct {
        chat,
        sender,
        id: message_id(producer, n),
        ts,
        body: bodies[(splitmix64(rng) % bodies.len() as u64) as usize].clone(),
    }
}

/// The `n`th group message of `producer`: a Zipf-popular group of `groups`, a random member.
pub fn group_op(zipf: &Zipf, rng: &mut u64, producer: usize, n: u64, bodies: &[Bytes]) -> Op {
    let group = zipf.sample(rng);
    let member = splitmix64(rng) % GROUP_MEMBERS;
    Op::Group {
        group,
        sender: GROUP_USER_BASE + group * GROUP_MEMBERS + member,
        id: message_id(producer, n),
        ts: 0,
        body: bodies[(splitmix64(rng) % bodies.len() as u64) as usize].clone(),
    }
}

/// The seed of producer `p`'s generator in workload `workload`.
pub fn seed(workload: u64, producer: usize) -> u64 {
    workload.wrapping_mul(0x1000_0000_01B3) ^ (producer as u64 + 1).wrapping_mul(0x9E37_79B9)
}

/// The messages per chat the counted buffered workload leaves (every store receives the same
/// streams): replays the producers' generators.
pub fn direct_heads(zipf: &Zipf, workload: u64, messages: u64) -> Vec<u64> {
    let mut heads = vec![0u64; CHATS as usize];
    let bodies = [Bytes::from_static(&[0u8; 1])];
    for (p, quota) in quotas(messages, PRODUCERS).into_iter().enumerate() {
        let mut rng = seed(workload, p);
        for n in 0..quota {
            if let Op::Direct { chat, .. } = direct_op(zipf, &mut rng, p, n, 0, &bodies) {
                heads[chat as usize] += 1;
            }
        }
    }
    heads
}

/// `total` split across `producers` (the first `total % producers` get one more).
pub fn quotas(total: u64, producers: usize) -> Vec<u64> {
    let per = total / producers as u64;
    (0..producers)
        .map(|p| per + u64::from((p as u64) < total % producers as u64))
        .collect()
}

/// The receipts producer `p` makes, in order: for the chats it owns (`c % PRODUCERS == p`) that
/// hold messages, in popularity order, the first user's read watermark raised in up to 8 steps
/// to the chat's head.
pub fn receipt_ops(heads: &[u64], producer: usize) -> Vec<Op> {
    let mut ops = Vec::new();
    for step in 1..=8u64 {
        for (c, &head) in heads.iter().enumerate().skip(producer).step_by(PRODUCERS) {
            if head == 0 {
                continue;
            }
            let stride = head.div_ceil(8);
            let up_to = (stride * step).min(head);
            let previous = (stride * (step - 1)).min(head);
            if up_to > previous {
                ops.push(Op::Receipt {
                    user: chat_users(c as u64).0,
                    chat: c as u64,
                    up_to,
                });
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_prefers_low_ranks_and_stays_in_range() {
        let zipf = Zipf::new(1000, 1.0);
        let mut rng = 1;
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[zipf.sample(&mut rng) as usize] += 1;
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[500]);
        let expected = zipf.probability(0) * 100_000.0;
        assert!((f64::from(counts[0]) - expected).abs() < expected * 0.1);
    }

    #[test]
    fn heads_match_the_streams_and_receipts_reach_them() {
        let zipf = Zipf::new(CHATS, ZIPF_EXPONENT);
        let heads = direct_heads(&zipf, 1, 1000);
        assert_eq!(heads.iter().sum::<u64>(), 1000);
        let receipts: Vec<Op> = (0..PRODUCERS)
            .flat_map(|p| receipt_ops(&heads, p))
            .collect();
        let mut reached = vec![0u64; CHATS as usize];
        for op in receipts {
            let Op::Receipt { chat, up_to, .. } = op else {
                unreachable!()
            };
            assert!(up_to > reached[chat as usize]);
            reached[chat as usize] = up_to;
        }
        assert_eq!(reached, heads);
    }
}
