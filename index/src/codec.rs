//! The payloads of the records the index understands, and their byte layouts.
//!
//! The log stores opaque bytes under a [`RecordKind`]; this module gives each kind its meaning.
//! Every payload starts with a format version byte (1). All integers are little-endian, and each
//! decoder checks lengths and enumerations, returning `None` for anything malformed.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::ops::Range;

use missive_log::{DeviceId, RecordKind, RecordRef, Seq, UserId};

/// The payload format version this build writes and reads.
pub const PAYLOAD_VERSION: u8 = 1;

/// Bytes of a message's media reference, at most.
pub const MEDIA_REF_BYTES_MAX: usize = 1024;

/// Members one group-change record may name.
pub const GROUP_CHANGE_USERS_MAX: usize = 1024;

/// What a message carries (the body itself is opaque, usually ciphertext).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ContentKind {
    /// Text.
    Text = 1,
    /// A photo.
    Image = 2,
    /// A video.
    Video = 3,
    /// A document.
    Document = 4,
    /// A voice note.
    Voice = 5,
    /// A system notice (someone joined, the timer changed, …).
    System = 6,
}

impl ContentKind {
    /// Every kind, in tag order.
    pub const ALL: [ContentKind; 6] = [
        ContentKind::Text,
        ContentKind::Image,
        ContentKind::Video,
        ContentKind::Document,
        ContentKind::Voice,
        ContentKind::System,
    ];

    fn from_tag(tag: u8) -> Option<ContentKind> {
        ContentKind::ALL
            .get(usize::from(tag).checked_sub(1)?)
            .copied()
    }
}

/// A chat message.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | version (1) |
/// | 1 | 1 | content kind |
/// | 2 | 2 | reserved (0) |
/// | 4 | 4 | sender device |
/// | 8 | 8 | seq |
/// | 16 | 8 | sender |
/// | 24 | 16 | client message id |
/// | 40 | 8 | time to live in ms (0: none) |
/// | 48 | 8 | reply-to seq (0: none) |
/// | 56 | 2 | media reference length m |
/// | 58 | m | media reference |
/// | 58+m | rest | body |
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its position in the chat.
    pub seq: Seq,
    /// Who sent it.
    pub sender: UserId,
    /// From which device.
    pub sender_device: DeviceId,
    /// The sender's id for it, for idempotent retries.
    pub client_msg_id: [u8; 16],
    /// What it carries.
    pub content: ContentKind,
    /// Hidden this long after its timestamp (disappearing messages); 0 keeps it.
    pub ttl_ms: u64,
    /// The message it answers.
    pub reply_to: Option<Seq>,
    /// A media reference (content hash, size, key), opaque to the engine.
    pub media: Bytes,
    /// The body, opaque (end-to-end encrypted).
    pub body: Bytes,
}

const MESSAGE_FIXED: usize = 58;

impl Message {
    /// Encodes the payload.
    ///
    /// # Panics
    /// If the media reference is longer than [`MEDIA_REF_BYTES_MAX`].
    pub fn encode(&self) -> Bytes {
        assert!(
            self.media.len() <= MEDIA_REF_BYTES_MAX,
            "media reference too long"
        );
        let mut out = BytesMut::with_capacity(MESSAGE_FIXED + self.media.len() + self.body.len());
        out.put_u8(PAYLOAD_VERSION);
        out.put_u8(self.content as u8);
        out.put_u16_le(0);
        out.put_u32_le(self.sender_device.0);
        out.put_u64_le(self.seq.0);
        out.put_u64_le(self.sender.0);
        out.put_slice(&self.client_msg_id);
        out.put_u64_le(self.ttl_ms);
        out.put_u64_le(self.reply_to.map_or(0, |seq| seq.0));
        out.put_u16_le(self.media.len() as u16);
        out.put_slice(&self.media);
        out.put_slice(&self.body);
        out.freeze()
    }

    /// Decodes a payload; media and body share `payload`'s buffer.
    pub fn decode(payload: &Bytes) -> Option<Message> {
        Message::decode_with(payload, |range| payload.slice(range))
    }

