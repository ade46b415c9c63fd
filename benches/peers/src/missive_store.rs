//! Missive, through its public API ([`missive::Engine`]), configured as a server would run it:
//! the defaults (one log shard per core, lz4, hourly segments, a checkpoint every minute) with
//! `Durability::Always` (fdatasync per group commit) or `Os` (written to the OS only).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use missive::log::{ChatId, DeviceId, Seq, Timestamp, UserId};
use missive::{Config, Durability, Engine, Event, History, ManualClock, Outgoing, ReceiptKind, To};

use crate::spec::{DAY_MS, FILL_DAYS, Op, chat_users, group_members};
use crate::store::{Outcome, Sink, Store};

/// Threads that send a bulk load.
const BULK_THREADS: usize = 64;

/// Missive under test.
pub struct MissiveStore {
    dir: PathBuf,
    /// Always present except while reopening.
    engine: Option<Engine>,
    durable: bool,
    groups: Arc<Vec<ChatId>>,
    /// The fill and expiry drive time by hand; the other workloads use the system clock.
    clock: Option<ManualClock>,
}

fn config(durable: bool, clock: Option<&ManualClock>) -> Config {
    let mut config = Config {
        durability: if durable {
            Durability::Always
        } else {
            Durability::Os
        },
        // Expiry runs when the harness says, never on its own.
        retention_interval: None,
        ..Config::default()
    };
    if let Some(clock) = clock {
        config.clock = Arc::new(clock.clone());
        config.retention = Duration::from_millis((FILL_DAYS - 1) * DAY_MS);
    }
    config
}

impl MissiveStore {
    /// Opens (or creates, or recovers) the engine in `dir`, buffered. With `clock`, time is what
    /// the fill's timestamps say, and retention keeps all but the oldest of its days.
    pub fn open(dir: &Path, clock: Option<ManualClock>) -> Result<MissiveStore> {
        let engine = Engine::open(dir, config(false, clock.as_ref()))?;
        if std::env::var_os("PEERS_DEBUG").is_some() {
            let stats = engine.stats();
            eprintln!(
                "missive open: log {} ms, index {} ms, from checkpoint {}, replayed {}, torn {} B",
                stats.open_log_ms,
                stats.open_index_ms,
                stats.opened_from_checkpoint,
                stats.opened_replayed,
                stats.opened_torn_bytes
            );
        }
        Ok(MissiveStore {
            dir: dir.to_path_buf(),
            engine: Some(engine),
            durable: false,
            groups: Arc::new(Vec::new()),
            clock,
        })
    }
}

struct MissiveSink<'a> {
    engine: &'a Engine,
    groups: &'a [ChatId],
    clock: Option<&'a ManualClock>,
}

impl Sink for MissiveSink<'_> {
    fn submit(&self, _producer: usize, op: Op) -> Result<()> {
        match op {
            Op::Direct {
                chat,
                sender,
                id,
                ts,
                body,
            } => {
                if let Some(clock) = self.clock {
                    clock.set(Timestamp(ts));
                }
                let (a, b) = chat_users(chat);
                let to = UserId(if sender == a { b } else { a });
                let message = Outgoing::text(To::User(to), id, body);
                self.engine.send(UserId(sender), DeviceId(0), message)?;
            }
            Op::Group {
                group,
                sender,
                id,
                body,
                ..
            } => {
                let chat = *self.groups.get(group as usize).context("no such group")?;
                let message = Outgoing::text(To::Chat(chat), id, body);
                self.engine.send(UserId(sender), DeviceId(0), message)?;
            }
            Op::Receipt { user, chat, up_to } => {
                let (a, b) = chat_users(chat);
                let chat = ChatId::direct(UserId(a), UserId(b));
                self.engine.mark(
                    UserId(user),
                    DeviceId(0),
                    chat,
                    ReceiptKind::Read,
                    Seq(up_to),
                )?;
            }
        }
        Ok(())
    }
}

impl MissiveStore {
    fn engine(&self) -> &Engine {
        // Invariant: only `set_durable` takes the engine, and puts a new one back.
        self.engine.as_ref().expect("the engine is open")
    }

    fn sink(&self) -> MissiveSink<'_> {
        MissiveSink {
            engine: self.engine(),
            groups: &self.groups,
            clock: self.clock.as_ref(),
        }
    }

    /// Stores `ops` from [`BULK_THREADS`] threads (blocking sends), buffered.
    fn bulk_sends(&mut self, ops: &[Op]) -> Result<()> {
        let sink = self.sink();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..BULK_THREADS)
                .map(|t| {
                    let sink = &sink;
                    scope.spawn(move || -> Result<()> {
                        for op in ops.iter().skip(t).step_by(BULK_THREADS) {
                            sink.submit(t, op.clone())?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for handle in handles {
                handle.join().expect("a bulk sender panicked")?;
            }
            Ok(())
        })
    }
}

impl Store for MissiveStore {
    fn name(&self) -> &'static str {
        "Missive"
    }

    fn set_durable(&mut self, durable: bool) -> Result<()> {
        if durable != self.durable {
            // The directory stays locked until the last handle is dropped.
            if let Some(engine) = self.engine.take() {
                engine.close()?;
            }
            self.engine = Some(Engine::open(
                &self.dir,
                config(durable, self.clock.as_ref()),
            )?);
            self.durable = durable;
        }
        Ok(())
    }

    fn create_groups(&mut self, count: u64) -> Result<()> {
        let mut groups = Vec::with_capacity(count as usize);
        for g in 0..count {
            let members: Vec<UserId> = group_members(g).into_iter().map(UserId).collect();
            groups.push(self.engine().create_group(members[0], &members[1..])?);
        }
        self.groups = Arc::new(groups);
        Ok(())
    }

    fn bulk(&mut self, ops: &[Op]) -> Result<()> {
        self.set_durable(false)?;
        self.bulk_sends(ops)
    }

    fn drive(&mut self, run: &mut dyn FnMut(&dyn Sink) -> Outcome) -> Result<Outcome> {
        Ok(run(&self.sink()))
    }

    fn latest(&mut self, chat: u64, n: usize) -> Result<usize> {
        let (a, b) = chat_users(chat);
        let chat = ChatId::direct(UserId(a), UserId(b));
        let messages = self.engine().history(UserId(a), chat, History::Latest(n))?;
        std::hint::black_box(messages.last().map(|m| m.message.body.len()));
        Ok(messages.len())
    }

    fn inbox(&mut self, user: u64, n: usize) -> Result<usize> {
        // A device that never marked anything delivered: its whole inbox is its backlog.
        let mut device = self.engine().subscribe(UserId(user), DeviceId(1))?;
        let mut found = 0;
        while found < n {
            match device.try_next()? {
                Some(Event::Message { message, .. }) => {
                    std::hint::black_box(message.message.body.len());
                    found += 1;
                }
                Some(_) => {}
                None => break,
            }
        }
        Ok(found)
    }

    fn expire(&mut self, cutoff_ms: u64) -> Result<()> {
        let retention = self.engine().config().retention.as_millis() as u64;
        self.engine().expire(Timestamp(cutoff_ms + retention))?;
        Ok(())
    }

    fn crash_safe(&mut self) -> Result<()> {
        // `Os` sends return once their records are written to the OS.
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.engine().close()?;
        Ok(())
    }
}
