//! The log against a plain in-memory model, driven by proptest.
//!
//! Random sequences of appends (single and grouped, with clock steps back and far forward),
//! reads from any LSN (by shard and from a remembered record with `read_entries`), clean
//! reopens, power cuts and retention run on `SimStorage` with small segments; after every step
//! the log must read back exactly what the model holds. Retention is the one step the model does
//! not predict in detail: it may remove only whole runs of records older than the cutoff, never
//! one from the active segment, and the model then forgets them.
//!
//! `PROPTEST_CASES` sets the number of cases (default 256).

mod common;

use std::collections::BTreeMap;

use common::*;
use missive_log::storage::Damage;
use missive_log::{Durability, Log, Lsn, Record, ShardId, SimStorage, Timestamp};
use proptest::prelude::*;

const SHARDS: u32 = 2;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

#[derive(Clone, Debug)]
enum Op {
    Append {
        chat: u64,
        pad: usize,
        advance_ms: u64,
    },
    AppendGroup {
        chats: Vec<u64>,
        pad: usize,
    },
    ClockBack,
    ClockFarForward,
    Read {
        shard: u32,
        from: u64,
    },
    /// A record-level read from the record at `from` (or the first after it), up to `records`
    /// records if given.
    ReadEntries {
        shard: u32,
        from: u64,
        records: Option<usize>,
    },
    Reopen,
    PowerCut {
        damage: u8,
        seed: u64,
    },
    Retain {
        behind_ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0..6u64, 0..400usize, 0..1500u64)
            .prop_map(|(chat, pad, advance_ms)| Op::Append { chat, pad, advance_ms }),
        4 => (proptest::collection::vec(0..6u64, 1..12), 0..200usize)
            .prop_map(|(chats, pad)| Op::AppendGroup { chats, pad }),
        1 => Just(Op::ClockBack),
        1 => Just(Op::ClockFarForward),
        3 => (0..SHARDS, 0..40u64).prop_map(|(shard, from)| Op::Read { shard, from }),
        3 => (0..SHARDS, 0..40u64, proptest::option::of(0..4usize))
            .prop_map(|(shard, from, records)| Op::ReadEntries { shard, from, records }),
        2 => Just(Op::Reopen),
        2 => (0..3u8, any::<u64>()).prop_map(|(damage, seed)| Op::PowerCut { damage, seed }),
        2 => (0..20_000u64).prop_map(|behind_ms| Op::Retain { behind_ms }),
    ]
}

struct Harness {
    disk: SimStorage,
    log: Option<Log>,
    /// Per shard: LSN → record, for every record the log must still hold.
    model: Vec<BTreeMap<u64, Record>>,
    /// Per shard: the next LSN.
    head: Vec<u64>,
    now: u64,
    n: u64,
}

impl Harness {
    fn new() -> Harness {
        let disk = SimStorage::new();
        let log = open_sim(&disk, &config(SHARDS, Durability::Always)).unwrap();
        Harness {
            disk,
            log: Some(log),
            model: vec![BTreeMap::new(); SHARDS as usize],
            head: vec![1; SHARDS as usize],
            now: 30 * DAY_MS,
            n: 0,
        }
    }

    fn log(&self) -> &Log {
        self.log.as_ref().unwrap()
    }

    fn reopen(&mut self) {
        self.log = Some(open_sim(&self.disk, &config(SHARDS, Durability::Always)).unwrap());
    }

    fn append_all(&mut self, records: Vec<Record>) {
        let tickets: Vec<_> = records
            .iter()
            .map(|r| self.log().append(r.clone()).unwrap())
            .collect();
        for (record, ticket) in records.into_iter().zip(tickets) {
            let appended = ticket.wait().unwrap();
            let shard = appended.batch.shard.0 as usize;
            assert_eq!(
                appended.lsn.0, self.head[shard],
                "LSNs are dense and in append order"
            );
            self.head[shard] += 1;
            self.model[shard].insert(appended.lsn.0, record);
        }
    }