    /// Decodes a payload read in place ([`Log::read_records`](missive_log::Log::read_records)):
    /// media and body share the log's bytes, as with [`Message::decode`].
    pub fn decode_record(record: &RecordRef<'_>) -> Option<Message> {
        Message::decode_with(record.payload, |range| record.share(range))
    }

    /// Decodes `payload`, taking media and body through `share` (given their ranges in it).
    fn decode_with(payload: &[u8], share: impl Fn(Range<usize>) -> Bytes) -> Option<Message> {
        let mut buf = payload;
        if buf.len() < MESSAGE_FIXED || buf.get_u8() != PAYLOAD_VERSION {
            return None;
        }
        let content = ContentKind::from_tag(buf.get_u8())?;
        if buf.get_u16_le() != 0 {
            return None;
        }
        let sender_device = DeviceId(buf.get_u32_le());
        let seq = Seq(buf.get_u64_le());
        let sender = UserId(buf.get_u64_le());
        let mut client_msg_id = [0u8; 16];
        buf.copy_to_slice(&mut client_msg_id);
        let ttl_ms = buf.get_u64_le();
        let reply_to = match buf.get_u64_le() {
            0 => None,
            seq => Some(Seq(seq)),
        };
        let media_len = usize::from(buf.get_u16_le());
        if seq.0 == 0 || media_len > MEDIA_REF_BYTES_MAX || buf.len() < media_len {
            return None;
        }
        let media = share(MESSAGE_FIXED..MESSAGE_FIXED + media_len);
        let body = share(MESSAGE_FIXED + media_len..payload.len());
        Some(Message {
            seq,
            sender,
            sender_device,
            client_msg_id,
            content,
            ttl_ms,
            reply_to,
            media,
            body,
        })
    }

    /// Just the sequence number, without decoding the rest (for scans).
    pub fn peek_seq(payload: &[u8]) -> Option<Seq> {
        if payload.len() < MESSAGE_FIXED || payload[0] != PAYLOAD_VERSION {
            return None;
        }
        Some(Seq(u64::from_le_bytes(payload[8..16].try_into().ok()?)))
    }
}

/// Which receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReceiptKind {
    /// The device received the messages.
    Delivered = 1,
    /// The user read them.
    Read = 2,
}

/// A receipt watermark: `user`'s `device` has received (or the user has read) every message of
/// the chat up to `up_to`.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | version (1) |
/// | 1 | 1 | kind: 1 delivered, 2 read |
/// | 2 | 2 | reserved (0) |
/// | 4 | 4 | device |
/// | 8 | 8 | user |
/// | 16 | 8 | up to seq |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Whose receipt.
    pub user: UserId,
    /// From which device.
    pub device: DeviceId,
    /// Delivered or read.
    pub kind: ReceiptKind,
    /// Every message up to this one.
    pub up_to: Seq,
}

impl Receipt {
    /// Encodes the payload.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(24);
        out.put_u8(PAYLOAD_VERSION);
        out.put_u8(self.kind as u8);
        out.put_u16_le(0);
        out.put_u32_le(self.device.0);
        out.put_u64_le(self.user.0);
        out.put_u64_le(self.up_to.0);
        out.freeze()
    }

    /// Decodes a payload.
    pub fn decode(mut buf: &[u8]) -> Option<Receipt> {
        if buf.len() != 24 || buf.get_u8() != PAYLOAD_VERSION {
            return None;
        }
        let kind = match buf.get_u8() {
            1 => ReceiptKind::Delivered,
            2 => ReceiptKind::Read,
            _ => return None,
        };
        if buf.get_u16_le() != 0 {
            return None;
        }
        let device = DeviceId(buf.get_u32_le());
        let user = UserId(buf.get_u64_le());
        let up_to = Seq(buf.get_u64_le());
        Some(Receipt {
            user,
            device,
            kind,
            up_to,
        })
    }
}

