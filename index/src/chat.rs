//! Per-chat state, laid out for the common case: most chats are idle, their messages in sealed
//! segments, with no deletions, no disappearing-messages setting and two users.
//!
//! A chat in memory is 96 bytes ([`Chat`]): its head, the two read watermarks of a 1:1 chat and
//! its users' (lowest devices') delivered watermarks, its first sealed span inline, and one
//! pointer to the rarely used rest ([`Extra`]). The runs of
//! its messages in the active segment live beside it, in the shard's [`ActiveRuns`], only while
//! that segment is active; sealing moves them to the segment's index file.

use std::collections::{BTreeMap, HashMap};

use missive_log::{BatchPos, ChatId, DeviceId, Lsn, RecordPos, ShardId, UserId};

/// A run's messages lie within this many bytes of each other in their batch: a chat's next
/// message further away starts a new run. A read of a run then touches only its own few records,
/// not the other chats' records between them (a hot chat with one record in a hundred, in
/// batches of a thousand, would otherwise read most of each batch for one message).
pub(crate) const RUN_GAP_BYTES_MAX: usize = 4096;

/// Whether a message at `body` in the batch at `offset` extends `run`.
pub(crate) fn extends(run: &Run, offset: u64, body_start: usize, previous_end: usize) -> bool {
    run.offset == offset && body_start.saturating_sub(previous_end) <= RUN_GAP_BYTES_MAX
}

/// A run of a chat's consecutive messages stored close together in one batch: where to read
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) first_seq: u64,
    pub(crate) last_seq: u64,
    /// Timestamp of the run's first message: the sparse time index.
    pub(crate) first_ts: u64,
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    /// The LSN of the run's first message and where it starts in the batch's decoded body: a
    /// read starts there instead of walking the records of other chats before it.
    pub(crate) first_lsn: u64,
    pub(crate) body_offset: u32,
    /// Where the run's last record ends in the decoded body (0: not known, read to the end of
    /// the batch): a read of the active segment fetches only the run's bytes. Kept for the
    /// active segment's runs only (it fills what would be padding); sealed runs are sliced out
    /// of a memory map and need no end.
    pub(crate) body_end: u32,
}

impl Run {
    /// Where the run's first record is, and where its bytes end if known.
    pub(crate) fn place(&self, shard: ShardId) -> (RecordPos, Option<u32>) {
        let at = RecordPos {
            batch: BatchPos {
                shard,
                segment: self.segment,
                offset: self.offset,
            },
            body_offset: self.body_offset,
            lsn: Lsn(self.first_lsn),
        };
        (at, (self.body_end != 0).then_some(self.body_end))
    }
}

/// A chat's messages in one sealed segment: their runs are in the segment's index file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SealedSpan {
    pub(crate) segment: u64,
    pub(crate) first_seq: u64,
    pub(crate) last_seq: u64,
    pub(crate) first_ts: u64,
    /// The chat's slot in the directory of the segment's index file and the index of its
    /// first run there: together where its run table is, which a query reads directly instead
    /// of binary-searching a directory that is cold in memory (a dozen cache and TLB misses
    /// per segment). Only a hint: checked against the chat id at the table's head, and the
    /// directory is searched if it does not match.
    pub(crate) slot: u32,
    pub(crate) first_run: u32,
}

impl SealedSpan {
    /// Where the chat's run table should be in the segment's index file: its slot and first
    /// run (see [`SegmentIndex::runs_of`](crate::segment_index::SegmentIndex::runs_of)).
    pub(crate) fn table_hint(&self) -> (usize, usize) {
        (self.slot as usize, self.first_run as usize)
    }
}

/// A chat's sealed spans in seq order (one per sealed segment holding its messages). An idle
/// chat has one or two: the first is kept inline, so it costs no allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Spans {
    #[default]
    None,
    One(SealedSpan),
    Many(Box<[SealedSpan]>),
}

