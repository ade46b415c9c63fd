//! The checks behind every fuzz target, in one place so that `log/tests/fuzz_corpus.rs` replays the
//! committed corpus and past crashes through the very same code on stable (it includes this file
//! with `#[path]`). Pure: no I/O and no unsafe; a failed check panics.

use bytes::Bytes;
use missive_log::batch::{
    BATCH_HEADER_LEN, BATCH_MAGIC, BatchEncoder, BatchPlace, Codec, SegmentScan, decode_batch,
    scan_segment,
};
use missive_log::{ChatId, CorruptKind, FORMAT_VERSION, Lsn, Record, RecordKind, Timestamp};

/// The place every target decodes for; its first batch starts at LSN `segment`.
pub const PLACE: BatchPlace = BatchPlace {
    log_id: 0x6D73_765F_6675_7A7A,
    shard: 7,
    segment: 100,
};

/// A target's check: panics if `data` breaks a property.
pub type Check = fn(data: &[u8]);

/// The fuzz targets by name (their folders under `corpus/` and `regressions/`) and their checks.
pub const TARGETS: [(&str, Check); 3] = [
    ("segment", check_segment),
    ("segment_structured", check_structured),
    ("lz4_batch", check_lz4_batch),
];

/// Decodes `data` as a segment of [`PLACE`] and checks the result: the valid batches lie back to
/// back from offset 0 with dense LSNs, scanning stops exactly where they end, and each batch
/// re-encodes to the same bytes (`Codec::None`) or at least to the same records (lz4, whose block
/// encoding is not unique).
pub fn check_segment(data: &[u8]) {
    check_scan(data, &scan_segment(&Bytes::copy_from_slice(data), PLACE));
}

fn check_scan(data: &[u8], scan: &SegmentScan) {
    assert!(scan.valid_len <= data.len() as u64);
    let mut encoder = BatchEncoder::new();
    let (mut at, mut lsn) = (0, Lsn(PLACE.segment));
    for (offset, batch) in &scan.batches {
        let header = batch.header;
        assert_eq!(
            (*offset, header.first_lsn),
            (at as u64, lsn),
            "batches are contiguous"
        );
        let end = at + header.total_len() as usize;
        let records: Vec<Record> = batch.entries().map(|entry| entry.record).collect();
        let again = encoder.encode(PLACE, header.first_lsn, &records, false);
        match header.codec {
            Codec::None => assert_eq!(again, &data[at..end], "re-encoding changed the bytes"),
            Codec::Lz4 => assert_eq!(records_of(again), records, "re-encoding changed records"),
        }
        (at, lsn) = (end, header.end_lsn());
    }
    assert_eq!(scan.valid_len, at as u64);
    let stop = scan.stop.map(|(offset, _)| offset);
    assert_eq!(
        stop,
        (at < data.len()).then_some(at as u64),
        "stops where valid bytes end"
    );
}

fn records_of(batch: &[u8]) -> Vec<Record> {
    let batch =
        decode_batch(&Bytes::copy_from_slice(batch), PLACE).expect("encoder output decodes");
    batch.entries().map(|entry| entry.record).collect()
}

/// Most batches one structured input builds; with [`RECORDS_MAX`] and [`Plan::record`] this keeps
/// a segment under 256 KiB, so a run stays fast.
const BATCHES_MAX: usize = 16;
/// Most records of one structured batch.
const RECORDS_MAX: u8 = 8;

/// Reads `data` as a plan (see [`Plan`]), encodes the segment it describes, damages it as the plan
/// says (none, cut at an offset, or flip one bit), and checks that `scan_segment` returns exactly
/// the batches before the damage, with the records they were built from.
pub fn check_structured(data: &[u8]) {
    let mut plan = Plan(data);
    let (damage, position) = (plan.byte() % 3, plan.u32() as usize);
    let mut encoder = BatchEncoder::new();
    let (mut segment, mut ends, mut batches) = (Vec::new(), vec![0], Vec::new());
    let mut lsn = Lsn(PLACE.segment);
    while !plan.0.is_empty() && batches.len() < BATCHES_MAX {
        let flags = plan.byte();
        let records: Vec<Record> = (0..=flags % RECORDS_MAX).map(|_| plan.record()).collect();
        segment.extend_from_slice(encoder.encode(PLACE, lsn, &records, flags & 0x80 != 0));
        ends.push(segment.len());
        lsn = Lsn(lsn.0 + records.len() as u64);
        batches.push(records);
    }
    // How many batches come before the damaged byte (or the cut): they must all survive.
    let kept_before = |at: usize| {
        ends.iter()
            .rposition(|&end| end <= at)
            .expect("ends[0] = 0")
    };
    let kept = match damage {
        1 => {
            let cut = position % (segment.len() + 1);
            segment.truncate(cut);
            kept_before(cut)
        }
        2 if !segment.is_empty() => {
            let bit = position % (segment.len() * 8);
            segment[bit / 8] ^= 1 << (bit % 8);
            kept_before(bit / 8)
        }
        _ => batches.len(),
    };
    let scan = scan_segment(&Bytes::copy_from_slice(&segment), PLACE);
    assert_eq!(
        scan.valid_len, ends[kept] as u64,
        "scan stops at the damaged batch"
    );
    let decoded: Vec<Vec<Record>> = (scan.batches.iter())
        .map(|(_, batch)| batch.entries().map(|entry| entry.record).collect())
        .collect();
    assert_eq!(
        decoded,
        batches[..kept],
        "the batches before the damage decode as built"
    );
    if damage == 1
        && let Some((_, kind)) = scan.stop
    {
        assert_eq!(kind, CorruptKind::Truncated);
    }
    check_scan(&segment, &scan);
}

