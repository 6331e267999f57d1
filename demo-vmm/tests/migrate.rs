//! `demo-vmm migrate-to` / `migrate-from`: two processes migrate the running guest over a Unix
//! socket and over TCP on the loopback address, negotiating the highest common app version;
//! with no common version both refuse and the source finishes the guest itself. Either way the
//! two outputs together are the uninterrupted run's.

#![cfg(target_arch = "x86_64")]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};

use common::{kvm_available, TempDir};
use demo_vmm::{expected_output, expected_virtio_output};
use kvm_state::CURRENT_APP_VERSION;

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

/// Merges outputs as `sort -s -k1,1` does: stably by the first field.
fn merged(outputs: &[&str]) -> String {
    let mut lines: Vec<&str> = outputs.iter().flat_map(|o| o.lines()).collect();
    lines.sort_by_key(|line| line.split(' ').next().unwrap_or_default());
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// A destination process, its address, and its stderr being read in the background (so it
/// never blocks on a full pipe).
struct Dst {
    child: Child,
    addr: String,
    stderr: std::thread::JoinHandle<String>,
}

/// Starts `demo-vmm migrate-from LISTEN EXTRA...` and waits for its `listening <addr>` line.
fn destination(listen: &str, extra: &[&str]) -> Dst {
    let mut child = Command::new(env!("CARGO_BIN_EXE_demo-vmm"))
        .arg("migrate-from")
        .arg(listen)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("destination said {line:?}"))
        .to_owned();
    let stderr = std::thread::spawn(move || {
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).unwrap();
        rest
    });
    Dst {
        child,
        addr,
        stderr,
    }
}

/// Waits for the destination to end.
fn wait(dst: Dst) -> Output {
    let mut output = dst.child.wait_with_output().unwrap();
    output.stderr = dst.stderr.join().unwrap().into_bytes();
    output
}

fn source(addr: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_demo-vmm"))
        .arg("migrate-to")
        .arg(addr)
        .args(extra)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Migrates once between two processes and checks the merged output and the agreed version.
fn migrate_and_check(listen: &str, dst_extra: &[&str], src_extra: &[&str], agreed: u16) {
    let dst = destination(listen, dst_extra);
    let src = source(&dst.addr, src_extra);
    let dst = wait(dst);
    let (src_err, dst_err) = (text(&src.stderr), text(&dst.stderr));
    assert_eq!(src.status.code(), Some(0), "source: {src_err}");
    assert_eq!(dst.status.code(), Some(0), "destination: {dst_err}");
    let agreement = format!("agreed on {agreed}");
    assert!(src_err.contains(&agreement), "{src_err}");
    assert!(dst_err.contains(&agreement), "{dst_err}");
    assert!(dst_err.contains("downtime"), "{dst_err}");
    assert!(!text(&src.stdout).contains("vm finished"));
    assert_eq!(
        merged(&[&text(&src.stdout), &text(&dst.stdout)]),
        expected_lines(),
        "source: {src_err}\ndestination: {dst_err}"
    );
}

#[test]
fn test_migrate_over_unix_socket() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("migrate-unix");
    let listen = format!("unix:{}", dir.path().join("m.sock").display());
    migrate_and_check(&listen, &[], &[], CURRENT_APP_VERSION);
}

#[test]
fn test_migrate_over_tcp_loopback() {
    if !kvm_available() {
        return;
    }
    migrate_and_check("tcp:127.0.0.1:0", &[], &[], CURRENT_APP_VERSION);
}

/// An older build (simulated by a window up to 2) and a newer one agree on the older's
/// newest app version.
#[test]
fn test_migrate_negotiates_highest_common_version() {
    if !kvm_available() {
        return;
    }
    migrate_and_check(
        "tcp:127.0.0.1:0",
        &["--newest-app-version", "2"],
        &["--stop-at-report", "7"],
        2,
    );
}

/// No common app version: both ends say so, nothing is sent, and the source finishes the
/// guest itself with the uninterrupted output.
#[test]
fn test_migrate_no_common_version_source_resumes() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("migrate-none");
    let listen = format!("unix:{}", dir.path().join("m.sock").display());
    let dst = destination(&listen, &["--oldest-app-version", "3"]);
    let src = source(&dst.addr, &["--newest-app-version", "2"]);
    let dst = wait(dst);
    let (src_err, dst_err) = (text(&src.stderr), text(&dst.stderr));
    assert_eq!(src.status.code(), Some(2), "source: {src_err}");
    assert_eq!(dst.status.code(), Some(2), "destination: {dst_err}");
    assert!(src_err.contains("NoCommonVersion"), "{src_err}");
    assert!(src_err.contains("resuming the guest here"), "{src_err}");
    assert!(dst_err.contains("NoCommonVersion"), "{dst_err}");
    assert!(text(&dst.stdout).is_empty());
    // The source printed its output to the stop point, then the rest after resuming.
    assert_eq!(merged(&[&text(&src.stdout)]), expected_lines());
}

#[test]
fn test_migrate_refuses_bad_addresses() {
    for args in [
        &["migrate-to", "nowhere"][..],
        &["migrate-from", "udp:1.2.3.4:5"][..],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_demo-vmm"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        assert!(text(&output.stderr).contains("neither unix:PATH nor tcp:HOST:PORT"));
    }
}

/// A source that sends only part of guest memory: the destination refuses to resume a guest
/// whose memory would be partly zero (`MemoryIncomplete`), tells the source, and exits 2.
#[test]
fn test_migrate_from_refuses_incomplete_memory() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("migrate-partial");
    let listen = format!("unix:{}", dir.path().join("m.sock").display());
    let dst = destination(&listen, &[]);
    let path = dst.addr.strip_prefix("unix:").unwrap().to_owned();

    let mut vm = common::loaded_vm();
    vm.run(demo_vmm::StopWhen::Condition(demo_vmm::mid_run))
        .unwrap();
    let mut state = vm.save_microvm().unwrap();
    let memory = std::mem::take(&mut state.memory[0].contents);
    let stream = std::os::unix::net::UnixStream::connect(path).unwrap();
    let mut source = migration::Source::handshake(
        stream,
        &kvm_state::version_map(),
        &migration::Config::new("partial source"),
    )
    .unwrap();
    source.send_state(&state).unwrap();
    source.send_memory(0, &memory[..memory.len() / 2]).unwrap();
    let outcome = source.finish();
    assert!(outcome.is_err(), "{outcome:?}");

    let dst = wait(dst);
    let dst_err = text(&dst.stderr);
    assert_eq!(dst.status.code(), Some(2), "{dst_err}");
    assert!(dst_err.contains("MemoryIncomplete"), "{dst_err}");
    assert!(
        dst.stdout.is_empty(),
        "the guest never ran at the destination"
    );
}
