//! Who is in which chat, and the watermarks that are not kept in the chats: sorted sets and
//! flat maps keyed by user, not a map of maps per user (a user in one chat cost ~1 KiB as nested
//! maps).
//!
//! A 1:1 chat is listed under both its users as `(user, other user)`: 16 bytes a side, and its
//! id is the pair itself. Read watermarks of 1:1 chats, and the delivered watermark of each
//! user's lowest device there, live in the [`Chat`](crate::chat::Chat).

use std::collections::HashMap;

use missive_log::{ChatId, DeviceId, UserId};

use crate::chunked::ChunkedMap;

fn group_key(user: UserId, chat: ChatId) -> (UserId, u64, u64) {
    let raw = chat.to_u128();
    (user, (raw >> 64) as u64, raw as u64)
}

fn chat_id(high: u64, low: u64) -> ChatId {
    ChatId::from_u128((u128::from(high) << 64) | u128::from(low))
}

/// Memberships and watermarks. Watermarks only ever rise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Receipts {
    /// Each 1:1 chat with messages, as `(user, other)` for both of its users.
    pub(crate) direct: ChunkedMap<(UserId, UserId), ()>,
    /// The groups each user is a member of (the id as two halves, as in `delivered`).
    pub(crate) groups: ChunkedMap<(UserId, u64, u64), ()>,
    /// Read watermark per (user, group).
    pub(crate) group_read: HashMap<(UserId, ChatId), u64>,
    /// Delivered watermark per (user, chat, device): the inbox entries, except each 1:1 chat
    /// user's lowest device's, which is inline in the [`Chat`](crate::chat::Chat) (so a 1:1 chat
    /// has entries here only for its users' further devices). Sorted, so a user's devices in a
    /// chat are one range. (The chat as two `u64`s: a `u128` would align the key
    /// to 16 bytes and pad it from 28 to 32.)
    pub(crate) delivered: ChunkedMap<DeliveredKey, u64>,
}

/// A delivered watermark's key: user, chat (high and low halves), device.
pub(crate) type DeliveredKey = (UserId, u64, u64, DeviceId);

pub(crate) fn delivered_key(user: UserId, chat: ChatId, device: DeviceId) -> DeliveredKey {
    let chat = chat.to_u128();
    (user, (chat >> 64) as u64, chat as u64, device)
}

pub(crate) fn delivered_chat(key: &DeliveredKey) -> ChatId {
    chat_id(key.1, key.2)
}

impl Receipts {
    pub(crate) fn join_direct(&mut self, a: UserId, b: UserId) {
        self.direct.insert((a, b), ());
        self.direct.insert((b, a), ());
    }

    pub(crate) fn join_group(&mut self, user: UserId, chat: ChatId) {
        self.groups.insert(group_key(user, chat), ());
    }

    pub(crate) fn leave_group(&mut self, user: UserId, chat: ChatId) {
        self.groups.remove(&group_key(user, chat));
    }

    /// Every (member, group), by member.
    pub(crate) fn groups(&self) -> impl Iterator<Item = (UserId, ChatId)> + '_ {
        self.groups
            .iter()
            .map(|((user, high, low), ())| (user, chat_id(high, low)))
    }

    pub(crate) fn raise_group_read(&mut self, user: UserId, chat: ChatId, to: u64) {
        let watermark = self.group_read.entry((user, chat)).or_default();
        *watermark = (*watermark).max(to);
    }

    pub(crate) fn group_read(&self, user: UserId, chat: ChatId) -> u64 {
        self.group_read.get(&(user, chat)).copied().unwrap_or(0)
    }

    pub(crate) fn raise_delivered(
        &mut self,
        user: UserId,
        device: DeviceId,
        chat: ChatId,
        to: u64,
    ) {
        if to == 0 {
            return;
        }
        let watermark = self
            .delivered
            .get_or_insert(delivered_key(user, chat, device), 0);
        *watermark = (*watermark).max(to);
    }

    pub(crate) fn delivered(&self, user: UserId, device: DeviceId, chat: ChatId) -> u64 {
        self.delivered
            .get(&delivered_key(user, chat, device))
            .unwrap_or(0)
    }

    /// Forgets the user's watermarks in a group they left: if they join again, they start from
    /// the head at that time, like any new member.
    pub(crate) fn forget(&mut self, user: UserId, chat: ChatId) {
        self.group_read.remove(&(user, chat));
        let keys: Vec<DeliveredKey> = self
            .delivered
            .range(
                delivered_key(user, chat, DeviceId(0)),
                delivered_key(user, chat, DeviceId(u32::MAX)),
            )
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            self.delivered.remove(&key);
        }
    }

    /// Every delivered watermark in the chat of these users.
    pub(crate) fn delivered_in(
        &self,
        chat: ChatId,
        users: &[UserId],
    ) -> Vec<(UserId, DeviceId, missive_log::Seq)> {
        users
            .iter()
            .flat_map(|user| {
                self.delivered
                    .range(
                        delivered_key(*user, chat, DeviceId(0)),
                        delivered_key(*user, chat, DeviceId(u32::MAX)),
                    )
                    .map(|(key, seq)| (key.0, key.3, missive_log::Seq(seq)))
            })
            .collect()
    }

    /// Whether any of the user's devices has message `seq` of the chat.
    pub(crate) fn delivered_anywhere(&self, user: UserId, chat: ChatId, seq: u64) -> bool {
        self.delivered
            .range(
                delivered_key(user, chat, DeviceId(0)),
                delivered_key(user, chat, DeviceId(u32::MAX)),
            )
            .any(|(_, watermark)| watermark >= seq)
    }

    /// The chats the user is in: 1:1 chats, then groups, each in id order. (A 1:1 chat's id is
    /// `min << 64 | max`, so the user's 1:1 chats in `other` order are in id order: those with a
    /// lower other user first, their id's high half being `other < user`, then the rest, high
    /// half `user`. Groups the engine allocates have the high half all ones, so for them the
    /// whole list is in id order.)
    pub(crate) fn chats_of(&self, user: UserId) -> impl Iterator<Item = ChatId> + '_ {
        let direct = self
            .direct
            .range((user, UserId(0)), (user, UserId(u64::MAX)))
            .map(move |((_, other), ())| ChatId::direct(user, other));
        let groups = self
            .groups
            .range((user, 0, 0), (user, u64::MAX, u64::MAX))
            .map(|((_, high, low), ())| chat_id(high, low));
        direct.chain(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chats_of_is_in_id_order() {
        let mut receipts = Receipts::default();
        let me = UserId(50);
        for other in [3, 70, 1, 99, 49, 51] {
            receipts.join_direct(me, UserId(other));
        }
        receipts.join_group(me, ChatId::group(2));
        receipts.join_group(me, ChatId::group(1));
        let chats: Vec<ChatId> = receipts.chats_of(me).collect();
        let mut sorted = chats.clone();
        sorted.sort();
        assert_eq!(chats, sorted);
        assert_eq!(chats.len(), 8);
    }
}
