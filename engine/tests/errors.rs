//! Bad input changes nothing: every refused call returns its typed [`Error`] and leaves the
//! stored state — histories, chat lists, unread counts, watermarks, members, the write counters
//! and the next seq of every chat — exactly as it was. Covers oversized payloads, the system
//! kind and device, bad reply-tos, non-members sending, reading, marking, deleting, typing and
//! changing settings, deleting someone else's message, every group authorization rule and the
//! group cap, calls after `close` (`Error::Closed`), and a failed fsync (`Error::Poisoned`:
//! nothing more is acknowledged, nothing acknowledged is lost).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{T0, open_sim, small_config, snapshot};
use missive::log::storage::{Damage, Fault, FaultOp};
use missive::log::{ChatId, DeviceId, Seq, SimStorage, UserId};
use missive::{
    Clock, ContentKind, Engine, Error, Event, History, ManualClock, Outgoing, ReceiptKind,
    SYSTEM_DEVICE, To,
};

const ALICE: UserId = UserId(1);
const BOB: UserId = UserId(2);
const CAROL: UserId = UserId(3);
const DAVE: UserId = UserId(4);
const EVE: UserId = UserId(5);
const USERS: [UserId; 5] = [ALICE, BOB, CAROL, DAVE, EVE];
const PHONE: DeviceId = DeviceId(0);
const TABLET: DeviceId = DeviceId(1);

/// A world to break things in: Alice and Bob talk 1:1; Alice (admin), Bob and Carol are a
/// group capped at 3 members; Dave and Eve are outsiders; a few receipts and a delete.
struct World {
    engine: Engine,
    sim: SimStorage,
    clock: ManualClock,
    direct: ChatId,
    group: ChatId,
    next_id: u8,
}

impl World {
    fn new() -> World {
        let clock = ManualClock::new(T0);
        let sim = SimStorage::new();
        let mut config = small_config(&clock);
        config.group_cap = 3;
        config.body_bytes_max = 32;
        config.media_ref_bytes_max = 8;
        let engine = open_sim(&sim, config);
        let mut world = World {
            engine,
            sim,
            clock,
            direct: ChatId::direct(ALICE, BOB),
            group: ChatId::group(0),
            next_id: 0,
        };
        world.group = world.engine.create_group(ALICE, &[BOB, CAROL]).unwrap();
        for (from, to) in [(ALICE, To::User(BOB)), (BOB, To::User(ALICE))] {
            world.send(from, to, "hello").unwrap();
        }
        let group = To::Chat(world.group);
        for from in [ALICE, BOB, CAROL] {
            world.send(from, group, "hi all").unwrap();
        }
        let last = world.send(BOB, group, "oops").unwrap();
        world.engine.delete(BOB, world.group, last).unwrap();
        let engine = &world.engine;
        engine
            .mark(BOB, PHONE, world.direct, ReceiptKind::Read, Seq(1))
            .unwrap();
        engine
            .mark(CAROL, TABLET, world.group, ReceiptKind::Delivered, Seq(3))
            .unwrap();
        world
    }

    /// Drops the engine (every handle and subscription must be gone) and opens it again, after
    /// a power cut if `cut` says so.
    fn reopen(&mut self, cut: Option<Damage>) {
        // A stand-in on a scratch disk, so that the old engine can be dropped before reopening.
        let stand_in = open_sim(&SimStorage::new(), small_config(&self.clock));
        if cut.is_some() {
            // The process dies: nothing it would still write reaches the disk.
            self.sim.power_off_after(0);
        }
        drop(std::mem::replace(&mut self.engine, stand_in));
        if let Some(damage) = cut {
            self.sim.power_cut(damage);
        }
        let mut config = small_config(&self.clock);
        config.group_cap = 3;
        config.body_bytes_max = 32;
        config.media_ref_bytes_max = 8;
        self.engine = open_sim(&self.sim, config);
    }

    fn id(&mut self) -> [u8; 16] {
        self.next_id += 1;
        [self.next_id; 16]
    }