    fn record(&mut self, chat: u64, pad: usize) -> Record {
        self.n += 1;
        message(common::chat(chat), self.n, self.now, pad)
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Append {
                chat,
                pad,
                advance_ms,
            } => {
                self.now += advance_ms;
                let record = self.record(chat, pad);
                self.append_all(vec![record]);
            }
            Op::AppendGroup { chats, pad } => {
                let records = chats
                    .into_iter()
                    .map(|chat| self.record(chat, pad))
                    .collect();
                self.append_all(records);
            }
            Op::ClockBack => self.now -= DAY_MS,
            Op::ClockFarForward => self.now += 3650 * DAY_MS,
            Op::Read { shard, from } => {
                let got: Vec<_> = self
                    .log()
                    .read_from(ShardId(shard), Lsn(from))
                    .unwrap()
                    .map(|e| e.map(|e| (e.lsn.0, e.record)))
                    .collect::<Result<_, _>>()
                    .unwrap();
                let want: Vec<_> = self.model[shard as usize]
                    .range(from..)
                    .map(|(l, r)| (*l, r.clone()))
                    .collect();
                assert_eq!(got, want);
            }
            Op::ReadEntries {
                shard,
                from,
                records,
            } => self.read_entries(ShardId(shard), Lsn(from), records),
            Op::Reopen => {
                self.log.take().unwrap().close().unwrap();
                self.reopen();
            }
            Op::PowerCut { damage, seed } => {
                drop(self.log.take());
                self.disk.power_cut(match damage {
                    0 => Damage::DropUnsynced,
                    1 => Damage::TornPrefix { seed },
                    _ => Damage::TornGarbage { seed },
                });
                self.reopen();
            }
            Op::Retain { behind_ms } => {
                let cutoff = self.now.saturating_sub(behind_ms);
                self.log().retain(Timestamp(cutoff)).unwrap();
                for shard in 0..SHARDS {
                    let kept: BTreeMap<u64, Record> = self
                        .log()
                        .read_from(ShardId(shard), Lsn::FIRST)
                        .unwrap()
                        .map(|e| e.map(|e| (e.lsn.0, e.record)))
                        .collect::<Result<_, _>>()
                        .unwrap();
                    let model = &mut self.model[shard as usize];
                    for (lsn, record) in model.iter() {
                        match kept.get(lsn) {
                            Some(kept) => assert_eq!(kept, record),
                            None => assert!(
                                record.timestamp.0 < cutoff,
                                "lsn {lsn} at {} removed by cutoff {cutoff}",
                                record.timestamp.0
                            ),
                        }
                    }
                    assert!(kept.keys().all(|lsn| model.contains_key(lsn)));
                    *model = kept;
                }
            }
        }
        self.check();
    }

    /// Finds the record at `from` (or the first after it) as an index would, by reading its
    /// whole batch, then reads from it with `read_entries`, up to `records` records (by their
    /// end offset) or to the end of the batch; the result must be the model's records.
    fn read_entries(&self, shard: ShardId, from: Lsn, records: Option<usize>) {
        let Some(found) = self.log().batches_from(shard, from).unwrap().next() else {
            return;
        };
        let (batch, decoded) = found.unwrap();
        let mut entries = decoded.entries();
        let mut offsets = Vec::new();
        loop {
            let offset = entries.body_offset() as u32;
            let Some(entry) = entries.next() else { break };
            if entry.lsn >= from {
                offsets.push((offset, entry.lsn));
            }
        }
        let Some(&(body_offset, lsn)) = offsets.first() else {
            return;
        };
        let wanted = records.map_or(offsets.len(), |n| n.min(offsets.len()));
        let body_end = records.map(|_| {
            offsets
                .get(wanted)
                .map_or(decoded.header.raw_len, |(offset, _)| *offset)
        });
        let at = missive_log::RecordPos {
            batch,
            body_offset,
            lsn,
        };
        let got: Vec<_> = self
            .log()
            .read_entries(at, body_end)
            .unwrap()
            .map(|e| (e.lsn.0, e.record))
            .collect();
        let want: Vec<_> = self.model[shard.0 as usize]
            .range(lsn.0..)
            .take(wanted)
            .map(|(l, r)| (*l, r.clone()))
            .collect();
        assert_eq!(got, want, "{at:?} to {body_end:?}");
    }

    /// The whole log equals the model, and heads agree.
    fn check(&self) {
        for shard in 0..SHARDS {
            assert_eq!(
                self.log().head(ShardId(shard)).unwrap().0,
                self.head[shard as usize]
            );
            let got: Vec<u64> = self
                .log()
                .read_from(ShardId(shard), Lsn::FIRST)
                .unwrap()
                .map(|e| e.unwrap().lsn.0)
                .collect();
            let want: Vec<u64> = self.model[shard as usize].keys().copied().collect();
            assert_eq!(got, want, "shard {shard}");
        }
        self.log().verify().unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: count_from_env("PROPTEST_CASES", 256) as u32,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_log_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut harness = Harness::new();
        for op in ops {
            harness.apply(op);
        }
    }
}
