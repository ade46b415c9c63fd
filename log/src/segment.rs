//! A segment: one file of batches covering one time window of one shard.
//!
//! The file name carries everything retention and recovery need, so the log keeps no catalogue:
//! `{first_lsn:020}-{window_start_ms:020}-{window_ms:010}.seg`. Segments sort by first LSN; a
//! segment's records all have timestamps below `window_start_ms + window_ms`, so once that time
//! is past the retention cutoff the whole file can go.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use std::collections::HashSet;

use parking_lot::{Mutex, RwLock};

use crate::batch::{BATCH_HEADER_LEN, BatchHeader, BatchPlace, parse_header};
use crate::error::{CorruptKind, Error, Result};
use crate::storage::{Storage, StorageFile};

/// The file name of a segment.
pub(crate) fn file_name(first_lsn: u64, window_start_ms: u64, window_ms: u64) -> String {
    format!("{first_lsn:020}-{window_start_ms:020}-{window_ms:010}.seg")
}

/// Parses a segment file name into `(first_lsn, window_start_ms, window_ms)`.
pub(crate) fn parse_file_name(name: &str) -> Option<(u64, u64, u64)> {
    let stem = name.strip_suffix(".seg")?;
    let mut parts = stem.split('-');
    let mut field = |width: usize| {
        let part = parts.next()?;
        let all_digits = part.len() == width && part.bytes().all(|b| b.is_ascii_digit());
        if all_digits { part.parse().ok() } else { None }
    };
    let parsed = (field(20)?, field(20)?, field(10)?);
    if parts.next().is_some() || parsed.0 == 0 || parsed.2 == 0 {
        return None;
    }
    Some(parsed)
}

/// Public facts about one segment, for tools and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment's first LSN, which names it.
    pub first_lsn: u64,
    /// Start of its time window (ms).
    pub window_start_ms: u64,
    /// Length of its time window (ms).
    pub window_ms: u64,
    /// Its file.
    pub path: PathBuf,
    /// Whether it is sealed (never written again).
    pub sealed: bool,
}

/// A segment as readers and the writer share it.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) first_lsn: u64,
    pub(crate) window_start_ms: u64,
    pub(crate) window_ms: u64,
    pub(crate) path: PathBuf,
    /// Bytes readers may read: whole, acknowledged batches only.
    visible_len: AtomicU64,
    sealed: AtomicBool,
    /// Once sealed: a read-only map of the whole file, made on the first read and kept.
    map: std::sync::OnceLock<Bytes>,
    /// While active: a map of the file with room to grow (`reserve` bytes; see
    /// `storage/mmap.rs`, point 4), read only below `visible_len`, so reads of acknowledged
    /// batches take no system call. Mapped again only if the segment outgrows it.
    prefix: Mutex<Option<Bytes>>,
    /// How much of the file the growing map covers (the segment size cap).
    reserve: u64,
    /// Offsets of batches already verified in this process. Their bytes cannot change (sealed,
    /// or below the active segment's acknowledged length), so random reads skip the checksum.
    verified: RwLock<HashSet<u64>>,
    /// Once a scrub verified the (sealed) segment to its end: where each batch starts and
    /// what reads need of its header. Reads then check a position against it without a lock,
    /// and read an uncompressed batch's records without touching its header.
    batches: std::sync::OnceLock<BatchTable>,
    /// Whether its map asks for 2 MiB pages once sealed ([`LogConfig::huge_pages`]).
    ///
    /// [`LogConfig::huge_pages`]: crate::LogConfig::huge_pages
    pub(crate) huge_pages: bool,
}

/// The batches of a sealed segment a scrub verified, in file order, 8 bytes each (the offset
/// and the first LSN less the segment's, as `u32`s: a segment is under 2 GiB and holds fewer
/// than 2³¹ records), and one more entry for the end of the last batch. The top bit of the
/// LSN half marks a compressed batch, whose reads need its header.
#[derive(Debug)]
pub(crate) struct BatchTable {
    entries: Box<[(u32, u32)]>,
    /// Where the first batch starts and the last one ends (the first and last entries' offsets,
    /// kept beside the table): a read guesses where a batch is in it from these
    /// ([`BatchTable::guess`]) without touching the table's own cold lines first.
    first: u32,
    end: u32,
}

/// What a read needs of a batch in a [`BatchTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KnownBatch {
    pub(crate) first_lsn: u64,
    pub(crate) count: u32,
    /// Body bytes (on disk; for an uncompressed batch also its decoded length).
    pub(crate) body_len: u32,
    pub(crate) compressed: bool,
}

const COMPRESSED: u32 = 1 << 31;