    fn send(&mut self, from: UserId, to: To, body: &'static str) -> Result<Seq, Error> {
        let id = self.id();
        let sent = self
            .engine
            .send(from, PHONE, Outgoing::text(to, id, body))?;
        Ok(sent.seq)
    }

    /// Runs `call`, which must fail as `expected` says, and checks that nothing observable
    /// changed, including the seq the next message of each chat gets.
    fn refused<T: std::fmt::Debug>(
        &mut self,
        what: &str,
        expected: impl Fn(&Error) -> bool,
        call: impl FnOnce(&Engine) -> Result<T, Error>,
    ) {
        let before = snapshot(&self.engine, &USERS, 2);
        match call(&self.engine) {
            Err(error) if expected(&error) => {}
            other => panic!("{what}: unexpected outcome {other:?}"),
        }
        let after = snapshot(&self.engine, &USERS, 2);
        assert_eq!(before, after, "{what}: the refused call changed the state");
    }

    /// The seq the next message of each chat gets (sending one, so call it last).
    fn next_seqs(&mut self) -> (u64, u64) {
        let direct = self.send(ALICE, To::User(BOB), "next").unwrap();
        let group = self.send(ALICE, To::Chat(self.group), "next").unwrap();
        (direct.0, group.0)
    }
}

fn message(to: To, id: u8, body: &[u8]) -> Outgoing {
    Outgoing::text(to, [id; 16], Bytes::copy_from_slice(body))
}

#[test]
fn bad_sends_change_nothing() {
    let mut w = World::new();
    let (direct, group) = (To::User(BOB), To::Chat(w.group));
    for to in [direct, group] {
        w.refused(
            "body too large",
            |e| {
                matches!(
                    e,
                    Error::PayloadTooLarge {
                        what: "body",
                        len: 33,
                        max: 32
                    }
                )
            },
            |e| e.send(ALICE, PHONE, message(to, 100, &[7; 33])),
        );
        w.refused(
            "media too large",
            |e| matches!(e, Error::PayloadTooLarge { len: 9, max: 8, .. }),
            |e| {
                let mut out = message(to, 101, b"photo");
                out.kind = ContentKind::Image;
                out.media = Bytes::from_static(&[1; 9]);
                e.send(ALICE, PHONE, out)
            },
        );
        w.refused(
            "system kind",
            |e| matches!(e, Error::InvalidArgument(_)),
            |e| {
                let mut out = message(to, 102, b"I am the engine");
                out.kind = ContentKind::System;
                e.send(ALICE, PHONE, out)
            },
        );
        w.refused(
            "system device",
            |e| matches!(e, Error::InvalidArgument(_)),
            |e| e.send(ALICE, SYSTEM_DEVICE, message(to, 103, b"spoof")),
        );
        for reply in [0, 50] {
            w.refused(
                "reply to a message that does not exist",
                |e| matches!(e, Error::InvalidArgument(_)),
                |e| {
                    let mut out = message(to, 104, b"re:");
                    out.reply_to = Some(Seq(reply));
                    e.send(ALICE, PHONE, out)
                },
            );
        }
        // A retry of a refused send is not a duplicate of anything: it stores a message.
        let retry = w
            .engine
            .send(ALICE, PHONE, message(to, 104, b"re:"))
            .unwrap();
        assert!(!retry.duplicate);
    }
    // Oversized payloads are refused even when the id was used before (no lookup first).
    w.refused(
        "oversized retry",
        |e| matches!(e, Error::PayloadTooLarge { .. }),
        |e| e.send(ALICE, PHONE, message(direct, 104, &[0; 40])),
    );
    let (g, d) = (w.group, ChatId::direct(BOB, CAROL));
    w.refused(
        "outsider sends to the group",
        |e| matches!(e, Error::NotAMember { user, chat } if *user == DAVE && *chat == g),
        |e| e.send(DAVE, PHONE, message(To::Chat(g), 105, b"let me in")),
    );
    w.refused(
        "outsider sends into someone else's 1:1 chat",
        |e| matches!(e, Error::NotAMember { user, chat } if *user == DAVE && *chat == d),
        |e| e.send(DAVE, PHONE, message(To::Chat(d), 106, b"psst")),
    );
    w.refused(
        "send to a group that does not exist",
        |e| matches!(e, Error::NoSuchChat { .. }),
        |e| {
            e.send(
                ALICE,
                PHONE,
                message(To::Chat(ChatId::group(12345)), 107, b"?"),
            )
        },
    );
    // Nothing refused took a seq: the next messages follow the last stored ones.
    let heads = (
        w.engine
            .history(ALICE, w.direct, History::Latest(1))
            .unwrap()[0]
            .message
            .seq
            .0,
        w.engine.history(ALICE, g, History::Latest(1)).unwrap()[0]
            .message
            .seq
            .0,
    );
    assert_eq!(w.next_seqs(), (heads.0 + 1, heads.1 + 1));
}

