//! App version 5's `Sregs::pdptrs` on `/dev/kvm`: a PAE guest's CPU-held PDPTRs survive a save
//! and restore even when the guest rewrote its PDPT in memory after loading CR3; a state
//! without them (as app version 4 decodes it) gets the PDPTRs reloaded from memory, a
//! different address space: the reason the field exists.

#![cfg(target_arch = "x86_64")]

mod common;

use common::kvm_available;
use kvm_bindings::{kvm_userspace_memory_region, KVM_CAP_SREGS2, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use kvm_state::{restore_vcpu, save_vcpu, HostSupport, VcpuState};
use versionize::prelude::*;

const MEM_SIZE: usize = 0x10000;
/// Where CR3 points: the PAE page-directory-pointer table.
const PDPT: usize = 0x1000;
/// The PDPT entry the vCPU loaded (a page directory at 0x2000, present).
const LOADED: u64 = 0x2001;
/// What the guest wrote afterwards without reloading CR3 (a page directory at 0x3000).
const REWRITTEN: u64 = 0x3001;

struct GuestMemory(*mut u8);

impl GuestMemory {
    fn new() -> Self {
        // SAFETY: a fresh anonymous private mapping; the result is checked before use.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MEM_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        GuestMemory(addr.cast())
    }

    fn set_pdpte0(&self, value: u64) {
        // SAFETY: `PDPT + 8 <= MEM_SIZE`, inside the mapping; no vCPU runs.
        unsafe { std::ptr::copy_nonoverlapping(value.to_le_bytes().as_ptr(), self.0.add(PDPT), 8) };
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; its VM was dropped before.
        unsafe { libc::munmap(self.0.cast(), MEM_SIZE) };
    }
}

fn create_vm(kvm: &Kvm, memory: &GuestMemory) -> (VmFd, VcpuFd) {
    let vm = kvm.create_vm().unwrap();
    vm.create_irq_chip().unwrap();
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: MEM_SIZE as u64,
        userspace_addr: memory.0 as u64,
    };
    // SAFETY: the region is the live mapping of `memory`, which outlives the VM (declared
    // before it by the caller).
    unsafe { vm.set_user_memory_region(region) }.unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    let cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
    vcpu.set_cpuid2(&cpuid).unwrap();
    (vm, vcpu)
}

/// Puts the vCPU in 32-bit protected mode with PAE paging, CR3 at [`PDPT`]: KVM loads the
/// PDPTRs from memory now (on a host that supports 32-bit paging).
fn enter_pae(vcpu: &VcpuFd) {
    let mut sregs = vcpu.get_sregs().unwrap();
    for segment in [
        &mut sregs.cs,
        &mut sregs.ds,
        &mut sregs.es,
        &mut sregs.fs,
        &mut sregs.gs,
        &mut sregs.ss,
    ] {
        segment.base = 0;
        segment.limit = 0xffff_ffff;
        segment.g = 1;
        segment.db = 1;
        segment.present = 1;
        segment.s = 1;
    }
    sregs.cs.type_ = 0xb;
    sregs.cs.selector = 0x8;
    sregs.cr3 = PDPT as u64;
    sregs.cr4 |= 0x20; // PAE
    sregs.cr0 |= 0x8000_0001; // PG, PE
    sregs.efer = 0;
    vcpu.set_sregs(&sregs).unwrap();
}

#[test]
fn test_pae_pdptrs_survive_restore() {
    if !kvm_available() {
        return;
    }
    let kvm = Kvm::new().unwrap();
    if kvm.check_extension_raw(KVM_CAP_SREGS2.into()) <= 0 {
        eprintln!("this host's KVM has no KVM_CAP_SREGS2: the PDPTRs are not saved (None)");
        return;
    }
    let source_memory = GuestMemory::new();
    let (source_vm, source) = create_vm(&kvm, &source_memory);
    source_memory.set_pdpte0(LOADED);
    enter_pae(&source);
    source_memory.set_pdpte0(REWRITTEN);
    let saved = save_vcpu(&source_vm, &source, &[]).unwrap();
    if saved.sregs.cr0 & 0x8000_0000 == 0 {
        // Measured on a PVM host: KVM_SET_SREGS drops CR0.PG outside long mode, so no vCPU
        // there is ever in PAE paging mode and the PDPTRs are `None`.
        eprintln!("this host's KVM keeps no vCPU in 32-bit paging mode: skipping");
        assert_eq!(saved.sregs.pdptrs, None);
        return;
    }
    let pdptrs = saved.sregs.pdptrs.expect("a PAE vCPU has valid PDPTRs");
    assert_eq!(pdptrs[0], LOADED);

    // Through a snapshot's bytes at app version 5 and at app version 4.
    let map = kvm_state::version_map();
    let through = |app_version: u16| {
        let mut bytes = Vec::new();
        saved.serialize(&mut bytes, &map, app_version).unwrap();
        VcpuState::deserialize(&mut bytes.as_slice(), &map, app_version).unwrap()
    };
    let at_5 = through(5);
    let at_4 = through(4);
    assert_eq!(at_5, saved);
    assert_eq!(at_4.sregs.pdptrs, None);

    let restored_pdpte0 = |state: &VcpuState| {
        let memory = GuestMemory::new();
        memory.set_pdpte0(REWRITTEN);
        let (vm, vcpu) = create_vm(&kvm, &memory);
        let host = HostSupport::query(&kvm, &vm).unwrap();
        restore_vcpu(&vcpu, state, &host).unwrap();
        save_vcpu(&vm, &vcpu, &[]).unwrap().sregs.pdptrs.unwrap()[0]
    };
    assert_eq!(restored_pdpte0(&at_5), LOADED, "the CPU-held PDPTR is kept");
    // The control: without the field, KVM_SET_SREGS reloads the rewritten entry.
    assert_eq!(restored_pdpte0(&at_4), REWRITTEN);
}

/// PDPTRs saved for a vCPU that is not in PAE paging mode (a forged or corrupted state) are
/// refused by KVM's `KVM_SET_SREGS2` with a named ioctl error, never dropped in silence: the
/// restore path reaches the kernel on every host with `KVM_CAP_SREGS2`.
#[test]
fn test_pdptrs_outside_pae_mode_refused_by_name() {
    if !kvm_available() {
        return;
    }
    let kvm = Kvm::new().unwrap();
    if kvm.check_extension_raw(KVM_CAP_SREGS2.into()) <= 0 {
        eprintln!("this host's KVM has no KVM_CAP_SREGS2: skipping");
        return;
    }
    let memory = GuestMemory::new();
    let (vm, vcpu) = create_vm(&kvm, &memory);
    let mut state = save_vcpu(&vm, &vcpu, &[]).unwrap();
    assert_eq!(
        state.sregs.pdptrs, None,
        "a vCPU at reset is not in PAE paging mode"
    );
    state.sregs.pdptrs = Some([LOADED, 0, 0, 0]);
    let target_memory = GuestMemory::new();
    let (target_vm, target) = create_vm(&kvm, &target_memory);
    let host = HostSupport::query(&kvm, &target_vm).unwrap();
    let error = restore_vcpu(&target, &state, &host).unwrap_err();
    // EINVAL: the kernel knows the ioctl (a wrong number would be ENOTTY) and refuses the
    // PDPTRs for this mode.
    assert!(
        matches!(
            &error,
            kvm_state::KvmStateError::Ioctl {
                ioctl: "KVM_SET_SREGS2",
                source,
            } if source.errno() == libc::EINVAL
        ),
        "{error}"
    );
}
