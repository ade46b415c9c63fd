//! Read-only memory maps of sealed segments and of the active segment's acknowledged prefix,
//! and the cache-line prefetch reads of them use: the log's only `unsafe` code.
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
//! 4. The active segment is mapped with room to grow (its size cap), past the file's end, and
//!    read only below its acknowledged (published) length, which only grows: `Segment` hands out
//!    slices that stop there. The writer appends after it, and the only cut it makes (dropping
//!    a partly written batch after a failed write) is to the end of the last whole batch, at or
//!    after the published length; recovery truncates a torn tail before anything maps the file.
//!    So every byte read through the map is in the file and never changes (a shared file map
//!    sees the file grow: pages past the old end become readable once written). The bytes were
//!    written by this process's writer (or verified by recovery), which is what reads of the
//!    active segment trust anyway. Touching the map past the file's end would raise SIGBUS:
//!    nothing does.
//!
//! What the log cannot prevent is another process truncating its files; the directory lock keeps
//! other Missive instances away, and operators are told not to touch a live log's files.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use bytes::Bytes;
use memmap2::Mmap;

/// Maps a sealed segment read-only and hands the map out as shared [`Bytes`]; with `huge`,
/// asks for its pages in 2 MiB folios (`MADV_HUGEPAGE`; best effort: a kernel without
/// transparent huge pages for files maps it by 4 KiB pages as before).
pub(super) fn map_sealed(file: &File, huge: bool) -> io::Result<Bytes> {
    if file.metadata()?.len() == 0 {
        // Mapping zero bytes is an error on Linux; an empty segment is just empty.
        return Ok(Bytes::new());
    }
    // SAFETY: the file is a sealed segment (contract point 1): nothing in this process writes to
    // or truncates it after sealing, and unlinking it (point 2) keeps the mapping valid. The map
    // is read-only, so no Rust reference observes a write through it.
    let map = unsafe { Mmap::map(file)? };
    #[cfg(target_os = "linux")]
    if huge {
        // Only a hint: an error (no THP support) leaves the map as it is.
        let _ = map.advise(memmap2::Advice::HugePage);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = huge;
    Ok(Bytes::from_owner(map))
}

/// Removes the page-table entries of `map`, so that the pages it maps can leave the page
/// cache; the next read through it maps them again.
///
/// # Safety
/// `map` must be (a clone of) bytes [`map_sealed`] returned: for other memory, such as a heap
/// buffer, `MADV_DONTNEED` would discard what it holds.
pub(super) unsafe fn unmap_pages(map: &Bytes) {
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        const PAGE: usize = 4096;
        let (start, len) = (map.as_ptr(), map.len());
        if len == 0 || !(start as usize).is_multiple_of(PAGE) {
            return;
        }
        // SAFETY: `map` is a read-only, shared map of a sealed file (this function's contract;
        // the module's point 1: never written or truncated again; point 2: unlinking keeps its
        // inode and blocks while mapped), and `map` keeps it mapped during the call. `MADV_DONTNEED` on a shared file
        // map only drops page-table entries: the next access maps the same page of the file
        // again (from the cache or the device), so every byte any reference sees before and
        // after is the same. The range is the map's own, from its page-aligned start.
        unsafe {
            libc::madvise(start.cast_mut().cast(), len, libc::MADV_DONTNEED);
        }
    }
    #[cfg(not(all(target_os = "linux", not(miri))))]
    let _ = map;
}

/// Maps `reserve` bytes of the active segment read-only, past its end (contract point 4).
pub(super) fn map_growing(file: &File, reserve: u64) -> io::Result<Bytes> {
    if reserve == 0 {
        return Ok(Bytes::new());
    }
    let len = usize::try_from(reserve)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "map larger than memory"))?;
    // SAFETY: contract point 4: only the acknowledged prefix is ever read through this map; it
    // is in the file, never cut and never rewritten, so every byte read is backed and does not
    // change. The map is read-only.
    let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
    Ok(Bytes::from_owner(map))
}

/// Asks the processor to start loading the cache line holding `bytes[offset]` (nothing if
/// `offset` is out of range), and returns at once: a software prefetch neither waits for the
/// line nor holds up the instructions after it, so a loop of them puts many cache and TLB
/// misses in flight together. Only a hint: it never faults, and the data is not read.
#[inline]
pub fn prefetch(bytes: &[u8], offset: usize) {
    let Some(byte) = bytes.get(offset) else {
        return;
    };
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    prefetch_line(std::ptr::from_ref(byte));
    // Elsewhere (no stable prefetch instruction) a plain load: it waits, but the next
    // prefetch's load still overlaps it as far as the processor looks ahead.
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    std::hint::black_box(*byte);
}

/// [`prefetch`] of the cache line holding `items[index]` (nothing if out of range). Elsewhere
/// than on x86_64 it does nothing.
#[inline]
pub(crate) fn prefetch_item<T>(items: &[T], index: usize) {
    let Some(item) = items.get(index) else {
        return;
    };
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    prefetch_line(std::ptr::from_ref(item).cast());
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = item;
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline]
fn prefetch_line(at: *const u8) {
    // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 processor has; a prefetch reads
    // nothing a program can observe and never faults (whatever the address), and every caller
    // passes the address of memory it borrows for the call.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(at.cast());
    }
}
