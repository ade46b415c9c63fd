//! The small id types every layer of Missive shares.
//!
//! They are plain newtypes over integers: cheap to copy, ordered, hashable, and impossible to mix
//! up (a [`Seq`] is not an [`Lsn`]).

use std::fmt;

/// A user account. Allocated by the embedding application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(pub u64);

/// One device of a user: the primary phone (0) and linked companions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub u32);

/// The position of a message in its chat: dense and increasing from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

/// Log sequence number: the position of a record in its shard, dense and increasing from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The first LSN of every shard.
    pub const FIRST: Lsn = Lsn(1);
}

/// Server time in milliseconds since the Unix epoch.
///
/// The log never reads a clock: timestamps come in with the records and `retain` takes its
/// cutoff as an argument, so tests can move time by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }
}

/// A shard of the log. Chats map to shards by [`ChatId::shard`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub u32);

/// A chat: either a 1:1 conversation or a group.
///
/// A 1:1 chat's id packs the ordered pair of its users' ids, `min << 64 | max`, so both sides name
/// the same chat without a lookup and two pairs can never collide (a 64-bit hash of the pair
/// could). Every pair has `high <= low`; group ids use the range no pair can produce,
/// `high = u64::MAX` with `low = n < u64::MAX`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChatId(u128);

impl ChatId {
    /// The largest group number [`ChatId::group`] accepts.
    pub const GROUP_NUMBER_MAX: u64 = u64::MAX - 1;

    /// The 1:1 chat between `a` and `b` (the same for `(a, b)` and `(b, a)`).
    pub const fn direct(a: UserId, b: UserId) -> ChatId {
        let (low_user, high_user) = if a.0 <= b.0 { (a.0, b.0) } else { (b.0, a.0) };
        ChatId(((low_user as u128) << 64) | high_user as u128)
    }

    /// The group chat numbered `number`.
    ///
    /// # Panics
    /// If `number > GROUP_NUMBER_MAX`: that id would be the pair `(u64::MAX, u64::MAX)`.
    pub const fn group(number: u64) -> ChatId {
        assert!(
            number <= Self::GROUP_NUMBER_MAX,
            "group number out of range"
        );
        ChatId(((u64::MAX as u128) << 64) | number as u128)
    }

    /// Rebuilds an id from [`ChatId::to_u128`]. Every `u128` is a valid id.
    pub const fn from_u128(raw: u128) -> ChatId {
        ChatId(raw)
    }

    /// The id as stored on disk and on the wire.
    pub const fn to_u128(self) -> u128 {
        self.0
    }

    const fn halves(self) -> (u64, u64) {
        ((self.0 >> 64) as u64, self.0 as u64)
    }

    /// Whether this is a 1:1 chat.
    pub const fn is_direct(self) -> bool {
        let (high, low) = self.halves();
        high <= low
    }

    /// The two users of a 1:1 chat, lower id first.
    pub const fn direct_users(self) -> Option<(UserId, UserId)> {
        let (high, low) = self.halves();
        if high <= low {
            Some((UserId(high), UserId(low)))
        } else {
            None
        }
    }

    /// The number of a group chat.
    pub const fn group_number(self) -> Option<u64> {
        let (high, low) = self.halves();
        if high > low { Some(low) } else { None }
    }

    /// The shard this chat's records live in, out of `shard_count`.
    ///
    /// This mapping is part of the on-disk contract (the shard count is stored with the log), so
    /// it is a fixed mix of the id's bits, never `std`'s randomly seeded hasher.
    ///
    /// # Panics
    /// If `shard_count == 0`.
    pub fn shard(self, shard_count: u32) -> ShardId {
        assert!(shard_count > 0, "shard_count must be positive");
        let (high, low) = self.halves();
        let mixed = splitmix64(low ^ splitmix64(high));
        ShardId((mixed % u64::from(shard_count)) as u32)
    }
}

/// The finaliser of SplitMix64: a cheap, well-distributed, stable 64-bit mix.
const fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl fmt::Debug for ChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.direct_users(), self.group_number()) {
            (Some((a, b)), _) => write!(f, "ChatId::direct({}, {})", a.0, b.0),
            (_, Some(n)) => write!(f, "ChatId::group({n})"),
            _ => unreachable!("every id is direct or group"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn direct_is_symmetric_and_never_a_group(a: u64, b: u64) {
            let chat = ChatId::direct(UserId(a), UserId(b));
            prop_assert_eq!(chat, ChatId::direct(UserId(b), UserId(a)));
            prop_assert!(chat.is_direct());
            prop_assert_eq!(chat.direct_users(), Some((UserId(a.min(b)), UserId(a.max(b)))));
            prop_assert_eq!(chat.group_number(), None);
        }

        #[test]
        fn groups_never_collide_with_pairs(n in 0..=ChatId::GROUP_NUMBER_MAX, a: u64, b: u64) {
            let group = ChatId::group(n);
            prop_assert_eq!(group.group_number(), Some(n));
            prop_assert!(!group.is_direct());
            prop_assert_ne!(group, ChatId::direct(UserId(a), UserId(b)));
            prop_assert_eq!(ChatId::from_u128(group.to_u128()), group);
        }

        #[test]
        fn shard_is_in_range(raw: u128, count in 1u32..1024) {
            prop_assert!(ChatId::from_u128(raw).shard(count).0 < count);
        }
    }

    #[test]
    fn shard_mapping_is_stable() {
        // These values are part of the on-disk contract: changing the mix moves chats.
        let chat = ChatId::direct(UserId(1), UserId(2));
        assert_eq!(
            chat.shard(16),
            ChatId::direct(UserId(2), UserId(1)).shard(16)
        );
        let spread: std::collections::HashSet<u32> =
            (0..64u64).map(|n| ChatId::group(n).shard(4).0).collect();
        assert_eq!(spread.len(), 4, "64 groups should reach all 4 shards");
    }
}
