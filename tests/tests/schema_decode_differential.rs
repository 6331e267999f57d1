//! Schema-driven decoding against the typed decoders, on the fuzzed types of
//! `fuzz/src/oracle.rs` (nested structs, enums with substituted variants, retyped fields
//! with hooks, maps, sets, a deque, floats, generics, a recursive type) at every app
//! version:
//!
//! - arbitrary bytes, structured bytes and corrupted valid encodings: `decode_value` accepts
//!   exactly what the typed decoder accepts as a whole state (apart from the budget and
//!   depth, which it counts for its own values), and what it accepts it encodes back to the
//!   same bytes;
//! - arbitrary values written by the typed encoder decode from the schema and encode back
//!   to the same bytes, and equal values have no differences.

use proptest::prelude::*;
use versionize::schema::{decode_value, diff_values, encode_value, export, Schema, ValueError};
use versionize::{prelude::Versionize, Limits, VersionMap, VersionizeError};

#[path = "../../fuzz/src/oracle.rs"]
mod oracle;

use arbitrary::{Arbitrary, Unstructured};
use oracle::{Device, Irq, Machine, Memory, Tree, Wrapper, TYPE_COUNT};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Bytes that look like encoded state more often than uniform noise does.
fn structured_bytes() -> impl Strategy<Value = Vec<u8>> {
    let chunk = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..16),
        prop_oneof![
            Just(0u64),
            Just(1),
            0u64..64,
            Just(1 << 20),
            Just(u64::MAX),
            any::<u64>(),
        ]
        .prop_map(|len| len.to_le_bytes().to_vec()),
        (0u32..5).prop_map(|index| index.to_le_bytes().to_vec()),
        Just(vec![1u8]),
        Just(vec![0u8]),
    ];
    prop::collection::vec(chunk, 0..24).prop_map(|chunks| chunks.concat())
}

/// Whether the schema decoder may refuse what the typed decoder accepts: only for the
/// limits, which it charges and counts for its own values.
fn limit_error(error: &ValueError) -> bool {
    matches!(
        error,
        ValueError::Codec {
            source: VersionizeError::DepthLimit { .. } | VersionizeError::BudgetExceeded { .. },
            ..
        }
    )
}

fn check_bytes<T: Versionize + 'static>(body: &[u8], map: &VersionMap, app_version: u16) {
    let schema = export::<T>(map, app_version).unwrap();
    let mut reader = body;
    let typed = T::deserialize(&mut reader, map, app_version).is_ok() && reader.is_empty();
    match decode_value(&schema, &mut &body[..], &Limits::default()) {
        Ok(value) => {
            assert!(
                typed,
                "app version {app_version}: the schema decoded {body:02x?}, the typed decoder did not"
            );
            let mut again = Vec::new();
            encode_value(&schema, &value, &mut again, &Limits::default()).unwrap();
            assert_eq!(again, body, "app version {app_version}: {value:?}");
        }
        Err(error) => {
            let _ = error.to_string();
            assert!(
                !typed || limit_error(&error),
                "app version {app_version}: the typed decoder read {body:02x?}, the schema \
                 refused it: {error}"
            );
        }
    }
}

fn check_value<'a, T: Versionize + Arbitrary<'a> + 'static>(seed: &'a [u8], map: &VersionMap) {
    let Ok(value) = T::arbitrary(&mut Unstructured::new(seed)) else {
        return;
    };
    for app_version in 1..=map.latest_version() {
        let mut bytes = Vec::new();
        if value.serialize(&mut bytes, map, app_version).is_err() {
            continue;
        }
        let schema = export::<T>(map, app_version).unwrap();
        let decoded = decode_value(&schema, &mut bytes.as_slice(), &Limits::default())
            .unwrap_or_else(|e| panic!("app version {app_version}: {e}"));
        let mut again = Vec::new();
        encode_value(&schema, &decoded, &mut again, &Limits::default()).unwrap();
        assert_eq!(again, bytes, "app version {app_version}");
        assert!(diff_values(&decoded, &decoded.clone()).is_empty());
    }
}

/// The typed encoding of an arbitrary value built from `seed`, with `edits` applied: 0 sets
/// a byte, 1 flips a bit, 2 inserts a byte, 3 removes one.
fn corrupted<'a, T: Versionize + Arbitrary<'a> + 'static>(
    seed: &'a [u8],
    edits: &[(prop::sample::Index, u8, u8)],
    map: &VersionMap,
    app_version: u16,
) {
    let Ok(value) = T::arbitrary(&mut Unstructured::new(seed)) else {
        return;
    };
    let mut bytes = Vec::new();
    if value.serialize(&mut bytes, map, app_version).is_err() {
        return;
    }
    for (index, byte, kind) in edits {
        if bytes.is_empty() {
            bytes.push(*byte);
            continue;
        }
        let at = index.index(bytes.len());
        match kind {
            0 => bytes[at] = *byte,
            1 => bytes[at] ^= 1 << (byte % 8),
            2 => bytes.insert(at, *byte),
            _ => {
                bytes.remove(at);
            }
        }
    }
    check_bytes::<T>(&bytes, map, app_version);
}

/// Runs `$check::<T>` for the type `$selector` picks.
macro_rules! for_type {
    ($selector:expr, $check:ident ( $($arg:expr),* )) => {
        match $selector {
            0 => $check::<Device>($($arg),*),
            1 => $check::<Irq>($($arg),*),
            2 => $check::<Memory>($($arg),*),
            3 => $check::<Machine>($($arg),*),
            4 => $check::<Tree>($($arg),*),
            _ => $check::<Wrapper<Vec<String>>>($($arg),*),
        }
    };
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn test_schema_decode_differential_accepts_what_the_typed_decoder_accepts(
        body in prop_oneof![prop::collection::vec(any::<u8>(), 0..256), structured_bytes()]
    ) {
        let map = oracle::type_map();
        for selector in 0..TYPE_COUNT {
            for app_version in 1..=map.latest_version() {
                for_type!(selector, check_bytes(&body, &map, app_version));
            }
        }
    }

    #[test]
    fn test_schema_decode_differential_on_corrupted_encodings(
        seed in prop::collection::vec(any::<u8>(), 0..1024),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..4),
    ) {
        let map = oracle::type_map();
        for selector in 0..TYPE_COUNT {
            for app_version in 1..=map.latest_version() {
                for_type!(selector, corrupted(&seed, &edits, &map, app_version));
            }
        }
    }

    #[test]
    fn test_schema_decode_differential_typed_encodings_decode_and_re_encode(
        seed in prop::collection::vec(any::<u8>(), 0..1024)
    ) {
        let map = oracle::type_map();
        for selector in 0..TYPE_COUNT {
            for_type!(selector, check_value(&seed, &map));
        }
    }
}

/// The schemas the properties use are those of every app version of the oracle's map.
#[test]
fn test_schema_decode_differential_schemas_round_trip_through_json() {
    let map = oracle::type_map();
    for app_version in 1..=map.latest_version() {
        let schema = export::<Machine>(&map, app_version).unwrap();
        assert_eq!(Schema::from_json(&schema.to_json()).unwrap(), schema);
    }
}
