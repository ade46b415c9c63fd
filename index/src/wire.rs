//! Little-endian field writing and bounds-checked reading for the index's files.

use std::path::Path;

use missive_log::Storage;

use crate::chat::Run;
use crate::error::{Error, Result};

/// Bytes of the frame header every index file starts with: magic (8), version (2), reserved
/// (2, zero), CRC-32 of the body (4), body length (8). The body follows.
pub(crate) const FRAME_HEADER_LEN: usize = 24;

fn io(op: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `body` framed at `path` atomically: a `.tmp` file written and fsynced, renamed over
/// `path`, then the folder fsynced (the rename is durable only once the folder is).
pub(crate) fn write_framed(
    storage: &dyn Storage,
    path: &Path,
    magic: [u8; 8],
    version: u16,
    body: &[u8],
) -> Result<()> {
    let dir = path.parent().expect("index files live in a folder");
    let mut bytes = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    bytes.extend_from_slice(&magic);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(body);
    let temp = path.with_extension("tmp");
    storage
        .create_dir_all(dir)
        .map_err(|e| io("create directory", dir, e))?;
    let file = storage
        .open(&temp, true)
        .map_err(|e| io("create", &temp, e))?;
    file.set_len(0).map_err(|e| io("truncate", &temp, e))?;
    file.write_all_at(&bytes, 0)
        .map_err(|e| io("write", &temp, e))?;
    file.sync_data().map_err(|e| io("fsync", &temp, e))?;
    storage
        .rename(&temp, path)
        .map_err(|e| io("rename", path, e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| io("fsync directory", dir, e))
}

/// What [`read_framed`] found.
pub(crate) enum Framed {
    /// No file.
    Missing,
    /// A file that fails a check, and which.
    Bad(&'static str),
    /// The verified body.
    Body(Vec<u8>),
}

/// Reads and verifies a file written by [`write_framed`].
pub(crate) fn read_framed(
    storage: &dyn Storage,
    path: &Path,
    magic: [u8; 8],
    version: u16,
) -> Result<Framed> {
    if !storage.exists(path).map_err(|e| io("stat", path, e))? {
        return Ok(Framed::Missing);
    }
    let file = storage.open(path, false).map_err(|e| io("open", path, e))?;
    let len = file.len().map_err(|e| io("stat", path, e))?;
    if len < FRAME_HEADER_LEN as u64 {
        return Ok(Framed::Bad("shorter than its header"));
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| io("read", path, e))?;
    Ok(match check_frame(&bytes, magic, version) {
        Err(reason) => Framed::Bad(reason),
        Ok(()) => {
            // In place: `split_off` copied the body into a second allocation as large, and
            // freeing the first raised the allocator's threshold for using fresh mappings, so
            // the index loaded next went into the heap around holes that stayed resident.
            bytes.drain(..FRAME_HEADER_LEN);
            Framed::Body(bytes)
        }
    })
}

/// Checks a whole framed file: header, length and the body's checksum.
pub(crate) fn check_frame(
    bytes: &[u8],
    magic: [u8; 8],
    version: u16,
) -> std::result::Result<(), &'static str> {
    let Some(mut header) = bytes.get(..FRAME_HEADER_LEN).map(Reader) else {
        return Err("shorter than its header");
    };
    let found_magic = header.take::<8>().expect("header length checked");
    let found_version = u16::from_le_bytes(header.take().expect("header length checked"));
    let reserved = header.take::<2>().expect("header length checked");
    let crc = header.u32().expect("header length checked");
    let body_len = header.u64().expect("header length checked");
    let body = &bytes[FRAME_HEADER_LEN..];
    if found_magic != magic {
        Err("bad magic")
    } else if found_version != version {
        Err("unsupported version")
    } else if body.len() as u64 != body_len {
        Err("length does not match the file")
    } else if crc32fast::hash(body) != crc || reserved != [0, 0] {
        Err("checksum mismatch")
    } else {
        Ok(())
    }
}

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
    pub(crate) fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
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
            body_end: 0,
        })
    }
}