/// Delete-for-everyone: message `seq` of the chat is gone.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | version (1) |
/// | 1 | 7 | reserved (0) |
/// | 8 | 8 | seq |
/// | 16 | 8 | by user |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tombstone {
    /// The deleted message.
    pub seq: Seq,
    /// Who deleted it.
    pub by: UserId,
}

impl Tombstone {
    /// Encodes the payload.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(24);
        out.put_u8(PAYLOAD_VERSION);
        out.put_slice(&[0; 7]);
        out.put_u64_le(self.seq.0);
        out.put_u64_le(self.by.0);
        out.freeze()
    }

    /// Decodes a payload.
    pub fn decode(mut buf: &[u8]) -> Option<Tombstone> {
        if buf.len() != 24 || buf.get_u8() != PAYLOAD_VERSION || buf[..7] != [0; 7] {
            return None;
        }
        buf.advance(7);
        Some(Tombstone {
            seq: Seq(buf.get_u64_le()),
            by: UserId(buf.get_u64_le()),
        })
    }
}

/// What a group change does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum GroupOp {
    /// Creates the group; `by` becomes its first admin, `users` its other members.
    Create = 1,
    /// Adds members.
    Add = 2,
    /// Removes members (or, with `by` among `users`, leaves).
    Remove = 3,
    /// Makes members admins.
    Promote = 4,
    /// Makes admins plain members.
    Demote = 5,
}

/// A change of a group's membership. Authorization is the engine's job before it appends one;
/// the index applies what the log holds.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | version (1) |
/// | 1 | 1 | op |
/// | 2 | 2 | user count n |
/// | 4 | 4 | reserved (0) |
/// | 8 | 8 | by user |
/// | 16 | 8·n | users |
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupChange {
    /// What it does.
    pub op: GroupOp,
    /// Who did it.
    pub by: UserId,
    /// To whom.
    pub users: Vec<UserId>,
}

impl GroupChange {
    /// Encodes the payload.
    ///
    /// # Panics
    /// If it names more than [`GROUP_CHANGE_USERS_MAX`] users.
    pub fn encode(&self) -> Bytes {
        assert!(
            self.users.len() <= GROUP_CHANGE_USERS_MAX,
            "too many users in one change"
        );
        let mut out = BytesMut::with_capacity(16 + 8 * self.users.len());
        out.put_u8(PAYLOAD_VERSION);
        out.put_u8(self.op as u8);
        out.put_u16_le(self.users.len() as u16);
        out.put_u32_le(0);
        out.put_u64_le(self.by.0);
        for user in &self.users {
            out.put_u64_le(user.0);
        }
        out.freeze()
    }

    /// Decodes a payload.
    pub fn decode(mut buf: &[u8]) -> Option<GroupChange> {
        if buf.len() < 16 || buf.get_u8() != PAYLOAD_VERSION {
            return None;
        }
        let op = match buf.get_u8() {
            1 => GroupOp::Create,
            2 => GroupOp::Add,
            3 => GroupOp::Remove,
            4 => GroupOp::Promote,
            5 => GroupOp::Demote,
            _ => return None,
        };
        let count = usize::from(buf.get_u16_le());
        if buf.get_u32_le() != 0 || count > GROUP_CHANGE_USERS_MAX || buf.len() != 8 + 8 * count {
            return None;
        }
        let by = UserId(buf.get_u64_le());
        let users = (0..count).map(|_| UserId(buf.get_u64_le())).collect();
        Some(GroupChange { op, by, users })
    }
}

/// A chat's disappearing-messages setting changed: messages sent from now on carry `ttl_ms`
/// (0: off). The engine writes each message's own TTL; this records the setting.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | version (1) |
/// | 1 | 7 | reserved (0) |
/// | 8 | 8 | ttl ms |
/// | 16 | 8 | by user |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// The new time to live of the chat's messages, in ms; 0 turns it off.
    pub ttl_ms: u64,
    /// Who changed it.
    pub by: UserId,
}

