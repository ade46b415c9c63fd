//! Simulated power cuts under `Durability::Always`.
//!
//! A seeded workload (appends to several chats with group commit, segment rolls by size and by
//! time, retention, clean reopens) runs on `SimStorage`; the power goes out after a chosen number
//! of I/O operations, sweeping every operation index of the workload, and the cut keeps a random
//! torn (sometimes scrambled) prefix of unsynced bytes. After reopening, each shard must hold a
//! dense run of exactly the records appended to it, in order, containing every acknowledged one:
//! nothing acknowledged is lost and nothing after a gap is replayed.
//!
//! `POWER_CUTS` sets the number of cuts (default 1200); `SEED` replays a run.

mod common;

use common::*;
use missive_log::storage::Damage;
use missive_log::{Durability, Lsn, Record, ShardId, SimStorage, Timestamp};

const SHARDS: u32 = 2;
const CHATS: u64 = 6;

struct Outcome {
    /// Per shard, every record handed to `append`, in LSN order.
    issued: Vec<Vec<Record>>,
    /// Per shard, how many of those were acknowledged (a prefix: one thread waits in order).
    acked: Vec<usize>,
    /// Records older than this may have been removed by retention.
    retained_from: u64,
}

/// Runs the workload until it ends or the power fails. Deterministic for a seed, apart from how
/// the writer happens to group concurrent appends into batches.
fn workload(disk: &SimStorage, seed: u64, appends: u64) -> Outcome {
    let config = config(SHARDS, Durability::Always);
    let mut rng = Rng::new(seed);
    let mut out = Outcome {
        issued: vec![Vec::new(); SHARDS as usize],
        acked: vec![0; SHARDS as usize],
        retained_from: 0,
    };
    let Ok(mut log) = open_sim(disk, &config) else {
        return out;
    };
    let mut now = 1_000_000;
    let mut n = 0;
    'run: while n < appends {
        // Several appends in flight at once, so the writer groups them.
        let group = 1 + rng.below(4);
        let mut tickets = Vec::new();
        for _ in 0..group {
            now += rng.below(120);
            let chat = chat(rng.below(CHATS));
            let pad = if rng.below(4) == 0 {
                600
            } else {
                rng.below(80) as usize
            };
            let record = message(chat, n, now, pad);
            let shard = log.shard_of(chat).0 as usize;
            n += 1;
            match log.append(record.clone()) {
                Ok(ticket) => {
                    out.issued[shard].push(record);
                    tickets.push((shard, ticket));
                }
                Err(_) => break 'run,
            }
        }
        for (shard, ticket) in tickets {
            match ticket.wait() {
                Ok(appended) => {
                    // One thread appends, so acknowledgements come in LSN order.
                    assert_eq!(appended.lsn, Lsn(out.acked[shard] as u64 + 1));
                    out.acked[shard] += 1;
                }
                Err(_) => break 'run,
            }
        }
        match rng.below(40) {
            0 => {
                // Set first: a retain cut short by the power may still have removed files.
                let cutoff = now.saturating_sub(3_000);
                out.retained_from = cutoff;
                if log.retain(Timestamp(cutoff)).is_err() {
                    break;
                }
            }
            1 => {
                if log.close().is_err() {
                    return out;
                }
                log = match open_sim(disk, &config) {
                    Ok(log) => log,
                    Err(_) => return out,
                };
            }
            _ => {}
        }
    }
    drop(log);
    out
}

fn check(disk: &SimStorage, outcome: &Outcome, context: &str) {
    let config = config(SHARDS, Durability::Always);
    let log = open_sim(disk, &config).unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
    for shard in 0..SHARDS {
        let issued = &outcome.issued[shard as usize];
        let acked = outcome.acked[shard as usize] as u64;
        let head = log.head(ShardId(shard)).unwrap().0;
        let entries: Vec<_> = log
            .read_from(ShardId(shard), Lsn::FIRST)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{context}: shard {shard}: {e}"));
        // Every acknowledged record is still in the log, and nothing was invented past the issued.
        assert!(
            head > acked,
            "{context}: shard {shard} lost acknowledged records (head {head})"
        );
        assert!(
            head <= issued.len() as u64 + 1,
            "{context}: shard {shard} head {head} past issued"
        );
        // What is readable is one dense run ending at the head, each record at its LSN.
        let first = entries.first().map_or(head, |e| e.lsn.0);
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.lsn.0,
                first + i as u64,
                "{context}: gap in shard {shard}"
            );
            let expected = &issued[entry.lsn.0 as usize - 1];
            assert_eq!(
                &entry.record, expected,
                "{context}: shard {shard} lsn {}",
                entry.lsn.0
            );
        }
        assert_eq!(
            first + entries.len() as u64,
            head,
            "{context}: shard {shard} ends early"
        );
        // Only retention removes records, and only old ones.
        for record in &issued[..first as usize - 1] {
            let young = record.timestamp.0 >= outcome.retained_from;
            assert!(
                !young,
                "{context}: shard {shard} lost a record retention must keep"
            );
        }
        // The log takes appends again, continuing the sequence.
        let record = message(chat(shard as u64), u64::MAX, 9_000_000, 0);
        if log.shard_of(record.chat).0 == shard {
            let lsn = log.append(record).unwrap().wait().unwrap().lsn;
            assert_eq!(lsn.0, head, "{context}");
        }
    }
    log.close().unwrap();
}

#[test]
fn acknowledged_appends_survive_power_cuts_at_every_operation() {
    let cuts = count_from_env("POWER_CUTS", 1200);
    let base = seed("power cuts");
    let appends = 120;
    let mut done = 0;
    let mut run = 0;
    let mut acked_checked = 0;
    while done < cuts {
        // Learn how many I/O operations this workload makes, then cut at each of them.
        let seed = base.wrapping_add(run);
        let dry = SimStorage::new();
        workload(&dry, seed, appends);
        let ops = dry.op_count();
        for op in 0..=ops {
            if done == cuts {
                break;
            }
            let disk = SimStorage::new();
            disk.power_off_after(op);
            let outcome = workload(&disk, seed, appends);
            let damage = match done % 3 {
                0 => Damage::DropUnsynced,
                1 => Damage::TornPrefix { seed: seed ^ op },
                _ => Damage::TornGarbage { seed: seed ^ op },
            };
            disk.power_cut(damage);
            let context = format!(
                "SEED={base} run {run} (workload seed {seed}), cut after op {op}/{ops}, {damage:?}"
            );
            check(&disk, &outcome, &context);
            acked_checked += outcome.acked.iter().sum::<usize>();
            done += 1;
        }
        run += 1;
    }
    eprintln!(
        "{done} power cuts over {run} workloads; {acked_checked} acknowledged appends verified"
    );
}
