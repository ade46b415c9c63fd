//! Any lz4 body behind a valid checksum decodes without a panic, and decoding allocates at most
//! the raw length the header claims, which the decoder caps at `BATCH_BODY_BYTES_MAX`.
#![no_main]

use missive_fuzz::{LargestAlloc, PLACE, check_segment, forge_lz4_batch};
use missive_log::BATCH_BODY_BYTES_MAX;
use missive_log::batch::decode_batch;

#[global_allocator]
static ALLOC: LargestAlloc = LargestAlloc::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((raw_len, batch)) = forge_lz4_batch(data) else {
        return;
    };
    let largest = ALLOC.largest_during(|| drop(decode_batch(&batch, PLACE)));
    assert!(
        largest <= raw_len.min(BATCH_BODY_BYTES_MAX),
        "allocated {largest} bytes"
    );
    check_segment(&batch);
});
