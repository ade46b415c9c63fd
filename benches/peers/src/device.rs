//! The physical limits every result is compared with, measured in the same run and directory:
//! the latency of a 4 KiB append + `fdatasync` (`missive_benches::fsync`) and sequential write
//! bandwidth (1 MiB writes, then one `fdatasync`); and what the process wrote, from
//! `/proc/self/io`.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use missive_benches::fsync::{FsyncMode, fsync_latencies};
use missive_benches::stats::percentile;

/// The device, measured.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Device {
    /// 4 KiB append + fdatasync, median, ns.
    pub fsync_p50_ns: u64,
    /// The same, 99th percentile, ns.
    pub fsync_p99_ns: u64,
    /// Sequential write bandwidth through the page cache to the device, bytes/s.
    pub write_bytes_per_s: f64,
}

/// Measures the device under `dir`: `samples` fsyncs (at most 20 s) and `bandwidth_bytes`
/// written sequentially.
pub fn measure(dir: &Path, samples: usize, bandwidth_bytes: u64) -> Result<Device> {
    let mut latencies = fsync_latencies(dir, FsyncMode::Append, samples, Duration::from_secs(20))?;
    latencies.sort_unstable();
    Ok(Device {
        fsync_p50_ns: percentile(&latencies, 0.50),
        fsync_p99_ns: percentile(&latencies, 0.99),
        write_bytes_per_s: bandwidth(dir, bandwidth_bytes)?,
    })
}

/// Writes `bytes` of pseudo-random data in 1 MiB writes to a new file and `fdatasync`s it;
/// returns bytes per second over the whole (write + sync).
pub fn bandwidth(dir: &Path, bytes: u64) -> Result<f64> {
    let path = dir.join("bandwidth.bin");
    let mut chunk = vec![0u8; 1 << 20];
    let mut state = 0xBA5E;
    for word in chunk.chunks_mut(8) {
        word.copy_from_slice(&missive_benches::splitmix64(&mut state).to_le_bytes());
    }
    let mut file = File::create(&path).context("bandwidth probe file")?;
    let started = Instant::now();
    let mut written = 0;
    while written < bytes {
        chunk[0] = chunk[0].wrapping_add(1);
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
    }
    file.sync_data()?;
    let elapsed = started.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(written as f64 / elapsed.as_secs_f64().max(1e-9))
}

/// Bytes this process caused to be written to storage so far (`write_bytes` of
/// `/proc/self/io`: counted when a page is dirtied, so buffered writes count too).
pub fn write_bytes() -> u64 {
    let Ok(io) = std::fs::read_to_string("/proc/self/io") else {
        return 0;
    };
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes allocated on disk by the files under `dir` (blocks, not lengths: sparse or
/// preallocated files count as what they take).
pub fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => allocated_bytes(&entry.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_measure_and_clean_up() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let device = measure(dir.path(), 3, 2 << 20)?;
        assert!(device.fsync_p50_ns > 0 && device.write_bytes_per_s > 0.0);
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
        std::fs::write(dir.path().join("f"), vec![1u8; 10_000])?;
        assert!(allocated_bytes(dir.path()) >= 10_000);
        Ok(())
    }
}
