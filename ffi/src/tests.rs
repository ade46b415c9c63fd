//! The C API driven from Rust, as C would drive it: results, out-parameters left alone on
//! failure, handles caught after free, lists and events whose pointers stay valid, both kinds of
//! subscription. (`ffi/tests/test_ffi.c` does the same from C, under valgrind.)

use std::ffi::{CStr, CString, c_void};
use std::ptr::{null, null_mut};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use crate::*;

use missive_result::*;

struct Fixture {
    _dir: tempfile::TempDir,
    engine: *mut missive_engine,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with(|_| {})
    }

    fn with(change: impl FnOnce(&mut missive_config)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = CString::new(dir.path().to_str().unwrap()).unwrap();
        let mut config = missive_config {
            durability: MISSIVE_DURABILITY_OS,
            shards: 1,
            checkpoint_interval_ms: 0,
            retention_interval_ms: 0,
            ..missive_config::default()
        };
        change(&mut config);
        let mut engine = null_mut();
        // SAFETY: a NUL-terminated path, a readable config and a writable out-pointer.
        let code = unsafe { missive_engine_open(path.as_ptr(), &config, &mut engine) };
        assert_eq!(code, MISSIVE_OK, "{}", last_error());
        Fixture { _dir: dir, engine }
    }

    fn send(&self, from: u64, to: u64, id: u8, body: &[u8]) -> (missive_result, missive_sent) {
        let mut sent = missive_sent::default();
        // SAFETY: a live engine, a 16-byte id, a body of `body.len()` bytes, a writable out.
        let code = unsafe {
            missive_send_direct(
                self.engine,
                from,
                0,
                to,
                [id; 16].as_ptr(),
                body.as_ptr(),
                body.len(),
                null(),
                &mut sent,
            )
        };
        (code, sent)
    }

    fn history(&self, user: u64, chat: missive_chat_id) -> Vec<(u64, Vec<u8>)> {
        let mut list = null_mut();
        // SAFETY: a live engine and a writable out-pointer.
        let code = unsafe {
            missive_history(
                self.engine,
                user,
                chat,
                MISSIVE_HISTORY_LATEST,
                0,
                100,
                &mut list,
            )
        };
        assert_eq!(code, MISSIVE_OK, "{}", last_error());
        // SAFETY: `list` is a live list from `missive_history`, read before it is freed.
        let messages = unsafe { messages(list) };
        // SAFETY: freed once.
        assert_eq!(unsafe { missive_message_list_free(list) }, MISSIVE_OK);
        messages
    }

    fn stats(&self) -> missive_stats {
        let mut stats = missive_stats::default();
        // SAFETY: a live engine and a writable out.
        let got = unsafe { missive_engine_stats(self.engine, &mut stats) };
        assert_eq!(got, MISSIVE_OK);
        stats
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // SAFETY: the engine is live or already freed (then caught and refused).
        let _ = unsafe { missive_engine_free(self.engine) };
    }
}

/// The messages of a live list, copied out.
///
/// # Safety
/// `list` must be a live list.
unsafe fn messages(list: *const missive_message_list) -> Vec<(u64, Vec<u8>)> {
    // SAFETY: the caller's promise.
    let list = unsafe { &*list };
    if list.len == 0 {
        return Vec::new();
    }
    // SAFETY: `messages` points to `len` messages owned by the list.
    let items = unsafe { std::slice::from_raw_parts(list.messages, list.len) };
    items
        .iter()
        // SAFETY: each body points to `body_len` bytes owned by the list.
        .map(|m| (m.seq, unsafe { body(m.body, m.body_len) }))
        .collect()
}

/// # Safety
/// `ptr` must be NULL with `len` 0, or readable for `len` bytes.
unsafe fn body(ptr: *const u8, len: usize) -> Vec<u8> {
    if len == 0 {
        assert!(ptr.is_null());
        return Vec::new();
    }
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec()
}

