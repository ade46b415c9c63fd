//! A small chat between Alice, Bob and Carol, in a temporary folder.
//!
//! Alice and Bob talk 1:1 (with a reply and a retried send), Alice makes a group with both of
//! them (the engine writes a system message for it), receipts come back as "delivered to k of
//! n, read by j of n", and everyone chats there. Bob's phone and Carol's laptop are connected the whole time and
//! print what they receive live; at the end Carol reads the group's history and Bob his chat
//! list.
//!
//! ```text
//! cargo run -p missive --example chat
//! ```

use missive::log::{ChatId, DeviceId, UserId};
use missive::{
    Config, ContentKind, Engine, Event, History, MessageView, Outgoing, ReceiptKind, Subscription,
    To,
};

const ALICE: UserId = UserId(1);
const BOB: UserId = UserId(2);
const CAROL: UserId = UserId(3);
const PHONE: DeviceId = DeviceId(0);
const LAPTOP: DeviceId = DeviceId(1);

fn name(user: UserId) -> &'static str {
    match user {
        ALICE => "Alice",
        BOB => "Bob",
        CAROL => "Carol",
        _ => "someone",
    }
}

fn chat_name(chat: ChatId, group: Option<ChatId>) -> String {
    match chat.direct_users() {
        Some((a, b)) => format!("{} & {}", name(a), name(b)),
        None if Some(chat) == group => "Lunch crew".to_owned(),
        None => "a group".to_owned(),
    }
}

/// A message as one line: system messages (their body is a small JSON object such as
/// `{"op":"add","by":"1","users":["2","3"]}`) in words.
fn line(message: &MessageView) -> String {
    let m = &message.message;
    let body = String::from_utf8_lossy(&m.body);
    if message.deleted {
        return format!("#{} {}: (deleted)", m.seq.0, name(m.sender));
    }
    if m.content == ContentKind::System {
        // Only string values: splitting on quotes gives op, by and the users at fixed places.
        let parts: Vec<&str> = body.split('"').collect();
        let op = parts.get(3).copied().unwrap_or("?");
        let users: Vec<&str> = parts
            .iter()
            .skip(11)
            .step_by(2)
            .filter_map(|id| id.parse().ok().map(|id| name(UserId(id))))
            .collect();
        return format!(
            "#{} -- {} did \"{op}\" with {}",
            m.seq.0,
            name(m.sender),
            users.join(", ")
        );
    }
    let reply = m
        .reply_to
        .map_or(String::new(), |seq| format!(" (reply to #{})", seq.0));
    format!("#{} {}: {body}{reply}", m.seq.0, name(m.sender))
}

