//! The proof on `/dev/kvm` for guest memory at real sizes: the demo guest with 256 MiB of
//! memory touches a page every 64 KiB across all of it before the snapshot point and again
//! after it, reporting a checksum. Full (lazy and eager), diff-chain and chunk-store
//! snapshots each restore to the uninterrupted output. Controls: a changed page in a memory
//! file changes the output (lazy) or is refused (eager); a diff on the wrong base is refused.

#![cfg(target_arch = "x86_64")]

mod common;

use common::{joined, kvm_available, TempDir};
use demo_vmm::guest::touch_addr;
use demo_vmm::{expected_output_for, mid_run, DemoVm, DemoVmError, RunOutput, StopWhen};
use kvm_state::{
    ChunkStore, KvmStateError, MemoryError, MemorySource, MicrovmState, RestoreMode,
    CURRENT_APP_VERSION,
};

const MEM: u64 = 256 << 20;

/// A fresh 256 MiB VM with the guest loaded.
fn loaded() -> DemoVm {
    let mut vm = DemoVm::with_memory_size(MEM).unwrap();
    vm.load_guest().unwrap();
    vm
}

/// Runs the restored VM to the end and checks that what ran before the snapshot(s) and
/// after it is the uninterrupted output.
fn assert_resumes(mut restored: DemoVm, before: &[&RunOutput], what: &str) {
    let after = restored.run(StopWhen::Done).unwrap();
    assert!(after.finished, "{what}: the restored guest finished");
    let mut reports: Vec<Vec<u32>> = vec![Vec::new(); demo_vmm::VCPU_COUNT];
    for run in before {
        reports = joined(&reports, &run.reports);
    }
    assert_eq!(
        joined(&reports, &after.reports),
        expected_output_for(MEM),
        "{what}"
    );
}

/// The BSP has reported its fifth LAPIC tick: an earlier point than [`mid_run`], before it
/// touches memory above 2 MiB for the first time (or while it does).
fn early(reports: &[Vec<u32>]) -> bool {
    reports.first().is_some_and(|bsp| bsp.contains(&3))
}

#[test]
fn test_memory_256mib_uninterrupted_run_matches_expected() {
    if !kvm_available() {
        return;
    }
    let mut vm = loaded();
    let output = vm.run(StopWhen::Done).unwrap();
    assert!(output.finished);
    let expected = expected_output_for(MEM);
    assert_eq!(output.reports, expected);
    // 4064 pages touched, and a checksum reported, which 2 MiB guests do not.
    assert!(expected[0].contains(&4064));
    assert_eq!(expected[0].len(), demo_vmm::expected_output()[0].len() + 3);
}

#[test]
fn test_memory_file_snapshot_256mib_restores_lazily_and_eagerly() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("memory-full");
    let path = dir.path().join("vm.snap");
    let mut source = loaded();
    let before = source.run(StopWhen::Condition(mid_run)).unwrap();
    assert!(!before.finished);
    let state = source.save_with_memory(&path, CURRENT_APP_VERSION).unwrap();
    drop(source);
    assert!(matches!(state.memory_source, MemorySource::File(_)));
    // The state file is small; guest memory is beside it.
    assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
    assert_eq!(
        std::fs::metadata(MicrovmState::memory_file_path(&path))
            .unwrap()
            .len(),
        MEM
    );

    let lazy = DemoVm::restore_from_files(&path, RestoreMode::Lazy).unwrap();
    assert!(lazy.memory_is_file_backed());
    assert_eq!(lazy.memory_size(), MEM);
    assert_resumes(lazy, &[&before], "lazy restore");

    let eager = DemoVm::restore_from_files(&path, RestoreMode::Eager).unwrap();
    assert!(!eager.memory_is_file_backed());
    assert_resumes(eager, &[&before], "eager restore");

    // The state alone, without its memory file, is refused by the restore that takes
    // memory from the state.
    let mut fresh = DemoVm::with_memory_size(MEM).unwrap();
    assert!(matches!(
        fresh.restore_microvm(&state),
        Err(DemoVmError::MemoryOutsideState)
    ));
}

