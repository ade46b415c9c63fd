//! A loom model of the group-commit handoff (`src/ticket.rs`): the shard writer completes a
//! batch while appenders wait on its tickets, blocking (`wait`) or as futures (`poll`, wakers).
//!
//! In every interleaving loom can reach, each waiter sees exactly the result the writer set (its
//! own LSN, the batch's position, or the error), once; no wake-up is lost (a lost one leaves a
//! waiter blocked, which loom reports as a deadlock); a waker registered by a pending poll is
//! woken exactly once, however often the ticket was polled with it.
//!
//! Runs only under loom, in release mode:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=/work/target-loom cargo test -p missive-log --release --test loom_ticket`
#![cfg(loom)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use missive_log::loom_hooks::Batch;
use missive_log::{Appended, BatchPos, Error, Lsn, ShardId};

const POS: BatchPos = BatchPos {
    shard: ShardId(3),
    segment: 7,
    offset: 4096,
};

/// What the append at `index` of a batch starting at LSN 10 must resolve to.
fn appended(index: u64) -> Appended {
    Appended {
        lsn: Lsn(10 + index),
        batch: POS,
    }
}

#[test]
fn blocking_waiters_see_the_writers_result() {
    loom::model(|| {
        let batch = Batch::new();
        let (first, third) = (batch.ticket(0), batch.ticket(2));
        let writer = thread::spawn(move || batch.complete(Ok((Lsn(10), POS))));
        let other = thread::spawn(move || first.wait());
        assert_eq!(third.wait().unwrap(), appended(2));
        assert_eq!(other.join().unwrap().unwrap(), appended(0));
        writer.join().unwrap();
    });
}

#[test]
fn a_failed_batch_fails_every_waiter() {
    loom::model(|| {
        let batch = Batch::new();
        let (blocking, polled) = (batch.ticket(0), batch.ticket(1));
        let writer = thread::spawn(move || batch.complete(Err(Error::Closed)));
        let other = thread::spawn(move || loom::future::block_on(polled));
        assert!(matches!(blocking.wait(), Err(Error::Closed)));
        assert!(matches!(other.join().unwrap(), Err(Error::Closed)));
        writer.join().unwrap();
    });
}

#[test]
fn blocking_and_polled_waiters_of_one_batch_all_resolve() {
    loom::model(|| {
        let batch = Batch::new();
        let (blocking, polled) = (batch.ticket(0), batch.ticket(1));
        let writer = thread::spawn(move || batch.complete(Ok((Lsn(10), POS))));
        let other = thread::spawn(move || loom::future::block_on(polled));
        assert_eq!(blocking.wait().unwrap(), appended(0));
        assert_eq!(other.join().unwrap().unwrap(), appended(1));
        writer.join().unwrap();
    });
}

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

#[test]
fn a_pending_poll_is_woken_exactly_once_and_then_ready() {
    loom::model(|| {
        let batch = Batch::new();
        let mut ticket = batch.ticket(4);
        let writer = thread::spawn(move || batch.complete(Ok((Lsn(10), POS))));
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        // Polled twice with the same waker before waiting: it must be registered once.
        let mut pending = 0;
        let mut result = None;
        for _ in 0..2 {
            match Pin::new(&mut ticket).poll(&mut cx) {
                Poll::Ready(ready) => {
                    result = Some(ready);
                    break;
                }
                Poll::Pending => pending += 1,
            }
        }
        let result = match result {
            Some(result) => result,
            None => {
                // Pending: the writer has not completed yet, and will wake us.
                while counter.0.load(Ordering::Acquire) == 0 {
                    thread::yield_now();
                }
                match Pin::new(&mut ticket).poll(&mut cx) {
                    Poll::Ready(ready) => ready,
                    Poll::Pending => panic!("woken, yet still pending"),
                }
            }
        };
        assert_eq!(result.unwrap(), appended(4));
        assert_eq!(ticket.try_result().unwrap().unwrap(), appended(4));
        writer.join().unwrap();
        let woken = counter.0.load(Ordering::Acquire);
        assert_eq!(
            woken,
            usize::from(pending > 0),
            "polled pending {pending} times"
        );
    });
}
