//! Result codes, the panic boundary every exported function runs inside, and the calling thread's
//! last error message.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::args::Out;

/// What every function of the C API returns. `MISSIVE_OK` is 0; every other value is an error,
/// and then no out-parameter was written and (unless a function's comment says otherwise)
/// nothing changed. `missive_last_error_message()` then says what went wrong.
///
/// Codes 1 to 14 are the engine's error kinds; 15 and above belong to the C API itself. New codes
/// may be added at the end: treat an unknown nonzero code as an error.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum missive_result {
    /// Success: the out-parameters were written.
    MISSIVE_OK = 0,
    /// The user is not in the chat (not one of a 1:1 chat's two users, not a group member).
    MISSIVE_ERR_NOT_A_MEMBER = 1,
    /// Only a group's admins may do this.
    MISSIVE_ERR_NOT_ADMIN = 2,
    /// Only the message's sender (or, for a status, a group admin) may do this.
    MISSIVE_ERR_NOT_SENDER = 3,
    /// The group would have more members than `missive_config.group_members_max`.
    MISSIVE_ERR_GROUP_FULL = 4,
    /// No such chat or group.
    MISSIVE_ERR_NO_SUCH_CHAT = 5,
    /// No such message: never stored, expired, or deleted by retention.
    MISSIVE_ERR_NO_SUCH_MESSAGE = 6,
    /// A body or media reference is longer than the engine's configured limit.
    MISSIVE_ERR_PAYLOAD_TOO_LARGE = 7,
    /// An argument is out of range or makes no sense (the last error message says which).
    MISSIVE_ERR_INVALID_ARGUMENT = 8,
    /// The engine was closed (`missive_engine_close`), or a subscription ended because its
    /// device subscribed again.
    MISSIVE_ERR_CLOSED = 9,
    /// A failed write or fsync poisoned the storage: nothing more is acknowledged until the
    /// engine is reopened.
    MISSIVE_ERR_POISONED = 10,
    /// The disk is full; nothing already acknowledged was damaged.
    MISSIVE_ERR_STORAGE_FULL = 11,
    /// Stored data failed its checksum or structure checks.
    MISSIVE_ERR_CORRUPT = 12,
    /// Another storage (I/O) error.
    MISSIVE_ERR_STORAGE = 13,
    /// The index failed (its files, or a record it could not apply).
    MISSIVE_ERR_INDEX = 14,
    /// A pointer argument that must not be NULL was NULL.
    MISSIVE_ERR_NULL_ARGUMENT = 15,
    /// A string argument is not valid UTF-8.
    MISSIVE_ERR_INVALID_UTF8 = 16,
    /// A caller's buffer is too small for the answer.
    MISSIVE_ERR_BUFFER_TOO_SMALL = 17,
    /// Missive panicked (a bug). The call was abandoned; the engine stays usable, but report it.
    MISSIVE_ERR_PANIC = 18,
    /// `missive_subscription_next`: no event came within the timeout.
    MISSIVE_ERR_TIMEOUT = 19,
    /// A handle is not a live object of the expected type: already freed (a double free or a
    /// use after free), never returned by Missive, or a handle of another type.
    MISSIVE_ERR_INVALID_HANDLE = 20,
    /// The object is in use in a way that forbids the call: polling a subscription that
    /// delivers to a callback, or freeing a subscription from inside its own callback.
    MISSIVE_ERR_BUSY = 21,
    /// An error this version of the C API has no code for (the message says what it was).
    MISSIVE_ERR_OTHER = 22,
}

impl missive_result {
    /// Every code, in numeric order.
    /// cbindgen:ignore
    pub(crate) const ALL: [missive_result; 23] = [
        missive_result::MISSIVE_OK,
        missive_result::MISSIVE_ERR_NOT_A_MEMBER,
        missive_result::MISSIVE_ERR_NOT_ADMIN,
        missive_result::MISSIVE_ERR_NOT_SENDER,
        missive_result::MISSIVE_ERR_GROUP_FULL,
        missive_result::MISSIVE_ERR_NO_SUCH_CHAT,
        missive_result::MISSIVE_ERR_NO_SUCH_MESSAGE,
        missive_result::MISSIVE_ERR_PAYLOAD_TOO_LARGE,
        missive_result::MISSIVE_ERR_INVALID_ARGUMENT,
        missive_result::MISSIVE_ERR_CLOSED,
        missive_result::MISSIVE_ERR_POISONED,
        missive_result::MISSIVE_ERR_STORAGE_FULL,
        missive_result::MISSIVE_ERR_CORRUPT,
        missive_result::MISSIVE_ERR_STORAGE,
        missive_result::MISSIVE_ERR_INDEX,
        missive_result::MISSIVE_ERR_NULL_ARGUMENT,
        missive_result::MISSIVE_ERR_INVALID_UTF8,
        missive_result::MISSIVE_ERR_BUFFER_TOO_SMALL,
        missive_result::MISSIVE_ERR_PANIC,
        missive_result::MISSIVE_ERR_TIMEOUT,
        missive_result::MISSIVE_ERR_INVALID_HANDLE,
        missive_result::MISSIVE_ERR_BUSY,
        missive_result::MISSIVE_ERR_OTHER,
    ];

