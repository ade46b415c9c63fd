//! The small storage trait everything in the log goes through.
//!
//! [`FsStorage`] is the real one (files, `fdatasync`, directory fsync, read-only mmaps of sealed
//! segments). [`SimStorage`] keeps files in memory and models a disk with a page cache: it can
//! drop every byte not yet synced (a power cut) and fail any write or sync on demand, so tests
//! can prove what an acknowledged append survives.

mod fs;
mod mmap;
mod os;
mod sim;

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

pub use fs::FsStorage;
pub use mmap::prefetch;
pub(crate) use mmap::prefetch_item;
pub use sim::{Damage, Fault, FaultOp, SimStorage};

/// A directory tree of files: what the log needs from a file system.
pub trait Storage: Send + Sync + Debug + 'static {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries in `dir` (files and directories), in no particular order.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens a file for reading and writing; with `create`, creates it if missing.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames a file, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// The whole content of a file that will never change again (a sealed segment), shared.
    /// The real storage maps it read-only; the handle stays valid after the file is removed.
    fn read_sealed(&self, path: &Path) -> io::Result<Bytes>;
    /// [`read_sealed`](Storage::read_sealed) for a file read at random whose cached pages the
    /// caller wants in 2 MiB units where the system has them (Linux: a read-only map with
    /// `MADV_HUGEPAGE`, so that a read of bytes not in memory brings in the 2 MiB around them
    /// as one folio, mapped by one TLB entry). The default is `read_sealed`.
    fn read_sealed_huge(&self, path: &Path) -> io::Result<Bytes> {
        self.read_sealed(path)
    }
    /// Drops what memory holds of a sealed file, so that the next reads through `map` (made by
    /// [`read_sealed_huge`](Storage::read_sealed_huge) for this file) read it back in 2 MiB
    /// folios: pages written in small pieces stay in small ones otherwise. Clean pages only,
    /// and none another map still maps; the file's bytes, as any reader sees them, are
    /// unchanged (only where they are held). The default does nothing.
    ///
    /// # Safety
    /// `map` must be bytes this storage's [`read_sealed`](Storage::read_sealed) or
    /// [`read_sealed_huge`](Storage::read_sealed_huge) returned for `path` (or a clone of
    /// them): the real storage drops the page-table entries of that range, which for any other
    /// memory (a heap copy) would discard its contents.
    #[allow(unsafe_code)]
    unsafe fn drop_cached(&self, path: &Path, map: &Bytes) -> io::Result<()> {
        let _ = (path, map);
        Ok(())
    }
    /// The file from its start, for a file that only grows and whose bytes, once acknowledged,
    /// never change (the active segment). The real storage maps `reserve` bytes read-only, which
    /// may reach past the file's end: the caller reads only bytes the file holds, and sees the
    /// file's growth through the same map. Storage that cannot map returns a copy of the file as
    /// it is now (shorter than `reserve`); the caller asks again when it needs more.
    fn map_growing(&self, path: &Path, reserve: u64) -> io::Result<Bytes>;
    /// Takes an exclusive lock on `dir` for as long as the returned guard lives. Fails with
    /// [`io::ErrorKind::WouldBlock`] when another holder has it.
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn Send + Sync + Debug>>;
}

/// An open file.
pub trait StorageFile: Send + Sync + Debug {
    /// Fills `buf` from `offset`; `UnexpectedEof` if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`. On error, a prefix of `buf` may have been written.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the file's data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Asks the OS to start writing `len` bytes from `offset` back to the device, without
    /// waiting (Linux: `sync_file_range(SYNC_FILE_RANGE_WRITE)`). A hint that makes nothing
    /// durable: only [`StorageFile::sync_data`] does. The default does nothing.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
}
