//! The log: shards, their writer threads, the metadata file, reads and retention.

use bytes::Bytes;
use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use crate::batch::{
    BATCH_HEADER_LEN, BATCH_MAGIC, BatchHeader, Codec, DecodedBatch, Entries, RecordRange, Records,
    decode_batch, decode_verified, parse_header,
};
use crate::error::{CorruptKind, Error, Result};
use crate::ids::{Lsn, ShardId, Timestamp};
use crate::limits::*;
use crate::record::{Entry, Record};
use crate::segment::{BatchTable, KnownBatch, Segment, SegmentInfo};
use crate::shard::{self, ShardShared};
use crate::storage::{FsStorage, Storage};
use crate::ticket::{AppendTicket, BatchPos, RecordPos};

/// When an append is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// After the batch holding it is fsynced (`fdatasync`): it survives a power cut.
    Always,
    /// After the batch is written to the OS; the writer fsyncs at most `ms` later. A process
    /// crash loses nothing acknowledged; a power cut loses at most the last `ms` of appends.
    Interval {
        /// The longest time written data stays unsynced, at most
        /// [`SYNC_INTERVAL_MS_MAX`](crate::SYNC_INTERVAL_MS_MAX).
        ms: u64,
    },
    /// After the batch is written to the OS; fsync only when a segment is sealed or the log
    /// closes. A process crash loses nothing acknowledged; a power cut may lose anything unsealed.
    Os,
}

/// How to open a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Shards (one writer thread each). `None`: the count stored in an existing log, or the
    /// machine's parallelism for a new one. A count different from the stored one is an error.
    pub shard_count: Option<u32>,
    /// The time window one segment covers, in milliseconds.
    pub segment_window_ms: u64,
    /// A segment is sealed before it would grow past this many bytes.
    pub segment_bytes_max: u64,
    /// When appends are acknowledged.
    pub durability: Durability,
    /// Whether batches are lz4-compressed when that makes them smaller.
    pub compression: bool,
    /// Whether sealed segments are kept in memory in 2 MiB pages (Linux transparent huge pages
    /// for files), for logs that fit in memory and are read at random: a read of a message
    /// then costs one TLB entry per 2 MiB of log instead of a page-table walk per 4 KiB. Their
    /// maps ask for it (`MADV_HUGEPAGE`), and a scrub ([`Log::scrub`]) first drops what the
    /// page cache holds of each sealed segment, in the 4 KiB pieces it was written in, and
    /// reads it back whole. The price: the scrub reads from the device, and a read of a part
    /// not in memory reads the 2 MiB around it. Segments sealed later are taken by a scrub kept
    /// running ([`Scrub::follow`]; the engine's does); until then they are in small pages. Off
    /// by default.
    pub huge_pages: bool,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            shard_count: None,
            segment_window_ms: SEGMENT_WINDOW_MS_DEFAULT,
            segment_bytes_max: SEGMENT_BYTES_DEFAULT,
            durability: Durability::Always,
            compression: true,
            huge_pages: false,
        }
    }
}

impl LogConfig {
    fn validate(&self) -> Result<()> {
        let invalid = |reason| Err(Error::InvalidConfig { reason });
        if let Some(count) = self.shard_count
            && !(1..=SHARD_COUNT_MAX).contains(&count)
        {
            return invalid("shard_count must be between 1 and SHARD_COUNT_MAX");
        }
        if !(SEGMENT_WINDOW_MS_MIN..=SEGMENT_WINDOW_MS_MAX).contains(&self.segment_window_ms) {
            return invalid("segment_window_ms must be between 1 second and 30 days");
        }
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes_max) {
            return invalid("segment_bytes_max must be between 4 KiB and 1 GiB");
        }
        if let Durability::Interval { ms } = self.durability
            && !(1..=SYNC_INTERVAL_MS_MAX).contains(&ms)
        {
            return invalid("Durability::Interval needs 1 to 60000 ms");
        }
        Ok(())
    }
}

/// What opening the log found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Per shard, the bytes cut from a torn tail of its newest segment.
    pub torn_bytes: Vec<u64>,
}

/// What [`Log::retain`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetainReport {
    /// Segments deleted.
    pub segments_removed: usize,
}

/// The metadata file `LOG`: identifies a log directory and pins its shard count.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `MISSIVE\0` |
/// | 8 | 2 | format version (1) |
/// | 10 | 2 | reserved (0) |
/// | 12 | 4 | shard count |
/// | 16 | 8 | log id (random; seeds every batch checksum) |
/// | 24 | 4 | CRC-32 of bytes 0..24 |
mod meta {
    pub(super) const MAGIC: [u8; 8] = *b"MISSIVE\0";
    pub(super) const VERSION: usize = 8;
    pub(super) const RESERVED: usize = VERSION + 2;
    pub(super) const SHARDS: usize = RESERVED + 2;
    pub(super) const LOG_ID: usize = SHARDS + 4;
    pub(super) const CRC: usize = LOG_ID + 8;
    pub(super) const END: usize = CRC + 4;
    pub(super) const FILE: &str = "LOG";
    pub(super) const TEMP: &str = "LOG.tmp";
}

#[derive(Debug)]
struct Meta {
    shard_count: u32,
    log_id: u64,
}

