//! Fuzz target `decode_types`: see `vmstate_fuzz::oracle::decode_types`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmstate_fuzz::oracle::decode_types(data));
