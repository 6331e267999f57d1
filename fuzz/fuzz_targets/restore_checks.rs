//! Fuzz target `restore_checks`: see `vmstate_fuzz::restore_checks::restore_checks`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmstate_fuzz::restore_checks::restore_checks(data));