impl BatchTable {
    /// From the batches a scrub read (offset, first LSN, compressed) and where the last one
    /// ends; `None` if a value does not fit the table's compact form (it is then not kept).
    pub(crate) fn new(
        segment_lsn: u64,
        batches: &[(u64, u64, bool)],
        end: (u64, u64),
    ) -> Option<BatchTable> {
        let entry = |offset: u64, lsn: u64, compressed: bool| -> Option<(u32, u32)> {
            let offset = u32::try_from(offset).ok()?;
            let lsn = u32::try_from(lsn.checked_sub(segment_lsn)?)
                .ok()
                .filter(|&lsn| lsn < COMPRESSED)?;
            Some((offset, lsn | if compressed { COMPRESSED } else { 0 }))
        };
        let entries = batches
            .iter()
            .map(|&(offset, lsn, compressed)| entry(offset, lsn, compressed))
            .chain([entry(end.0, end.1, false)])
            .collect::<Option<Box<[_]>>>()?;
        let ordered = entries.windows(2).all(|pair| {
            let [(offset, lsn), (next_offset, next_lsn)] = [pair[0], pair[1]];
            offset < next_offset && lsn & !COMPRESSED < next_lsn & !COMPRESSED
        });
        let (first, end) = (entries[0].0, entries[entries.len() - 1].0);
        ordered.then_some(BatchTable {
            entries,
            first,
            end,
        })
    }

    /// Where the batch starting at `offset` would be in the table if every batch were of the
    /// same size: a segment's batches are alike enough (each a group commit's worth) that the
    /// batch is near, and a search from there reads a line or two of the table, not the
    /// ~log₂(n) lines of a binary search, which are cold after other work (an inbox fetch reads
    /// one record from each of many segments).
    pub(crate) fn guess(&self, offset: u64) -> usize {
        let batches = self.entries.len() - 1;
        let (first, end) = (u64::from(self.first), u64::from(self.end));
        if batches == 0 || offset <= first || end <= first {
            return 0;
        }
        let spread = (offset - first).min(end - first);
        ((u128::from(spread) * batches as u128 / u128::from(end - first)) as usize).min(batches - 1)
    }

    /// Starts loading the line of the table where the batch at `offset` should be (see
    /// [`BatchTable::guess`]), for a read that will look it up.
    pub(crate) fn prefetch(&self, offset: u64) {
        crate::storage::prefetch_item(&self.entries, self.guess(offset));
    }

    /// The batch starting at `offset`, if one does.
    pub(crate) fn find(&self, segment_lsn: u64, offset: u64) -> Option<KnownBatch> {
        let at = self.search(offset)?;
        let ((start, lsn), (end, end_lsn)) = (self.entries[at], self.entries[at + 1]);
        let (lsn, end_lsn) = (lsn & !COMPRESSED, end_lsn & !COMPRESSED);
        Some(KnownBatch {
            first_lsn: segment_lsn + u64::from(lsn),
            count: end_lsn - lsn,
            body_len: end - start - BATCH_HEADER_LEN as u32,
            compressed: self.entries[at].1 & COMPRESSED != 0,
        })
    }
}

impl BatchTable {
    /// The index of the batch starting at `offset`: from the guess, steps doubling in the
    /// direction of `offset` until one passes it, then a binary search between the last two.
    fn search(&self, offset: u64) -> Option<usize> {
        let offset = u32::try_from(offset).ok()?;
        let batches = &self.entries[..self.entries.len() - 1];
        let guess = self
            .guess(u64::from(offset))
            .min(batches.len().checked_sub(1)?);
        // `batches[low].0 <= offset < batches[high].0` (or `high` is the end), where known.
        let (low, high) = if batches[guess].0 <= offset {
            let (mut low, mut step) = (guess, 1);
            loop {
                let probe = guess + step;
                if probe >= batches.len() {
                    break (low, batches.len());
                }
                if batches[probe].0 > offset {
                    break (low, probe);
                }
                (low, step) = (probe, step * 2);
            }
        } else {
            let (mut high, mut step) = (guess, 1);
            loop {
                let Some(probe) = guess.checked_sub(step) else {
                    break (0, high);
                };
                if batches[probe].0 <= offset {
                    break (probe, high);
                }
                (high, step) = (probe, step * 2);
            }
        };
        let found = batches[low..high].binary_search_by_key(&offset, |&(o, _)| o);
        found.ok().map(|at| low + at)
    }
}