#[test]
fn outsiders_cannot_read_mark_delete_type_or_configure() {
    let mut w = World::new();
    let (g, d) = (w.group, w.direct);
    let mut bobs_phone = w.engine.subscribe(BOB, PHONE).unwrap();
    while bobs_phone.try_next().unwrap().is_some() {}
    let not_member =
        |who: UserId| move |e: &Error| matches!(e, Error::NotAMember { user, .. } if *user == who);
    for chat in [g, d] {
        w.refused("outsider history", not_member(DAVE), |e| {
            e.history(DAVE, chat, History::Latest(10))
        });
        w.refused("outsider message", not_member(DAVE), |e| {
            e.message(DAVE, chat, Seq(1))
        });
        w.refused("outsider unread", not_member(DAVE), |e| {
            e.unread(DAVE, chat)
        });
        w.refused("outsider members", not_member(DAVE), |e| {
            e.members(DAVE, chat)
        });
        w.refused("outsider status", not_member(DAVE), |e| {
            e.status(DAVE, chat, Seq(1))
        });
        for kind in [ReceiptKind::Delivered, ReceiptKind::Read] {
            w.refused("outsider receipt", not_member(DAVE), |e| {
                e.mark(DAVE, PHONE, chat, kind, Seq(2))
            });
        }
        w.refused("outsider delete", not_member(DAVE), |e| {
            e.delete(DAVE, chat, Seq(1))
        });
        w.refused("outsider typing", not_member(DAVE), |e| {
            e.typing(DAVE, PHONE, chat, true)
        });
        w.refused("outsider sets the timer", not_member(DAVE), |e| {
            e.set_chat_ttl(DAVE, chat, 1000)
        });
    }
    // The outsider's typing reached no one.
    assert_eq!(bobs_phone.try_next().unwrap(), None);
    // Someone who left is an outsider too.
    w.engine.leave(CAROL, g).unwrap();
    while bobs_phone.try_next().unwrap().is_some() {}
    w.refused("leaver history", not_member(CAROL), |e| {
        e.history(CAROL, g, History::Latest(10))
    });
    w.refused("leaver receipt", not_member(CAROL), |e| {
        e.mark(CAROL, PHONE, g, ReceiptKind::Read, Seq(5))
    });
    w.refused("leaver sends", not_member(CAROL), |e| {
        e.send(CAROL, PHONE, message(To::Chat(g), 99, b"still here?"))
    });
    w.refused("leaver deletes her own message", not_member(CAROL), |e| {
        e.delete(CAROL, g, Seq(4))
    });
    w.refused("leaver typing", not_member(CAROL), |e| {
        e.typing(CAROL, PHONE, g, true)
    });
    assert_eq!(bobs_phone.try_next().unwrap(), None);
    // A direct chat's two users are always its members, even with no message yet.
    assert_eq!(w.engine.unread(DAVE, ChatId::direct(DAVE, EVE)).unwrap(), 0);
}