fn last_error() -> String {
    // SAFETY: a NUL-terminated thread-local string, read before the next failing call.
    unsafe { CStr::from_ptr(missive_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

fn direct(a: u64, b: u64) -> missive_chat_id {
    let mut chat = missive_chat_id::default();
    // SAFETY: a writable out.
    assert_eq!(unsafe { missive_chat_direct(a, b, &mut chat) }, MISSIVE_OK);
    chat
}

#[test]
fn a_message_goes_in_and_comes_back_out() {
    let f = Fixture::new();
    let (code, sent) = f.send(1, 2, 7, b"hello");
    assert_eq!(code, MISSIVE_OK);
    assert_eq!((sent.seq, sent.duplicate), (1, false));
    assert_eq!(sent.chat, direct(2, 1));
    let (code, again) = f.send(1, 2, 7, b"hello");
    assert_eq!((code, again.seq, again.duplicate), (MISSIVE_OK, 1, true));
    assert_eq!(f.history(2, sent.chat), vec![(1, b"hello".to_vec())]);
    assert_eq!(f.stats().sends, 1);
}

#[test]
fn failures_leave_the_out_parameters_alone() {
    let f = Fixture::new();
    let mut sent = missive_sent {
        seq: 99,
        ..missive_sent::default()
    };
    // SAFETY: a live engine; the NULL id is what is being tested.
    let code = unsafe {
        missive_send_direct(
            f.engine,
            1,
            0,
            2,
            null(),
            b"x".as_ptr(),
            1,
            null(),
            &mut sent,
        )
    };
    assert_eq!(code, MISSIVE_ERR_NULL_ARGUMENT);
    assert_eq!(sent.seq, 99);
    assert!(last_error().contains("client_msg_id"), "{}", last_error());
    // A huge length is refused before anything is read.
    // SAFETY: the body pointer is never read: its length is over the limit.
    let code = unsafe {
        missive_send_direct(
            f.engine,
            1,
            0,
            2,
            [1; 16].as_ptr(),
            b"x".as_ptr(),
            usize::MAX,
            null(),
            &mut sent,
        )
    };
    assert_eq!(code, MISSIVE_ERR_PAYLOAD_TOO_LARGE);
    assert_eq!(sent.seq, 99);
    let mut list = std::ptr::dangling_mut::<missive_message_list>();
    // SAFETY: a live engine and a writable out; user 3 is not in the chat.
    let code = unsafe {
        missive_history(
            f.engine,
            3,
            direct(1, 2),
            MISSIVE_HISTORY_LATEST,
            0,
            10,
            &mut list,
        )
    };
    assert_eq!(code, MISSIVE_ERR_NOT_A_MEMBER);
    assert_eq!(list, std::ptr::dangling_mut());
    assert_eq!(f.stats().sends, 0);
}

#[test]
fn paths_must_be_utf8_and_configs_in_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = null_mut();
    let bad = CString::new(vec![b'/', b't', 0xff, 0xfe]).unwrap();
    // SAFETY: a NUL-terminated string and a writable out.
    let code = unsafe { missive_engine_open(bad.as_ptr(), null(), &mut engine) };
    assert_eq!(code, MISSIVE_ERR_INVALID_UTF8);
    let path = CString::new(dir.path().to_str().unwrap()).unwrap();
    let config = missive_config {
        group_members_max: 0,
        ..missive_config::default()
    };
    // SAFETY: as above, with a readable config.
    let code = unsafe { missive_engine_open(path.as_ptr(), &config, &mut engine) };
    assert_eq!(code, MISSIVE_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("group_members_max"));
    assert!(engine.is_null());
    // NULL config: the defaults.
    // SAFETY: as above.
    let code = unsafe { missive_engine_open(path.as_ptr(), null(), &mut engine) };
    assert_eq!(code, MISSIVE_OK);
    // SAFETY: freed once, then refused.
    unsafe {
        assert_eq!(missive_engine_free(engine), MISSIVE_OK);
        assert_eq!(missive_engine_free(engine), MISSIVE_ERR_INVALID_HANDLE);
        let mut now = 0;
        assert_eq!(
            missive_engine_now(engine, &mut now),
            MISSIVE_ERR_INVALID_HANDLE
        );
    }
}

#[test]
fn a_closed_engine_says_closed_until_freed() {
    let f = Fixture::new();
    // SAFETY: a live engine.
    assert_eq!(unsafe { missive_engine_close(f.engine) }, MISSIVE_OK);
    assert_eq!(f.send(1, 2, 1, b"late").0, MISSIVE_ERR_CLOSED);
    // SAFETY: closing twice is fine.
    assert_eq!(unsafe { missive_engine_close(f.engine) }, MISSIVE_OK);
}

#[test]
fn groups_and_their_errors() {
    let f = Fixture::with(|c| c.group_members_max = 3);
    let mut group = missive_chat_id::default();
    // SAFETY: a live engine, two readable ids, a writable out.
    let code = unsafe { missive_group_create(f.engine, 1, [2u64, 3].as_ptr(), 2, &mut group) };
    assert_eq!(code, MISSIVE_OK);
    assert_eq!(group.hi, u64::MAX);
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            missive_group_add(f.engine, 2, group, [4u64].as_ptr(), 1),
            MISSIVE_ERR_NOT_ADMIN
        );
        assert_eq!(
            missive_group_add(f.engine, 1, group, [4u64].as_ptr(), 1),
            MISSIVE_ERR_GROUP_FULL
        );
        assert_eq!(
            missive_group_add(f.engine, 1, group, null(), 5),
            MISSIVE_ERR_NULL_ARGUMENT
        );
        assert_eq!(missive_group_promote(f.engine, 1, group, 2), MISSIVE_OK);
        assert_eq!(missive_group_leave(f.engine, 1, group), MISSIVE_OK);
        let mut members = null_mut();
        assert_eq!(
            missive_group_members(f.engine, 2, group, &mut members),
            MISSIVE_OK
        );
        let list = &*members;
        let members_now = std::slice::from_raw_parts(list.members, list.len).to_vec();
        assert_eq!(missive_member_list_free(members), MISSIVE_OK);
        assert_eq!(
            missive_member_list_free(members),
            MISSIVE_ERR_INVALID_HANDLE
        );
        assert_eq!(
            members_now,
            vec![
                missive_member {
                    user: 2,
                    role: MISSIVE_ROLE_ADMIN
                },
                missive_member {
                    user: 3,
                    role: MISSIVE_ROLE_MEMBER
                }
            ]
        );
    }
    // The group's history holds the system messages of its changes.
    let history = f.history(2, group);
    assert_eq!(history.len(), 3);
    assert!(history[0].1.starts_with(b"{\"op\":\"create\""));
}

