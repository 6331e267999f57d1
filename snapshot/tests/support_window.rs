//! The support window: a snapshot older than the oldest app version a build still reads and
//! writes is a named error at load and at save, raised before any state is decoded or
//! encoded.

use snapshot::{Snapshot, SnapshotError};
use versionize::{prelude::Versionize, VersionMap, VersionizeError};

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Uart {
    line_control: u8,
    #[version(start = 2)]
    fifo: Vec<u8>,
    #[version(start = 3)]
    scratch: u8,
}

/// App versions 1..=3 (Uart v1..v3), reading and writing 2..=3 only.
fn windowed_map() -> VersionMap {
    let mut map = full_map();
    map.set_oldest_supported(2).unwrap();
    map
}

/// The same history without a window: an older build, or this one before the window moved.
fn full_map() -> VersionMap {
    let mut map = VersionMap::new();
    map.new_version().set_type_version(Uart::type_id(), 2);
    map.new_version().set_type_version(Uart::type_id(), 3);
    map
}

fn uart() -> Uart {
    Uart {
        line_control: 3,
        fifo: vec![1, 2],
        scratch: 9,
    }
}

fn saved_at(app_version: u16) -> Vec<u8> {
    let mut file = Vec::new();
    Snapshot::new(full_map(), app_version)
        .save(&mut file, &uart())
        .unwrap();
    file
}

fn assert_unsupported(result: Result<impl std::fmt::Debug, SnapshotError>, app_version: u16) {
    match result {
        Err(SnapshotError::Versionize(err)) => {
            // Named at the top, not a decode error inside the state.
            assert!(err.path().is_empty(), "{err}");
            match err {
                VersionizeError::AppVersionUnsupported {
                    app_version: found,
                    oldest: 2,
                    latest: 3,
                } => assert_eq!(found, app_version),
                other => panic!("unexpected {other:?}"),
            }
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn test_support_window_load_refuses_a_file_older_than_the_window() {
    let file = saved_at(1);
    let result = Snapshot::load::<_, Uart>(&mut file.as_slice(), file.len(), windowed_map());
    assert_unsupported(result, 1);
    let result = Snapshot::unchecked_load::<_, Uart>(&mut file.as_slice(), windowed_map());
    assert_unsupported(result, 1);
    let result = Snapshot::get_data_version(&mut file.as_slice(), &windowed_map());
    assert_unsupported(result, 1);
    // A build without the window still reads it.
    let (back, version) =
        Snapshot::load::<_, Uart>(&mut file.as_slice(), file.len(), full_map()).unwrap();
    assert_eq!(version, 1);
    assert_eq!(back.line_control, 3);
}

#[test]
fn test_support_window_is_checked_before_the_state_is_decoded() {
    // A version-1 state that is not even a valid `Uart` (a trailing byte, then garbage the
    // v3 layout would read as a huge FIFO length): the window is named, not the bytes.
    let mut file = saved_at(1);
    let crc_at = file.len() - 8;
    file.splice(crc_at..crc_at, [0xFF; 9]);
    let crc = versionize::crc::crc64(&file[..file.len() - 8]);
    let len = file.len();
    file[len - 8..].copy_from_slice(&crc.to_le_bytes());
    let result = Snapshot::load::<_, Uart>(&mut file.as_slice(), file.len(), windowed_map());
    assert_unsupported(result, 1);
}

#[test]
fn test_support_window_load_file_refuses_a_file_older_than_the_window() {
    let dir = std::env::temp_dir().join(format!("support-window-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("old.snap");
    std::fs::write(&path, saved_at(1)).unwrap();
    let result = Snapshot::load_file::<Uart>(&path, windowed_map());
    std::fs::remove_dir_all(&dir).unwrap();
    assert_unsupported(result, 1);
}

#[test]
fn test_support_window_save_refuses_a_target_older_than_the_window() {
    let mut out = Vec::new();
    let result = Snapshot::new(windowed_map(), 1).save(&mut out, &uart());
    assert_unsupported(result, 1);
    assert!(out.is_empty(), "nothing is written: {out:?}");
    let result = Snapshot::new(windowed_map(), 1).save_without_crc(&mut out, &uart());
    assert_unsupported(result, 1);
    assert!(out.is_empty(), "nothing is written: {out:?}");

    let dir = std::env::temp_dir().join(format!("support-window-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("old.snap");
    let result = Snapshot::new(windowed_map(), 1).save_to_file(&path, &uart());
    let exists = path.exists();
    let left = std::fs::read_dir(&dir).unwrap().count();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_unsupported(result, 1);
    assert!(!exists);
    assert_eq!(left, 0, "no temporary file is left");
}

#[test]
fn test_support_window_versions_inside_it_load_and_save() {
    for app_version in 2..=3 {
        let mut file = Vec::new();
        Snapshot::new(windowed_map(), app_version)
            .save(&mut file, &uart())
            .unwrap();
        assert_eq!(file, saved_at(app_version));
        let (back, version) =
            Snapshot::load::<_, Uart>(&mut file.as_slice(), file.len(), windowed_map()).unwrap();
        assert_eq!(version, app_version);
        assert_eq!(back.fifo, [1, 2]);
    }
}

#[test]
fn test_support_window_newer_than_latest_is_its_own_error() {
    let mut newer_map = full_map();
    newer_map.new_version();
    let mut file = Vec::new();
    Snapshot::new(newer_map, 4)
        .save(&mut file, &uart())
        .unwrap();
    match Snapshot::load::<_, Uart>(&mut file.as_slice(), file.len(), windowed_map()) {
        Err(SnapshotError::InvalidDataVersion {
            found: 4,
            latest: 3,
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
}
