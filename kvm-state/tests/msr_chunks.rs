//! Saving and restoring more MSRs than one `KVM_GET_MSRS`/`KVM_SET_MSRS` call takes (KVM
//! refuses 256 or more entries with E2BIG), on `/dev/kvm`.

#![cfg(target_arch = "x86_64")]

mod common;

use common::kvm_available;
use kvm_ioctls::Kvm;
use kvm_state::{get_msrs, set_msrs, MsrEntry, Msrs, MAX_MSRS_PER_CALL};

/// `IA32_KERNEL_GS_BASE`, `IA32_LSTAR`, `IA32_CSTAR`, `IA32_FMASK`: writable by the host on
/// any vCPU, with no side effect.
const INDICES: [u32; 4] = [0xc000_0102, 0xc000_0082, 0xc000_0083, 0xc000_0084];

#[test]
fn test_msrs_beyond_one_call() {
    if !kvm_available() {
        return;
    }
    let kvm = Kvm::new().unwrap();
    let vm = kvm.create_vm().unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    for n in [255usize, 256, 300, 1000] {
        // The same four MSRs over and over, each entry with its own value: KVM writes them in
        // order, so each MSR ends with the value of its last entry.
        let entries: Vec<MsrEntry> = (0..n)
            .map(|i| MsrEntry {
                index: INDICES[i % INDICES.len()],
                data: 0x1000 * (i as u64 + 1) + n as u64,
            })
            .collect();
        set_msrs(
            &vcpu,
            &Msrs {
                entries: entries.clone(),
            },
        )
        .unwrap_or_else(|e| panic!("set {n} msrs: {e}"));
        let indices: Vec<u32> = entries.iter().map(|e| e.index).collect();
        let read = get_msrs(&vcpu, &indices).unwrap_or_else(|e| panic!("get {n} msrs: {e}"));
        assert_eq!(read.entries.len(), n);
        for (i, entry) in read.entries.iter().enumerate() {
            assert_eq!(entry.index, indices[i]);
            let last = entries
                .iter()
                .rev()
                .find(|e| e.index == entry.index)
                .unwrap();
            assert_eq!(entry.data, last.data, "{n} msrs, entry {i}");
        }
    }
    assert_eq!(MAX_MSRS_PER_CALL, 255);
}