impl Meta {
    fn encode(&self) -> [u8; meta::END] {
        let mut bytes = [0u8; meta::END];
        bytes[..8].copy_from_slice(&meta::MAGIC);
        bytes[meta::VERSION..meta::RESERVED].copy_from_slice(&crate::FORMAT_VERSION.to_le_bytes());
        bytes[meta::SHARDS..meta::LOG_ID].copy_from_slice(&self.shard_count.to_le_bytes());
        bytes[meta::LOG_ID..meta::CRC].copy_from_slice(&self.log_id.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..meta::CRC]);
        bytes[meta::CRC..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8], path: &Path) -> Result<Meta> {
        let corrupt = |offset| Error::Corrupt {
            file: path.to_path_buf(),
            offset,
            kind: CorruptKind::BadFile,
        };
        if bytes.len() != meta::END || bytes[..8] != meta::MAGIC {
            return Err(corrupt(0));
        }
        let crc = u32::from_le_bytes(bytes[meta::CRC..].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[..meta::CRC]) != crc {
            return Err(corrupt(meta::CRC as u64));
        }
        let version = u16::from_le_bytes([bytes[meta::VERSION], bytes[meta::VERSION + 1]]);
        if version != crate::FORMAT_VERSION {
            let supported = crate::FORMAT_VERSION;
            return Err(Error::UnsupportedVersion {
                file: path.to_path_buf(),
                found: version,
                supported,
            });
        }
        let shard_count =
            u32::from_le_bytes(bytes[meta::SHARDS..meta::LOG_ID].try_into().expect("4"));
        if !(1..=SHARD_COUNT_MAX).contains(&shard_count) {
            return Err(corrupt(meta::SHARDS as u64));
        }
        let log_id =
            u64::from_le_bytes(bytes[meta::LOG_ID..meta::CRC].try_into().expect("8 bytes"));
        Ok(Meta {
            shard_count,
            log_id,
        })
    }
}

fn random_log_id() -> u64 {
    // Not a secret, only a salt that differs between logs: std's randomly keyed hasher suffices.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// The durable, sharded, append-only log. See the [crate documentation](crate).
///
/// Dropping the log closes it: writers finish what was queued and sync. Use [`Log::close`] to
/// learn whether that final sync succeeded.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    shards: Vec<Arc<ShardShared>>,
    writers: Vec<JoinHandle<Result<()>>>,
    recovery: RecoveryReport,
    storage: Arc<dyn Storage>,
    _lock: Box<dyn Send + Sync + std::fmt::Debug>,
}

