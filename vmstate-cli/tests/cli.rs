//! `vmstate-cli` for a root type defined only here (nested structs, enums, options,
//! collections, generics), run through [`Cli::run_from`]: the typed commands, `--schema`
//! decoding without the Rust types, `diff`, and every kind of bad input, each a one-line
//! error and a non-zero exit.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use versionize::crc::crc64;
use versionize::prelude::*;
use versionize::schema::export;
use vmstate_cli::{Cli, EXIT_FAILURE, EXIT_USAGE};

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Machine {
    name: String,
    cpus: Vec<Cpu>,
    mode: Mode,
    slot: Slot<u64>,
    tags: BTreeMap<String, u32>,
    backing: Option<Vec<u8>>,
    #[version(start = 2, default_fn = "default_clock")]
    clock: u64,
}

impl Machine {
    fn default_clock(_type_version: u16) -> u64 {
        7
    }
}

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Cpu {
    id: u8,
    rip: u64,
    pending: Option<Event>,
}

#[derive(Clone, Debug, PartialEq, Versionize)]
enum Event {
    Irq(u8),
    Fault { vector: u8, code: u32 },
}

#[derive(Clone, Debug, PartialEq, Versionize)]
enum Mode {
    Running,
    Paused,
}

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Slot<T> {
    value: T,
    history: Vec<T>,
}

/// Another VMM's root type: a tool built for it has never seen [`Machine`].
#[derive(Debug, Versionize)]
struct Other {
    x: u8,
}

/// App version 1: `Machine` v1; app version 2: `Machine` v2 (with `clock`).
fn machine_map() -> VersionMap {
    let mut map = VersionMap::new();
    map.new_version().set_type_version(Machine::type_id(), 2);
    map
}

fn machine() -> Machine {
    Machine {
        name: "vm0".to_owned(),
        cpus: vec![
            Cpu {
                id: 0,
                rip: 0xffff_ffff_8100_0000,
                pending: Some(Event::Fault {
                    vector: 14,
                    code: 2,
                }),
            },
            Cpu {
                id: 1,
                rip: 0x1000,
                pending: Some(Event::Irq(32)),
            },
        ],
        mode: Mode::Paused,
        slot: Slot {
            value: 1_796_122_410_083_834_518,
            history: vec![1, 2],
        },
        tags: BTreeMap::from([("zone".to_owned(), 3)]),
        backing: Some((0..4096u32).map(|i| (i % 251) as u8).collect()),
        clock: 0x1234_5678_9abc,
    }
}

fn machine_cli() -> Cli<Machine> {
    Cli::new("machine-state", machine_map()).verify_with(|state: &Machine| {
        if state.cpus.is_empty() {
            return Err("a machine needs at least one cpu".into());
        }
        Ok(format!("{} cpu(s)", state.cpus.len()))
    })
}

