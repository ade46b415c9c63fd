#!/usr/bin/env python3
"""Missive from Python through ctypes: the same chat as chat.c.

Alice and Bob chat 1:1, Bob's phone polls and sends receipts, Alice's phone receives them through
a callback on a thread Missive runs, then a group with Carol.

    MISSIVE_LIB=/usr/local/lib/libmissive.so python3 chat.py [DIR]

Without MISSIVE_LIB the library is looked up by name (`ctypes.util.find_library("missive")`).
The structures below mirror ffi/include/missive.h field by field.
"""

import ctypes
import ctypes.util
import os
import shutil
import sys
import tempfile
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    byref,
    c_bool,
    c_char_p,
    c_int32,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)

# ---- the C API ------------------------------------------------------------------------------

MISSIVE_OK = 0
MISSIVE_ERR_TIMEOUT = 19
MISSIVE_EVENT_MESSAGE = 1
MISSIVE_EVENT_RECEIPT = 2
MISSIVE_EVENT_CLOSED = 8
MISSIVE_RECEIPT_READ = 2
MISSIVE_HISTORY_LATEST = 1
MISSIVE_CONTENT_SYSTEM = 6
MISSIVE_ROLE_ADMIN = 2


class ChatId(Structure):
    _fields_ = [("hi", c_uint64), ("lo", c_uint64)]


class Config(Structure):
    _fields_ = [
        ("durability", c_uint32),
        ("durability_interval_ms", c_uint64),
        ("shards", c_uint32),
        ("segment_window_ms", c_uint64),
        ("segment_bytes_max", c_uint64),
        ("retention_ms", c_uint64),
        ("group_members_max", c_uint32),
        ("body_bytes_max", c_uint32),
        ("media_ref_bytes_max", c_uint32),
        ("queue_capacity", c_uint32),
        ("checkpoint_interval_ms", c_uint64),
        ("retention_interval_ms", c_uint64),
        ("dedup_window_ms", c_uint64),
        ("clock", c_uint32),
        ("clock_start_ms", c_uint64),
    ]


class Sent(Structure):
    _fields_ = [
        ("chat", ChatId),
        ("seq", c_uint64),
        ("timestamp_ms", c_uint64),
        ("duplicate", c_bool),
    ]


class Message(Structure):
    _fields_ = [
        ("chat", ChatId),
        ("seq", c_uint64),
        ("sender", c_uint64),
        ("sender_device", c_uint32),
        ("kind", c_uint32),
        ("client_msg_id", c_uint8 * 16),
        ("timestamp_ms", c_uint64),
        ("ttl_ms", c_uint64),
        ("reply_to", c_uint64),
        ("deleted", c_bool),
        ("body", POINTER(c_uint8)),
        ("body_len", c_size_t),
        ("media", POINTER(c_uint8)),
        ("media_len", c_size_t),
    ]

    def text(self):
        return ctypes.string_at(self.body, self.body_len).decode() if self.body_len else ""


class MessageList(Structure):
    _fields_ = [("messages", POINTER(Message)), ("len", c_size_t)]


class Member(Structure):
    _fields_ = [("user", c_uint64), ("role", c_uint32)]


class MemberList(Structure):
    _fields_ = [("members", POINTER(Member)), ("len", c_size_t)]


class ReceiptCounts(Structure):
    _fields_ = [("recipients", c_uint32), ("delivered", c_uint32), ("read", c_uint32)]


class Presence(Structure):
    _fields_ = [("online", c_bool), ("has_last_seen", c_bool), ("last_seen_ms", c_uint64)]


class Event(Structure):
    _fields_ = [
        ("kind", c_uint32),
        ("chat", ChatId),
        ("message", Message),
        ("user", c_uint64),
        ("device", c_uint32),
        ("receipt_kind", c_uint32),
        ("seq", c_uint64),
        ("timestamp_ms", c_uint64),
        ("group_op", c_uint32),
        ("users", POINTER(c_uint64)),
        ("users_len", c_size_t),
        ("ttl_ms", c_uint64),
        ("typing", c_bool),
        ("presence", Presence),
        ("code", c_int32),
    ]


class Stats(Structure):
    _fields_ = [
        (name, c_uint64)
        for name in (
            "sends duplicate_sends receipts deletes group_changes bytes_appended "
            "records_applied batches_applied checkpoints segments_expired background_errors "
            "catch_ups subscriptions users_online events_published events_missed "
            "subscriptions_lagging lags queue_depth_max open_log_ms open_index_ms "
            "opened_replayed opened_torn_bytes log_batches log_records log_bytes_written "
            "fsyncs scrubbed_bytes scrub_errors"
        ).split()
    ] + [("opened_from_checkpoint", c_bool), ("scrub_done", c_bool)]


EventCallback = CFUNCTYPE(None, c_void_p, POINTER(Event))


