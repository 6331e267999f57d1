//! Derived types inside derived types: each type maps the app version through the same
//! `VersionMap` to its own version, and errors carry the path through the nesting.

use integration_tests::{from_bytes, round_trip, to_bytes};
use versionize::{prelude::Versionize, VersionMap, VersionizeError, VersionizeResult};

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Inner {
    a: u16,
    #[version(start = 2, default_fn = "default_b")]
    b: u8,
}

impl Inner {
    fn default_b(version: u16) -> u8 {
        // The type version of Inner, whatever the app version.
        0xB0 + u8::try_from(version).unwrap_or(0)
    }
}

#[derive(Clone, Debug, PartialEq, Versionize)]
enum Kind {
    Off,
    #[version(start = 2, default_fn = "switch_off")]
    On(Inner),
}

impl Kind {
    fn switch_off(&self, _: u16) -> VersionizeResult<Self> {
        Ok(Kind::Off)
    }
}

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Outer {
    inner: Inner,
    #[version(start = 2)]
    many: Vec<Inner>,
    maybe: Option<Inner>,
    kind: Kind,
}

/// App 1: everything at v1. App 2: Inner v2. App 3: Outer v2. App 4: Kind v2.
fn nested_map() -> VersionMap {
    let mut map = VersionMap::new();
    map.new_version()
        .set_type_version(Inner::type_id(), 2)
        .new_version()
        .set_type_version(Outer::type_id(), 2)
        .new_version()
        .set_type_version(Kind::type_id(), 2);
    map
}

fn inner(a: u16, b: u8) -> Inner {
    Inner { a, b }
}

fn sample() -> Outer {
    Outer {
        inner: inner(0x0102, 0x03),
        many: vec![inner(0x0405, 0x06), inner(0x0708, 0x09)],
        maybe: Some(inner(0x0A0B, 0x0C)),
        kind: Kind::On(inner(0x0D0E, 0x0F)),
    }
}

#[test]
fn test_derive_nested_fixed_bytes_per_type_version() {
    let map = nested_map();
    let outer = sample();
    let expected: [&[u8]; 4] = [
        // Inner v1 (a only), Outer v1 (no many), Kind v1 (On written as Off).
        &[0x02, 0x01, 1, 0x0B, 0x0A, 0, 0, 0, 0],
        // Inner v2 adds b everywhere it appears.
        &[0x02, 0x01, 0x03, 1, 0x0B, 0x0A, 0x0C, 0, 0, 0, 0],
        // Outer v2 adds many: u64 count, then the elements.
        &[
            0x02, 0x01, 0x03, 2, 0, 0, 0, 0, 0, 0, 0, 0x05, 0x04, 0x06, 0x08, 0x07, 0x09, 1, 0x0B,
            0x0A, 0x0C, 0, 0, 0, 0,
        ],
        // Kind v2 writes On and its Inner.
        &[
            0x02, 0x01, 0x03, 2, 0, 0, 0, 0, 0, 0, 0, 0x05, 0x04, 0x06, 0x08, 0x07, 0x09, 1, 0x0B,
            0x0A, 0x0C, 1, 0, 0, 0, 0x0E, 0x0D, 0x0F,
        ],
    ];
    for (app_version, expected) in (1..).zip(expected) {
        assert_eq!(
            to_bytes(&outer, &map, app_version),
            expected,
            "app version {app_version}"
        );
    }
}

#[test]
fn test_derive_nested_round_trip_every_version() {
    let map = nested_map();
    let outer = sample();
    round_trip(&outer, &map, |app_version| match app_version {
        1 => Outer {
            inner: inner(0x0102, 0xB1),
            many: Vec::new(),
            maybe: Some(inner(0x0A0B, 0xB1)),
            kind: Kind::Off,
        },
        2 => Outer {
            many: Vec::new(),
            kind: Kind::Off,
            ..sample()
        },
        3 => Outer {
            kind: Kind::Off,
            ..sample()
        },
        _ => sample(),
    });
}

#[test]
fn test_derive_nested_error_path_goes_through_the_types() {
    let map = nested_map();
    let bytes = to_bytes(&sample(), &map, 4);
    // Cut in the middle of the second element of `many` (after its `a`).
    let error = from_bytes::<Outer>(&bytes[..16], &map, 4).expect_err("truncated");
    assert_eq!(error.io_kind(), Some(std::io::ErrorKind::UnexpectedEof));
    let path: Vec<_> = error
        .path()
        .iter()
        .map(|frame| (frame.type_name, frame.field, frame.version))
        .collect();
    assert_eq!(path.first(), Some(&("Outer", Some("many"), 2)));
    assert_eq!(path.last(), Some(&("Inner", Some("b"), 2)));
    assert!(
        error.to_string().starts_with("Outer.many (v2) > "),
        "{error}"
    );

    // A bad variant index inside the nesting.
    let mut bytes = to_bytes(&sample(), &map, 4);
    let kind_at = bytes.len() - 7;
    bytes[kind_at] = 9;
    let error = from_bytes::<Outer>(&bytes, &map, 4).expect_err("unknown variant");
    assert!(matches!(
        error.root(),
        VersionizeError::UnknownVariant {
            type_name: "Kind",
            index: 9,
            version: 2
        }
    ));
    assert_eq!(error.path()[0].field, Some("kind"));
}

#[test]
fn test_derive_nested_inner_mapped_above_its_version_is_an_error() {
    let mut map = VersionMap::new();
    map.new_version().set_type_version(Inner::type_id(), 3);
    let error = sample()
        .serialize(&mut Vec::new(), &map, 2)
        .expect_err("Inner has no v3");
    assert!(matches!(
        error.root(),
        VersionizeError::InvalidTypeVersion {
            type_name: "Inner",
            mapped: 3,
            latest: 2
        }
    ));
    assert_eq!(error.path()[0].field, Some("inner"));
}
