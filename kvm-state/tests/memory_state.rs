//! A `MicrovmState` with its guest memory in a file beside the state file (app version 6):
//! save and load (lazy and eager), older app versions (memory inline, or a named refusal),
//! old snapshots with memory inside, diff snapshots and their chains, and the controls.

#![cfg(target_arch = "x86_64")]

mod common;
mod memory_support;

use common::TempDir;
use kvm_state::{
    check_state, version_map, GuestMemoryMapping, KvmStateError, MemoryError, MemoryRegionState,
    MemorySource, MicrovmState, RestoreMode, APP_VERSION_3, APP_VERSION_6, CURRENT_APP_VERSION,
    PAGE_SIZE,
};
use memory_support::{clean_bitmap, dirty_pages, flip_byte, patterned, set_len, Rng};
use versionize::Versionize;

const MIB: u64 = 1 << 20;

/// A state whose guest clock tells snapshots apart.
fn state(clock: u64) -> MicrovmState {
    let mut state = MicrovmState::default();
    state.vm.clock.clock = clock;
    state
}

fn regions(memory: &[GuestMemoryMapping]) -> Vec<kvm_state::GuestRegionBytes<'_>> {
    memory.iter().map(GuestMemoryMapping::region).collect()
}

fn assert_same(restored: &[GuestMemoryMapping], memory: &[GuestMemoryMapping]) {
    assert_eq!(restored.len(), memory.len());
    for (r, m) in restored.iter().zip(memory) {
        assert_eq!(r.guest_phys_addr(), m.guest_phys_addr());
        assert!(
            r.as_slice() == m.as_slice(),
            "region at {:#x}",
            m.guest_phys_addr()
        );
    }
}

fn two_regions() -> Vec<GuestMemoryMapping> {
    vec![
        patterned(0, 4 * MIB, 3, 1),
        patterned(4 << 30, 2 * MIB, 5, 2),
    ]
}

#[test]
fn test_save_with_memory_records_each_region_and_restores_lazy_and_eager() {
    let dir = TempDir::new("memory-state-roundtrip");
    let path = dir.path().join("vm.snap");
    let memory = two_regions();
    let written = state(0x1234)
        .save_with_memory(&path, CURRENT_APP_VERSION, &regions(&memory))
        .unwrap();
    let MemorySource::File(descriptor) = &written.memory_source else {
        panic!("memory is in a file: {:?}", written.memory_source);
    };
    // Each region's guest address, size and page-aligned file offset, back to back.
    let recorded: Vec<(u64, u64, u64)> = descriptor
        .regions
        .iter()
        .map(|r| (r.guest_phys_addr, r.size, r.file_offset))
        .collect();
    assert_eq!(recorded, [(0, 4 * MIB, 0), (4 << 30, 2 * MIB, 4 * MIB)]);
    assert!(written.memory.iter().all(|r| !r.has_contents()));
    let mem_path = MicrovmState::memory_file_path(&path);
    assert_eq!(mem_path, dir.path().join("vm.snap.mem"));
    assert_eq!(std::fs::metadata(&mem_path).unwrap().len(), 6 * MIB);
    // The state file stays small: memory is not in it.
    assert!(std::fs::metadata(&path).unwrap().len() < 64 * 1024);

    for mode in [RestoreMode::Lazy, RestoreMode::Eager] {
        let (loaded, app_version, restored) = MicrovmState::load_with_memory(&path, mode).unwrap();
        assert_eq!(app_version, APP_VERSION_6);
        assert_eq!(loaded, written);
        assert_eq!(restored[0].is_file_backed(), mode == RestoreMode::Lazy);
        assert_same(&restored, &memory);
        check_state(&loaded).unwrap();
    }
}