impl Spans {
    pub(crate) fn as_slice(&self) -> &[SealedSpan] {
        match self {
            Spans::None => &[],
            Spans::One(span) => std::slice::from_ref(span),
            Spans::Many(spans) => spans,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Appends a span, growing by exactly one: a chat seals a span per segment it touched, so
    /// this is rare, and a default growth step would give every idle chat spare room.
    pub(crate) fn push(&mut self, span: SealedSpan) {
        *self = match std::mem::take(self) {
            Spans::None => Spans::One(span),
            Spans::One(first) => Spans::Many(Box::new([first, span])),
            Spans::Many(spans) => {
                let mut spans = spans.into_vec();
                spans.reserve_exact(1);
                spans.push(span);
                Spans::Many(spans.into_boxed_slice())
            }
        };
    }

    /// Keeps the spans `keep` accepts.
    pub(crate) fn retain(&mut self, keep: impl FnMut(&SealedSpan) -> bool) {
        let kept: Vec<SealedSpan> = self.as_slice().iter().copied().filter(keep).collect();
        if kept.len() != self.len() {
            *self = Spans::from(kept);
        }
    }
}

impl From<Vec<SealedSpan>> for Spans {
    fn from(spans: Vec<SealedSpan>) -> Spans {
        match spans.len() {
            0 => Spans::None,
            1 => Spans::One(spans[0]),
            _ => Spans::Many(spans.into_boxed_slice()),
        }
    }
}

/// A member's standing in a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// May send and read.
    Member,
    /// May also add, remove, promote and demote.
    Admin,
}

/// What few chats have: deletions, a disappearing-messages setting, group members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Extra {
    /// Seqs deleted for everyone, sorted.
    pub(crate) deleted: Vec<u64>,
    /// The disappearing-messages setting (0: off).
    pub(crate) ttl_ms: u64,
    /// Members, for a group chat.
    pub(crate) members: Option<BTreeMap<UserId, Role>>,
    /// For a group, the head when each member joined: they never receive, read or count as
    /// unread anything at or below it (someone added later does not get earlier messages).
    pub(crate) joined: BTreeMap<UserId, u64>,
}

/// One chat as the index knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Chat {
    /// The last message's seq (0: none yet).
    pub(crate) head: u64,
    /// For a 1:1 chat, the read watermarks of its lower and its higher user id. (A group's are
    /// in the receipts' map: a group has many members and there are few groups.)
    pub(crate) read: [u64; 2],
    /// For a 1:1 chat, per side (as `read`): the delivered watermark of that user's
    /// lowest-numbered device that has one (0: none yet); their other devices' are in the
    /// receipts' map. Kept inline because nearly every 1:1 chat has one per side (sending raises
    /// the sender's device's; a receipt, the recipient's): as a map entry each cost ~45 bytes
    /// of heap and a B-tree descent plus a binary search on every receipt, inline 12 bytes and
    /// nothing to search. The lowest device, not the first seen, so that the layout does not
    /// depend on the order the watermarks arrived in (a rebuild equals the live index).
    pub(crate) delivered: [u64; 2],
    /// The device whose watermark `delivered` holds, per side (0 while that is 0).
    pub(crate) delivered_device: [u32; 2],
    /// Its messages in sealed segments, in seq order: one span per segment, the runs on disk.
    pub(crate) sealed: Spans,
    /// The rest, allocated by the first deletion, TTL setting or group change.
    pub(crate) extra: Option<Box<Extra>>,
}

impl Chat {
    pub(crate) fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    pub(crate) fn ttl_ms(&self) -> u64 {
        self.extra.as_ref().map_or(0, |extra| extra.ttl_ms)
    }

    pub(crate) fn members(&self) -> Option<&BTreeMap<UserId, Role>> {
        self.extra.as_ref()?.members.as_ref()
    }

    /// The head when `user` joined the group (0 for a 1:1 chat, or not a member).
    pub(crate) fn joined(&self, user: UserId) -> u64 {
        self.extra
            .as_ref()
            .and_then(|extra| extra.joined.get(&user).copied())
            .unwrap_or(0)
    }

    pub(crate) fn deleted(&self) -> &[u64] {
        self.extra.as_ref().map_or(&[], |extra| &extra.deleted)
    }

    pub(crate) fn mark_deleted(&mut self, seq: u64) {
        let deleted = &mut self.extra_mut().deleted;
        if let Err(at) = deleted.binary_search(&seq) {
            deleted.insert(at, seq);
        }
    }

    pub(crate) fn is_deleted(&self, seq: u64) -> bool {
        self.deleted().binary_search(&seq).is_ok()
    }

    /// `device`'s delivered watermark on `side` of a 1:1 chat, if the inline slot answers: the
    /// slot's own device, or 0 for a device below it or when the slot is empty (the map holds
    /// only devices above the slot's). `None`: look in the receipts' map.
    pub(crate) fn inline_delivered(&self, side: usize, device: DeviceId) -> Option<u64> {
        let (seq, owner) = (self.delivered[side], self.delivered_device[side]);
        if seq == 0 || device.0 < owner {
            Some(0)
        } else if device.0 == owner {
            Some(seq)
        } else {
            None
        }
    }

    /// Raises `device`'s delivered watermark on `side` of a 1:1 chat to `to` (> 0) if it
    /// belongs inline. Returns what must be raised in the receipts' map instead: nothing, the
    /// device itself (above the slot's), or the slot's previous device, displaced by a lower
    /// one (it has no map entry yet: the map holds only devices above the slot's).
    pub(crate) fn raise_inline_delivered(
        &mut self,
        side: usize,
        device: DeviceId,
        to: u64,
    ) -> Option<(DeviceId, u64)> {
        let (seq, owner) = (&mut self.delivered[side], &mut self.delivered_device[side]);
        if *seq == 0 || device.0 == *owner {
            *owner = device.0;
            *seq = (*seq).max(to);
            None
        } else if device.0 < *owner {
            let displaced = (DeviceId(*owner), *seq);
            (*owner, *seq) = (device.0, to);
            Some(displaced)
        } else {
            Some((device, to))
        }
    }

