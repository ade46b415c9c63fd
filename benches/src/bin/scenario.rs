//! Runs one Missive append scenario and prints its figures: a target for `perf record` and for
//! trying a setting the comparison harness does not vary.
//!
//! ```text
//! cargo run --release -p missive-benches --bin scenario -- \
//!     --durability always|os|interval:MS --producers 64 --window 64 --secs 3 \
//!     [--shards 1] [--no-compression] [--dir /tmp]
//! ```
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use missive_benches::stats::{Latency, fmt_ns, fmt_rate};
use missive_benches::workload::{Workload, log_config, now_timestamp, run_appends};
use missive_log::{Durability, Log};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> AnyResult<()> {
    let mut durability = Durability::Always;
    let (mut producers, mut window, mut secs, mut shards) = (1usize, 1usize, 3.0f64, 1u32);
    let mut compression = true;
    let mut dir = std::env::temp_dir();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--durability" => {
                durability = match value()?.as_str() {
                    "always" => Durability::Always,
                    "os" => Durability::Os,
                    other => match other.strip_prefix("interval:") {
                        Some(ms) => Durability::Interval { ms: ms.parse()? },
                        None => return Err(format!("unknown durability {other}").into()),
                    },
                }
            }
            "--producers" => producers = value()?.parse()?,
            "--window" => window = value()?.parse()?,
            "--secs" => secs = value()?.parse()?,
            "--shards" => shards = value()?.parse()?,
            "--no-compression" => compression = false,
            "--dir" => dir = PathBuf::from(value()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let payloads = missive_benches::payloads(missive_benches::PAYLOAD_POOL, 42);
    let temp = tempfile::tempdir_in(dir)?;
    let mut config = log_config(durability, shards);
    config.compression = compression;
    let log = Log::open(temp.path(), config)?;
    let workload = Workload::timed(producers, window, Duration::from_secs_f64(secs));
    let mut outcome = run_appends(&log, &workload, &payloads, now_timestamp())?;
    log.close()?;
    let latency = Latency::from_samples(&mut outcome.latencies_ns);
    println!(
        "{durability:?}, {producers} producer(s) × {window} in flight, {shards} shard(s), \
         compression {compression}: {} msg/s, mean batch {:.1}, ack p50 {} p99 {} ({} messages \
         in {:.2} s)",
        fmt_rate(outcome.throughput()),
        outcome.mean_batch(),
        fmt_ns(latency.p50_ns),
        fmt_ns(latency.p99_ns),
        outcome.messages,
        outcome.elapsed.as_secs_f64(),
    );
    Ok(())
}
