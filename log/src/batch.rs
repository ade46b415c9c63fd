//! The on-disk batch: the unit the log writes, checksums and reads.
//!
//! A segment file is nothing but batches back to back. Each batch is a fixed 64-byte header and a
//! body holding its [`Record`]s (their layout is in `ARCHITECTURE.md`), optionally compressed
//! with lz4 when that saves at least a quarter. All integers are little-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `MSVB` |
//! | 4 | 4 | CRC-32 of the log id (8 bytes LE), header bytes 8..64 and the body |
//! | 8 | 2 | format version (1) |
//! | 10 | 1 | codec: 0 none, 1 lz4 block |
//! | 11 | 1 | flags (0) |
//! | 12 | 4 | body length on disk |
//! | 16 | 4 | body length uncompressed |
//! | 20 | 4 | record count (≥ 1) |
//! | 24 | 4 | shard |
//! | 28 | 4 | reserved (0) |
//! | 32 | 8 | segment (its first LSN) |
//! | 40 | 8 | first LSN of the batch |
//! | 48 | 8 | smallest record timestamp (ms) |
//! | 56 | 8 | largest record timestamp (ms) |
//!
//! The checksum covers the shard, segment and LSN, and is seeded with the log's random id, so a
//! batch written to the wrong place, copied from another log, or smuggled inside a payload is
//! detected instead of replayed.

use bytes::Bytes;

use crate::ChatId;
use crate::error::CorruptKind;
use crate::ids::{Lsn, Timestamp};
use crate::limits::{BATCH_BODY_BYTES_MAX, BATCH_RECORDS_MAX, RECORD_PAYLOAD_BYTES_MAX};
use crate::record::{self, RECORD_HEADER_LEN, Record, RecordKind};

/// The first four bytes of every batch.
pub const BATCH_MAGIC: [u8; 4] = *b"MSVB";

/// The batch format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// Offsets of the header fields, each derived from the previous one.
pub(crate) mod layout {
    pub(crate) const MAGIC: usize = 0;
    pub(crate) const CRC: usize = MAGIC + 4;
    pub(crate) const VERSION: usize = CRC + 4;
    pub(crate) const CODEC: usize = VERSION + 2;
    pub(crate) const FLAGS: usize = CODEC + 1;
    pub(crate) const BODY_LEN: usize = FLAGS + 1;
    pub(crate) const RAW_LEN: usize = BODY_LEN + 4;
    pub(crate) const COUNT: usize = RAW_LEN + 4;
    pub(crate) const SHARD: usize = COUNT + 4;
    pub(crate) const RESERVED: usize = SHARD + 4;
    pub(crate) const SEGMENT: usize = RESERVED + 4;
    pub(crate) const FIRST_LSN: usize = SEGMENT + 8;
    pub(crate) const TS_MIN: usize = FIRST_LSN + 8;
    pub(crate) const TS_MAX: usize = TS_MIN + 8;
    pub(crate) const END: usize = TS_MAX + 8;
    /// The checksum covers everything after its own field.
    pub(crate) const CHECKED: usize = CRC + 4;
}

/// Bytes of a batch header.
pub const BATCH_HEADER_LEN: usize = layout::END;
const _: () = assert!(BATCH_HEADER_LEN == 64);

/// How a batch body is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// The records as they are.
    None = 0,
    /// An lz4 block of the records.
    Lz4 = 1,
}

/// Where a batch belongs. Decoding checks the header against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPlace {
    /// The log's random id (seeds the checksum).
    pub log_id: u64,
    /// The shard.
    pub shard: u32,
    /// The segment, named by its first LSN.
    pub segment: u64,
}

/// A parsed batch header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// How the body is stored.
    pub codec: Codec,
    /// Body bytes on disk.
    pub body_len: u32,
    /// Body bytes after decompression.
    pub raw_len: u32,
    /// Records in the batch.
    pub count: u32,
    /// The shard that wrote it.
    pub shard: u32,
    /// The segment it was written to.
    pub segment: u64,
    /// LSN of its first record; the others follow densely.
    pub first_lsn: Lsn,
    /// Smallest record timestamp.
    pub ts_min: Timestamp,
    /// Largest record timestamp.
    pub ts_max: Timestamp,
}

impl BatchHeader {
    /// Header plus body: the bytes the batch takes in its segment.
    pub fn total_len(&self) -> u64 {
        BATCH_HEADER_LEN as u64 + u64::from(self.body_len)
    }

    /// The LSN after the batch's last record.
    pub fn end_lsn(&self) -> Lsn {
        Lsn(self.first_lsn.0 + u64::from(self.count))
    }

