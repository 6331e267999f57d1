//! The proof on `/dev/kvm` for each piece of the BSP's and the VM's state: snapshot the demo
//! guest mid-run to a file, destroy the VM, restore the file into a fresh VM, resume, and
//! finish with the output of an uninterrupted run; at the current app version and at the older
//! app version 1 (rollback); and show that each piece of state matters by leaving it out. The
//! SMP controls (APs) are in `smp.rs`.

#![cfg(target_arch = "x86_64")]

mod common;

use std::path::{Path, PathBuf};

use common::{expected_rest, joined, kvm_available, loaded_vm, restore_and_finish, TempDir};
use demo_vmm::guest::{SCRATCH_VALUE, SERIAL_INPUT};
use demo_vmm::{expected_output, DemoVm, DemoVmError, StopWhen};
use kvm_state::{
    DevicesState, KvmStateError, MicrovmState, SerialState, VcpuState, APP_VERSION_1,
    APP_VERSION_2, CURRENT_APP_VERSION,
};

/// Values the BSP has reported before the snapshot: it has its XMM registers loaded, the MSR
/// and the UART scratch register written and the LAPIC timer running, UART input is
/// pending, and it has reported none of them yet.
const MID_RUN: usize = 4;

fn bsp_mid_run(reports: &[Vec<u32>]) -> bool {
    reports[0].len() >= MID_RUN
}

/// Runs a fresh guest to the end without a snapshot.
fn run_uninterrupted() -> Vec<Vec<u32>> {
    loaded_vm().run_to_end().unwrap()
}

/// Runs a fresh guest until the BSP has reported [`MID_RUN`] values (stopped at that I/O
/// exit), pauses it, saves its complete state to a snapshot file at `app_version` and
/// destroys the VM. Returns the values reported and the file.
fn run_and_save(dir: &Path, app_version: u16) -> (Vec<Vec<u32>>, PathBuf) {
    let mut vm = loaded_vm();
    let out = vm.run(StopWhen::Condition(bsp_mid_run)).unwrap().reports;
    assert_eq!(out[0].len(), MID_RUN);
    let state = vm.save_microvm().unwrap();
    drop(vm);
    let path = dir.join(format!("mid-run-v{app_version}.snap"));
    state.save_to_file(&path, app_version).unwrap();
    (out, path)
}

#[test]
fn test_file_snapshot_resumes_like_uninterrupted_run() {
    if !kvm_available() {
        return;
    }
    let uninterrupted = run_uninterrupted();
    assert_eq!(uninterrupted, expected_output());

    let dir = TempDir::new("resume");
    let (out, path) = run_and_save(dir.path(), CURRENT_APP_VERSION);
    let (state, version) = MicrovmState::load_file(&path).unwrap();
    assert_eq!(version, CURRENT_APP_VERSION);
    assert_eq!(state.vcpus.len(), demo_vmm::VCPU_COUNT);
    assert!(state.vcpus.iter().all(|v| v.tsc_khz.is_some()) || !kvm_reports_tsc_khz());
    let rest = restore_and_finish(&state).unwrap();
    assert_eq!(joined(&out, &rest), uninterrupted);
}

/// Whether this host's KVM reports the vCPU TSC frequency (`KVM_GET_TSC_KHZ`).
fn kvm_reports_tsc_khz() -> bool {
    let vm = DemoVm::new().unwrap();
    vm.vcpus()[0].get_tsc_khz().is_ok()
}