impl Log {
    /// Opens (or creates) the log in `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Log> {
        Log::open_with(Arc::new(FsStorage), dir, config)
    }

    /// Opens (or creates) the log in `dir` on the given storage.
    ///
    /// Recovery verifies the newest segment of every shard, cuts a torn tail there and reports
    /// any other bad batch as [`Error::Corrupt`]. Sealed segments are verified as they are read
    /// (and all at once by [`Log::verify`]).
    pub fn open_with(
        storage: Arc<dyn Storage>,
        dir: impl AsRef<Path>,
        mut config: LogConfig,
    ) -> Result<Log> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        storage
            .create_dir_all(&dir)
            .map_err(|e| Error::io("create directory", &dir, e))?;
        let lock = storage.lock_dir(&dir).map_err(|error| match error.kind() {
            std::io::ErrorKind::WouldBlock => Error::Locked { dir: dir.clone() },
            _ => Error::io("lock", &dir, error),
        })?;
        let meta = Log::open_meta(&*storage, &dir, config.shard_count)?;
        config.shard_count = Some(meta.shard_count);
        let mut shards = Vec::with_capacity(meta.shard_count as usize);
        let mut writers = Vec::with_capacity(meta.shard_count as usize);
        let mut recovery = RecoveryReport::default();
        for id in 0..meta.shard_count {
            let shard_dir = dir.join(format!("shard-{id:04}"));
            let recovered =
                shard::recover(Arc::clone(&storage), shard_dir, id, meta.log_id, &config);
            let recovered = match recovered {
                Ok(recovered) => recovered,
                Err(error) => {
                    // The recovery error is the one to report; the started writers had no work.
                    let _ = Log::stop(&shards, writers);
                    return Err(error);
                }
            };
            recovery.torn_bytes.push(recovered.torn_bytes);
            shards.push(Arc::clone(&recovered.shared));
            let writer = recovered.writer;
            let spawned = std::thread::Builder::new()
                .name(format!("missive-log-{id}"))
                .spawn(move || writer.run());
            match spawned {
                Ok(handle) => writers.push(handle),
                Err(error) => {
                    let _ = Log::stop(&shards, writers);
                    return Err(Error::io("spawn writer", &dir, error));
                }
            }
        }
        // The shard folders may be new: make them durable before anything lands in them.
        storage
            .sync_dir(&dir)
            .map_err(|e| Error::io("fsync directory", &dir, e))?;
        Ok(Log {
            dir,
            config,
            shards,
            writers,
            recovery,
            storage,
            _lock: lock,
        })
    }

    fn open_meta(storage: &dyn Storage, dir: &Path, requested: Option<u32>) -> Result<Meta> {
        let path = dir.join(meta::FILE);
        if storage
            .exists(&path)
            .map_err(|e| Error::io("stat", &path, e))?
        {
            let file = storage
                .open(&path, false)
                .map_err(|e| Error::io("open", &path, e))?;
            let len = file.len().map_err(|e| Error::io("stat", &path, e))?;
            let mut bytes = vec![0u8; len.min(meta::END as u64 + 1) as usize];
            file.read_exact_at(&mut bytes, 0)
                .map_err(|e| Error::io("read", &path, e))?;
            let stored = Meta::decode(&bytes, &path)?;
            if let Some(requested) = requested
                && requested != stored.shard_count
            {
                return Err(Error::ConfigMismatch {
                    field: "shard_count",
                    stored: stored.shard_count.into(),
                    requested: requested.into(),
                });
            }
            return Ok(stored);
        }
        let names = storage
            .list_dir(dir)
            .map_err(|e| Error::io("list", dir, e))?;
        if names.iter().any(|name| name.starts_with("shard-")) {
            // Segments without the file that names their log id: refuse rather than guess.
            return Err(Error::Corrupt {
                file: path,
                offset: 0,
                kind: CorruptKind::BadFile,
            });
        }
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let shard_count = requested.unwrap_or(parallelism.min(SHARD_COUNT_MAX));
        let fresh = Meta {
            shard_count,
            log_id: random_log_id(),
        };
        let temp = dir.join(meta::TEMP);
        let file = storage
            .open(&temp, true)
            .map_err(|e| Error::io("create", &temp, e))?;
        file.set_len(0)
            .map_err(|e| Error::io("truncate", &temp, e))?;
        file.write_all_at(&fresh.encode(), 0)
            .map_err(|e| Error::io("write", &temp, e))?;
        file.sync_data().map_err(|e| Error::io("fsync", &temp, e))?;
        storage
            .rename(&temp, &path)
            .map_err(|e| Error::io("rename", &path, e))?;
        storage
            .sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))?;
        Ok(fresh)
    }

    fn stop(shards: &[Arc<ShardShared>], writers: Vec<JoinHandle<Result<()>>>) -> Result<()> {
        for shard in shards {
            shard.close();
        }
        let mut outcome = Ok(());
        for writer in writers {
            let result = writer.join().unwrap_or(Err(Error::Closed));
            if outcome.is_ok() {
                outcome = result;
            }
        }
        outcome
    }

    /// Closes the log: every queued append is written and everything is synced. Returns the
    /// first error of that final work.
    pub fn close(mut self) -> Result<()> {
        Log::stop(&self.shards, std::mem::take(&mut self.writers))
    }

    /// The storage the log lives on. Caches of the log (index checkpoints) write through it
    /// too, so that tests cutting the power cut it for both.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration in force (with the shard count resolved).
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The log's random id, fixed at creation. Caches of the log (index checkpoints) record it so
    /// they are never applied to another log.
    pub fn id(&self) -> u64 {
        self.shards[0].log_id
    }

    /// How many shards the log has.
    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    /// What recovery found when the log was opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The shard that holds `chat`'s records.
    pub fn shard_of(&self, chat: crate::ChatId) -> ShardId {
        chat.shard(self.shard_count())
    }

    fn shard(&self, shard: ShardId) -> Result<&Arc<ShardShared>> {
        self.shards.get(shard.0 as usize).ok_or(Error::NoSuchShard {
            shard: shard.0,
            shard_count: self.shard_count(),
        })
    }

    /// Queues a record in its chat's shard and returns a ticket that resolves when the append is
    /// acknowledged under the configured [`Durability`]. Records of one shard get LSNs in the
    /// order their `append` calls return.
    ///
    /// Blocks only while the shard's queue is full (back-pressure).
    pub fn append(&self, record: Record) -> Result<AppendTicket> {
        let shard = self.shard_of(record.chat);
        let ticket = self.append_unwoken(record)?;
        self.wake(shard);
        Ok(ticket)
    }

    /// [`Log::append`] without waking the shard's writer, which the caller must then do with
    /// [`Log::wake`] (else the record waits for the next append or sync that wakes it). It lets
    /// a caller that appends under a lock of its own (to keep its sequence numbers in log
    /// order) make the wake-up system call after releasing that lock, not while others wait.
    pub fn append_unwoken(&self, record: Record) -> Result<AppendTicket> {
        if record.payload.len() > RECORD_PAYLOAD_BYTES_MAX {
            return Err(Error::RecordTooLarge {
                bytes: record.payload.len(),
                bytes_max: RECORD_PAYLOAD_BYTES_MAX,
            });
        }
        self.shards[self.shard_of(record.chat).0 as usize].append_unwoken(record)
    }

    /// Wakes `shard`'s writer for records appended with [`Log::append_unwoken`] (cheap when it
    /// is already awake: no system call).
    pub fn wake(&self, shard: ShardId) {
        if let Some(shard) = self.shards.get(shard.0 as usize) {
            shard.wake();
        }
    }

    /// What the writers did since the log opened, over all shards.
    pub fn stats(&self) -> LogStats {
        let mut stats = LogStats::default();
        for shard in &self.shards {
            let w = &shard.written;
            stats.batches_written += w.batches.load(Ordering::Relaxed);
            stats.records_written += w.records.load(Ordering::Relaxed);
            stats.bytes_written += w.bytes.load(Ordering::Relaxed);
            stats.fsyncs += w.fsyncs.load(Ordering::Relaxed);
        }
        stats
    }

    /// Makes everything acknowledged so far durable, whatever the durability level.
    pub fn sync(&self) -> Result<()> {
        self.shards.iter().try_for_each(|shard| shard.sync())
    }

    /// The LSN the next acknowledged record of `shard` will have: every LSN below it is readable.
    pub fn head(&self, shard: ShardId) -> Result<Lsn> {
        Ok(Lsn(self.shard(shard)?.head.load(Ordering::Acquire)))
    }

    /// Whether a failed write or fsync poisoned `shard`.
    pub fn is_poisoned(&self, shard: ShardId) -> Result<bool> {
        Ok(self.shard(shard)?.is_poisoned())
    }

    /// The segments of a shard, oldest first.
    pub fn segments(&self, shard: ShardId) -> Result<Vec<SegmentInfo>> {
        Ok(self
            .shard(shard)?
            .segment_snapshot()
            .iter()
            .map(|s| s.info())
            .collect())
    }

    /// Reads a shard's acknowledged records from `from` on (or from the oldest retained record,
    /// if `from` was removed by retention). The reader stops at the head as of each step.
    pub fn read_from(&self, shard: ShardId, from: Lsn) -> Result<ShardReader> {
        Ok(ShardReader {
            batches: self.batches_from(shard, from)?,
            from,
            entries: None,
        })
    }

    /// Reads a shard's batches from the one holding `from` on, with their positions: what an
    /// index rebuilding from the log needs. Like [`Log::read_from`], it skips what retention
    /// removed and stops at the head.
    pub fn batches_from(&self, shard: ShardId, from: Lsn) -> Result<BatchReader> {
        Ok(BatchReader {
            shard: Arc::clone(self.shard(shard)?),
            storage: Arc::clone(&self.storage),
            from,
            at: None,
            failed: false,
        })
    }

    /// Reads and verifies the batch at `pos`.
    ///
    /// A batch is verified (checksum, place, every record) the first time this process reads
    /// it; later reads trust it, since its bytes cannot change. A position that names no batch
    /// is [`Error::NotFound`].
    pub fn read_batch(&self, pos: BatchPos) -> Result<DecodedBatch> {
        let (shard, segment) = self.segment_at(pos)?;
        self.batch_in(shard, &segment, pos)
    }

    /// Reads the records of one batch from the one at `at` on, in LSN order: what an index that
    /// remembered where a record is needs, without paying for the rest of its batch.
    ///
    /// `body_end`, if given, is the end (exclusive) of the part of the batch's decoded body the
    /// caller needs, typically where the last record it wants ends (the next record's
    /// [`Entries::body_offset`]): the records end with the last one that lies wholly before it.
    /// An end past the body means the end of the body; one at or before `at` gives no records.
    ///
    /// Payloads share the buffer read or the segment's memory map: no per-record copies. What is
    /// read, and what is checked:
    ///
    /// - **Sealed segment**, batch verified before in this process: the records are sliced out of
    ///   the memory map, O(1), no copy and no checksum. A batch not yet verified is verified
    ///   whole once (as [`Log::read_batch`] does), and is then trusted. Once a scrub
    ///   ([`Log::verify`], [`Log::scrub`]) verified the whole segment, an uncompressed batch's
    ///   header is not even read: the segment keeps what reads need of it (8 bytes a batch).
    /// - **Active segment**: everything below its readable length was written by this process's
    ///   writer or verified by recovery when the log was opened, and never changes, so no
    ///   checksum is computed: the 64-byte header is read and checked against `at` (shard,
    ///   segment, LSN range, body bounds), then only the body bytes from the record to
    ///   `body_end` (or to the end of the body).
    /// - **Compressed batches** (either kind of segment) are read and decompressed whole,
    ///   verified the first time.
    ///
    /// `at` must come from the log ([`Entries::body_offset`] with the record's LSN, or an index
    /// built from them). A position that names no record is [`Error::NotFound`]: an offset that
    /// is not a batch of that segment, an LSN outside the batch, a body offset outside the body
    /// or without room for the records before and after it, or one where no well-formed record
    /// of the batch starts. Not told apart in O(1) (the log keeps no index of records, and the
    /// active segment no checksum on this path): an offset inside a record whose bytes happen to
    /// look like a record of the batch, the LSN of another record of the same batch, and, in the
    /// active segment only, a batch offset pointing into a payload that holds a copy of a batch
    /// header of this shard and segment.
    ///
    /// A bad batch in a sealed segment is [`Error::Corrupt`], as with [`Log::read_batch`].
    pub fn read_entries(&self, at: RecordPos, body_end: Option<u32>) -> Result<Entries> {
        self.read_records(at, body_end, |records| records.to_entries())
    }

    /// [`Log::read_entries`] without taking the records out: `read` gets them in place,
    /// borrowed from the segment's memory map (or the buffer a batch was read into), and what
    /// it returns is returned. Reads that touch many batches for a record or two each (an
    /// inbox fetch) keep no reference count per batch or record this way; a caller keeps a
    /// payload past the call with [`RecordRef::share`](crate::batch::RecordRef::share).
    ///
    /// `read` may run while a lock of the shard's segment list is held (for reading): it
    /// should be short, and must not call the log back.
    pub fn read_records<T>(
        &self,
        at: RecordPos,
        body_end: Option<u32>,
        read: impl FnOnce(Records<'_>) -> T,
    ) -> Result<T> {
        let (mut read, mut read_once) = (Some(read), None);
        self.read_each(&[(at, body_end)], |_, records| {
            read_once = Some(records.map(read.take().expect("one place, read once")));
            ControlFlow::Break(())
        });
        read_once.expect("read_each reads every place it is given")
    }

    /// [`Log::read_records`] at each of `places` (a record position and the end of the part
    /// wanted), in order: `read` gets each place's index and its records, or the error
    /// `read_records` would return (typically [`Error::NotFound`] for a segment retention
    /// removed), and says whether to go on. Reads of the same shard share one hold of its
    /// segment list's read lock, and consecutive places in the same segment one look-up: for
    /// a query reading a record or two from each of many batches (an inbox fetch), the
    /// per-read overhead of `read_records` is most of the work once the bytes are in cache.
    ///
    /// `read` runs while the lock is held (for reading): it should be short, and must not call
    /// the log back.
    pub fn read_each(
        &self,
        places: &[(RecordPos, Option<u32>)],
        mut read: impl FnMut(usize, Result<Records<'_>>) -> ControlFlow<()>,
    ) {
        let mut next = 0;
        while let Some(&(first, _)) = places.get(next) {
            let shard = match self.shard(first.batch.shard) {
                Ok(shard) => shard,
                Err(error) => {
                    if read(next, Err(error)).is_break() {
                        return;
                    }
                    next += 1;
                    continue;
                }
            };
            // The shard's places on the common paths (a verified sealed batch, the active
            // segment's acknowledged bytes) under one hold of the lock, up to one whose batch
            // must be verified first: that is done after it (`read_verifying`), so that a
            // segment roll never waits for a checksum.
            let general = {
                let segments = shard.segments.read();
                let mut last: Option<&Arc<Segment>> = None;
                loop {
                    let Some(&(at, body_end)) = places.get(next) else {
                        break None;
                    };
                    let pos = at.batch;
                    if pos.shard != first.batch.shard {
                        break None;
                    }
                    let segment = last
                        .filter(|s| s.first_lsn == pos.segment)
                        .or_else(|| find_segment(&segments, pos.segment));
                    let located = match segment {
                        None => Err(not_found(pos)),
                        Some(segment) => {
                            last = Some(segment);
                            self.place_in(shard, segment, at, body_end)
                        }
                    };
                    let flow = match located {
                        Ok(Some(located)) => {
                            read(next, located.records().ok_or_else(|| not_found(pos)))
                        }
                        Ok(None) => break Some(next),
                        Err(error) => read(next, Err(error)),
                    };
                    if flow.is_break() {
                        return;
                    }
                    next += 1;
                }
            };
            if let Some(at) = general {
                let (pos, body_end) = places[at];
                let flow = match self.read_verifying(pos, body_end, |records| read(at, Ok(records)))
                {
                    Ok(flow) => flow,
                    Err(error) => read(at, Err(error)),
                };
                if flow.is_break() {
                    return;
                }
                next = at + 1;
            }
        }
    }

    /// Starts loading, all at once, the first bytes [`Log::read_entries`] will touch at each of
    /// `positions`: the batch's header and the record's first lines. A read spread over many
    /// batches (an inbox fetch: each message in a batch of its own, often in pages of its own)
    /// otherwise waits for its cache and TLB misses one after another; touched together, they
    /// overlap. Only a hint: a position that names nothing is skipped, and nothing is checked.
    pub fn prefetch(&self, positions: impl IntoIterator<Item = RecordPos>) {
        /// Bytes of a record touched: its header and the start of its payload.
        const RECORD_SPAN: usize = 128;
        let mut positions = positions.into_iter().peekable();
        // Positions a shard at a time (a chat's are all in one), under its segment list's read
        // lock, held for the whole shard: the segments are borrowed, not counted. First every
        // position becomes an offset into a mapped segment, then one tight loop of prefetch
        // instructions, which return at once: the misses overlap, where a lock-prefixed
        // instruction between two of them (a reference count) would wait for the first, and a
        // plain load would hold up the loop once the processor's window of instructions fills
        // behind it.
        while let Some(first) = positions.peek() {
            let shard_id = first.batch.shard;
            let Ok(shard) = self.shard(shard_id) else {
                positions.next();
                continue;
            };
            let segments = shard.segments.read();
            // Per segment: its first LSN, its map, and the table of its batches if a scrub
            // verified it whole (reads then look batches up there instead of parsing their
            // headers: see `known_place`).
            let mut maps: Vec<(u64, Cow<'_, Bytes>, Option<&BatchTable>)> = Vec::new();
            let mut spots: Vec<(usize, usize, usize)> = Vec::new();
            while let Some(at) = positions.next_if(|at| at.batch.shard == shard_id) {
                let pos = at.batch;
                let map = match maps.iter().position(|(lsn, ..)| *lsn == pos.segment) {
                    Some(map) => map,
                    None => {
                        let Some(segment) = find_segment(&segments, pos.segment) else {
                            continue;
                        };
                        let bytes = if segment.is_sealed() {
                            segment.mapped(&*self.storage).ok().map(Cow::Borrowed)
                        } else {
                            let prefix = segment.readable_prefix(&*self.storage, 0);
                            prefix.ok().flatten().map(Cow::Owned)
                        };
                        let Some(bytes) = bytes else {
                            continue;
                        };
                        maps.push((pos.segment, bytes, segment.batch_table()));
                        maps.len() - 1
                    }
                };
                let batch = pos.offset as usize;
                // Where the record lies if the batch is not compressed (a compressed one is
                // read whole: touching a byte of it is harmless).
                let record = batch
                    .saturating_add(BATCH_HEADER_LEN)
                    .saturating_add(at.body_offset as usize);
                spots.push((map, batch, record));
            }
            for &(map, batch, record) in &spots {
                let (_, bytes, table) = &maps[map];
                match table {
                    Some(table) => table.prefetch(batch as u64),
                    None => {
                        crate::storage::prefetch(bytes, batch);
                        crate::storage::prefetch(bytes, batch + BATCH_HEADER_LEN - 1);
                    }
                }
                for offset in [record, record + RECORD_SPAN / 2, record + RECORD_SPAN - 1] {
                    crate::storage::prefetch(bytes, offset);
                }
            }
        }
    }

    /// [`Log::read_records`] in a sealed segment for an uncompressed batch verified before:
    /// the header, then only the records asked for (the path of nearly every read once the
    /// background scrub has run). `None` for any other batch, read the general way.
    fn verified_place<'s>(
        &self,
        segment: &'s Segment,
        at: RecordPos,
        body_end: Option<u32>,
    ) -> Result<Option<Located<'s>>> {
        let pos = at.batch;
        if let Some(known) = segment.known_batch(pos.offset) {
            if !known.compressed {
                return self.known_place(segment, at, body_end, known).map(Some);
            }
        } else if !segment.is_verified(pos.offset) {
            return Ok(None);
        }
        let map = segment.mapped(&*self.storage)?;
        let Some(Ok(header)) = map.get(pos.offset as usize..).map(parse_header) else {
            return Ok(None);
        };
        if header.segment != segment.first_lsn || header.shard != pos.shard.0 {
            return Ok(None);
        }
        let body_start = pos.offset as usize + BATCH_HEADER_LEN;
        if header.codec != Codec::None || body_start + header.body_len as usize > map.len() {
            return Ok(None);
        }
        let range = header
            .record_range(at.body_offset, at.lsn, body_end)
            .ok_or_else(|| not_found(pos))?;
        Ok(Some(Located {
            bytes: Cow::Borrowed(map),
            body_start,
            header,
            range,
        }))
    }

    /// [`Log::read_records`] of an uncompressed batch in a segment a scrub verified whole: its
    /// header's fields come from the segment's table of batches, so only the records' own
    /// bytes are touched (one page, not two: an inbox fetch's records each lie in a batch of
    /// their own, and each page is a TLB miss). The records are checked as on every other
    /// path, less the plausibility of their timestamps, which needs the header.
    fn known_place<'s>(
        &self,
        segment: &'s Segment,
        at: RecordPos,
        body_end: Option<u32>,
        known: KnownBatch,
    ) -> Result<Located<'s>> {
        let pos = at.batch;
        let map = segment.mapped(&*self.storage)?;
        let header = BatchHeader {
            codec: Codec::None,
            body_len: known.body_len,
            raw_len: known.body_len,
            count: known.count,
            shard: pos.shard.0,
            segment: segment.first_lsn,
            first_lsn: Lsn(known.first_lsn),
            ts_min: Timestamp(0),
            ts_max: Timestamp(u64::MAX),
        };
        let range = header
            .record_range(at.body_offset, at.lsn, body_end)
            .ok_or_else(|| not_found(pos))?;
        Ok(Located {
            bytes: Cow::Borrowed(map),
            body_start: pos.offset as usize + BATCH_HEADER_LEN,
            header,
            range,
        })
    }

    /// [`Log::read_records`] on a segment this process writes, through the map of its readable
    /// prefix: the header, then only the body bytes asked for. `None` for a compressed batch,
    /// which must be read whole.
    fn active_place(
        &self,
        shard: &ShardShared,
        segment: &Segment,
        at: RecordPos,
        body_end: Option<u32>,
    ) -> Result<Option<Located<'static>>> {
        let pos = at.batch;
        // The acknowledged prefix, mapped: no system call for a batch already in the map.
        let header_end = pos.offset.saturating_add(BATCH_HEADER_LEN as u64);
        let Some(map) = segment.readable_prefix(&*self.storage, header_end)? else {
            return Err(not_found(pos));
        };
        let header = match map.get(pos.offset as usize..).map(parse_header) {
            Some(Ok(header)) => header,
            // Written by this process: a header that does not parse names no batch.
            _ => return Err(not_found(pos)),
        };
        if header.shard != shard.id || header.segment != segment.first_lsn {
            // Written by this process, so not misplaced: a header-shaped payload.
            return Err(not_found(pos));
        }
        if header.codec != Codec::None {
            return Ok(None);
        }
        let batch_end = pos.offset.saturating_add(header.total_len());
        let Some(map) = segment.readable_prefix(&*self.storage, batch_end)? else {
            // A header-shaped payload claiming more than is readable.
            return Err(not_found(pos));
        };
        let range = header
            .record_range(at.body_offset, at.lsn, body_end)
            .ok_or_else(|| not_found(pos))?;
        Ok(Some(Located {
            bytes: Cow::Owned(map),
            body_start: pos.offset as usize + BATCH_HEADER_LEN,
            header,
            range,
        }))
    }

    /// The shard and segment `pos` names, or [`Error::NotFound`] (a segment removed by retention).
    fn segment_at(&self, pos: BatchPos) -> Result<(&ShardShared, Arc<Segment>)> {
        let shard = self.shard(pos.shard)?;
        let segment = find_segment(&shard.segments.read(), pos.segment).cloned();
        Ok((shard, segment.ok_or_else(|| not_found(pos))?))
    }

    /// Where the records at `at` lie on the common paths ([`Log::verified_place`] in a sealed
    /// segment, [`Log::active_place`] in the active one); `None` if the batch must be read
    /// whole ([`Log::read_verifying`]).
    fn place_in<'s>(
        &self,
        shard: &ShardShared,
        segment: &'s Segment,
        at: RecordPos,
        body_end: Option<u32>,
    ) -> Result<Option<Located<'s>>> {
        if segment.is_sealed() {
            self.verified_place(segment, at, body_end)
        } else {
            self.active_place(shard, segment, at, body_end)
        }
    }

    /// [`Log::read_records`] the general way, out of the segment list's lock: the whole batch
    /// read (and verified, the first time) and its records from `at` handed to `read`.
    fn read_verifying<T>(
        &self,
        at: RecordPos,
        body_end: Option<u32>,
        read: impl FnOnce(Records<'_>) -> T,
    ) -> Result<T> {
        let pos = at.batch;
        let (shard, segment) = self.segment_at(pos)?;
        let batch = self.batch_in(shard, &segment, pos)?;
        let records = batch
            .records_at(at.body_offset, at.lsn, body_end)
            .ok_or_else(|| not_found(pos))?;
        Ok(read(records))
    }

    /// Reads the batch at `pos` in `segment`, verifying it if this process has not yet.
    fn batch_in(
        &self,
        shard: &ShardShared,
        segment: &Segment,
        pos: BatchPos,
    ) -> Result<DecodedBatch> {
        // A position inside a batch or past the end names no batch: the caller's mistake, not
        // damage on disk.
        let bytes = match segment.batch_bytes(&*self.storage, pos.offset) {
            Ok(Some(bytes)) => bytes,
            Ok(None)
            | Err(Error::Corrupt {
                kind: CorruptKind::BadMagic,
                ..
            }) => {
                return Err(not_found(pos));
            }
            Err(error) => return Err(error),
        };
        // Fewer bytes left than a header (a position in the last batch's final bytes): no batch
        // starts there unless they begin as one would, and then it is a torn one.
        let no_room = bytes.len() < BATCH_HEADER_LEN
            && !BATCH_MAGIC.starts_with(&bytes[..bytes.len().min(BATCH_MAGIC.len())]);
        let corrupt = |kind| match kind {
            CorruptKind::BadMagic => not_found(pos),
            CorruptKind::Truncated if no_room => not_found(pos),
            kind => Error::Corrupt {
                file: segment.path.clone(),
                offset: pos.offset,
                kind,
            },
        };
        if segment.is_verified(pos.offset) {
            return decode_verified(&bytes).map_err(corrupt);
        }
        let batch = decode_batch(&bytes, segment.place(shard.log_id, shard.id)).map_err(corrupt)?;
        segment.mark_verified(pos.offset);
        Ok(batch)
    }

    /// Deletes every sealed segment whose time window ended at or before `cutoff`: whole files,
    /// O(1) each. The time is an argument; the log never reads a clock.
    pub fn retain(&self, cutoff: Timestamp) -> Result<RetainReport> {
        self.remove_segments(|_, segment| segment.window_end_ms() <= cutoff.0)
    }

    /// Deletes exactly the sealed segments named by `(shard, first LSN)` (others, and any that
    /// is not sealed, are left alone): for a caller that prepared for each removal (an index
    /// that wrote snapshots of the state those segments carried).
    pub fn retain_segments(&self, segments: &[(ShardId, u64)]) -> Result<RetainReport> {
        self.remove_segments(|shard, segment| {
            segments.contains(&(ShardId(shard), segment.first_lsn))
        })
    }

    fn remove_segments(&self, expired: impl Fn(u32, &Segment) -> bool) -> Result<RetainReport> {
        let mut report = RetainReport::default();
        for shard in &self.shards {
            let expired: Vec<Arc<Segment>> = {
                let mut segments = shard.segments.write();
                let (expired, kept) = segments
                    .drain(..)
                    .partition(|s| s.is_sealed() && expired(shard.id, s));
                *segments = kept;
                expired
            };
            if expired.is_empty() {
                continue;
            }
            for segment in &expired {
                // Readers holding a map of it keep valid bytes: unlinking does not unmap.
                shard
                    .storage
                    .remove_file(&segment.path)
                    .map_err(|e| Error::io("remove", &segment.path, e))?;
                report.segments_removed += 1;
            }
            shard
                .storage
                .sync_dir(&shard.dir)
                .map_err(|e| Error::io("fsync directory", &shard.dir, e))?;
        }
        Ok(report)
    }

    /// Verifies every batch of every segment (checksums, places, LSN continuity within each
    /// segment). Returns the first problem as [`Error::Corrupt`]. Batches it verified are
    /// remembered, so later random reads of them ([`Log::read_entries`]) skip their checksum: an
    /// embedder runs it in the background after opening (a scrub that also warms the reads).
    pub fn verify(&self) -> Result<()> {
        self.verify_until(&|| false).map(drop)
    }

    /// [`verify`](Log::verify), asking `stop` before each segment and giving up (with what it
    /// did so far) when it says so.
    pub fn verify_until(&self, stop: &dyn Fn() -> bool) -> Result<VerifyReport> {
        let mut scrub = self.scrub();
        while !stop() && scrub.step()? {}
        Ok(scrub.report)
    }

    /// A verification of the segments stored now that runs a segment per
    /// [`step`](Scrub::step) and does not borrow the log: a background thread can hold it
    /// without keeping the log (and its folder lock) alive. Segments retention removes
    /// meanwhile are still readable (their map outlives the file).
    pub fn scrub(&self) -> Scrub {
        let mut segments = Vec::new();
        let mut sealed_seen = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            let snapshot = shard.segment_snapshot();
            sealed_seen.push(
                (snapshot.iter())
                    .filter(|s| s.is_sealed())
                    .map(|s| s.first_lsn)
                    .max(),
            );
            let place = (shard.log_id, shard.id);
            segments.extend(snapshot.into_iter().map(|s| (place, s)));
        }
        Scrub {
            storage: Arc::clone(&self.storage),
            shards: self.shards.clone(),
            sealed_seen,
            segments: segments.into_iter(),
            report: VerifyReport::default(),
        }
    }
}

