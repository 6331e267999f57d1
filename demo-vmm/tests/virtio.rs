//! The virtio-mmio device on `/dev/kvm`: the BSP's driver submits requests at once, the device
//! completes one at a time, and a snapshot taken with requests in flight restores into a fresh
//! VM whose device completes them. Controls: the queue's indices reset, or the device's state
//! left out, change the result.

#![cfg(target_arch = "x86_64")]

mod common;

use std::time::Duration;

use common::{joined, kvm_available, loaded_vm, TempDir};
use demo_vmm::guest::{VIRTIO_REQUESTS, VIRTIO_SUBMITTED};
use demo_vmm::{
    expected_output, expected_virtio_output, mid_run, DemoVm, DemoVmError, RunOutput, StopWhen,
};
use kvm_state::{KvmStateError, MicrovmState, CURRENT_APP_VERSION};

/// The driver has read every response: all requests are complete.
fn responses_read(reports: &[Vec<u32>]) -> bool {
    reports[0]
        .iter()
        .position(|&v| v == VIRTIO_SUBMITTED)
        .is_some_and(|i| reports[0].len() > i + VIRTIO_REQUESTS)
}

/// Guest physical address of the driver's available ring index (`guest/guest.S`: VQ_AVAIL + 2).
const AVAIL_IDX: usize = 0x1_1102;

/// Runs a fresh guest until `condition`, saves it through a snapshot file and destroys the VM.
fn run_and_save(condition: fn(&[Vec<u32>]) -> bool) -> (RunOutput, MicrovmState) {
    let dir = TempDir::new("virtio");
    let mut vm = loaded_vm();
    let before = vm.run(StopWhen::Condition(condition)).unwrap();
    let path = dir.path().join("virtio.snap");
    vm.save_microvm()
        .unwrap()
        .save_to_file(&path, CURRENT_APP_VERSION)
        .unwrap();
    drop(vm);
    (before, MicrovmState::load_file(&path).unwrap().0)
}

/// Restores into a fresh VM and runs to the end.
fn restore_and_run(state: &MicrovmState) -> demo_vmm::Result<RunOutput> {
    restore_and_run_with_timeout(state, demo_vmm::DEFAULT_TIMEOUT)
}

/// Restores into a fresh VM and runs to the end; fails when nothing happens for `timeout`.
fn restore_and_run_with_timeout(
    state: &MicrovmState,
    timeout: Duration,
) -> demo_vmm::Result<RunOutput> {
    let mut vm = DemoVm::new()?;
    vm.restore_microvm(state)?;
    vm.set_timeout(timeout);
    vm.run(StopWhen::Done)
}

#[test]
fn test_virtio_uninterrupted_run_transmits_every_payload() {
    if !kvm_available() {
        return;
    }
    let out = loaded_vm().run(StopWhen::Done).unwrap();
    assert_eq!(out.reports, expected_output());
    assert_eq!(out.virtio, expected_virtio_output());
}

#[test]
fn test_virtio_requests_in_flight_at_snapshot_complete_after_restore() {
    if !kvm_available() {
        return;
    }
    // The device completes one request per 300 us and the snapshot is taken right after the
    // driver submits; only a host that deschedules the BSP's thread that long can let the
    // device finish first, so up to five tries to see requests in flight.
    let mut seen = false;
    for _ in 0..5 {
        let (before, state) = run_and_save(mid_run);
        let [device] = state.devices.virtio_mmio.as_slice() else {
            panic!(
                "expected one virtio device: {:?}",
                state.devices.virtio_mmio
            );
        };
        let [queue] = device.queues.as_slice() else {
            panic!("expected one queue: {:?}", device.queues);
        };
        assert!(queue.ready);
        assert_eq!(device.device_status, 0xf);
        // The driver made all requests available; the device had consumed fewer.
        let memory = &state.memory[0].contents;
        let avail_idx = u16::from_le_bytes([memory[AVAIL_IDX], memory[AVAIL_IDX + 1]]);
        assert_eq!(usize::from(avail_idx), VIRTIO_REQUESTS);
        let in_flight = avail_idx - queue.next_avail;
        eprintln!(
            "at the snapshot: next_avail {}, next_used {}, {in_flight} request(s) in flight, {} transmitted",
            queue.next_avail,
            queue.next_used,
            before.virtio.len()
        );
        assert_eq!(usize::from(queue.next_used), before.virtio.len());

        let after = restore_and_run(&state).unwrap();
        assert!(after.finished);
        assert_eq!(joined(&before.reports, &after.reports), expected_output());
        let transmitted: Vec<u32> = before.virtio.iter().chain(&after.virtio).copied().collect();
        assert_eq!(transmitted, expected_virtio_output());
        if in_flight >= 1 {
            seen = true;
            break;
        }
    }
    assert!(seen, "no snapshot had virtio requests in flight");
}

#[test]
fn test_virtio_control_queue_indices_reset() {
    if !kvm_available() {
        return;
    }
    // After every request is complete: the device has consumed and used all of them.
    let (before, state) = run_and_save(responses_read);
    assert_eq!(before.virtio, expected_virtio_output());
    let queue = &state.devices.virtio_mmio[0].queues[0];
    assert_eq!(usize::from(queue.next_avail), VIRTIO_REQUESTS);
    assert_eq!(restore_and_run(&state).unwrap().virtio, Vec::<u32>::new());

    // The indices reset: the restored device takes the completed requests for new ones and
    // transmits every payload a second time.
    let mut reset = state.clone();
    reset.devices.virtio_mmio[0].queues[0].next_avail = 0;
    reset.devices.virtio_mmio[0].queues[0].next_used = 0;
    let after = restore_and_run(&reset).unwrap();
    assert_eq!(after.virtio, expected_virtio_output());
    let transmitted: Vec<u32> = before.virtio.iter().chain(&after.virtio).copied().collect();
    assert_ne!(transmitted, expected_virtio_output());
}

#[test]
fn test_virtio_control_device_state_left_out() {
    if !kvm_available() {
        return;
    }
    let (_, state) = run_and_save(mid_run);
    // Without its state: refused before anything is written (the demo VM has the device).
    let mut without = state.clone();
    without.devices.virtio_mmio.clear();
    let err = DemoVm::new()
        .unwrap()
        .restore_microvm(&without)
        .unwrap_err();
    assert!(
        matches!(
            err,
            DemoVmError::State(KvmStateError::DeviceCount {
                kind: "virtio-mmio",
                saved: 0,
                target: 1
            })
        ),
        "{err}"
    );
    // With the state of a reset device instead (no DRIVER_OK, no queue), as a VMM that did
    // not save it would have: the requests in flight are never completed and the driver
    // waits for them.
    let mut reset = state.clone();
    reset.devices.virtio_mmio = vec![DemoVm::new().unwrap().virtio_state()];
    let err = restore_and_run_with_timeout(&reset, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, DemoVmError::Timeout(_)), "{err}");
    // A queue the device model refuses is refused before KVM is touched.
    let mut bad = state;
    bad.devices.virtio_mmio[0].queues[0].size = 3;
    let mut vm = DemoVm::new().unwrap();
    let err = vm.restore_microvm(&bad).unwrap_err();
    assert!(
        matches!(err, DemoVmError::VirtioQueue { queue: 0, .. }),
        "{err}"
    );
    assert_eq!(err.to_string(), "virtio queue 0: invalid state");
}
