//! Proves, on stable and without cargo-fuzz, that every committed fuzz input still passes its
//! target's checks: each file in `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes
//! through the same check function the fuzz target runs (`fuzz/src/checks.rs`, included below).
//! Also proves that the seed inputs still reach the decoder (the format has not drifted from them)
//! and that the fuzz harness's own restatement of the batch header matches the encoder.
//!
//! The seeds are written by `write_seed_corpus`, run by hand:
//! `cargo test -p missive-log --test fuzz_corpus -- --ignored write_seed_corpus`.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use missive_log::batch::{
    BATCH_HEADER_LEN, BatchEncoder, Codec, decode_batch, parse_header, scan_segment,
};
use missive_log::{ChatId, Lsn, Record, RecordKind, Timestamp, UserId};

#[allow(unreachable_pub)]
#[path = "../../fuzz/src/checks.rs"]
mod checks;

use checks::{Check, PLACE, TARGETS, forge_lz4_batch, frame_batch};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `fuzz/<kind>/<target>/` with their target's name and check, sorted by path; a
/// folder no target owns is an error.
fn inputs(kind: &str) -> Vec<(&'static str, Check, PathBuf)> {
    let mut found = Vec::new();
    let Ok(folders) = fs::read_dir(fuzz_dir().join(kind)) else {
        return found;
    };
    for folder in folders.map(|folder| folder.expect("readable folder").path()) {
        if !folder.is_dir() {
            continue; // A README.
        }
        let name = folder.file_name().and_then(|name| name.to_str());
        let Some(&(target, check)) = TARGETS.iter().find(|(target, _)| Some(*target) == name)
        else {
            panic!("{folder:?} is not named after a fuzz target");
        };
        for file in fs::read_dir(&folder).expect("readable folder") {
            found.push((target, check, file.expect("readable file").path()));
        }
    }
    found.sort_by(|a, b| a.2.cmp(&b.2));
    found
}

#[test]
fn corpus_and_past_crashes_pass_their_checks() {
    let corpus = inputs("corpus");
    assert!(corpus.len() >= 5, "the seed corpus is missing: {corpus:?}");
    for (target, check, path) in corpus.iter().chain(&inputs("regressions")) {
        eprintln!("replaying {path:?} through {target}");
        check(&fs::read(path).expect("readable input"));
    }
}

#[test]
fn seeds_still_reach_the_decoder() {
    for (target, _, path) in inputs("corpus") {
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        if !name.starts_with("seed-") {
            continue; // Found by a fuzzer, not written by `write_seed_corpus`.
        }
        let data = fs::read(&path).expect("readable seed");
        let decodes = match target {
            "segment" => !scan_segment(&Bytes::from(data), PLACE).batches.is_empty(),
            "lz4_batch" => {
                forge_lz4_batch(&data).is_some_and(|(_, b)| decode_batch(&b, PLACE).is_ok())
            }
            _ => true,
        };
        assert!(decodes, "{path:?} no longer decodes: regenerate the seeds");
    }
}

#[test]
fn frame_batch_restates_the_encoder() {
    let records = records(3, 40);
    let encoded = BatchEncoder::new()
        .encode(PLACE, Lsn(PLACE.segment), &records, false)
        .to_vec();
    let header = parse_header(&encoded).expect("a valid header");
    let (ts, body) = (
        (header.ts_min.0, header.ts_max.0),
        &encoded[BATCH_HEADER_LEN..],
    );
    let framed = frame_batch(Codec::None, header.raw_len, header.count, ts, body);
    assert_eq!(framed, encoded);
}

/// `count` records of mixed kinds, chats and timestamps, each with a payload of `payload_len`
/// bytes of one repeated letter (so that a large enough batch compresses).
fn records(count: u64, payload_len: usize) -> Vec<Record> {
    (0..count)
        .map(|i| Record {
            kind: RecordKind::ALL[i as usize % RecordKind::ALL.len()],
            chat: if i % 2 == 0 {
                ChatId::direct(UserId(1), UserId(2 + i))
            } else {
                ChatId::group(i)
            },
            timestamp: Timestamp(1_700_000_000_000 + i * 1000),
            payload: Bytes::from(vec![b'a' + (i % 26) as u8; payload_len]),
        })
        .collect()
}

/// A segment of [`PLACE`]: one batch per entry of `batches` (record count, payload bytes, lz4).
fn segment(batches: &[(u64, usize, bool)]) -> Vec<u8> {
    let mut encoder = BatchEncoder::new();
    let (mut out, mut lsn) = (Vec::new(), PLACE.segment);
    for &(count, payload_len, compress) in batches {
        out.extend_from_slice(encoder.encode(
            PLACE,
            Lsn(lsn),
            &records(count, payload_len),
            compress,
        ));
        lsn += count;
    }
    out
}

#[test]
#[ignore = "writes the seed corpus into fuzz/corpus; run by hand after a format change"]
fn write_seed_corpus() {
    let torn = {
        let mut torn = segment(&[(2, 20, false), (3, 30, false)]);
        torn.truncate(torn.len() - 17);
        torn
    };
    let segments: [(&str, Vec<u8>); 5] = [
        ("one-record", segment(&[(1, 5, false)])),
        (
            "three-batches",
            segment(&[(1, 0, false), (4, 12, false), (2, 50, false)]),
        ),
        ("lz4", segment(&[(3, 600, true)])),
        ("lz4-then-plain", segment(&[(2, 400, true), (2, 8, false)])),
        ("torn-tail", torn),
    ];
    // An `lz4_batch` input is the raw length, record count and timestamp range of a batch, then its
    // lz4 block (see `LZ4_INPUT_HEAD`): taken here from real compressed batches.
    let lz4_inputs = [(2, 300), (5, 1000)].map(|(count, payload_len)| {
        let batch = segment(&[(count, payload_len, true)]);
        let header = parse_header(&batch).expect("a valid header");
        assert_eq!(header.codec, Codec::Lz4);
        let mut input = header.raw_len.to_le_bytes().to_vec();
        input.extend_from_slice(&(header.count as u16).to_le_bytes());
        input.extend_from_slice(&header.ts_min.0.to_le_bytes());
        input.extend_from_slice(&header.ts_max.0.to_le_bytes());
        assert_eq!(input.len(), checks::LZ4_INPUT_HEAD);
        input.extend_from_slice(&batch[BATCH_HEADER_LEN..]);
        (format!("{count}x{payload_len}"), input)
    });
    let corpus = fuzz_dir().join("corpus");
    for (name, data) in segments {
        fs::write(corpus.join(format!("segment/seed-{name}")), data).expect("writable corpus");
    }
    for (name, data) in lz4_inputs {
        fs::write(corpus.join(format!("lz4_batch/seed-{name}")), data).expect("writable corpus");
    }
}
