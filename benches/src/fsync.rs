//! The device's durable-write latency: what one group commit must at least wait for.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::stats::nanos;

/// The size of one measured write.
pub const FSYNC_WRITE_BYTES: usize = 4096;

/// What each sample writes before its `fdatasync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncMode {
    /// 4 KiB appended at the end of the file, which grows: like a log segment, so the sync also
    /// commits the new file size (on ext4, a journal commit).
    Append,
    /// The same 4 KiB block rewritten in place: data only, no metadata change. A diagnostic for
    /// how much of the append cost is the size update.
    Overwrite,
}

/// A file in some directory, written 4 KiB at a time with an `fdatasync` after each write.
#[derive(Debug)]
pub struct FsyncProbe {
    file: File,
    path: PathBuf,
    mode: FsyncMode,
    offset: u64,
    block: [u8; FSYNC_WRITE_BYTES],
}

impl FsyncProbe {
    /// Creates (or truncates) the probe's file `name` in `dir`.
    pub fn create(dir: &Path, name: &str, mode: FsyncMode) -> io::Result<FsyncProbe> {
        let path = dir.join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let mut block = [0u8; FSYNC_WRITE_BYTES];
        let mut state = 0x5EED;
        for chunk in block.chunks_mut(8) {
            chunk.copy_from_slice(&crate::splitmix64(&mut state).to_le_bytes());
        }
        Ok(FsyncProbe {
            file,
            path,
            mode,
            offset: 0,
            block,
        })
    }

    /// Writes 4 KiB (at the end, or in place) and `fdatasync`s; returns the time both took.
    pub fn step(&mut self) -> io::Result<Duration> {
        let start = Instant::now();
        self.file.write_all_at(&self.block, self.offset)?;
        self.file.sync_data()?;
        let elapsed = start.elapsed();
        if self.mode == FsyncMode::Append {
            self.offset += FSYNC_WRITE_BYTES as u64;
        }
        self.block[0] = self.block[0].wrapping_add(1);
        Ok(elapsed)
    }

    /// Closes and deletes the file.
    pub fn remove(self) -> io::Result<()> {
        drop(self.file);
        std::fs::remove_file(&self.path)
    }
}

/// Measures `samples` writes of 4 KiB each followed by `fdatasync` (`File::sync_data`), on a new
/// file in `dir`, and returns each one's latency in nanoseconds (write plus sync). Stops early at
/// `budget` of wall time (at least one sample is taken). Ten unmeasured samples warm up first.
pub fn fsync_latencies(
    dir: &Path,
    mode: FsyncMode,
    samples: usize,
    budget: Duration,
) -> io::Result<Vec<u64>> {
    let name = match mode {
        FsyncMode::Append => "fsync-append.bin",
        FsyncMode::Overwrite => "fsync-overwrite.bin",
    };
    let mut probe = FsyncProbe::create(dir, name, mode)?;
    for _ in 0..10 {
        probe.step()?;
    }
    let deadline = Instant::now() + budget;
    let mut latencies = Vec::with_capacity(samples);
    while latencies.len() < samples.max(1) {
        latencies.push(nanos(probe.step()?));
        if Instant::now() >= deadline {
            break;
        }
    }
    probe.remove()?;
    Ok(latencies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_and_cleans_up() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        for mode in [FsyncMode::Append, FsyncMode::Overwrite] {
            let latencies = fsync_latencies(dir.path(), mode, 3, Duration::from_secs(10))?;
            assert_eq!(latencies.len(), 3);
            assert!(latencies.iter().all(|&ns| ns > 0));
        }
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
        Ok(())
    }
}
