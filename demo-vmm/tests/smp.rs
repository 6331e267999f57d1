//! The SMP proof on `/dev/kvm`: three vCPUs on three threads (the BSP, AP1 running, AP2 halted
//! waiting for an IPI), snapshotted to a file mid-run, at every report and at signal-kicked
//! moments; the VM destroyed, the file restored into a fresh VM with as many vCPU threads, and
//! every vCPU finishes with the output of an uninterrupted run. Controls: an AP's mp_state or
//! LAPIC left out changes the result, two vCPUs' states swapped are refused (and, past that
//! check, change the result).

#![cfg(target_arch = "x86_64")]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    assert_resumed, expected_rest, kvm_available, loaded_vm, restore_and_finish, restore_and_run,
    TempDir,
};
use demo_vmm::{expected_output, DemoVm, DemoVmError, RunOutput, StopWhen};
use kvm_bindings::{KVM_MP_STATE_HALTED, KVM_MP_STATE_RUNNABLE};
use kvm_state::{KvmStateError, MicrovmState, VcpuState, CURRENT_APP_VERSION};

use demo_vmm::mid_run;

/// Runs a fresh guest until `stop_when`, saves it to a snapshot file in `dir` and destroys
/// the VM. Returns what ran before the snapshot and the file.
fn run_and_save(stop_when: StopWhen, dir: &Path, name: &str) -> (RunOutput, PathBuf) {
    let mut vm = loaded_vm();
    let before = vm.run(stop_when).unwrap();
    let state = vm.save_microvm().unwrap();
    drop(vm);
    let path = dir.join(format!("{name}.snap"));
    state.save_to_file(&path, CURRENT_APP_VERSION).unwrap();
    (before, path)
}

#[test]
fn test_smp_guest_uninterrupted() {
    if !kvm_available() {
        return;
    }
    let out = loaded_vm().run(StopWhen::Done).unwrap();
    assert!(out.finished);
    assert_eq!(out.reports, expected_output());
}

#[test]
fn test_smp_snapshot_mid_run_resumes_like_uninterrupted_run() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("smp-mid");
    // The guest makes the point deterministic (AP1 spins, AP2 has set its ready flag a few
    // instructions before its `hlt`, the device completes one request per 300 us); only a
    // host that deschedules a vCPU thread for that long can move it, so up to five tries.
    let mut seen = false;
    for attempt in 1..=5 {
        let (before, path) = run_and_save(StopWhen::Condition(mid_run), dir.path(), "mid");
        assert!(!before.finished);
        let (state, version) = MicrovmState::load_file(&path).unwrap();
        assert_eq!(version, CURRENT_APP_VERSION);
        assert_eq!(state.vcpus.len(), 3);
        // The facts of this host, queried when the VM was created, are recorded.
        assert!(state.host.is_known());
        assert_eq!(&state.host, DemoVm::new().unwrap().host().facts());
        // At the point: AP1 has reported two results and spins, AP2 has reported its tick.
        // A host that deschedules a vCPU thread long enough moves the point; the snapshot must
        // still resume exactly, and the next attempt looks for the point again.
        let at_point = before.reports[1].len() == 3
            && before.reports[2].len() == 2
            && state.vcpus[1].mp_state.mp_state == KVM_MP_STATE_RUNNABLE;
        // Each vCPU has its own stack.
        let rsps: Vec<u64> = state.vcpus.iter().map(|v| v.regs.rsp & !0xfff).collect();
        assert!(
            rsps[0] != rsps[1] && rsps[1] != rsps[2] && rsps[0] != rsps[2],
            "{rsps:x?}"
        );
        let after = restore_and_run(&state).unwrap();
        assert_resumed(&before, &after, "mid-run snapshot");

        let queue = &state.devices.virtio_mmio[0].queues[0];
        let ap2_halted = state.vcpus[2].mp_state.mp_state == KVM_MP_STATE_HALTED;
        let in_flight = usize::from(queue.next_used) < demo_vmm::guest::VIRTIO_REQUESTS;
        eprintln!(
            "attempt {attempt}: at the point {at_point}, AP2 halted {ap2_halted}, virtio \
             next_used {}",
            queue.next_used
        );
        if at_point && ap2_halted && in_flight {
            seen = true;
            break;
        }
    }
    assert!(
        seen,
        "no snapshot at the point (AP1 running after two results, AP2 halted after its tick, \
         virtio requests in flight) in five attempts"
    );
}

#[test]
fn test_smp_snapshot_at_every_report() {
    if !kvm_available() {
        return;
    }
    let total: usize = expected_output().iter().map(Vec::len).sum();
    let dir = TempDir::new("smp-every");
    for k in 1..=total {
        let (before, path) = run_and_save(StopWhen::Reports(k), dir.path(), &format!("r{k}"));
        let (state, _) = MicrovmState::load_file(&path).unwrap();
        let after = restore_and_run(&state)
            .unwrap_or_else(|e| panic!("restore after report {k} failed: {e}"));
        assert_resumed(&before, &after, &format!("snapshot after report {k}"));
    }
}

