//! `vmstate memory verify` and `vmstate memory merge`, run as a subprocess.

#![cfg(target_arch = "x86_64")]

mod common;
mod memory_support;

use std::path::Path;
use std::process::{Command, Output};

use common::TempDir;
use kvm_state::{
    DiffRegion, GuestMemoryMapping, MemorySource, MicrovmState, RestoreMode, CURRENT_APP_VERSION,
};
use memory_support::{clean_bitmap, dirty_pages, flip_byte, patterned, Rng};

const MIB: u64 = 1 << 20;

fn vmstate(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmstate"))
        .args(args.iter().map(|a| a.as_ref()))
        .env("RUST_BACKTRACE", "1")
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

/// Fails with exit code 1 and one line on stderr containing `expected`.
fn assert_refused(output: &Output, expected: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("vmstate: "), "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn clock(clock: u64) -> MicrovmState {
    let mut state = MicrovmState::default();
    state.vm.clock.clock = clock;
    state
}

fn diff(
    path: &Path,
    tag: u64,
    base: kvm_state::MemoryLayerId,
    memory: &mut GuestMemoryMapping,
    rng: &mut Rng,
) -> kvm_state::MemoryLayerId {
    let mut dirty = clean_bitmap(memory);
    dirty_pages(memory, &mut dirty, 16, rng);
    let region = DiffRegion {
        guest_phys_addr: 0,
        bytes: memory.as_slice(),
        dirty: &dirty,
    };
    let (_, info) = clock(tag)
        .save_diff_with_memory(path, CURRENT_APP_VERSION, base, &[region])
        .unwrap();
    info.layer
}

#[test]
fn test_vmstate_memory_verify_full_diff_and_damaged() {
    let dir = TempDir::new("memory-cli-verify");
    let full = dir.path().join("full.snap");
    let mut memory = patterned(0, 4 * MIB, 3, 1);
    let base = clock(1)
        .save_with_memory(&full, CURRENT_APP_VERSION, &[memory.region()])
        .unwrap();
    let MemorySource::File(descriptor) = &base.memory_source else {
        panic!("full snapshot");
    };
    let out = assert_ok(&vmstate(&[&"memory", &"verify", &full]));
    assert!(
        out.contains("ok: 1 region(s) of 4194304 bytes, every crc64 matches"),
        "{out}"
    );

    let d1 = dir.path().join("d1.snap");
    diff(&d1, 2, descriptor.layer, &mut memory, &mut Rng::new(2));
    let out = assert_ok(&vmstate(&[&"memory", &"verify", &d1]));
    assert!(out.contains("ok: diff of"), "{out}");

    // A state with memory inside needs no memory file.
    let inline = dir.path().join("inline.snap");
    clock(3)
        .save_with_memory(&inline, 3, &[memory.region()])
        .unwrap();
    let out = assert_ok(&vmstate(&[&"memory", &"verify", &inline]));
    assert!(out.contains("inside the state file"), "{out}");

    // One changed byte of the memory file: a lazy restore would not notice, verify does.
    flip_byte(&MicrovmState::memory_file_path(&full), 3 * MIB + 5);
    assert!(MicrovmState::load_with_memory(&full, RestoreMode::Lazy).is_ok());
    assert_refused(
        &vmstate(&[&"memory", &"verify", &full]),
        "region at guest address 0x0 has crc64",
    );
    // A missing memory file.
    std::fs::remove_file(MicrovmState::memory_file_path(&full)).unwrap();
    assert_refused(&vmstate(&[&"memory", &"verify", &full]), "cannot open");
    // A diff state whose diff was replaced by another diff.
    let d2 = dir.path().join("d2.snap");
    diff(&d2, 4, descriptor.layer, &mut memory, &mut Rng::new(3));
    std::fs::copy(
        MicrovmState::memory_file_path(&d2),
        MicrovmState::memory_file_path(&d1),
    )
    .unwrap();
    assert_refused(
        &vmstate(&[&"memory", &"verify", &d1]),
        "the state records memory layer",
    );
}

#[test]
fn test_vmstate_memory_merge_chain_and_refusals() {
    let dir = TempDir::new("memory-cli-merge");
    let full = dir.path().join("full.snap");
    let mut memory = patterned(0, 4 * MIB, 3, 1);
    let base = clock(1)
        .save_with_memory(&full, CURRENT_APP_VERSION, &[memory.region()])
        .unwrap();
    let MemorySource::File(descriptor) = &base.memory_source else {
        panic!("full snapshot");
    };
    let mut rng = Rng::new(7);
    let d1 = dir.path().join("d1.snap");
    let d2 = dir.path().join("d2.snap");
    let layer1 = diff(&d1, 2, descriptor.layer, &mut memory, &mut rng);
    let layer2 = diff(&d2, 3, layer1, &mut memory, &mut rng);

    let merged = dir.path().join("merged.snap");
    let out = assert_ok(&vmstate(&[
        &"memory", &"merge", &full, &d1, &d2, &"-o", &merged,
    ]));
    assert!(out.contains("2 diff(s) merged into 4194304 bytes"), "{out}");
    assert!(out.contains(&layer2.to_string()), "{out}");
    // The merged snapshot is the last diff's state with all of memory, in one file.
    let (state, _, restored) = MicrovmState::load_with_memory(&merged, RestoreMode::Eager).unwrap();
    assert_eq!(state.vm.clock.clock, 3);
    assert!(restored[0].as_slice() == memory.as_slice());
    assert_ok(&vmstate(&[&"memory", &"verify", &merged]));
    // Diffs taken after the last one apply on the merged snapshot.
    let d3 = dir.path().join("d3.snap");
    diff(&d3, 4, layer2, &mut memory, &mut rng);
    let (_, _, restored) =
        MicrovmState::load_with_memory_chain(&merged, &[&d3], RestoreMode::Lazy).unwrap();
    assert!(restored[0].as_slice() == memory.as_slice());

    // Out of order, and on the wrong base: refused, nothing written.
    let bad = dir.path().join("bad.snap");
    assert_refused(
        &vmstate(&[&"memory", &"merge", &full, &d2, &d1, &"-o", &bad]),
        "applies on top of memory layer",
    );
    assert_refused(
        &vmstate(&[&"memory", &"merge", &merged, &d1, &"-o", &bad]),
        "applies on top of memory layer",
    );
    // Over the base itself: refused, the base untouched.
    let base_bytes = std::fs::read(MicrovmState::memory_file_path(&full)).unwrap();
    assert_refused(
        &vmstate(&[&"memory", &"merge", &full, &d1, &"-o", &full]),
        "merging over the base snapshot is refused",
    );
    assert!(std::fs::read(MicrovmState::memory_file_path(&full)).unwrap() == base_bytes);
    // A diff snapshot as the base.
    assert_refused(
        &vmstate(&[&"memory", &"merge", &d1, &d2, &"-o", &bad]),
        "must be a full snapshot",
    );
    assert!(!bad.exists());
    assert!(!MicrovmState::memory_file_path(&bad).exists());
    // A damaged base is refused before anything is written.
    flip_byte(&MicrovmState::memory_file_path(&full), 7);
    assert_refused(
        &vmstate(&[&"memory", &"merge", &full, &d1, &"-o", &bad]),
        "has crc64",
    );
    assert!(!bad.exists());
    // No diff at all is a usage error.
    let output = vmstate(&[&"memory", &"merge", &full, &"-o", &bad]);
    assert_eq!(output.status.code(), Some(2));
}