impl Segment {
    pub(crate) fn sealed(
        path: PathBuf,
        first_lsn: u64,
        window_start_ms: u64,
        window_ms: u64,
        huge_pages: bool,
    ) -> Self {
        Segment {
            first_lsn,
            window_start_ms,
            window_ms,
            path,
            visible_len: AtomicU64::new(0),
            sealed: AtomicBool::new(true),
            map: std::sync::OnceLock::new(),
            prefix: Mutex::new(None),
            reserve: 0,
            verified: RwLock::new(HashSet::new()),
            batches: std::sync::OnceLock::new(),
            huge_pages,
        }
    }

    pub(crate) fn active(
        path: PathBuf,
        first_lsn: u64,
        window_start_ms: u64,
        window_ms: u64,
        len: u64,
        reserve: u64,
        huge_pages: bool,
    ) -> Self {
        Segment {
            reserve,
            visible_len: AtomicU64::new(len),
            sealed: AtomicBool::new(false),
            ..Segment::sealed(path, first_lsn, window_start_ms, window_ms, huge_pages)
        }
    }

    pub(crate) fn info(&self) -> SegmentInfo {
        SegmentInfo {
            first_lsn: self.first_lsn,
            window_start_ms: self.window_start_ms,
            window_ms: self.window_ms,
            path: self.path.clone(),
            sealed: self.is_sealed(),
        }
    }

    pub(crate) fn place(&self, log_id: u64, shard: u32) -> BatchPlace {
        BatchPlace {
            log_id,
            shard,
            segment: self.first_lsn,
        }
    }

    pub(crate) fn is_verified(&self, offset: u64) -> bool {
        match self.batches.get() {
            Some(table) => table.find(self.first_lsn, offset).is_some(),
            None => self.verified.read().contains(&offset),
        }
    }

    /// The batch at `offset` if a scrub verified this whole (sealed) segment and one starts
    /// there: what a read needs of its header, without reading it.
    pub(crate) fn known_batch(&self, offset: u64) -> Option<KnownBatch> {
        self.batches.get()?.find(self.first_lsn, offset)
    }

    /// The table of batches a scrub left, once it verified this whole (sealed) segment.
    pub(crate) fn batch_table(&self) -> Option<&BatchTable> {
        self.batches.get()
    }

    /// Records that every batch of this sealed segment was verified: a scrub read it to the
    /// end and found `table`'s batches.
    pub(crate) fn mark_wholly_verified(&self, table: BatchTable) {
        debug_assert!(self.is_sealed());
        let _ = self.batches.set(table);
        // Every batch is in the table now: the set is no longer read.
        std::mem::take(&mut *self.verified.write());
    }

    pub(crate) fn mark_verified(&self, offset: u64) {
        self.verified.write().insert(offset);
    }

    /// The end of the segment's time window: every record in it is older.
    pub(crate) fn window_end_ms(&self) -> u64 {
        self.window_start_ms.saturating_add(self.window_ms)
    }

    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// Marks the segment sealed. Its file must be fully synced: it is never written again.
    pub(crate) fn seal(&self) {
        self.sealed.store(true, Ordering::Release);
        // Reads go through the whole-file map from now on.
        *self.prefix.lock() = None;
    }