    /// The part of the decoded body a reader of the record at `body_offset` with LSN `lsn` needs:
    /// from that record to `body_end` (clamped to the body; an end at or before the record gives
    /// an empty range), or `None` if no record of this batch can be there.
    ///
    /// O(1), so necessary rather than sufficient: the LSN must be one of the batch's, and the
    /// offset must leave at least a record header for each record before it and after it.
    pub(crate) fn record_range(
        &self,
        body_offset: u32,
        lsn: Lsn,
        body_end: Option<u32>,
    ) -> Option<RecordRange> {
        let index = lsn.0.checked_sub(self.first_lsn.0)?;
        if index >= u64::from(self.count) {
            return None;
        }
        // Below `count`, itself at most BATCH_RECORDS_MAX.
        let index = index as u32;
        let left = self.count - index;
        let (start, raw_len) = (body_offset as usize, self.raw_len as usize);
        let room = index as usize * RECORD_HEADER_LEN <= start
            && start < raw_len
            && left as usize * RECORD_HEADER_LEN <= raw_len - start;
        if !room {
            return None;
        }
        let end = body_end.map_or(raw_len, |end| (end as usize).clamp(start, raw_len));
        Some(RecordRange {
            start,
            end,
            lsn,
            left,
            cut: end < raw_len,
        })
    }
}

/// A byte range of a batch's decoded body starting at a record, from
/// [`BatchHeader::record_range`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordRange {
    /// Where the record starts.
    pub(crate) start: usize,
    /// The end (exclusive) of the bytes wanted, at most the body's length.
    pub(crate) end: usize,
    /// The record's LSN.
    pub(crate) lsn: Lsn,
    /// Records from it to the end of the batch.
    pub(crate) left: u32,
    /// Whether the range stops before the end of the body (it may cut a record in half).
    pub(crate) cut: bool,
}

impl RecordRange {
    /// Bytes in the range.
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses and sanity-checks a header without looking at the body or the checksum.
///
/// `bytes` must hold at least [`BATCH_HEADER_LEN`] bytes, else `Truncated`.
pub fn parse_header(bytes: &[u8]) -> Result<BatchHeader, CorruptKind> {
    use layout::*;
    if bytes.len() < BATCH_HEADER_LEN {
        return Err(CorruptKind::Truncated);
    }
    if bytes[MAGIC..MAGIC + 4] != BATCH_MAGIC {
        return Err(CorruptKind::BadMagic);
    }
    if u16_at(bytes, VERSION) != FORMAT_VERSION {
        return Err(CorruptKind::UnsupportedVersion);
    }
    let codec = match bytes[CODEC] {
        0 => Codec::None,
        1 => Codec::Lz4,
        _ => return Err(CorruptKind::BadHeader),
    };
    let header = BatchHeader {
        codec,
        body_len: u32_at(bytes, BODY_LEN),
        raw_len: u32_at(bytes, RAW_LEN),
        count: u32_at(bytes, COUNT),
        shard: u32_at(bytes, SHARD),
        segment: u64_at(bytes, SEGMENT),
        first_lsn: Lsn(u64_at(bytes, FIRST_LSN)),
        ts_min: Timestamp(u64_at(bytes, TS_MIN)),
        ts_max: Timestamp(u64_at(bytes, TS_MAX)),
    };
    let raw_len = header.raw_len as usize;
    let count = header.count as usize;
    let consistent = bytes[FLAGS] == 0
        && u32_at(bytes, RESERVED) == 0
        && (1..=BATCH_RECORDS_MAX).contains(&count)
        && raw_len <= BATCH_BODY_BYTES_MAX
        && raw_len >= count * RECORD_HEADER_LEN
        && match codec {
            Codec::None => header.body_len == header.raw_len,
            Codec::Lz4 => header.body_len < header.raw_len,
        }
        && header.ts_min <= header.ts_max
        && header.first_lsn.0 >= 1
        && header.first_lsn.0.checked_add(count as u64).is_some()
        && header.first_lsn.0 >= header.segment;
    if consistent {
        Ok(header)
    } else {
        Err(CorruptKind::BadHeader)
    }
}

fn checksum(log_id: u64, checked_header: &[u8], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&log_id.to_le_bytes());
    hasher.update(checked_header);
    hasher.update(body);
    hasher.finalize()
}

/// Builds batches into reusable buffers: after warm-up, encoding allocates nothing.
///
/// Compression adapts: after a batch that lz4 could not shrink (end-to-end encrypted payloads
/// never shrink), the next 1, 2, 4, … up to [`COMPRESS_BACKOFF_MAX`] batches are stored without
/// trying; one batch that shrinks resets the backoff. Trying on every incompressible batch cost
/// a quarter of the writer's time in the benchmarks.
#[derive(Debug, Default)]
pub struct BatchEncoder {
    out: Vec<u8>,
    compressed: Vec<u8>,
    /// Batches left to store without trying compression.
    compress_skip: u32,
    /// The current length of a skip run.
    compress_backoff: u32,
}

/// The longest run of batches stored without trying compression after failed attempts.
pub const COMPRESS_BACKOFF_MAX: u32 = 64;