#[test]
fn test_save_with_memory_for_app_version_3_writes_memory_inline() {
    let dir = TempDir::new("memory-state-inline");
    let path = dir.path().join("vm.snap");
    let memory = two_regions();
    let written = state(7)
        .save_with_memory(&path, APP_VERSION_3, &regions(&memory))
        .unwrap();
    assert_eq!(written.memory_source, MemorySource::Inline);
    assert!(!MicrovmState::memory_file_path(&path).exists());
    // What a build of app version 3 reads: the bytes in the state.
    let (loaded, app_version) = MicrovmState::load_file(&path).unwrap();
    assert_eq!(app_version, APP_VERSION_3);
    for (region, mapping) in loaded.memory.iter().zip(&memory) {
        assert_eq!(region.guest_phys_addr, mapping.guest_phys_addr());
        assert!(region.contents == mapping.as_slice());
    }
    // And this build brings it back as guest memory too.
    let (loaded, _, restored) = MicrovmState::load_with_memory(&path, RestoreMode::Lazy).unwrap();
    assert_same(&restored, &memory);
    assert!(loaded.memory.iter().all(|r| !r.has_contents()));
}

#[test]
fn test_save_with_memory_for_app_version_3_refuses_memory_over_the_cap() {
    let dir = TempDir::new("memory-state-too-large");
    let path = dir.path().join("vm.snap");
    // 10 MiB of memory plus the rest of the state is over the 10 MiB an app version 3
    // build loads; 12 MiB is refused before anything is copied.
    for size in [10 * MIB, 12 * MIB] {
        let memory = [GuestMemoryMapping::anonymous(0, size).unwrap()];
        let err = state(1)
            .save_with_memory(&path, APP_VERSION_3, &regions(&memory))
            .unwrap_err();
        assert!(
            matches!(
                err,
                KvmStateError::MemoryTooLargeForAppVersion {
                    app_version: APP_VERSION_3,
                    cap,
                    state_len,
                } if cap == 10 * MIB && state_len > cap
            ),
            "{err:?}"
        );
        assert!(!path.exists());
        assert!(!MicrovmState::memory_file_path(&path).exists());
    }
    // The same memory at app version 6 is fine.
    let memory = [GuestMemoryMapping::anonymous(0, 12 * MIB).unwrap()];
    state(1)
        .save_with_memory(&path, APP_VERSION_6, &regions(&memory))
        .unwrap();
}

#[test]
fn test_state_with_memory_outside_is_never_written_for_app_version_3() {
    let dir = TempDir::new("memory-state-refuse-old");
    let path = dir.path().join("vm.snap");
    let memory = two_regions();
    let written = state(1)
        .save_with_memory(&path, APP_VERSION_6, &regions(&memory))
        .unwrap();
    for app_version in 1..APP_VERSION_6 {
        let old = dir.path().join(format!("v{app_version}.snap"));
        assert!(matches!(
            written.save_to_file(&old, app_version),
            Err(KvmStateError::MemoryOutsideState { app_version: v }) if v == app_version
        ));
        assert!(!old.exists());
        assert!(matches!(
            written.to_snapshot_bytes(app_version),
            Err(KvmStateError::MemoryOutsideState { .. })
        ));
        // A VMM's own state that embeds it goes through the field's `ser_fn`.
        let mut out = Vec::new();
        let err = written
            .serialize(&mut out, &version_map(), app_version)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("app versions before 4 cannot record"),
            "{err}"
        );
        assert!(format!("{err:?}").contains("source: Semantic("), "{err:?}");
    }
    // An inline state is written for every app version, as before.
    state(1)
        .save_to_file(dir.path().join("inline.snap"), 1)
        .unwrap();
}

#[test]
fn test_old_snapshot_with_memory_inside_loads_with_memory() {
    let dir = TempDir::new("memory-state-old");
    let path = dir.path().join("old.snap");
    let memory = patterned(0, 2 * MIB, 2, 9);
    let mut old = state(3);
    old.memory = vec![MemoryRegionState::with_contents(
        0,
        memory.as_slice().to_vec(),
    )];
    old.save_to_file(&path, APP_VERSION_3).unwrap();
    let (loaded, app_version, restored) =
        MicrovmState::load_with_memory(&path, RestoreMode::Lazy).unwrap();
    assert_eq!(app_version, APP_VERSION_3);
    assert_eq!(loaded.memory_source, MemorySource::Inline);
    assert_eq!(loaded.memory[0].size, 2 * MIB);
    assert_same(&restored, std::slice::from_ref(&memory));
}

