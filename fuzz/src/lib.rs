//! Fuzz targets for Missive's on-disk format: `segment` decodes arbitrary bytes as a segment,
//! `segment_structured` damages valid segments built from a plan, and `lz4_batch` feeds arbitrary
//! lz4 blocks to the decompressor behind a valid checksum. The checks live in `checks.rs`, shared
//! with the plain `cargo test` that replays the corpus (`log/tests/fuzz_corpus.rs`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

mod checks;

pub use checks::*;

/// The system allocator, noting the largest single allocation; `lz4_batch` uses it to bound what
/// decoding allocates.
pub struct LargestAlloc(AtomicUsize);

impl LargestAlloc {
    /// An allocator that has seen nothing yet.
    pub const fn new() -> LargestAlloc {
        LargestAlloc(AtomicUsize::new(0))
    }

    /// Runs `f` and returns the size of the largest allocation it made (fuzz targets run on one
    /// thread, so nothing else is counted).
    pub fn largest_during(&self, f: impl FnOnce()) -> usize {
        self.0.store(0, Ordering::Relaxed);
        f();
        self.0.load(Ordering::Relaxed)
    }
}

impl Default for LargestAlloc {
    fn default() -> LargestAlloc {
        LargestAlloc::new()
    }
}

// SAFETY: every call is forwarded unchanged to `System`; only the sizes are recorded.
unsafe impl GlobalAlloc for LargestAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.0.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.0.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as for `dealloc`, and the caller's contract for `realloc` is `System.realloc`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
