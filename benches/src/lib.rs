//! Shared helpers for Missive's benchmarks (see `benches/README.md` and `benches/RESULTS.md`).
//!
//! The Criterion suites (`benches/benches/*.rs`) and the comparison harness
//! (`src/bin/compare.rs`) run the same workloads, defined here:
//!
//! - [`workload`]: producers appending 256-byte records to a [`missive_log::Log`], either
//!   *blocking* (each producer waits for its ticket before the next append) or *pipelined* (each
//!   producer keeps a window of tickets in flight), with ack latencies and the group-commit batch
//!   sizes the log produced; and sequential read back.
//! - [`sqlite`]: the peer, SQLite through rusqlite (WAL, `synchronous=FULL` or `OFF`), inserting
//!   the same messages into a table indexed on `(chat_id, seq)`.
//! - [`fsync`]: the device's latency for a 4 KiB append plus `fdatasync`.
//! - [`stats`]: percentiles and medians.
//!
//! ```
//! assert!(missive_log::RECORD_PAYLOAD_BYTES_MAX >= missive_benches::PAYLOAD_BYTES);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod fsync;
pub mod sqlite;
pub mod stats;
pub mod workload;

use std::sync::Arc;

use bytes::Bytes;

/// The payload size every benchmark uses: a typical end-to-end-encrypted chat message.
pub const PAYLOAD_BYTES: usize = 256;

/// How many distinct payloads a benchmark cycles through (1 MiB of them). Records 4096 apart
/// are more than 1 MiB apart in a batch body, far beyond lz4's 64 KiB window, so the log's
/// batch compression finds nothing to gain: like real ciphertext.
pub const PAYLOAD_POOL: usize = 4096;

/// The directory benchmarks put their temporary logs and databases in: `$MISSIVE_BENCH_DIR` if
/// set, else the system's temp directory. Measure on the file system you care about.
pub fn bench_dir() -> std::path::PathBuf {
    std::env::var_os("MISSIVE_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into)
}

/// `count` pseudo-random (incompressible) payloads of [`PAYLOAD_BYTES`] each, the same for the
/// same `seed`. Benchmarks clone them (a reference-count increment), so generating payloads
/// costs nothing on the measured path.
pub fn payloads(count: usize, seed: u64) -> Arc<[Bytes]> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            let mut payload = Vec::with_capacity(PAYLOAD_BYTES);
            while payload.len() < PAYLOAD_BYTES {
                payload.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
            }
            payload.truncate(PAYLOAD_BYTES);
            Bytes::from(payload)
        })
        .collect()
}

/// One step of the SplitMix64 generator: fast, deterministic, good enough to defeat lz4.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_sized_deterministic_and_incompressible() {
        let a = payloads(64, 7);
        let b = payloads(64, 7);
        assert_eq!(a, b);
        assert!(a.iter().all(|p| p.len() == PAYLOAD_BYTES));
        assert_ne!(a[0], a[1]);
        // A crude incompressibility check: lz4 needs repeated 4-byte sequences to gain anything;
        // in 16 KiB of random bytes a few chance repeats of 4 bytes are expected, of 8 none.
        let body: Vec<u8> = a.iter().flat_map(|p| p.iter().copied()).collect();
        let mut seen = std::collections::HashSet::new();
        assert!(body.windows(8).all(|w| seen.insert(w)));
    }
}