/// Fuzz bytes read front to back as the description of records (or of an lz4 batch header);
/// reads past the end give zeros, so every input is a plan.
struct Plan<'a>(&'a [u8]);

impl Plan<'_> {
    fn take(&mut self, len: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken
    }

    /// The next `N` bytes, zero-padded past the end.
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut bytes = [0; N];
        let taken = self.take(N);
        bytes[..taken.len()].copy_from_slice(taken);
        bytes
    }

    fn byte(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    /// A record: kind, chat, timestamp, then either up to 127 literal payload bytes or (high bit
    /// set) one byte repeated up to 127 × 8 times, which lz4 compresses.
    fn record(&mut self) -> Record {
        let kind = RecordKind::ALL[usize::from(self.byte()) % RecordKind::ALL.len()];
        let chat = ChatId::from_u128(u128::from(self.u32()) << 64 | u128::from(self.byte()));
        let timestamp = Timestamp(u64::from(self.u32()) << 8);
        let len = self.byte();
        let payload = if len & 0x80 == 0 {
            self.take(usize::from(len)).to_vec()
        } else {
            vec![self.byte(); usize::from(len & 0x7f) * 8]
        };
        Record {
            kind,
            chat,
            timestamp,
            payload: Bytes::from(payload),
        }
    }
}

/// Bytes before the lz4 block in an `lz4_batch` input: raw length (4 bytes LE), record count
/// (2 bytes LE), smallest and largest record timestamp (8 bytes LE each).
pub const LZ4_INPUT_HEAD: usize = 22;

/// Reads `data` as an `lz4_batch` input (see [`LZ4_INPUT_HEAD`], then the lz4 block) and frames it
/// as an lz4 batch of [`PLACE`] with a valid checksum, so decoding reaches the decompressor.
/// Returns the raw length the header claims, and the batch.
pub fn forge_lz4_batch(data: &[u8]) -> Option<(usize, Bytes)> {
    let (head, block) = data.split_first_chunk::<LZ4_INPUT_HEAD>()?;
    let mut head = Plan(head);
    let (raw_len, count) = (head.u32(), u16::from_le_bytes(head.array()));
    let ts = (
        u64::from_le_bytes(head.array()),
        u64::from_le_bytes(head.array()),
    );
    let batch = frame_batch(Codec::Lz4, raw_len, u32::from(count), ts, block);
    Some((raw_len as usize, Bytes::from(batch)))
}

/// Decodes `data` as a forged lz4 batch and checks it like a segment; the target also bounds
/// what decoding allocates.
pub fn check_lz4_batch(data: &[u8]) {
    if let Some((_, batch)) = forge_lz4_batch(data) {
        check_segment(&batch);
    }
}

/// Frames `body` as a batch of [`PLACE`] starting at LSN `PLACE.segment`, with the timestamp range
/// `ts` and a valid checksum. It restates the header layout of `missive_log::batch` field by field;
/// `fuzz_corpus.rs` checks it against the encoder.
pub fn frame_batch(codec: Codec, raw_len: u32, count: u32, ts: (u64, u64), body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    out.extend_from_slice(&BATCH_MAGIC);
    out.extend_from_slice(&[0; 4]); // The checksum, filled in last.
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&[codec as u8, 0]);
    for field in [body.len() as u32, raw_len, count, PLACE.shard, 0] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    for field in [PLACE.segment, PLACE.segment, ts.0, ts.1] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(body);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&PLACE.log_id.to_le_bytes());
    crc.update(&out[8..]);
    out[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    out
}
