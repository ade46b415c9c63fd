//! Checking what C hands in: NULL pointers, lengths, UTF-8; and writing out-parameters only once
//! a call has succeeded.

use std::ffi::c_char;
use std::ptr::NonNull;

use crate::result::{Failure, FfiResult, missive_result};

/// A required out-parameter, checked for NULL before the call does anything. Written at most once,
/// at the very end of a successful call.
pub(crate) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// Checks `ptr` for NULL.
    ///
    /// # Safety
    /// A non-NULL `ptr` must be valid for writing one `T` (aligned, writable) until
    /// [`Out::write`] returns.
    pub(crate) unsafe fn new(ptr: *mut T, name: &str) -> FfiResult<Out<T>> {
        NonNull::new(ptr)
            .map(Out)
            .ok_or_else(|| Failure::null(name))
    }

    /// An optional out-parameter: `None` if `ptr` is NULL (the caller does not want it).
    ///
    /// # Safety
    /// As [`Out::new`].
    pub(crate) unsafe fn optional(ptr: *mut T) -> Option<Out<T>> {
        NonNull::new(ptr).map(Out)
    }

    /// Writes the answer. The old contents are not dropped: they are C memory, perhaps
    /// uninitialized.
    pub(crate) fn write(self, value: T) {
        // SAFETY: `new`'s contract: the pointer is non-NULL, aligned and writable.
        unsafe { self.0.as_ptr().write(value) }
    }
}

/// `len` elements at `ptr`, after checking `len <= max` (else `too_long`'s failure) and that a
/// non-empty array is not NULL. An empty array may be NULL.
///
/// # Safety
/// A non-NULL `ptr` must be valid for reading `len` `T`s (when `len <= max`), and the memory must
/// not change during the call.
pub(crate) unsafe fn array<'a, T>(
    ptr: *const T,
    len: usize,
    max: usize,
    name: &str,
    too_long: impl FnOnce() -> Failure,
) -> FfiResult<&'a [T]> {
    if len > max {
        return Err(too_long());
    }
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::null(name));
    }
    if !ptr.is_aligned() {
        return Err(Failure::invalid(format!("`{name}` is not aligned")));
    }
    // `max` is small for every caller, so the byte length fits `isize`.
    assert!(len.saturating_mul(size_of::<T>()) <= isize::MAX as usize);
    // SAFETY: non-NULL, aligned, valid for `len` reads by the caller's promise; the size fits
    // `isize` (checked above).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The 16 bytes of a `client_msg_id`.
///
/// # Safety
/// A non-NULL `ptr` must be valid for reading 16 bytes.
pub(crate) unsafe fn client_msg_id(ptr: *const u8) -> FfiResult<[u8; 16]> {
    if ptr.is_null() {
        return Err(Failure::null("client_msg_id"));
    }
    let mut id = [0u8; 16];
    // SAFETY: `ptr` is valid for 16 bytes (the caller's promise); `id` is a fresh local array.
    unsafe { std::ptr::copy_nonoverlapping(ptr, id.as_mut_ptr(), 16) };
    Ok(id)
}

/// A NUL-terminated UTF-8 string of at most `max` bytes. At most `max + 1` bytes are read
/// looking for the NUL, so a string that is too long (or lacks its NUL) is refused without
/// reading on.
///
/// # Safety
/// A non-NULL `ptr` must point to a NUL-terminated string (or at least `max + 1` readable bytes)
/// that does not change during the call.
pub(crate) unsafe fn text<'a>(ptr: *const c_char, name: &str, max: usize) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(Failure::null(name));
    }
    let bytes = ptr.cast::<u8>();
    // SAFETY: every byte up to the NUL is readable (the caller's promise), and the loop stops at
    // the first NUL or after `max + 1` bytes.
    let len = (0..=max).find(|&i| unsafe { bytes.add(i).read() } == 0);
    let Some(len) = len else {
        return Err(Failure::invalid(format!(
            "`{name}` is longer than {max} bytes"
        )));
    };
    // SAFETY: the `len` bytes before the NUL were just read, so they are readable.
    let bytes = unsafe { std::slice::from_raw_parts(bytes, len) };
    std::str::from_utf8(bytes).map_err(|error| {
        Failure::new(
            missive_result::MISSIVE_ERR_INVALID_UTF8,
            format!("`{name}` is not UTF-8: {error}"),
        )
    })
}
