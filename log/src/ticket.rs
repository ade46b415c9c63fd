//! Waiting for an append: the group-commit handoff between appenders and a shard writer.
//!
//! Every append in one batch shares one [`Completion`], so a batch of 1,000 appends costs one
//! allocation and one wake-up broadcast, not 1,000 of each. A ticket is the shared completion plus
//! the append's index in the batch; its LSN is the batch's first LSN plus that index.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::ids::{Lsn, ShardId};
use crate::sync::{Condvar, Mutex};

/// Where a batch lives: enough to read it back with [`Log::read_batch`](crate::Log::read_batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchPos {
    /// The shard.
    pub shard: ShardId,
    /// The segment, named by its first LSN.
    pub segment: u64,
    /// The batch's byte offset in the segment.
    pub offset: u64,
}

/// Where a record lives: enough to read it, and the records after it in its batch, with
/// [`Log::read_entries`](crate::Log::read_entries) without touching the rest of the batch.
///
/// This is what an index remembers. A reader of a whole batch gets the offset from
/// [`Entries::body_offset`](crate::batch::Entries::body_offset) before taking the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordPos {
    /// The batch holding the record.
    pub batch: BatchPos,
    /// Where the record starts in the batch's decoded (uncompressed) body.
    pub body_offset: u32,
    /// The record's LSN.
    pub lsn: Lsn,
}

/// A durable append: its LSN and the batch that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The record's position in its shard.
    pub lsn: Lsn,
    /// The batch it was written in.
    pub batch: BatchPos,
}

/// What the writer reports for a whole batch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchDone {
    pub(crate) first_lsn: Lsn,
    pub(crate) batch: BatchPos,
}

#[derive(Debug, Default)]
struct State {
    result: Option<Result<BatchDone>>,
    wakers: Vec<Waker>,
}

/// The shared outcome of one batch.
#[derive(Debug, Default)]
pub(crate) struct Completion {
    state: Mutex<State>,
    done: Condvar,
}

impl Completion {
    pub(crate) fn new() -> Completion {
        Completion::default()
    }

    /// Publishes the batch's outcome and wakes every waiter.
    ///
    /// # Panics
    /// If called twice: a batch completes exactly once.
    pub(crate) fn complete(&self, result: Result<BatchDone>) {
        let wakers = {
            let mut state = self.state.lock();
            assert!(state.result.is_none(), "a batch completes once");
            state.result = Some(result);
            std::mem::take(&mut state.wakers)
        };
        self.done.notify_all();
        for waker in wakers {
            waker.wake();
        }
    }
}

fn resolve(result: &Result<BatchDone>, index: u32) -> Result<Appended> {
    result.clone().map(|done| Appended {
        lsn: Lsn(done.first_lsn.0 + u64::from(index)),
        batch: done.batch,
    })
}

/// The promise of one append. Wait for it with [`AppendTicket::wait`], or `.await` it: it is a
/// plain [`Future`] that needs no particular runtime.
///
/// Dropping a ticket does not cancel the append; it only stops waiting.
#[derive(Debug)]
#[must_use = "an append is acknowledged only when its ticket resolves"]
pub struct AppendTicket {
    completion: Arc<Completion>,
    index: u32,
}

impl AppendTicket {
    pub(crate) fn new(completion: Arc<Completion>, index: u32) -> AppendTicket {
        AppendTicket { completion, index }
    }

    /// Blocks until the append is acknowledged under the log's durability level (or failed).
    pub fn wait(self) -> Result<Appended> {
        let mut state = self.completion.state.lock();
        loop {
            if let Some(result) = &state.result {
                return resolve(result, self.index);
            }
            self.completion.done.wait(&mut state);
        }
    }

    /// The outcome if it is already known.
    pub fn try_result(&self) -> Option<Result<Appended>> {
        let state = self.completion.state.lock();
        state
            .result
            .as_ref()
            .map(|result| resolve(result, self.index))
    }
}

impl Future for AppendTicket {
    type Output = Result<Appended, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.completion.state.lock();
        if let Some(result) = &state.result {
            return Poll::Ready(resolve(result, self.index));
        }
        if !state.wakers.iter().any(|waker| waker.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Hooks for the loom model of this handoff (`tests/loom_ticket.rs`), built only under
/// `cfg(loom)`: the writer's side of one batch, which the log otherwise keeps to itself.
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_hooks {
    use super::*;

    /// One batch's completion, as the shard writer holds it.
    #[derive(Clone, Debug, Default)]
    pub struct Batch(Arc<Completion>);

    impl Batch {
        /// A batch not yet written.
        pub fn new() -> Batch {
            Batch::default()
        }

        /// The ticket of the append at `index` in the batch.
        pub fn ticket(&self, index: u32) -> AppendTicket {
            AppendTicket::new(Arc::clone(&self.0), index)
        }

        /// What the writer does once the batch is written (or failed): the batch's first LSN
        /// and position, or the error.
        pub fn complete(&self, result: Result<(Lsn, BatchPos)>) {
            self.0
                .complete(result.map(|(first_lsn, batch)| BatchDone { first_lsn, batch }));
        }
    }
}
