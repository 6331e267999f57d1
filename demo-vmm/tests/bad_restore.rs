//! Restoring, on `/dev/kvm`, a state that does not fit the target: another vCPU count, an MSR
//! the host refuses, CPUID feature flags the host does not offer, a CPUID that KVM itself
//! refuses, and xsave areas of other sizes. Each returns an error that names the problem.
//! States refused by the checks that run before anything is written leave the target VM
//! usable: the tests then restore the good state into that same VM and run the guest to the
//! end. States refused by KVM half-way leave the VM partly restored (documented in
//! `docs/SECURITY.md`: discard it).

#![cfg(target_arch = "x86_64")]

mod common;

use common::{expected_rest, kvm_available, loaded_vm};
use demo_vmm::{DemoVm, DemoVmError, StopWhen};
use kvm_state::{KvmStateError, MicrovmState, MsrEntry, LEGACY_XSAVE_SIZE};

/// Reports the guest makes before the snapshot (the vCPUs together).
const REPORTS: usize = 2;

/// Runs the demo guest until it has made [`REPORTS`] reports and saves its state; returns
/// the reports and the state.
fn saved_state() -> (Vec<Vec<u32>>, MicrovmState) {
    let mut vm = loaded_vm();
    let before = vm.run(StopWhen::Reports(REPORTS)).unwrap().reports;
    (before, vm.save_microvm().unwrap())
}

/// The vCPU index and the cause of a restore error about one vCPU
/// ([`KvmStateError::Vcpu`]).
fn vcpu_error(err: &DemoVmError) -> (usize, &KvmStateError) {
    match err {
        DemoVmError::State(KvmStateError::Vcpu { index, source }) => (*index, source),
        other => panic!("expected a vcpu error, got {other}"),
    }
}

/// Restores the good `state` into `vm` (which an earlier restore refused before touching it)
/// and checks that the guest finishes as an uninterrupted run does.
fn assert_vm_still_usable(mut vm: DemoVm, (before, state): &(Vec<Vec<u32>>, MicrovmState)) {
    vm.restore_microvm(state).unwrap();
    let rest = vm.run_to_end().unwrap();
    assert_eq!(rest, expected_rest(before));
}