#[test]
fn only_the_sender_deletes_and_only_what_exists() {
    let mut w = World::new();
    let g = w.group;
    // Seq 2 is Alice's "hi all", 3 Bob's.
    w.refused(
        "delete someone else's message",
        |e| matches!(e, Error::NotSender { user, seq, .. } if *user == BOB && *seq == Seq(2)),
        |e| e.delete(BOB, g, Seq(2)),
    );
    w.refused(
        "an admin deletes someone else's message",
        |e| matches!(e, Error::NotSender { .. }),
        |e| e.delete(ALICE, g, Seq(3)),
    );
    for seq in [0, 99] {
        w.refused(
            "delete a message that does not exist",
            |e| matches!(e, Error::NoSuchMessage { .. }),
            |e| e.delete(ALICE, g, Seq(seq)),
        );
    }
    w.refused(
        "status for someone else's message (not an admin)",
        |e| matches!(e, Error::NotSender { .. }),
        |e| e.status(CAROL, g, Seq(2)),
    );
    // A disappeared message cannot be deleted: it no longer exists.
    let mut out = message(To::User(BOB), 120, b"gone soon");
    out.ttl_ms = Some(1_000);
    let sent = w.engine.send(ALICE, PHONE, out).unwrap();
    w.clock.advance(1_000);
    w.refused(
        "delete an expired message",
        |e| matches!(e, Error::NoSuchMessage { .. }),
        |e| e.delete(ALICE, sent.chat, sent.seq),
    );
    // Deleting twice, and receipts that do not move a watermark, store nothing.
    let before = snapshot(&w.engine, &USERS, 2);
    w.engine.delete(BOB, g, Seq(5)).unwrap();
    let watermark = w
        .engine
        .mark(CAROL, TABLET, g, ReceiptKind::Delivered, Seq(2))
        .unwrap();
    assert_eq!(
        watermark,
        Seq(3),
        "a lower receipt returns the watermark in force"
    );
    assert_eq!(before, snapshot(&w.engine, &USERS, 2));
}

#[test]
fn group_rules_are_enforced() {
    let mut w = World::new();
    let g = w.group;
    let not_admin =
        |who: UserId| move |e: &Error| matches!(e, Error::NotAdmin { user, .. } if *user == who);
    let not_member =
        |who: UserId| move |e: &Error| matches!(e, Error::NotAMember { user, .. } if *user == who);
    w.refused("a member adds", not_admin(BOB), |e| {
        e.add_members(BOB, g, &[DAVE])
    });
    w.refused("an outsider adds", not_member(DAVE), |e| {
        e.add_members(DAVE, g, &[EVE])
    });
    w.refused("a member removes another", not_admin(BOB), |e| {
        e.remove_member(BOB, g, CAROL)
    });
    w.refused("an outsider removes", not_member(DAVE), |e| {
        e.remove_member(DAVE, g, BOB)
    });
    w.refused("remove an outsider", not_member(EVE), |e| {
        e.remove_member(ALICE, g, EVE)
    });
    w.refused("an outsider leaves", not_member(DAVE), |e| e.leave(DAVE, g));
    w.refused("a member promotes", not_admin(BOB), |e| {
        e.promote(BOB, g, CAROL)
    });
    w.refused("a member demotes", not_admin(CAROL), |e| {
        e.demote(CAROL, g, ALICE)
    });
    w.refused("promote an outsider", not_member(DAVE), |e| {
        e.promote(ALICE, g, DAVE)
    });
    w.refused(
        "demote the last admin",
        |e| matches!(e, Error::InvalidArgument(_)),
        |e| e.demote(ALICE, g, ALICE),
    );
    // The cap is 3: Alice, Bob and Carol fill the group.
    w.refused(
        "add past the cap",
        |e| {
            matches!(
                e,
                Error::GroupFull {
                    members: 4,
                    cap: 3,
                    ..
                }
            )
        },
        |e| e.add_members(ALICE, g, &[DAVE]),
    );
    w.refused(
        "add several past the cap (none is added)",
        |e| {
            matches!(
                e,
                Error::GroupFull {
                    members: 5,
                    cap: 3,
                    ..
                }
            )
        },
        |e| e.add_members(ALICE, g, &[DAVE, EVE, BOB]),
    );
    w.refused(
        "create past the cap",
        |e| {
            matches!(
                e,
                Error::GroupFull {
                    members: 4,
                    cap: 3,
                    ..
                }
            )
        },
        |e| e.create_group(DAVE, &[EVE, ALICE, BOB, DAVE, EVE]),
    );
    let d = w.direct;
    for (what, call) in [
        ("add to a 1:1 chat", 0),
        ("remove from a 1:1 chat", 1),
        ("promote in a 1:1 chat", 2),
    ] {
        w.refused(
            what,
            |e| matches!(e, Error::InvalidArgument(_)),
            |e| match call {
                0 => e.add_members(ALICE, d, &[CAROL]),
                1 => e.remove_member(ALICE, d, BOB),
                _ => e.promote(ALICE, d, BOB),
            },
        );
    }
    let nowhere = ChatId::group(424242);
    w.refused(
        "add to no group",
        |e| matches!(e, Error::NoSuchChat { .. }),
        |e| e.add_members(ALICE, nowhere, &[BOB]),
    );
    w.refused(
        "leave no group",
        |e| matches!(e, Error::NoSuchChat { .. }),
        |e| e.leave(ALICE, nowhere),
    );
    // Adding only members already in stores nothing.
    let before = snapshot(&w.engine, &USERS, 2);
    w.engine
        .add_members(ALICE, g, &[BOB, CAROL, ALICE])
        .unwrap();
    assert_eq!(before, snapshot(&w.engine, &USERS, 2));
    // Within the cap, the same calls work.
    w.engine.remove_member(ALICE, g, CAROL).unwrap();
    w.engine.add_members(ALICE, g, &[DAVE]).unwrap();
    w.engine.promote(ALICE, g, DAVE).unwrap();
    w.engine.demote(DAVE, g, ALICE).unwrap();
    let members = w.engine.members(BOB, g).unwrap();
    assert_eq!(
        members,
        vec![
            (ALICE, missive::Role::Member),
            (BOB, missive::Role::Member),
            (DAVE, missive::Role::Admin)
        ]
    );
}