#[test]
fn a_polled_subscription_gets_the_backlog_then_live_events() {
    let f = Fixture::new();
    f.send(1, 2, 1, b"before");
    let mut sub = null_mut();
    // SAFETY: a live engine and a writable out.
    let got = unsafe { missive_subscribe(f.engine, 2, 0, &mut sub) };
    assert_eq!(got, MISSIVE_OK);
    let next = |timeout_ms| {
        // SAFETY: a zeroed event is a valid value (integers, NULL pointers, false).
        let mut event: missive_event = unsafe { std::mem::zeroed() };
        // SAFETY: a live subscription and a writable out.
        let code = unsafe { missive_subscription_next(sub, timeout_ms, &mut event) };
        (code, event)
    };
    let (code, event) = next(1000);
    assert_eq!((code, event.kind), (MISSIVE_OK, MISSIVE_EVENT_MESSAGE));
    // SAFETY: valid until the next call on the subscription.
    let got = unsafe { body(event.message.body, event.message.body_len) };
    assert_eq!(got, b"before");
    f.send(1, 2, 2, b"live");
    let (code, event) = next(5000);
    assert_eq!((code, event.message.seq), (MISSIVE_OK, 2));
    // SAFETY: as above.
    let got = unsafe { body(event.message.body, event.message.body_len) };
    assert_eq!(got, b"live");
    let (code, _) = next(0);
    assert_eq!(code, MISSIVE_ERR_TIMEOUT);
    // SAFETY: a live engine.
    unsafe { missive_engine_close(f.engine) };
    assert_eq!(next(1000).0, MISSIVE_ERR_CLOSED);
    // SAFETY: freed once, then refused.
    unsafe {
        assert_eq!(missive_subscription_free(sub), MISSIVE_OK);
        assert_eq!(missive_subscription_free(sub), MISSIVE_ERR_INVALID_HANDLE);
    }
    assert_eq!(next(0).0, MISSIVE_ERR_INVALID_HANDLE);
}

/// One event as the callback saw it: kind, message seq, body, code.
type Seen1 = (u32, u64, Vec<u8>, i32);

/// What the callback test's callback saw.
struct Seen {
    events: Mutex<mpsc::Sender<Seen1>>,
}

unsafe extern "C" fn on_event(user_data: *mut c_void, event: *const missive_event) {
    // SAFETY: `user_data` is the `Seen` the test keeps alive until the subscription is freed;
    // `event` is valid during the call.
    let (seen, event) = unsafe { (&*(user_data as *const Seen), &*event) };
    // SAFETY: as above: the body is valid during the call.
    let bytes = unsafe { body(event.message.body, event.message.body_len) };
    let _ = seen
        .events
        .lock()
        .unwrap()
        .send((event.kind, event.message.seq, bytes, event.code));
}

#[test]
fn a_callback_subscription_delivers_on_its_thread_and_ends_with_closed() {
    let f = Fixture::new();
    let (tx, rx) = mpsc::channel();
    let seen = Box::new(Seen {
        events: Mutex::new(tx),
    });
    let mut sub = null_mut();
    // SAFETY: a live engine, a callback safe from any thread, `seen` outlives the subscription.
    let code = unsafe {
        missive_subscribe_callback(
            f.engine,
            2,
            0,
            Some(on_event),
            &*seen as *const Seen as *mut c_void,
            &mut sub,
        )
    };
    assert_eq!(code, MISSIVE_OK);
    f.send(1, 2, 1, b"ping");
    let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(got, (MISSIVE_EVENT_MESSAGE, 1, b"ping".to_vec(), 0));
    // Polling a callback subscription is refused.
    // SAFETY: a zeroed event is valid; a live subscription and a writable out.
    let code = unsafe {
        let mut event: missive_event = std::mem::zeroed();
        missive_subscription_next(sub, 0, &mut event)
    };
    assert_eq!(code, MISSIVE_ERR_BUSY);
    // SAFETY: a live engine.
    unsafe { missive_engine_close(f.engine) };
    let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (got.0, got.3),
        (MISSIVE_EVENT_CLOSED, MISSIVE_ERR_CLOSED as i32)
    );
    // SAFETY: freed once; `seen` is dropped after.
    assert_eq!(unsafe { missive_subscription_free(sub) }, MISSIVE_OK);
    drop(seen);
}

