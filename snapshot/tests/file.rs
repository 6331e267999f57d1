//! Snapshot files: load without a length, atomic save, and the previous file surviving a
//! failure at every step.

use std::io;
use std::path::{Path, PathBuf};

use snapshot::{SaveStep, Snapshot, SnapshotError};
use versionize::{prelude::Versionize, VersionMap, VersionizeError, VersionizeResult};

#[derive(Clone, Debug, PartialEq, Versionize)]
struct State {
    counter: u64,
    #[version(start = 2, ser_fn = "refuse")]
    blob: Vec<u8>,
}

impl State {
    fn refuse(&mut self, _: u16) -> VersionizeResult<()> {
        if self.counter == 666 {
            return Err(VersionizeError::Semantic("refused".to_owned()));
        }
        Ok(())
    }
}

fn map() -> VersionMap {
    let mut map = VersionMap::new();
    map.new_version().set_type_version(State::type_id(), 2);
    map
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("snapshot-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn state(counter: u64) -> State {
    State {
        counter,
        blob: vec![counter as u8; 1000],
    }
}

fn load(path: &Path) -> Result<(State, u16), SnapshotError> {
    Snapshot::load_file::<State>(path, map())
}

#[test]
fn test_file_save_and_load_without_length() {
    let dir = TempDir::new("roundtrip");
    let path = dir.path("vm.snap");
    Snapshot::new(map(), 2)
        .save_to_file(&path, &state(1))
        .unwrap();
    assert_eq!(load(&path).unwrap(), (state(1), 2));
    // Overwrite with a rollback-format snapshot.
    Snapshot::new(map(), 1)
        .save_to_file(&path, &state(2))
        .unwrap();
    assert_eq!(
        load(&path).unwrap(),
        (
            State {
                counter: 2,
                blob: Vec::new()
            },
            1
        )
    );
    assert_eq!(
        dir.entries(),
        ["vm.snap"],
        "no temporary file is left behind"
    );
}

#[test]
fn test_file_failure_at_every_step_keeps_previous_file() {
    let dir = TempDir::new("faults");
    let path = dir.path("vm.snap");
    Snapshot::new(map(), 2)
        .save_to_file(&path, &state(1))
        .unwrap();
    let original = std::fs::read(&path).unwrap();

    for step in [
        SaveStep::CreateTemp,
        SaveStep::Write,
        SaveStep::SyncFile,
        SaveStep::Rename,
    ] {
        let err = Snapshot::new(map(), 2)
            .save_to_file_with_faults(&path, &state(9), &mut |at| {
                if at == step {
                    Err(io::Error::other("injected"))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert!(matches!(err, SnapshotError::File { .. }), "{step:?}: {err}");
        assert_eq!(std::fs::read(&path).unwrap(), original, "{step:?}");
        assert_eq!(load(&path).unwrap().0, state(1));
        assert_eq!(
            dir.entries(),
            ["vm.snap"],
            "{step:?}: temporary file removed"
        );
    }

    // After the rename the new file is complete even if the directory sync fails.
    let err = Snapshot::new(map(), 2)
        .save_to_file_with_faults(&path, &state(9), &mut |at| {
            if at == SaveStep::SyncDir {
                Err(io::Error::other("injected"))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    assert!(matches!(
        err,
        SnapshotError::File {
            step: "sync directory",
            ..
        }
    ));
    assert_eq!(load(&path).unwrap().0, state(9));
}

#[test]
fn test_file_encoding_error_keeps_previous_file() {
    let dir = TempDir::new("encode-error");
    let path = dir.path("vm.snap");
    Snapshot::new(map(), 2)
        .save_to_file(&path, &state(1))
        .unwrap();
    let err = Snapshot::new(map(), 1)
        .save_to_file(&path, &state(666))
        .unwrap_err();
    assert!(matches!(err, SnapshotError::Versionize(_)), "{err}");
    assert_eq!(load(&path).unwrap().0, state(1));
    assert_eq!(dir.entries(), ["vm.snap"]);
}

#[test]
fn test_file_bad_paths_are_errors() {
    let dir = TempDir::new("bad-paths");
    let missing = load(&dir.path("missing.snap")).unwrap_err();
    assert!(
        matches!(
            missing,
            SnapshotError::File {
                step: "open",
                kind: io::ErrorKind::NotFound,
                ..
            }
        ),
        "{missing}"
    );
    let directory = load(&dir.0).unwrap_err();
    assert!(
        matches!(
            directory,
            SnapshotError::NotRegularFile {
                step: "open",
                found: "directory",
                ..
            }
        ),
        "{directory}"
    );
    let no_dir = Snapshot::new(map(), 2)
        .save_to_file(dir.path("no/such/dir/vm.snap"), &state(1))
        .unwrap_err();
    assert!(
        matches!(
            no_dir,
            SnapshotError::File {
                step: "create temporary file",
                ..
            }
        ),
        "{no_dir}"
    );
    let empty = dir.path("empty.snap");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        load(&empty).unwrap_err(),
        SnapshotError::InvalidSnapshotSize { len: 0, .. }
    ));
}