#[test]
fn test_load_with_memory_refuses_regions_kept_elsewhere() {
    let dir = TempDir::new("memory-state-elsewhere");
    let path = dir.path().join("vm.snap");
    let mut elsewhere = state(1);
    elsewhere.memory = vec![MemoryRegionState {
        guest_phys_addr: 0,
        size: 2 * MIB,
        contents: Vec::new(),
    }];
    elsewhere.save_to_file(&path, CURRENT_APP_VERSION).unwrap();
    let err = MicrovmState::load_with_memory(&path, RestoreMode::Eager).unwrap_err();
    assert!(
        matches!(&err, KvmStateError::MemorySource { reason, .. } if reason.contains("elsewhere")),
        "{err:?}"
    );
}

#[test]
fn test_load_with_memory_detects_a_damaged_memory_file() {
    let dir = TempDir::new("memory-state-damaged");
    let path = dir.path().join("vm.snap");
    let memory = two_regions();
    state(1)
        .save_with_memory(&path, CURRENT_APP_VERSION, &regions(&memory))
        .unwrap();
    let mem_path = MicrovmState::memory_file_path(&path);
    // A changed byte: eager restore checks every region's CRC-64.
    flip_byte(&mem_path, 5 * MIB + 17);
    assert!(matches!(
            memory_error(MicrovmState::load_with_memory(&path, RestoreMode::Eager)),
            MemoryError::Checksum { guest_phys_addr, .. } if guest_phys_addr == 4 << 30
    ));
    // A truncated file: both modes check the length before mapping.
    set_len(&mem_path, 6 * MIB - PAGE_SIZE);
    for mode in [RestoreMode::Lazy, RestoreMode::Eager] {
        assert!(matches!(
            memory_error(MicrovmState::load_with_memory(&path, mode)),
            MemoryError::Length { expected, .. } if expected == 6 * MIB
        ));
    }
    // A missing file.
    std::fs::remove_file(&mem_path).unwrap();
    assert!(matches!(
        memory_error(MicrovmState::load_with_memory(&path, RestoreMode::Lazy)),
        MemoryError::Io { op: "open", .. }
    ));
}

#[test]
fn test_check_state_refuses_regions_the_memory_file_does_not_describe() {
    let dir = TempDir::new("memory-state-mismatch");
    let path = dir.path().join("vm.snap");
    let memory = two_regions();
    let written = state(1)
        .save_with_memory(&path, CURRENT_APP_VERSION, &regions(&memory))
        .unwrap();
    check_state(&written).unwrap();

    let mut moved = written.clone();
    moved.memory[1].guest_phys_addr = 8 << 30;
    assert!(matches!(
        check_state(&moved),
        Err(KvmStateError::MemoryRegion {
            reason: "the memory file describes another region",
            ..
        })
    ));
    let mut both = written.clone();
    both.memory[0].contents = vec![0; (4 * MIB) as usize];
    assert!(matches!(
        check_state(&both),
        Err(KvmStateError::MemoryRegion {
            reason: "has contents but is in a memory file",
            ..
        })
    ));
    let mut fewer = written.clone();
    fewer.memory.pop();
    assert!(matches!(
        check_state(&fewer),
        Err(KvmStateError::BadLength { .. })
    ));
    // load_with_memory runs the same check on what it reads.
    moved.save_to_file(&path, CURRENT_APP_VERSION).unwrap();
    assert!(matches!(
        MicrovmState::load_with_memory(&path, RestoreMode::Lazy),
        Err(KvmStateError::MemoryRegion { .. })
    ));
}