impl BatchEncoder {
    /// A new encoder with empty buffers.
    pub fn new() -> BatchEncoder {
        BatchEncoder::default()
    }

    /// Encodes `records` as one batch starting at `first_lsn` and returns its bytes.
    ///
    /// With `compress`, the body is stored as lz4 when that makes it at least a quarter smaller.
    ///
    /// # Panics
    /// If `records` is empty or breaks the batch limits; the log checks them before encoding.
    pub fn encode(
        &mut self,
        place: BatchPlace,
        first_lsn: Lsn,
        records: &[Record],
        compress: bool,
    ) -> &[u8] {
        assert!(!records.is_empty() && records.len() <= BATCH_RECORDS_MAX);
        assert!(first_lsn.0 >= place.segment && first_lsn.0 >= 1);
        let out = &mut self.out;
        out.clear();
        out.resize(BATCH_HEADER_LEN, 0);
        let (mut ts_min, mut ts_max) = (u64::MAX, 0);
        for record in records {
            record.encode_into(out);
            ts_min = ts_min.min(record.timestamp.0);
            ts_max = ts_max.max(record.timestamp.0);
        }
        let raw_len = out.len() - BATCH_HEADER_LEN;
        assert!(raw_len <= BATCH_BODY_BYTES_MAX, "batch body over the limit");
        let mut codec = Codec::None;
        if compress && raw_len >= COMPRESS_BYTES_MIN {
            if self.compress_skip > 0 {
                self.compress_skip -= 1;
            } else {
                let bound = lz4_flex::block::get_maximum_output_size(raw_len);
                self.compressed.resize(bound, 0);
                let body = &out[BATCH_HEADER_LEN..];
                match lz4_flex::block::compress_into(body, &mut self.compressed) {
                    Ok(len) if len <= raw_len - raw_len / COMPRESS_SAVING_MIN_DIVISOR => {
                        out.truncate(BATCH_HEADER_LEN);
                        out.extend_from_slice(&self.compressed[..len]);
                        codec = Codec::Lz4;
                        self.compress_backoff = 0;
                    }
                    _ => {
                        self.compress_backoff =
                            (self.compress_backoff * 2).clamp(1, COMPRESS_BACKOFF_MAX);
                        self.compress_skip = self.compress_backoff;
                    }
                }
            }
        }
        let body_len = out.len() - BATCH_HEADER_LEN;
        {
            use layout::*;
            out[MAGIC..MAGIC + 4].copy_from_slice(&BATCH_MAGIC);
            out[VERSION..VERSION + 2].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
            out[CODEC] = codec as u8;
            out[FLAGS] = 0;
            out[BODY_LEN..BODY_LEN + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
            out[RAW_LEN..RAW_LEN + 4].copy_from_slice(&(raw_len as u32).to_le_bytes());
            out[COUNT..COUNT + 4].copy_from_slice(&(records.len() as u32).to_le_bytes());
            out[SHARD..SHARD + 4].copy_from_slice(&place.shard.to_le_bytes());
            out[RESERVED..RESERVED + 4].copy_from_slice(&0u32.to_le_bytes());
            out[SEGMENT..SEGMENT + 8].copy_from_slice(&place.segment.to_le_bytes());
            out[FIRST_LSN..FIRST_LSN + 8].copy_from_slice(&first_lsn.0.to_le_bytes());
            out[TS_MIN..TS_MIN + 8].copy_from_slice(&ts_min.to_le_bytes());
            out[TS_MAX..TS_MAX + 8].copy_from_slice(&ts_max.to_le_bytes());
            let crc = checksum(place.log_id, &out[CHECKED..END], &out[END..]);
            out[CRC..CRC + 4].copy_from_slice(&crc.to_le_bytes());
        }
        &self.out
    }
}

/// Bodies smaller than this are never worth compressing.
const COMPRESS_BYTES_MIN: usize = 256;

/// A batch is stored compressed only if lz4 saves at least 1/4 of it. A random read of one
/// record inflates its whole batch; for a smaller saving (ciphertext batches shrink ~20%, only
/// their record headers compress) that costs reads far more than the disk it saves: the index
/// benchmarks measured latest-50 reads 3x faster with such batches stored as they are.
const COMPRESS_SAVING_MIN_DIVISOR: usize = 4;

/// A verified batch: its header and its uncompressed body.
#[derive(Clone, Debug)]
pub struct DecodedBatch {
    /// The header.
    pub header: BatchHeader,
    body: Bytes,
}

impl DecodedBatch {
    /// The batch's records with their LSNs. Payloads share the batch's buffer (no copies).
    pub fn entries(&self) -> Entries {
        Entries {
            body: self.body.clone(),
            base: 0,
            at: 0,
            lsn: self.header.first_lsn,
            left: self.header.count,
        }
    }