#[test]
fn everything_after_close_is_closed_and_nothing_is_lost() {
    let mut w = World::new();
    let (g, d) = (w.group, w.direct);
    let mut phone = w.engine.subscribe(CAROL, PHONE).unwrap();
    let before = snapshot(&w.engine, &USERS, 2);
    let handle = w.engine.clone();
    w.engine.close().unwrap();
    w.engine.close().unwrap(); // closing twice is fine
    let closed = |e: &Error| matches!(e, Error::Closed);
    let e = &handle;
    let results: Vec<(&str, Result<(), Error>)> = vec![
        (
            "send",
            e.send(ALICE, PHONE, message(To::User(BOB), 200, b"x"))
                .map(drop),
        ),
        ("history", e.history(ALICE, d, History::Latest(5)).map(drop)),
        ("message", e.message(ALICE, d, Seq(1)).map(drop)),
        ("chats", e.chats(ALICE).map(drop)),
        ("unread", e.unread(ALICE, d).map(drop)),
        ("status", e.status(ALICE, d, Seq(1)).map(drop)),
        ("members", e.members(ALICE, g).map(drop)),
        (
            "mark",
            e.mark(BOB, PHONE, d, ReceiptKind::Read, Seq(2)).map(drop),
        ),
        ("delete", e.delete(ALICE, d, Seq(1))),
        ("typing", e.typing(ALICE, PHONE, d, true)),
        ("chat ttl", e.set_chat_ttl(ALICE, d, 5)),
        ("create group", e.create_group(ALICE, &[BOB]).map(drop)),
        ("add", e.add_members(ALICE, g, &[DAVE])),
        ("remove", e.remove_member(ALICE, g, BOB)),
        ("leave", e.leave(BOB, g)),
        ("promote", e.promote(ALICE, g, BOB)),
        ("demote", e.demote(ALICE, g, ALICE)),
        ("subscribe", e.subscribe(ALICE, PHONE).map(drop)),
        ("expire", e.expire(w.clock.now()).map(drop)),
        ("checkpoint", e.checkpoint()),
        (
            "delivered_up_to",
            e.delivered_up_to(ALICE, PHONE, d).map(drop),
        ),
        ("read_up_to", e.read_up_to(ALICE, d).map(drop)),
    ];
    for (what, result) in results {
        assert!(
            matches!(&result, Err(error) if closed(error)),
            "{what} after close: {result:?}"
        );
    }
    // The subscription yields what it still had (its backlog), then ends.
    let ended = loop {
        match phone.next_timeout(Duration::from_secs(5)) {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("a closed subscription must end"),
            Err(error) => break error,
        }
    };
    assert!(closed(&ended), "{ended:?}");
    // Reopened, the engine shows exactly what it showed before closing.
    drop((phone, handle));
    w.reopen(None);
    let mut after = snapshot(&w.engine, &USERS, 2);
    after.writes = before.writes; // counters start again at each open
    assert_eq!(before, after);
}

