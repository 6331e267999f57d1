//! The `vmstate` binary, run as a subprocess: the good paths on a snapshot built here (no KVM
//! needed), and every kind of bad input, which must give one `vmstate: ...` line on stderr
//! and exit code 1 (2 for a bad command line), never a panic.

#![cfg(target_arch = "x86_64")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::TempDir;
use kvm_state::QueueState;
use kvm_state::{
    version_map, ClockState, DevicesState, MemoryRegionState, MicrovmState, MmioTransportState,
    Regs, SerialState, VcpuState, VmState, APP_VERSION_1, CURRENT_APP_VERSION,
};
use snapshot::magic::MAGIC_AARCH64;
use versionize::crc::crc64;
use versionize::schema::export;

const MEMORY_LEN: usize = 4096;

fn sample_state() -> MicrovmState {
    let vcpu = |id: u64| VcpuState {
        regs: Regs {
            rip: 0x8000 + id,
            rflags: 0x2,
            ..Default::default()
        },
        tsc_khz: Some(3_000_000),
        // The kernel's sizes, which every restore (and `verify`) checks.
        xsave: kvm_state::Xsave {
            region: vec![0; 1024],
            extra: Vec::new(),
        },
        // Each vCPU's own APIC id (register 0x20, bits 31:24), as `verify` requires.
        lapic: kvm_state::Lapic {
            regs: (0..kvm_state::LAPIC_REGS_SIZE)
                .map(|i| if i == 0x23 { id as u8 } else { 0 })
                .collect(),
        },
        ..Default::default()
    };
    MicrovmState {
        vm: VmState {
            clock: ClockState {
                clock: 1_000_000,
                flags: kvm_bindings::KVM_CLOCK_REALTIME,
                realtime: 1_700_000_000_000_000_000,
                host_tsc: 42,
            },
            ..Default::default()
        },
        vcpus: vec![vcpu(0), vcpu(1)],
        devices: DevicesState {
            serial: vec![SerialState {
                line_status: 0x60,
                in_buffer: b"ok".to_vec(),
                ..Default::default()
            }],
            virtio_mmio: vec![MmioTransportState {
                device_status: 0xf,
                queues: vec![QueueState {
                    size: 256,
                    ready: true,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        },
        memory: vec![MemoryRegionState::with_contents(
            0,
            (0..MEMORY_LEN).map(|i| (i % 251) as u8).collect(),
        )],
        ..Default::default()
    }
}

/// A directory with `good.snap`, a sound snapshot of [`sample_state`] at the current app
/// version.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = TempDir::new(name);
        sample_state()
            .save_to_file(dir.path().join("good.snap"), CURRENT_APP_VERSION)
            .unwrap();
        Fixture { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn good(&self) -> PathBuf {
        self.path("good.snap")
    }

    fn good_bytes(&self) -> Vec<u8> {
        std::fs::read(self.good()).unwrap()
    }

    /// Writes `bytes` as `name`, first recomputing the CRC when `fix_crc` is set.
    fn write(&self, name: &str, mut bytes: Vec<u8>, fix_crc: bool) -> PathBuf {
        if fix_crc {
            let body = bytes.len() - 8;
            let crc = crc64(&bytes[..body]);
            bytes[body..].copy_from_slice(&crc.to_le_bytes());
        }
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

fn vmstate(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmstate"))
        .args(args.iter().map(|a| a.as_ref()))
        // A panic would print a backtrace: the checks below would see it.
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[track_caller]
fn assert_ok(output: &Output) -> String {
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// Exit `code`, and exactly one line on stderr: `vmstate: ...` containing `needle`.
#[track_caller]
fn assert_fails_with(output: &Output, code: i32, needle: &str) -> String {
    let err = stderr(output);
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{err}",
        stdout(output)
    );
    assert!(
        err.starts_with("vmstate: ") && err.ends_with('\n') && err.lines().count() == 1,
        "not one line: {err:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
    err
}

/// Every command that reads a snapshot fails on `path` with one line containing `needle`.
#[track_caller]
fn assert_every_command_fails(fixture: &Fixture, path: &Path, needle: &str) {
    let out = fixture.path("converted.snap");
    for args in [
        vec!["info"],
        vec!["verify"],
        vec!["dump"],
        vec!["dump", "--json"],
        vec!["convert", "--to-version", "1", "-o"],
    ] {
        let mut argv: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        if args[0] == "convert" {
            argv.push(&out);
        }
        argv.push(&path);
        let output = vmstate(&argv);
        let err = assert_fails_with(&output, 1, needle);
        assert!(
            err.contains(&path.display().to_string()),
            "{args:?}: the path is not named: {err}"
        );
        if args[0] != "info" {
            assert!(output.stdout.is_empty(), "{args:?}: {}", stdout(&output));
        }
    }
    assert!(!out.exists(), "convert wrote from a bad file");
}

// ---------------------------------------------------------------------------------------
// Good paths.

#[test]
fn test_cli_info_shows_container_fields() {
    let fixture = Fixture::new("cli-info");
    let text = assert_ok(&vmstate(&[&"info", &fixture.good()]));
    let len = fixture.good_bytes().len();
    for needle in [
        "magic:          0x0710198486640001 (x86_64, this host's architecture)",
        "format version: 1 (this build reads 1..=1)",
        &format!(
            "data version:   {CURRENT_APP_VERSION} (this build reads 1..={CURRENT_APP_VERSION})"
        ),
        &format!("file size:      {len} bytes"),
        &format!("state size:     {} bytes", len - 18),
        "crc64:          ok (0x",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
}

#[test]
fn test_cli_verify_sound_file() {
    let fixture = Fixture::new("cli-verify");
    let text = assert_ok(&vmstate(&[&"verify", &fixture.good()]));
    assert!(
        text.ends_with(&format!(
            ": ok: data version {CURRENT_APP_VERSION}, 2 vcpu(s), 1 serial and 1 virtio-mmio \
             device(s), 1 memory region(s) of {MEMORY_LEN} bytes\n"
        )),
        "{text}"
    );
}

#[test]
fn test_cli_dump_text_summarizes_memory() {
    let fixture = Fixture::new("cli-dump");
    let text = assert_ok(&vmstate(&[&"dump", &fixture.good()]));
    let crc = crc64(&sample_state().memory[0].contents);
    for needle in [
        &format!("data_version: {CURRENT_APP_VERSION}\n"),
        "root: kvm_state::microvm::MicrovmState\n",
        "vcpus[0].regs.rip: 0x8000\n",
        "vcpus[1].regs.rip: 0x8001\n",
        "vcpus[0].tsc_khz: 3000000 (0x2dc6c0)\n",
        "devices.serial[0].in_buffer: [6f6b]\n",
        "vm.clock.realtime: 0x17979cfe362a0000\n",
        &format!("memory[0].contents: {MEMORY_LEN} bytes, crc64 {crc:#018x}\n"),
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    // Guest memory is not dumped unless asked for.
    assert!(!text.contains("  00000000  00 01 02 03"), "{text}");
    assert!(text.len() < 100_000, "{} bytes of dump", text.len());

    let with_memory = assert_ok(&vmstate(&[&"dump", &"--memory", &fixture.good()]));
    assert!(
        with_memory.contains(&format!(
            "memory[0].contents: {MEMORY_LEN} bytes, crc64 {crc:#018x}\n  00000000  00 01 02 03"
        )),
        "{with_memory}"
    );
}

#[test]
fn test_cli_dump_json_parses() {
    let fixture = Fixture::new("cli-json");
    let text = assert_ok(&vmstate(&[&"dump", &"--json", &fixture.good()]));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["data_version"], CURRENT_APP_VERSION);
    assert_eq!(json["root"], "kvm_state::microvm::MicrovmState");
    let state = &json["state"];
    // 64-bit values are hex strings, narrower ones numbers.
    assert_eq!(state["vcpus"][1]["regs"]["rip"], "0x8001");
    assert_eq!(state["vcpus"][0]["tsc_khz"], 3_000_000);
    assert_eq!(state["vm"]["clock"]["host_tsc"], "0x2a");
    assert_eq!(state["devices"]["virtio_mmio"][0]["queues"][0]["size"], 256);
    let region = &state["memory"][0];
    assert_eq!(region["size"], format!("{MEMORY_LEN:#x}"));
    assert_eq!(region["contents"]["len"], MEMORY_LEN);
    assert_eq!(
        region["contents"]["crc64"],
        format!("{:#018x}", crc64(&sample_state().memory[0].contents))
    );

    let text = assert_ok(&vmstate(&[
        &"dump",
        &"--json",
        &"--memory",
        &fixture.good(),
    ]));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let contents = json["state"]["memory"][0]["contents"].as_str().unwrap();
    assert_eq!(contents.len(), 2 * MEMORY_LEN);
    assert!(contents.starts_with("00010203"));
}

/// Issue 16: 64-bit values keep their exact value through `jq` (as numbers, jq rounded
/// `realtime` 1796122410083834518 to ...600), and registers read as hex.
#[test]
fn test_cli_dump_json_keeps_64_bit_values_through_jq() {
    if Command::new("jq").arg("--version").output().is_err() {
        eprintln!("jq is not installed: not testing the pipe through it");
        return;
    }
    let fixture = Fixture::new("cli-jq");
    let mut state = sample_state();
    state.vm.clock.realtime = 1_796_122_410_083_834_518;
    state.vcpus[0].regs.rip = u64::MAX - 1;
    let path = fixture.path("jq.snap");
    state.save_to_file(&path, CURRENT_APP_VERSION).unwrap();
    let dump = assert_ok(&vmstate(&[&"dump", &"--json", &path]));
    let jq = |filter: &str| {
        let mut child = Command::new("jq")
            .args(["-r", filter])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(dump.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let realtime = jq(".state.vm.clock.realtime");
    assert_eq!(
        u64::from_str_radix(realtime.trim_start_matches("0x"), 16).unwrap(),
        1_796_122_410_083_834_518
    );
    assert_eq!(jq(".state.vcpus[0].regs.rip"), "0xfffffffffffffffe");
}

#[test]
fn test_cli_convert_to_version_1_then_verify_and_info() {
    let fixture = Fixture::new("cli-convert");
    let out = fixture.path("v1.snap");
    let text = assert_ok(&vmstate(&[
        &"convert",
        &fixture.good(),
        &"--to-version",
        &"1",
        &"-o",
        &out,
    ]));
    assert!(
        text.starts_with(&format!(
            "wrote {}: data version 1 (was {CURRENT_APP_VERSION}), ",
            out.display()
        )),
        "{text}"
    );
    // What app version 1 cannot hold is listed.
    for needle in [
        "vcpus[0].tsc_khz: some 3000000 (0x2dc6c0) -> none",
        "vcpus[1].tsc_khz: some 3000000 (0x2dc6c0) -> none",
        "vm.clock.host_tsc: 0x2a -> 0x0",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    assert_ok(&vmstate(&[&"verify", &out]));
    let info = assert_ok(&vmstate(&[&"info", &out]));
    assert!(
        info.contains("data version:   1 (this build reads"),
        "{info}"
    );

    // The file is what this build writes for app version 1.
    let (loaded, version) = MicrovmState::load_file(&out).unwrap();
    assert_eq!(version, APP_VERSION_1);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        loaded.to_snapshot_bytes(APP_VERSION_1).unwrap()
    );

    // And back up: nothing else is lost, nothing listed.
    let up = fixture.path("v2.snap");
    let text = assert_ok(&vmstate(&[
        &"convert",
        &out,
        &"--to-version",
        &CURRENT_APP_VERSION.to_string(),
        &"-o",
        &up,
    ]));
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn test_cli_schema_export() {
    let latest = assert_ok(&vmstate(&[&"schema", &"export"]));
    assert_eq!(
        latest,
        export::<MicrovmState>(&version_map(), CURRENT_APP_VERSION)
            .unwrap()
            .to_json()
    );
    let v1 = assert_ok(&vmstate(&[&"schema", &"export", &"--version", &"1"]));
    assert_eq!(
        v1,
        export::<MicrovmState>(&version_map(), 1).unwrap().to_json()
    );
    // The committed file of app version 1 describes this export (fields added since, absent
    // at app version 1, are listed in the export only).
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema/v1.json")).unwrap();
    let committed = versionize::schema::Schema::from_json(&committed).unwrap();
    let exported = versionize::schema::Schema::from_json(&v1).unwrap();
    assert!(versionize::schema::compare(&committed, &exported).is_empty());
}

#[test]
fn test_cli_schema_check_clean_and_with_a_difference() {
    let fixture = Fixture::new("cli-schema");
    let old = fixture.path("old.json");
    std::fs::write(&old, assert_ok(&vmstate(&[&"schema", &"export"]))).unwrap();
    let text = assert_ok(&vmstate(&[&"schema", &"check", &old, &old]));
    assert!(text.contains("compatible"), "{text}");

    // A build that retyped `Regs.rip` and added `Regs.rip2` without a version bump.
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&old).unwrap()).unwrap();
    let fields = json["types"]["kvm_state::vcpu::regs::Regs"]["kind"]["struct"]["fields"]
        .as_array_mut()
        .unwrap();
    let rip = fields.iter_mut().find(|f| f["name"] == "rip").unwrap();
    rip["ty"] = "u32".into();
    let mut rip2 = rip.clone();
    rip2["name"] = "rip2".into();
    fields.push(rip2);
    let new = fixture.path("new.json");
    std::fs::write(&new, serde_json::to_string(&json).unwrap()).unwrap();

    let output = vmstate(&[&"schema", &"check", &old, &new]);
    assert_fails_with(&output, 1, "2 breaking difference(s)");
    assert_eq!(
        stdout(&output),
        "kvm_state::vcpu::regs::Regs.rip: type changed from u64 to u32 without a version change \
         (add a new field with `start` and retire this one with `end`)\n\
         kvm_state::vcpu::regs::Regs.rip2: field of type u32 added without a version change (give \
         it `start = <new version>` and map the new version)\n"
    );
}

/// Exports of two app versions differ by design: `schema check` refuses to compare them
/// and says what it expected (it used to list every difference as breaking).
#[test]
fn test_cli_schema_check_refuses_different_app_versions() {
    let fixture = Fixture::new("cli-schema-versions");
    let v1 = fixture.path("v1.json");
    let v2 = fixture.path("v2.json");
    std::fs::write(
        &v1,
        assert_ok(&vmstate(&[&"schema", &"export", &"--version", &"1"])),
    )
    .unwrap();
    std::fs::write(
        &v2,
        assert_ok(&vmstate(&[&"schema", &"export", &"--version", &"2"])),
    )
    .unwrap();
    let output = vmstate(&[&"schema", &"check", &v1, &v2]);
    assert_fails_with(&output, 1, "describe different app versions: ");
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains("is app version 1 and")
            && text.contains(
                "app version 2: compare two exports of the same app version \
                              (`vmstate schema export --version 1` in the new build)"
            ),
        "{text}"
    );
    assert_eq!(stdout(&output), "", "no difference is listed");
}

#[test]
fn test_cli_help_speaks_to_operators() {
    let text = assert_ok(&vmstate(&[&"--help"]));
    for needle in [
        "info",
        "verify",
        "dump",
        "convert",
        "schema",
        "Exit status",
        "rollback",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    for command in ["info", "verify", "dump", "diff", "convert", "schema"] {
        let text = assert_ok(&vmstate(&[&command, &"--help"]));
        assert!(text.contains("Usage: vmstate "), "{text}");
    }
    // Issue 16: each command's help lists only its own options (schema export and check
    // listed --max-state-size).
    for command in ["info", "verify", "dump", "diff", "convert"] {
        let text = assert_ok(&vmstate(&[&command, &"--help"]));
        assert!(text.contains("--max-state-size"), "{command}: {text}");
    }
    for command in ["export", "check"] {
        let text = assert_ok(&vmstate(&[&"schema", &command, &"--help"]));
        assert!(!text.contains("--max-state-size"), "{text}");
        assert!(!text.contains("--schema <"), "{text}");
    }
    let text = assert_ok(&vmstate(&[&"dump", &"--help"]));
    assert!(
        text.contains("--schema <SCHEMA>") && text.contains("--root <TYPE>"),
        "{text}"
    );
    assert_ok(&vmstate(&[&"--version"]));
}

// ---------------------------------------------------------------------------------------
// Bad input: one line on stderr, exit 1, for every command that reads a snapshot.

#[test]
fn test_cli_missing_file() {
    let fixture = Fixture::new("cli-missing");
    let path = fixture.path("missing.snap");
    assert_every_command_fails(&fixture, &path, "open: No such file or directory");
}

#[test]
fn test_cli_directory() {
    let fixture = Fixture::new("cli-dir");
    let path = fixture.path("a-directory");
    std::fs::create_dir(&path).unwrap();
    assert_every_command_fails(&fixture, &path, "not a regular file");
}

/// Unreadable paths. The tests run as root, which reads a mode-000 file anyway, so they use
/// paths no user can open: one below a regular file, and a dangling symbolic link. A mode-000
/// file is tested too when the current user really cannot read it.
#[test]
fn test_cli_unreadable_paths() {
    let fixture = Fixture::new("cli-unreadable");
    let below_file = fixture.good().join("x");
    assert_every_command_fails(&fixture, &below_file, "open: Not a directory");

    let dangling = fixture.path("dangling.snap");
    std::os::unix::fs::symlink(fixture.path("nowhere"), &dangling).unwrap();
    assert_every_command_fails(&fixture, &dangling, "open: No such file or directory");

    use std::os::unix::fs::PermissionsExt;
    let locked = fixture.write("locked.snap", fixture.good_bytes(), false);
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&locked).is_err() {
        assert_every_command_fails(&fixture, &locked, "open: Permission denied");
    } else {
        eprintln!("running as root: a mode-000 file is readable, not testing it");
    }
}

#[test]
fn test_cli_wrong_arch() {
    let fixture = Fixture::new("cli-arch");
    let mut bytes = fixture.good_bytes();
    bytes[..8].copy_from_slice(&(MAGIC_AARCH64 | 1).to_le_bytes());
    let path = fixture.write("aarch64.snap", bytes, true);
    assert_every_command_fails(
        &fixture,
        &path,
        "(aarch64): this build reads x86_64 snapshots",
    );
    let info = vmstate(&[&"info", &path]);
    assert!(
        stdout(&info).contains("(aarch64, NOT this host's x86_64)"),
        "{}",
        stdout(&info)
    );
    assert!(stdout(&info).contains("crc64:          ok"));
}

#[test]
fn test_cli_bad_crc() {
    let fixture = Fixture::new("cli-crc");
    let mut bytes = fixture.good_bytes();
    bytes[100] ^= 0x01;
    let path = fixture.write("flipped.snap", bytes, false);
    assert_every_command_fails(&fixture, &path, "crc64 mismatch: file says 0x");
    assert!(stdout(&vmstate(&[&"info", &path])).contains("crc64:          MISMATCH"));
}

#[test]
fn test_cli_unknown_data_version() {
    let fixture = Fixture::new("cli-version");
    let mut bytes = fixture.good_bytes();
    bytes[8..10].copy_from_slice(&9u16.to_le_bytes());
    let path = fixture.write("v9.snap", bytes, true);
    assert_every_command_fails(
        &fixture,
        &path,
        &format!("data version 9 is not supported (this build reads 1..={CURRENT_APP_VERSION})"),
    );
}

#[test]
fn test_cli_truncated_files() {
    let fixture = Fixture::new("cli-truncated");
    let bytes = fixture.good_bytes();
    let path = fixture.write("short.snap", bytes[..10].to_vec(), false);
    assert_every_command_fails(&fixture, &path, "snapshot of 10 bytes is too short");
    let path = fixture.write("empty.snap", Vec::new(), false);
    assert_every_command_fails(&fixture, &path, "snapshot of 0 bytes is too short");
    // Cut in the middle: what was the CRC is now state bytes.
    let path = fixture.write("half.snap", bytes[..bytes.len() / 2].to_vec(), false);
    assert_every_command_fails(&fixture, &path, "the file is truncated");
    // Cut anywhere in the state: always named, never blamed on the CRC alone.
    for len in [bytes.len() - 1, bytes.len() - 9, 30, 19] {
        let path = fixture.write("cut.snap", bytes[..len].to_vec(), false);
        assert_fails_with(&vmstate(&[&"verify", &path]), 1, "the file is truncated");
    }
    // A flipped byte is not a truncation.
    let mut flipped = bytes.clone();
    flipped[200] ^= 0x40;
    let path = fixture.write("flipped.snap", flipped, false);
    let err = assert_fails_with(&vmstate(&[&"verify", &path]), 1, "crc64 mismatch");
    assert!(!err.contains("the file is truncated"), "{err}");
}

/// A state cut short with a CRC made to match: the container is fine, `info` prints it and
/// then says that this build cannot read the state, and every command that decodes the
/// state fails.
#[test]
fn test_cli_truncated_state_with_valid_crc() {
    let fixture = Fixture::new("cli-state");
    let bytes = fixture.good_bytes();
    let mut cut = bytes[..bytes.len() / 2].to_vec();
    cut.extend_from_slice(&[0; 8]);
    let path = fixture.write("cut.snap", cut, true);
    let info = vmstate(&[&"info", &path]);
    assert_fails_with(&info, 1, "cannot load");
    assert!(
        stdout(&info).contains("crc64:          ok"),
        "{}",
        stdout(&info)
    );
    for args in [vec!["verify"], vec!["dump"], vec!["dump", "--json"]] {
        let mut argv: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        argv.push(&path);
        assert_fails_with(
            &vmstate(&argv),
            1,
            "truncated: the state ends inside this field",
        );
    }
}

#[test]
fn test_cli_state_over_the_cap() {
    let fixture = Fixture::new("cli-cap");
    let output = vmstate(&[&"verify", &"--max-state-size", &"1K", &fixture.good()]);
    assert_fails_with(&output, 1, "raise it with --max-state-size");
    assert_ok(&vmstate(&[
        &"verify",
        &"--max-state-size",
        &"64K",
        &fixture.good(),
    ]));
}

#[test]
fn test_cli_bad_memory_region() {
    let fixture = Fixture::new("cli-region");
    let mut state = sample_state();
    state.memory[0].size += 1;
    let path = fixture.path("region.snap");
    state.save_to_file(&path, CURRENT_APP_VERSION).unwrap();
    assert_fails_with(
        &vmstate(&[&"verify", &path]),
        1,
        "contents are not `size` bytes",
    );
}

#[test]
fn test_cli_bad_to_version() {
    let fixture = Fixture::new("cli-to-version");
    let out = fixture.path("out.snap");
    let unknown = (CURRENT_APP_VERSION + 1).to_string();
    let unknown_needle =
        format!("invalid value '{unknown}' for '--to-version <N>': {unknown} is not in 1..=");
    for (version, needle) in [
        (
            "0",
            "invalid value '0' for '--to-version <N>': 0 is not in 1..=",
        ),
        (unknown.as_str(), unknown_needle.as_str()),
        ("abc", "invalid value 'abc' for '--to-version <N>'"),
        ("-1", "unexpected argument '-1'"),
    ] {
        let output = vmstate(&[
            &"convert",
            &fixture.good(),
            &"--to-version",
            &version,
            &"-o",
            &out,
        ]);
        assert_fails_with(&output, 2, needle);
    }
    assert_fails_with(
        &vmstate(&[&"schema", &"export", &"--version", &"7"]),
        2,
        "7 is not in 1..=",
    );
    assert!(!out.exists());
}

#[test]
fn test_cli_convert_to_unwritable_output() {
    let fixture = Fixture::new("cli-output");
    let out = fixture.path("no-such-dir/out.snap");
    let output = vmstate(&[
        &"convert",
        &fixture.good(),
        &"--to-version",
        &"1",
        &"-o",
        &out,
    ]);
    assert_fails_with(
        &output,
        1,
        &format!(
            "cannot write {}: create temporary file: No such file or directory",
            out.display()
        ),
    );
}

#[test]
fn test_cli_bad_schema_files() {
    let fixture = Fixture::new("cli-schema-bad");
    let good = fixture.path("v2.json");
    std::fs::write(&good, assert_ok(&vmstate(&[&"schema", &"export"]))).unwrap();
    let missing = fixture.path("missing.json");
    assert_fails_with(
        &vmstate(&[&"schema", &"check", &missing, &good]),
        1,
        "cannot read",
    );
    assert_fails_with(
        &vmstate(&[&"schema", &"check", &good, &fixture.good()]),
        1,
        "good.snap is not a schema export: invalid utf-8 sequence",
    );
    let not_json = fixture.path("not.json");
    std::fs::write(&not_json, "{\"app_version\": 1}").unwrap();
    assert_fails_with(
        &vmstate(&[&"schema", &"check", &good, &not_json]),
        1,
        "not.json is not a schema export: missing field `format`",
    );
    assert_fails_with(
        &vmstate(&[&"schema", &"check", &good, &fixture.dir.path()]),
        1,
        "cannot read",
    );
}

#[test]
fn test_cli_usage_errors_are_one_line() {
    assert_fails_with(&vmstate(&[&"frobnicate"]), 2, "unrecognized subcommand");
    assert_fails_with(
        &vmstate(&[&"convert", &"x.snap"]),
        2,
        "the following required arguments were not provided: --output <OUT> --to-version <N>",
    );
    assert_fails_with(
        &vmstate(&[&"info", &"--max-state-size", &"lots", &"x.snap"]),
        2,
        "`lots` is not a size",
    );
}

/// The README's `vmstate` session, run command by command in a directory holding a
/// `vm.snap` built here and the committed schema files: every command succeeds, and its first
/// output line starts as the README's does (up to the first `:`, or entirely when it has none).
#[test]
fn test_cli_readme_session() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("\n## vmstate\n")
        .nth(1)
        .expect("README has a `## vmstate` section");
    let session = section
        .split("```console\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section has a console block");

    let fixture = Fixture::new("cli-readme");
    std::fs::rename(fixture.good(), fixture.path("vm.snap")).unwrap();
    let schema_dir = fixture.path("kvm-state/schema");
    std::fs::create_dir_all(&schema_dir).unwrap();
    for app_version in 1..=CURRENT_APP_VERSION {
        let name = format!("v{app_version}.json");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("schema")
                .join(&name),
            schema_dir.join(&name),
        )
        .unwrap();
    }

    let lines: Vec<&str> = session.lines().collect();
    let mut commands = 0;
    for (index, line) in lines.iter().enumerate() {
        let Some(command) = line.strip_prefix("$ vmstate ") else {
            assert!(!line.starts_with('$'), "only vmstate commands: {line}");
            continue;
        };
        let (command, redirect) = match command.split_once(" > ") {
            Some((command, file)) => (command, Some(file.trim())),
            None => (command, None),
        };
        let output = Command::new(env!("CARGO_BIN_EXE_vmstate"))
            .args(command.split_whitespace())
            .current_dir(fixture.dir.path())
            .output()
            .unwrap();
        // `diff` of two different files exits 1 (the README says so), with one line.
        let text = if command.starts_with("diff ") {
            assert_fails_with(&output, 1, "differ: ");
            stdout(&output)
        } else {
            assert_ok(&output)
        };
        match redirect {
            Some(file) => std::fs::write(fixture.path(file), &text).unwrap(),
            None => {
                let shown = lines.get(index + 1).copied().unwrap_or_default();
                let prefix = shown.split(':').next().unwrap_or_default();
                let first = text.lines().next().unwrap_or_default();
                assert!(
                    first.starts_with(prefix),
                    "`vmstate {command}` printed {first:?}, the README shows {shown:?}"
                );
            }
        }
        commands += 1;
    }
    assert!(commands >= 6, "{commands} commands in the README session");
}

// ---------------------------------------------------------------------------------------
// Special files, full disks and memory use (issue 12).

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

/// Regression: every command opened a FIFO with a blocking `open` before checking that it
/// is a regular file, so each of them hung (this test hung on the old code); `schema check`
/// had no regular-file check at all and read /dev/zero until memory ran out.
#[test]
fn test_cli_fifo_and_devices_are_refused_without_blocking() {
    let fixture = Fixture::new("cli-fifo");
    let fifo = fixture.path("fifo.snap");
    mkfifo(&fifo);
    assert_every_command_fails(&fixture, &fifo, "fifo, not a regular file");
    assert_every_command_fails(
        &fixture,
        Path::new("/dev/zero"),
        "character device, not a regular file",
    );

    let schema = fixture.path("v.json");
    std::fs::write(&schema, assert_ok(&vmstate(&[&"schema", &"export"]))).unwrap();
    for special in [fifo.as_path(), Path::new("/dev/zero")] {
        for (old, new) in [(special, schema.as_path()), (schema.as_path(), special)] {
            assert_fails_with(
                &vmstate(&[&"schema", &"check", &old, &new]),
                1,
                &format!("cannot read {}: ", special.display()),
            );
        }
    }
    let huge = fixture.path("huge.json");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    assert_fails_with(
        &vmstate(&[&"schema", &"check", &huge, &schema]),
        1,
        "is 17825792 bytes, more than the limit of 16777216 bytes",
    );
}

/// Regression: `convert -o` onto a character device, FIFO or socket returned success and
/// left a regular file in its place (as root, `-o /dev/null` replaced /dev/null).
#[test]
fn test_cli_convert_onto_a_special_file_is_refused() {
    use std::os::unix::fs::FileTypeExt;
    let fixture = Fixture::new("cli-special-out");
    let fifo = fixture.path("fifo.snap");
    mkfifo(&fifo);
    let to_dev_null = fixture.path("to-dev-null.snap");
    std::os::unix::fs::symlink("/dev/null", &to_dev_null).unwrap();
    let null_copy = fixture.path("null.snap");
    let have_node = Command::new("mknod")
        .args([
            null_copy.as_os_str(),
            "c".as_ref(),
            "1".as_ref(),
            "3".as_ref(),
        ])
        .status()
        .is_ok_and(|s| s.success());
    let mut targets = vec![
        (fifo.clone(), "fifo, not a regular file"),
        (to_dev_null.clone(), "character device, not a regular file"),
    ];
    if have_node {
        targets.push((null_copy.clone(), "character device, not a regular file"));
    }
    for (out, needle) in &targets {
        let output = vmstate(&[
            &"convert",
            &fixture.good(),
            &"--to-version",
            &"1",
            &"-o",
            out,
        ]);
        let err = assert_fails_with(&output, 1, needle);
        assert!(err.contains(&out.display().to_string()), "{err}");
    }
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(std::fs::symlink_metadata(&to_dev_null)
        .unwrap()
        .file_type()
        .is_symlink());
    if have_node {
        assert!(std::fs::symlink_metadata(&null_copy)
            .unwrap()
            .file_type()
            .is_char_device());
    }
}

/// Regression: a full disk surfaced as `state: i/o error: no storage space: i/o error: no
/// storage space: No space left on device (os error 28)` (the cause three times, no step),
/// and `KvmStateError::Snapshot` displayed only "cannot save snapshot". Needs a small tmpfs
/// (root); skipped with a notice where mounting is not allowed.
#[test]
fn test_cli_full_disk_names_step_path_and_cause_once() {
    let fixture = Fixture::new("cli-full");
    let mount = fixture.path("mnt");
    std::fs::create_dir(&mount).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4k", "tmpfs"])
        .arg(&mount)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("cannot mount a tmpfs here: full-disk test skipped");
        return;
    }
    let out = mount.join("out.snap");
    let output = vmstate(&[
        &"convert",
        &fixture.good(),
        &"--to-version",
        &"1",
        &"-o",
        &out,
    ]);
    // Nothing may panic before the unmount: results first, checks after.
    let library = sample_state()
        .save_to_file(&out, CURRENT_APP_VERSION)
        .map_err(|e| e.to_string());
    let left = std::fs::read_dir(&mount).map(Iterator::count);
    let unmounted = Command::new("umount").arg(&mount).status();
    let err = assert_fails_with(
        &output,
        1,
        &format!(
            "vmstate: cannot write {}: write: No space left on device (os error 28)\n",
            out.display()
        ),
    );
    assert_eq!(err.matches("space").count(), 1, "{err}");
    assert_eq!(
        library,
        Err(format!(
            "cannot save snapshot: write {}: no storage space",
            out.display()
        ))
    );
    assert_eq!(
        left.ok(),
        Some(0),
        "a temporary file was left on the full disk"
    );
    assert!(unmounted.is_ok_and(|s| s.success()));
}

/// Runs `vmstate args` with stdout and stderr discarded; returns whether it succeeded and
/// its peak resident set size in bytes.
fn vmstate_peak_rss(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (bool, u64) {
    // A child's peak RSS counts the memory of the process it was spawned from until its
    // `exec` (std spawns with vfork, and Linux takes the old address space's high-water mark
    // at exec): spawned from this test process, whose size depends on the tests running
    // beside it, the figure is noise. So this binary runs itself with only `rss_probe` (a
    // small process of constant size), which spawns vmstate and reports its peak.
    let joined: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_str().unwrap().to_owned())
        .collect();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "rss_probe", "--nocapture", "--test-threads=1"])
        .env(RSS_PROBE_ARGS, joined.join("\n"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.split_once("rss-probe: ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no rss-probe line in {stdout}"));
    let (success, peak) = line.split_once(' ').unwrap();
    (success == "ok", peak.parse().unwrap())
}

/// The environment variable that makes `rss_probe` run vmstate with these arguments (one a
/// line) and print `rss-probe: ok|failed <peak RSS in bytes>`.
const RSS_PROBE_ARGS: &str = "VMSTATE_CLI_TEST_RSS_PROBE_ARGS";

/// Not a test of its own: the measuring process of `vmstate_peak_rss` (does nothing unless
/// `RSS_PROBE_ARGS` is set).
#[test]
fn rss_probe() {
    let Ok(args) = std::env::var(RSS_PROBE_ARGS) else {
        return;
    };
    let child = Command::new(env!("CARGO_BIN_EXE_vmstate"))
        .args(args.split('\n'))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: `rusage` is plain integers, for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unwaited child (std's `Child` is dropped without waiting);
    // `status` and `usage` are valid, writable and live for the call.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    drop(child);
    let success = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    let peak = u64::try_from(usage.ru_maxrss).unwrap() * 1024;
    println!(
        "rss-probe: {} {peak}",
        if success { "ok" } else { "failed" }
    );
}

/// Regression: `dump` and `convert` built JSON trees of the whole state, 50-146 times the
/// file's size (a 9 MiB UART buffer: dump 739 MiB, convert 1.3 GiB). Each now stays within
/// a small multiple of the state's size above the tool's baseline, measured as the peak
/// RSS of the child (`wait4`).
#[test]
fn test_cli_dump_and_convert_memory_is_a_small_multiple_of_the_state() {
    const BUFFER: usize = 4 << 20;
    // Bytes of peak RSS above the baseline allowed per byte of snapshot. The dumps hold the
    // file's bytes, the typed state and the decoded value (one at a time where they can);
    // convert one state at a time beside the two values compared. Measured here (4 MiB UART
    // buffer, debug build, the baseline a dump of the small sample): dump and dump --json
    // 2.9x, convert 4.0x. The old code: 81x for this dump (50-146x in the issue).
    const DUMP_MULTIPLE: u64 = 4;
    const JSON_MULTIPLE: u64 = 4;
    const CONVERT_MULTIPLE: u64 = 5;
    let fixture = Fixture::new("cli-memory");
    let mut state = sample_state();
    state.devices.serial[0].in_buffer = (0..BUFFER).map(|i| (i % 251) as u8).collect();
    let big = fixture.path("big.snap");
    state.save_to_file(&big, CURRENT_APP_VERSION).unwrap();
    let size = std::fs::metadata(&big).unwrap().len();
    let cap = "--max-state-size=16M";

    // The tool's own footprint: a dump of the small sample.
    let (ok, baseline) = vmstate_peak_rss(&[&"dump", &cap, &fixture.good()]);
    assert!(ok);
    let out = fixture.path("out.snap");
    let mut report = format!("{size}-byte snapshot, baseline {} KiB:", baseline >> 10);
    for (name, args, multiple) in [
        ("dump", vec!["dump"], DUMP_MULTIPLE),
        ("dump --json", vec!["dump", "--json"], JSON_MULTIPLE),
        (
            "convert",
            vec!["convert", "--to-version", "1", "-o"],
            CONVERT_MULTIPLE,
        ),
    ] {
        let mut argv: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&args[0], &cap];
        argv.extend(args[1..].iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
        if name == "convert" {
            argv.push(&out);
        }
        argv.push(&big);
        let (ok, peak) = vmstate_peak_rss(&argv);
        assert!(ok, "{name} failed: {}", stderr(&vmstate(&argv)));
        let above = peak.saturating_sub(baseline);
        report.push_str(&format!(
            " {name} {} KiB ({:.1}x)",
            peak >> 10,
            above as f64 / size as f64
        ));
        assert!(
            above <= multiple * size,
            "{name}: peak {peak} bytes, {above} above the baseline, more than {multiple}x the \
             {size}-byte snapshot"
        );
    }
    eprintln!("{report}");
}

/// Every error line states each cause once: no `: `-separated part of it repeats, and no
/// part is a repeat of the i/o kind beside the operating system's words (the old lines said
/// `state: i/o error: ...: i/o error: ...: ...`).
#[test]
fn test_cli_errors_state_each_cause_once() {
    let fixture = Fixture::new("cli-once");
    let bytes = fixture.good_bytes();
    let mut cut = bytes[..bytes.len() / 2].to_vec();
    cut.extend_from_slice(&[0; 8]);
    let cut = fixture.write("cut.snap", cut, true);
    let fifo = fixture.path("fifo.snap");
    mkfifo(&fifo);
    let bad_crc = fixture.write("crc.snap", bytes[..bytes.len() / 2].to_vec(), false);
    let missing = fixture.path("missing.snap");
    let no_dir = fixture.path("no-dir/out.snap");
    let good = fixture.good();
    let v1_schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/v1.json");
    let cut_short = fixture.write("short.snap", bytes[..bytes.len() - 3].to_vec(), false);
    let firecracker = fixture.write("fc.snap", firecracker_file("5.1.0", &[1; 64]), false);
    let cases: Vec<Vec<&dyn AsRef<std::ffi::OsStr>>> = vec![
        vec![&"dump", &"--schema", &v1_schema, &good],
        vec![&"dump", &"--schema", &good, &good],
        vec![&"verify", &cut_short],
        vec![&"verify", &firecracker],
        vec![&"diff", &good, &cut],
        vec![&"verify", &cut],
        vec![&"dump", &cut],
        vec![&"verify", &fifo],
        vec![&"verify", &bad_crc],
        vec![&"verify", &missing],
        vec![&"verify", &"--max-state-size", &"1K", &cut],
        vec![&"schema", &"check", &missing, &cut],
        vec![&"convert", &good, &"--to-version", &"1", &"-o", &no_dir],
    ];
    for argv in cases {
        let output = vmstate(&argv);
        let line = assert_fails_with(&output, 1, "vmstate: ");
        eprint!("{line}");
        let parts: Vec<&str> = line.trim_end().split(": ").collect();
        for (i, part) in parts.iter().enumerate() {
            assert!(
                !parts[i + 1..].contains(part),
                "{part:?} repeats in {line:?}"
            );
        }
        assert!(!line.contains("i/o error"), "{line:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Issue 16: schema-driven decoding, diff, Firecracker's later files; issue 13: host facts.

mod foreign {
    //! Another VMM's root type, known to this test only: `vmstate` has never seen it.
    use std::collections::BTreeMap;
    use versionize::prelude::*;

    #[derive(Clone, Debug, PartialEq, Versionize)]
    pub(crate) struct Machine {
        pub(crate) name: String,
        pub(crate) cpus: Vec<Cpu>,
        pub(crate) slot: Slot<u64>,
        pub(crate) tags: BTreeMap<u32, Option<String>>,
        pub(crate) mode: Mode,
    }

    #[derive(Clone, Debug, PartialEq, Versionize)]
    pub(crate) struct Cpu {
        pub(crate) rip: u64,
        pub(crate) event: Option<Event>,
    }

    #[derive(Clone, Debug, PartialEq, Versionize)]
    pub(crate) enum Event {
        Irq(u8),
        Fault { vector: u8, code: u32 },
    }

    #[derive(Clone, Debug, PartialEq, Versionize)]
    pub(crate) enum Mode {
        Running,
        Paused,
    }

    #[derive(Clone, Debug, PartialEq, Versionize)]
    pub(crate) struct Slot<T> {
        pub(crate) value: T,
        pub(crate) history: Vec<T>,
    }
}

fn foreign_machine() -> foreign::Machine {
    use foreign::*;
    Machine {
        name: "guest".to_owned(),
        cpus: vec![
            Cpu {
                rip: 0xffff_ffff_8100_0000,
                event: Some(Event::Fault {
                    vector: 14,
                    code: 2,
                }),
            },
            Cpu {
                rip: 0x1000,
                event: None,
            },
        ],
        slot: Slot {
            value: 1_796_122_410_083_834_518,
            history: vec![5],
        },
        tags: [(1, Some("a".to_owned())), (2, None)].into_iter().collect(),
        mode: Mode::Paused,
    }
}

/// Writes the foreign machine's snapshot and schema export (what its build's guard holds)
/// into the fixture; returns them and the root type's name.
fn foreign_files(fixture: &Fixture, machine: &foreign::Machine) -> (PathBuf, PathBuf, String) {
    let map = versionize::VersionMap::new();
    let snap = fixture.path("foreign.snap");
    snapshot::Snapshot::new(map.clone(), 1)
        .save_to_file(&snap, machine)
        .unwrap();
    let schema = export::<foreign::Machine>(&map, 1).unwrap();
    let schema_path = fixture.path("foreign-v1.json");
    std::fs::write(&schema_path, schema.to_json()).unwrap();
    (snap, schema_path, schema.root)
}

#[test]
fn test_cli_schema_decodes_a_root_type_defined_only_in_the_test() {
    let fixture = Fixture::new("cli-foreign");
    let (snap, schema, root) = foreign_files(&fixture, &foreign_machine());
    assert_eq!(root, "cli::foreign::Machine");

    let text = assert_ok(&vmstate(&[
        &"dump",
        &"--schema",
        &schema,
        &"--root",
        &root,
        &snap,
    ]));
    for needle in [
        "root: cli::foreign::Machine\n",
        "name: \"guest\"\n",
        "cpus[0].rip: 0xffffffff81000000\n",
        "cpus[0].event: Fault\ncpus[0].event.Fault.vector: 14 (0xe)\ncpus[0].event.Fault.code: 2\n",
        "cpus[1].event: none\n",
        "slot.value: 0x18ed1bd0d22a5a96\n",
        "slot.history[0]: 0x5\n",
        "tags[1]: \"a\"\ntags[2]: none\n",
        "mode: Paused\n",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    let json = assert_ok(&vmstate(&[
        &"dump",
        &"--json",
        &"--schema",
        &schema,
        &"--root",
        &root,
        &snap,
    ]));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["state"]["slot"]["value"], "0x18ed1bd0d22a5a96");
    assert_eq!(json["state"]["cpus"][0]["event"]["Fault"]["vector"], 14);
    assert_ok(&vmstate(&[
        &"verify",
        &"--schema",
        &schema,
        &"--root",
        &root,
        &snap,
    ]));
    let info = assert_ok(&vmstate(&[
        &"info",
        &"--schema",
        &schema,
        &"--root",
        &root,
        &snap,
    ]));
    assert!(
        info.contains("cli::foreign::Machine decoded with"),
        "{info}"
    );

    // diff of two foreign snapshots with their schema.
    let mut changed = foreign_machine();
    changed.cpus[1].event = Some(foreign::Event::Irq(32));
    let changed_path = fixture.path("changed.snap");
    snapshot::Snapshot::new(versionize::VersionMap::new(), 1)
        .save_to_file(&changed_path, &changed)
        .unwrap();
    let output = vmstate(&[
        &"diff",
        &"--schema",
        &schema,
        &"--root",
        &root,
        &snap,
        &changed_path,
    ]);
    assert_eq!(stdout(&output), "cpus[1].event: none -> some Irq(...)\n");
    assert_fails_with(&output, 1, "differ: 1 difference(s)");

    // Without --root, the schema of another root than vmstate's is refused.
    for command in ["info", "verify", "dump"] {
        assert_fails_with(
            &vmstate(&[&command, &"--schema", &schema, &snap]),
            1,
            "foreign-v1.json describes cli::foreign::Machine snapshots, not \
             kvm_state::microvm::MicrovmState: pass --root cli::foreign::Machine if",
        );
    }
    // Without --schema, its data version is one vmstate reads, and the bytes are not a
    // microVM state: refused, never printed as one.
    let output = vmstate(&[&"dump", &snap]);
    assert_fails_with(&output, 1, "cannot load");
    assert!(output.stdout.is_empty());
}

#[test]
fn test_cli_schema_decodes_kvm_state_with_the_committed_schema_files() {
    let fixture = Fixture::new("cli-own-schema");
    let schema_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    let v3 = schema_dir.join(format!("v{CURRENT_APP_VERSION}.json"));
    let typed = assert_ok(&vmstate(&[&"dump", &"--json", &fixture.good()]));
    let by_schema = assert_ok(&vmstate(&[
        &"dump",
        &"--json",
        &"--schema",
        &v3,
        &fixture.good(),
    ]));
    assert_eq!(typed, by_schema);

    let v1_snap = fixture.path("v1.snap");
    sample_state()
        .save_to_file(&v1_snap, APP_VERSION_1)
        .unwrap();
    let v1 = schema_dir.join("v1.json");
    let text = assert_ok(&vmstate(&[&"dump", &"--schema", &v1, &v1_snap]));
    assert!(text.contains("data_version: 1\n"), "{text}");

    // The wrong schema for the file, by app version, for every command that reads state.
    for command in ["info", "verify", "dump"] {
        assert_fails_with(
            &vmstate(&[&command, &"--schema", &v1, &fixture.good()]),
            1,
            &format!(
                "v1.json is not the schema of {}: it describes app version 1, the file holds \
                 data version {CURRENT_APP_VERSION}",
                fixture.good().display()
            ),
        );
    }
    assert_fails_with(
        &vmstate(&[&"diff", &"--schema", &v1, &fixture.good(), &fixture.good()]),
        1,
        "v1.json is not the schema of",
    );

    // Garbage as a schema.
    let garbage = fixture.write("garbage.json", b"\x00\x01not json".to_vec(), false);
    assert_fails_with(
        &vmstate(&[&"dump", &"--schema", &garbage, &fixture.good()]),
        1,
        "garbage.json is not a schema export",
    );

    // A tampered byte, with the schema too.
    let mut bytes = fixture.good_bytes();
    bytes[300] ^= 0x04;
    let tampered = fixture.write("tampered.snap", bytes, false);
    assert_fails_with(
        &vmstate(&[&"dump", &"--schema", &v3, &tampered]),
        1,
        "crc64 mismatch: file says 0x",
    );
}

#[test]
fn test_cli_diff_lists_field_differences_and_summarises_memory() {
    let fixture = Fixture::new("cli-diff");
    let good = fixture.good();
    let equal = vmstate(&[&"diff", &good, &good]);
    assert_eq!(
        assert_ok(&equal),
        format!(
            "{} and {}: equal (data version {CURRENT_APP_VERSION})\n",
            good.display(),
            good.display()
        )
    );

    let mut state = sample_state();
    state.vcpus[1].regs.rip = 0x9000;
    state.vm.clock.realtime += 1;
    for offset in [10, 11, 4000] {
        state.memory[0].contents[offset] ^= 0xff;
    }
    let changed = fixture.path("changed.snap");
    state.save_to_file(&changed, CURRENT_APP_VERSION).unwrap();
    let output = vmstate(&[&"diff", &good, &changed]);
    assert_eq!(
        stdout(&output),
        "vm.clock.realtime: 0x17979cfe362a0000 -> 0x17979cfe362a0001\n\
         vcpus[1].regs.rip: 0x8001 -> 0x9000\n\
         memory[0].contents: 3 byte(s) differ in 1 page(s) of 4096 bytes, first at offset 0xa\n"
    );
    assert_fails_with(&output, 1, "differ: 3 difference(s)");

    // Different data versions: both as this build reads them.
    let v1 = fixture.path("v1.snap");
    sample_state().save_to_file(&v1, APP_VERSION_1).unwrap();
    let output = vmstate(&[&"diff", &v1, &good]);
    assert!(
        stdout(&output).contains("vm.clock.host_tsc: 0x0 -> 0x2a\n"),
        "{}",
        stdout(&output)
    );
    assert_fails_with(
        &output,
        1,
        &format!("compared as this build reads them at {CURRENT_APP_VERSION}"),
    );

    // Bad input on either side.
    let missing = fixture.path("missing.snap");
    assert_fails_with(
        &vmstate(&[&"diff", &good, &missing]),
        1,
        "open: No such file",
    );
    assert_fails_with(&vmstate(&[&"diff", &good]), 2, "required arguments");
}

/// Seed 002's layout: magic with format bits 0, `u64` length and semver text, payload,
/// CRC-64 of all before it.
fn firecracker_file(version: &str, payload: &[u8]) -> Vec<u8> {
    let mut bytes = snapshot::magic::BASE_MAGIC_ID.to_le_bytes().to_vec();
    bytes.extend_from_slice(&(version.len() as u64).to_le_bytes());
    bytes.extend_from_slice(version.as_bytes());
    bytes.extend_from_slice(payload);
    let crc = crc64(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn test_cli_firecracker_later_files_are_named_not_decoded() {
    let fixture = Fixture::new("cli-firecracker");
    let path = fixture.write("fc.snap", firecracker_file("6.0.0", &[3; 1000]), false);
    let info = vmstate(&[&"info", &path]);
    for needle in [
        "format:         Firecracker snapshot, later than the v1 format\n",
        "format version: 6.0.0\n",
        "payload size:   1000 bytes\n",
        "crc64:          ok (0x",
        "state:          Firecracker's own encoding, not ours to decode\n",
    ] {
        assert!(
            stdout(&info).contains(needle),
            "{needle:?} not in\n{}",
            stdout(&info)
        );
    }
    assert_every_command_fails(
        &fixture,
        &path,
        "is a Firecracker snapshot of format version 6.0.0: its state is Firecracker's own",
    );
    let mut tampered = firecracker_file("6.0.0", &[3; 1000]);
    tampered[500] ^= 1;
    let path = fixture.write("fc-bad.snap", tampered, false);
    assert!(stdout(&vmstate(&[&"info", &path])).contains("crc64:          MISMATCH"));
    assert_fails_with(
        &vmstate(&[&"verify", &path]),
        1,
        "format version 6.0.0: crc64 mismatch",
    );
}

/// Issue 13: `info` shows the host a state was saved on, and whether this build reads it.
#[test]
fn test_cli_info_shows_host_facts() {
    let fixture = Fixture::new("cli-host");
    let mut state = sample_state();
    state.host = kvm_state::HostFacts {
        cpu_vendor: "GenuineIntel".to_owned(),
        cpu_family: 6,
        cpu_model: 0x55,
        cpu_stepping: 7,
        tsc_khz: Some(2_600_000),
        kvm_capabilities: vec![kvm_state::HostFacts::relied_capabilities()[0].0],
        kernel_release: "6.1.0".to_owned(),
    };
    let path = fixture.path("host.snap");
    state.save_to_file(&path, CURRENT_APP_VERSION).unwrap();
    let text = assert_ok(&vmstate(&[&"info", &path]));
    for needle in [
        "state:          kvm_state::microvm::MicrovmState, read by this build\n",
        "saved on:       GenuineIntel family 0x6 model 0x55 stepping 7, kernel 6.1.0\n",
        "host tsc:       2600000 kHz\n",
        &format!(
            "kvm caps:       {}\n",
            kvm_state::HostFacts::relied_capabilities()[0].1
        ),
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    let v1 = fixture.path("v1.snap");
    state.save_to_file(&v1, APP_VERSION_1).unwrap();
    let text = assert_ok(&vmstate(&[&"info", &v1]));
    assert!(
        text.contains("saved on:       not recorded (data version 1 predates host facts)\n"),
        "{text}"
    );
    // Which recorded releases read each file: every one reads data version 1, none the
    // current one (newer than the newest release).
    let all: Vec<&str> = kvm_state::RELEASES.iter().map(|r| r.version).collect();
    assert!(
        text.contains(&format!(
            "releases:       {} read it (RELEASES.toml)\n",
            all.join(", ")
        )),
        "{text}"
    );
    let text = assert_ok(&vmstate(&[&"info", &path]));
    let newest = kvm_state::RELEASES.last().unwrap();
    if CURRENT_APP_VERSION > newest.app_version {
        assert!(
            text.contains(&format!(
                "releases:       none of the recorded releases reads it (the newest, {}, \
                 reads data versions up to {})\n",
                newest.version, newest.app_version
            )),
            "{text}"
        );
    }
    let v4 = fixture.path("v4.snap");
    state.save_to_file(&v4, kvm_state::APP_VERSION_4).unwrap();
    let text = assert_ok(&vmstate(&[&"info", &v4]));
    let readers: Vec<&str> = kvm_state::releases_reading(kvm_state::APP_VERSION_4)
        .map(|r| r.version)
        .collect();
    assert!(!readers.contains(&"0.1.0"), "{readers:?}");
    assert!(
        text.contains(&format!("releases:       {} read it", readers.join(", "))),
        "{text}"
    );
}
