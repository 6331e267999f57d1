//! The CPUID table ([`Cpuid`]), the check of its feature flags against what the host offers
//! ([`check_cpuid`]), and its save and restore steps.

use kvm_bindings::{
    kvm_cpuid_entry2, CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::VcpuFd;
use versionize::prelude::Versionize;

use crate::error::{KvmStateError, Result};

/// One CPUID leaf as given to the vCPU (`kvm_cpuid_entry2`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct CpuidEntry {
    /// Leaf (EAX input).
    pub function: u32,
    /// Sub-leaf (ECX input).
    pub index: u32,
    /// `KVM_CPUID_FLAG_*` flags.
    pub flags: u32,
    /// EAX output.
    pub eax: u32,
    /// EBX output.
    pub ebx: u32,
    /// ECX output.
    pub ecx: u32,
    /// EDX output.
    pub edx: u32,
}

impl From<&kvm_cpuid_entry2> for CpuidEntry {
    fn from(e: &kvm_cpuid_entry2) -> Self {
        CpuidEntry {
            function: e.function,
            index: e.index,
            flags: e.flags,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
        }
    }
}

impl From<&CpuidEntry> for kvm_cpuid_entry2 {
    fn from(e: &CpuidEntry) -> Self {
        kvm_cpuid_entry2 {
            function: e.function,
            index: e.index,
            flags: e.flags,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
            padding: [0; 3],
        }
    }
}

/// The CPUID table of a vCPU (`kvm_cpuid2`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct Cpuid {
    /// The leaves, in the order KVM returned them.
    pub entries: Vec<CpuidEntry>,
}

impl From<&CpuId> for Cpuid {
    fn from(c: &CpuId) -> Self {
        Cpuid {
            entries: c.as_slice().iter().map(CpuidEntry::from).collect(),
        }
    }
}

impl TryFrom<&Cpuid> for CpuId {
    type Error = KvmStateError;

    fn try_from(c: &Cpuid) -> Result<Self> {
        let entries: Vec<kvm_cpuid_entry2> = c.entries.iter().map(Into::into).collect();
        CpuId::from_entries(&entries).map_err(|source| KvmStateError::TooManyEntries {
            what: "kvm_cpuid2",
            entries: entries.len(),
            source,
        })
    }
}

/// The CPUID registers that hold feature flags, with the bits KVM changes at run time (they
/// follow guest control registers, not host support), as `(leaf, sub-leaf, register, dynamic
/// bits)`.
const CPUID_FEATURE_REGISTERS: &[(u32, u32, &str, u32)] = &[
    // OSXSAVE follows CR4.OSXSAVE; APIC follows IA32_APIC_BASE's enable bit.
    (0x1, 0, "ecx", 1 << 27),
    (0x1, 0, "edx", 1 << 9),
    // OSPKE follows CR4.PKE.
    (0x7, 0, "ebx", 0),
    (0x7, 0, "ecx", 1 << 4),
    (0x7, 0, "edx", 0),
    (0x7, 1, "eax", 0),
    // The XSAVE components (XCR0 bits) and XSAVE instructions.
    (0xd, 0, "eax", 0),
    (0xd, 0, "edx", 0),
    (0xd, 1, "eax", 0),
    (0x8000_0001, 0, "ecx", 0),
    (0x8000_0001, 0, "edx", 0),
    // KVM paravirtual features.
    (0x4000_0001, 0, "eax", 0),
];

fn cpuid_register(entry: &CpuidEntry, register: &str) -> u32 {
    match register {
        "eax" => entry.eax,
        "ebx" => entry.ebx,
        "ecx" => entry.ecx,
        _ => entry.edx,
    }
}

impl CpuidEntry {
    /// Whether KVM serves this entry for a `CPUID` with `EAX = function`, `ECX = index`: the
    /// function must be equal, the index only when the entry has
    /// `KVM_CPUID_FLAG_SIGNIFCANT_INDEX` (as the kernel's `kvm_find_cpuid_entry_index` does).
    pub fn serves(&self, function: u32, index: u32) -> bool {
        self.function == function
            && (self.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX == 0 || self.index == index)
    }

    /// Whether some `CPUID` query would match both entries, which makes the answer depend on
    /// their order in the table.
    fn overlaps(&self, other: &CpuidEntry) -> bool {
        self.function == other.function
            && (self.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX == 0
                || other.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX == 0
                || self.index == other.index)
    }
}

impl Cpuid {
    /// The entry KVM serves for `CPUID` with `EAX = function`, `ECX = index` (see
    /// [`CpuidEntry::serves`]), the first one in table order, as in the kernel.
    pub fn lookup(&self, function: u32, index: u32) -> Option<&CpuidEntry> {
        self.entries.iter().find(|e| e.serves(function, index))
    }

    /// Checks the table's shape without a host: at most `KVM_MAX_CPUID_ENTRIES` (256) entries,
    /// which is all `KVM_SET_CPUID2` takes, and no two entries that one `CPUID` query could
    /// both match (see [`CpuidEntry::serves`]), so every query has one answer whatever the
    /// order.
    ///
    /// # Errors
    ///
    /// [`KvmStateError::BadLength`] for too many entries, [`KvmStateError::CpuidDuplicate`]
    /// naming the second of two overlapping entries.
    pub fn check(&self) -> Result<()> {
        if self.entries.len() > KVM_MAX_CPUID_ENTRIES {
            return Err(KvmStateError::BadLength {
                what: "cpuid entries",
                found: self.entries.len(),
                expected: KVM_MAX_CPUID_ENTRIES,
            });
        }
        for (i, later) in self.entries.iter().enumerate() {
            if self.entries[..i].iter().any(|e| e.overlaps(later)) {
                return Err(KvmStateError::CpuidDuplicate {
                    function: later.function,
                    index: later.index,
                });
            }
        }
        Ok(())
    }
}