impl Expiry {
    /// Encodes the payload.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(24);
        out.put_u8(PAYLOAD_VERSION);
        out.put_slice(&[0; 7]);
        out.put_u64_le(self.ttl_ms);
        out.put_u64_le(self.by.0);
        out.freeze()
    }

    /// Decodes a payload.
    pub fn decode(mut buf: &[u8]) -> Option<Expiry> {
        if buf.len() != 24 || buf.get_u8() != PAYLOAD_VERSION || buf[..7] != [0; 7] {
            return None;
        }
        buf.advance(7);
        Some(Expiry {
            ttl_ms: buf.get_u64_le(),
            by: UserId(buf.get_u64_le()),
        })
    }
}

/// A chat's long-lived state, written to the log before retention removes the records it came
/// from, so a rebuild from what the log still holds (after losing the checkpoint) restores
/// heads (seqs are never reused), group members and roles, the disappearing-messages setting,
/// deletions and watermarks.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | version (1) |
/// | 1 | 1 | flags: bit 0 = a group (members follow) |
/// | 2 | 6 | reserved (0) |
/// | 8 | 8 | head seq |
/// | 16 | 8 | ttl ms |
/// | 24 | 4 | members `m`, then `m` × (user 8, role 1: 0 member, 1 admin, joined at seq 8) |
/// | … | 4 | read watermarks `r`, then `r` × (user 8, seq 8) |
/// | … | 4 | delivered watermarks `d`, then `d` × (user 8, device 4, seq 8) |
/// | … | 4 | deleted seqs `x`, then `x` × seq 8 |
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatState {
    /// The chat's head seq.
    pub head: Seq,
    /// Its disappearing-messages setting (0: off).
    pub ttl_ms: u64,
    /// For a group: its members (`None`: not a group).
    pub members: Option<Vec<SnapshotMember>>,
    /// Read watermarks.
    pub read: Vec<(UserId, Seq)>,
    /// Delivered watermarks.
    pub delivered: Vec<(UserId, DeviceId, Seq)>,
    /// Seqs deleted for everyone.
    pub deleted: Vec<Seq>,
}

/// A group member in a [`ChatState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotMember {
    /// Who.
    pub user: UserId,
    /// An admin.
    pub admin: bool,
    /// The group's head when they joined.
    pub joined: Seq,
}

impl ChatState {
    /// Encodes the payload.
    pub fn encode(&self) -> Bytes {
        let members = self.members.as_deref().unwrap_or(&[]);
        let mut out = BytesMut::with_capacity(
            40 + members.len() * 17
                + self.read.len() * 16
                + self.delivered.len() * 20
                + self.deleted.len() * 8,
        );
        out.put_u8(PAYLOAD_VERSION);
        out.put_u8(u8::from(self.members.is_some()));
        out.put_slice(&[0; 6]);
        out.put_u64_le(self.head.0);
        out.put_u64_le(self.ttl_ms);
        out.put_u32_le(members.len() as u32);
        for member in members {
            out.put_u64_le(member.user.0);
            out.put_u8(u8::from(member.admin));
            out.put_u64_le(member.joined.0);
        }
        out.put_u32_le(self.read.len() as u32);
        for (user, seq) in &self.read {
            out.put_u64_le(user.0);
            out.put_u64_le(seq.0);
        }
        out.put_u32_le(self.delivered.len() as u32);
        for (user, device, seq) in &self.delivered {
            out.put_u64_le(user.0);
            out.put_u32_le(device.0);
            out.put_u64_le(seq.0);
        }
        out.put_u32_le(self.deleted.len() as u32);
        for seq in &self.deleted {
            out.put_u64_le(seq.0);
        }
        out.freeze()
    }

