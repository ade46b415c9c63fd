//! Who is in which chat, and the receipt watermarks: flat maps keyed by (user, chat), not a
//! map of maps per user. A user in one chat cost ~1 KiB as nested maps (each user's own hash
//! maps and B-trees); flat, an idle 1:1 chat costs a few dozen bytes per entry.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use missive_log::{ChatId, DeviceId, UserId};

const CHAT_MIN: ChatId = ChatId::from_u128(0);
const CHAT_MAX: ChatId = ChatId::from_u128(u128::MAX);

/// Memberships and watermarks. Watermarks only ever rise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Receipts {
    /// The chats each user is in: 1:1 chats with messages, groups while a member. Sorted, so
    /// a user's chats are one range.
    pub(crate) member_of: BTreeSet<(UserId, ChatId)>,
    /// Read watermark per (user, chat).
    pub(crate) read: HashMap<(UserId, ChatId), u64>,
    /// Delivered watermark per (user, chat, device); sorted, so a user's devices in a chat are
    /// one range.
    pub(crate) delivered: BTreeMap<(UserId, ChatId, DeviceId), u64>,
}

impl Receipts {
    pub(crate) fn join(&mut self, user: UserId, chat: ChatId) {
        self.member_of.insert((user, chat));
    }

    pub(crate) fn leave(&mut self, user: UserId, chat: ChatId) {
        self.member_of.remove(&(user, chat));
    }

    pub(crate) fn raise_read(&mut self, user: UserId, chat: ChatId, to: u64) {
        let watermark = self.read.entry((user, chat)).or_default();
        *watermark = (*watermark).max(to);
    }

    pub(crate) fn raise_delivered(
        &mut self,
        user: UserId,
        device: DeviceId,
        chat: ChatId,
        to: u64,
    ) {
        let watermark = self.delivered.entry((user, chat, device)).or_default();
        *watermark = (*watermark).max(to);
    }

    pub(crate) fn read(&self, user: UserId, chat: ChatId) -> u64 {
        self.read.get(&(user, chat)).copied().unwrap_or(0)
    }

    pub(crate) fn delivered(&self, user: UserId, device: DeviceId, chat: ChatId) -> u64 {
        self.delivered
            .get(&(user, chat, device))
            .copied()
            .unwrap_or(0)
    }

    /// Whether any of the user's devices has message `seq` of the chat.
    pub(crate) fn delivered_anywhere(&self, user: UserId, chat: ChatId, seq: u64) -> bool {
        let devices = (user, chat, DeviceId(0))..=(user, chat, DeviceId(u32::MAX));
        self.delivered
            .range(devices)
            .any(|(_, &watermark)| watermark >= seq)
    }

    /// The chats the user is in, in id order.
    pub(crate) fn chats_of(&self, user: UserId) -> impl Iterator<Item = ChatId> + '_ {
        self.member_of
            .range((user, CHAT_MIN)..=(user, CHAT_MAX))
            .map(|(_, chat)| *chat)
    }
}