    /// The inline delivered watermark on `side`, with its device, if there is one.
    pub(crate) fn inline_delivered_entry(&self, side: usize) -> Option<(DeviceId, u64)> {
        (self.delivered[side] > 0)
            .then(|| (DeviceId(self.delivered_device[side]), self.delivered[side]))
    }

    /// Forgets the inline delivered watermark on `side`.
    pub(crate) fn clear_inline_delivered(&mut self, side: usize) {
        (self.delivered[side], self.delivered_device[side]) = (0, 0);
    }
}

/// Which of a 1:1 chat's two read watermarks is `user`'s (`None`: not one of its users).
pub(crate) fn direct_side(chat: ChatId, user: UserId) -> Option<usize> {
    let (low, high) = chat.direct_users()?;
    if user == low {
        Some(0)
    } else if user == high {
        Some(1)
    } else {
        None
    }
}

/// The runs of one shard's active segment, per chat: what sealing moves to the segment's index
/// file. Only chats written since the segment opened have an entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ActiveRuns {
    /// The segment (its first LSN; 0: none yet).
    pub(crate) segment: u64,
    pub(crate) runs: HashMap<ChatId, Vec<Run>>,
}

impl ActiveRuns {
    /// Records that message `seq` (timestamp `ts`) of `chat` is in the batch at `pos`.
    pub(crate) fn push(
        &mut self,
        chat: ChatId,
        seq: u64,
        ts: u64,
        pos: BatchPos,
        lsn: u64,
        body: std::ops::Range<usize>,
    ) {
        let runs = self.runs.entry(chat).or_default();
        if let Some(last) = runs.last_mut()
            && last.segment == pos.segment
            && extends(last, pos.offset, body.start, last.body_end as usize)
        {
            last.last_seq = seq;
            last.body_end = body.end as u32;
            return;
        }
        runs.push(Run {
            first_seq: seq,
            last_seq: seq,
            first_ts: ts,
            segment: pos.segment,
            offset: pos.offset,
            first_lsn: lsn,
            body_offset: body.start as u32,
            body_end: body.end as u32,
        });
    }

    pub(crate) fn of(&self, chat: ChatId) -> &[Run] {
        self.runs.get(&chat).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_chat_is_small() {
        assert_eq!(std::mem::size_of::<Chat>(), 104);
    }

    #[test]
    fn spans_grow_by_one_and_retain() {
        let span = |segment| SealedSpan {
            segment,
            first_seq: segment,
            last_seq: segment,
            first_ts: 0,
            slot: 0,
            first_run: 0,
        };
        let mut spans = Spans::default();
        for segment in 1..=4 {
            spans.push(span(segment));
            assert_eq!(spans.len(), segment as usize);
        }
        spans.retain(|s| s.segment > 3);
        assert_eq!(spans, Spans::One(span(4)));
        spans.retain(|_| false);
        assert_eq!(spans, Spans::None);
    }
}

/// A chat id as a map key: two `u64`s, aligned to 8 bytes. A `u128` key would align each
/// `(key, Chat)` slot to 16 and pad it from 112 bytes to 128, on every chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ChatKey(u64, u64);

impl From<ChatId> for ChatKey {
    fn from(chat: ChatId) -> ChatKey {
        let raw = chat.to_u128();
        ChatKey((raw >> 64) as u64, raw as u64)
    }
}

impl From<ChatKey> for ChatId {
    fn from(key: ChatKey) -> ChatId {
        ChatId::from_u128((u128::from(key.0) << 64) | u128::from(key.1))
    }
}

/// Every chat the index knows, by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Chats(HashMap<ChatKey, Chat>);

impl Chats {
    pub(crate) fn get(&self, chat: ChatId) -> Option<&Chat> {
        self.0.get(&ChatKey::from(chat))
    }

    pub(crate) fn get_mut(&mut self, chat: ChatId) -> Option<&mut Chat> {
        self.0.get_mut(&ChatKey::from(chat))
    }

    /// The chat, created empty if it is new.
    pub(crate) fn entry(&mut self, chat: ChatId) -> &mut Chat {
        self.0.entry(ChatKey::from(chat)).or_default()
    }

    /// Adds a chat; false if it was there already (and is left as it was).
    pub(crate) fn insert_new(&mut self, id: ChatId, chat: Chat) -> bool {
        match self.0.entry(ChatKey::from(id)) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(chat);
                true
            }
        }
    }

    pub(crate) fn reserve(&mut self, additional: usize) {
        self.0.reserve(additional);
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (ChatId, &Chat)> {
        self.0.iter().map(|(key, chat)| (ChatId::from(*key), chat))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (ChatId, &mut Chat)> {
        self.0
            .iter_mut()
            .map(|(key, chat)| (ChatId::from(*key), chat))
    }
}