/// A verification in steps; see [`Log::scrub`]. Kept after its first pass, it can take the
/// segments that seal later too ([`Scrub::follow`]). It holds the shards' segment lists, not
/// the log: a thread holding it keeps neither the writers nor the folder lock alive.
pub struct Scrub {
    storage: Arc<dyn Storage>,
    shards: Vec<Arc<ShardShared>>,
    /// Per shard (in shard order), the newest segment queued or verified while sealed.
    sealed_seen: Vec<Option<u64>>,
    segments: std::vec::IntoIter<((u64, u32), Arc<Segment>)>,
    report: VerifyReport,
}

impl std::fmt::Debug for Scrub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrub")
            .field("segments_left", &self.segments.len())
            .field("report", &self.report)
            .finish()
    }
}

impl Scrub {
    /// Verifies the next segment: `Ok(false)` when none is left, [`Error::Corrupt`] for the
    /// first damage found in it.
    pub fn step(&mut self) -> Result<bool> {
        let Some(((log_id, shard), segment)) = self.segments.next() else {
            return Ok(false);
        };
        let place = segment.place(log_id, shard);
        let mut offset = 0;
        let mut next_lsn = Lsn(segment.first_lsn);
        // A segment sealed now never grows: read to its end, the scrub saw every batch.
        let sealed = segment.is_sealed();
        // Best effort: a cache that cannot be dropped only stays in small pages.
        if sealed && segment.huge_pages && segment.repage(&*self.storage).is_ok() {
            self.report.repaged += 1;
        }
        let mut batches = Vec::new();
        while let Some(bytes) = segment.batch_bytes(&*self.storage, offset)? {
            let corrupt = |kind| Error::Corrupt {
                file: segment.path.clone(),
                offset,
                kind,
            };
            let batch = decode_batch(&bytes, place).map_err(corrupt)?;
            if batch.header.first_lsn != next_lsn {
                return Err(corrupt(CorruptKind::Misplaced));
            }
            next_lsn = batch.header.end_lsn();
            // Random reads of it skip the checksum from now on.
            segment.mark_verified(offset);
            let compressed = batch.header.codec != Codec::None;
            batches.push((offset, batch.header.first_lsn.0, compressed));
            self.report.batches += 1;
            self.report.bytes += batch.header.total_len();
            offset += batch.header.total_len();
        }
        if sealed
            && let Some(table) = BatchTable::new(segment.first_lsn, &batches, (offset, next_lsn.0))
        {
            segment.mark_wholly_verified(table);
        }
        if sealed && let Some(seen) = self.sealed_seen.get_mut(shard as usize) {
            *seen = (*seen).max(Some(segment.first_lsn));
        }
        self.report.segments += 1;
        Ok(true)
    }