    /// The code's name as a NUL-terminated static string.
    fn name(self) -> &'static [u8] {
        use missive_result::*;
        match self {
            MISSIVE_OK => b"MISSIVE_OK\0",
            MISSIVE_ERR_NOT_A_MEMBER => b"MISSIVE_ERR_NOT_A_MEMBER\0",
            MISSIVE_ERR_NOT_ADMIN => b"MISSIVE_ERR_NOT_ADMIN\0",
            MISSIVE_ERR_NOT_SENDER => b"MISSIVE_ERR_NOT_SENDER\0",
            MISSIVE_ERR_GROUP_FULL => b"MISSIVE_ERR_GROUP_FULL\0",
            MISSIVE_ERR_NO_SUCH_CHAT => b"MISSIVE_ERR_NO_SUCH_CHAT\0",
            MISSIVE_ERR_NO_SUCH_MESSAGE => b"MISSIVE_ERR_NO_SUCH_MESSAGE\0",
            MISSIVE_ERR_PAYLOAD_TOO_LARGE => b"MISSIVE_ERR_PAYLOAD_TOO_LARGE\0",
            MISSIVE_ERR_INVALID_ARGUMENT => b"MISSIVE_ERR_INVALID_ARGUMENT\0",
            MISSIVE_ERR_CLOSED => b"MISSIVE_ERR_CLOSED\0",
            MISSIVE_ERR_POISONED => b"MISSIVE_ERR_POISONED\0",
            MISSIVE_ERR_STORAGE_FULL => b"MISSIVE_ERR_STORAGE_FULL\0",
            MISSIVE_ERR_CORRUPT => b"MISSIVE_ERR_CORRUPT\0",
            MISSIVE_ERR_STORAGE => b"MISSIVE_ERR_STORAGE\0",
            MISSIVE_ERR_INDEX => b"MISSIVE_ERR_INDEX\0",
            MISSIVE_ERR_NULL_ARGUMENT => b"MISSIVE_ERR_NULL_ARGUMENT\0",
            MISSIVE_ERR_INVALID_UTF8 => b"MISSIVE_ERR_INVALID_UTF8\0",
            MISSIVE_ERR_BUFFER_TOO_SMALL => b"MISSIVE_ERR_BUFFER_TOO_SMALL\0",
            MISSIVE_ERR_PANIC => b"MISSIVE_ERR_PANIC\0",
            MISSIVE_ERR_TIMEOUT => b"MISSIVE_ERR_TIMEOUT\0",
            MISSIVE_ERR_INVALID_HANDLE => b"MISSIVE_ERR_INVALID_HANDLE\0",
            MISSIVE_ERR_BUSY => b"MISSIVE_ERR_BUSY\0",
            MISSIVE_ERR_OTHER => b"MISSIVE_ERR_OTHER\0",
        }
    }
}

/// A failed call: its code and what to tell the caller.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: missive_result,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: missive_result, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn null(name: &str) -> Failure {
        Failure::new(
            missive_result::MISSIVE_ERR_NULL_ARGUMENT,
            format!("`{name}` is NULL"),
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(missive_result::MISSIVE_ERR_INVALID_ARGUMENT, message)
    }
}

