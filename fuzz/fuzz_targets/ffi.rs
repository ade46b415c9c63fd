//! Arbitrary bytes drive the C API the way a careless C program could: a script of calls on a
//! fresh engine with arbitrary ids, lengths, NULL-or-not pointers, enum values out of range,
//! double frees, made-up handles and calls after close. No call may panic (`MISSIVE_ERR_PANIC`)
//! or crash, every result is a known code, a failed call leaves its out-parameter untouched, and
//! every list or event a successful call returns can be read to its last byte.
#![no_main]

use std::ffi::CString;
use std::ptr::{null, null_mut};

use missive_ffi::*;

/// Reads the script: each call takes what it needs, zeros once the bytes run out.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        first
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |n, i| n | u64::from(self.byte()) << (8 * i))
    }

    /// A small id most of the time (so calls meet each other), any id sometimes.
    fn user(&mut self) -> u64 {
        match self.byte() {
            b @ 0..=239 => u64::from(b % 6),
            _ => self.u64(),
        }
    }

    fn device(&mut self) -> u32 {
        match self.byte() {
            b @ 0..=249 => u32::from(b % 3),
            _ => u32::MAX,
        }
    }

    /// A length: small, or the size of the bytes given, or absurd.
    fn len(&mut self, actual: usize) -> usize {
        match self.byte() % 8 {
            0 => 0,
            1 => usize::MAX,
            2 => actual + 1 + usize::from(self.byte()),
            _ => actual,
        }
    }

    fn bytes(&mut self) -> Vec<u8> {
        let n = usize::from(self.byte() % 64);
        (0..n).map(|_| self.byte()).collect()
    }

    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

const KNOWN: std::ops::RangeInclusive<i32> = 0..=22;

fn check(code: missive_result) -> bool {
    let n = code as i32;
    assert!(KNOWN.contains(&n), "unknown result {n}");
    assert_ne!(code, missive_result::MISSIVE_ERR_PANIC, "a call panicked");
    code == missive_result::MISSIVE_OK
}

/// Reads every byte a message points to (a bad pointer faults here).
fn touch(message: &missive_message) -> u64 {
    let mut sum = message.seq;
    for (ptr, len) in [
        (message.body, message.body_len),
        (message.media, message.media_len),
    ] {
        assert_eq!(ptr.is_null(), len == 0);
        if len > 0 {
            // SAFETY: a message from a live list or event points to `len` readable bytes.
            let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
            sum = bytes.iter().fold(sum, |s, b| s.wrapping_add(u64::from(*b)));
        }
    }
    sum
}

