//! The free functions: next to serde's traits, without naming `Versionize`.

use versionize::prelude::*;
use versionize::{decode_from_reader, decode_from_slice, encode_into_writer, encode_to_vec};

/// A type with a second `serialize` method in scope, as serde's `Serialize` would bring:
/// `value.serialize(..)` would be ambiguous (E0034); the free functions are not.
trait OtherSerialize {
    fn serialize(&self) -> &'static str;
}

#[derive(Debug, Clone, PartialEq, Versionize)]
struct Rtc {
    seconds: u64,
    #[version(start = 2)]
    alarm: Option<u64>,
}

impl OtherSerialize for Rtc {
    fn serialize(&self) -> &'static str {
        "other"
    }
}

fn map() -> VersionMap {
    let mut map = VersionMap::new();
    map.new_version().set_type_version(Rtc::type_id(), 2);
    map
}

#[test]
fn test_codec_round_trip_at_every_app_version() {
    let map = map();
    let rtc = Rtc {
        seconds: 9,
        alarm: Some(3),
    };
    for app_version in 1..=2 {
        let bytes = encode_to_vec(&rtc, &map, app_version).unwrap();
        let mut written = Vec::new();
        encode_into_writer(&rtc, &mut written, &map, app_version).unwrap();
        assert_eq!(bytes, written);
        let back: Rtc = decode_from_slice(&bytes, &map, app_version).unwrap();
        let expected_alarm = if app_version == 1 { None } else { Some(3) };
        assert_eq!(
            back,
            Rtc {
                seconds: 9,
                alarm: expected_alarm
            }
        );
    }
    assert_eq!(OtherSerialize::serialize(&rtc), "other");
}

#[test]
fn test_codec_decode_from_slice_refuses_trailing_bytes() {
    let map = map();
    let mut bytes = encode_to_vec(
        &Rtc {
            seconds: 1,
            alarm: None,
        },
        &map,
        2,
    )
    .unwrap();
    bytes.extend_from_slice(&[0xAA, 0xBB]);
    let err = decode_from_slice::<Rtc>(&bytes, &map, 2).unwrap_err();
    assert!(
        matches!(err, VersionizeError::TrailingBytes { count: 2 }),
        "{err}"
    );
    assert_eq!(err.to_string(), "2 trailing bytes after the value");
    // The reader form reads the front and leaves the rest.
    let mut rest = bytes.as_slice();
    let rtc: Rtc = decode_from_reader(&mut rest, &map, 2).unwrap();
    assert_eq!((rtc.seconds, rest), (1, &[0xAA, 0xBB][..]));
}

#[test]
fn test_codec_errors_pass_through() {
    let map = map();
    let err = encode_to_vec(
        &Rtc {
            seconds: 1,
            alarm: None,
        },
        &map,
        3,
    )
    .unwrap_err();
    assert!(matches!(
        err.root(),
        VersionizeError::InvalidAppVersion { app_version: 3, .. }
    ));
    let err = decode_from_slice::<Rtc>(&[1, 2, 3], &map, 1).unwrap_err();
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::UnexpectedEof));
}
