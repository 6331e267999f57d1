//! Bad input: every truncation and every single-bit flip of a small valid snapshot is
//! rejected; wrong magic, versions, trailing bytes and oversized states get errors that
//! say what was expected and what was found.

use snapshot::magic::{build_magic_id, ARCHES, BASE_MAGIC_ID};
use snapshot::{LoadOptions, Snapshot, SnapshotError};
use versionize::crc::crc64;
use versionize::{prelude::Versionize, VersionMap};

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Device {
    id: u32,
    name: String,
    queues: Vec<u16>,
    #[version(start = 2)]
    enabled: bool,
}

fn map() -> VersionMap {
    let mut map = VersionMap::new();
    map.new_version().set_type_version(Device::type_id(), 2);
    map
}

fn device() -> Device {
    Device {
        id: 0x00C0_FFEE,
        name: "vda".to_owned(),
        queues: vec![256, 128],
        enabled: true,
    }
}

fn valid_snapshot() -> Vec<u8> {
    let mut bytes = Vec::new();
    Snapshot::new(map(), 2).save(&mut bytes, &device()).unwrap();
    bytes
}

fn load(bytes: &[u8]) -> Result<(Device, u16), SnapshotError> {
    Snapshot::load::<_, Device>(&mut &bytes[..], bytes.len(), map())
}

/// Re-seals `body` (everything before the CRC) with a correct checksum.
fn seal(body: &[u8]) -> Vec<u8> {
    let mut bytes = body.to_vec();
    bytes.extend_from_slice(&crc64(body).to_le_bytes());
    bytes
}

#[test]
fn test_snapshot_valid_loads() {
    let bytes = valid_snapshot();
    assert_eq!(load(&bytes).unwrap(), (device(), 2));
}

#[test]
fn test_snapshot_every_truncation_is_rejected() {
    let bytes = valid_snapshot();
    for len in 0..bytes.len() {
        // The caller may give the true (short) length or the original one.
        assert!(load(&bytes[..len]).is_err(), "length {len}");
        let err = Snapshot::load::<_, Device>(&mut &bytes[..len], bytes.len(), map()).unwrap_err();
        assert!(
            matches!(
                err,
                SnapshotError::Io {
                    kind: std::io::ErrorKind::UnexpectedEof,
                    ..
                }
            ),
            "length {len}: {err}"
        );
    }
}

#[test]
fn test_snapshot_every_bit_flip_is_rejected() {
    let bytes = valid_snapshot();
    let mut rejected = 0;
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let err = load(&flipped).expect_err("a flipped bit must be rejected");
        // The magic check names foreign files before the checksum is blamed; every other
        // flip is caught by the CRC.
        if bit >= 64 {
            assert!(
                matches!(err, SnapshotError::Crc64 { .. }),
                "bit {bit}: {err}"
            );
        } else {
            assert!(
                matches!(
                    err,
                    SnapshotError::InvalidMagic { .. } | SnapshotError::Crc64 { .. }
                ),
                "bit {bit}: {err}"
            );
        }
        rejected += 1;
    }
    assert_eq!(rejected, bytes.len() * 8);
}

#[test]
fn test_snapshot_bit_flips_without_crc_never_panic() {
    // Without the CRC, a flip reaches the decoders: each must give a value or an error.
    let bytes = valid_snapshot();
    let body = &bytes[..bytes.len() - 8];
    for bit in 0..body.len() * 8 {
        let mut flipped = body.to_vec();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let _ = load(&seal(&flipped));
    }
}

#[test]
fn test_snapshot_other_arch_magic_is_named() {
    let bytes = valid_snapshot();
    for (base, arch) in ARCHES {
        if base == BASE_MAGIC_ID {
            continue;
        }
        let mut body = bytes[..bytes.len() - 8].to_vec();
        body[..8].copy_from_slice(&(base | 1).to_le_bytes());
        let err = load(&seal(&body)).unwrap_err();
        assert!(
            matches!(err, SnapshotError::InvalidMagic { found_arch: Some(a), .. } if a == arch),
            "{err}"
        );
        assert!(err.to_string().contains(arch), "{err}");
    }
}

#[test]
fn test_snapshot_format_versions() {
    let bytes = valid_snapshot();
    for (format, ok) in [(0u16, false), (1, true), (2, false), (u16::MAX, false)] {
        let mut body = bytes[..bytes.len() - 8].to_vec();
        body[..8].copy_from_slice(&build_magic_id(format).to_le_bytes());
        let result = load(&seal(&body));
        if ok {
            assert!(result.is_ok());
        } else {
            assert!(
                matches!(result, Err(SnapshotError::InvalidFormatVersion { found, supported: 1 }) if found == format),
                "{result:?}"
            );
        }
    }
}

#[test]
fn test_snapshot_data_versions() {
    let bytes = valid_snapshot();
    for (data, ok) in [
        (0u16, false),
        (1, true),
        (2, true),
        (3, false),
        (u16::MAX, false),
    ] {
        let mut body = bytes[..bytes.len() - 8].to_vec();
        body[8..10].copy_from_slice(&data.to_le_bytes());
        let result = load(&seal(&body));
        match result {
            // Version 1 has no `enabled`: the `true` byte is left over.
            Err(SnapshotError::TrailingBytes { count: 1 }) if data == 1 => {}
            Ok(_) if ok => {}
            Err(SnapshotError::InvalidDataVersion { found, latest: 2 }) if !ok && found == data => {
            }
            other => panic!("data version {data}: {other:?}"),
        }
    }
    // Saving at a version the map does not have is refused up front.
    let err = Snapshot::new(map(), 3)
        .save(&mut Vec::new(), &device())
        .unwrap_err();
    assert!(matches!(
        err,
        SnapshotError::InvalidDataVersion {
            found: 3,
            latest: 2
        }
    ));
}

#[test]
fn test_snapshot_trailing_bytes_are_rejected() {
    let bytes = valid_snapshot();
    let mut body = bytes[..bytes.len() - 8].to_vec();
    body.extend_from_slice(&[0, 0, 0]);
    let err = load(&seal(&body)).unwrap_err();
    assert!(
        matches!(err, SnapshotError::TrailingBytes { count: 3 }),
        "{err}"
    );
}

#[test]
fn test_snapshot_state_cap_is_checked_before_reading() {
    let bytes = valid_snapshot();
    let state_len = (bytes.len() - 18) as u64;
    let options = LoadOptions::default().with_max_state_len(state_len - 1);
    let err = Snapshot::load_with::<_, Device>(&mut bytes.as_slice(), bytes.len(), map(), &options)
        .unwrap_err();
    assert!(
        matches!(err, SnapshotError::StateTooLarge { len, limit } if len == state_len && limit == state_len - 1)
    );
    // A claimed length far above the default cap is refused without reading.
    let mut empty: &[u8] = &[];
    let err = Snapshot::load::<_, Device>(&mut empty, usize::MAX, map()).unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::StateTooLarge {
                limit: 10_485_760,
                ..
            }
        ),
        "{err}"
    );
}
