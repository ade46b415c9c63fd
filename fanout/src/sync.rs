//! The synchronisation primitives of the hub, switchable to [loom]'s under `cfg(loom)`.
//!
//! The same shape as tokio's `src/loom/`: every module of this crate takes its `Arc`, atomics,
//! `Mutex`, `RwLock` and `Condvar` from here, never from `std` or `parking_lot` directly, so a loom
//! build checks every interleaving of the real code. The API is the common subset: `lock`, `read`
//! and `write` cannot fail (parking_lot does not poison; under loom a poisoned lock means a test
//! already panicked), and the condition variable takes and returns the guard by value as `std`'s
//! does.
//!
//! The user-supplied clock and presence listener are `std::sync::Arc<dyn Fn ..>` in both builds:
//! they are immutable once built, so loom has nothing to model in them.
//!
//! [loom]: https://docs.rs/loom

#[cfg(not(loom))]
mod imp {
    use std::time::Instant;

    pub(crate) use parking_lot::{Mutex, MutexGuard, RwLock};
    pub(crate) use std::sync::Arc;
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

    /// A condition variable over [`Mutex`] (parking_lot's, with `std`'s by-value guard API).
    #[derive(Default)]
    pub(crate) struct Condvar(parking_lot::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Condvar {
            Condvar(parking_lot::Condvar::new())
        }

        /// Blocks until notified (or spuriously woken).
        pub(crate) fn wait<'a, T>(&self, mut guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0.wait(&mut guard);
            guard
        }

        /// Blocks until notified, spuriously woken, or `deadline` passes.
        pub(crate) fn wait_until<'a, T>(
            &self,
            mut guard: MutexGuard<'a, T>,
            deadline: Instant,
        ) -> MutexGuard<'a, T> {
            let _timed_out = self.0.wait_until(&mut guard, deadline);
            guard
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }
    }
}

#[cfg(loom)]
mod imp {
    use std::time::Instant;

    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use loom::sync::{Arc, MutexGuard};

    /// loom's mutex with parking_lot's infallible `lock`.
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Mutex<T> {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            // A poisoned lock means another modelled thread panicked: the test has failed already.
            self.0.lock().unwrap()
        }
    }

    /// loom's reader-writer lock with parking_lot's infallible `read` and `write`.
    #[derive(Debug)]
    pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub(crate) fn new(value: T) -> RwLock<T> {
            RwLock(loom::sync::RwLock::new(value))
        }

        pub(crate) fn read(&self) -> loom::sync::RwLockReadGuard<'_, T> {
            // Poisoned only after a panic in the model (see `Mutex::lock`).
            self.0.read().unwrap()
        }

        pub(crate) fn write(&self) -> loom::sync::RwLockWriteGuard<'_, T> {
            // Poisoned only after a panic in the model (see `Mutex::lock`).
            self.0.write().unwrap()
        }
    }

    /// loom's condition variable. loom has no time: a timed wait is an untimed one, so a model
    /// that loses a wake-up deadlocks and loom reports it.
    #[derive(Debug, Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Condvar {
            Condvar(loom::sync::Condvar::new())
        }

        pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            // Poisoned only after a panic in the model (see `Mutex::lock`).
            self.0.wait(guard).unwrap()
        }

        pub(crate) fn wait_until<'a, T>(
            &self,
            guard: MutexGuard<'a, T>,
            _deadline: Instant,
        ) -> MutexGuard<'a, T> {
            self.wait(guard)
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }
    }
}

pub(crate) use imp::*;