    /// The active segment's readable bytes (exactly those: the slice ends at the readable
    /// length), if at least `need` bytes are readable. Through the growing map, mapped again
    /// only when the segment outgrew it (or, on storage that copies, when the copy is short).
    pub(crate) fn readable_prefix(
        &self,
        storage: &dyn Storage,
        need: u64,
    ) -> Result<Option<Bytes>> {
        let visible = self.visible_len.load(Ordering::Acquire);
        if need > visible {
            return Ok(None);
        }
        let mut prefix = self.prefix.lock();
        let map = match &*prefix {
            Some(map) if map.len() as u64 >= visible => map.clone(),
            _ => {
                let map = storage
                    .map_growing(&self.path, self.reserve.max(visible))
                    .map_err(|e| Error::io("map", &self.path, e))?;
                if (map.len() as u64) < visible {
                    return Err(Error::io(
                        "map",
                        &self.path,
                        std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the segment is shorter than its acknowledged length",
                        ),
                    ));
                }
                *prefix = Some(map.clone());
                map
            }
        };
        // Never hand out bytes past the readable length: past the file's end the map faults.
        Ok(Some(map.slice(..visible as usize)))
    }

    /// Makes `len` bytes readable (after the batches in them are acknowledged).
    pub(crate) fn publish(&self, len: u64) {
        debug_assert!(len >= self.visible_len.load(Ordering::Relaxed));
        self.visible_len.store(len, Ordering::Release);
    }

    /// The sealed file's map (made by the first caller; two racing callers may both map it,
    /// and one map is kept).
    pub(crate) fn mapped(&self, storage: &dyn Storage) -> Result<&Bytes> {
        if let Some(bytes) = self.map.get() {
            return Ok(bytes);
        }
        let bytes = if self.huge_pages {
            storage.read_sealed_huge(&self.path)
        } else {
            storage.read_sealed(&self.path)
        };
        let bytes = bytes.map_err(|e| Error::io("map", &self.path, e))?;
        Ok(self.map.get_or_init(|| bytes))
    }

    /// Drops what the page cache holds of this sealed segment, so that reads through its map
    /// (which asks for 2 MiB pages when [`Segment::huge_pages`]) bring it back in 2 MiB
    /// folios; see [`Storage::drop_cached`].
    pub(crate) fn repage(&self, storage: &dyn Storage) -> Result<()> {
        let map = self.mapped(storage)?;
        // SAFETY: `map` is what `storage.read_sealed_huge` (or `read_sealed`) returned for this
        // segment's path: `mapped` made it, and a segment is only ever read through the storage
        // of the log that holds it, which is the `storage` every caller passes.
        #[allow(unsafe_code)]
        let dropped = unsafe { storage.drop_cached(&self.path, map) };
        dropped.map_err(|e| Error::io("drop the cached pages of", &self.path, e))
    }

    /// The bytes from `offset` to the end of the batch that starts there (for a sealed segment,
    /// to the end of the file), or `None` at the end of the readable data. Not yet verified.
    pub(crate) fn batch_bytes(&self, storage: &dyn Storage, offset: u64) -> Result<Option<Bytes>> {
        if self.is_sealed() {
            let map = self.mapped(storage)?;
            return Ok((offset < map.len() as u64).then(|| map.slice(offset as usize..)));
        }
        let Some(header) = self.header_at(storage, offset)? else {
            return Ok(None);
        };
        // `header_at` checked that the batch lies below the readable length.
        let end = offset + header.total_len();
        let readable = self
            .readable_prefix(storage, end)?
            .expect("the batch lies below the readable length");
        Ok(Some(readable.slice(offset as usize..end as usize)))
    }

    /// The header of the batch at `offset`, to hop over batches without reading their bodies.
    pub(crate) fn header_at(
        &self,
        storage: &dyn Storage,
        offset: u64,
    ) -> Result<Option<BatchHeader>> {
        let corrupt = |kind| Error::Corrupt {
            file: self.path.clone(),
            offset,
            kind,
        };
        if self.is_sealed() {
            let map = self.mapped(storage)?;
            return match map.get(offset as usize..) {
                None | Some([]) => Ok(None),
                Some(rest) => parse_header(rest).map(Some).map_err(corrupt),
            };
        }
        let visible = self.visible_len.load(Ordering::Acquire);
        if offset >= visible {
            return Ok(None);
        }
        if visible - offset < BATCH_HEADER_LEN as u64 {
            return Err(corrupt(CorruptKind::Truncated));
        }
        let readable = self
            .readable_prefix(storage, offset + BATCH_HEADER_LEN as u64)?
            .expect("the header lies below the readable length");
        let bytes = readable.slice(offset as usize..);
        let header = parse_header(&bytes).map_err(corrupt)?;
        if header.total_len() > visible - offset {
            return Err(corrupt(CorruptKind::Truncated));
        }
        Ok(Some(header))
    }
}

/// A read-ahead window over a file that is only ever appended to: one positioned read fetches
/// many small batches, instead of a header read and a body read (and an allocation) per batch.
/// Bytes below the readable length never change, so the window never goes stale.
#[derive(Debug)]
pub(crate) struct ReadAhead {
    /// Bytes fetched per read (at least what is asked for).
    chunk_bytes: u64,
    /// Which segment the window holds (its first LSN), its start offset, and the bytes.
    segment: u64,
    start: u64,
    bytes: Bytes,
}

impl ReadAhead {
    pub(crate) fn new(chunk_bytes: u64) -> ReadAhead {
        ReadAhead {
            chunk_bytes,
            segment: 0,
            start: 0,
            bytes: Bytes::new(),
        }
    }

