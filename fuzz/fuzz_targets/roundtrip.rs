//! Fuzz target `roundtrip`: see `vmstate_fuzz::oracle::roundtrip`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmstate_fuzz::oracle::roundtrip(data));
