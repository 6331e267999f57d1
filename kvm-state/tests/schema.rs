//! The "forgot to bump" guard for `MicrovmState`: the current code must describe every
//! released app version exactly as its committed schema file in `kvm-state/schema/` does.
//!
//! When this test fails with a list of differences, a state type changed in a way that makes
//! snapshots of a released app version load differently. Do not edit the committed files:
//! give the change a new type version (`#[version(start = N)]`), map it in a new app version
//! in `version_map()`, and bless that new app version's file.
//!
//! Releasing a new app version: run
//!
//! ```sh
//! VMSTATE_BLESS_SCHEMA=1 cargo test -p kvm-state --test schema
//! ```
//!
//! which writes `v<N>.json` for every app version of `version_map()` that has no file yet
//! (never overwriting one), then commit the new file.

#![cfg(target_arch = "x86_64")]

use std::path::{Path, PathBuf};

use kvm_state::{version_map, MicrovmState};
use versionize::schema::{check_schema_dir, compare, export, Schema};
use versionize::VersionMap;

const SCHEMA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema");
const BLESS_VAR: &str = "VMSTATE_BLESS_SCHEMA";

fn schema_file(dir: &Path, app_version: u16) -> PathBuf {
    dir.join(format!("v{app_version}.json"))
}

/// App versions of `map` without a schema file in `dir`.
fn unreleased(map: &VersionMap, dir: &Path) -> Vec<u16> {
    (1..=map.latest_version())
        .filter(|&app_version| !schema_file(dir, app_version).exists())
        .collect()
}

/// Writes the schema files of the app versions that have none; returns what it wrote.
fn bless_missing(map: &VersionMap, dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    unreleased(map, dir)
        .into_iter()
        .map(|app_version| {
            let path = schema_file(dir, app_version);
            let schema = export::<MicrovmState>(map, app_version).unwrap();
            std::fs::write(&path, schema.to_json()).unwrap();
            path
        })
        .collect()
}

#[test]
fn test_microvm_state_schema_matches_released_files() {
    let map = version_map();
    let dir = Path::new(SCHEMA_DIR);
    if std::env::var(BLESS_VAR).as_deref() == Ok("1") {
        for path in bless_missing(&map, dir) {
            eprintln!("wrote {}: commit it", path.display());
        }
    }
    let missing = unreleased(&map, dir);
    assert!(
        missing.is_empty(),
        "app version(s) {missing:?} of version_map() have no schema file in {SCHEMA_DIR}: \
         once the state of that app version is final, run \
         `{BLESS_VAR}=1 cargo test -p kvm-state --test schema` and commit the new file(s)"
    );
    if let Err(err) = check_schema_dir::<MicrovmState>(&map, dir) {
        panic!(
            "{err}\n\nA state type changed without a version bump. Keep released app versions \
             as they are: give the change `#[version(start = N)]` in a new type version, map \
             it in a new app version of version_map(), and bless that version's schema \
             ({BLESS_VAR}=1). Never edit a committed schema file."
        );
    }
}

/// What the guard reports when a field appears in the code but not in a released file,
/// simulated by removing the field from the committed file instead.
#[test]
fn test_microvm_state_schema_guard_names_the_field() {
    let committed = std::fs::read_to_string(schema_file(Path::new(SCHEMA_DIR), 1)).unwrap();
    let mut old = Schema::from_json(&committed).unwrap();
    let vcpu = old.types.get_mut("VcpuState").unwrap();
    let versionize::schema::TypeKind::Struct { fields } = &mut vcpu.kind else {
        panic!("VcpuState is a struct");
    };
    fields.retain(|field| field.name != "lapic");
    let differences = compare(&old, &export::<MicrovmState>(&version_map(), 1).unwrap());
    let text: Vec<String> = differences.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "VcpuState.lapic: field of type Lapic added without a version change \
          (give it `start = <new version>` and map the new version)"
        ]
    );
}

/// Blessing writes the files of new app versions and never touches released ones.
#[test]
fn test_bless_writes_missing_files_only() {
    let dir = std::env::temp_dir().join(format!("kvm-state-bless-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(schema_file(&dir, 1), "released\n").unwrap();
    let map = version_map();
    let written = bless_missing(&map, &dir);
    let expected: Vec<PathBuf> = (2..=map.latest_version())
        .map(|app_version| schema_file(&dir, app_version))
        .collect();
    assert_eq!(written, expected);
    assert_eq!(
        std::fs::read_to_string(schema_file(&dir, 1)).unwrap(),
        "released\n"
    );
    assert!(bless_missing(&map, &dir).is_empty());
    assert!(unreleased(&map, &dir).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}
