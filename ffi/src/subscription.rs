//! Subscriptions: a device's stream of events, polled (`missive_subscription_next`) or pushed to
//! a C callback from a thread of its own.

use std::cell::Cell;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use missive::Subscription;
use missive::log::{DeviceId, UserId};
use parking_lot::Mutex;

use crate::args::Out;
use crate::engine::missive_engine;
use crate::event::{EventStorage, missive_event, missive_presence};
use crate::handle::{self, Handle, Registry};
use crate::result::{Failure, code_of, guard, missive_result};

/// How often a callback subscription's thread looks whether it was freed.
const CALLBACK_POLL: Duration = Duration::from_millis(50);

/// One device's stream of events: first every message after the device's delivered watermark
/// (its backlog, chat by chat in seq order), then live events. A slow subscriber never blocks a
/// sender and never loses a message: when its queue overflows it catches up from storage (it
/// may miss typing, presence and receipt events meanwhile). Subscribing a device again ends its
/// previous subscription (`MISSIVE_ERR_CLOSED`).
///
/// Opaque. Made by `missive_subscribe` (poll it with `missive_subscription_next`) or
/// `missive_subscribe_callback` (events go to a callback); freed by `missive_subscription_free`.
pub struct missive_subscription {
    magic: AtomicU64,
    mode: Mode,
}

enum Mode {
    Poll(Box<Mutex<Poll>>),
    Callback(Runner),
}

struct Poll {
    live: Subscription,
    /// The event last returned: its pointers stay valid until the next call.
    last: Option<EventStorage>,
}

struct Runner {
    /// Set to stop the thread; its address also names the runner (see `RUNNER_OF_THIS_THREAD`).
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Runner {
    fn id(stop: &Arc<AtomicBool>) -> usize {
        Arc::as_ptr(stop) as usize
    }
}

thread_local! {
    /// On a callback thread, the id of its runner (0 elsewhere). A plain `Cell`: unlike
    /// `std::thread::current()` it allocates nothing on the caller's threads, which C created
    /// and which may never run Rust's thread-exit cleanup.
    static RUNNER_OF_THIS_THREAD: Cell<usize> = const { Cell::new(0) };
}

static SUBSCRIPTIONS: Registry = Registry::new("missive_subscription");

impl Handle for missive_subscription {
    const MAGIC: u64 = u64::from_le_bytes(*b"MSVSUBSC");
    fn registry() -> &'static Registry {
        &SUBSCRIPTIONS
    }
    fn magic(&self) -> &AtomicU64 {
        &self.magic
    }
}

/// Live subscription handles (for tests).
pub(crate) fn live_subscriptions() -> usize {
    SUBSCRIPTIONS.len()
}

/// A callback: `user_data` is what was given to `missive_subscribe_callback`; `event` is valid
/// only during the call.
pub type missive_event_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const missive_event)>;

/// The caller's `user_data`, sent to the callback thread.
struct UserData(*mut c_void);

// SAFETY: `missive_subscribe_callback`'s contract: `user_data` must be usable from the callback
// thread. Missive never dereferences it; it only hands it back to the callback.
unsafe impl Send for UserData {}

/// Subscribes `device` of `user` for polling and writes the handle to `*out`: the first
/// `missive_subscription_next` calls return the backlog, then live events.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`, `_CLOSED`.
///
/// Ownership: free the handle with `missive_subscription_free` (also after the engine is freed:
/// it keeps the engine's memory alive until then). Threads: any.
///
/// # Safety
/// `engine` NULL or from `missive_engine_open`; `out` NULL or a writable
/// `missive_subscription *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_subscribe(
    engine: *mut missive_engine,
    user: u64,
    device: u32,
    out: *mut *mut missive_subscription,
) -> missive_result {
    guard("missive_subscribe", || {
        // SAFETY: the caller promises `out` is NULL or writable.
        let out = unsafe { Out::new(out, "out") }?;
        let engine = missive_engine::get(engine)?;
        let live = engine.engine.subscribe(UserId(user), DeviceId(device))?;
        out.write(handle::share(missive_subscription {
            magic: handle::magic::<missive_subscription>(),
            mode: Mode::Poll(Box::new(Mutex::new(Poll { live, last: None }))),
        }));
        Ok(())
    })
}

