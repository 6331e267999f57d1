//! Fuzz target `snapshot_load`: see `vmstate_fuzz::oracle::snapshot_load`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmstate_fuzz::oracle::snapshot_load(data));