#[test]
fn test_smp_snapshot_at_signal_kicked_moments() {
    if !kvm_available() {
        return;
    }
    // Kick moments spread over the length of an uninterrupted run, until four of them have
    // landed mid-run (AP1 running, AP2 halted waiting for the IPI) or 48 tries: every
    // snapshot, mid-run or not, must restore correctly.
    let started = std::time::Instant::now();
    loaded_vm().run(StopWhen::Done).unwrap();
    let length = started.elapsed();
    let dir = TempDir::new("smp-kick");
    let (mut mid_run_seen, mut resumed) = (0, 0);
    for attempt in 0..48u32 {
        if mid_run_seen >= 4 {
            break;
        }
        let delay = length * (attempt % 16) / 16;
        let (before, path) = run_and_save(StopWhen::After(delay), dir.path(), "kicked");
        let (state, _) = MicrovmState::load_file(&path).unwrap();
        let counts: Vec<usize> = before.reports.iter().map(Vec::len).collect();
        let mp_states: Vec<u32> = state.vcpus.iter().map(|v| v.mp_state.mp_state).collect();
        eprintln!(
            "kicked after {delay:?}: reports per vcpu {counts:?}, mp_states {mp_states:?}, {} virtio payloads",
            before.virtio.len()
        );
        if before.finished {
            // Kicked after the BSP wrote DONE: nothing left to resume (its vCPUs are parked).
            assert_eq!(before.reports, expected_output());
            continue;
        }
        if mid_run(&before.reports) && counts[1] < expected_output()[1].len() {
            mid_run_seen += 1;
        }
        let after = restore_and_run(&state)
            .unwrap_or_else(|e| panic!("restore after a kick at {delay:?} failed: {e}"));
        assert_resumed(&before, &after, &format!("kicked after {delay:?}"));
        resumed += 1;
    }
    eprintln!("{resumed} kicked snapshots resumed, {mid_run_seen} of them mid-run");
    assert!(mid_run_seen >= 1, "no kick landed mid-run");
}

/// The mid-run state, and the state of a fresh VM that has not run (what a vCPU looks like
/// when a piece of its state is left out of the restore).
fn mid_run_and_fresh_states() -> (Vec<Vec<u32>>, MicrovmState, Vec<VcpuState>) {
    let mut vm = loaded_vm();
    let before = vm.run(StopWhen::Condition(mid_run)).unwrap().reports;
    let state = vm.save_microvm().unwrap();
    let fresh = DemoVm::new().unwrap().save_microvm().unwrap().vcpus;
    (before, state, fresh)
}

/// Restores `state` into a fresh VM with a short hang timeout (for states expected to hang)
/// and runs it to the end.
fn finish_quickly(state: &MicrovmState) -> demo_vmm::Result<Vec<Vec<u32>>> {
    let mut vm = DemoVm::new()?;
    vm.restore_microvm(state)?;
    vm.set_timeout(Duration::from_secs(1));
    vm.run_to_end()
}

#[test]
fn test_smp_control_everything_restored_is_complete() {
    if !kvm_available() {
        return;
    }
    let (before, state, _) = mid_run_and_fresh_states();
    assert_eq!(restore_and_finish(&state).unwrap(), expected_rest(&before));
}

#[test]
fn test_smp_control_ap_mp_state_left_out() {
    if !kvm_available() {
        return;
    }
    let (_, mut state, fresh) = mid_run_and_fresh_states();
    // A fresh AP waits for INIT/SIPI; the saved one is halted waiting for a fixed IPI, which
    // the BSP sends. Without its mp_state AP2 never runs again and the BSP waits for it.
    assert_ne!(state.vcpus[2].mp_state, fresh[2].mp_state);
    state.vcpus[2].mp_state = fresh[2].mp_state.clone();
    let err = finish_quickly(&state).unwrap_err();
    assert!(matches!(err, DemoVmError::Timeout(_)), "{err}");
}

#[test]
fn test_smp_control_ap_lapic_left_out() {
    if !kvm_available() {
        return;
    }
    let (before, state, fresh) = mid_run_and_fresh_states();
    // AP1 (running): without its LAPIC its timer is off, it never gets the three ticks it
    // waits for after its computation, and the BSP waits for it.
    let mut no_ap1_lapic = state.clone();
    no_ap1_lapic.vcpus[1].lapic = fresh[1].lapic.clone();
    let err = finish_quickly(&no_ap1_lapic).unwrap_err();
    assert!(matches!(err, DemoVmError::Timeout(_)), "{err}");
    // AP2 (halted): without its LAPIC it is software-disabled and drops the BSP's IPI.
    let mut no_ap2_lapic = state.clone();
    no_ap2_lapic.vcpus[2].lapic = fresh[2].lapic.clone();
    let err = finish_quickly(&no_ap2_lapic).unwrap_err();
    assert!(matches!(err, DemoVmError::Timeout(_)), "{err}");
    // The untouched state finishes.
    assert_eq!(restore_and_finish(&state).unwrap(), expected_rest(&before));
}

#[test]
fn test_smp_control_swapped_vcpu_states() {
    if !kvm_available() {
        return;
    }
    let (before, state, _) = mid_run_and_fresh_states();
    let mut swapped = state.clone();
    swapped.vcpus.swap(1, 2);
    // Refused before KVM is touched: each state carries its vCPU's APIC id.
    let mut vm = DemoVm::new().unwrap();
    let err = vm.restore_microvm(&swapped).unwrap_err();
    assert!(
        matches!(
            err,
            DemoVmError::State(KvmStateError::ApicId {
                index: 1,
                saved: 2,
                expected: 1
            })
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "the state of vcpu 1 has apic id 2, the target vm gives vcpu 1 apic id 1"
    );
    // The refused restore left the VM untouched: the good state restores into it.
    vm.restore_microvm(&state).unwrap();
    assert_eq!(vm.run_to_end().unwrap(), expected_rest(&before));

    // A VMM without that check (the APIC ids patched to pass it): the result changes.
    for (index, vcpu) in swapped.vcpus.iter_mut().enumerate() {
        vcpu.lapic.regs[0x23] = index as u8;
    }
    let result = finish_quickly(&swapped);
    eprintln!("swapped states past the check: {result:x?}");
    assert!(
        !matches!(result, Ok(ref rest) if *rest == expected_rest(&before)),
        "{result:x?}"
    );
}