#[test]
fn test_bad_restore_serial_count_mismatch() {
    if !kvm_available() {
        return;
    }
    let saved = saved_state();
    let state = &saved.1;
    let mut vm = DemoVm::new().unwrap();
    let mut other = state.clone();
    other.devices.serial = vec![state.devices.serial[0].clone(); 2];
    let err = vm.restore_microvm(&other).unwrap_err();
    assert!(
        matches!(
            err,
            DemoVmError::State(KvmStateError::DeviceCount {
                kind: "serial",
                saved: 2,
                target: 1
            })
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "the state has 2 serial device(s), the target vm has 1"
    );
    // A second virtio-mmio device, or none.
    for count in [0, 2] {
        let mut other = state.clone();
        other.devices.virtio_mmio = vec![state.devices.virtio_mmio[0].clone(); count];
        let err = vm.restore_microvm(&other).unwrap_err();
        assert!(
            matches!(
                err,
                DemoVmError::State(KvmStateError::DeviceCount {
                    kind: "virtio-mmio",
                    saved,
                    target: 1
                }) if saved == count
            ),
            "{err}"
        );
    }
    // Two memory regions where the demo VM has one.
    let mut other = state.clone();
    other.memory.push(kvm_state::MemoryRegionState {
        guest_phys_addr: 0x1000_0000,
        size: 0x1000,
        contents: Vec::new(),
    });
    let err = vm.restore_microvm(&other).unwrap_err();
    assert!(
        matches!(
            err,
            DemoVmError::State(KvmStateError::BadLength {
                what: "memory regions",
                found: 2,
                expected: 1
            })
        ),
        "{err}"
    );
    // More pending input than the UART's FIFO holds: vm_superio would refuse it half-way.
    let mut other = state.clone();
    other.devices.serial[0].in_buffer = vec![b'x'; 65];
    let err = vm.restore_microvm(&other).unwrap_err();
    assert!(
        matches!(
            err,
            DemoVmError::SerialInput {
                found: 65,
                capacity: 64
            }
        ),
        "{err}"
    );
    assert_vm_still_usable(vm, &saved);
}

#[test]
fn test_bad_restore_vcpu_count_mismatch() {
    if !kvm_available() {
        return;
    }
    let saved = saved_state();
    let state = &saved.1;
    let mut vm = DemoVm::new().unwrap();
    for count in [0, 1, 2, 4] {
        let mut other = state.clone();
        // vCPUs 0, 1, 2 and a fourth with APIC id 3: distinct ids, only the count is wrong.
        other.vcpus.truncate(count);
        if count == 4 {
            let mut fourth = state.vcpus[0].clone();
            fourth.lapic.regs[0x23] = 3;
            other.vcpus.push(fourth);
        }
        let err = vm.restore_microvm(&other).unwrap_err();
        assert!(
            matches!(
                err,
                DemoVmError::State(KvmStateError::VcpuCount { saved, target: 3 }) if saved == count
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!("the state has {count} vcpus, the target vm has 3")
        );
    }
    // The same vCPU state twice: refused by its APIC id.
    let mut other = state.clone();
    other.vcpus[2] = state.vcpus[1].clone();
    let err = vm.restore_microvm(&other).unwrap_err();
    assert!(
        matches!(
            err,
            DemoVmError::State(KvmStateError::ApicIdDuplicate {
                first: 1,
                index: 2,
                apic_id: 1
            })
        ),
        "{err}"
    );
    assert_vm_still_usable(vm, &saved);
}

#[test]
fn test_bad_restore_msr_the_host_refuses() {
    if !kvm_available() {
        return;
    }
    let (_, mut state) = saved_state();
    // Not an MSR on any x86 CPU; KVM_SET_MSRS stops there.
    const BOGUS: u32 = 0x1234_5678;
    state.vcpus[0].msrs.entries.push(MsrEntry {
        index: BOGUS,
        data: 1,
    });
    let requested = state.vcpus[0].msrs.entries.len();
    let mut vm = DemoVm::new().unwrap();
    let err = vm.restore_microvm(&state).unwrap_err();
    let (vcpu, cause) = vcpu_error(&err);
    assert!(
        vcpu == 0
            && matches!(
                cause,
                KvmStateError::MsrWrite { index: BOGUS, written, requested: r }
                    if *r == requested && *written < requested
            ),
        "{err}: {cause}"
    );
    assert!(cause.to_string().contains("0x12345678"), "{cause}");
    // The vCPU is partly restored (CPUID, registers, LAPIC, the MSRs before the refused
    // one): the VM must be discarded, as docs/SECURITY.md says.
}

/// The host's offered CPUID, as `DemoVm::restore_microvm` reads it.
fn offered_cpuid() -> Vec<kvm_bindings::kvm_cpuid_entry2> {
    let vm = DemoVm::new().unwrap();
    vm.vcpus()[0]
        .get_cpuid2(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .unwrap()
        .as_slice()
        .to_vec()
}

#[test]
fn test_bad_restore_cpuid_feature_the_host_does_not_offer() {
    if !kvm_available() {
        return;
    }
    let saved = saved_state();
    let state = &saved.1;
    let offered = offered_cpuid();
    // KVM_SET_CPUID2 takes feature flags the host cannot provide: on this kind of host it
    // either keeps them (the guest faults on the instruction later) or clears them (the CPU
    // changes under the running guest). `check_cpuid` refuses them first.
    let leaf7 = offered
        .iter()
        .find(|e| e.function == 7 && e.index == 0)
        .expect("leaf 7 is offered");
    let missing = !leaf7.ebx;
    assert_ne!(missing, 0, "this host offers every leaf 7 EBX feature");
    let bit = 1 << missing.trailing_zeros();
    let mut bad = state.clone();
    let entry = bad.vcpus[0]
        .cpuid
        .entries
        .iter_mut()
        .find(|e| e.function == 7 && e.index == 0)
        .expect("the saved CPUID has leaf 7");
    entry.ebx |= bit;

    // What KVM alone does with it (printed: it depends on the kernel).
    let mut entries: Vec<kvm_bindings::kvm_cpuid_entry2> =
        bad.vcpus[0].cpuid.entries.iter().map(Into::into).collect();
    entries.truncate(kvm_bindings::KVM_MAX_CPUID_ENTRIES);
    let scratch = DemoVm::new().unwrap();
    let kvm_alone =
        scratch.vcpus()[0].set_cpuid2(&kvm_bindings::CpuId::from_entries(&entries).unwrap());
    eprintln!("KVM_SET_CPUID2 with leaf 7 EBX bit {bit:#x} not offered: {kvm_alone:?}");

    let mut vm = DemoVm::new().unwrap();
    let err = vm.restore_microvm(&bad).unwrap_err();
    let (vcpu, cause) = vcpu_error(&err);
    assert!(
        vcpu == 0
            && matches!(
                cause,
                KvmStateError::CpuidNotOffered {
                    function: 7,
                    index: 0,
                    register: "ebx",
                    bits
                } if *bits == bit
            ),
        "{err}: {cause}"
    );
    assert!(
        cause.to_string().contains("cpuid leaf 0x7 index 0 ebx"),
        "{cause}"
    );

    // A leaf the host does not have at all, with feature bits set: refused too.
    let mut absent = state.clone();
    absent.vcpus[0]
        .cpuid
        .entries
        .retain(|e| e.function != 0x8000_0001);
    absent.vcpus[0].cpuid.entries.push(kvm_state::CpuidEntry {
        function: 0x8000_0001,
        ecx: u32::MAX,
        edx: u32::MAX,
        ..Default::default()
    });
    let err = vm.restore_microvm(&absent).unwrap_err();
    let (vcpu, cause) = vcpu_error(&err);
    assert!(
        vcpu == 0
            && matches!(
                cause,
                KvmStateError::CpuidNotOffered {
                    function: 0x8000_0001,
                    ..
                }
            ),
        "{err}: {cause}"
    );
    assert_vm_still_usable(vm, &saved);
}

#[test]
fn test_bad_restore_cpuid_kvm_refuses() {
    if !kvm_available() {
        return;
    }
    // KVM_SET_CPUID2 itself refuses a linear address width other than 48 or 57 bits (leaf
    // 0x8000_0008 EAX[15:8]) with EINVAL.
    let (_, mut state) = saved_state();
    let entry = state.vcpus[0]
        .cpuid
        .entries
        .iter_mut()
        .find(|e| e.function == 0x8000_0008)
        .expect("the saved CPUID has leaf 0x8000_0008");
    entry.eax = (entry.eax & !0xff00) | (52 << 8);
    let mut vm = DemoVm::new().unwrap();
    let err = vm.restore_microvm(&state).unwrap_err();
    match vcpu_error(&err) {
        (
            0,
            KvmStateError::Ioctl {
                ioctl: "KVM_SET_CPUID2",
                source,
            },
        ) => assert_eq!(source.errno(), libc::EINVAL),
        (vcpu, other) => panic!("vcpu {vcpu}: {other}"),
    }
    assert_eq!(err.to_string(), "vcpu 0");
    assert_eq!(
        vcpu_error(&err).1.to_string(),
        "ioctl KVM_SET_CPUID2 failed"
    );
    // Memory and the VM-wide state are already written: discard the VM.
}

#[test]
fn test_bad_restore_xsave_of_another_size() {
    if !kvm_available() {
        return;
    }
    let good = saved_state();
    let state = &good.1;
    let mut vm = DemoVm::new().unwrap();

    // A legacy region that is not 4096 bytes.
    let mut short = state.clone();
    short.vcpus[0].xsave.region.truncate(512);
    let err = vm.restore_microvm(&short).unwrap_err();
    let (vcpu, cause) = vcpu_error(&err);
    assert!(
        vcpu == 0
            && matches!(
                cause,
                KvmStateError::BadLength {
                    what: "xsave region",
                    found: 512,
                    expected: 1024
                }
            ),
        "{err}: {cause}"
    );
    assert_eq!(
        cause.to_string(),
        "xsave region has 512 elements, expected 1024"
    );

    // An area larger than this host's (KVM_CAP_XSAVE2) with state in the extra part, as a
    // host with AMX tiles would save.
    let host = kvm_state::xsave_size(vm.vm())
        .unwrap()
        .unwrap_or(LEGACY_XSAVE_SIZE);
    let extra_words = (host - LEGACY_XSAVE_SIZE) / 4 + 64;
    let mut large = state.clone();
    large.vcpus[0].xsave.extra = vec![0x5a5a_5a5a; extra_words];
    let err = vm.restore_microvm(&large).unwrap_err();
    let saved = LEGACY_XSAVE_SIZE + extra_words * 4;
    let (vcpu, cause) = vcpu_error(&err);
    assert!(
        vcpu == 0
            && matches!(cause, KvmStateError::XsaveTooLarge { saved: s, host: h } if *s == saved && *h == host),
        "{err}: {cause}"
    );
    assert_eq!(
        cause.to_string(),
        format!("saved xsave area has {saved} bytes of state, this host accepts {host} bytes")
    );

    // A larger area whose extra part is all zero (the components' init state) fits.
    let mut zeros = state.clone();
    zeros.vcpus[0].xsave.extra = vec![0; extra_words];
    assert_vm_still_usable(vm, &(good.0.clone(), zeros));
}