    /// The batch's records from the one at `body_offset` (as [`Entries::body_offset`] reported
    /// it), whose LSN is `lsn`: a reader that remembered where a record is skips the ones before.
    /// An offset or LSN outside the batch gives no records.
    pub fn entries_from(&self, body_offset: usize, lsn: Lsn) -> Entries {
        let index = lsn.0.checked_sub(self.header.first_lsn.0);
        let left = match index {
            Some(index)
                if index < u64::from(self.header.count) && body_offset < self.body.len() =>
            {
                self.header.count - index as u32
            }
            _ => 0,
        };
        Entries {
            body: self.body.clone(),
            base: 0,
            at: body_offset,
            lsn,
            left,
        }
    }

    /// The batch's records from the one at `body_offset` with LSN `lsn` up to `body_end` (see
    /// [`Log::read_entries`](crate::Log::read_entries)); `None` if no record of the batch is there.
    #[cfg(test)]
    pub(crate) fn entries_at(
        &self,
        body_offset: u32,
        lsn: Lsn,
        body_end: Option<u32>,
    ) -> Option<Entries> {
        Some(self.records_at(body_offset, lsn, body_end)?.to_entries())
    }

    /// The batch's records from the one at `body_offset` with LSN `lsn` up to `body_end` (see
    /// [`Log::read_entries`](crate::Log::read_entries)), in place; `None` if no record of the
    /// batch is there.
    pub(crate) fn records_at(
        &self,
        body_offset: u32,
        lsn: Lsn,
        body_end: Option<u32>,
    ) -> Option<Records<'_>> {
        let range = self.header.record_range(body_offset, lsn, body_end)?;
        Records::in_range(&self.header, &range, &self.body, 0)
    }
}

/// Decodes a batch that was verified before (its bytes cannot have changed since: a sealed
/// segment, or the acknowledged prefix of the active one): no checksum, no record walk.
pub(crate) fn decode_verified(bytes: &Bytes) -> Result<DecodedBatch, CorruptKind> {
    let header = parse_header(bytes)?;
    let end = BATCH_HEADER_LEN + header.body_len as usize;
    if bytes.len() < end {
        return Err(CorruptKind::Truncated);
    }
    let body = match header.codec {
        Codec::None => bytes.slice(BATCH_HEADER_LEN..end),
        Codec::Lz4 => decompress(&header, &bytes[BATCH_HEADER_LEN..end])?,
    };
    Ok(DecodedBatch { header, body })
}

fn decompress(header: &BatchHeader, compressed: &[u8]) -> Result<Bytes, CorruptKind> {
    let mut raw = vec![0u8; header.raw_len as usize];
    match lz4_flex::block::decompress_into(compressed, &mut raw) {
        Ok(n) if n == raw.len() => Ok(Bytes::from(raw)),
        _ => Err(CorruptKind::BadRecords),
    }
}

/// Verifies and decodes one batch from `bytes`, which starts at the batch header; bytes past the
/// batch are ignored. Checks the checksum, the place and every record.
pub fn decode_batch(bytes: &Bytes, place: BatchPlace) -> Result<DecodedBatch, CorruptKind> {
    let header = parse_header(bytes)?;
    let end = BATCH_HEADER_LEN + header.body_len as usize;
    if bytes.len() < end {
        return Err(CorruptKind::Truncated);
    }
    let expected = u32_at(bytes, layout::CRC);
    if checksum(
        place.log_id,
        &bytes[layout::CHECKED..layout::END],
        &bytes[layout::END..end],
    ) != expected
    {
        return Err(CorruptKind::BadChecksum);
    }
    if header.shard != place.shard || header.segment != place.segment {
        return Err(CorruptKind::Misplaced);
    }
    let body = match header.codec {
        Codec::None => bytes.slice(BATCH_HEADER_LEN..end),
        Codec::Lz4 => decompress(&header, &bytes[BATCH_HEADER_LEN..end])?,
    };
    validate_records(&header, &body)?;
    Ok(DecodedBatch { header, body })
}

fn validate_records(header: &BatchHeader, body: &[u8]) -> Result<(), CorruptKind> {
    use record::layout::*;
    let mut at = 0;
    let (mut ts_min, mut ts_max) = (u64::MAX, 0);
    for _ in 0..header.count {
        let fixed = body
            .get(at..at + RECORD_HEADER_LEN)
            .ok_or(CorruptKind::BadRecords)?;
        let payload_len = u32_at(fixed, PAYLOAD_LEN) as usize;
        let timestamp = u64_at(fixed, TIMESTAMP);
        let valid = RecordKind::from_tag(fixed[KIND]).is_some()
            && fixed[FLAGS] == 0
            && u16_at(fixed, RESERVED) == 0
            && payload_len <= RECORD_PAYLOAD_BYTES_MAX;
        at += RECORD_HEADER_LEN;
        if !valid || body.len() - at < payload_len {
            return Err(CorruptKind::BadRecords);
        }
        at += payload_len;
        (ts_min, ts_max) = (ts_min.min(timestamp), ts_max.max(timestamp));
    }
    // The header's range is exactly the records', as the encoder writes it: one encoding per batch.
    if at == body.len() && (ts_min, ts_max) == (header.ts_min.0, header.ts_max.0) {
        Ok(())
    } else {
        Err(CorruptKind::BadRecords)
    }
}