    /// Decodes a payload (`None` if malformed: counts are checked against the bytes left).
    pub fn decode(mut buf: &[u8]) -> Option<ChatState> {
        fn count(buf: &mut &[u8], each: usize) -> Option<usize> {
            if buf.len() < 4 {
                return None;
            }
            let n = buf.get_u32_le() as usize;
            (n.checked_mul(each)? <= buf.len()).then_some(n)
        }
        if buf.len() < 28 || buf.get_u8() != PAYLOAD_VERSION {
            return None;
        }
        let flags = buf.get_u8();
        if flags > 1 || buf[..6] != [0; 6] {
            return None;
        }
        buf.advance(6);
        let head = Seq(buf.get_u64_le());
        let ttl_ms = buf.get_u64_le();
        let mut members = Vec::new();
        for _ in 0..count(&mut buf, 17)? {
            let user = UserId(buf.get_u64_le());
            let admin = match buf.get_u8() {
                0 => false,
                1 => true,
                _ => return None,
            };
            let joined = Seq(buf.get_u64_le());
            members.push(SnapshotMember {
                user,
                admin,
                joined,
            });
        }
        if flags == 0 && !members.is_empty() {
            return None;
        }
        let read = (0..count(&mut buf, 16)?)
            .map(|_| (UserId(buf.get_u64_le()), Seq(buf.get_u64_le())))
            .collect();
        let delivered = (0..count(&mut buf, 20)?)
            .map(|_| {
                (
                    UserId(buf.get_u64_le()),
                    DeviceId(buf.get_u32_le()),
                    Seq(buf.get_u64_le()),
                )
            })
            .collect();
        let deleted = (0..count(&mut buf, 8)?)
            .map(|_| Seq(buf.get_u64_le()))
            .collect();
        buf.is_empty().then_some(ChatState {
            head,
            ttl_ms,
            members: (flags == 1).then_some(members),
            read,
            delivered,
            deleted,
        })
    }
}

/// Any payload, decoded by its record kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A message.
    Message(Message),
    /// A receipt watermark.
    Receipt(Receipt),
    /// A delete-for-everyone.
    Tombstone(Tombstone),
    /// A membership change.
    GroupChange(GroupChange),
    /// A disappearing-messages setting.
    Expiry(Expiry),
    /// A chat's state, summarising records retention is about to remove.
    Snapshot(ChatState),
}

impl Payload {
    /// Decodes `payload` as `kind` says.
    pub fn decode(kind: RecordKind, payload: &Bytes) -> Option<Payload> {
        Some(match kind {
            RecordKind::Message => Payload::Message(Message::decode(payload)?),
            RecordKind::Receipt => Payload::Receipt(Receipt::decode(payload)?),
            RecordKind::Tombstone => Payload::Tombstone(Tombstone::decode(payload)?),
            RecordKind::GroupChange => Payload::GroupChange(GroupChange::decode(payload)?),
            RecordKind::Expiry => Payload::Expiry(Expiry::decode(payload)?),
            RecordKind::Snapshot => Payload::Snapshot(ChatState::decode(payload)?),
            _ => return None,
        })
    }

    /// The record kind this payload is stored under.
    pub fn kind(&self) -> RecordKind {
        match self {
            Payload::Message(_) => RecordKind::Message,
            Payload::Receipt(_) => RecordKind::Receipt,
            Payload::Tombstone(_) => RecordKind::Tombstone,
            Payload::GroupChange(_) => RecordKind::GroupChange,
            Payload::Expiry(_) => RecordKind::Expiry,
            Payload::Snapshot(_) => RecordKind::Snapshot,
        }
    }