/// Prints what a connected device has received so far.
fn show_live(
    device: &str,
    subscription: &mut Subscription,
    group: Option<ChatId>,
) -> missive::Result<()> {
    while let Some(event) = subscription.try_next()? {
        let what = match event {
            Event::Message { chat, message } => {
                format!("({}) {}", chat_name(chat, group), line(&message))
            }
            Event::Receipt {
                chat,
                user,
                kind,
                up_to,
                ..
            } => format!(
                "({}) receipt: {} {kind:?} up to #{}",
                chat_name(chat, group),
                name(user),
                up_to.0
            ),
            Event::Group { op, by, users, .. } => {
                let users: Vec<&str> = users.into_iter().map(name).collect();
                format!("group change: {} {op:?} {}", name(by), users.join(", "))
            }
            Event::Typing { user, typing, .. } => {
                format!(
                    "{} {}",
                    name(user),
                    if typing {
                        "is typing..."
                    } else {
                        "stopped typing"
                    }
                )
            }
            Event::Presence { user, presence } => format!("{} is {presence:?}", name(user)),
            other => format!("{other:?}"),
        };
        println!("  [{device}] {what}");
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(dir.path(), Config::default())?;
    println!("Missive engine opened in {}", dir.path().display());

    // Bob's phone and Carol's laptop are online from the start.
    let mut bobs_phone = engine.subscribe(BOB, PHONE)?;
    let mut carols_laptop = engine.subscribe(CAROL, LAPTOP)?;

    println!("\n== Alice and Bob, 1:1 ==");
    let mut next_id = 0u8;
    let mut id = || {
        next_id += 1;
        [next_id; 16]
    };
    let hi = engine.send(
        ALICE,
        PHONE,
        Outgoing::text(To::User(BOB), id(), "Hi Bob! Lunch?"),
    )?;
    let direct = hi.chat;
    engine.typing(BOB, PHONE, direct, true)?;
    let mut answer = Outgoing::text(To::User(ALICE), id(), "Sure, 12:30 at the noodle place?");
    answer.reply_to = Some(hi.seq);
    let answer = engine.send(BOB, PHONE, answer)?;
    // Alice's client lost the answer to its send and retries: nothing is stored twice.
    let retry = engine.send(
        ALICE,
        PHONE,
        Outgoing::text(To::User(BOB), [1; 16], "Hi Bob! Lunch?"),
    )?;
    assert!(retry.duplicate && retry.seq == hi.seq);
    println!(
        "(Alice's retried send returned #{} again: stored once)",
        retry.seq.0
    );
    show_live("Bob's phone", &mut bobs_phone, None)?;
    engine.mark(ALICE, PHONE, direct, ReceiptKind::Read, answer.seq)?;
    let status = engine.status(BOB, direct, answer.seq)?;
    println!(
        "Bob's #{}: delivered to {} of {}, read by {} of {}",
        answer.seq.0,
        status.counts.delivered,
        status.counts.recipients,
        status.counts.read,
        status.counts.recipients
    );

    println!("\n== Alice makes a group with Bob and Carol ==");
    let group = engine.create_group(ALICE, &[BOB, CAROL])?;
    let invite = engine.send(
        ALICE,
        PHONE,
        Outgoing::text(To::Chat(group), id(), "Noodles at 12:30, who's in?"),
    )?;
    let counts = |engine: &Engine| -> missive::Result<String> {
        let c = engine.status(ALICE, group, invite.seq)?.counts;
        Ok(format!(
            "delivered to {} of {}, read by {} of {}",
            c.delivered, c.recipients, c.read, c.recipients
        ))
    };
    println!("Alice's invite #{}: {}", invite.seq.0, counts(&engine)?);
    show_live("Bob's phone", &mut bobs_phone, Some(group))?;
    show_live("Carol's laptop", &mut carols_laptop, Some(group))?;

    println!("\n== Receipts for Alice's invite ==");
    engine.mark(BOB, PHONE, group, ReceiptKind::Delivered, invite.seq)?;
    println!("Bob's phone has it:  {}", counts(&engine)?);
    engine.mark(CAROL, LAPTOP, group, ReceiptKind::Read, invite.seq)?;
    println!("Carol has read it:   {}", counts(&engine)?);
    for (user, status) in engine.status(ALICE, group, invite.seq)?.members {
        println!("  {:<6} {status:?}", name(user));
    }

    println!("\n== Replies ==");
    engine.typing(CAROL, LAPTOP, group, true)?;
    engine.send(CAROL, LAPTOP, Outgoing::text(To::Chat(group), id(), "Me!"))?;
    let mut photo = Outgoing::text(To::Chat(group), id(), "the menu");
    photo.kind = ContentKind::Image;
    photo.media = bytes::Bytes::from_static(b"sha256:1f0e...;size=48213");
    engine.send(BOB, PHONE, photo)?;
    // Sending reads the chat up to one's own message: both have now read the invite.
    println!("Alice's invite #{}: {}", invite.seq.0, counts(&engine)?);
    show_live("Bob's phone", &mut bobs_phone, Some(group))?;
    show_live("Carol's laptop", &mut carols_laptop, Some(group))?;

    println!("\n== The group's history, as Carol sees it ==");
    for message in engine.history(CAROL, group, History::Latest(50))? {
        println!("  {}", line(&message));
    }

    println!("\n== Bob's chat list ==");
    for summary in engine.chats(BOB)? {
        let last = summary.last.as_ref().map_or("-".to_owned(), line);
        println!(
            "  {:<20} {} unread  last: {last}",
            chat_name(summary.chat, Some(group)),
            summary.unread
        );
    }

    drop((bobs_phone, carols_laptop));
    engine.close()?;
    let stats = engine.stats();
    println!(
        "\nclosed: {} messages stored, {} retried send answered from memory, {} receipts, \
         {} live events published",
        stats.sends, stats.duplicate_sends, stats.receipts, stats.events_published
    );
    Ok(())
}