#[test]
fn test_memory_file_changed_page_changes_the_output_or_is_refused() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("memory-changed");
    let path = dir.path().join("vm.snap");
    let mut source = loaded();
    let before = source.run(StopWhen::Condition(mid_run)).unwrap();
    source.save_with_memory(&path, CURRENT_APP_VERSION).unwrap();
    drop(source);
    // One byte of a page the guest touched before the snapshot and reads after it (the
    // memory file holds the one region at file offset 0, so file offset = guest address).
    let mem_path = MicrovmState::memory_file_path(&path);
    let offset = touch_addr(1000);
    let mut bytes = std::fs::read(&mem_path).unwrap();
    bytes[offset as usize] ^= 0x40;
    std::fs::write(&mem_path, &bytes).unwrap();
    drop(bytes);

    // Eager: the region's CRC-64 no longer matches.
    assert!(matches!(
        memory_error(DemoVm::restore_from_files(&path, RestoreMode::Eager)),
        MemoryError::Checksum { .. }
    ));
    // Lazy (no checksum pass): the guest reads the changed page and its checksum differs.
    let mut lazy = DemoVm::restore_from_files(&path, RestoreMode::Lazy).unwrap();
    let after = lazy.run(StopWhen::Done).unwrap();
    let output = joined(&before.reports, &after.reports);
    let expected = expected_output_for(MEM);
    assert_ne!(output[0], expected[0]);
    // Only the checksum differs: every other report is the same.
    let differing: Vec<usize> = (0..expected[0].len())
        .filter(|&i| output[0][i] != expected[0][i])
        .collect();
    assert!(
        !differing.is_empty() && differing.len() <= 2,
        "{differing:?}"
    );
    assert_eq!(output[1..], expected[1..]);
}

#[test]
fn test_memory_diff_chain_256mib_restores_and_refuses_the_wrong_base() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("memory-diff");
    let base_path = dir.path().join("base.snap");
    let diff_path = dir.path().join("diff.snap");
    let mut source = loaded();
    source.enable_dirty_log().unwrap();
    let first = source.run(StopWhen::Condition(early)).unwrap();
    let base = source
        .save_with_memory(&base_path, CURRENT_APP_VERSION)
        .unwrap();
    let MemorySource::File(descriptor) = &base.memory_source else {
        panic!("a full snapshot");
    };
    let second = source.run(StopWhen::Condition(mid_run)).unwrap();
    let (_, info) = source
        .save_diff(&diff_path, CURRENT_APP_VERSION, descriptor.layer)
        .unwrap();
    drop(source);
    // Only what changed: at most the 4064 touched pages and the low 2 MiB's working set,
    // far below the 65536 pages of the guest.
    assert!(info.dirty_pages > 0);
    assert!(info.dirty_pages < 4064 + 512, "{} pages", info.dirty_pages);
    assert!(info.file_len < 20 << 20, "{} bytes", info.file_len);

    for mode in [RestoreMode::Lazy, RestoreMode::Eager] {
        let restored = DemoVm::restore_from_chain(&base_path, &[&diff_path], mode).unwrap();
        assert_resumes(restored, &[&first, &second], "base + diff");
    }
    // The base alone is the earlier snapshot, and resumes as such.
    let restored = DemoVm::restore_from_files(&base_path, RestoreMode::Lazy).unwrap();
    assert_resumes(restored, &[&first], "base alone");

    // The diff on another base: a full snapshot of another run of the same guest.
    let other_path = dir.path().join("other.snap");
    let mut other = loaded();
    other.run(StopWhen::Condition(early)).unwrap();
    other
        .save_with_memory(&other_path, CURRENT_APP_VERSION)
        .unwrap();
    drop(other);
    assert!(matches!(
        memory_error(DemoVm::restore_from_chain(
            &other_path,
            &[&diff_path],
            RestoreMode::Lazy
        )),
        MemoryError::WrongBase { .. }
    ));
    // The diff snapshot alone is not a full one.
    assert!(matches!(
        DemoVm::restore_from_files(&diff_path, RestoreMode::Lazy),
        Err(DemoVmError::State(KvmStateError::MemorySource { .. }))
    ));
}