/// Waits up to `timeout_ms` (0: do not wait) for the subscription's next event and writes it to
/// `*out_event`.
///
/// Returns `MISSIVE_OK` (an event was written), `MISSIVE_ERR_TIMEOUT` (none came; nothing
/// written), `MISSIVE_ERR_CLOSED` (the engine closed, or the device subscribed again: the stream
/// is over), `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`, `_BUSY` (a callback subscription),
/// storage errors while catching up.
///
/// Ownership: the event's pointers (`message.body`, `message.media`, `users`) point into the
/// subscription and stay valid until the next `missive_subscription_next` or
/// `missive_subscription_free` on it. Threads: any thread, one call at a time per subscription
/// (a concurrent call waits for the first); different subscriptions are independent.
///
/// # Safety
/// `sub` NULL or from `missive_subscribe`; `out_event` NULL or a writable `missive_event`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_subscription_next(
    sub: *mut missive_subscription,
    timeout_ms: u32,
    out_event: *mut missive_event,
) -> missive_result {
    guard("missive_subscription_next", || {
        // SAFETY: the caller promises `out_event` is NULL or writable.
        let out = unsafe { Out::new(out_event, "out_event") }?;
        let sub = handle::shared(sub.cast_const(), "sub")?;
        let Mode::Poll(poll) = &sub.mode else {
            return Err(Failure::new(
                missive_result::MISSIVE_ERR_BUSY,
                "this subscription delivers its events to a callback",
            ));
        };
        let mut poll = poll.lock();
        let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(event) = poll.live.next_timeout(left)? else {
                return Err(Failure::new(
                    missive_result::MISSIVE_ERR_TIMEOUT,
                    format!("no event within {timeout_ms} ms"),
                ));
            };
            // An event kind the C API does not describe yet is skipped.
            if let Some(storage) = EventStorage::new(event) {
                out.write(storage.event);
                poll.last = Some(storage);
                return Ok(());
            }
        }
    })
}

/// The callback thread: delivers events until freed or the stream ends.
fn run(
    mut live: Subscription,
    callback: unsafe extern "C" fn(*mut c_void, *const missive_event),
    user_data: UserData,
    stop: Arc<AtomicBool>,
) {
    RUNNER_OF_THIS_THREAD.with(|runner| runner.set(Runner::id(&stop)));
    let ended = loop {
        if stop.load(Ordering::Acquire) {
            return;
        }
        // Everything but the callback itself runs inside the panic boundary; a panic ends the
        // stream with `MISSIVE_ERR_PANIC`.
        let next = catch_unwind(AssertUnwindSafe(|| {
            live.next_timeout(CALLBACK_POLL)
                .map(|event| event.and_then(EventStorage::new))
        }));
        match next {
            Ok(Ok(Some(storage))) => {
                // SAFETY: `missive_subscribe_callback`'s contract: `callback` may be called from
                // this thread with this `user_data`; the event outlives the call.
                unsafe { callback(user_data.0, &storage.event) };
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => break code_of(&error),
            Err(_) => break missive_result::MISSIVE_ERR_PANIC,
        }
    };
    if !stop.load(Ordering::Acquire) {
        let closed = missive_event::closed(ended);
        // SAFETY: as above.
        unsafe { callback(user_data.0, &closed) };
    }
}

/// Subscribes `device` of `user` and delivers its events to `callback` on a thread Missive
/// starts for this subscription; writes the handle to `*out`.
///
/// Threading rules: `callback(user_data, event)` runs on that thread only, one event at a time,
/// in stream order, never concurrently with itself. It may call any Missive function (send,
/// mark read, ...) except `missive_subscription_free` of its own subscription, which returns
/// `MISSIVE_ERR_BUSY` there. It should return promptly (a slow callback makes the subscription
/// lag: it then catches up from storage) and must not unwind (throw) into Missive. `user_data`
/// is passed through untouched and must be usable from that thread. When the stream ends by
/// itself (engine closed, device subscribed again, a storage error) the callback gets one
/// `MISSIVE_EVENT_CLOSED` event with the reason in `code`, and the thread ends.
///
/// Ownership: `event` and everything it points to are valid only during the callback. Free the
/// handle with `missive_subscription_free`: it stops the thread and waits for a running
/// callback to return; after it returns the callback is never called again, so `user_data` may
/// be released.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT` (`engine`, `callback`, `out`), `_INVALID_HANDLE`,
/// `_CLOSED`, `_OTHER` (the thread could not be started).
///
/// # Safety
/// `engine` NULL or from `missive_engine_open`; `callback` NULL or a function safe to call from
/// another thread with `user_data`; `out` NULL or a writable `missive_subscription *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_subscribe_callback(
    engine: *mut missive_engine,
    user: u64,
    device: u32,
    callback: missive_event_callback,
    user_data: *mut c_void,
    out: *mut *mut missive_subscription,
) -> missive_result {
    guard("missive_subscribe_callback", || {
        // SAFETY: the caller promises `out` is NULL or writable.
        let out = unsafe { Out::new(out, "out") }?;
        let callback = callback.ok_or_else(|| Failure::null("callback"))?;
        let engine = missive_engine::get(engine)?;
        let live = engine.engine.subscribe(UserId(user), DeviceId(device))?;
        let stop = Arc::new(AtomicBool::new(false));
        let user_data = UserData(user_data);
        let thread = std::thread::Builder::new()
            .name(format!("missive-sub-{user}-{device}"))
            .spawn({
                let stop = Arc::clone(&stop);
                move || run(live, callback, user_data, stop)
            })
            .map_err(|error| {
                Failure::new(
                    missive_result::MISSIVE_ERR_OTHER,
                    format!("starting the callback thread: {error}"),
                )
            })?;
        out.write(handle::share(missive_subscription {
            magic: handle::magic::<missive_subscription>(),
            mode: Mode::Callback(Runner {
                stop,
                thread: Mutex::new(Some(thread)),
            }),
        }));
        Ok(())
    })
}