    /// The bytes `offset .. offset + len` of `file` (segment `segment`), whose first `end`
    /// bytes are readable.
    pub(crate) fn get(
        &mut self,
        file: &dyn StorageFile,
        segment: u64,
        offset: u64,
        len: u64,
        end: u64,
    ) -> std::io::Result<Bytes> {
        assert!(offset + len <= end, "reads stay below the readable length");
        let window_end = self.start + self.bytes.len() as u64;
        let held = self.segment == segment && offset >= self.start && offset + len <= window_end;
        if !held {
            let fill = len.max(self.chunk_bytes).min(end - offset);
            let mut buffer = vec![0u8; fill as usize];
            file.read_exact_at(&mut buffer, offset)?;
            (self.segment, self.start, self.bytes) = (segment, offset, Bytes::from(buffer));
        }
        let at = (offset - self.start) as usize;
        Ok(self.bytes.slice(at..at + len as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_lsn() {
        let name = file_name(42, 1_700_000_000_000, 3_600_000);
        assert_eq!(
            parse_file_name(&name),
            Some((42, 1_700_000_000_000, 3_600_000))
        );
        assert!(file_name(9, 5, 1) < file_name(10, 1, 1));
        for bad in [
            "x.seg",
            "42-1-1.seg",
            "00000000000000000000-00000000000000000000-0000000001.seg",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_batch_table_answers_for_batch_starts_only() {
        let h = BATCH_HEADER_LEN as u64;
        // Batches of 3, 1 and 4 records at 1000 (LSN 1000 is the segment's first).
        let batches = [
            (0, 1000, false),
            (h + 100, 1003, true),
            (2 * h + 150, 1004, false),
        ];
        let end = (3 * h + 400, 1008);
        let table = BatchTable::new(1000, &batches, end).unwrap();
        let known = |offset| table.find(1000, offset);
        assert_eq!(
            known(0),
            Some(KnownBatch {
                first_lsn: 1000,
                count: 3,
                body_len: 100,
                compressed: false
            })
        );
        assert_eq!(
            known(h + 100),
            Some(KnownBatch {
                first_lsn: 1003,
                count: 1,
                body_len: 50,
                compressed: true
            })
        );
        assert_eq!(
            known(2 * h + 150),
            Some(KnownBatch {
                first_lsn: 1004,
                count: 4,
                body_len: 250,
                compressed: false
            })
        );
        // Inside a batch, the end, past it, beyond u32.
        for offset in [1, h, h + 99, 3 * h + 400, 1 << 20, 1 << 40] {
            assert_eq!(known(offset), None, "{offset}");
        }
    }

    #[test]
    fn a_batch_table_finds_every_batch_from_its_guess_however_uneven_the_sizes() {
        let h = BATCH_HEADER_LEN as u64;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |below: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % below
        };
        for count in [1usize, 2, 3, 7, 64, 1000] {
            for shape in 0..4 {
                // Even sizes, random ones, one huge batch among small ones, growing sizes.
                let sizes: Vec<u64> = (0..count as u64)
                    .map(|i| match shape {
                        0 => 100,
                        1 => 1 + next(5000),
                        2 if i == count as u64 / 3 => 1 << 20,
                        2 => 10,
                        _ => 1 + i * i,
                    })
                    .collect();
                let (mut offset, mut lsn, mut batches) = (0, 500, Vec::new());
                for size in &sizes {
                    batches.push((offset, lsn, false));
                    offset += h + size;
                    lsn += 1 + size % 3;
                }
                let table = BatchTable::new(500, &batches, (offset, lsn)).unwrap();
                for (at, &(start, first_lsn, _)) in batches.iter().enumerate() {
                    let found = table.find(500, start).expect("a batch start");
                    assert_eq!(found.first_lsn, first_lsn, "{count} batches, shape {shape}");
                    assert_eq!(u64::from(found.body_len), sizes[at]);
                    for inside in [start + 1, start + h, start + h + sizes[at] - 1] {
                        assert_eq!(table.find(500, inside), None);
                    }
                }
                for past in [offset, offset + 1, u64::from(u32::MAX), 1 << 40] {
                    assert_eq!(table.find(500, past), None);
                }
            }
        }
    }

    #[test]
    fn a_batch_table_refuses_what_it_cannot_hold() {
        // An LSN before the segment's, one too far for 31 bits, an offset beyond u32, and
        // batches out of order are not tables.
        assert!(BatchTable::new(1000, &[(0, 999, false)], (100, 1001)).is_none());
        assert!(BatchTable::new(0, &[(0, 1 << 31, false)], (100, (1 << 31) + 1)).is_none());
        assert!(BatchTable::new(0, &[(0, 0, false)], (1 << 32, 1)).is_none());
        assert!(BatchTable::new(0, &[(100, 0, false), (0, 1, false)], (200, 2)).is_none());
        assert!(BatchTable::new(0, &[(0, 0, false)], (100, 0)).is_none());
        // An empty segment is a table of no batches.
        let empty = BatchTable::new(7, &[], (0, 7)).unwrap();
        assert_eq!(empty.find(7, 0), None);
    }
}
