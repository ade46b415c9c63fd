//! The locks of the group-commit handoff ([`ticket`](crate::ticket)), switchable to [loom]'s
//! under `cfg(loom)` so that `tests/loom_ticket.rs` checks every interleaving of the real code.
//!
//! The same shape as tokio's `src/loom/`. Normally these are parking_lot's types themselves,
//! re-exported: nothing changes in behaviour or speed. Under loom they are thin wrappers giving
//! loom's `std`-like locks parking_lot's API: `lock` cannot fail (under loom a poisoned lock means
//! a modelled thread already panicked) and `Condvar::wait` takes the guard by `&mut`.
//!
//! The `Arc` holding a completion stays `std`'s in both builds: its count is not part of the
//! handoff (the writer and every ticket hold their own reference until they are done).
//!
//! [loom]: https://docs.rs/loom

#[cfg(not(loom))]
pub(crate) use parking_lot::{Condvar, Mutex};

#[cfg(loom)]
pub(crate) use self::modelled::{Condvar, Mutex};

#[cfg(loom)]
mod modelled {
    use std::ops::{Deref, DerefMut};

    /// loom's mutex with parking_lot's infallible `lock`.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            // A poisoned lock means another modelled thread panicked: the test has failed already.
            MutexGuard(Some(self.0.lock().unwrap()))
        }
    }

    /// A held [`Mutex`]. The guard is `None` only inside [`Condvar::wait`].
    #[derive(Debug)]
    pub(crate) struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;

        fn deref(&self) -> &T {
            self.0.as_ref().expect("held outside Condvar::wait")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().expect("held outside Condvar::wait")
        }
    }

    /// loom's condition variable with parking_lot's `wait(&mut guard)`.
    #[derive(Debug, Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        /// Releases the lock, blocks until notified, and takes the lock again.
        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let held = guard.0.take().expect("held outside Condvar::wait");
            guard.0 = Some(self.0.wait(held).unwrap());
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}