/// The code of each engine error kind.
pub(crate) fn code_of(error: &missive::Error) -> missive_result {
    use missive::Error as E;
    use missive_result::*;
    match error {
        E::NotAMember { .. } => MISSIVE_ERR_NOT_A_MEMBER,
        E::NotAdmin { .. } => MISSIVE_ERR_NOT_ADMIN,
        E::NotSender { .. } => MISSIVE_ERR_NOT_SENDER,
        E::GroupFull { .. } => MISSIVE_ERR_GROUP_FULL,
        E::NoSuchChat { .. } => MISSIVE_ERR_NO_SUCH_CHAT,
        E::NoSuchMessage { .. } => MISSIVE_ERR_NO_SUCH_MESSAGE,
        E::PayloadTooLarge { .. } => MISSIVE_ERR_PAYLOAD_TOO_LARGE,
        E::InvalidArgument(_) => MISSIVE_ERR_INVALID_ARGUMENT,
        E::Closed => MISSIVE_ERR_CLOSED,
        E::Poisoned(_) => MISSIVE_ERR_POISONED,
        E::StorageFull(_) => MISSIVE_ERR_STORAGE_FULL,
        E::Corrupt(_) => MISSIVE_ERR_CORRUPT,
        E::Storage(_) => MISSIVE_ERR_STORAGE,
        E::Index(_) => MISSIVE_ERR_INDEX,
        _ => MISSIVE_ERR_OTHER,
    }
}

impl From<missive::Error> for Failure {
    fn from(error: missive::Error) -> Failure {
        Failure::new(code_of(&error), error.to_string())
    }
}

/// What an exported function's body returns.
pub(crate) type FfiResult<T = ()> = Result<T, Failure>;

thread_local! {
    /// The message of the last failed call on this thread (empty before the first).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Remembers `message` as this thread's last error, prefixed with the function's name.
fn set_last_error(function: &str, message: &str) {
    let text = format!("{function}: {message}").replace('\0', "\\0");
    let text = CString::new(text).unwrap_or_default();
    // After the thread's storage was torn down there is nowhere to keep it.
    let _ = LAST_ERROR.try_with(|last| *last.borrow_mut() = text);
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "a panic with a non-string payload"
    }
}

/// The panic boundary: runs an exported function's body, turns a panic into
/// `MISSIVE_ERR_PANIC` and a failure into its code, and records the message as this thread's
/// last error. Nothing unwinds into C.
pub(crate) fn guard(function: &'static str, body: impl FnOnce() -> FfiResult) -> missive_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => missive_result::MISSIVE_OK,
        Ok(Err(failure)) => {
            set_last_error(function, &failure.message);
            failure.code
        }
        Err(payload) => {
            set_last_error(
                function,
                &format!("panicked: {} (a bug in Missive)", panic_message(&*payload)),
            );
            // Dropping the payload runs foreign code in theory; keep a second panic in here.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            missive_result::MISSIVE_ERR_PANIC
        }
    }
}

/// [`guard`] for the last-error getters: a failure is returned but does not replace the
/// message the caller is trying to read.
fn guard_quiet(body: impl FnOnce() -> FfiResult) -> missive_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => missive_result::MISSIVE_OK,
        Ok(Err(failure)) => failure.code,
        Err(_) => missive_result::MISSIVE_ERR_PANIC,
    }
}

/// The name of a result code, e.g. `"MISSIVE_ERR_NOT_A_MEMBER"`, or `"MISSIVE_UNKNOWN"` for a
/// number that is no code.
///
/// Ownership: the string is static; never free it. Threads: any, concurrently. Never fails
/// (the one function besides `missive_version` and `missive_last_error_message` that returns
/// no result code).
#[unsafe(no_mangle)]
pub extern "C" fn missive_result_name(code: i32) -> *const c_char {
    let name = missive_result::ALL
        .iter()
        .find(|known| **known as i32 == code)
        .map_or(&b"MISSIVE_UNKNOWN\0"[..], |known| known.name());
    name.as_ptr().cast()
}

/// The library's version, e.g. `"0.1.0"`.
///
/// Ownership: the string is static; never free it. Threads: any. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn missive_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the last call *on this thread* that returned an error, as a NUL-terminated
/// UTF-8 string starting with the function's name (`""` if no call failed yet). Successful calls
/// leave it alone.
///
/// Ownership: the string belongs to Missive and stays valid until the next failing Missive call
/// on this thread; copy it to keep it. Never NULL; never free it. Threads: each thread has its own
/// last error, so this is safe to call from any thread. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn missive_last_error_message() -> *const c_char {
    static EMPTY: &[u8] = b"\0";
    LAST_ERROR
        .try_with(|last| last.borrow().as_ptr())
        .unwrap_or(EMPTY.as_ptr().cast())
}

/// Writes the length in bytes (without the terminating NUL) of this thread's last error message
/// to `*out_len`.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT` (`out_len` NULL). Neither success nor failure changes the
/// last error message. Threads: per thread, like `missive_last_error_message`.
///
/// # Safety
/// `out_len` must be NULL or point to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_last_error_length(out_len: *mut usize) -> missive_result {
    guard_quiet(|| {
        // SAFETY: the caller promises `out_len` is NULL or writable.
        let out = unsafe { Out::new(out_len, "out_len") }?;
        let len = LAST_ERROR
            .try_with(|last| last.borrow().as_bytes().len())
            .unwrap_or(0);
        out.write(len);
        Ok(())
    })
}

