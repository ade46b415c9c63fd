//! Handles: the pointers C holds, and how a freed or foreign pointer is caught before it is used.
//!
//! Every object Missive hands out is recorded, by address, in a registry of its type. A call
//! first looks its handle up there, under the registry's lock, and only then dereferences it; a
//! free removes it before releasing the memory. So a double free, a use after free and a handle
//! of the wrong type are `MISSIVE_ERR_INVALID_HANDLE` and never touch freed memory: the one
//! case no check can catch is a stale pointer whose address a *new* object of the same type has
//! since been given. Each object also carries a magic number, checked on use and cleared on free.
//!
//! Engines and subscriptions are reference counted (`Arc`): a call on another thread that looked
//! the handle up before the free finishes safely, and the memory goes with the last reference.
//! Lists are plain boxes, owned by C until their `_free`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::result::{Failure, FfiResult, missive_result};

/// The live objects of one type, by address.
pub(crate) struct Registry {
    what: &'static str,
    live: Mutex<BTreeSet<usize>>,
}

impl Registry {
    pub(crate) const fn new(what: &'static str) -> Registry {
        Registry {
            what,
            live: Mutex::new(BTreeSet::new()),
        }
    }

    fn invalid(&self) -> Failure {
        Failure::new(
            missive_result::MISSIVE_ERR_INVALID_HANDLE,
            format!(
                "not a live {} (already freed, or never returned by Missive)",
                self.what
            ),
        )
    }

    /// Live objects of this type now (for tests: a leak shows here).
    pub(crate) fn len(&self) -> usize {
        self.live.lock().len()
    }
}

/// An object behind a handle.
pub(crate) trait Handle: Sized + 'static {
    /// Its magic number while alive.
    const MAGIC: u64;
    /// Its registry.
    fn registry() -> &'static Registry;
    /// Its magic-number field.
    fn magic(&self) -> &AtomicU64;
}

/// A magic-number field for a new object.
pub(crate) fn magic<T: Handle>() -> AtomicU64 {
    AtomicU64::new(T::MAGIC)
}

/// Hands a reference-counted object to C.
pub(crate) fn share<T: Handle>(object: T) -> *mut T {
    let ptr = Arc::into_raw(Arc::new(object)).cast_mut();
    let fresh = T::registry().live.lock().insert(ptr as usize);
    assert!(fresh, "a live address was handed out twice");
    ptr
}

/// The object behind a handle from [`share`], if it is live.
pub(crate) fn shared<T: Handle>(ptr: *const T, name: &str) -> FfiResult<Arc<T>> {
    if ptr.is_null() {
        return Err(Failure::null(name));
    }
    let registry = T::registry();
    let live = registry.live.lock();
    if !live.contains(&(ptr as usize)) {
        return Err(registry.invalid());
    }
    // SAFETY: the address is registered, so it came from `Arc::into_raw` in `share` and the
    // registry's reference keeps it alive; `release` cannot drop that reference while we hold the
    // lock. Taking another reference first makes the `Arc` we build our own.
    let object = unsafe {
        Arc::increment_strong_count(ptr);
        Arc::from_raw(ptr)
    };
    drop(live);
    if object.magic().load(Ordering::Acquire) != T::MAGIC {
        return Err(registry.invalid());
    }
    Ok(object)
}

/// Takes back the registry's reference to a handle from [`share`]: the caller drops it (the
/// object goes once no call is using it). Fails, touching nothing, if the handle is not live.
pub(crate) fn release<T: Handle>(ptr: *const T, name: &str) -> FfiResult<Arc<T>> {
    if ptr.is_null() {
        return Err(Failure::null(name));
    }
    let registry = T::registry();
    let mut live = registry.live.lock();
    if !live.remove(&(ptr as usize)) {
        return Err(registry.invalid());
    }
    drop(live);
    // SAFETY: the address was registered, so it came from `Arc::into_raw` in `share`; removing
    // it under the lock made the registry's reference ours alone to take back.
    let object = unsafe { Arc::from_raw(ptr) };
    object.magic().store(0, Ordering::Release);
    Ok(object)
}

/// Hands a boxed object to C; `header` is the pointer C gets, which must be the address of the
/// box (the object's first field, in a `#[repr(C)]` struct).
pub(crate) fn give<T: Handle>(object: Box<T>) -> *mut T {
    let ptr = Box::into_raw(object);
    let fresh = T::registry().live.lock().insert(ptr as usize);
    assert!(fresh, "a live address was handed out twice");
    ptr
}

/// Takes back a box from [`give`]; the caller drops it. Fails, touching nothing, if the pointer
/// is not live.
pub(crate) fn take<T: Handle>(ptr: *mut T, name: &str) -> FfiResult<Box<T>> {
    if ptr.is_null() {
        return Err(Failure::null(name));
    }
    let registry = T::registry();
    let mut live = registry.live.lock();
    if !live.remove(&(ptr as usize)) {
        return Err(registry.invalid());
    }
    drop(live);
    // SAFETY: the address was registered, so it came from `Box::into_raw` in `give`, and
    // removing it under the lock made it ours alone.
    let object = unsafe { Box::from_raw(ptr) };
    let alive = object.magic().swap(0, Ordering::AcqRel);
    assert_eq!(alive, T::MAGIC, "a registered object lost its magic number");
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Thing {
        magic: AtomicU64,
        value: u32,
    }

    static THINGS: Registry = Registry::new("thing");

    impl Handle for Thing {
        const MAGIC: u64 = 0x7468_696e_6700_0001;
        fn registry() -> &'static Registry {
            &THINGS
        }
        fn magic(&self) -> &AtomicU64 {
            &self.magic
        }
    }

    fn thing(value: u32) -> Thing {
        Thing {
            magic: magic::<Thing>(),
            value,
        }
    }

    #[test]
    fn shared_handles_refuse_a_double_free_and_a_use_after_free() {
        let ptr = share(thing(7));
        assert_eq!(shared(ptr, "t").unwrap().value, 7);
        let held = shared(ptr, "t").unwrap();
        drop(release(ptr, "t").unwrap());
        // A call that looked it up before the free still holds it.
        assert_eq!(held.value, 7);
        let code = |r: FfiResult<Arc<Thing>>| r.err().map(|f| f.code);
        assert_eq!(
            code(shared(ptr, "t")),
            Some(missive_result::MISSIVE_ERR_INVALID_HANDLE)
        );
        assert_eq!(
            code(release(ptr, "t")),
            Some(missive_result::MISSIVE_ERR_INVALID_HANDLE)
        );
        assert_eq!(
            code(shared(std::ptr::null(), "t")),
            Some(missive_result::MISSIVE_ERR_NULL_ARGUMENT)
        );
        // A made-up address is never dereferenced.
        assert_eq!(
            code(shared(0x10 as *const Thing, "t")),
            Some(missive_result::MISSIVE_ERR_INVALID_HANDLE)
        );
    }

    #[test]
    fn boxes_are_taken_back_once() {
        let ptr = give(Box::new(thing(9)));
        assert_eq!(take(ptr, "t").unwrap().value, 9);
        let again = take(ptr, "t").err().map(|f| f.code);
        assert_eq!(again, Some(missive_result::MISSIVE_ERR_INVALID_HANDLE));
    }
}
