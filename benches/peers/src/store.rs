//! The shape every store takes in the harness, and the two ways producers reach one.
//!
//! Missive is driven the way an application drives it: each producer thread calls
//! [`Engine::send`](missive::Engine::send) and waits; the engine's own group commit batches the
//! waiters. The peers are single-writer storage engines (SQLite and redb take one write
//! transaction at a time; fjall and RocksDB take concurrent batches but sync each one), so each
//! gets what an application would build in front of it: a *group-commit writer* thread that
//! drains whatever the producers have queued (at most [`BATCH_OPS_MAX`]) into one transaction,
//! commits it with the workload's durability, then acknowledges each producer. Every store thus
//! gets batching; the peers' batches are one transaction each.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use crossbeam::channel;

use crate::spec::Op;

/// Most operations one group commit of a peer holds.
pub const BATCH_OPS_MAX: usize = 1024;

/// Something producers submit operations to, from many threads at once.
pub trait Sink: Sync {
    /// Submits `op` from producer `producer` and returns once it is stored as durably as the
    /// current phase asks.
    fn submit(&self, producer: usize, op: Op) -> Result<()>;
}

/// A store under test.
pub trait Store {
    /// Its name in the tables.
    fn name(&self) -> &'static str;
    /// Switches between fsync per commit (`true`) and none.
    fn set_durable(&mut self, durable: bool) -> Result<()>;
    /// Creates groups `0..count` with [`crate::spec::group_members`] (not timed).
    fn create_groups(&mut self, count: u64) -> Result<()>;
    /// Stores `ops` as a bulk load, buffered (the crash dataset).
    fn bulk(&mut self, ops: &[Op]) -> Result<()>;
    /// Runs `run` with a [`Sink`] the producers submit to.
    fn drive(&mut self, run: &mut dyn FnMut(&dyn Sink) -> Outcome) -> Result<Outcome>;
    /// The newest `n` messages of 1:1 chat `chat`, read as its first user; returns how many.
    fn latest(&mut self, chat: u64, n: usize) -> Result<usize>;
    /// The first `n` undelivered messages of `user`, bodies included; returns how many.
    fn inbox(&mut self, user: u64, n: usize) -> Result<usize>;
    /// Deletes every message stored before `cutoff_ms` (and its inbox entries).
    fn expire(&mut self, cutoff_ms: u64) -> Result<()>;
    /// Makes everything written so far survive a process crash (redb's non-durable commits do
    /// not until a durable one follows).
    fn crash_safe(&mut self) -> Result<()>;
    /// Closes cleanly.
    fn close(self: Box<Self>) -> Result<()>;
}

/// The single-writer side of a peer: the group-commit writer thread owns it while producers run.
pub trait Backend: Send {
    /// Stores `ops` in one transaction, fsynced before returning if `durable`.
    fn commit(&mut self, ops: &[Op], durable: bool) -> Result<()>;
    /// See [`Store::create_groups`].
    fn create_groups(&mut self, count: u64) -> Result<()>;
    /// See [`Store::latest`].
    fn latest(&mut self, chat: u64, n: usize) -> Result<usize>;
    /// See [`Store::inbox`].
    fn inbox(&mut self, user: u64, n: usize) -> Result<usize>;
    /// See [`Store::expire`].
    fn expire(&mut self, cutoff_ms: u64) -> Result<()>;
    /// See [`Store::crash_safe`].
    fn crash_safe(&mut self) -> Result<()>;
    /// See [`Store::close`].
    fn close(self: Box<Self>) -> Result<()>;
}

/// What the producers of one phase did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Operations acknowledged.
    pub ops: u64,
    /// Operations refused (should be none).
    pub errors: u64,
    /// Wall time of the phase.
    pub elapsed: Duration,
    /// Ack latency of every operation, ns.
    pub latencies_ns: Vec<u64>,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

impl Outcome {
    /// Operations per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A peer: a [`Backend`] behind a group-commit writer.
pub struct Peer {
    name: &'static str,
    backend: Option<Box<dyn Backend>>,
    durable: bool,
}

impl Peer {
    /// Wraps `backend`, starting buffered.
    pub fn new(name: &'static str, backend: Box<dyn Backend>) -> Peer {
        Peer {
            name,
            backend: Some(backend),
            durable: false,
        }
    }

