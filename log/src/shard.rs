//! A shard: a folder of segments with one writer thread that group-commits appends.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::batch::{BATCH_HEADER_LEN, BatchEncoder, BatchPlace, decode_batch, valid_batch_after};
use crate::error::{CorruptKind, Error, Result, is_storage_full};
use crate::ids::{Lsn, ShardId};
use crate::limits::{BATCH_BODY_BYTES_MAX, BATCH_RECORDS_MAX};
use crate::log::{Durability, LogConfig};
use crate::record::Record;
use crate::segment::{self, ReadAhead, Segment};
use crate::storage::{Storage, StorageFile};
use crate::ticket::{AppendTicket, BatchDone, BatchPos, Completion};

/// Appends waiting for the writer: the batch being gathered.
#[derive(Debug)]
struct Queue {
    records: Vec<Record>,
    body_bytes: usize,
    completion: Arc<Completion>,
    sync_requests: Vec<Arc<SyncRequest>>,
    closed: bool,
}

/// An explicit request to make everything written so far durable.
#[derive(Debug, Default)]
struct SyncRequest {
    result: Mutex<Option<Result<()>>>,
    done: Condvar,
}

impl SyncRequest {
    fn complete(&self, result: Result<()>) {
        *self.result.lock() = Some(result);
        self.done.notify_all();
    }

    fn wait(&self) -> Result<()> {
        let mut result = self.result.lock();
        loop {
            if let Some(result) = result.take() {
                return result;
            }
            self.done.wait(&mut result);
        }
    }
}

/// What appenders, readers and the writer share.
#[derive(Debug)]
pub(crate) struct ShardShared {
    pub(crate) id: u32,
    pub(crate) dir: PathBuf,
    pub(crate) log_id: u64,
    pub(crate) storage: Arc<dyn Storage>,
    queue: Mutex<Queue>,
    /// Wakes the writer: work arrived.
    work: Condvar,
    /// Wakes appenders: the writer took the batch, there is room again.
    room: Condvar,
    /// Segments in LSN order; the last may be active.
    pub(crate) segments: RwLock<Vec<Arc<Segment>>>,
    /// The LSN after the last acknowledged record.
    pub(crate) head: AtomicU64,
    poisoned: AtomicBool,
    /// What the writer did since opening (relaxed counters, for [`Log::stats`](crate::Log::stats)).
    pub(crate) written: WriterCounters,
}

/// The writer's counters.
#[derive(Debug, Default)]
pub(crate) struct WriterCounters {
    pub(crate) batches: AtomicU64,
    pub(crate) records: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) fsyncs: AtomicU64,
}

impl ShardShared {
    /// Wakes the writer if it waits for work.
    pub(crate) fn wake(&self) {
        self.work.notify_one();
    }

    /// Queues the record without waking the writer (see [`Log::append_unwoken`](crate::Log::append_unwoken)).
    pub(crate) fn append_unwoken(&self, record: Record) -> Result<AppendTicket> {
        let bytes = record.encoded_len();
        let mut queue = self.queue.lock();
        loop {
            if queue.closed {
                return Err(Error::Closed);
            }
            if self.poisoned.load(Ordering::Acquire) {
                return Err(Error::Poisoned { shard: self.id });
            }
            let full = queue.records.len() >= BATCH_RECORDS_MAX
                || queue.body_bytes + bytes > BATCH_BODY_BYTES_MAX;
            if !full {
                break;
            }
            self.room.wait(&mut queue);
        }
        let index = queue.records.len() as u32;
        queue.records.push(record);
        queue.body_bytes += bytes;
        let ticket = AppendTicket::new(Arc::clone(&queue.completion), index);
        drop(queue);
        Ok(ticket)
    }

    /// Asks the writer to sync everything written so far; returns once it has.
    pub(crate) fn sync(&self) -> Result<()> {
        let request = Arc::new(SyncRequest::default());
        {
            let mut queue = self.queue.lock();
            if queue.closed {
                return Err(Error::Closed);
            }
            queue.sync_requests.push(Arc::clone(&request));
        }
        self.work.notify_one();
        request.wait()
    }

