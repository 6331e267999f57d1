//! The `demo-vmm` command line, run as a user runs it: snapshot in one process, restore in
//! another, and the two outputs together are the uninterrupted run's (`expected`); refused
//! snapshots exit with code 2 and name the error in one line; other failures exit with 1.

#![cfg(target_arch = "x86_64")]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{kvm_available, TempDir};
use demo_vmm::{expected_output, expected_virtio_output};
use kvm_state::{MicrovmState, APP_VERSION_1, APP_VERSION_3, CURRENT_APP_VERSION};

/// Runs `demo-vmm` with `args`.
fn demo_vmm(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_demo-vmm"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Runs `demo-vmm` with `args` and expects exit code 0; returns its standard output.
fn ok(args: &[&str]) -> String {
    let output = demo_vmm(args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{args:?}: {}",
        stderr(&output)
    );
    stdout(&output)
}

/// The uninterrupted run's output in the stable line format, from the guest's definition.
fn expected_lines() -> String {
    let mut text = String::new();
    for (vcpu, reports) in expected_output().iter().enumerate() {
        for value in reports {
            text.push_str(&format!("vcpu{vcpu} {value:#010x}\n"));
        }
    }
    for payload in expected_virtio_output() {
        text.push_str(&format!("virtio {payload:#010x}\n"));
    }
    text.push_str("vm finished\n");
    text
}

/// `run`'s output followed by `restore`'s, sorted stably by the first field (`sort -s
/// -k1,1`): each vCPU's lines stay in order, the first process's before the second's.
fn merged(before: &str, after: &str) -> String {
    let mut lines: Vec<&str> = before.lines().chain(after.lines()).collect();
    lines.sort_by_key(|line| line.split(' ').next().unwrap_or_default());
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// Runs the guest to the stop point given by `stop`, saving to `path` at `app_version`; then
/// restores it in another process; checks the outputs together are `expected`'s.
fn save_then_restore(path: &Path, stop: &[&str], app_version: u16) -> (String, String) {
    let file = path.to_str().unwrap();
    let version = app_version.to_string();
    let mut args = vec!["run"];
    args.extend_from_slice(stop);
    args.extend_from_slice(&["--save", file, "--app-version", &version]);
    let before = ok(&args);
    assert!(!before.contains("vm finished"), "{stop:?}: {before}");
    let (state, saved_version) = MicrovmState::load_file(path).unwrap();
    assert_eq!(saved_version, app_version);
    // Host facts exist from app version 3 on; the demo VMM records them.
    assert_eq!(state.host.is_known(), app_version >= APP_VERSION_3);
    let after = ok(&["restore", file]);
    assert!(after.ends_with("vm finished\n"), "{stop:?}: {after}");
    assert_eq!(merged(&before, &after), expected_lines(), "{stop:?}");
    (before, after)
}

#[test]
fn test_cli_versions() {
    let versions = ok(&["versions"]);
    let all: Vec<String> = (1..=CURRENT_APP_VERSION).map(|v| v.to_string()).collect();
    assert_eq!(
        versions,
        format!(
            "reads {0}\nwrites {0}\ncurrent {CURRENT_APP_VERSION}\n",
            all.join(" ")
        )
    );
}

#[test]
fn test_cli_expected_is_the_uninterrupted_run() {
    if !kvm_available() {
        return;
    }
    assert_eq!(ok(&["expected"]), expected_lines());
}

#[test]
fn test_cli_save_in_one_process_restore_in_another() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("cli-save-restore");
    let path = dir.path().join("mid.snap");
    // The default stop point: the BSP has submitted its virtio requests, AP1 runs, AP2 waits
    // for its IPI.
    let (before, after) = save_then_restore(&path, &[], CURRENT_APP_VERSION);
    assert!(before.lines().any(|l| l.starts_with("vcpu2 ")), "{before}");
    assert!(after.lines().any(|l| l.starts_with("virtio ")), "{after}");
    // A number of reports; a moment in time (wherever the kick finds each vCPU).
    save_then_restore(&path, &["--stop-at-report", "7"], CURRENT_APP_VERSION);
    save_then_restore(&path, &["--stop-after-ms", "5"], CURRENT_APP_VERSION);
    // Rolled back to app version 1.
    save_then_restore(&path, &[], APP_VERSION_1);
}

#[test]
fn test_cli_refused_snapshots_exit_2_with_the_named_error() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("cli-refused");
    let good = dir.path().join("good.snap");
    ok(&["run", "--save", good.to_str().unwrap()]);
    let (state, _) = MicrovmState::load_file(&good).unwrap();

    let refused = |name: &str, bytes: &[u8], error: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let output = demo_vmm(&["restore", path.to_str().unwrap()]);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{name}: {text}");
        assert_eq!(text.lines().count(), 1, "{name}: {text}");
        assert!(
            text.starts_with(&format!("demo-vmm: refused: {}: {error}: ", path.display())),
            "{name}: {text}"
        );
        assert!(stdout(&output).is_empty(), "{name}");
    };
    // One bit flipped in guest memory.
    let mut corrupt = std::fs::read(&good).unwrap();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x10;
    refused("corrupt.snap", &corrupt, "Crc64");
    // Two vCPUs' states swapped.
    let mut swapped = state.clone();
    swapped.vcpus.swap(1, 2);
    refused(
        "swapped.snap",
        &swapped.to_snapshot_bytes(CURRENT_APP_VERSION).unwrap(),
        "ApicId",
    );
    // A fourth vCPU.
    let mut four = state.clone();
    let mut fourth = state.vcpus[0].clone();
    fourth.lapic.regs[0x23] = 3;
    four.vcpus.push(fourth);
    refused(
        "four-vcpus.snap",
        &four.to_snapshot_bytes(CURRENT_APP_VERSION).unwrap(),
        "VcpuCount",
    );
    // More UART input than its FIFO holds: the demo's own check.
    let mut full = state.clone();
    full.devices.serial[0].in_buffer = vec![b'x'; 65];
    refused(
        "uart-input.snap",
        &full.to_snapshot_bytes(CURRENT_APP_VERSION).unwrap(),
        "SerialInput",
    );
    // A virtio queue the device model refuses: the demo's own check.
    let mut queue = state;
    queue.devices.virtio_mmio[0].queues[0].size = 3;
    refused(
        "virtio-queue.snap",
        &queue.to_snapshot_bytes(CURRENT_APP_VERSION).unwrap(),
        "VirtioQueue",
    );
}