#[test]
fn a_failed_fsync_refuses_writes_until_reopened_and_loses_nothing_acknowledged() {
    let mut w = World::new();
    let before = snapshot(&w.engine, &USERS, 2);
    w.sim.inject(Fault::eio(FaultOp::Sync, 0));
    let failed = w
        .engine
        .send(ALICE, PHONE, message(To::User(BOB), 150, b"lost?"));
    assert!(matches!(failed, Err(Error::Poisoned(_))), "{failed:?}");
    // The shard refuses every later write, without retrying the fsync and pretending.
    let again = w
        .engine
        .send(BOB, PHONE, message(To::User(ALICE), 151, b"anyone?"));
    assert!(matches!(again, Err(Error::Poisoned(_))), "{again:?}");
    let receipt = w
        .engine
        .mark(ALICE, PHONE, w.direct, ReceiptKind::Read, Seq(2));
    assert!(matches!(receipt, Err(Error::Poisoned(_))), "{receipt:?}");
    // Reads still answer, with what was acknowledged.
    let mut now = snapshot(&w.engine, &USERS, 2);
    now.writes = before.writes;
    assert_eq!(before, now);
    // The process dies and the power goes: only synced bytes survive.
    w.reopen(Some(Damage::DropUnsynced));
    let mut reopened = snapshot(&w.engine, &USERS, 2);
    reopened.writes = before.writes;
    assert_eq!(before, reopened, "acknowledged state after the power cut");
    // The client retries the failed send: it is stored once.
    let retry = w
        .engine
        .send(ALICE, PHONE, message(To::User(BOB), 150, b"lost?"))
        .unwrap();
    let again = w
        .engine
        .send(ALICE, PHONE, message(To::User(BOB), 150, b"lost?"))
        .unwrap();
    assert_eq!((again.seq, again.duplicate), (retry.seq, true));
    assert_eq!(retry.seq, Seq(3));
}

/// Sanity: the bodies in the world are what the snapshots compare (not all empty).
#[test]
fn the_world_has_content() {
    let w = World::new();
    let history = w
        .engine
        .history(CAROL, w.group, History::Latest(10))
        .unwrap();
    let bodies: Vec<&[u8]> = history.iter().map(|m| &m.message.body[..]).collect();
    assert_eq!(bodies.len(), 5);
    assert!(bodies[0].starts_with(b"{\"op\":\"create\""));
    assert_eq!(&bodies[1..4], [b"hi all"; 3]);
    assert!(history[4].deleted && bodies[4].is_empty());
    let mut tablet = w.engine.subscribe(CAROL, TABLET).unwrap();
    // Carol's tablet had delivered up to 3: the backlog is 4 (hers, from her phone) and 5.
    let mut seqs = Vec::new();
    while let Some(event) = tablet.try_next().unwrap() {
        if let Event::Message { message, .. } = event {
            seqs.push(message.message.seq.0);
        }
    }
    assert_eq!(seqs, [4, 5]);
}
