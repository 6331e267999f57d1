//! The host: what its KVM offers a vCPU ([`HostSupport`]), and the facts a state records about
//! the host it was saved on ([`HostFacts`]), which a restore checks against the target.

use kvm_bindings::{
    kvm_cpuid_entry2, KVM_CAP_ADJUST_CLOCK, KVM_CAP_DEBUGREGS, KVM_CAP_EXT_CPUID, KVM_CAP_IRQCHIP,
    KVM_CAP_MP_STATE, KVM_CAP_PIT2, KVM_CAP_TSC_CONTROL, KVM_CAP_VCPU_EVENTS, KVM_CAP_XCRS,
    KVM_CAP_XSAVE, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{Kvm, VmFd};

use crate::error::{KvmStateError, Result};
use crate::vcpu::{xsave_size, CpuidEntry, VcpuState, TSC_KHZ_TOLERANCE_PPM};
use versionize::prelude::Versionize;

/// The KVM capabilities every restore of a [`MicrovmState`](crate::MicrovmState) relies on
/// (the ioctls of [`restore_vm`](crate::restore_vm) and [`restore_vcpu`](crate::restore_vcpu)),
/// with their names.
const RELIED_CAPABILITIES: &[(u32, &str)] = &[
    (KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"),
    (KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"),
    (KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"),
    (KVM_CAP_PIT2, "KVM_CAP_PIT2"),
    (KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK"),
    (KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS"),
    (KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS"),
    (KVM_CAP_XSAVE, "KVM_CAP_XSAVE"),
    (KVM_CAP_XCRS, "KVM_CAP_XCRS"),
];

/// Facts about the host a state was saved on that its restore depends on; recorded by
/// [`HostSupport::query`] and checked by [`check_restore`](crate::check_restore) against the
/// target's.
///
/// Recorded in [`MicrovmState::host`](crate::MicrovmState::host) since app version 3;
/// states of older app versions read the default (empty) facts, which no check compares.
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct HostFacts {
    /// CPU vendor, from CPUID leaf 0 (`GenuineIntel`, `AuthenticAMD`, ...); empty when
    /// unknown.
    pub cpu_vendor: String,
    /// CPU family (with the extended family), from CPUID leaf 1.
    pub cpu_family: u32,
    /// CPU model (with the extended model), from CPUID leaf 1.
    pub cpu_model: u32,
    /// CPU stepping, from CPUID leaf 1.
    pub cpu_stepping: u32,
    /// TSC frequency a new vCPU gets, in kHz, if KVM reports one.
    pub tsc_khz: Option<u32>,
    /// The capabilities of [`HostFacts::relied_capabilities`] this host's KVM has
    /// (`KVM_CAP_*` numbers): those a restore of the state relies on.
    pub kvm_capabilities: Vec<u32>,
    /// The kernel release (`uname -r`), for the record.
    pub kernel_release: String,
}

impl HostFacts {
    /// The KVM capabilities every restore relies on, as `(KVM_CAP_* number, name)`.
    pub fn relied_capabilities() -> &'static [(u32, &'static str)] {
        RELIED_CAPABILITIES
    }

    /// Whether the facts were recorded (states older than app version 3 have none).
    pub fn is_known(&self) -> bool {
        !self.cpu_vendor.is_empty()
    }

    /// The facts of a host whose supported CPUID is `cpuid`.
    fn from_host(kvm: &Kvm, cpuid: &[kvm_cpuid_entry2], tsc_khz: Option<u32>) -> HostFacts {
        let leaf = |function| {
            cpuid
                .iter()
                .map(CpuidEntry::from)
                .find(|e| e.serves(function, 0))
                .unwrap_or_default()
        };
        let vendor = leaf(0);
        let vendor: Vec<u8> = [vendor.ebx, vendor.edx, vendor.ecx]
            .iter()
            .flat_map(|r| r.to_le_bytes())
            .collect();
        let signature = leaf(1).eax;
        let (family, model) = (signature >> 8 & 0xf, signature >> 4 & 0xf);
        let ext_family = signature >> 20 & 0xff;
        let ext_model = signature >> 16 & 0xf;
        HostFacts {
            cpu_vendor: String::from_utf8_lossy(&vendor)
                .trim_end_matches('\0')
                .to_owned(),
            cpu_family: if family == 0xf {
                family + ext_family
            } else {
                family
            },
            cpu_model: if family == 0x6 || family == 0xf {
                model | ext_model << 4
            } else {
                model
            },
            cpu_stepping: signature & 0xf,
            tsc_khz,
            kvm_capabilities: RELIED_CAPABILITIES
                .iter()
                .map(|&(cap, _)| cap)
                .filter(|&cap| kvm.check_extension_raw(cap.into()) > 0)
                .collect(),
            kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
        }
    }
}

/// What the target host's KVM offers a vCPU, and the facts of the host: the CPUID it offers,
/// the size of its xsave area, whether it can scale the TSC, [`HostFacts`].
/// [`restore_vcpu`](crate::restore_vcpu) and [`check_restore`](crate::check_restore) check a
/// saved state against it before they write anything, and [`save_microvm`](crate::save_microvm)
/// records its facts in the state.
///
/// Query it once per VM ([`HostSupport::query`]); it is `Send` and `Sync`, so the threads that
/// restore their vCPUs can share it.
#[derive(Clone, Debug)]
pub struct HostSupport {
    cpuid: Vec<kvm_cpuid_entry2>,
    xsave_size: Option<usize>,
    tsc_control: bool,
    facts: HostFacts,
}

impl HostSupport {
    /// Reads the host's facts: the CPUID this host offers a guest, the xsave size of the vCPUs
    /// of `vm` ([`xsave_size`](crate::xsave_size)), `KVM_CAP_TSC_CONTROL` and the
    /// [`HostFacts`]. Touches no vCPU of `vm`.
    ///
    /// The CPUID offered is `KVM_GET_SUPPORTED_CPUID` as a vCPU ends up with it: some kernels
    /// adjust the table `KVM_SET_CPUID2` is given (PVM, for one, adds the host's own feature
    /// bits to leaf 0x1), so the table is given to a vCPU of a scratch VM, created and dropped
    /// here, and read back with `KVM_GET_CPUID2`. That vCPU also tells the TSC frequency.
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
        let facts = HostFacts::from_host(kvm, supported.as_slice(), vcpu.get_tsc_khz().ok());
        Ok(HostSupport {
            cpuid: offered.as_slice().to_vec(),
            xsave_size,
            tsc_control: kvm.check_extension_raw(KVM_CAP_TSC_CONTROL.into()) > 0,
            facts,
        })
    }

    /// Host support given by the caller: the CPUID entries the host offers a guest (a CPU
    /// template narrower than what [`HostSupport::query`] reads; giving it the saved table
    /// itself defeats the check) and the size `KVM_SET_XSAVE` reads (`None` for the legacy
    /// 4096 bytes). Its facts are unknown, so [`check_restore`](crate::check_restore) compares
    /// none, and it claims no TSC scaling.
    pub fn new(cpuid: Vec<kvm_cpuid_entry2>, xsave_size: Option<usize>) -> Self {
        HostSupport {
            cpuid,
            xsave_size,
            tsc_control: false,
            facts: HostFacts::default(),
        }
    }

    /// The CPUID entries the host offers.
    pub fn cpuid(&self) -> &[kvm_cpuid_entry2] {
        &self.cpuid
    }

    /// The size of the host's xsave area in bytes, `None` for the legacy 4096 bytes.
    pub fn xsave_size(&self) -> Option<usize> {
        self.xsave_size
    }

    /// The facts of this host, as [`save_microvm`](crate::save_microvm) records them.
    pub fn facts(&self) -> &HostFacts {
        &self.facts
    }

    /// Checks that this host can honour the facts a state was saved with: the same CPU
    /// vendor, every capability of [`HostFacts::relied_capabilities`] the source had, and,
    /// for each vCPU whose TSC frequency was saved, a frequency this host can give it (KVM
    /// without `KVM_CAP_TSC_CONTROL` runs a vCPU's TSC faster than the host's by catching up
    /// in software, never slower). Facts that either side does not know are not compared.
    ///
    /// # Errors
    ///
    /// [`KvmStateError::HostVendor`], [`KvmStateError::HostCapability`], or
    /// [`KvmStateError::Vcpu`] wrapping [`KvmStateError::TscNotSettable`].
    pub fn check_facts(&self, saved: &HostFacts, vcpus: &[VcpuState]) -> Result<()> {
        let host = &self.facts;
        if !saved.is_known() || !host.is_known() {
            return Ok(());
        }
        if saved.cpu_vendor != host.cpu_vendor {
            return Err(KvmStateError::HostVendor {
                saved: saved.cpu_vendor.clone(),
                host: host.cpu_vendor.clone(),
            });
        }
        for &(cap, name) in RELIED_CAPABILITIES {
            if saved.kvm_capabilities.contains(&cap) && !host.kvm_capabilities.contains(&cap) {
                return Err(KvmStateError::HostCapability { capability: name });
            }
        }
        let Some(host_khz) = host.tsc_khz.filter(|_| !self.tsc_control) else {
            return Ok(());
        };
        for (index, vcpu) in vcpus.iter().enumerate() {
            let Some(saved_khz) = vcpu.tsc_khz else {
                continue;
            };
            let slower = u64::from(host_khz.saturating_sub(saved_khz)) * 1_000_000
                > u64::from(saved_khz) * TSC_KHZ_TOLERANCE_PPM;
            if slower {
                return Err(KvmStateError::Vcpu {
                    index,
                    source: Box::new(KvmStateError::TscNotSettable {
                        saved_khz,
                        host_khz,
                    }),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        HostFacts {
            cpu_vendor: "AuthenticAMD".to_owned(),
            cpu_family: 0x19,
            cpu_model: 0x11,
            cpu_stepping: 1,
            tsc_khz: Some(2_000_000),
            kvm_capabilities: RELIED_CAPABILITIES.iter().map(|&(c, _)| c).collect(),
            kernel_release: "6.18.0".to_owned(),
        }
    }

    fn host(facts: HostFacts, tsc_control: bool) -> HostSupport {
        HostSupport {
            cpuid: Vec::new(),
            xsave_size: None,
            tsc_control,
            facts,
        }
    }

    fn vcpu(tsc_khz: u32) -> VcpuState {
        VcpuState {
            tsc_khz: Some(tsc_khz),
            ..Default::default()
        }
    }

    #[test]
    fn test_check_facts_vendor_and_capabilities() {
        let target = host(facts(), false);
        target.check_facts(&facts(), &[]).unwrap();
        let intel = HostFacts {
            cpu_vendor: "GenuineIntel".to_owned(),
            ..facts()
        };
        assert!(matches!(
            target.check_facts(&intel, &[]),
            Err(KvmStateError::HostVendor { saved, host }) if saved == "GenuineIntel" && host == "AuthenticAMD"
        ));
        // Another model of the same vendor: the CPUID check decides about features.
        let other_model = HostFacts {
            cpu_model: 1,
            ..facts()
        };
        target.check_facts(&other_model, &[]).unwrap();
        let without_pit = HostFacts {
            kvm_capabilities: facts()
                .kvm_capabilities
                .into_iter()
                .filter(|&c| c != KVM_CAP_PIT2)
                .collect(),
            ..facts()
        };
        assert!(matches!(
            host(without_pit, false).check_facts(&facts(), &[]),
            Err(KvmStateError::HostCapability {
                capability: "KVM_CAP_PIT2"
            })
        ));
        // Unknown facts on either side: nothing to compare.
        target.check_facts(&HostFacts::default(), &[]).unwrap();
        host(HostFacts::default(), false)
            .check_facts(&intel, &[])
            .unwrap();
    }

    #[test]
    fn test_check_facts_tsc_frequency() {
        let target = host(facts(), false);
        // Faster, equal, or slower within the tolerance: KVM honours it.
        for khz in [2_500_000, 2_000_000, 1_999_600] {
            target.check_facts(&facts(), &[vcpu(khz)]).unwrap();
        }
        let err = target
            .check_facts(&facts(), &[vcpu(2_000_000), vcpu(1_900_000)])
            .unwrap_err();
        assert!(matches!(
            err,
            KvmStateError::Vcpu { index: 1, ref source }
                if matches!(**source, KvmStateError::TscNotSettable { saved_khz: 1_900_000, host_khz: 2_000_000 })
        ));
        // With TSC scaling, any frequency.
        host(facts(), true)
            .check_facts(&facts(), &[vcpu(1_000_000)])
            .unwrap();
    }
}
