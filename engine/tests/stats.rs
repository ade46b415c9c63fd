//! `Engine::stats` reports the log's writes: group-commit batches, records, bytes and fsyncs,
//! so a server can export the mean batch and the fsync rate.

mod common;

use bytes::Bytes;
use common::{T0, open_sim, small_config};
use missive::log::{DeviceId, SimStorage, UserId};
use missive::{Durability, ManualClock, Outgoing, To};

fn send_ten(engine: &missive::Engine) {
    for n in 0..10u8 {
        let message = Outgoing::text(To::User(UserId(2)), [n; 16], Bytes::from_static(b"hi"));
        engine.send(UserId(1), DeviceId(0), message).unwrap();
    }
}

#[test]
fn durable_sends_count_their_batches_records_and_fsyncs() {
    let (sim, clock) = (SimStorage::new(), ManualClock::new(T0));
    let engine = open_sim(&sim, small_config(&clock));
    let before = engine.stats();
    send_ten(&engine);
    let after = engine.stats();
    // One blocking sender: a batch, and an fsync, per send.
    assert_eq!(after.log_records - before.log_records, 10);
    assert_eq!(after.log_batches - before.log_batches, 10);
    assert_eq!(after.fsyncs - before.fsyncs, 10);
    assert!(after.log_bytes_written - before.log_bytes_written > 10 * 2);
    engine.close().unwrap();
}

#[test]
fn buffered_sends_do_not_fsync_until_closed() {
    let (sim, clock) = (SimStorage::new(), ManualClock::new(T0));
    let mut config = small_config(&clock);
    config.durability = Durability::Os;
    let engine = open_sim(&sim, config);
    let before = engine.stats();
    send_ten(&engine);
    let after = engine.stats();
    assert_eq!(after.log_records - before.log_records, 10);
    assert_eq!(after.fsyncs, before.fsyncs, "Os: no fsync per send");
    engine.close().unwrap();
}
