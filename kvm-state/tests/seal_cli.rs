//! `vmstate keygen`, `seal`, `unseal` and `verify-sealed`, run as a subprocess: a snapshot
//! with its memory file sealed under a key and opened back to the same bytes, and every kind
//! of bad input (wrong key, tampered byte in either file, truncated file, a memory file of
//! another snapshot, a plain file, a key file others can read) refused with one line and a
//! non-zero exit, leaving no output behind.

#![cfg(target_arch = "x86_64")]

mod common;
mod memory_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::TempDir;
use kvm_state::{MicrovmState, CURRENT_APP_VERSION};
use memory_support::{flip_byte, patterned};

const MIB: u64 = 1 << 20;

fn vmstate(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmstate"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "status {:?}, stderr {}",
        output.status,
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Fails with exit code 1 and one line on stderr that contains `expected`.
fn assert_refused(output: &Output, expected: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("vmstate: "), "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn mem(path: &Path) -> PathBuf {
    MicrovmState::memory_file_path(path)
}

/// A snapshot at `path` with 2 MiB of guest memory in its memory file.
fn snapshot(path: &Path, clock: u64, seed: u64) {
    let mut state = MicrovmState::default();
    state.vm.clock.clock = clock;
    let memory = patterned(0, 2 * MIB, 5, seed);
    state
        .save_with_memory(path, CURRENT_APP_VERSION, &[memory.region()])
        .unwrap();
}

fn keygen(dir: &TempDir, name: &str) -> PathBuf {
    let key = dir.path().join(name);
    let out = assert_ok(&vmstate(&[&"keygen", &key]));
    assert!(out.contains("new key"), "{out}");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    key
}

#[test]
fn test_vmstate_seal_unseal_round_trip_with_memory_file() {
    let dir = TempDir::new("seal-cli-round-trip");
    let key = keygen(&dir, "key");
    // keygen never overwrites a key.
    assert_refused(&vmstate(&[&"keygen", &key]), "key");

    let plain = dir.path().join("vm.snap");
    snapshot(&plain, 7, 1);
    for algorithm in ["hmac-sha256", "chacha20-poly1305", "aes-256-gcm"] {
        let sealed = dir.path().join(format!("vm-{algorithm}.sealed"));
        let out = assert_ok(&vmstate(&[
            &"seal",
            &"--key",
            &key,
            &"--algorithm",
            &algorithm,
            &plain,
            &"-o",
            &sealed,
        ]));
        assert!(out.contains(algorithm), "{out}");
        assert!(mem(&sealed).exists(), "{out}");
        if algorithm != "hmac-sha256" {
            // Encrypted: the guest memory's pattern does not show through.
            let sealed_memory = std::fs::read(mem(&sealed)).unwrap();
            let plain_memory = std::fs::read(mem(&plain)).unwrap();
            assert!(!sealed_memory
                .windows(64)
                .any(|w| w == &plain_memory[4096..4160]));
        }
        let out = assert_ok(&vmstate(&[&"verify-sealed", &"--key", &key, &sealed]));
        assert!(out.contains(": ok: sealed with"), "{out}");

        let opened = dir.path().join(format!("vm-{algorithm}.opened"));
        assert_ok(&vmstate(&[
            &"unseal", &"--key", &key, &sealed, &"-o", &opened,
        ]));
        assert_eq!(
            std::fs::read(&opened).unwrap(),
            std::fs::read(&plain).unwrap()
        );
        assert_eq!(
            std::fs::read(mem(&opened)).unwrap(),
            std::fs::read(mem(&plain)).unwrap()
        );
        // The opened snapshot is an ordinary one.
        assert_ok(&vmstate(&[&"memory", &"verify", &opened]));
    }
}

#[test]
fn test_vmstate_sealed_bad_inputs_are_one_line_errors_and_leave_nothing() {
    let dir = TempDir::new("seal-cli-bad");
    let key = keygen(&dir, "key");
    let other_key = keygen(&dir, "other-key");
    let plain = dir.path().join("vm.snap");
    snapshot(&plain, 7, 1);
    let sealed = dir.path().join("vm.sealed");
    assert_ok(&vmstate(&[&"seal", &"--key", &key, &plain, &"-o", &sealed]));
    let out = dir.path().join("out.snap");
    let unseal =
        |sealed: &Path, key: &Path| vmstate(&[&"unseal", &"--key", &key, &sealed, &"-o", &out]);
    let nothing_written = || {
        assert!(!out.exists());
        assert!(!mem(&out).exists());
    };

    // Wrong key.
    assert_refused(&unseal(&sealed, &other_key), "wrong key");
    nothing_written();

    // A byte changed in the state file, then in the memory file.
    for victim in [sealed.clone(), mem(&sealed)] {
        let copy = dir.path().join("copy.sealed");
        std::fs::copy(&sealed, &copy).unwrap();
        std::fs::copy(mem(&sealed), mem(&copy)).unwrap();
        let target = if victim == sealed {
            copy.clone()
        } else {
            mem(&copy)
        };
        let len = std::fs::metadata(&target).unwrap().len();
        flip_byte(&target, len / 2);
        let output = unseal(&copy, &key);
        assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
        assert!(
            text(&output.stderr).contains("tampered"),
            "{}",
            text(&output.stderr)
        );
        nothing_written();
        assert_eq!(
            vmstate(&[&"verify-sealed", &"--key", &key, &copy])
                .status
                .code(),
            Some(1)
        );
    }

    // A truncated memory file.
    let cut = dir.path().join("cut.sealed");
    std::fs::copy(&sealed, &cut).unwrap();
    let memory = std::fs::read(mem(&sealed)).unwrap();
    std::fs::write(mem(&cut), &memory[..memory.len() - 100]).unwrap();
    let output = unseal(&cut, &key);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("truncated"),
        "{}",
        text(&output.stderr)
    );
    nothing_written();

    // The memory file of another snapshot sealed under the same key.
    let plain2 = dir.path().join("vm2.snap");
    snapshot(&plain2, 8, 2);
    let sealed2 = dir.path().join("vm2.sealed");
    assert_ok(&vmstate(&[
        &"seal", &"--key", &key, &plain2, &"-o", &sealed2,
    ]));
    let swapped = dir.path().join("swapped.sealed");
    std::fs::copy(&sealed, &swapped).unwrap();
    std::fs::copy(mem(&sealed2), mem(&swapped)).unwrap();
    let output = unseal(&swapped, &key);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr).lines().count(), 1);
    nothing_written();

    // A plain snapshot is not sealed.
    assert_refused(&unseal(&plain, &key), "not a sealed file");

    // A key file others can read is refused.
    let loose = dir.path().join("loose-key");
    std::fs::copy(&key, &loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = vmstate(&[&"seal", &"--key", &loose, &plain, &"-o", &out]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains(&*loose.to_string_lossy()));
    nothing_written();
}
