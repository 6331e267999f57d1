//! The CPUID check on `/dev/kvm`: feature leaves are matched the way KVM serves them (an
//! entry without `KVM_CPUID_FLAG_SIGNIFCANT_INDEX` answers every index), tables where two
//! entries answer one query are refused, and `restore_vcpu` runs the check itself, before it
//! writes anything.

#![cfg(target_arch = "x86_64")]

mod common;

use common::kvm_available;
use kvm_bindings::{KVM_CPUID_FLAG_SIGNIFCANT_INDEX, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use kvm_state::{
    check_vcpu, restore_vcpu, savable_msr_indices, save_vcpu, CpuidEntry, HostSupport,
    KvmStateError, VcpuState,
};

/// A VM with an in-kernel irqchip and vCPU 0 given the CPUID KVM supports.
fn vm_with_vcpu(kvm: &Kvm) -> (VmFd, VcpuFd) {
    let vm = kvm.create_vm().unwrap();
    vm.create_irq_chip().unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    vcpu.set_cpuid2(&kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap())
        .unwrap();
    (vm, vcpu)
}

/// The state of a vCPU that never ran, and a fresh target with what its host offers.
fn saved_state(kvm: &Kvm) -> VcpuState {
    let (vm, vcpu) = vm_with_vcpu(kvm);
    save_vcpu(&vm, &vcpu, &savable_msr_indices(kvm).unwrap()).unwrap()
}

/// `state` with the entries of leaf `function` replaced by one at `index`, without the
/// significant-index flag, with every bit set: KVM serves it for every index of the leaf.
fn every_bit_at_index(state: &VcpuState, function: u32, index: u32) -> VcpuState {
    let mut bad = state.clone();
    bad.cpuid.entries.retain(|e| e.function != function);
    bad.cpuid.entries.push(CpuidEntry {
        function,
        index,
        flags: 0,
        eax: u32::MAX,
        ebx: u32::MAX,
        ecx: u32::MAX,
        edx: u32::MAX,
    });
    bad
}

#[test]
fn test_cpuid_feature_leaf_at_another_index_is_checked() {
    if !kvm_available() {
        return;
    }
    let kvm = Kvm::new().unwrap();
    let state = saved_state(&kvm);
    for function in [0x8000_0001, 0x1, 0x4000_0001] {
        let bad = every_bit_at_index(&state, function, 5);
        let (vm, vcpu) = vm_with_vcpu(&kvm);
        let host = HostSupport::query(&kvm, &vm).unwrap();
        let err = restore_vcpu(&vcpu, &bad, &host).unwrap_err();
        assert!(
            matches!(err, KvmStateError::CpuidNotOffered { function: f, index: 0, .. } if f == function),
            "leaf {function:#x}: {err:?}"
        );
        assert!(check_vcpu(&bad, &host).is_err());
        // Refused before any write: the same vCPU takes the good state.
        restore_vcpu(&vcpu, &state, &host).unwrap();
        let back = save_vcpu(&vm, &vcpu, &[]).unwrap();
        assert_eq!(back.cpuid, state.cpuid);
    }
}

#[test]
fn test_cpuid_entries_kvm_would_serve_for_one_query_are_refused() {
    if !kvm_available() {
        return;
    }
    let kvm = Kvm::new().unwrap();
    let state = saved_state(&kvm);
    let (vm, vcpu) = vm_with_vcpu(&kvm);
    let host = HostSupport::query(&kvm, &vm).unwrap();
    let leaf = |function, index, flags| CpuidEntry {
        function,
        index,
        flags,
        ..Default::default()
    };
    // Leaf 7 twice at index 0, both with the flag; leaf 0x8000_0001 twice, at different
    // indices but without the flag; leaf 7 at index 3 without the flag next to the flagged
    // index-0 entry.
    for extra in [
        leaf(7, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX),
        leaf(0x8000_0001, 9, 0),
        leaf(7, 3, 0),
    ] {
        let mut bad = state.clone();
        bad.cpuid.entries.push(extra.clone());
        let err = restore_vcpu(&vcpu, &bad, &host).unwrap_err();
        assert!(
            matches!(err, KvmStateError::CpuidDuplicate { function, index }
                if function == extra.function && index == extra.index),
            "{extra:?}: {err:?}"
        );
    }
    // Sub-leaves at distinct indices, each with the flag, are not duplicates.
    let mut fine = state.clone();
    fine.cpuid
        .entries
        .push(leaf(7, 7, KVM_CPUID_FLAG_SIGNIFCANT_INDEX));
    restore_vcpu(&vcpu, &fine, &host).unwrap();
}