def load():
    path = os.environ.get("MISSIVE_LIB") or ctypes.util.find_library("missive")
    if not path:
        sys.exit("libmissive not found: set MISSIVE_LIB to its path")
    lib = ctypes.CDLL(path)
    engine, sub = c_void_p, c_void_p
    signatures = {
        "missive_config_default": [POINTER(Config)],
        "missive_engine_open": [c_char_p, POINTER(Config), POINTER(engine)],
        "missive_engine_close": [engine],
        "missive_engine_free": [engine],
        "missive_engine_stats": [engine, POINTER(Stats)],
        "missive_chat_direct": [c_uint64, c_uint64, POINTER(ChatId)],
        "missive_send": [engine, c_uint64, c_uint32, ChatId, c_char_p, c_char_p, c_size_t,
                         c_void_p, POINTER(Sent)],
        "missive_history": [engine, c_uint64, ChatId, c_uint32, c_uint64, c_size_t,
                            POINTER(POINTER(MessageList))],
        "missive_message_list_free": [POINTER(MessageList)],
        "missive_unread": [engine, c_uint64, ChatId, POINTER(c_uint64)],
        "missive_mark_delivered": [engine, c_uint64, c_uint32, ChatId, c_uint64,
                                   POINTER(c_uint64)],
        "missive_mark_read": [engine, c_uint64, c_uint32, ChatId, c_uint64, POINTER(c_uint64)],
        "missive_message_status": [engine, c_uint64, ChatId, c_uint64, POINTER(ReceiptCounts),
                                   c_void_p],
        "missive_group_create": [engine, c_uint64, POINTER(c_uint64), c_size_t,
                                 POINTER(ChatId)],
        "missive_group_promote": [engine, c_uint64, ChatId, c_uint64],
        "missive_group_leave": [engine, c_uint64, ChatId],
        "missive_group_members": [engine, c_uint64, ChatId, POINTER(POINTER(MemberList))],
        "missive_member_list_free": [POINTER(MemberList)],
        "missive_subscribe": [engine, c_uint64, c_uint32, POINTER(sub)],
        "missive_subscribe_callback": [engine, c_uint64, c_uint32, EventCallback, c_void_p,
                                       POINTER(sub)],
        "missive_subscription_next": [sub, c_uint32, POINTER(Event)],
        "missive_subscription_free": [sub],
        "missive_expire": [engine, c_uint64, c_void_p],
    }
    for name, args in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = c_int32
    for name in ("missive_version", "missive_last_error_message"):
        getattr(lib, name).restype = c_char_p
    lib.missive_result_name.argtypes = [c_int32]
    lib.missive_result_name.restype = c_char_p
    return lib


lib = load()


class MissiveError(Exception):
    pass


def must(result, what):
    if result != MISSIVE_OK:
        raise MissiveError(
            f"{what}: {lib.missive_result_name(result).decode()} "
            f"({lib.missive_last_error_message().decode()})"
        )


# ---- the chat -------------------------------------------------------------------------------

ALICE, BOB, CAROL, PHONE = 1, 2, 3, 0

_print_lock = threading.Lock()


def say(*parts):
    """print, but whole lines only: the callback thread prints too."""
    with _print_lock:
        sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
        sys.stdout.flush()

NAMES = {ALICE: "Alice", BOB: "Bob", CAROL: "Carol"}


def msg_id(sender, n):
    return sender.to_bytes(8, "little") + n.to_bytes(8, "little")