fn stop_runner(runner: &Runner) {
    runner.stop.store(true, Ordering::Release);
    if let Some(thread) = runner.thread.lock().take() {
        // A panic on the thread was caught there; nothing to report.
        let _ = thread.join();
    }
}

/// Ends the subscription and frees it. For a callback subscription, stops its thread first and
/// waits for a running callback to return.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE` (a double free is caught and changes
/// nothing), `_BUSY` (called from the subscription's own callback; nothing changed).
///
/// Threads: any (but not its own callback); a `missive_subscription_next` running on another
/// thread finishes first, and its event's pointers die with the subscription.
///
/// # Safety
/// `sub` must be NULL or a pointer from `missive_subscribe` / `missive_subscribe_callback`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_subscription_free(
    sub: *mut missive_subscription,
) -> missive_result {
    guard("missive_subscription_free", || {
        let ptr = sub.cast_const();
        let peek = handle::shared(ptr, "sub")?;
        if let Mode::Callback(runner) = &peek.mode
            && RUNNER_OF_THIS_THREAD.with(Cell::get) == Runner::id(&runner.stop)
        {
            return Err(Failure::new(
                missive_result::MISSIVE_ERR_BUSY,
                "a subscription cannot be freed from its own callback",
            ));
        }
        drop(peek);
        let sub = handle::release(ptr, "sub")?;
        if let Mode::Callback(runner) = &sub.mode {
            stop_runner(runner);
        }
        Ok(())
    })
}

/// Writes whether `user` is online (has a live subscription) or when they were last seen to
/// `*out`.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`. Threads: any.
///
/// # Safety
/// `engine` NULL or from `missive_engine_open`; `out` NULL or a writable `missive_presence`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_presence_get(
    engine: *mut missive_engine,
    user: u64,
    out: *mut missive_presence,
) -> missive_result {
    guard("missive_presence_get", || {
        // SAFETY: the caller promises `out` is NULL or writable.
        let out = unsafe { Out::new(out, "out") }?;
        let engine = missive_engine::get(engine)?;
        out.write(engine.engine.presence(UserId(user)).into());
        Ok(())
    })
}

impl Drop for missive_subscription {
    fn drop(&mut self) {
        // Freed without `missive_subscription_free` stopping it (cannot happen through the C
        // API, but keep the thread from outliving its handle anyway).
        if let Mode::Callback(runner) = &self.mode {
            runner.stop.store(true, Ordering::Release);
        }
    }
}
