//! The snapshot's info side file through the `demo-vmm` command line: `run --save FILE`
//! writes `FILE.info` (who, when, which host, data version, schema fingerprint); `restore`
//! reports it, refuses a snapshot whose writer had another schema for the same data version,
//! and ignores (saying so) a side file of another save. Older builds, which know nothing of
//! the side file, read the snapshot unchanged: `.ci/compat-matrix` shows it.

#![cfg(target_arch = "x86_64")]

mod common;

use std::process::{Command, Output};

use common::{kvm_available, TempDir};
use snapshot::{schema_fingerprint, writer_info_path, WriterInfo};

fn demo_vmm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_demo-vmm"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn test_writer_info_written_reported_and_fingerprinted() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("writer-info");
    for app_version in [1u16, 3, kvm_state::CURRENT_APP_VERSION] {
        let snap = dir.path().join(format!("v{app_version}.snap"));
        let path = snap.to_str().unwrap();
        let run = demo_vmm(&[
            "run",
            "--save",
            path,
            "--app-version",
            &app_version.to_string(),
        ]);
        assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
        let info = WriterInfo::load_for(&snap).unwrap().expect("a side file");
        assert_eq!(info.data_version, app_version);
        assert_eq!(info.host_arch, "x86_64");
        assert!(info.vmm.starts_with("demo-vmm "), "{info:?}");
        assert!(info.saved_at > 1_700_000_000, "{info:?}");
        // The fingerprint is the committed schema file's, so anyone can check it, and every
        // build of the release line gives the same one.
        let schema = std::fs::read_to_string(format!(
            "{}/../kvm-state/schema/v{app_version}.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let schema = versionize::schema::Schema::from_json(&schema).unwrap();
        assert_eq!(info.schema_fingerprint, schema_fingerprint(&schema));
        let restore = demo_vmm(&["restore", path]);
        assert_eq!(restore.status.code(), Some(0), "{}", text(&restore.stderr));
        assert!(
            text(&restore.stderr).contains(&format!("data version {app_version}, schema crc64:")),
            "{}",
            text(&restore.stderr)
        );
    }
}

#[test]
fn test_writer_info_other_schema_refused_stale_ignored() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("writer-info-bad");
    let snap = dir.path().join("s.snap");
    let path = snap.to_str().unwrap();
    assert_eq!(demo_vmm(&["run", "--save", path]).status.code(), Some(0));
    let info_path = writer_info_path(&snap);
    let good = std::fs::read_to_string(&info_path).unwrap();

    // A writer with another layout under the same data version: refused by name.
    let line = good
        .lines()
        .find(|l| l.starts_with("schema_fingerprint="))
        .unwrap();
    let forged = good.replace(line, "schema_fingerprint=crc64:0000000000000000");
    std::fs::write(&info_path, forged).unwrap();
    let restore = demo_vmm(&["restore", path]);
    assert_eq!(restore.status.code(), Some(2));
    assert!(
        text(&restore.stderr).contains("refused: ")
            && text(&restore.stderr).contains(": SchemaFingerprint: "),
        "{}",
        text(&restore.stderr)
    );
    assert!(restore.stdout.is_empty());

    // A side file of another save (the snapshot re-saved by a build that writes none): said,
    // ignored, and the snapshot restores.
    std::fs::write(&info_path, &good).unwrap();
    assert_eq!(demo_vmm(&["run", "--save", path]).status.code(), Some(0));
    std::fs::write(&info_path, &good).unwrap();
    let restore = demo_vmm(&["restore", path]);
    assert_eq!(restore.status.code(), Some(0), "{}", text(&restore.stderr));
    assert!(
        text(&restore.stderr).contains("ignoring the side file"),
        "{}",
        text(&restore.stderr)
    );
}
