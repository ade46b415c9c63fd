//! Any bytes decode as a segment without a panic, and what decodes re-encodes to the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| missive_fuzz::check_segment(data));