#[test]
fn test_memory_chunk_store_256mib_restores_and_stores_chunks_once() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("memory-chunks");
    let store = ChunkStore::open(dir.path().join("store")).unwrap();
    let state_a = dir.path().join("a.snap");
    let state_b = dir.path().join("b.snap");
    let mut source = loaded();
    let before = source.run(StopWhen::Condition(mid_run)).unwrap();
    let first = source
        .save_to_chunk_store(&store, "a", &state_a, CURRENT_APP_VERSION)
        .unwrap();
    // A second snapshot of the same, unchanged guest adds (almost) nothing.
    let second = source
        .save_to_chunk_store(&store, "b", &state_b, CURRENT_APP_VERSION)
        .unwrap();
    drop(source);
    assert!(first.new_bytes > 0);
    assert!(
        second.new_bytes * 100 <= first.new_bytes,
        "{first:?} then {second:?}"
    );

    let restored = DemoVm::restore_from_chunk_store(&store, "a", &state_a).unwrap();
    assert_resumes(restored, &[&before], "chunk store");
    store.remove("a").unwrap();
    store.gc().unwrap();
    let restored = DemoVm::restore_from_chunk_store(&store, "b", &state_b).unwrap();
    assert_resumes(
        restored,
        &[&before],
        "chunk store after removing the other snapshot",
    );
}

/// Runs the `demo-vmm` binary.
fn demo_vmm_status(args: &[&dyn AsRef<std::ffi::OsStr>]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_demo-vmm"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap()
}

/// Runs the `demo-vmm` binary; returns its stdout, checking it succeeded.
fn demo_vmm(args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let output = demo_vmm_status(args);
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Lines sorted stably by their first field, as `sort -s -k1,1` does.
fn sorted_by_source(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort_by(|a, b| a.split(' ').next().cmp(&b.split(' ').next()));
    lines
}

#[test]
fn test_memory_cli_256mib_run_save_restore_in_two_processes() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("memory-cli");
    let path = dir.path().join("vm.snap");
    let before = demo_vmm(&[&"run", &"--memory-mib", &"256", &"--save", &path]);
    assert!(MicrovmState::memory_file_path(&path).exists());
    let expected = demo_vmm(&[&"expected", &"--memory-mib", &"256"]);
    for mode in [None, Some("--eager")] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"restore", &path];
        if let Some(flag) = &mode {
            args.push(flag);
        }
        let after = demo_vmm(&args);
        assert_eq!(
            sorted_by_source(&format!("{before}{after}")),
            sorted_by_source(&expected),
            "{mode:?}"
        );
    }
    // A changed byte: refused by --eager (exit 2, naming the error), a missing memory file
    // is a file that cannot be opened (exit 1).
    let mem_path = MicrovmState::memory_file_path(&path);
    let mut bytes = std::fs::read(&mem_path).unwrap();
    bytes[touch_addr(7) as usize] ^= 1;
    std::fs::write(&mem_path, &bytes).unwrap();
    drop(bytes);
    let refused = demo_vmm_status(&[&"restore", &path, &"--eager"]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refused") && stderr.contains(": Checksum: "),
        "{stderr}"
    );
    std::fs::remove_file(&mem_path).unwrap();
    let missing = demo_vmm_status(&[&"restore", &path]);
    assert_eq!(missing.status.code(), Some(1));
    // The 2 MiB default is unchanged: no memory file unless asked for.
    let small = dir.path().join("small.snap");
    demo_vmm(&[&"run", &"--save", &small]);
    assert!(!MicrovmState::memory_file_path(&small).exists());
    demo_vmm(&[&"run", &"--save", &small, &"--memory-file"]);
    assert!(MicrovmState::memory_file_path(&small).exists());
}

/// The memory error a restore failed with.
fn memory_error(result: demo_vmm::Result<DemoVm>) -> MemoryError {
    match result {
        Err(DemoVmError::State(KvmStateError::Memory(error))) => *error,
        Err(other) => panic!("expected a memory error, got {other:?}"),
        Ok(_) => panic!("expected a memory error, the restore succeeded"),
    }
}