    /// Queues, after what is left to [`step`](Scrub::step) through, the segments sealed since
    /// this scrub last looked (each once, oldest first; retention's removals are skipped), and
    /// returns how many. A background scrub calls it when `step` has nothing left, so that a
    /// segment sealed while the process runs is verified too, and gets what a first pass gives
    /// a sealed segment: reads that skip the checksum and the header, and with
    /// [`LogConfig::huge_pages`] its 2 MiB pages.
    pub fn follow(&mut self) -> usize {
        let mut queued: Vec<_> = self.segments.by_ref().collect();
        let before = queued.len();
        for (shard, seen) in self.shards.iter().zip(&mut self.sealed_seen) {
            let place = (shard.log_id, shard.id);
            for segment in shard.segment_snapshot() {
                if segment.is_sealed() && Some(segment.first_lsn) > *seen {
                    *seen = Some(segment.first_lsn);
                    queued.push((place, segment));
                }
            }
        }
        let added = queued.len() - before;
        self.segments = queued.into_iter();
        added
    }

    /// What it verified so far.
    pub fn report(&self) -> VerifyReport {
        self.report
    }
}

/// Counters of the log's writers since it opened ([`Log::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStats {
    /// Batches written (one group commit each).
    pub batches_written: u64,
    /// Records in them: `records_written / batches_written` is the mean group-commit batch.
    pub records_written: u64,
    /// Bytes written to segments (batch headers included, after compression).
    pub bytes_written: u64,
    /// Data fsyncs of segments (each covers every batch written before it).
    pub fsyncs: u64,
}

