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
use parking_lot::Mutex;

use crate::batch::{BATCH_HEADER_LEN, BatchPlace, parse_header};
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

    /// The bytes from `offset` to the end of the batch that starts there, or `None` at the end
    /// of the readable data. The batch is not yet verified.
    pub(crate) fn batch_bytes(&self, storage: &dyn Storage, offset: u64) -> Result<Option<Bytes>> {
        let corrupt = |kind| Error::Corrupt {
            file: self.path.clone(),
            offset,
            kind,
        };
        if self.is_sealed() {
            let map = self.mapped(storage)?;
            if offset >= map.len() as u64 {
                return Ok(None);
            }
            return Ok(Some(map.slice(offset as usize..)));
        }
        let visible = self.visible_len.load(Ordering::Acquire);
        if offset >= visible {
            return Ok(None);
        }
        let file = self
            .file
            .as_ref()
            .expect("an unsealed segment has its file open");
        let mut header = [0u8; BATCH_HEADER_LEN];
        file.read_exact_at(&mut header, offset)
            .map_err(|e| Error::io("read", &self.path, e))?;
        let total = parse_header(&header).map_err(corrupt)?.total_len();
        if offset + total > visible {
            return Err(corrupt(CorruptKind::Truncated));
        }
        let mut bytes = vec![0u8; total as usize];
        file.read_exact_at(&mut bytes, offset)
            .map_err(|e| Error::io("read", &self.path, e))?;
        Ok(Some(Bytes::from(bytes)))
    }

    /// Like [`Segment::batch_bytes`], but only the header, to hop over batches cheaply.
    pub(crate) fn header_at(
        &self,
        storage: &dyn Storage,
        offset: u64,
    ) -> Result<Option<crate::batch::BatchHeader>> {
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
        if offset >= self.visible_len.load(Ordering::Acquire) {
            return Ok(None);
        }
        let file = self
            .file
            .as_ref()
            .expect("an unsealed segment has its file open");
        let mut header = [0u8; BATCH_HEADER_LEN];
        file.read_exact_at(&mut header, offset)
            .map_err(|e| Error::io("read", &self.path, e))?;
        parse_header(&header).map(Some).map_err(corrupt)
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
