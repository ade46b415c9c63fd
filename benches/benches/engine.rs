//! Criterion suites for the engine's hot paths that the log and index suites do not cover:
//! batch encode and decode, a 1:1 and a group-of-256 send through the whole engine (sequencing,
//! group commit under `Os`, applying, planning the recipients and publishing), a receipt,
//! fan-out planning alone (the 256 members of a group, as the engine reads them to publish), and
//! the hub's publish to one device and to 256 users.
//!
//! `cargo bench -p missive-benches --bench engine`

use std::sync::Arc;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use missive::log::batch::{BatchEncoder, BatchPlace, decode_batch};
use missive::log::{ChatId, DeviceId, Lsn, Record, RecordKind, Seq, Timestamp, UserId};
use missive::{Config, Durability, Engine, Outgoing, ReceiptKind, To};
use missive_benches::{bench_dir, payloads};
use missive_fanout::{Hub, HubConfig};

fn batch(c: &mut Criterion) {
    let bodies = payloads(1024, 3);
    let records: Vec<Record> = (0..256u64)
        .map(|i| Record {
            kind: RecordKind::Message,
            chat: ChatId::direct(UserId(i), UserId(i + 1)),
            timestamp: Timestamp(1_700_000_000_000 + i),
            payload: bodies[i as usize].clone(),
        })
        .collect();
    let place = BatchPlace {
        log_id: 7,
        shard: 0,
        segment: 1,
    };
    let mut group = c.benchmark_group("batch_256_records");
    group.throughput(Throughput::Elements(records.len() as u64));
    let mut encoder = BatchEncoder::new();
    group.bench_function("encode", |b| {
        b.iter(|| std::hint::black_box(encoder.encode(place, Lsn(1), &records, true).len()))
    });
    let encoded = Bytes::copy_from_slice(encoder.encode(place, Lsn(1), &records, true));
    group.bench_function("decode_verify", |b| {
        b.iter(|| std::hint::black_box(decode_batch(&encoded, place).expect("valid")))
    });
    group.finish();
}

fn engine(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(bench_dir()).expect("temp dir");
    let config = Config {
        durability: Durability::Os,
        checkpoint_interval: None,
        retention_interval: None,
        ..Config::default()
    };
    let engine = Engine::open(dir.path(), config).expect("open");
    let bodies = payloads(1024, 4);
    let members: Vec<UserId> = (0..256).map(|m| UserId(1_000 + m)).collect();
    let group_chat = engine
        .create_group(members[0], &members[1..])
        .expect("group");
    // Someone is online for the 1:1 chat, so publishing has a queue to fill (drained below).
    let mut phone = engine.subscribe(UserId(2), DeviceId(0)).expect("subscribe");
    let mut n = 0u64;
    let mut id = move || {
        n += 1;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&n.to_le_bytes());
        id
    };

    let mut group = c.benchmark_group("engine_send_os");
    group.throughput(Throughput::Elements(1));
    group.bench_function("direct", |b| {
        b.iter(|| {
            let body = bodies[0].clone();
            let sent = engine
                .send(
                    UserId(1),
                    DeviceId(0),
                    Outgoing::text(To::User(UserId(2)), id(), body),
                )
                .expect("send");
            while phone.try_next().expect("open").is_some() {}
            sent
        })
    });
    group.bench_function("group_256", |b| {
        b.iter(|| {
            let body = bodies[1].clone();
            engine
                .send(
                    members[1],
                    DeviceId(0),
                    Outgoing::text(To::Chat(group_chat), id(), body),
                )
                .expect("send")
        })
    });
    group.finish();

    let chat = ChatId::direct(UserId(1), UserId(2));
    let mut group = c.benchmark_group("engine_receipt_os");
    group.bench_function("mark_read", |b| {
        b.iter_batched(
            || {
                engine
                    .send(
                        UserId(1),
                        DeviceId(0),
                        Outgoing::text(To::User(UserId(2)), id(), bodies[2].clone()),
                    )
                    .expect("send")
                    .seq
            },
            |seq: Seq| {
                engine
                    .mark(UserId(2), DeviceId(0), chat, ReceiptKind::Read, seq)
                    .expect("mark")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    // Fan-out planning: who receives a group message, as the engine works it out when it
    // publishes one (the members at the message's log position, from the index).
    let mut group = c.benchmark_group("fanout_plan");
    group.throughput(Throughput::Elements(256));
    group.bench_function("members_256", |b| {
        b.iter(|| {
            engine
                .members(members[1], group_chat)
                .expect("a member reads the members")
                .len()
        })
    });
    group.finish();
    drop(phone);
    engine.close().expect("close");
}

fn hub(c: &mut Criterion) {
    let hub: Hub<Arc<[u8; 64]>> = Hub::new(HubConfig::default());
    let mut one = hub.subscribe(UserId(1), DeviceId(0));
    let mut all: Vec<_> = (0..256)
        .map(|u| hub.subscribe(UserId(100 + u), DeviceId(0)))
        .collect();
    let event = Arc::new([7u8; 64]);
    let mut group = c.benchmark_group("hub_publish");
    group.bench_function("one_device", |b| {
        b.iter(|| {
            hub.publish_to_user(UserId(1), None, &event);
            one.try_next()
        })
    });
    group.throughput(Throughput::Elements(256));
    group.bench_function("group_256", |b| {
        b.iter(|| {
            let sent = hub.publish((0..256).map(|u| UserId(100 + u)), None, &event);
            for subscription in &mut all {
                subscription.try_next();
            }
            sent
        })
    });
    group.finish();
}

criterion_group!(benches, batch, engine, hub);
criterion_main!(benches);