/// What a [`Scrub`] (or [`Log::verify_until`]) checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segments verified to their end.
    pub segments: u64,
    /// Batches verified.
    pub batches: u64,
    /// Bytes of those batches (headers included).
    pub bytes: u64,
    /// Sealed segments whose cached pages it dropped first, to read them back in 2 MiB pages
    /// ([`LogConfig::huge_pages`]).
    pub repaged: u64,
}

/// The error for a position that names no batch or record.
/// The segment of `segments` (in LSN order) whose first LSN is `first_lsn`.
fn find_segment(segments: &[Arc<Segment>], first_lsn: u64) -> Option<&Arc<Segment>> {
    let index = segments.partition_point(|s| s.first_lsn < first_lsn);
    segments.get(index).filter(|s| s.first_lsn == first_lsn)
}

/// Where the records a read wants lie: the bytes holding their batch (a segment's map, or a
/// clone of the growing map of the active one), where the batch's body starts in them, its
/// header, and the part of the body wanted.
struct Located<'s> {
    bytes: Cow<'s, Bytes>,
    body_start: usize,
    header: BatchHeader,
    range: RecordRange,
}

impl Located<'_> {
    /// The records, or `None` if no record of the batch starts where asked.
    fn records(&self) -> Option<Records<'_>> {
        Records::in_range(&self.header, &self.range, &self.bytes, self.body_start)
    }
}

