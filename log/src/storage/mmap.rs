//! Read-only memory maps of sealed segments and of the active segment's acknowledged prefix:
//! the log's only `unsafe` code.
//!
//! # Safety contract
//!
//! Mapping a file is unsafe because the bytes behind the map can change (or vanish, raising
//! SIGBUS) if anyone truncates or rewrites the file while it is mapped. The log upholds:
//!
//! 1. Only *sealed* segments are mapped. A segment is sealed after its final fsync, and the log
//!    never writes to, truncates or renames a sealed segment again (recovery only truncates the
//!    newest segment, before anything maps it).
//! 2. Retention removes a sealed segment by unlinking it. On Unix the inode and its pages live on
//!    while a map references them, so readers holding a map keep valid bytes.
//! 3. Every batch read through a map of a sealed segment is checksum-verified before use, so
//!    even a file damaged by something outside the log yields a `Corrupt` error rather than
//!    wrong data.
//! 4. The active segment is mapped only up to its acknowledged (published) length, which only
//!    grows. The writer appends after it, and the only cut it makes (dropping a partly written
//!    batch after a failed write) is to the end of the last whole batch, which is at or after
//!    the published length; recovery truncates a torn tail before anything maps the file. So
//!    the mapped bytes stay in the file and never change. The bytes there were written by this
//!    process's writer (or verified by recovery), which is what reads of the active segment
//!    trust anyway.
//!
//! What the log cannot prevent is another process truncating its files; the directory lock keeps
//! other Missive instances away, and operators are told not to touch a live log's files.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use bytes::Bytes;
use memmap2::Mmap;

/// Maps a sealed segment read-only and hands the map out as shared [`Bytes`].
pub(super) fn map_sealed(file: &File) -> io::Result<Bytes> {
    if file.metadata()?.len() == 0 {
        // Mapping zero bytes is an error on Linux; an empty segment is just empty.
        return Ok(Bytes::new());
    }
    // SAFETY: the file is a sealed segment (contract point 1): nothing in this process writes to
    // or truncates it after sealing, and unlinking it (point 2) keeps the mapping valid. The map
    // is read-only, so no Rust reference observes a write through it.
    let map = unsafe { Mmap::map(file)? };
    Ok(Bytes::from_owner(map))
}

/// Maps the first `len` bytes of the active segment read-only (contract point 4).
pub(super) fn map_prefix(file: &File, len: u64) -> io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    if file.metadata()?.len() < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file is shorter than the prefix asked for",
        ));
    }
    // SAFETY: the first `len` bytes are the active segment's acknowledged prefix (contract point
    // 4): the file is at least that long now and is never cut below it, and nothing rewrites
    // those bytes, so the map stays backed and unchanging. It is read-only.
    let map = unsafe { memmap2::MmapOptions::new().len(len as usize).map(file)? };
    Ok(Bytes::from_owner(map))
}
