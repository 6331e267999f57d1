//! Fuzz target `schema_check`: see `vmstate_fuzz::schema_check::schema_check`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmstate_fuzz::schema_check::schema_check(data));