/// Calls `call` with an out-parameter filled with a pattern; checks that a failure leaves the
/// pattern alone and returns what a success wrote.
fn with_out<T>(call: impl FnOnce(*mut T) -> missive_result) -> Option<T> {
    let mut out = std::mem::MaybeUninit::<T>::uninit();
    // SAFETY: writing bytes into our own uninitialized slot.
    unsafe {
        out.as_mut_ptr()
            .cast::<u8>()
            .write_bytes(0xa5, size_of::<T>())
    };
    if check(call(out.as_mut_ptr())) {
        // SAFETY: a successful call wrote a whole `T`.
        Some(unsafe { out.assume_init() })
    } else {
        // SAFETY: the slot's bytes were all initialized above (and a failure wrote none).
        let bytes =
            unsafe { std::slice::from_raw_parts(out.as_ptr().cast::<u8>(), size_of::<T>()) };
        assert!(
            bytes.iter().all(|b| *b == 0xa5),
            "a failed call wrote its out-parameter"
        );
        None
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut s = Script(data);
    let dir = tempfile::Builder::new()
        .prefix("missive-fuzz-ffi-")
        .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        })
        .unwrap();
    let path = CString::new(dir.path().to_str().unwrap()).unwrap();
    let config = missive_config {
        durability: MISSIVE_DURABILITY_OS,
        shards: 1,
        group_members_max: 4,
        body_bytes_max: 256,
        media_ref_bytes_max: 32,
        queue_capacity: 4,
        checkpoint_interval_ms: 0,
        retention_interval_ms: 0,
        clock: MISSIVE_CLOCK_MANUAL,
        clock_start_ms: 1_700_000_000_000,
        ..missive_config::default()
    };
    let mut engine = null_mut();
    // SAFETY: a NUL-terminated path, a readable config, a writable out.
    assert!(check(unsafe {
        missive_engine_open(path.as_ptr(), &config, &mut engine)
    }));
    let mut chats: Vec<missive_chat_id> = Vec::new();
    let mut subs: Vec<*mut missive_subscription> = Vec::new();
    let mut freed_engine = false;

    for _ in 0..64 {
        if s.done() {
            break;
        }
        let chat = match s.byte() % 4 {
            0 => missive_chat_id {
                hi: s.u64(),
                lo: s.u64(),
            },
            _ if !chats.is_empty() => chats[usize::from(s.byte()) % chats.len()],
            _ => {
                let (a, b) = (s.user(), s.user());
                with_out(|out| unsafe { missive_chat_direct(a, b, out) }).unwrap()
            }
        };
        // SAFETY (every call below): `engine` is live or freed (then caught by its handle);
        // every pointer passed is NULL or valid for the length passed with it, or the length
        // is over the limit so nothing is read; out-pointers are writable locals.
        match s.byte() % 20 {
            0 | 1 => {
                let (from, device, to) = (s.user(), s.device(), s.user());
                let id = [s.byte(); 16];
                let body = s.bytes();
                let len = s.len(body.len());
                let body_ptr = if s.byte() % 16 == 0 {
                    null()
                } else {
                    body.as_ptr()
                };
                let len = if len > body.len() && len <= 256 {
                    body.len()
                } else {
                    len
                };
                if let Some(sent) = with_out(|out| unsafe {
                    missive_send_direct(
                        engine,
                        from,
                        device,
                        to,
                        id.as_ptr(),
                        body_ptr,
                        len,
                        null(),
                        out,
                    )
                }) {
                    chats.push(sent.chat);
                }
            }
            2 | 3 => {
                let (from, device) = (s.user(), s.device());
                let id = [s.byte(); 16];
                let body = s.bytes();
                let media = s.bytes();
                let media_len = s.len(media.len());
                let media_len = if media_len > media.len() && media_len <= 32 {
                    media.len()
                } else {
                    media_len
                };
                let options = missive_send_options {
                    kind: u32::from(s.byte() % 8),
                    media: if s.byte() % 16 == 0 {
                        null()
                    } else {
                        media.as_ptr()
                    },
                    media_len,
                    reply_to: u64::from(s.byte() % 8),
                    ttl_ms: match s.byte() % 3 {
                        0 => MISSIVE_TTL_CHAT,
                        1 => 0,
                        _ => u64::from(s.byte()) * 100,
                    },
                };
                let options_ptr: *const missive_send_options =
                    if s.byte() % 8 == 0 { null() } else { &options };
                let id_ptr = if s.byte() % 32 == 0 {
                    null()
                } else {
                    id.as_ptr()
                };
                with_out(|out| unsafe {
                    missive_send(
                        engine,
                        from,
                        device,
                        chat,
                        id_ptr,
                        body.as_ptr(),
                        body.len(),
                        options_ptr,
                        out,
                    )
                });
            }
            4 => {
                let (user, which, anchor) =
                    (s.user(), u32::from(s.byte() % 6), u64::from(s.byte()));
                let limit = match s.byte() % 4 {
                    0 => 0,
                    1 => usize::MAX,
                    _ => usize::from(s.byte()),
                };
                if let Some(list) = with_out(|out| unsafe {
                    missive_history(engine, user, chat, which, anchor, limit, out)
                }) {
                    // SAFETY: a live list, read then freed once, then refused.
                    unsafe {
                        let l = &*list;
                        assert_eq!(l.messages.is_null(), l.len == 0);
                        assert!(l.len <= limit);
                        for i in 0..l.len {
                            touch(&*l.messages.add(i));
                        }
                        assert!(check(missive_message_list_free(list)));
                        assert_eq!(
                            missive_message_list_free(list),
                            missive_result::MISSIVE_ERR_INVALID_HANDLE
                        );
                    }
                }
            }
            5 => {
                let (user, seq) = (s.user(), u64::from(s.byte() % 8));
                if let Some(list) =
                    with_out(|out| unsafe { missive_message_get(engine, user, chat, seq, out) })
                {
                    // SAFETY: a live one-message list, freed once.
                    unsafe {
                        assert_eq!((*list).len, 1);
                        touch(&*(*list).messages);
                        assert!(check(missive_message_list_free(list)));
                    }
                }
            }
            6 => {
                let (user, device, seq, read) =
                    (s.user(), s.device(), s.u64() % 16, s.byte() % 2 == 0);
                let want_out = s.byte() % 2 == 0;
                let mut up_to = 0u64;
                let out = if want_out {
                    &mut up_to as *mut u64
                } else {
                    null_mut()
                };
                check(unsafe {
                    if read {
                        missive_mark_read(engine, user, device, chat, seq, out)
                    } else {
                        missive_mark_delivered(engine, user, device, chat, seq, out)
                    }
                });
            }
            7 => {
                let (user, seq) = (s.user(), u64::from(s.byte() % 8));
                check(unsafe { missive_delete(engine, user, chat, seq) });
            }
            8 => {
                let creator = s.user();
                let members: Vec<u64> = (0..s.byte() % 6).map(|_| s.user()).collect();
                let len = s.len(members.len());
                let len = if len > members.len() && len <= 1024 {
                    members.len()
                } else {
                    len
                };
                let ptr = if s.byte() % 16 == 0 {
                    null()
                } else {
                    members.as_ptr()
                };
                if let Some(group) =
                    with_out(|out| unsafe { missive_group_create(engine, creator, ptr, len, out) })
                {
                    chats.push(group);
                }
            }
            9 => {
                let (by, user) = (s.user(), s.user());
                check(unsafe {
                    match s.byte() % 5 {
                        0 => missive_group_add(engine, by, chat, [user, s.user()].as_ptr(), 2),
                        1 => missive_group_remove(engine, by, chat, user),
                        2 => missive_group_leave(engine, by, chat),
                        3 => missive_group_promote(engine, by, chat, user),
                        _ => missive_group_demote(engine, by, chat, user),
                    }
                });
            }
            10 => {
                let user = s.user();
                if let Some(list) =
                    with_out(|out| unsafe { missive_group_members(engine, user, chat, out) })
                {
                    // SAFETY: a live list, read then freed once.
                    unsafe {
                        let l = &*list;
                        for i in 0..l.len {
                            let m = *l.members.add(i);
                            assert!(m.role == MISSIVE_ROLE_MEMBER || m.role == MISSIVE_ROLE_ADMIN);
                        }
                        assert!(check(missive_member_list_free(list)));
                    }
                }
            }
            11 => {
                let (user, seq) = (s.user(), u64::from(s.byte() % 8));
                let mut recipients = null_mut();
                let want = s.byte() % 2 == 0;
                if with_out(|counts| unsafe {
                    missive_message_status(
                        engine,
                        user,
                        chat,
                        seq,
                        counts,
                        if want { &mut recipients } else { null_mut() },
                    )
                })
                .is_some()
                    && want
                {
                    // SAFETY: a live list, read then freed once.
                    unsafe {
                        let l = &*recipients;
                        for i in 0..l.len {
                            assert!((1..=3).contains(&(*l.recipients.add(i)).status));
                        }
                        assert!(check(missive_recipient_list_free(recipients)));
                    }
                }
            }
            12 => {
                let (user, device) = (s.user(), s.device());
                if let Some(sub) =
                    with_out(|out| unsafe { missive_subscribe(engine, user, device, out) })
                {
                    subs.push(sub);
                }
            }
            13 => {
                if !subs.is_empty() {
                    let sub = subs[usize::from(s.byte()) % subs.len()];
                    for _ in 0..s.byte() % 8 {
                        // SAFETY: a zeroed event is a valid value; `sub` is live or freed.
                        let mut event: missive_event = unsafe { std::mem::zeroed() };
                        let code = unsafe { missive_subscription_next(sub, 0, &mut event) };
                        if !check(code) {
                            break;
                        }
                        assert!((1..=7).contains(&event.kind));
                        touch(&event.message);
                        if event.users_len > 0 {
                            // SAFETY: the event's users are valid until the next call.
                            let users =
                                unsafe { std::slice::from_raw_parts(event.users, event.users_len) };
                            assert!(!users.is_empty());
                        }
                    }
                }
            }
            14 => {
                if !subs.is_empty() {
                    let i = usize::from(s.byte()) % subs.len();
                    let sub = subs[i];
                    // Freed once; a second free (the entry stays) must be refused.
                    let code = unsafe { missive_subscription_free(sub) };
                    assert!(
                        code == missive_result::MISSIVE_OK
                            || code == missive_result::MISSIVE_ERR_INVALID_HANDLE
                    );
                }
            }
            15 => {
                let (user, device) = (s.user(), s.device());
                check(unsafe {
                    match s.byte() % 3 {
                        0 => missive_typing(engine, user, device, chat, s.byte() % 2 == 0),
                        1 => missive_set_chat_ttl(engine, user, chat, u64::from(s.byte()) * 10),
                        _ => {
                            let mut n = 0;
                            missive_unread(engine, user, chat, &mut n)
                        }
                    }
                });
            }
            16 => {
                let user = s.user();
                if let Some(list) = with_out(|out| unsafe { missive_chats(engine, user, out) }) {
                    // SAFETY: a live list, read then freed once.
                    unsafe {
                        let l = &*list;
                        for i in 0..l.len {
                            let summary = &*l.chats.add(i);
                            if summary.has_last {
                                touch(&summary.last);
                            }
                        }
                        assert!(check(missive_chat_list_free(list)));
                    }
                }
            }
            17 => {
                let now = 1_700_000_000_000 + s.u64() % (1 << 40);
                check(unsafe {
                    match s.byte() % 4 {
                        0 => missive_engine_set_time(engine, now),
                        1 => missive_expire(engine, now, null_mut()),
                        2 => missive_engine_checkpoint(engine),
                        _ => {
                            let mut stats = missive_stats::default();
                            missive_engine_stats(engine, &mut stats)
                        }
                    }
                });
            }
            18 => {
                // A made-up handle is refused without being touched (0 is NULL).
                let fake = (s.u64() as usize) & !7;
                if fake != engine as usize {
                    let code = with_out(|out| unsafe {
                        missive_engine_now(fake as *mut missive_engine, out)
                    });
                    assert!(code.is_none());
                    let code =
                        unsafe { missive_message_list_free(fake as *mut missive_message_list) };
                    assert_ne!(code, missive_result::MISSIVE_OK);
                }
            }
            _ => {
                // Close, or (rarely) free: every later call is CLOSED or INVALID_HANDLE.
                if s.byte() % 4 == 0 {
                    let code = unsafe { missive_engine_free(engine) };
                    if freed_engine {
                        assert_eq!(code, missive_result::MISSIVE_ERR_INVALID_HANDLE);
                    }
                    freed_engine = true;
                } else {
                    check(unsafe { missive_engine_close(engine) });
                }
            }
        }
    }
    for sub in subs {
        // SAFETY: live or already freed (then refused).
        let _ = unsafe { missive_subscription_free(sub) };
    }
    if !freed_engine {
        // SAFETY: the engine is live.
        check(unsafe { missive_engine_free(engine) });
    }
    assert_eq!(missive_ffi::live_handles(), (0, 0), "a handle leaked");
});