#[test]
fn test_rollback_snapshot_at_app_version_1_resumes() {
    if !kvm_available() {
        return;
    }
    let uninterrupted = run_uninterrupted();
    let dir = TempDir::new("rollback");

    // The same guest state written for the current build and for an app-version-1 build.
    let (out, v2_path) = run_and_save(dir.path(), APP_VERSION_2);
    let (state, _) = MicrovmState::load_file(&v2_path).unwrap();
    let v1_path = dir.path().join("rollback-v1.snap");
    state.save_to_file(&v1_path, APP_VERSION_1).unwrap();

    // Version 1 has no `VcpuState::tsc_khz` (tag + u32 = 5 bytes when present) and no
    // `ClockState::{realtime, host_tsc}` (16 bytes).
    let v1_len = std::fs::metadata(&v1_path).unwrap().len();
    let v2_len = std::fs::metadata(&v2_path).unwrap().len();
    let tsc_len: u64 = state
        .vcpus
        .iter()
        .map(|v| if v.tsc_khz.is_some() { 5 } else { 1 })
        .sum();
    assert_eq!(v2_len - v1_len, tsc_len + 16);

    // An older build: its map knows only app version 1, and the layout of every type at
    // version 1 is what that build's types are. It reads the rolled-back file...
    let (old, version) =
        snapshot::Snapshot::load_file::<MicrovmState>(&v1_path, versionize::VersionMap::new())
            .unwrap();
    assert_eq!(version, APP_VERSION_1);
    assert!(old.vcpus.iter().all(|v| v.tsc_khz.is_none()));
    assert_eq!(old.vm.clock.realtime, 0);
    assert_eq!(
        old.vm.clock.flags & (kvm_bindings::KVM_CLOCK_REALTIME | kvm_bindings::KVM_CLOCK_HOST_TSC),
        0
    );
    // ... and refuses the current one by its data version, without touching the state.
    match snapshot::Snapshot::load_file::<MicrovmState>(&v2_path, versionize::VersionMap::new()) {
        Err(snapshot::SnapshotError::InvalidDataVersion { found, latest }) => {
            assert_eq!((found, latest), (APP_VERSION_2, APP_VERSION_1));
        }
        other => panic!("expected InvalidDataVersion, got {other:?}"),
    }

    // The rolled-back state restores into a fresh VM and finishes the run correctly.
    let (loaded, version) = MicrovmState::load_file(&v1_path).unwrap();
    assert_eq!(version, APP_VERSION_1);
    assert_eq!(loaded, old);
    let rest = restore_and_finish(&loaded).unwrap();
    assert_eq!(joined(&out, &rest), uninterrupted);
}

/// Saves at `MID_RUN` to a file, loads it, lets `tamper` replace part of the BSP's state with
/// the state of a fresh vCPU (as if that part had not been saved), restores and runs to the
/// end. Returns the values reported after the restore and what an uninterrupted run reports
/// after the snapshot.
fn restore_without(
    tamper: impl Fn(&mut VcpuState, &VcpuState),
) -> (demo_vmm::Result<Vec<Vec<u32>>>, Vec<Vec<u32>>) {
    let dir = TempDir::new("without");
    let (before, path) = run_and_save(dir.path(), CURRENT_APP_VERSION);
    let (mut state, _) = MicrovmState::load_file(&path).unwrap();
    let fresh = {
        let mut target = DemoVm::new().unwrap();
        target.save_microvm().unwrap().vcpus.remove(0)
    };
    tamper(&mut state.vcpus[0], &fresh);
    (restore_and_finish(&state), expected_rest(&before))
}

#[test]
fn test_restore_with_everything_is_complete() {
    if !kvm_available() {
        return;
    }
    let (rest, expected) = restore_without(|_, _| {});
    assert_eq!(rest.unwrap(), expected);
}

#[test]
fn test_output_depends_on_xsave() {
    if !kvm_available() {
        return;
    }
    let (rest, expected) = restore_without(|state, fresh| state.xsave = fresh.xsave.clone());
    let rest = rest.unwrap();
    assert_ne!(rest, expected);
    // Exactly the BSP's eight XMM words differ (they read back as zero).
    assert_eq!(&rest[0][..8], &[0; 8]);
    assert_eq!(&rest[0][8..], &expected[0][8..]);
    assert_eq!(&rest[1..], &expected[1..]);
}

#[test]
fn test_output_depends_on_msrs() {
    if !kvm_available() {
        return;
    }
    let (rest, expected) = restore_without(|state, fresh| state.msrs = fresh.msrs.clone());
    let rest = rest.unwrap();
    assert_ne!(rest, expected);
    // IA32_KERNEL_GS_BASE reads back as 0; the rest is right.
    assert_eq!(&rest[0][8..10], &[0, 0]);
    assert_eq!(&rest[0][..8], &expected[0][..8]);
    assert_eq!(&rest[0][10..], &expected[0][10..]);
    assert_eq!(&rest[1..], &expected[1..]);
}

#[test]
fn test_output_depends_on_lapic() {
    if !kvm_available() {
        return;
    }
    // Without its LAPIC the BSP's timer is off and it never wakes from `hlt` again.
    let (rest, _) = restore_without(|state, fresh| state.lapic = fresh.lapic.clone());
    let err = rest.unwrap_err();
    assert!(matches!(err, DemoVmError::Timeout(_)), "{err}");
}

