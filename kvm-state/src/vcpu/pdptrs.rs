//! The PAE page-directory-pointer-table entries of a vCPU (`KVM_{GET,SET}_SREGS2`), with
//! their save and restore steps.
//!
//! `KVM_GET_SREGS2` (Linux 5.14, `KVM_CAP_SREGS2`) returns the segment and control registers
//! of `KVM_GET_SREGS` without the interrupt bitmap, plus the PDPTRs a PAE guest's CPU loaded at
//! its last CR3 write. They are kept in [`Sregs::pdptrs`](super::Sregs::pdptrs); everything
//! else `KVM_GET_SREGS` already saved.

use kvm_bindings::{kvm_sregs2, KVMIO, KVM_CAP_SREGS2, KVM_SREGS2_FLAGS_PDPTRS_VALID};
use kvm_ioctls::{VcpuFd, VmFd};
use vmm_sys_util::errno;
use vmm_sys_util::ioctl::{ioctl_with_mut_ref, ioctl_with_ref};

use super::Sregs;
use crate::error::{KvmStateError, Result};

vmm_sys_util::ioctl_ior_nr!(KVM_GET_SREGS2, KVMIO, 0xcc, kvm_sregs2);
vmm_sys_util::ioctl_iow_nr!(KVM_SET_SREGS2, KVMIO, 0xcd, kvm_sregs2);

/// Save step: the PDPTRs, when the host's KVM has `KVM_CAP_SREGS2` and the vCPU is in PAE
/// paging mode (the kernel sets `KVM_SREGS2_FLAGS_PDPTRS_VALID`); `None` otherwise.
pub(super) fn save_pdptrs(vm: &VmFd, vcpu: &VcpuFd) -> Result<Option<[u64; 4]>> {
    if vm.check_extension_raw(KVM_CAP_SREGS2.into()) <= 0 {
        return Ok(None);
    }
    let mut sregs2 = kvm_sregs2::default();
    // SAFETY: `vcpu` is an open vCPU fd and `sregs2` a `kvm_sregs2`, the exact structure
    // KVM_GET_SREGS2 writes (its size is encoded in the ioctl number); the kernel writes only
    // inside it.
    let ret = unsafe { ioctl_with_mut_ref(vcpu, KVM_GET_SREGS2(), &mut sregs2) };
    if ret < 0 {
        return Err(KvmStateError::Ioctl {
            ioctl: "KVM_GET_SREGS2",
            source: errno::Error::last(),
        });
    }
    Ok((sregs2.flags & u64::from(KVM_SREGS2_FLAGS_PDPTRS_VALID) != 0).then_some(sregs2.pdptrs))
}

/// Restore step, right after `KVM_SET_SREGS` (which loaded the PDPTRs from guest memory and
/// queued the interrupt bitmap's interrupt): `KVM_SET_SREGS2` with the same registers and the
/// saved PDPTRs, which replace the reloaded ones.
///
/// # Errors
///
/// [`KvmStateError::Ioctl`] naming `KVM_SET_SREGS2` when the host's KVM lacks it (no
/// `KVM_CAP_SREGS2`) or refuses the registers: the state needs PDPTRs this host cannot set.
pub(super) fn restore_pdptrs(vcpu: &VcpuFd, sregs: &Sregs, pdptrs: [u64; 4]) -> Result<()> {
    let sregs2 = kvm_sregs2 {
        cs: (&sregs.cs).into(),
        ds: (&sregs.ds).into(),
        es: (&sregs.es).into(),
        fs: (&sregs.fs).into(),
        gs: (&sregs.gs).into(),
        ss: (&sregs.ss).into(),
        tr: (&sregs.tr).into(),
        ldt: (&sregs.ldt).into(),
        gdt: (&sregs.gdt).into(),
        idt: (&sregs.idt).into(),
        cr0: sregs.cr0,
        cr2: sregs.cr2,
        cr3: sregs.cr3,
        cr4: sregs.cr4,
        cr8: sregs.cr8,
        efer: sregs.efer,
        apic_base: sregs.apic_base,
        flags: u64::from(KVM_SREGS2_FLAGS_PDPTRS_VALID),
        pdptrs,
    };
    // SAFETY: `vcpu` is an open vCPU fd and `sregs2` a `kvm_sregs2`, the exact structure
    // KVM_SET_SREGS2 reads (its size is encoded in the ioctl number); the kernel only reads it.
    let ret = unsafe { ioctl_with_ref(vcpu, KVM_SET_SREGS2(), &sregs2) };
    if ret < 0 {
        return Err(KvmStateError::Ioctl {
            ioctl: "KVM_SET_SREGS2",
            source: errno::Error::last(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_sregs2_ioctl_numbers() {
        // _IOR/_IOW(KVMIO, 0xcc/0xcd, struct kvm_sregs2), from <linux/kvm.h>.
        assert_eq!(KVM_GET_SREGS2(), 0x8140_aecc);
        assert_eq!(KVM_SET_SREGS2(), 0x4140_aecd);
    }
}
