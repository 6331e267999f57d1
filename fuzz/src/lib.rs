//! Fuzz targets for the workspace: `snapshot_load` (a `MicrovmState` snapshot from any
//! bytes), `decode_types` (every fuzzed derived type at every app version), `roundtrip`
//! (decode, encode, decode; and arbitrary values at every app version) and `schema_check`
//! (two schema files parsed and compared as `vmstate schema check` does) and `restore_checks`
//! (the checks a restore runs before it touches KVM, on any decoded state).
//!
//! The checks live in [`oracle`], which `tests/tests/properties.rs` also compiles, so the CI
//! property tests and the fuzzers check the same properties. Run with
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run <target>` from the repository root (see
//! `docs/SECURITY.md`), or every target for a bounded time with `.ci/fuzz`.
#![forbid(unsafe_code)]

pub mod oracle;
pub mod restore_checks;
pub mod schema_check;