#[test]
fn test_diff_snapshots_restore_as_a_chain_and_refuse_the_wrong_one() {
    let dir = TempDir::new("memory-state-diff");
    let base_path = dir.path().join("base.snap");
    let d1_path = dir.path().join("d1.snap");
    let d2_path = dir.path().join("d2.snap");
    let mut memory = patterned(0, 8 * MIB, 4, 3);
    let base = state(1)
        .save_with_memory(&base_path, CURRENT_APP_VERSION, &[memory.region()])
        .unwrap();
    let MemorySource::File(descriptor) = &base.memory_source else {
        panic!("full snapshot");
    };
    let mut rng = Rng::new(5);
    let mut dirty = clean_bitmap(&memory);
    dirty_pages(&mut memory, &mut dirty, 20, &mut rng);
    let (_, d1) = state(2)
        .save_diff_with_memory(
            &d1_path,
            CURRENT_APP_VERSION,
            descriptor.layer,
            &[region(&memory, &dirty)],
        )
        .unwrap();
    let after_d1 = memory.as_slice().to_vec();
    let mut dirty = clean_bitmap(&memory);
    dirty_pages(&mut memory, &mut dirty, 20, &mut rng);
    let (written, _) = state(3)
        .save_diff_with_memory(
            &d2_path,
            CURRENT_APP_VERSION,
            d1.layer,
            &[region(&memory, &dirty)],
        )
        .unwrap();

    for mode in [RestoreMode::Lazy, RestoreMode::Eager] {
        let (loaded, _, restored) =
            MicrovmState::load_with_memory_chain(&base_path, &[&d1_path, &d2_path], mode).unwrap();
        assert_eq!(loaded, written);
        assert_eq!(loaded.vm.clock.clock, 3);
        assert!(restored[0].as_slice() == memory.as_slice());
    }
    let (_, _, restored) =
        MicrovmState::load_with_memory_chain(&base_path, &[&d1_path], RestoreMode::Lazy).unwrap();
    assert!(restored[0].as_slice() == after_d1.as_slice());

    // Out of order: d2 applies on d1's layer, not the base's.
    assert!(matches!(
        memory_error(MicrovmState::load_with_memory_chain(
            &base_path,
            &[&d2_path, &d1_path],
            RestoreMode::Lazy
        )),
        MemoryError::WrongBase { .. }
    ));
    // The wrong base: another full snapshot of the same memory.
    let other = dir.path().join("other.snap");
    state(1)
        .save_with_memory(&other, CURRENT_APP_VERSION, &[memory.region()])
        .unwrap();
    assert!(matches!(
        memory_error(MicrovmState::load_with_memory_chain(
            &other,
            &[&d1_path],
            RestoreMode::Lazy
        )),
        MemoryError::WrongBase { .. }
    ));
    // A diff state is not a base, and a full state is not a diff.
    assert!(matches!(
        MicrovmState::load_with_memory_chain(&d1_path, &[&d2_path], RestoreMode::Lazy),
        Err(KvmStateError::MemorySource { .. })
    ));
    assert!(matches!(
        MicrovmState::load_with_memory_chain(&base_path, &[&other], RestoreMode::Lazy),
        Err(KvmStateError::MemorySource { .. })
    ));
    // A diff state loaded as if its memory were a full file.
    assert!(matches!(
        MicrovmState::load_with_memory(&d1_path, RestoreMode::Lazy),
        Err(KvmStateError::MemorySource { .. })
    ));
    // A diff state whose diff was swapped for another one.
    std::fs::copy(
        MicrovmState::memory_file_path(&d2_path),
        MicrovmState::memory_file_path(&d1_path),
    )
    .unwrap();
    let err = MicrovmState::load_with_memory_chain(&base_path, &[&d1_path], RestoreMode::Lazy)
        .unwrap_err();
    assert!(
        matches!(&err, KvmStateError::MemorySource { reason, .. } if reason.contains("the diff beside it")),
        "{err:?}"
    );
    // And a diff cannot be written for an app version that has no diffs.
    assert!(matches!(
        state(4).save_diff_with_memory(
            dir.path().join("old.snap"),
            APP_VERSION_3,
            d1.layer,
            &[region(&memory, &clean_bitmap(&memory))]
        ),
        Err(KvmStateError::MemoryOutsideState {
            app_version: APP_VERSION_3
        })
    ));
}

fn region<'a>(memory: &'a GuestMemoryMapping, dirty: &'a [u64]) -> kvm_state::DiffRegion<'a> {
    kvm_state::DiffRegion {
        guest_phys_addr: 0,
        bytes: memory.as_slice(),
        dirty,
    }
}

/// The memory error a call failed with.
fn memory_error<T: std::fmt::Debug>(result: Result<T, KvmStateError>) -> MemoryError {
    match result {
        Err(KvmStateError::Memory(error)) => *error,
        other => panic!("expected a memory error, got {other:?}"),
    }
}
