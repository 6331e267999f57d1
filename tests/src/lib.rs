//! Helpers shared by the integration tests in `tests/tests`, and the versioning cookbook
//! (`docs/VERSIONING.md`), whose examples run as doctests of this crate.
//!
//! # Example
//! ```
//! use integration_tests::{round_trip, round_trip_lossless};
//! use versionize::prelude::*;
//!
//! #[derive(Clone, Debug, PartialEq, Versionize)]
//! struct Rtc {
//!     seconds: u32,
//!     #[version(start = 2)]
//!     alarm: u32,
//! }
//!
//! let mut map = VersionMap::new();
//! map.new_version().set_type_version(Rtc::type_id(), 2);
//! let rtc = Rtc { seconds: 5, alarm: 9 };
//!
//! // App version 1 drops `alarm`, which reads back as its default.
//! let bytes = round_trip(&rtc, &map, |app_version| match app_version {
//!     1 => Rtc { seconds: 5, alarm: 0 },
//!     _ => rtc.clone(),
//! });
//! assert_eq!(bytes, [vec![5, 0, 0, 0], vec![5, 0, 0, 0, 9, 0, 0, 0]]);
//!
//! // A value that is the same at every version.
//! round_trip_lossless(&7u64, &map);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt::Debug;

use versionize::{prelude::Versionize, VersionMap, VersionizeResult};

#[doc = include_str!("../../docs/VERSIONING.md")]
pub mod versioning_cookbook {}

/// The repository README, whose Rust examples run as doctests.
#[doc = include_str!("../../README.md")]
pub mod readme {}

/// The bytes of `value` written at `app_version`.
///
/// # Panics
/// When writing fails.
#[must_use]
pub fn to_bytes<T: Versionize>(value: &T, map: &VersionMap, app_version: u16) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Err(error) = value.serialize(&mut bytes, map, app_version) {
        panic!("writing at app version {app_version} failed: {error}");
    }
    bytes
}

/// Reads a `T` written at `app_version` that must take all of `bytes`.
///
/// # Errors
/// Whatever [`Versionize::deserialize`] returns; trailing bytes are an
/// [`OutOfRange`](versionize::VersionizeError::OutOfRange) error.
pub fn from_bytes<T: Versionize>(
    bytes: &[u8],
    map: &VersionMap,
    app_version: u16,
) -> VersionizeResult<T> {
    let mut reader = bytes;
    let value = T::deserialize(&mut reader, map, app_version)?;
    if reader.is_empty() {
        Ok(value)
    } else {
        Err(versionize::VersionizeError::OutOfRange("trailing bytes"))
    }
}

/// Writes `value` at every app version of `map`, reads each back, and checks that the
/// result is `expected(app_version)`: the fields present at that version survive and the
/// absent ones took their defaults (and whatever the hooks did). Returns the bytes written
/// at each app version, first to latest, for the caller to pin.
///
/// # Panics
/// When writing or reading fails, the read leaves bytes over, or a result differs from
/// the expected value.
pub fn round_trip<T, F>(value: &T, map: &VersionMap, mut expected: F) -> Vec<Vec<u8>>
where
    T: Versionize + PartialEq + Debug,
    F: FnMut(u16) -> T,
{
    (1..=map.latest_version())
        .map(|app_version| {
            let bytes = to_bytes(value, map, app_version);
            let back: T = match from_bytes(&bytes, map, app_version) {
                Ok(back) => back,
                Err(error) => panic!("reading at app version {app_version} failed: {error}"),
            };
            assert_eq!(
                back,
                expected(app_version),
                "value read back at app version {app_version}"
            );
            bytes
        })
        .collect()
}

/// [`round_trip`] for a value that must survive every app version unchanged; also checks
/// the other direction: writing the value read back gives the same bytes again.
///
/// # Panics
/// As [`round_trip`], or when rewriting gives other bytes.
pub fn round_trip_lossless<T>(value: &T, map: &VersionMap) -> Vec<Vec<u8>>
where
    T: Versionize + PartialEq + Debug + Clone,
{
    let all = round_trip(value, map, |_| value.clone());
    for (app_version, bytes) in (1..).zip(&all) {
        let back: T = match from_bytes(bytes, map, app_version) {
            Ok(back) => back,
            Err(error) => panic!("reading at app version {app_version} failed: {error}"),
        };
        assert_eq!(
            &to_bytes(&back, map, app_version),
            bytes,
            "rewriting at app version {app_version}"
        );
    }
    all
}
