//! Arrays Missive allocates for C: a small public header (`items`, `len`) at the start of a
//! private allocation that also owns whatever the items point into.

use std::sync::atomic::AtomicU64;

use crate::handle::{self, Handle};
use crate::result::FfiResult;

/// cbindgen:ignore
/// One array handed to C. `#[repr(C)]` with the public header first, so the header's address is
/// the allocation's: C holds `*mut H`, and `_free` turns it back into the whole.
#[repr(C)]
pub(crate) struct Owned<H, I, K> {
    header: H,
    magic: AtomicU64,
    items: Vec<I>,
    /// What the items' pointers point into.
    keep: K,
}

/// A header built from the items' address and count.
pub(crate) trait Header {
    type Item;
    fn new(items: *const Self::Item, len: usize) -> Self;
}

impl<H, I, K> Owned<H, I, K>
where
    H: Header<Item = I>,
    Owned<H, I, K>: Handle,
{
    /// Hands `items` (pointing into `keep`) to C.
    pub(crate) fn give(items: Vec<I>, keep: K) -> *mut H {
        let header = H::new(
            if items.is_empty() {
                std::ptr::null()
            } else {
                items.as_ptr()
            },
            items.len(),
        );
        let owned = Box::new(Owned {
            header,
            magic: handle::magic::<Self>(),
            items,
            keep,
        });
        handle::give(owned).cast::<H>()
    }

    /// Frees an array from [`Owned::give`]; a pointer that is not a live one is refused.
    pub(crate) fn free(ptr: *mut H, name: &str) -> FfiResult {
        let owned = handle::take(ptr.cast::<Self>(), name)?;
        drop((owned.items, owned.keep));
        Ok(())
    }
}

impl<H, I, K> Owned<H, I, K> {
    pub(crate) fn magic_field(&self) -> &AtomicU64 {
        &self.magic
    }
}

/// Implements [`Handle`] for one `Owned` array type with its own registry.
macro_rules! owned_handle {
    ($owned:ty, $what:literal, $magic:literal) => {
        impl $crate::handle::Handle for $owned {
            const MAGIC: u64 = u64::from_le_bytes(*$magic);
            fn registry() -> &'static $crate::handle::Registry {
                static REGISTRY: $crate::handle::Registry = $crate::handle::Registry::new($what);
                &REGISTRY
            }
            fn magic(&self) -> &std::sync::atomic::AtomicU64 {
                self.magic_field()
            }
        }
    };
}

pub(crate) use owned_handle;