fn other_cli() -> Cli<Other> {
    Cli::new("other-state", VersionMap::new())
}

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("vmstate-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// `machine()` saved at `version` as `name`.
    fn snapshot(&self, name: &str, state: &Machine, version: u16) -> PathBuf {
        let path = self.path(name);
        snapshot::Snapshot::new(machine_map(), version)
            .save_to_file(&path, state)
            .unwrap();
        path
    }

    /// The schema export of `Machine` at `version`, as the guard's `vN.json` holds it.
    fn schema(&self, version: u16) -> PathBuf {
        let path = self.path(&format!("v{version}.json"));
        std::fs::write(
            &path,
            export::<Machine>(&machine_map(), version)
                .unwrap()
                .to_json(),
        )
        .unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Run {
    code: u8,
    out: String,
    err: String,
}

fn run<T: Versionize + Debug + 'static>(cli: &Cli<T>, args: &[&dyn AsRef<Path>]) -> Run {
    let mut argv = vec![OsString::from("tool")];
    argv.extend(args.iter().map(|a| a.as_ref().as_os_str().to_owned()));
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = cli.run_from(argv, &mut out, &mut err);
    Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

#[track_caller]
fn ok(run: &Run) -> &str {
    assert!(
        run.code == 0 && run.err.is_empty(),
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        run.code,
        run.out,
        run.err
    );
    &run.out
}

/// Exit `code` and one line on stderr, `<tool>: ...`, containing `needle`.
#[track_caller]
fn fails(run: &Run, code: u8, needle: &str) {
    assert_eq!(run.code, code, "stdout:\n{}\nstderr:\n{}", run.out, run.err);
    assert!(
        run.err.ends_with('\n') && run.err.lines().count() == 1,
        "not one line: {:?}",
        run.err
    );
    assert!(run.err.contains(needle), "{needle:?} not in {:?}", run.err);
}

fn root_name() -> String {
    export::<Machine>(&machine_map(), 2).unwrap().root
}

#[test]
fn test_cli_lib_typed_commands_on_a_test_root() {
    let dir = Dir::new("typed");
    let file = dir.snapshot("m.snap", &machine(), 2);
    let cli = machine_cli();

    let info = run(&cli, &[&"info", &file]);
    let text = ok(&info);
    assert!(
        text.contains("data version:   2 (this build reads 1..=2)"),
        "{text}"
    );
    assert!(text.contains("crc64:          ok"), "{text}");
    assert!(
        text.contains(&format!("state:          {}", root_name())),
        "{text}"
    );

    let verify = run(&cli, &[&"verify", &file]);
    assert!(
        ok(&verify).ends_with(": ok: data version 2, 2 cpu(s)\n"),
        "{}",
        verify.out
    );

    let dump = run(&cli, &[&"dump", &file]);
    let text = ok(&dump);
    for needle in [
        "name: \"vm0\"\n",
        "cpus[0].rip: 0xffffffff81000000\n",
        "cpus[0].pending: Fault\ncpus[0].pending.Fault.vector: 14 (0xe)\n",
        "cpus[1].pending.Irq.0: 32 (0x20)\n",
        "mode: Paused\n",
        "slot.value: 0x18ed1bd0d22a5a96\n",
        "slot.history[1]: 0x2\n",
        "tags[\"zone\"]: 3\n",
        "backing: 4096 bytes, crc64 0x",
        "clock: 0x123456789abc\n",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }

    let json = run(&cli, &[&"dump", &"--json", &file]);
    let json: serde_json::Value = serde_json::from_str(ok(&json)).unwrap();
    assert_eq!(json["data_version"], 2);
    assert_eq!(json["state"]["slot"]["value"], "0x18ed1bd0d22a5a96");
    assert_eq!(
        json["state"]["cpus"][0]["pending"]["Fault"]["code"],
        serde_json::json!(2)
    );
    assert_eq!(json["state"]["backing"]["len"], 4096);

    // A rollback: data version 1 cannot hold `clock`; a build reading it sees the default.
    let old = dir.path("m-v1.snap");
    let convert = run(
        &cli,
        &[&"convert", &file, &"--to-version", &"1", &"-o", &old],
    );
    let text = ok(&convert);
    assert!(
        text.contains("data version 1 cannot hold 1 value(s)")
            && text.contains("clock: 0x123456789abc -> 0x7"),
        "{text}"
    );
}

#[test]
fn test_cli_lib_verify_hook_failure() {
    let dir = Dir::new("hook");
    let mut empty = machine();
    empty.cpus.clear();
    let file = dir.snapshot("empty.snap", &empty, 2);
    fails(
        &run(&machine_cli(), &[&"verify", &file]),
        EXIT_FAILURE,
        "empty.snap is not sound: a machine needs at least one cpu",
    );
}

/// A snapshot of a data version this build does not read (a newer build's), or of another
/// tool's root type, is decoded with the writing build's schema export: no Rust type.
#[test]
fn test_cli_lib_schema_decodes_without_the_types() {
    let dir = Dir::new("schema");
    let file = dir.snapshot("m.snap", &machine(), 2);
    let v2 = dir.schema(2);
    let root = root_name();

    // A build of the same VMM that only knows app version 1.
    let mut old_map = VersionMap::new();
    old_map.set_type_version(Machine::type_id(), 1);
    let old_build = Cli::<Machine>::new("machine-state", old_map);
    fails(
        &run(&old_build, &[&"dump", &file]),
        EXIT_FAILURE,
        "data version 2 is not supported (this build reads 1..=1): decode it with --schema",
    );
    let typed = ok(&run(&machine_cli(), &[&"dump", &"--json", &file])).to_owned();
    let json = run(&old_build, &[&"dump", &"--json", &"--schema", &v2, &file]);
    assert_eq!(ok(&json), typed);

    // Another VMM's tool, which has never seen `Machine`.
    let other = other_cli();
    fails(
        &run(&other, &[&"dump", &"--schema", &v2, &file]),
        EXIT_FAILURE,
        &format!("v2.json describes {root} snapshots, not cli::Other: pass --root {root} if"),
    );
    let text = run(
        &other,
        &[&"dump", &"--schema", &v2, &"--root", &root, &file],
    );
    assert!(
        ok(&text).contains("slot.value: 0x18ed1bd0d22a5a96\n"),
        "{}",
        text.out
    );
    let verify = run(
        &other,
        &[&"verify", &"--schema", &v2, &"--root", &root, &file],
    );
    assert!(
        ok(&verify).contains(": ok: data version 2, "),
        "{}",
        verify.out
    );
    let info = run(
        &other,
        &[&"info", &"--schema", &v2, &"--root", &root, &file],
    );
    assert!(ok(&info).contains("decoded with"), "{}", info.out);

    // diff with the schema: equal, then one field apart.
    let mut changed = machine();
    changed.cpus[1].rip = 0x2000;
    let other_file = dir.snapshot("changed.snap", &changed, 2);
    let same = run(
        &other,
        &[&"diff", &"--schema", &v2, &"--root", &root, &file, &file],
    );
    assert!(
        ok(&same).contains(": equal (data version 2)"),
        "{}",
        same.out
    );
    let differ = run(
        &other,
        &[
            &"diff",
            &"--schema",
            &v2,
            &"--root",
            &root,
            &file,
            &other_file,
        ],
    );
    assert_eq!(differ.out, "cpus[1].rip: 0x1000 -> 0x2000\n");
    fails(&differ, EXIT_FAILURE, "differ: 1 difference(s)");
}

#[test]
fn test_cli_lib_bad_schemas_are_one_line_errors() {
    let dir = Dir::new("bad-schema");
    let file = dir.snapshot("m.snap", &machine(), 2);
    let cli = machine_cli();
    let v1 = dir.schema(1);

    for command in ["info", "verify", "dump"] {
        // The schema of another app version than the file's data version.
        fails(
            &run(&cli, &[&command, &"--schema", &v1, &file]),
            EXIT_FAILURE,
            "v1.json is not the schema of",
        );
        fails(
            &run(&cli, &[&command, &"--schema", &v1, &file]),
            EXIT_FAILURE,
            "it describes app version 1, the file holds data version 2",
        );
    }

    // The schema of another root type.
    let other = dir.path("other.json");
    std::fs::write(
        &other,
        export::<Other>(&VersionMap::new(), 1).unwrap().to_json(),
    )
    .unwrap();
    fails(
        &run(&cli, &[&"dump", &"--schema", &other, &file]),
        EXIT_FAILURE,
        &format!(
            "other.json describes cli::Other snapshots, not {}",
            root_name()
        ),
    );
    // ... and forced with --root: the layout does not fit the bytes.
    fails(
        &run(
            &cli,
            &[
                &"dump",
                &"--schema",
                &other,
                &"--root",
                &"cli::Other",
                &file,
            ],
        ),
        EXIT_FAILURE,
        "other.json is not the schema of",
    );

    // Garbage, and a file that is not one at all.
    let garbage = dir.path("garbage.json");
    std::fs::write(&garbage, "{\"format\": 2, \"root\": 5}").unwrap();
    fails(
        &run(&cli, &[&"dump", &"--schema", &garbage, &file]),
        EXIT_FAILURE,
        "garbage.json is not a schema export",
    );
    fails(
        &run(&cli, &[&"dump", &"--schema", &file, &file]),
        EXIT_FAILURE,
        "m.snap is not a schema export",
    );
    fails(
        &run(
            &cli,
            &[&"dump", &"--schema", &dir.path("missing.json"), &file],
        ),
        EXIT_FAILURE,
        "cannot read",
    );

    // A schema of the right root and version whose layout is not the writer's: a field
    // dropped by hand. The bytes do not fit: never a silently wrong dump.
    let v2 = export::<Machine>(&machine_map(), 2).unwrap();
    let mut edited: serde_json::Value = serde_json::from_str(&v2.to_json()).unwrap();
    let fields = edited["types"][root_name()]["kind"]["struct"]["fields"]
        .as_array_mut()
        .unwrap();
    fields.retain(|field| field["name"] != "clock");
    let edited_path = dir.path("edited.json");
    std::fs::write(&edited_path, edited.to_string()).unwrap();
    fails(
        &run(&cli, &[&"dump", &"--schema", &edited_path, &file]),
        EXIT_FAILURE,
        "byte(s) after the end of the",
    );

    // --root needs --schema.
    fails(
        &run(&cli, &[&"dump", &"--root", &"x", &file]),
        EXIT_USAGE,
        "--schema",
    );
}

#[test]
fn test_cli_lib_tampered_and_truncated_files() {
    let dir = Dir::new("tampered");
    let file = dir.snapshot("m.snap", &machine(), 2);
    let v2 = dir.schema(2);
    let cli = machine_cli();
    let bytes = std::fs::read(&file).unwrap();

    let mut tampered = bytes.clone();
    tampered[40] ^= 0x10;
    let tampered_path = dir.path("tampered.snap");
    std::fs::write(&tampered_path, &tampered).unwrap();
    let cut_path = dir.path("cut.snap");
    std::fs::write(&cut_path, &bytes[..bytes.len() - 100]).unwrap();
    for schema in [None, Some(&v2)] {
        for command in ["info", "verify", "dump"] {
            let mut args: Vec<&dyn AsRef<Path>> = vec![&command];
            if let Some(schema) = &schema {
                args.extend([&"--schema" as &dyn AsRef<Path>, schema]);
            }
            let mut tampered_args = args.clone();
            tampered_args.push(&tampered_path);
            fails(&run(&cli, &tampered_args), EXIT_FAILURE, "crc64 mismatch");
            let mut cut_args = args.clone();
            cut_args.push(&cut_path);
            fails(&run(&cli, &cut_args), EXIT_FAILURE, "the file is truncated");
        }
    }
    fails(
        &run(&cli, &[&"diff", &file, &tampered_path]),
        EXIT_FAILURE,
        "crc64 mismatch",
    );
}

#[test]
fn test_cli_lib_diff_across_data_versions() {
    let dir = Dir::new("diff");
    let cli = machine_cli();
    let v2 = dir.snapshot("m2.snap", &machine(), 2);
    let v1 = dir.snapshot("m1.snap", &machine(), 1);

    let same = run(&cli, &[&"diff", &v2, &v2]);
    assert!(
        ok(&same).ends_with(": equal (data version 2)\n"),
        "{}",
        same.out
    );

    // Typed: both as this build reads them at data version 2; v1 holds no clock.
    let across = run(&cli, &[&"diff", &v1, &v2]);
    assert_eq!(across.out, "clock: 0x7 -> 0x123456789abc\n");
    fails(
        &across,
        EXIT_FAILURE,
        "compared as this build reads them at 2",
    );

    // With each file's own schema: the field only v2 writes.
    let s1 = dir.schema(1);
    let s2 = dir.schema(2);
    let by_schema = run(
        &cli,
        &[&"diff", &"--schema", &s1, &"--schema", &s2, &v1, &v2],
    );
    assert_eq!(by_schema.out, "clock: absent -> 0x123456789abc\n");
    fails(&by_schema, EXIT_FAILURE, "data versions 1 and 2");

    // Memory summarised by differing bytes and pages.
    let mut changed = machine();
    if let Some(backing) = changed.backing.as_mut() {
        backing[5] ^= 1;
        backing[4095] ^= 1;
    }
    let changed = dir.snapshot("changed.snap", &changed, 2);
    let memory = run(&cli, &[&"diff", &v2, &changed]);
    assert_eq!(
        memory.out,
        "backing: 2 byte(s) differ in 1 page(s) of 4096 bytes, first at offset 0x5\n"
    );
    fails(
        &run(
            &cli,
            &[
                &"diff",
                &"--schema",
                &s1,
                &"--schema",
                &s2,
                &"--schema",
                &s2,
                &v1,
                &v2,
            ],
        ),
        EXIT_FAILURE,
        "at most two --schema files",
    );
}

/// The layout of Firecracker's later files (seed 002): magic with format bits 0, `u64`
/// length and semver text, payload, CRC-64.
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
fn test_cli_lib_firecracker_later_files_are_named() {
    let dir = Dir::new("firecracker");
    let cli = machine_cli();
    let path = dir.path("fc.snap");
    std::fs::write(&path, firecracker_file("4.0.0", &[9; 300])).unwrap();
    let info = run(&cli, &[&"info", &path]);
    for needle in [
        "format:         Firecracker snapshot, later than the v1 format",
        "format version: 4.0.0",
        "payload size:   300 bytes",
        "crc64:          ok",
        "not ours to decode",
    ] {
        assert!(info.out.contains(needle), "{needle:?} not in\n{}", info.out);
    }
    fails(
        &info,
        EXIT_FAILURE,
        "fc.snap is a Firecracker snapshot of format version 4.0.0",
    );
    for command in ["verify", "dump"] {
        fails(
            &run(&cli, &[&command, &path]),
            EXIT_FAILURE,
            "is a Firecracker snapshot of format version 4.0.0: its state is Firecracker's own",
        );
    }
    let mut tampered = firecracker_file("4.0.0", &[9; 300]);
    tampered[50] ^= 1;
    std::fs::write(&path, tampered).unwrap();
    let info = run(&cli, &[&"info", &path]);
    assert!(
        info.out.contains("crc64:          MISMATCH"),
        "{}",
        info.out
    );
    fails(
        &run(&cli, &[&"verify", &path]),
        EXIT_FAILURE,
        "format version 4.0.0: crc64 mismatch",
    );
}

#[test]
fn test_cli_lib_help_lists_only_options_that_apply() {
    let cli = machine_cli();
    for command in ["info", "verify", "dump", "diff", "convert"] {
        let help = run(&cli, &[&command, &"--help"]);
        assert!(
            ok(&help).contains("--max-state-size"),
            "{command}: {}",
            help.out
        );
        assert!(help.out.contains("Usage: machine-state "), "{}", help.out);
    }
    for command in ["info", "verify", "dump", "diff"] {
        let help = run(&cli, &[&command, &"--help"]);
        assert!(ok(&help).contains("--schema"), "{command}: {}", help.out);
    }
    for command in ["export", "check"] {
        let help = run(&cli, &[&"schema", &command, &"--help"]);
        assert!(!ok(&help).contains("--max-state-size"), "{}", help.out);
        assert!(!help.out.contains("--schema <"), "{}", help.out);
    }
    let convert = run(&cli, &[&"convert", &"--help"]);
    assert!(!ok(&convert).contains("--schema <"), "{}", convert.out);
    assert!(!ok(&run(&cli, &[&"schema", &"--help"])).contains("--max-state-size"));
    // App versions outside the map are a usage error.
    fails(
        &run(&cli, &[&"schema", &"export", &"--version", &"3"]),
        EXIT_USAGE,
        "3 is not in 1..=2",
    );
    fails(&run(&cli, &[&"frobnicate"]), EXIT_USAGE, "machine-state: ");
}

#[test]
fn test_cli_lib_a_vmm_adds_its_own_command() {
    use vmstate_cli::clap::{Arg, Command};
    let cli = machine_cli().command(
        Command::new("greet")
            .about("Greet a file")
            .arg(Arg::new("name").required(true)),
        |matches, out| {
            let name = matches.get_one::<String>("name").ok_or("no name")?;
            if name == "nobody" {
                return Err(format!("cannot greet {name}").into());
            }
            writeln!(out, "hello {name}")?;
            Ok(())
        },
    );
    assert_eq!(ok(&run(&cli, &[&"greet", &"vm"])), "hello vm\n");
    fails(
        &run(&cli, &[&"greet", &"nobody"]),
        EXIT_FAILURE,
        "machine-state: greet: cannot greet nobody",
    );
    fails(&run(&cli, &[&"greet"]), EXIT_USAGE, "required arguments");
    assert!(ok(&run(&cli, &[&"--help"])).contains("greet"));
    // The built-in commands are unchanged.
    assert!(ok(&run(&cli, &[&"schema", &"export"])).contains("\"root\""));
}

/// Issue 13: `info` says which data versions this build reads (its support window), and
/// refuses, after printing the container, a file older than the window.
#[test]
fn test_cli_lib_info_shows_the_support_window() {
    let dir = Dir::new("window");
    let old = dir.snapshot("m1.snap", &machine(), 1);
    let mut map = machine_map();
    map.set_oldest_supported(2).unwrap();
    let cli = Cli::<Machine>::new("machine-state", map);
    let info = run(&cli, &[&"info", &old]);
    assert!(
        info.out
            .contains("data version:   1 (this build reads 2..=2)\n"),
        "{}",
        info.out
    );
    fails(
        &info,
        EXIT_FAILURE,
        "m1.snap is not a sound snapshot: data version 1 is not supported (this build reads 2..=2)",
    );
    fails(&run(&cli, &[&"verify", &old]), EXIT_FAILURE, "cannot load");
    // The writing build's schema still reads it.
    let v1 = dir.schema(1);
    let dump = run(&cli, &[&"dump", &"--schema", &v1, &old]);
    assert!(ok(&dump).contains("data_version: 1\n"), "{}", dump.out);
}