/// The payload length of the record whose fixed header is `fixed`, if that header is one the
/// encoder writes: a known kind, zero flags and reserved bits, a payload within the limit.
fn record_payload_len(fixed: &[u8]) -> Option<usize> {
    use record::layout::*;
    let payload_len = u32_at(fixed, PAYLOAD_LEN) as usize;
    let valid = RecordKind::from_tag(fixed[KIND]).is_some()
        && fixed[FLAGS] == 0
        && u16_at(fixed, RESERVED) == 0
        && payload_len <= RECORD_PAYLOAD_BYTES_MAX;
    valid.then_some(payload_len)
}

/// The length of the whole, well-formed record starting at `at` in `body`, if there is one.
fn record_len_at(body: &[u8], at: usize) -> Option<usize> {
    let fixed = body.get(at..at.checked_add(RECORD_HEADER_LEN)?)?;
    let len = RECORD_HEADER_LEN + record_payload_len(fixed)?;
    (body.len() - at >= len).then_some(len)
}

/// The records of a [`DecodedBatch`] (or of a part of its body), in LSN order.
///
/// Payloads share the buffer the batch was read into, or the segment's memory map.
#[derive(Clone, Debug)]
pub struct Entries {
    /// The decoded body, or the part of it from `base` on.
    body: Bytes,
    /// Where `body` starts in the decoded body.
    base: usize,
    /// The next record's offset in `body`.
    at: usize,
    lsn: Lsn,
    left: u32,
}

impl Entries {
    /// Where the next record starts in the batch's decoded body; with its LSN, enough for
    /// [`DecodedBatch::entries_from`] or [`Log::read_entries`](crate::Log::read_entries) to
    /// come back to it.
    pub fn body_offset(&self) -> usize {
        self.base + self.at
    }
}

/// How many whole records of a batch with `header` the bytes `part` (the range `range` of its
/// decoded body) hold; `None` if the first record's header is not one such a batch holds (its
/// kind, flags, payload length and timestamp are checked): the range does not start at a
/// record. A range cut short ends after its last whole record, so the count stays exact.
fn whole_records(header: &BatchHeader, range: &RecordRange, part: &[u8]) -> Option<u32> {
    debug_assert_eq!(part.len(), range.len());
    if let Some(fixed) = part.get(..RECORD_HEADER_LEN) {
        let timestamp = u64_at(fixed, record::layout::TIMESTAMP);
        let plausible = record_payload_len(fixed).is_some()
            && (header.ts_min.0..=header.ts_max.0).contains(&timestamp);
        if !plausible || (!range.cut && record_len_at(part, 0).is_none()) {
            return None;
        }
    } else if !range.cut {
        // `record_range` leaves room for a record header after the start.
        return None;
    }
    if !range.cut {
        return Some(range.left);
    }
    let (mut at, mut whole) = (0, 0);
    while whole < range.left
        && let Some(len) = record_len_at(part, at)
    {
        (at, whole) = (at + len, whole + 1);
    }
    Some(whole)
}

/// The record starting at `at` in `body`: its header's fields and its length, or `None` if no
/// whole, well-formed record starts there.
fn record_at(body: &[u8], at: usize) -> Option<(RecordKind, ChatId, Timestamp, usize)> {
    use record::layout::*;
    let len = record_len_at(body, at)?;
    let fixed = &body[at..at + RECORD_HEADER_LEN];
    let kind = RecordKind::from_tag(fixed[KIND]).expect("checked by record_len_at");
    let chat = u128::from_le_bytes(fixed[CHAT..CHAT + 16].try_into().expect("16 bytes"));
    Some((
        kind,
        ChatId::from_u128(chat),
        Timestamp(u64_at(fixed, TIMESTAMP)),
        len,
    ))
}

/// Records of a batch read in place, borrowed from the segment's memory map (or the buffer
/// the batch was read into) for the length of a [`Log::read_records`](crate::Log::read_records)
/// call: the reads that touch most records keep no reference count on the way. The same
/// records as [`Entries`], in LSN order.
#[derive(Clone, Debug)]
pub struct Records<'a> {
    /// The bytes the records are in (the map, or a decoded body).
    owner: &'a Bytes,
    /// The records wanted: a range of `owner`, from the next record on.
    part: &'a [u8],
    /// Where `part` starts in the batch's decoded body.
    body_offset: usize,
    lsn: Lsn,
    left: u32,
}