    pub(crate) fn close(&self) {
        self.queue.lock().closed = true;
        self.work.notify_one();
        self.room.notify_all();
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    pub(crate) fn segment_snapshot(&self) -> Vec<Arc<Segment>> {
        self.segments.read().clone()
    }
}

/// What recovery found in a shard.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) shared: Arc<ShardShared>,
    pub(crate) writer: Writer,
    /// Bytes cut from a torn tail of the newest segment (0 if none).
    pub(crate) torn_bytes: u64,
}

/// Opens a shard's folder: lists its segments, verifies the newest one and cuts a torn tail.
pub(crate) fn recover(
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    id: u32,
    log_id: u64,
    config: &LogConfig,
) -> Result<Recovered> {
    storage
        .create_dir_all(&dir)
        .map_err(|e| Error::io("create directory", &dir, e))?;
    let names = storage
        .list_dir(&dir)
        .map_err(|e| Error::io("list", &dir, e))?;
    let mut found: Vec<(u64, u64, u64, PathBuf)> = names
        .iter()
        .filter_map(|name| {
            let (lsn, start, window) = segment::parse_file_name(name)?;
            Some((lsn, start, window, dir.join(name)))
        })
        .collect();
    found.sort_unstable_by_key(|(lsn, ..)| *lsn);
    if let Some(pair) = found.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        let kind = CorruptKind::BadFile;
        return Err(Error::Corrupt {
            file: pair[1].3.clone(),
            offset: 0,
            kind,
        });
    }
    let mut segments = Vec::with_capacity(found.len());
    let mut next_lsn = Lsn::FIRST.0;
    let mut active = None;
    let mut torn_bytes = 0;
    let newest = found.pop();
    for (lsn, start, window, path) in found {
        segments.push(Arc::new(Segment::sealed(
            path,
            lsn,
            start,
            window,
            config.huge_pages,
        )));
    }
    if let Some((lsn, start, window, path)) = newest {
        let file = storage
            .open(&path, false)
            .map_err(|e| Error::io("open", &path, e))?;
        let place = BatchPlace {
            log_id,
            shard: id,
            segment: lsn,
        };
        let (len, end_lsn, cut) = verify_newest(&*file, &path, place)?;
        torn_bytes = cut;
        next_lsn = end_lsn;
        let segment = Arc::new(Segment::active(
            path,
            lsn,
            start,
            window,
            len,
            config.segment_bytes_max,
            config.huge_pages,
        ));
        segments.push(Arc::clone(&segment));
        active = Some(Active {
            segment,
            file,
            len,
            batches: 0,
            written_back: len,
        });
    }
    let shared = Arc::new(ShardShared {
        id,
        dir: dir.clone(),
        log_id,
        storage: Arc::clone(&storage),
        queue: Mutex::new(Queue {
            records: Vec::new(),
            body_bytes: 0,
            completion: Arc::new(Completion::new()),
            sync_requests: Vec::new(),
            closed: false,
        }),
        work: Condvar::new(),
        room: Condvar::new(),
        segments: RwLock::new(segments),
        head: AtomicU64::new(next_lsn),
        poisoned: AtomicBool::new(false),
        written: WriterCounters::default(),
    });
    let writer = Writer {
        shared: Arc::clone(&shared),
        config: config.clone(),
        active,
        next_lsn,
        encoder: BatchEncoder::new(),
        dirty: false,
        last_sync: Instant::now(),
        poisoned: false,
    };
    Ok(Recovered {
        shared,
        writer,
        torn_bytes,
    })
}