def send(engine, sender, chat, n, text):
    sent = Sent()
    body = text.encode()
    must(lib.missive_send(engine, sender, PHONE, chat, msg_id(sender, n), body, len(body), None,
                          byref(sent)), "missive_send")
    say(f'{NAMES[sender]} sent "{text}" (seq {sent.seq})')
    return sent


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="missive-py-")
    say(f"Missive {lib.missive_version().decode()} from Python, storage in {directory}")
    config = Config()
    must(lib.missive_config_default(byref(config)), "missive_config_default")
    config.group_members_max = 16
    engine = c_void_p()
    must(lib.missive_engine_open(directory.encode(), byref(config), byref(engine)),
         "missive_engine_open")

    # Alice's phone: a callback on Missive's thread (ctypes takes the GIL for it).
    receipts = []
    got_receipts = threading.Event()

    def alice_phone(_user_data, event_ptr):
        event = event_ptr.contents
        if event.kind == MISSIVE_EVENT_RECEIPT:
            what = "read" if event.receipt_kind == MISSIVE_RECEIPT_READ else "received"
            say(f"  [Alice's phone] {NAMES[event.user]} {what} up to seq {event.seq}")
            receipts.append((event.receipt_kind, event.seq))
            if len(receipts) >= 2:
                got_receipts.set()
        elif event.kind == MISSIVE_EVENT_MESSAGE:
            say(f"  [Alice's phone] {NAMES.get(event.message.sender)}: "
                  f"{event.message.text()}")

    callback = EventCallback(alice_phone)  # keep it alive until the subscription is freed
    alice_sub, bob_phone = c_void_p(), c_void_p()
    must(lib.missive_subscribe_callback(engine, ALICE, PHONE, callback, None, byref(alice_sub)),
         "missive_subscribe_callback")
    must(lib.missive_subscribe(engine, BOB, PHONE, byref(bob_phone)), "missive_subscribe")

    # 1:1.
    direct = ChatId()
    must(lib.missive_chat_direct(ALICE, BOB, byref(direct)), "missive_chat_direct")
    hi = send(engine, ALICE, direct, 1, "Hi Bob!")
    retry = Sent()
    must(lib.missive_send(engine, ALICE, PHONE, direct, msg_id(ALICE, 1), b"Hi Bob!", 7, None,
                          byref(retry)), "retry")
    assert retry.duplicate and retry.seq == hi.seq
    say(f"a retry stored nothing: duplicate={retry.duplicate}, seq {retry.seq}")

    event = Event()
    while True:
        must(lib.missive_subscription_next(bob_phone, 2000, byref(event)),
             "missive_subscription_next")
        if event.kind == MISSIVE_EVENT_MESSAGE:
            break
    text = event.message.text()
    say(f"  [Bob's phone] {NAMES[event.message.sender]}: {text}")
    assert text == "Hi Bob!"
    unread = c_uint64()
    must(lib.missive_unread(engine, BOB, direct, byref(unread)), "missive_unread")
    say(f"Bob has {unread.value} unread")
    assert unread.value == 1

    # Receipts.
    must(lib.missive_mark_delivered(engine, BOB, PHONE, direct, event.message.seq, None),
         "missive_mark_delivered")
    must(lib.missive_mark_read(engine, BOB, PHONE, direct, event.message.seq, None),
         "missive_mark_read")
    assert got_receipts.wait(10), f"Alice's phone got {receipts}"
    counts = ReceiptCounts()
    must(lib.missive_message_status(engine, ALICE, direct, hi.seq, byref(counts), None),
         "missive_message_status")
    say(f'"Hi Bob!": delivered to {counts.delivered} of {counts.recipients}, '
          f"read by {counts.read}")
    assert (counts.recipients, counts.delivered, counts.read) == (1, 1, 1)

    # A group.
    members = (c_uint64 * 2)(BOB, CAROL)
    group = ChatId()
    must(lib.missive_group_create(engine, ALICE, members, 2, byref(group)),
         "missive_group_create")
    say("Alice created a group with Bob and Carol")
    dinner = send(engine, ALICE, group, 2, "Dinner at 8?")
    send(engine, CAROL, group, 1, "Yes!")
    must(lib.missive_mark_read(engine, BOB, PHONE, group, dinner.seq, None), "missive_mark_read")
    must(lib.missive_message_status(engine, ALICE, group, dinner.seq, byref(counts), None),
         "missive_message_status")
    say(f'"Dinner at 8?": delivered to {counts.delivered} of {counts.recipients}, '
          f"read by {counts.read}")
    assert (counts.recipients, counts.read) == (2, 2)
    must(lib.missive_group_promote(engine, ALICE, group, BOB), "missive_group_promote")
    must(lib.missive_group_leave(engine, CAROL, group), "missive_group_leave")

    who = POINTER(MemberList)()
    must(lib.missive_group_members(engine, BOB, group, byref(who)), "missive_group_members")
    now = [(who.contents.members[i].user, who.contents.members[i].role)
           for i in range(who.contents.len)]
    must(lib.missive_member_list_free(who), "missive_member_list_free")
    say("members now:", ", ".join(
        NAMES[u] + (" (admin)" if r == MISSIVE_ROLE_ADMIN else "") for u, r in now))
    assert now == [(ALICE, MISSIVE_ROLE_ADMIN), (BOB, MISSIVE_ROLE_ADMIN)]

    history = POINTER(MessageList)()
    must(lib.missive_history(engine, BOB, group, MISSIVE_HISTORY_LATEST, 0, 50, byref(history)),
         "missive_history")
    lines = []
    for i in range(history.contents.len):
        m = history.contents.messages[i]
        system = "[system] " if m.kind == MISSIVE_CONTENT_SYSTEM else ""
        lines.append(f"  {m.seq} {system}{NAMES[m.sender]}: {m.text()}")
    must(lib.missive_message_list_free(history), "missive_message_list_free")
    say(f"group history ({len(lines)}):")
    say("\n".join(lines))
    assert len(lines) == 5 and "Dinner at 8?" in lines[1]

    must(lib.missive_expire(engine, 0, None), "missive_expire")
    stats = Stats()
    must(lib.missive_engine_stats(engine, byref(stats)), "missive_engine_stats")
    say(f"stats: {stats.sends} sends ({stats.duplicate_sends} duplicate), "
          f"{stats.receipts} receipts, {stats.group_changes} group changes")
    assert stats.sends == 3 and stats.duplicate_sends == 1

    # Close, then free everything (the callback is never called after its free returns).
    must(lib.missive_engine_close(engine), "missive_engine_close")
    must(lib.missive_subscription_free(alice_sub), "missive_subscription_free")
    must(lib.missive_subscription_free(bob_phone), "missive_subscription_free")
    must(lib.missive_engine_free(engine), "missive_engine_free")
    if len(sys.argv) <= 1:
        shutil.rmtree(directory)
    say("done")


if __name__ == "__main__":
    main()
