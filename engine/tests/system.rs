//! `Engine::send_system`: the application's own system messages (a missed call, say). Only of
//! kind `System`, only by a member of the chat, stored once per `client_msg_id`, from the
//! system device, and delivered and counted like any message.

mod common;

use bytes::Bytes;
use common::{T0, open_sim, small_config};
use missive::log::{ChatId, DeviceId, SimStorage, UserId};
use missive::{ContentKind, Error, History, ManualClock, Outgoing, SYSTEM_DEVICE, To};

const ALICE: UserId = UserId(1);
const BOB: UserId = UserId(2);
const EVE: UserId = UserId(3);

fn missed_call(to: To, id: u8) -> Outgoing {
    let mut message = Outgoing::text(
        to,
        [id; 16],
        Bytes::from_static(b"{\"op\":\"missed_call\"}"),
    );
    message.kind = ContentKind::System;
    message
}

#[test]
fn system_messages_are_stored_once_from_the_system_device() {
    let (sim, clock) = (SimStorage::new(), ManualClock::new(T0));
    let engine = open_sim(&sim, small_config(&clock));
    let chat = ChatId::direct(ALICE, BOB);

    let first = engine
        .send_system(ALICE, missed_call(To::User(BOB), 1))
        .unwrap();
    assert_eq!((first.chat, first.seq.0, first.duplicate), (chat, 1, false));
    // A retry with the same id is the same message.
    let again = engine
        .send_system(ALICE, missed_call(To::User(BOB), 1))
        .unwrap();
    assert_eq!((again.seq, again.duplicate), (first.seq, true));

    for user in [ALICE, BOB] {
        let history = engine.history(user, chat, History::Latest(10)).unwrap();
        assert_eq!(history.len(), 1);
        let message = &history[0].message;
        assert_eq!(message.content, ContentKind::System);
        assert_eq!(message.sender, ALICE);
        assert_eq!(message.sender_device, SYSTEM_DEVICE);
        assert_eq!(&message.body[..], b"{\"op\":\"missed_call\"}");
    }
    // Bob has not read it; Alice, whose event it is, has.
    assert_eq!(engine.unread(BOB, chat).unwrap(), 1);
    assert_eq!(engine.unread(ALICE, chat).unwrap(), 0);
    engine.close().unwrap();
}

#[test]
fn only_system_kinds_by_members() {
    let (sim, clock) = (SimStorage::new(), ManualClock::new(T0));
    let engine = open_sim(&sim, small_config(&clock));
    let group = engine.create_group(ALICE, &[BOB]).unwrap();

    // Not of kind System: refused (a person's message goes through `send`).
    let text = Outgoing::text(To::Chat(group), [9; 16], Bytes::from_static(b"hi"));
    assert!(matches!(
        engine.send_system(ALICE, text),
        Err(Error::InvalidArgument(_))
    ));
    // Not a member: refused.
    assert!(matches!(
        engine.send_system(EVE, missed_call(To::Chat(group), 2)),
        Err(Error::NotAMember { .. })
    ));
    // `send` still refuses the System kind and the system device.
    assert!(matches!(
        engine.send(ALICE, DeviceId(0), missed_call(To::Chat(group), 3)),
        Err(Error::InvalidArgument(_))
    ));
    let head = engine
        .history(ALICE, group, History::Latest(10))
        .unwrap()
        .len();
    engine
        .send_system(BOB, missed_call(To::Chat(group), 4))
        .unwrap();
    assert_eq!(
        engine
            .history(ALICE, group, History::Latest(10))
            .unwrap()
            .len(),
        head + 1
    );
    engine.close().unwrap();
}