    /// Encodes the payload.
    pub fn encode(&self) -> Bytes {
        match self {
            Payload::Message(m) => m.encode(),
            Payload::Receipt(r) => r.encode(),
            Payload::Tombstone(t) => t.encode(),
            Payload::GroupChange(g) => g.encode(),
            Payload::Expiry(e) => e.encode(),
            Payload::Snapshot(s) => s.encode(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_payload() -> impl Strategy<Value = Payload> {
        let message = (
            1u64..u64::MAX,
            any::<u64>(),
            any::<u32>(),
            any::<[u8; 16]>(),
            proptest::sample::select(ContentKind::ALL.to_vec()),
            any::<u64>(),
            proptest::option::of(1u64..u64::MAX),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(
                |(seq, sender, device, id, content, ttl_ms, reply, media, body)| {
                    Payload::Message(Message {
                        seq: Seq(seq),
                        sender: UserId(sender),
                        sender_device: DeviceId(device),
                        client_msg_id: id,
                        content,
                        ttl_ms,
                        reply_to: reply.map(Seq),
                        media: Bytes::from(media),
                        body: Bytes::from(body),
                    })
                },
            );
        let receipt = (any::<u64>(), any::<u32>(), any::<bool>(), any::<u64>()).prop_map(
            |(user, device, read, up_to)| {
                let kind = if read {
                    ReceiptKind::Read
                } else {
                    ReceiptKind::Delivered
                };
                Payload::Receipt(Receipt {
                    user: UserId(user),
                    device: DeviceId(device),
                    kind,
                    up_to: Seq(up_to),
                })
            },
        );
        let group = (
            1u8..=5,
            any::<u64>(),
            proptest::collection::vec(any::<u64>(), 0..20),
        )
            .prop_map(|(op, by, users)| {
                let op = [
                    GroupOp::Create,
                    GroupOp::Add,
                    GroupOp::Remove,
                    GroupOp::Promote,
                    GroupOp::Demote,
                ][usize::from(op - 1)];
                Payload::GroupChange(GroupChange {
                    op,
                    by: UserId(by),
                    users: users.into_iter().map(UserId).collect(),
                })
            });
        prop_oneof![
            message,
            receipt,
            group,
            (any::<u64>(), any::<u64>()).prop_map(|(s, b)| Payload::Tombstone(Tombstone {
                seq: Seq(s),
                by: UserId(b)
            })),
            (any::<u64>(), any::<u64>()).prop_map(|(t, b)| Payload::Expiry(Expiry {
                ttl_ms: t,
                by: UserId(b)
            })),
            (
                any::<u64>(),
                any::<u64>(),
                proptest::option::of(proptest::collection::vec(
                    (any::<u64>(), any::<bool>(), any::<u64>()),
                    0..8,
                )),
                proptest::collection::vec((any::<u64>(), any::<u64>()), 0..8),
                proptest::collection::vec((any::<u64>(), any::<u32>(), any::<u64>()), 0..8),
                proptest::collection::vec(any::<u64>(), 0..8),
            )
                .prop_map(|(head, ttl_ms, members, read, delivered, deleted)| {
                    Payload::Snapshot(ChatState {
                        head: Seq(head),
                        ttl_ms,
                        members: members.map(|m| {
                            m.into_iter()
                                .map(|(u, a, j)| SnapshotMember {
                                    user: UserId(u),
                                    admin: a,
                                    joined: Seq(j),
                                })
                                .collect()
                        }),
                        read: read.into_iter().map(|(u, s)| (UserId(u), Seq(s))).collect(),
                        delivered: delivered
                            .into_iter()
                            .map(|(u, d, s)| (UserId(u), DeviceId(d), Seq(s)))
                            .collect(),
                        deleted: deleted.into_iter().map(Seq).collect(),
                    })
                }),
        ]
    }

    proptest! {
        #[test]
        fn payloads_round_trip(payload in arb_payload()) {
            let bytes = payload.encode();
            prop_assert_eq!(Payload::decode(payload.kind(), &bytes), Some(payload.clone()));
            if let Payload::Message(message) = &payload {
                prop_assert_eq!(Message::peek_seq(&bytes), Some(message.seq));
            }
        }

        #[test]
        fn truncated_or_extended_payloads_are_rejected_or_differ(payload in arb_payload(), cut in 0usize..64) {
            let bytes = payload.encode();
            let short = bytes.slice(..bytes.len().saturating_sub(cut + 1));
            // A message body may be any length, so cutting it still decodes, to a different value.
            match Payload::decode(payload.kind(), &short) {
                None => {}
                Some(decoded) => prop_assert_ne!(decoded, payload),
            }
        }
    }
}