fn not_found(pos: BatchPos) -> Error {
    Error::NotFound {
        shard: pos.shard.0,
        segment: pos.segment,
        offset: pos.offset,
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = Log::stop(&self.shards, std::mem::take(&mut self.writers));
    }
}

/// An iterator over a shard's batches, from the one holding an LSN on, each verified and with
/// its position. Indexes rebuild from it: a position is what they store.
#[derive(Debug)]
pub struct BatchReader {
    shard: Arc<ShardShared>,
    storage: Arc<dyn Storage>,
    /// Batches ending at or below this LSN are skipped.
    from: Lsn,
    /// The segment being read and the offset of its next batch; `None` before the first read.
    at: Option<(Arc<Segment>, u64)>,
    failed: bool,
}

impl BatchReader {
    /// The first LSN of the next batch it will return (records before it were returned or
    /// skipped). A reader that returned `None` at the end of the log continues from here when
    /// more is written: keep it to follow the log without finding the place again.
    pub fn next_lsn(&self) -> Lsn {
        self.from
    }

    /// Finds the first segment that may hold `self.from`, or the one after `after`.
    fn segment_for(&self, after: Option<u64>) -> Option<Arc<Segment>> {
        let segments = self.shard.segments.read();
        match after {
            Some(previous) => segments.iter().find(|s| s.first_lsn > previous).cloned(),
            None => {
                let index = segments.partition_point(|s| s.first_lsn <= self.from.0);
                segments.get(index.saturating_sub(1)).cloned()
            }
        }
    }

