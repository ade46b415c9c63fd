//! A valid segment, cut or with one bit flipped, decodes exactly up to the damaged batch.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| missive_fuzz::check_structured(data));