#[test]
fn receipts_status_and_unread() {
    let f = Fixture::new();
    let (_, sent) = f.send(1, 2, 1, b"a");
    f.send(1, 2, 2, b"b");
    let mut unread = 0;
    let mut up_to = 0;
    let mut counts = missive_receipt_counts::default();
    let mut recipients = null_mut();
    // SAFETY: a live engine and writable outs throughout.
    unsafe {
        assert_eq!(
            missive_unread(f.engine, 2, sent.chat, &mut unread),
            MISSIVE_OK
        );
        assert_eq!(unread, 2);
        assert_eq!(
            missive_mark_read(f.engine, 2, 0, sent.chat, 1, &mut up_to),
            MISSIVE_OK
        );
        assert_eq!(up_to, 1);
        assert_eq!(
            missive_message_status(f.engine, 2, sent.chat, 1, &mut counts, null_mut()),
            MISSIVE_ERR_NOT_SENDER
        );
        assert_eq!(
            missive_message_status(f.engine, 1, sent.chat, 1, &mut counts, &mut recipients),
            MISSIVE_OK
        );
        assert_eq!((counts.recipients, counts.read), (1, 1));
        let list = &*recipients;
        assert_eq!(
            *list.recipients,
            missive_recipient {
                user: 2,
                status: MISSIVE_STATUS_READ
            }
        );
        assert_eq!(missive_recipient_list_free(recipients), MISSIVE_OK);
        assert_eq!(
            missive_unread(f.engine, 2, sent.chat, &mut unread),
            MISSIVE_OK
        );
        assert_eq!(unread, 1);
        let mut chats = null_mut();
        assert_eq!(missive_chats(f.engine, 2, &mut chats), MISSIVE_OK);
        let list = &*chats;
        assert_eq!(list.len, 1);
        let summary = &*list.chats;
        assert!(summary.has_last);
        assert_eq!(body(summary.last.body, summary.last.body_len), b"b");
        assert_eq!(missive_chat_list_free(chats), MISSIVE_OK);
    }
}

#[test]
fn list_handles_are_not_interchangeable() {
    let f = Fixture::new();
    let (_, sent) = f.send(1, 2, 1, b"a");
    let mut members = null_mut();
    // SAFETY: a live engine and a writable out; then a member list passed as a message list,
    // which is caught by address before it is touched.
    unsafe {
        assert_eq!(
            missive_group_members(f.engine, 1, sent.chat, &mut members),
            MISSIVE_OK
        );
        assert_eq!(
            missive_message_list_free(members.cast()),
            MISSIVE_ERR_INVALID_HANDLE
        );
        assert_eq!(
            missive_engine_free(members.cast()),
            MISSIVE_ERR_INVALID_HANDLE
        );
        assert_eq!(missive_member_list_free(members), MISSIVE_OK);
    }
}

#[test]
fn manual_time_drives_ttls() {
    let f = Fixture::with(|c| {
        c.clock = MISSIVE_CLOCK_MANUAL;
        c.clock_start_ms = 1_000_000_000_000;
    });
    let chat = direct(1, 2);
    let options = missive_send_options {
        ttl_ms: 1000,
        ..missive_send_options::default()
    };
    let mut sent = missive_sent::default();
    // SAFETY: a live engine, readable id/body/options, writable out.
    unsafe {
        assert_eq!(
            missive_send(
                f.engine,
                1,
                0,
                chat,
                [1; 16].as_ptr(),
                b"poof".as_ptr(),
                4,
                &options,
                &mut sent
            ),
            MISSIVE_OK
        );
    }
    assert_eq!(sent.timestamp_ms, 1_000_000_000_000);
    assert_eq!(f.history(2, chat).len(), 1);
    // SAFETY: a live engine with a manual clock.
    let got = unsafe { missive_engine_set_time(f.engine, 1_000_000_002_000) };
    assert_eq!(got, MISSIVE_OK);
    assert_eq!(f.history(2, chat).len(), 0);
    let mut report = missive_expire_report::default();
    // SAFETY: a live engine and a writable out.
    let got = unsafe { missive_expire(f.engine, 1_000_000_002_000, &mut report) };
    assert_eq!(got, MISSIVE_OK);
    assert_eq!(report.cutoff_ms, 1_000_000_002_000 - 30 * 24 * 3600 * 1000);
}