/// Verifies every batch of the newest segment. A bad batch with nothing valid after it is a torn
/// tail: the file is cut there (and synced). A bad batch followed by a valid one is corruption.
/// Returns the valid length, the next LSN and how many bytes were cut.
fn verify_newest(
    file: &dyn StorageFile,
    path: &Path,
    place: BatchPlace,
) -> Result<(u64, u64, u64)> {
    let io = |op, e| Error::io(op, path, e);
    let len = file.len().map_err(|e| io("stat", e))?;
    let mut offset = 0u64;
    let mut next_lsn = place.segment;
    let mut ahead = ReadAhead::new(RECOVERY_READ_BYTES);
    while offset < len {
        let rest = len - offset;
        let bad = if rest < BATCH_HEADER_LEN as u64 {
            Some(CorruptKind::Truncated)
        } else {
            let header = ahead
                .get(file, place.segment, offset, BATCH_HEADER_LEN as u64, len)
                .map_err(|e| io("read", e))?;
            match crate::batch::parse_header(&header) {
                Err(kind) => Some(kind),
                Ok(parsed) if parsed.total_len() > rest => Some(CorruptKind::Truncated),
                Ok(parsed) => {
                    let bytes = ahead
                        .get(file, place.segment, offset, parsed.total_len(), len)
                        .map_err(|e| io("read", e))?;
                    match decode_batch(&bytes, place) {
                        Ok(batch) if batch.header.first_lsn.0 == next_lsn => {
                            next_lsn = batch.header.end_lsn().0;
                            offset += parsed.total_len();
                            None
                        }
                        Ok(_) => Some(CorruptKind::Misplaced),
                        Err(kind) => Some(kind),
                    }
                }
            }
        };
        if let Some(kind) = bad {
            let mut tail = vec![0u8; rest as usize];
            file.read_exact_at(&mut tail, offset)
                .map_err(|e| io("read", e))?;
            if valid_batch_after(&Bytes::from(tail), 1, place, Lsn(next_lsn)) {
                return Err(Error::Corrupt {
                    file: path.to_path_buf(),
                    offset,
                    kind,
                });
            }
            // A torn tail: only bytes that were never acknowledged as durable can be here.
            file.set_len(offset).map_err(|e| io("truncate", e))?;
            file.sync_data().map_err(|e| io("fsync", e))?;
            return Ok((offset, next_lsn, rest));
        }
    }
    Ok((offset, next_lsn, 0))
}

/// Recovery reads the newest segment in chunks of this many bytes.
const RECOVERY_READ_BYTES: u64 = 1 << 20;

/// The segment the writer appends to.
#[derive(Debug)]
struct Active {
    segment: Arc<Segment>,
    file: Arc<dyn StorageFile>,
    len: u64,
    batches: u64,
    /// Where the last [`StorageFile::start_writeback`] stopped (see [`WRITEBACK_BYTES`]).
    written_back: u64,
}

/// Under `Os` and `Interval`, the writer asks the OS to start writing the active segment's
/// dirty pages back every this many bytes. It changes no promise (nothing is acknowledged as
/// durable by it); it keeps the dirty bytes small, so the fsync that seals a segment (and an
/// interval's fsync) waits for at most this much rather than a whole segment: sealing a
/// 256 MiB segment written in 3 s, unpaced, stalled every shard's appends for ~0.5 s.
const WRITEBACK_BYTES: u64 = 8 << 20;

/// The shard's writer: owned by its thread, it alone touches the active segment.
#[derive(Debug)]
pub(crate) struct Writer {
    shared: Arc<ShardShared>,
    config: LogConfig,
    active: Option<Active>,
    next_lsn: u64,
    encoder: BatchEncoder,
    dirty: bool,
    last_sync: Instant,
    poisoned: bool,
}