/// Copies this thread's last error message, NUL-terminated, into `buf` (capacity `buf_len`
/// bytes) and writes its length without the NUL to `*out_len`.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT` (`buf` or `out_len` NULL), `MISSIVE_ERR_BUFFER_TOO_SMALL`
/// (`buf_len` < length + 1; nothing written: ask `missive_last_error_length` first). Neither
/// success nor failure changes the last error message. Threads: per thread.
///
/// # Safety
/// `buf` must be NULL or writable for `buf_len` bytes; `out_len` NULL or a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_last_error(
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> missive_result {
    guard_quiet(|| {
        if buf.is_null() {
            return Err(Failure::null("buf"));
        }
        // SAFETY: the caller promises `out_len` is NULL or writable.
        let out = unsafe { Out::new(out_len, "out_len") }?;
        let message = LAST_ERROR
            .try_with(|last| last.borrow().clone())
            .unwrap_or_default();
        let bytes = message.as_bytes_with_nul();
        if bytes.len() > buf_len {
            return Err(Failure::new(
                missive_result::MISSIVE_ERR_BUFFER_TOO_SMALL,
                "buffer too small",
            ));
        }
        // SAFETY: `buf` is writable for `buf_len >= bytes.len()` bytes (the caller's promise and
        // the check above), and a fresh `CString` cannot overlap the caller's buffer.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len()) };
        out.write(bytes.len() - 1);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: the pointer is a NUL-terminated thread-local string, valid until the next
        // failing call on this thread (none happens while it is read).
        unsafe { CStr::from_ptr(missive_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_a_code_and_a_message() {
        let code = guard("missive_test", || panic!("boom"));
        assert_eq!(code, missive_result::MISSIVE_ERR_PANIC);
        assert!(
            last().starts_with("missive_test: panicked: boom"),
            "{}",
            last()
        );
        let code = guard("missive_test", || std::panic::panic_any(7_u32));
        assert_eq!(code, missive_result::MISSIVE_ERR_PANIC);
    }

    #[test]
    fn success_keeps_the_last_error() {
        let code = guard("missive_a", || Err(Failure::invalid("bad")));
        assert_eq!(code, missive_result::MISSIVE_ERR_INVALID_ARGUMENT);
        assert_eq!(guard("missive_b", || Ok(())), missive_result::MISSIVE_OK);
        assert_eq!(last(), "missive_a: bad");
    }

    #[test]
    fn last_error_copies_only_into_a_large_enough_buffer() {
        let _ = guard("missive_c", || Err(Failure::invalid("twelve chars")));
        let mut len = 0usize;
        // SAFETY: `len` is a writable usize.
        let code = unsafe { missive_last_error_length(&mut len) };
        assert_eq!(code, missive_result::MISSIVE_OK);
        assert_eq!(len, "missive_c: twelve chars".len());
        let mut buf = vec![0 as c_char; len];
        let mut written = 99usize;
        // SAFETY: `buf` is writable for its length; `written` is a writable usize.
        let code = unsafe { missive_last_error(buf.as_mut_ptr(), buf.len(), &mut written) };
        assert_eq!(code, missive_result::MISSIVE_ERR_BUFFER_TOO_SMALL);
        assert_eq!(written, 99);
        let mut buf = vec![0 as c_char; len + 1];
        // SAFETY: as above.
        let code = unsafe { missive_last_error(buf.as_mut_ptr(), buf.len(), &mut written) };
        assert_eq!(code, missive_result::MISSIVE_OK);
        assert_eq!(written, len);
        assert_eq!(last(), "missive_c: twelve chars");
    }

    #[test]
    fn every_code_has_its_name() {
        for code in missive_result::ALL {
            // SAFETY: the names are static NUL-terminated strings.
            let name = unsafe { CStr::from_ptr(missive_result_name(code as i32)) };
            assert_eq!(name.to_str().unwrap(), format!("{code:?}"));
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(missive_result_name(-5)) };
        assert_eq!(unknown.to_str().unwrap(), "MISSIVE_UNKNOWN");
        for (number, code) in missive_result::ALL.iter().enumerate() {
            assert_eq!(*code as i32, number as i32);
        }
    }
}
