//! App version 4's `VcpuState::nested_state` on `/dev/kvm`: saved exactly when the host's KVM
//! has `KVM_CAP_NESTED_STATE`, the kernel's blob (header included) written back by a restore
//! into a fresh vCPU, and refused before any write when its shape is wrong.

#![cfg(target_arch = "x86_64")]

mod common;

use common::kvm_available;
use kvm_bindings::{KVM_CAP_NESTED_STATE, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use kvm_state::{restore_vcpu, save_vcpu, HostSupport, KvmStateError};

fn create_vm(kvm: &Kvm) -> (VmFd, VcpuFd) {
    let vm = kvm.create_vm().unwrap();
    vm.create_irq_chip().unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    let cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
    vcpu.set_cpuid2(&cpuid).unwrap();
    (vm, vcpu)
}

#[test]
fn test_nested_state_saved_with_the_capability_and_restored() {
    if !kvm_available() {
        return;
    }
    let kvm = Kvm::new().unwrap();
    let (vm, vcpu) = create_vm(&kvm);
    let saved = save_vcpu(&vm, &vcpu, &[]).unwrap();
    let has_cap = vm.check_extension_raw(KVM_CAP_NESTED_STATE.into()) > 0;
    eprintln!("KVM_CAP_NESTED_STATE: {has_cap}");
    match &saved.nested_state {
        None => assert!(!has_cap, "the host has nested state but none was saved"),
        Some(blob) => {
            assert!(has_cap);
            assert!(blob.len() >= 128, "{} bytes", blob.len());
            let size = u32::from_le_bytes(blob[4..8].try_into().unwrap()) as usize;
            assert_eq!(size, blob.len());
        }
    }

    let (target_vm, target) = create_vm(&kvm);
    let host = HostSupport::query(&kvm, &target_vm).unwrap();
    restore_vcpu(&target, &saved, &host).unwrap();
    let again = save_vcpu(&target_vm, &target, &[]).unwrap();
    assert_eq!(again.nested_state, saved.nested_state);

    // A blob whose header disagrees with its length is refused before any write.
    let mut bad = saved.clone();
    let mut blob = vec![0u8; 128];
    blob[4..8].copy_from_slice(&4096u32.to_le_bytes());
    bad.nested_state = Some(blob);
    let (_fresh_vm, fresh) = create_vm(&kvm);
    let before = fresh.get_regs().unwrap();
    assert!(matches!(
        restore_vcpu(&fresh, &bad, &host),
        Err(KvmStateError::BadLength {
            what: "nested state size field",
            found: 4096,
            expected: 128
        })
    ));
    assert_eq!(fresh.get_regs().unwrap(), before, "nothing was written");
}