impl Writer {
    /// The writer thread's loop: gather, write, make durable, acknowledge. Returns when the log
    /// closes, after a final sync.
    pub(crate) fn run(mut self) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let mut records = Vec::new();
        let mut spare = Arc::new(Completion::new());
        loop {
            let (completion, syncs, closing) = {
                let mut queue = shared.queue.lock();
                while queue.records.is_empty() && queue.sync_requests.is_empty() && !queue.closed {
                    match self.sync_deadline() {
                        Some(deadline) => {
                            if shared.work.wait_until(&mut queue, deadline).timed_out() {
                                break;
                            }
                        }
                        None => shared.work.wait(&mut queue),
                    }
                }
                std::mem::swap(&mut queue.records, &mut records);
                queue.body_bytes = 0;
                let completion = if records.is_empty() {
                    None
                } else {
                    Some(std::mem::replace(&mut queue.completion, Arc::clone(&spare)))
                };
                let syncs = std::mem::take(&mut queue.sync_requests);
                (completion, syncs, queue.closed)
            };
            if let Some(completion) = completion {
                shared.room.notify_all();
                let result = self.write_batch(&records);
                records.clear();
                completion.complete(result);
                // The next batch's completion is allocated here, off the queue lock.
                spare = Arc::new(Completion::new());
            }
            if self.sync_due() || (!syncs.is_empty() && self.dirty) {
                // An interval sync failure poisons the shard; later appends report it.
                let _ = self.sync();
            }
            for request in syncs {
                request.complete(self.poison_check());
            }
            if closing && shared.queue.lock().records.is_empty() {
                return if self.dirty {
                    self.sync()
                } else {
                    self.poison_check()
                };
            }
        }
    }

    fn poison_check(&self) -> Result<()> {
        if self.poisoned {
            Err(Error::Poisoned {
                shard: self.shared.id,
            })
        } else {
            Ok(())
        }
    }

    fn poison(&mut self) {
        self.poisoned = true;
        self.shared.poisoned.store(true, Ordering::Release);
    }

    fn interval(&self) -> Option<Duration> {
        match self.config.durability {
            Durability::Interval { ms } => Some(Duration::from_millis(ms)),
            Durability::Always | Durability::Os => None,
        }
    }

    fn sync_deadline(&self) -> Option<Instant> {
        let interval = self.interval()?;
        (self.dirty && !self.poisoned).then(|| self.last_sync + interval)
    }

    fn sync_due(&self) -> bool {
        self.sync_deadline()
            .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// fsyncs the active segment. A failure poisons the shard: never retry and pretend.
    fn sync(&mut self) -> Result<()> {
        self.poison_check()?;
        if let Some(active) = &self.active
            && self.dirty
        {
            if let Err(error) = active.file.sync_data() {
                self.poison();
                return Err(Error::SyncFailed {
                    shard: self.shared.id,
                    source: Arc::new(error),
                });
            }
            self.shared.written.fsyncs.fetch_add(1, Ordering::Relaxed);
            active.segment.publish(active.len);
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn write_batch(&mut self, records: &[Record]) -> Result<BatchDone> {
        self.poison_check()?;
        let ts_max = records
            .iter()
            .map(|r| r.timestamp.0)
            .max()
            .expect("a batch is not empty");
        let body_bytes: u64 = records.iter().map(|r| r.encoded_len() as u64).sum();
        let batch_bytes_max = BATCH_HEADER_LEN as u64 + body_bytes;
        if self.needs_roll(ts_max, batch_bytes_max) {
            self.roll(ts_max)?;
        }
        let shard = self.shared.id;
        let active = self.active.as_mut().expect("rolled above");
        let place = active.segment.place(self.shared.log_id, shard);
        let first_lsn = Lsn(self.next_lsn);
        let bytes = self
            .encoder
            .encode(place, first_lsn, records, self.config.compression);
        let offset = active.len;
        if let Err(error) = active.file.write_all_at(bytes, offset) {
            // Part of the batch may be on disk. Cut it off so the segment ends on a whole batch;
            // if even that fails, the file's tail is unknown: poison.
            let cut = active.file.set_len(offset);
            if is_storage_full(&error) && cut.is_ok() {
                return Err(Error::StorageFull { shard });
            }
            let error = Error::io("write", &active.segment.path, error);
            self.poison();
            return Err(error);
        }
        active.len += bytes.len() as u64;
        active.batches += 1;
        let written = &self.shared.written;
        written.batches.fetch_add(1, Ordering::Relaxed);
        written
            .records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        written
            .bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.next_lsn += records.len() as u64;
        self.dirty = true;
        let done = BatchDone {
            first_lsn,
            batch: BatchPos {
                shard: ShardId(shard),
                segment: place.segment,
                offset,
            },
        };
        match self.config.durability {
            Durability::Always => self.sync()?,
            Durability::Interval { .. } | Durability::Os => {
                let active = self.active.as_mut().expect("written above");
                active.segment.publish(active.len);
                if active.len - active.written_back >= WRITEBACK_BYTES {
                    // Only a hint: a failure here changes nothing the fsync will not report.
                    let _ = active
                        .file
                        .start_writeback(active.written_back, active.len - active.written_back);
                    active.written_back = active.len;
                }
            }
        }
        self.shared.head.store(self.next_lsn, Ordering::Release);
        Ok(done)
    }

    fn needs_roll(&self, ts_max: u64, batch_bytes_max: u64) -> bool {
        let Some(active) = &self.active else {
            return true;
        };
        let segment = &active.segment;
        let window = segment.window_ms;
        let after_window = ts_max >= segment.window_end_ms();
        // A clock stepped far back: do not let old records keep a young segment's window.
        let before_window = ts_max < segment.window_start_ms.saturating_sub(window);
        let full = active.len > 0 && active.len + batch_bytes_max > self.config.segment_bytes_max;
        after_window || before_window || full
    }

    /// Seals the active segment (synced, never written again) and starts a new one whose window
    /// holds `ts_max`. The new file is made durable in its directory before anything is written
    /// to it.
    fn roll(&mut self, ts_max: u64) -> Result<()> {
        if let Some(len) = self.active.as_ref().map(|active| active.len) {
            if len == 0 {
                // An empty segment whose window no longer fits: replace it.
                return self.replace_empty(ts_max);
            }
            self.sync()?;
            self.active.as_ref().expect("checked above").segment.seal();
        }
        self.active = None;
        self.create_segment(ts_max)
    }

    /// Gives the empty active segment the window that holds `ts_max`, by renaming it: one
    /// atomic step, so a crash leaves either name and never two segments with one first LSN.
    fn replace_empty(&mut self, ts_max: u64) -> Result<()> {
        let active = self.active.take().expect("checked by caller");
        let window = self.config.segment_window_ms;
        let start = ts_max - ts_max % window;
        let first_lsn = active.segment.first_lsn;
        let path = self
            .shared
            .dir
            .join(segment::file_name(first_lsn, start, window));
        if let Err(error) = self.shared.storage.rename(&active.segment.path, &path) {
            let error = Error::io("rename", &active.segment.path, error);
            self.active = Some(active);
            return Err(error);
        }
        self.sync_dir()?;
        let segment = Arc::new(Segment::active(
            path,
            first_lsn,
            start,
            window,
            0,
            self.config.segment_bytes_max,
            self.config.huge_pages,
        ));
        {
            let mut segments = self.shared.segments.write();
            let last = segments.last_mut().expect("the active segment is listed");
            assert!(
                Arc::ptr_eq(last, &active.segment),
                "the active segment is the newest"
            );
            *last = Arc::clone(&segment);
        }
        self.active = Some(Active {
            segment,
            file: active.file,
            len: 0,
            batches: 0,
            written_back: 0,
        });
        Ok(())
    }

    fn sync_dir(&mut self) -> Result<()> {
        let dir = &self.shared.dir;
        if let Err(error) = self.shared.storage.sync_dir(dir) {
            // Whether the directory change is durable is unknown: as bad as a failed fsync.
            self.poison();
            return Err(Error::SyncFailed {
                shard: self.shared.id,
                source: Arc::new(error),
            });
        }
        Ok(())
    }

    fn create_segment(&mut self, ts_max: u64) -> Result<()> {
        let window = self.config.segment_window_ms;
        let start = ts_max - ts_max % window;
        let name = segment::file_name(self.next_lsn, start, window);
        let path = self.shared.dir.join(name);
        let storage = &self.shared.storage;
        let file = storage.open(&path, true).map_err(|error| {
            if is_storage_full(&error) {
                Error::StorageFull {
                    shard: self.shared.id,
                }
            } else {
                Error::io("create", &path, error)
            }
        })?;
        // IMPORTANT: fsync the folder, or a power cut can lose the new file with its batches.
        self.sync_dir()?;
        let segment = Arc::new(Segment::active(
            path,
            self.next_lsn,
            start,
            window,
            0,
            self.config.segment_bytes_max,
            self.config.huge_pages,
        ));
        self.shared.segments.write().push(Arc::clone(&segment));
        self.active = Some(Active {
            segment,
            file,
            len: 0,
            batches: 0,
            written_back: 0,
        });
        self.last_sync = Instant::now();
        Ok(())
    }
}