/// One record of [`Records`]: its fields, and its payload in place.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    /// The record's position in its shard.
    pub lsn: Lsn,
    /// What the record is.
    pub kind: RecordKind,
    /// The chat it belongs to.
    pub chat: ChatId,
    /// Server time of the record.
    pub timestamp: Timestamp,
    /// Its payload, in place.
    pub payload: &'a [u8],
    owner: &'a Bytes,
}

impl<'a> RecordRef<'a> {
    /// The bytes `range` of the payload as [`Bytes`] sharing the map (one reference count),
    /// for what a caller keeps past the read.
    ///
    /// # Panics
    /// If `range` is not within the payload, as slicing it would.
    pub fn share(&self, range: std::ops::Range<usize>) -> Bytes {
        let part = &self.payload[range];
        if part.is_empty() {
            return Bytes::new();
        }
        self.owner.slice_ref(part)
    }

    /// The record as an owned [`Entry`](crate::Entry).
    pub fn to_entry(&self) -> crate::Entry {
        crate::Entry {
            lsn: self.lsn,
            record: Record {
                kind: self.kind,
                chat: self.chat,
                timestamp: self.timestamp,
                payload: self.share(0..self.payload.len()),
            },
        }
    }
}

impl<'a> Records<'a> {
    /// The records in the bytes `range` of the decoded body of a batch with `header`, which
    /// starts at `body_start` in `owner`; `None` as for [`Entries::in_range`].
    pub(crate) fn in_range(
        header: &BatchHeader,
        range: &RecordRange,
        owner: &'a Bytes,
        body_start: usize,
    ) -> Option<Records<'a>> {
        let start = body_start.checked_add(range.start)?;
        let part = owner.get(start..start.checked_add(range.len())?)?;
        Some(Records {
            owner,
            part,
            body_offset: range.start,
            lsn: range.lsn,
            left: whole_records(header, range, part)?,
        })
    }

    /// Where the next record starts in the batch's decoded body (see [`Entries::body_offset`]).
    pub fn body_offset(&self) -> usize {
        self.body_offset
    }

    /// The records left as owned [`Entries`] (one reference count on the bytes).
    pub fn to_entries(&self) -> Entries {
        let body = if self.part.is_empty() {
            Bytes::new()
        } else {
            self.owner.slice_ref(self.part)
        };
        Entries {
            body,
            base: self.body_offset,
            at: 0,
            lsn: self.lsn,
            left: self.left,
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = RecordRef<'a>;

    fn next(&mut self) -> Option<RecordRef<'a>> {
        if self.left == 0 {
            return None;
        }
        // As for `Entries`: a record that is malformed or does not fit ends the iteration.
        let Some((kind, chat, timestamp, len)) = record_at(self.part, 0) else {
            self.left = 0;
            return None;
        };
        let record = RecordRef {
            lsn: self.lsn,
            kind,
            chat,
            timestamp,
            payload: &self.part[RECORD_HEADER_LEN..len],
            owner: self.owner,
        };
        self.part = &self.part[len..];
        self.body_offset += len;
        self.lsn = Lsn(self.lsn.0 + 1);
        self.left -= 1;
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for Records<'_> {}

impl Iterator for Entries {
    type Item = crate::Entry;

    fn next(&mut self) -> Option<crate::Entry> {
        if self.left == 0 {
            return None;
        }
        // The body was validated when the batch was first decoded (or written by this process),
        // and those bytes never change; still, a record that is malformed or does not fit in
        // the bytes held ends the iteration rather than panicking or returning garbage.
        let Some((kind, chat, timestamp, len)) = record_at(&self.body, self.at) else {
            self.left = 0;
            return None;
        };
        let payload = self.body.slice(self.at + RECORD_HEADER_LEN..self.at + len);
        self.at += len;
        let entry = crate::Entry {
            lsn: self.lsn,
            record: Record {
                kind,
                chat,
                timestamp,
                payload,
            },
        };
        self.lsn = Lsn(self.lsn.0 + 1);
        self.left -= 1;
        Some(entry)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for Entries {}

/// The result of reading a whole segment image with [`scan_segment`].
#[derive(Clone, Debug)]
pub struct SegmentScan {
    /// The verified batches, in order, with their offsets.
    pub batches: Vec<(u64, DecodedBatch)>,
    /// Bytes from the start covered by those batches.
    pub valid_len: u64,
    /// Where scanning stopped before the end of the bytes, and why.
    pub stop: Option<(u64, CorruptKind)>,
}

/// Decodes a segment image: batches back to back, the first starting at LSN `place.segment`.
///
/// Stops at the first batch that fails verification or does not continue the LSN sequence. Pure
/// and total: any input gives a result, never a panic (the fuzz target holds it to that).
pub fn scan_segment(bytes: &Bytes, place: BatchPlace) -> SegmentScan {
    let mut batches = Vec::new();
    let mut at = 0usize;
    let mut next_lsn = Lsn(place.segment);
    while at < bytes.len() {
        let rest = bytes.slice(at..);
        let batch = match decode_batch(&rest, place) {
            Ok(batch) if batch.header.first_lsn == next_lsn => batch,
            Ok(_) => {
                return SegmentScan {
                    batches,
                    valid_len: at as u64,
                    stop: Some((at as u64, CorruptKind::Misplaced)),
                };
            }
            Err(kind) => {
                return SegmentScan {
                    batches,
                    valid_len: at as u64,
                    stop: Some((at as u64, kind)),
                };
            }
        };
        next_lsn = batch.header.end_lsn();
        let len = batch.header.total_len() as usize;
        batches.push((at as u64, batch));
        at += len;
    }
    SegmentScan {
        batches,
        valid_len: at as u64,
        stop: None,
    }
}

/// Whether any offset after `from` starts a whole, verified batch of this place with an LSN at or
/// after `lsn_min`. Recovery uses it to tell a torn tail (nothing valid follows the bad batch)
/// from corruption in the middle of a file (valid batches follow it).
pub fn valid_batch_after(bytes: &Bytes, from: usize, place: BatchPlace, lsn_min: Lsn) -> bool {
    let mut at = from;
    while let Some(found) = bytes.get(at..).and_then(find_magic) {
        let start = at + found;
        if let Ok(batch) = decode_batch(&bytes.slice(start..), place)
            && batch.header.first_lsn >= lsn_min
        {
            return true;
        }
        at = start + 1;
    }
    false
}

fn find_magic(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(BATCH_MAGIC.len())
        .position(|window| window == BATCH_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserId;
    use proptest::prelude::*;

    const PLACE: BatchPlace = BatchPlace {
        log_id: 0xDEAD_BEEF,
        shard: 3,
        segment: 10,
    };

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            proptest::sample::select(RecordKind::ALL.to_vec()),
            any::<u128>(),
            0u64..u64::MAX / 2,
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..600),
                // Compressible payloads exercise the lz4 path.
                (0usize..3000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
            ],
        )
            .prop_map(|(kind, chat, ts, payload)| Record {
                kind,
                chat: ChatId::from_u128(chat),
                timestamp: Timestamp(ts),
                payload: Bytes::from(payload),
            })
    }

    proptest! {
        #[test]
        fn batch_round_trips(
            records in proptest::collection::vec(arb_record(), 1..40),
            compress: bool,
            lsn_offset in 0u64..1000,
        ) {
            let mut encoder = BatchEncoder::new();
            let first = Lsn(PLACE.segment + lsn_offset);
            let bytes = Bytes::copy_from_slice(encoder.encode(PLACE, first, &records, compress));
            let batch = decode_batch(&bytes, PLACE).unwrap();
            prop_assert_eq!(batch.header.total_len() as usize, bytes.len());
            prop_assert_eq!(batch.header.count as usize, records.len());
            let decoded: Vec<_> = batch.entries().collect();
            for (i, (entry, record)) in decoded.iter().zip(&records).enumerate() {
                prop_assert_eq!(entry.lsn, Lsn(first.0 + i as u64));
                prop_assert_eq!(&entry.record, record);
            }
            prop_assert_eq!(decoded.len(), records.len());
            // Re-encoding the decoded records gives the same bytes.
            let again: Vec<Record> = decoded.into_iter().map(|e| e.record).collect();
            prop_assert_eq!(encoder.encode(PLACE, first, &again, compress), &bytes[..]);
        }

        #[test]
        fn entries_at_a_record_end_with_the_last_whole_record_before_the_end(
            records in proptest::collection::vec(arb_record(), 1..20),
            compress: bool,
            body_end in proptest::option::of(0u32..70_000),
            any_offset: u32,
            any_lsn in 8u64..40,
        ) {
            let mut encoder = BatchEncoder::new();
            let bytes = Bytes::copy_from_slice(encoder.encode(PLACE, Lsn(10), &records, compress));
            let batch = decode_batch(&bytes, PLACE).unwrap();
            let mut starts = Vec::new();
            let mut at = 0;
            for record in &records {
                starts.push(at as u32);
                at += record.encoded_len();
            }
            for (i, start) in starts.iter().enumerate() {
                let lsn = Lsn(10 + i as u64);
                let entries = batch.entries_at(*start, lsn, body_end).unwrap();
                let mut end = *start as usize;
                let wanted: Vec<crate::Entry> = records[i..]
                    .iter()
                    .zip(lsn.0..)
                    .take_while(|(record, _)| {
                        end += record.encoded_len();
                        body_end.is_none_or(|body_end| end <= body_end as usize)
                    })
                    .map(|(record, lsn)| crate::Entry { lsn: Lsn(lsn), record: record.clone() })
                    .collect();
                prop_assert_eq!(entries.len(), wanted.len());
                prop_assert_eq!(entries.collect::<Vec<_>>(), wanted);
            }
            // Any other position: never a panic (and here, never a record at all).
            if !starts.contains(&any_offset) {
                let entries = batch.entries_at(any_offset, Lsn(any_lsn), body_end);
                prop_assert!(entries.is_none_or(|entries| entries.len() == 0));
            }
        }

        #[test]
        fn any_single_bit_flip_is_rejected(
            records in proptest::collection::vec(arb_record(), 1..5),
            bit in any::<proptest::sample::Index>(),
        ) {
            let mut encoder = BatchEncoder::new();
            let mut bytes = encoder.encode(PLACE, Lsn(PLACE.segment), &records, true).to_vec();
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_batch(&Bytes::from(bytes), PLACE).is_err());
        }
    }

    #[test]
    fn compression_is_used_only_when_it_saves_space() {
        let mut encoder = BatchEncoder::new();
        let chat = ChatId::direct(UserId(1), UserId(2));
        let record = |payload: Vec<u8>| Record {
            kind: RecordKind::Message,
            chat,
            timestamp: Timestamp(5),
            payload: Bytes::from(payload),
        };
        let repetitive = vec![record(vec![7u8; 4096])];
        let bytes = Bytes::copy_from_slice(encoder.encode(PLACE, Lsn(10), &repetitive, true));
        assert_eq!(parse_header(&bytes).unwrap().codec, Codec::Lz4);
        assert!(bytes.len() < 1024);
        // Pseudo-random bytes do not compress: stored as they are.
        let mut x = 0x1234_5678u32;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let noise = [record(noise)];
        let bytes = Bytes::copy_from_slice(encoder.encode(PLACE, Lsn(10), &noise, true));
        assert_eq!(parse_header(&bytes).unwrap().codec, Codec::None);
        // After failures, compression is skipped for a while, then tried again and resumed.
        let mut codecs = Vec::new();
        for _ in 0..10 {
            encoder.encode(PLACE, Lsn(10), &noise, true);
        }
        for _ in 0..200 {
            let bytes = encoder.encode(PLACE, Lsn(10), &repetitive, true);
            codecs.push(parse_header(bytes).unwrap().codec);
        }
        let skipped = codecs.iter().take_while(|&&c| c == Codec::None).count();
        assert!(
            skipped > 0 && skipped <= COMPRESS_BACKOFF_MAX as usize,
            "{skipped}"
        );
        assert!(codecs[skipped..].iter().all(|&c| c == Codec::Lz4));
    }

    #[test]
    fn entries_resume_at_a_remembered_record() {
        let mut encoder = BatchEncoder::new();
        let records: Vec<Record> = (0..5u8)
            .map(|n| Record {
                kind: RecordKind::Message,
                chat: ChatId::group(u64::from(n)),
                timestamp: Timestamp(1),
                payload: Bytes::from(vec![n; usize::from(n) * 3]),
            })
            .collect();
        let bytes = Bytes::copy_from_slice(encoder.encode(PLACE, Lsn(20), &records, false));
        let batch = decode_batch(&bytes, PLACE).unwrap();
        let mut entries = batch.entries();
        let mut marks = Vec::new();
        loop {
            let offset = entries.body_offset();
            let Some(entry) = entries.next() else { break };
            marks.push((offset, entry));
        }
        for (offset, entry) in &marks {
            let resumed: Vec<_> = batch.entries_from(*offset, entry.lsn).collect();
            let expected: Vec<_> = marks
                .iter()
                .filter(|(_, e)| e.lsn >= entry.lsn)
                .map(|(_, e)| e.clone())
                .collect();
            assert_eq!(resumed, expected);
        }
        assert_eq!(
            batch.entries_from(0, Lsn(19)).count(),
            0,
            "an LSN before the batch"
        );
        assert_eq!(
            batch.entries_from(0, Lsn(25)).count(),
            0,
            "an LSN after the batch"
        );
        // A verified batch decodes the same without the checks.
        assert_eq!(
            decode_verified(&bytes)
                .unwrap()
                .entries()
                .collect::<Vec<_>>(),
            batch.entries().collect::<Vec<_>>()
        );
    }

    #[test]
    fn wrong_place_or_log_is_detected() {
        let mut encoder = BatchEncoder::new();
        let records = [Record {
            kind: RecordKind::Receipt,
            chat: ChatId::group(1),
            timestamp: Timestamp(1),
            payload: Bytes::from_static(b"x"),
        }];
        let bytes = Bytes::copy_from_slice(encoder.encode(PLACE, Lsn(10), &records, false));
        let other_log = BatchPlace { log_id: 1, ..PLACE };
        assert_eq!(
            decode_batch(&bytes, other_log).unwrap_err(),
            CorruptKind::BadChecksum
        );
        let other_shard = BatchPlace { shard: 4, ..PLACE };
        assert_eq!(
            decode_batch(&bytes, other_shard).unwrap_err(),
            CorruptKind::Misplaced
        );
    }
}
