//! Little-endian field writing and bounds-checked reading for the index's files.

use std::collections::{BTreeMap, HashMap};

use missive_log::ChatId;

use crate::chat::Run;

/// Appends little-endian fields.
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn watermarks(&mut self, map: &HashMap<ChatId, u64>) {
        let sorted: BTreeMap<&ChatId, &u64> = map.iter().collect();
        self.u32(sorted.len() as u32);
        for (chat, seq) in sorted {
            self.u128(chat.to_u128());
            self.u64(*seq);
        }
    }
    /// A run: first seq, last seq, first timestamp, segment, offset, first LSN (8 each), body
    /// offset (4).
    pub(crate) fn run(&mut self, run: &Run) {
        for value in [
            run.first_seq,
            run.last_seq,
            run.first_ts,
            run.segment,
            run.offset,
            run.first_lsn,
        ] {
            self.u64(value);
        }
        self.u32(run.body_offset);
    }
}

/// Bytes a run takes on disk.
pub(crate) const RUN_BYTES: usize = 6 * 8 + 4;

/// Reads fields with a bound check on every one; counts are checked against the bytes left
/// (each element takes at least `min_bytes`), so a corrupt count cannot make a huge allocation.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    pub(crate) fn u128(&mut self) -> Option<u128> {
        self.take().map(u128::from_le_bytes)
    }
    pub(crate) fn count(&mut self, min_bytes: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        (n.checked_mul(min_bytes)? <= self.0.len()).then_some(n)
    }
    pub(crate) fn count64(&mut self, min_bytes: usize) -> Option<usize> {
        let n = usize::try_from(self.u64()?).ok()?;
        (n.checked_mul(min_bytes)? <= self.0.len()).then_some(n)
    }
    pub(crate) fn watermarks(&mut self) -> Option<HashMap<ChatId, u64>> {
        (0..self.count(24)?)
            .map(|_| Some((ChatId::from_u128(self.u128()?), self.u64()?)))
            .collect()
    }
    /// A run as [`Writer::run`] wrote it; `None` if its seqs are out of order.
    pub(crate) fn run(&mut self) -> Option<Run> {
        let [first_seq, last_seq, first_ts, segment, offset, first_lsn] = [
            self.u64()?,
            self.u64()?,
            self.u64()?,
            self.u64()?,
            self.u64()?,
            self.u64()?,
        ];
        let body_offset = self.u32()?;
        (first_seq <= last_seq).then_some(Run {
            first_seq,
            last_seq,
            first_ts,
            segment,
            offset,
            first_lsn,
            body_offset,
        })
    }
}