#[test]
fn test_cli_other_failures_exit_1() {
    let dir = TempDir::new("cli-other");
    let missing = dir.path().join("missing.snap");
    let cases: [&[&str]; 4] = [
        &["restore", missing.to_str().unwrap()],
        &["run", "--save", "x.snap", "--app-version", "0"],
        &["run", "--stop-at-report", "3", "--stop-after-ms", "3"],
        &["frobnicate"],
    ];
    for args in cases {
        let output = demo_vmm(args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(!stderr(&output).is_empty(), "{args:?}");
    }
    if !kvm_available() {
        return;
    }
    // A stop point past the end: the guest finished, there is nothing to save.
    let late = dir.path().join("late.snap");
    let output = demo_vmm(&[
        "run",
        "--stop-at-report",
        "1000",
        "--save",
        late.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(stdout(&output), expected_lines());
    assert!(!late.exists());
}

/// A build whose support window starts above a snapshot's data version refuses it by name
/// before decoding any state (`AppVersionUnsupported`), and nothing is lost: a build whose
/// window includes it restores it to the uninterrupted output.
#[test]
fn test_cli_restore_outside_the_support_window_is_refused_by_name() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("cli-window");
    let saved = dir.path().join("v3.snap");
    let before = ok(&[
        "run",
        "--save",
        saved.to_str().unwrap(),
        "--app-version",
        &APP_VERSION_3.to_string(),
    ]);
    // The same bytes without the writer-info side file, so stderr holds the refusal alone.
    let path = dir.path().join("copy.snap");
    std::fs::copy(&saved, &path).unwrap();
    let oldest = (APP_VERSION_3 + 1).to_string();
    let output = demo_vmm(&[
        "restore",
        path.to_str().unwrap(),
        "--oldest-app-version",
        &oldest,
    ]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with(&format!(
            "demo-vmm: refused: {}: AppVersionUnsupported: ",
            path.display()
        )),
        "{text}"
    );
    assert!(stdout(&output).is_empty());
    // Inside the window (and without one) the same file restores to the uninterrupted run.
    let after = ok(&[
        "restore",
        path.to_str().unwrap(),
        "--oldest-app-version",
        &APP_VERSION_3.to_string(),
    ]);
    assert_eq!(merged(&before, &after), expected_lines());
}
