//! The real file system.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::{Storage, StorageFile};

/// Files on the local file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsStorage;

#[derive(Debug)]
struct FsFile(File);

impl StorageFile for FsFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        super::os::start_writeback(&self.0, offset, len)
    }
}

#[derive(Debug)]
struct DirLock(#[allow(dead_code)] File);

impl Storage for FsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            // Names that are not UTF-8 are not ours; the log ignores what it did not write.
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .open(path)?;
        Ok(Arc::new(FsFile(file)))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // IMPORTANT: a new, renamed or removed file is only durable once its directory is.
        File::open(dir)?.sync_all()
    }

    fn read_sealed(&self, path: &Path) -> io::Result<Bytes> {
        super::mmap::map_sealed(&File::open(path)?, false)
    }

    fn read_sealed_huge(&self, path: &Path) -> io::Result<Bytes> {
        super::mmap::map_sealed(&File::open(path)?, true)
    }

    #[allow(unsafe_code)]
    unsafe fn drop_cached(&self, path: &Path, map: &Bytes) -> io::Result<()> {
        // SAFETY: the caller passes a map `map_sealed` made of `path` (this function's
        // contract), which is what `unmap_pages` requires.
        unsafe { super::mmap::unmap_pages(map) };
        super::os::drop_cached(&File::open(path)?)
    }

    fn map_growing(&self, path: &Path, reserve: u64) -> io::Result<Bytes> {
        super::mmap::map_growing(&File::open(path)?, reserve)
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn Send + Sync + std::fmt::Debug>> {
        // The lock file holds no data; never truncate it (another holder may be looking at it).
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("LOCK"))?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(DirLock(file))),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(std::fs::TryLockError::Error(error)) => Err(error),
        }
    }
}