    fn backend(&mut self) -> &mut dyn Backend {
        // Invariant: only `close` takes the backend, and it consumes the peer.
        self.backend
            .as_deref_mut()
            .expect("the backend is present until close")
    }
}

struct Request {
    producer: usize,
    op: Op,
}

struct GroupCommit {
    requests: channel::Sender<Request>,
    acks: Vec<channel::Receiver<std::result::Result<(), String>>>,
}

impl Sink for GroupCommit {
    fn submit(&self, producer: usize, op: Op) -> Result<()> {
        self.requests
            .send(Request { producer, op })
            .map_err(|_| anyhow!("the writer stopped"))?;
        match self.acks[producer].recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow!(e)),
            Err(_) => Err(anyhow!("the writer stopped")),
        }
    }
}

impl Store for Peer {
    fn name(&self) -> &'static str {
        self.name
    }

    fn set_durable(&mut self, durable: bool) -> Result<()> {
        self.durable = durable;
        Ok(())
    }

    fn create_groups(&mut self, count: u64) -> Result<()> {
        self.backend().create_groups(count)
    }

    fn bulk(&mut self, ops: &[Op]) -> Result<()> {
        for chunk in ops.chunks(BATCH_OPS_MAX) {
            self.backend().commit(chunk, false)?;
        }
        Ok(())
    }

    fn drive(&mut self, run: &mut dyn FnMut(&dyn Sink) -> Outcome) -> Result<Outcome> {
        let durable = self.durable;
        let backend = self.backend();
        let producers = crate::spec::PRODUCERS;
        let (requests, queue) = channel::bounded::<Request>(producers * 2);
        let (ack_senders, acks): (Vec<_>, Vec<_>) = (0..producers)
            .map(|_| channel::bounded::<std::result::Result<(), String>>(1))
            .unzip();
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || {
                let mut batch: Vec<Request> = Vec::with_capacity(BATCH_OPS_MAX);
                let mut ops: Vec<Op> = Vec::with_capacity(BATCH_OPS_MAX);
                while let Ok(first) = queue.recv() {
                    batch.push(first);
                    batch.extend(queue.try_iter().take(BATCH_OPS_MAX - 1));
                    ops.extend(batch.iter().map(|r| r.op.clone()));
                    let result = backend.commit(&ops, durable).map_err(|e| format!("{e:#}"));
                    ops.clear();
                    for request in batch.drain(..) {
                        // A producer that gave up is not waiting.
                        let _ = ack_senders[request.producer].send(result.clone());
                    }
                }
            });
            let sink = GroupCommit { requests, acks };
            let outcome = run(&sink);
            drop(sink);
            writer
                .join()
                .map_err(|_| anyhow!("the group-commit writer panicked"))?;
            Ok(outcome)
        })
    }

    fn latest(&mut self, chat: u64, n: usize) -> Result<usize> {
        self.backend().latest(chat, n)
    }

    fn inbox(&mut self, user: u64, n: usize) -> Result<usize> {
        self.backend().inbox(user, n)
    }

    fn expire(&mut self, cutoff_ms: u64) -> Result<()> {
        self.backend().expire(cutoff_ms)
    }

    fn crash_safe(&mut self) -> Result<()> {
        self.backend().crash_safe()
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        match self.backend.take() {
            Some(backend) => backend.close(),
            None => Ok(()),
        }
    }
}

/// Runs `producers` threads against `sink`; producer `p` submits what `stream(p)` yields until
/// it ends or `deadline` passes. Records every ack latency.
pub fn run_producers<F, I>(
    sink: &dyn Sink,
    producers: usize,
    deadline: Option<Instant>,
    stream: F,
) -> Outcome
where
    F: Fn(usize) -> I + Sync,
    I: Iterator<Item = Op>,
{
    let barrier = std::sync::Barrier::new(producers + 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..producers)
            .map(|p| {
                let (barrier, stream) = (&barrier, &stream);
                scope.spawn(move || {
                    let ops = stream(p);
                    barrier.wait();
                    let mut outcome = Outcome::default();
                    for op in ops {
                        let started = Instant::now();
                        if deadline.is_some_and(|d| started >= d) {
                            break;
                        }
                        match sink.submit(p, op) {
                            Ok(()) => {
                                outcome.ops += 1;
                                outcome
                                    .latencies_ns
                                    .push(missive_benches::stats::nanos(started.elapsed()));
                            }
                            Err(e) => {
                                outcome.errors += 1;
                                outcome.first_error.get_or_insert_with(|| format!("{e:#}"));
                                if outcome.errors > 100 {
                                    break;
                                }
                            }
                        }
                    }
                    outcome
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let mut total = Outcome::default();
        for handle in handles {
            let outcome = handle.join().expect("a producer panicked");
            total.ops += outcome.ops;
            total.errors += outcome.errors;
            total.latencies_ns.extend(outcome.latencies_ns);
            if total.first_error.is_none() {
                total.first_error = outcome.first_error;
            }
        }
        total.elapsed = started.elapsed();
        total
    })
}