/// Checks that every feature flag the saved CPUID sets is one the host offers.
///
/// `KVM_SET_CPUID2` accepts feature bits the host cannot provide (some kernels keep them and
/// the guest then faults on the missing instruction, others silently clear them, which changes
/// the CPU under the running guest), so a restore must check them itself; [`restore_vcpu`]
/// and the whole-VM restore call this before they touch KVM. `offered` is what the target host
/// gives a guest (see [`HostSupport::query`]).
///
/// Entries are matched the way KVM serves them: by function, and by index only where the
/// entry has `KVM_CPUID_FLAG_SIGNIFCANT_INDEX`, so a feature leaf saved at another index
/// without that flag is still checked, and tables where two entries could answer the same
/// query are refused ([`Cpuid::check`]). Only the registers that hold feature flags are
/// compared (leaves 0x1, 0x7, 0xd, 0x8000_0001 and 0x4000_0001), leaving out the bits that
/// follow guest control registers.
///
/// [`restore_vcpu`]: crate::restore_vcpu
/// [`HostSupport::query`]: crate::HostSupport::query
///
/// # Errors
///
/// [`KvmStateError::CpuidDuplicate`] or [`KvmStateError::BadLength`] from [`Cpuid::check`],
/// [`KvmStateError::CpuidNotOffered`] naming the first leaf, register and bits not offered.
pub fn check_cpuid(offered: &[kvm_cpuid_entry2], saved: &Cpuid) -> Result<()> {
    saved.check()?;
    for &(function, index, register, dynamic) in CPUID_FEATURE_REGISTERS {
        let Some(entry) = saved.lookup(function, index) else {
            continue;
        };
        let host = offered
            .iter()
            .map(CpuidEntry::from)
            .find(|e| e.serves(function, index))
            .map_or(0, |e| cpuid_register(&e, register));
        let bits = cpuid_register(entry, register) & !host & !dynamic;
        if bits != 0 {
            return Err(KvmStateError::CpuidNotOffered {
                function,
                index,
                register,
                bits,
            });
        }
    }
    Ok(())
}

/// Save step: `KVM_GET_CPUID2`.
pub(super) fn save_cpuid(vcpu: &VcpuFd) -> Result<Cpuid> {
    let cpuid = vcpu
        .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
        .map_err(KvmStateError::ioctl("KVM_GET_CPUID2"))?;
    Ok(Cpuid::from(&cpuid))
}

/// Restore step, first after the TSC frequency: KVM derives which registers, MSRs and xsave
/// components are valid from the CPUID, and refuses to change it once the vCPU has run.
pub(super) fn restore_cpuid(vcpu: &VcpuFd, cpuid: &CpuId) -> Result<()> {
    vcpu.set_cpuid2(cpuid)
        .map_err(KvmStateError::ioctl("KVM_SET_CPUID2"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{patterned, through_bytes};

    #[test]
    fn test_cpuid_roundtrip() {
        let entries: Vec<kvm_cpuid_entry2> = (0..80u8)
            .map(|i| {
                let mut e: kvm_cpuid_entry2 = patterned();
                e.function = u32::from(i);
                e.padding = [0; 3];
                e
            })
            .collect();
        let orig = CpuId::from_entries(&entries).unwrap();
        let ours = through_bytes(&Cpuid::from(&orig));
        assert_eq!(ours.entries.len(), 80);
        let back = CpuId::try_from(&ours).unwrap();
        assert_eq!(back.as_slice(), orig.as_slice());
    }

    #[test]
    fn test_cpuid_too_many_entries() {
        let ours = Cpuid {
            entries: vec![CpuidEntry::default(); KVM_MAX_CPUID_ENTRIES + 1],
        };
        assert!(matches!(
            CpuId::try_from(&ours),
            Err(KvmStateError::TooManyEntries {
                what: "kvm_cpuid2",
                ..
            })
        ));
    }

    #[test]
    fn test_check_cpuid_compares_feature_flags_only() {
        let offered = [
            kvm_cpuid_entry2 {
                function: 1,
                ecx: 0x0000_2001,
                edx: 0x0000_0011,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 7,
                ebx: 0x8,
                ..Default::default()
            },
        ];
        let saved = |function, ebx, ecx, edx| Cpuid {
            entries: vec![CpuidEntry {
                function,
                ebx,
                ecx,
                edx,
                ..Default::default()
            }],
        };
        // A subset, plus the bits that follow guest state (OSXSAVE, APIC) and non-feature
        // registers (leaf 1 EBX), passes.
        assert!(check_cpuid(&offered, &saved(1, 0xffff_ffff, 0x0800_2000, 0x211)).is_ok());
        assert!(matches!(
            check_cpuid(&offered, &saved(1, 0, 0x0000_0003, 0)),
            Err(KvmStateError::CpuidNotOffered {
                function: 1,
                index: 0,
                register: "ecx",
                bits: 0x2
            })
        ));
        assert!(matches!(
            check_cpuid(&offered, &saved(7, 0x18, 0, 0)),
            Err(KvmStateError::CpuidNotOffered {
                function: 7,
                register: "ebx",
                bits: 0x10,
                ..
            })
        ));
        // A leaf the host does not have: any feature bit in it is not offered.
        assert!(matches!(
            check_cpuid(&offered, &saved(0x8000_0001, 0, 0, 1)),
            Err(KvmStateError::CpuidNotOffered {
                function: 0x8000_0001,
                register: "edx",
                bits: 1,
                ..
            })
        ));
        // Leaves outside the feature table are not compared.
        assert!(check_cpuid(&offered, &saved(0x8000_0008, 0xffff, 0xffff, 0xffff)).is_ok());
    }
}
