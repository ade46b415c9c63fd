//! A segment: one file of batches covering one time window of one shard.
//!
//! The file name carries everything retention and recovery need, so the log keeps no catalogue:
//! `{first_lsn:020}-{window_start_ms:020}-{window_ms:010}.seg`. Segments sort by first LSN; a
//! segment's records all have timestamps below `window_start_ms + window_ms`, so once that time
//! is past the retention cutoff the whole file can go.

use std::path::PathBuf;
use std::sync::Arc;
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
    /// The open file while this process writes it (kept for positioned reads after sealing).
    file: Option<Arc<dyn StorageFile>>,
    /// Bytes readers may read: whole, acknowledged batches only.
    visible_len: AtomicU64,
    sealed: AtomicBool,
    map: Mutex<Option<Bytes>>,
    /// While active: a map of its readable prefix (as long as it was when mapped), so random
    /// reads of acknowledged batches take no system call. Remapped when a read needs more.
    prefix: Mutex<Option<Bytes>>,
    /// Offsets of batches already verified in this process. Their bytes cannot change (sealed,
    /// or below the active segment's acknowledged length), so random reads skip the checksum.
    verified: RwLock<HashSet<u64>>,
}

impl Segment {
    pub(crate) fn sealed(
        path: PathBuf,
        first_lsn: u64,
        window_start_ms: u64,
        window_ms: u64,
    ) -> Self {
        Segment {
            first_lsn,
            window_start_ms,
            window_ms,
            path,
            file: None,
            visible_len: AtomicU64::new(0),
            sealed: AtomicBool::new(true),
            map: Mutex::new(None),
            prefix: Mutex::new(None),
            verified: RwLock::new(HashSet::new()),
        }
    }

    pub(crate) fn active(
        path: PathBuf,
        first_lsn: u64,
        window_start_ms: u64,
        window_ms: u64,
        file: Arc<dyn StorageFile>,
        len: u64,
    ) -> Self {
        Segment {
            file: Some(file),
            visible_len: AtomicU64::new(len),
            sealed: AtomicBool::new(false),
            ..Segment::sealed(path, first_lsn, window_start_ms, window_ms)
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
        self.verified.read().contains(&offset)
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

    /// The active segment's readable bytes, mapped, if at least `need` bytes are readable: the
    /// current map if it reaches that far, else a new map of everything readable now.
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
        if let Some(bytes) = &*prefix
            && bytes.len() as u64 >= need
        {
            return Ok(Some(bytes.clone()));
        }
        let bytes = storage
            .read_prefix(&self.path, visible)
            .map_err(|e| Error::io("map", &self.path, e))?;
        *prefix = Some(bytes.clone());
        Ok(Some(bytes))
    }

    /// Makes `len` bytes readable (after the batches in them are acknowledged).
    pub(crate) fn publish(&self, len: u64) {
        debug_assert!(len >= self.visible_len.load(Ordering::Relaxed));
        self.visible_len.store(len, Ordering::Release);
    }

    fn mapped(&self, storage: &dyn Storage) -> Result<Bytes> {
        let mut map = self.map.lock();
        if let Some(bytes) = &*map {
            return Ok(bytes.clone());
        }
        let bytes = storage
            .read_sealed(&self.path)
            .map_err(|e| Error::io("map", &self.path, e))?;
        *map = Some(bytes.clone());
        Ok(bytes)
    }

    /// The bytes from `offset` to the end of the batch that starts there (for a sealed segment,
    /// to the end of the file), or `None` at the end of the readable data. Not yet verified.
    pub(crate) fn batch_bytes(
        &self,
        storage: &dyn Storage,
        offset: u64,
        ahead: &mut ReadAhead,
    ) -> Result<Option<Bytes>> {
        if self.is_sealed() {
            let map = self.mapped(storage)?;
            return Ok((offset < map.len() as u64).then(|| map.slice(offset as usize..)));
        }
        let Some(header) = self.header_at(storage, offset, ahead)? else {
            return Ok(None);
        };
        let file = self
            .file
            .as_ref()
            .expect("an unsealed segment has its file open");
        let visible = self.visible_len.load(Ordering::Acquire);
        let bytes = ahead
            .get(&**file, self.first_lsn, offset, header.total_len(), visible)
            .map_err(|e| Error::io("read", &self.path, e))?;
        Ok(Some(bytes))
    }

    /// The header of the batch at `offset`, to hop over batches without reading their bodies.
    pub(crate) fn header_at(
        &self,
        storage: &dyn Storage,
        offset: u64,
        ahead: &mut ReadAhead,
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
        let file = self
            .file
            .as_ref()
            .expect("an unsealed segment has its file open");
        let bytes = ahead
            .get(
                &**file,
                self.first_lsn,
                offset,
                BATCH_HEADER_LEN as u64,
                visible,
            )
            .map_err(|e| Error::io("read", &self.path, e))?;
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
    /// For readers going through a segment in order.
    pub(crate) const SEQUENTIAL_BYTES: u64 = 256 << 10;
    /// For single batch reads: most batches fit, so one read usually suffices.
    pub(crate) const SINGLE_BYTES: u64 = 4 << 10;

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
}
