//! What this host's KVM offers a vCPU: the facts a restore checks a saved state against.

use kvm_bindings::{kvm_cpuid_entry2, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VmFd};

use crate::error::{KvmStateError, Result};
use crate::vcpu::xsave_size;

/// What the target host's KVM offers a vCPU: the CPUID it supports and the size of its xsave
/// area. [`restore_vcpu`](crate::restore_vcpu) and [`check_restore`](crate::check_restore)
/// check a saved state against it before they write anything.
///
/// Query it once per VM, before restoring ([`HostSupport::query`]); it is `Send` and `Sync`,
/// so the threads that restore their vCPUs can share it.
#[derive(Clone, Debug)]
pub struct HostSupport {
    cpuid: Vec<kvm_cpuid_entry2>,
    xsave_size: Option<usize>,
}

impl HostSupport {
    /// Reads the host's facts: the CPUID this host offers a guest and the xsave size of the
    /// vCPUs of `vm` ([`xsave_size`](crate::xsave_size)). Touches no vCPU of `vm`.
    ///
    /// The CPUID offered is `KVM_GET_SUPPORTED_CPUID` as a vCPU ends up with it: some kernels
    /// adjust the table `KVM_SET_CPUID2` is given (PVM, for one, adds the host's own feature
    /// bits to leaf 0x1), so the table is given to a vCPU of a scratch VM, created and dropped
    /// here, and read back with `KVM_GET_CPUID2`.
    ///
    /// # Errors
    ///
    /// [`KvmStateError::Ioctl`] naming the ioctl that failed.
    pub fn query(kvm: &Kvm, vm: &VmFd) -> Result<Self> {
        let xsave_size = xsave_size(vm)?;
        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(KvmStateError::ioctl("KVM_GET_SUPPORTED_CPUID"))?;
        let scratch = kvm
            .create_vm()
            .map_err(KvmStateError::ioctl("KVM_CREATE_VM"))?;
        let vcpu = scratch
            .create_vcpu(0)
            .map_err(KvmStateError::ioctl("KVM_CREATE_VCPU"))?;
        vcpu.set_cpuid2(&supported)
            .map_err(KvmStateError::ioctl("KVM_SET_CPUID2"))?;
        let offered = vcpu
            .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
            .map_err(KvmStateError::ioctl("KVM_GET_CPUID2"))?;
        Ok(HostSupport {
            cpuid: offered.as_slice().to_vec(),
            xsave_size,
        })
    }

    /// Host facts given by the caller: the CPUID entries the host offers a guest (what
    /// `KVM_GET_SUPPORTED_CPUID` returns, or a narrower template a VMM applies) and the size
    /// `KVM_SET_XSAVE` reads (`None` for the legacy 4096 bytes).
    pub fn new(cpuid: Vec<kvm_cpuid_entry2>, xsave_size: Option<usize>) -> Self {
        HostSupport { cpuid, xsave_size }
    }

    /// The CPUID entries the host offers.
    pub fn cpuid(&self) -> &[kvm_cpuid_entry2] {
        &self.cpuid
    }

    /// The size of the host's xsave area in bytes, `None` for the legacy 4096 bytes.
    pub fn xsave_size(&self) -> Option<usize> {
        self.xsave_size
    }
}
