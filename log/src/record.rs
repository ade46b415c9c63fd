//! The record model: what one log entry carries.
//!
//! The log knows a record only as a kind, a chat, a timestamp and opaque bytes. What a payload
//! means (a message, a receipt watermark, a group change) is the engine's business.

use bytes::Bytes;

use crate::ids::{ChatId, Lsn, Timestamp};

/// What a record is, so that readers can skip what they do not need without decoding payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum RecordKind {
    /// A chat message.
    Message = 1,
    /// A delete-for-everyone tombstone naming an earlier message.
    Tombstone = 2,
    /// A receipt watermark: delivered or read up to a sequence number.
    Receipt = 3,
    /// A group change: create, add, remove, promote.
    GroupChange = 4,
    /// An expiry: messages of a chat up to a point are gone.
    Expiry = 5,
    /// A snapshot of a chat's long-lived state (head, members, watermarks), written before
    /// retention removes the records it summarises.
    Snapshot = 6,
}

impl RecordKind {
    /// Every kind, in tag order.
    pub const ALL: [RecordKind; 6] = [
        RecordKind::Message,
        RecordKind::Tombstone,
        RecordKind::Receipt,
        RecordKind::GroupChange,
        RecordKind::Expiry,
        RecordKind::Snapshot,
    ];

    /// The kind's tag on disk.
    pub const fn tag(self) -> u8 {
        self as u8
    }

    /// The kind with this tag, if any.
    pub const fn from_tag(tag: u8) -> Option<RecordKind> {
        Some(match tag {
            1 => RecordKind::Message,
            2 => RecordKind::Tombstone,
            3 => RecordKind::Receipt,
            4 => RecordKind::GroupChange,
            5 => RecordKind::Expiry,
            6 => RecordKind::Snapshot,
            _ => return None,
        })
    }
}

/// One entry of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// What the record is.
    pub kind: RecordKind,
    /// The chat it belongs to; this picks its shard.
    pub chat: ChatId,
    /// Server time of the record. It picks the segment's time window, so retention can drop it.
    pub timestamp: Timestamp,
    /// Opaque bytes, at most [`RECORD_PAYLOAD_BYTES_MAX`](crate::RECORD_PAYLOAD_BYTES_MAX).
    pub payload: Bytes,
}

/// A record read back, with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The record's position in its shard.
    pub lsn: Lsn,
    /// The record.
    pub record: Record,
}

/// Layout of one record inside a batch body, little-endian, offsets derived in order:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | kind tag |
/// | 1 | 1 | flags (0) |
/// | 2 | 2 | reserved (0) |
/// | 4 | 4 | payload length |
/// | 8 | 16 | chat id |
/// | 24 | 8 | timestamp (ms) |
/// | 32 | n | payload |
pub(crate) mod layout {
    pub(crate) const KIND: usize = 0;
    pub(crate) const FLAGS: usize = KIND + 1;
    pub(crate) const RESERVED: usize = FLAGS + 1;
    pub(crate) const PAYLOAD_LEN: usize = RESERVED + 2;
    pub(crate) const CHAT: usize = PAYLOAD_LEN + 4;
    pub(crate) const TIMESTAMP: usize = CHAT + 16;
    pub(crate) const END: usize = TIMESTAMP + 8;
}

/// Bytes of a record's fixed header inside a batch body.
pub const RECORD_HEADER_LEN: usize = layout::END;
const _: () = assert!(RECORD_HEADER_LEN == 32);

impl Record {
    /// Bytes this record takes inside an uncompressed batch body.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + self.payload.len()
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        debug_assert!(self.payload.len() <= crate::RECORD_PAYLOAD_BYTES_MAX);
        out.push(self.kind.tag());
        out.push(0);
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.chat.to_u128().to_le_bytes());
        out.extend_from_slice(&self.timestamp.0.to_le_bytes());
        out.extend_from_slice(&self.payload);
    }
}