#[test]
fn test_output_depends_on_serial_state() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("serial");
    let (before, path) = run_and_save(dir.path(), CURRENT_APP_VERSION);
    let (state, _) = MicrovmState::load_file(&path).unwrap();
    let expected = expected_rest(&before);
    // At the snapshot the guest has written the scratch register and the input is pending.
    let [serial] = state.devices.serial.as_slice() else {
        panic!("expected one UART, got {:?}", state.devices.serial);
    };
    assert_eq!(serial.scratch, SCRATCH_VALUE);
    assert_eq!(serial.in_buffer, SERIAL_INPUT);
    assert_eq!(restore_and_finish(&state).unwrap(), expected);

    // The BSP's last four reports come from the UART: scratch, byte count, two words of bytes.
    let uart_reports = expected[0].len() - 4;
    // Devices not saved: refused before anything is written (the demo VM has one UART).
    let without = MicrovmState {
        devices: DevicesState::default(),
        ..state.clone()
    };
    let err = DemoVm::new()
        .unwrap()
        .restore_microvm(&without)
        .unwrap_err();
    assert!(
        matches!(
            err,
            DemoVmError::State(KvmStateError::DeviceCount {
                kind: "serial",
                saved: 0,
                target: 1
            })
        ),
        "{err}"
    );
    for tampered in [
        // The UART in its power-on state (what a VMM that did not save it would have).
        MicrovmState {
            devices: DevicesState {
                serial: vec![DemoVm::new().unwrap().serial_state()],
                ..state.devices.clone()
            },
            ..state.clone()
        },
        // A UART with all-zero registers and no input.
        MicrovmState {
            devices: DevicesState {
                serial: vec![SerialState::default()],
                ..state.devices.clone()
            },
            ..state.clone()
        },
    ] {
        let rest = restore_and_finish(&tampered).unwrap();
        assert_ne!(rest, expected);
        // The scratch register reads back as 0 and no input arrives; the rest is right.
        assert_eq!(&rest[0][uart_reports..], &[0, 0, 0, 0]);
        assert_eq!(&rest[0][..uart_reports], &expected[0][..uart_reports]);
        assert_eq!(&rest[1..], &expected[1..]);
    }
}

#[test]
fn test_output_depends_on_memory() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("memory");
    let (_, path) = run_and_save(dir.path(), CURRENT_APP_VERSION);
    let (mut state, _) = MicrovmState::load_file(&path).unwrap();
    // Memory saved elsewhere and not restored: the fresh VM's memory is all zero, so the
    // guest has no code to run.
    state.memory[0].contents.clear();
    assert!(restore_and_finish(&state).is_err());
}

#[test]
fn test_restore_microvm_rejects_mismatched_state() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("mismatch");
    let (_, path) = run_and_save(dir.path(), CURRENT_APP_VERSION);
    let (state, _) = MicrovmState::load_file(&path).unwrap();

    let mut four_vcpus = state.clone();
    let mut fourth = state.vcpus[0].clone();
    fourth.lapic.regs[0x23] = 3; // its own APIC id, so only the count is wrong
    four_vcpus.vcpus.push(fourth);
    assert!(matches!(
        DemoVm::new().unwrap().restore_microvm(&four_vcpus),
        Err(DemoVmError::State(KvmStateError::VcpuCount {
            saved: 4,
            target: 3
        }))
    ));

    let mut moved = state.clone();
    moved.memory[0].guest_phys_addr = 0x1000;
    assert!(matches!(
        DemoVm::new().unwrap().restore_microvm(&moved),
        Err(DemoVmError::State(KvmStateError::MemoryRegion {
            guest_phys_addr: 0x1000,
            ..
        }))
    ));

    let mut torn = state;
    torn.memory[0].contents.truncate(4096);
    assert!(matches!(
        DemoVm::new().unwrap().restore_microvm(&torn),
        Err(DemoVmError::State(KvmStateError::MemoryRegion { .. }))
    ));
}

#[test]
fn test_corrupt_snapshot_file_is_refused() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("corrupt");
    let (_, path) = run_and_save(dir.path(), CURRENT_APP_VERSION);
    let mut bytes = std::fs::read(&path).unwrap();
    // Flip one bit in the middle of the file (guest memory).
    let i = bytes.len() / 2;
    bytes[i] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    match MicrovmState::load_file(&path) {
        Err(KvmStateError::Snapshot {
            action: "load",
            source: snapshot::SnapshotError::Crc64 { .. },
        }) => {}
        other => panic!("expected a CRC error, got {other:?}"),
    }
}