    fn next_batch(&mut self) -> Result<Option<(BatchPos, DecodedBatch)>> {
        loop {
            if self.at.is_none() {
                match self.segment_for(None) {
                    Some(segment) => self.at = Some((segment, 0)),
                    None => return Ok(None),
                }
            }
            let (segment, offset) = self.at.as_ref().expect("set above");
            let (segment, offset) = (Arc::clone(segment), *offset);
            // Hop over whole batches below `from` by header alone.
            match segment.header_at(&*self.storage, offset)? {
                Some(header) if header.end_lsn() <= self.from => {
                    self.at = Some((segment, offset + header.total_len()));
                    continue;
                }
                Some(_) => {}
                None => {
                    if !segment.is_sealed() {
                        return Ok(None);
                    }
                    match self.segment_for(Some(segment.first_lsn)) {
                        Some(next) => {
                            self.at = Some((next, 0));
                            continue;
                        }
                        None => return Ok(None),
                    }
                }
            }
            let Some(bytes) = segment.batch_bytes(&*self.storage, offset)? else {
                return Ok(None);
            };
            let corrupt = |kind| Error::Corrupt {
                file: segment.path.clone(),
                offset,
                kind,
            };
            let batch = decode_batch(&bytes, segment.place(self.shard.log_id, self.shard.id))
                .map_err(corrupt)?;
            let pos = BatchPos {
                shard: ShardId(self.shard.id),
                segment: segment.first_lsn,
                offset,
            };
            self.from = batch.header.end_lsn();
            self.at = Some((segment, offset + batch.header.total_len()));
            return Ok(Some((pos, batch)));
        }
    }
}

impl Iterator for BatchReader {
    type Item = Result<(BatchPos, DecodedBatch)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.next_batch().transpose();
        // Stop for good after reporting an error: a bad batch cannot be skipped safely.
        self.failed = matches!(next, Some(Err(_)));
        next
    }
}

/// An iterator over a shard's records, from an LSN on. Each item is verified; a bad batch ends
/// the iteration with [`Error::Corrupt`].
#[derive(Debug)]
pub struct ShardReader {
    batches: BatchReader,
    from: Lsn,
    entries: Option<Entries>,
}

impl ShardReader {
    /// The LSN of the next record this reader would return.
    pub fn position(&self) -> Lsn {
        self.from
    }
}

impl Iterator for ShardReader {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            if let Some(entries) = &mut self.entries {
                for entry in entries.by_ref() {
                    if entry.lsn >= self.from {
                        self.from = Lsn(entry.lsn.0 + 1);
                        return Some(Ok(entry));
                    }
                }
                self.entries = None;
            }
            match self.batches.next()? {
                Ok((_, batch)) => {
                    if batch.header.first_lsn > self.from {
                        // A gap: retention removed what lay between. Continue from here.
                        self.from = batch.header.first_lsn;
                    }
                    self.entries = Some(batch.entries());
                }
                Err(error) => return Some(Err(error)),
            }
        }
    }
}
