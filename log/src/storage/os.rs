//! System calls the standard library does not offer: the log's only `unsafe` code besides the
//! memory maps (`mmap.rs`).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

/// Starts writing back the dirty pages of `file` in `offset..offset + len` without waiting for
/// them (see [`StorageFile::start_writeback`](super::StorageFile::start_writeback)).
#[cfg(target_os = "linux")]
pub(super) fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: a system call on a descriptor `file` keeps open for the call; it reads and
    // writes no memory of this process, and any range is valid (pages outside the file are
    // ignored).
    let result = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere the OS writes back on its own schedule.
#[cfg(not(target_os = "linux"))]
pub(super) fn start_writeback(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

/// Drops the clean, unmapped pages of `file` from the page cache (`POSIX_FADV_DONTNEED`; see
/// [`Storage::drop_cached`](super::Storage::drop_cached)).
#[cfg(target_os = "linux")]
pub(super) fn drop_cached(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a system call on a descriptor `file` keeps open for the call; it touches no
    // memory of this process. Offset 0 and length 0 name the whole file.
    let result = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    // posix_fadvise returns the error number instead of setting errno.
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(result))
    }
}

/// Elsewhere the cache is left to the OS.
#[cfg(not(target_os = "linux"))]
pub(super) fn drop_cached(_file: &File) -> io::Result<()> {
    Ok(())
}
