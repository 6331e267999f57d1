//! Model specific registers: which ones to save, and reading/writing them in bulk.

use kvm_bindings::kvm_msr_entry;
use kvm_ioctls::{Kvm, VcpuFd};
use versionize::prelude::Versionize;

use crate::error::{KvmStateError, Result};

/// `IA32_TSC`, the time stamp counter.
pub const MSR_IA32_TSC: u32 = 0x10;
/// `IA32_TSC_DEADLINE`, the LAPIC timer deadline in TSC-deadline mode.
pub const MSR_IA32_TSC_DEADLINE: u32 = 0x6e0;
/// `IA32_KERNEL_GS_BASE`, the GS base `swapgs` swaps in.
pub const MSR_IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
/// First MSR of the KVM paravirtual range (`"KVM\0"`).
pub const MSR_KVM_PV_FIRST: u32 = 0x4b56_4d00;
/// Last MSR of the KVM paravirtual range.
pub const MSR_KVM_PV_LAST: u32 = 0x4b56_4dff;

/// The most MSRs one `KVM_GET_MSRS`/`KVM_SET_MSRS` call takes: the kernel refuses
/// `KVM_MAX_MSR_ENTRIES` (256) or more with `E2BIG` (`nmsrs >= MAX_IO_MSRS`), so
/// [`get_msrs`] and [`set_msrs`] split longer lists into calls of this many.
pub const MAX_MSRS_PER_CALL: usize = kvm_bindings::KVM_MAX_MSR_ENTRIES - 1;

/// MSRs on KVM's index list that are not vCPU state and must not be restored.
///
/// `IA32_VMX_BASIC` to `IA32_VMX_VMFUNC` describe the nested-VMX capabilities of the host;
/// they are configuration, written by the VMM's CPU template when nested virtualization is
/// enabled, and KVM refuses them otherwise.
const NOT_STATE: &[std::ops::RangeInclusive<u32>] = &[0x480..=0x491];

/// One MSR and its value (`kvm_msr_entry`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct MsrEntry {
    /// MSR index.
    pub index: u32,
    /// MSR value.
    pub data: u64,
}

impl From<&kvm_msr_entry> for MsrEntry {
    fn from(e: &kvm_msr_entry) -> Self {
        MsrEntry {
            index: e.index,
            data: e.data,
        }
    }
}

impl From<&MsrEntry> for kvm_msr_entry {
    fn from(e: &MsrEntry) -> Self {
        kvm_msr_entry {
            index: e.index,
            reserved: 0,
            data: e.data,
        }
    }
}

/// The saved MSRs of one vCPU, in the order they were read.
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct Msrs {
    /// The MSRs.
    pub entries: Vec<MsrEntry>,
}

impl From<&kvm_bindings::Msrs> for Msrs {
    fn from(m: &kvm_bindings::Msrs) -> Self {
        Msrs {
            entries: m.as_slice().iter().map(MsrEntry::from).collect(),
        }
    }
}

impl TryFrom<&Msrs> for kvm_bindings::Msrs {
    type Error = KvmStateError;

    fn try_from(m: &Msrs) -> Result<Self> {
        to_kvm_msrs(&m.entries.iter().map(Into::into).collect::<Vec<_>>())
    }
}

fn to_kvm_msrs(entries: &[kvm_msr_entry]) -> Result<kvm_bindings::Msrs> {
    kvm_bindings::Msrs::from_entries(entries).map_err(|source| KvmStateError::TooManyEntries {
        what: "kvm_msrs",
        entries: entries.len(),
        source,
    })
}

/// Whether an MSR of KVM's index list is vCPU state worth saving.
///
/// Everything KVM lists (`msrs_to_save` and `emulated_msrs` in the kernel: the SYSCALL and
/// SYSENTER MSRs, `KERNEL_GS_BASE`, `TSC`, `TSC_AUX`, `TSC_DEADLINE`, `PAT`, the MTRRs, the KVM
/// paravirtual range `0x4b564d00..=0x4b564dff`, ...) is state, except the capability MSRs in
/// `NOT_STATE`.
pub fn is_savable_msr(index: u32) -> bool {
    !NOT_STATE.iter().any(|r| r.contains(&index))
}

/// The MSRs to save on this host: KVM's index list filtered by [`is_savable_msr`].
///
/// # Errors
///
/// [`KvmStateError::Ioctl`] if `KVM_GET_MSR_INDEX_LIST` fails.
pub fn savable_msr_indices(kvm: &Kvm) -> Result<Vec<u32>> {
    let list = kvm
        .get_msr_index_list()
        .map_err(KvmStateError::ioctl("KVM_GET_MSR_INDEX_LIST"))?;
    Ok(list
        .as_slice()
        .iter()
        .copied()
        .filter(|&i| is_savable_msr(i))
        .collect())
}

/// Reads the given MSRs of a vCPU, any number of them (in calls of [`MAX_MSRS_PER_CALL`]).
///
/// # Errors
///
/// [`KvmStateError::Ioctl`] if `KVM_GET_MSRS` fails, [`KvmStateError::MsrRead`] naming the
/// first MSR the kernel did not read.
pub fn get_msrs(vcpu: &VcpuFd, indices: &[u32]) -> Result<Msrs> {
    let mut entries = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(MAX_MSRS_PER_CALL) {
        let request: Vec<kvm_msr_entry> = chunk
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = to_kvm_msrs(&request)?;
        let read = vcpu
            .get_msrs(&mut msrs)
            .map_err(KvmStateError::ioctl("KVM_GET_MSRS"))?;
        if read < chunk.len() {
            return Err(KvmStateError::MsrRead {
                index: chunk[read],
                read: entries.len() + read,
                requested: indices.len(),
            });
        }
        entries.extend(msrs.as_slice().iter().map(MsrEntry::from));
    }
    Ok(Msrs { entries })
}

/// Writes MSRs to a vCPU, any number of them (in calls of [`MAX_MSRS_PER_CALL`]); every
/// one must be accepted.
///
/// `IA32_TSC_DEADLINE` is written after `IA32_TSC`, whatever the order in `msrs`, since KVM
/// interprets the deadline against the current TSC.
///
/// # Errors
///
/// [`KvmStateError::Ioctl`] if `KVM_SET_MSRS` fails, [`KvmStateError::MsrWrite`] naming the
/// first MSR the kernel refused.
pub fn set_msrs(vcpu: &VcpuFd, msrs: &Msrs) -> Result<()> {
    let ordered = restore_order(&msrs.entries);
    let mut written = 0;
    for chunk in ordered.chunks(MAX_MSRS_PER_CALL) {
        let kvm_msrs = to_kvm_msrs(chunk)?;
        let n = vcpu
            .set_msrs(&kvm_msrs)
            .map_err(KvmStateError::ioctl("KVM_SET_MSRS"))?;
        if n < chunk.len() {
            return Err(KvmStateError::MsrWrite {
                index: chunk[n].index,
                written: written + n,
                requested: ordered.len(),
            });
        }
        written += n;
    }
    Ok(())
}

/// The entries in the order they must be written: `IA32_TSC_DEADLINE` moved to the end.
fn restore_order(entries: &[MsrEntry]) -> Vec<kvm_msr_entry> {
    let (deadline, rest): (Vec<&MsrEntry>, Vec<&MsrEntry>) = entries
        .iter()
        .partition(|e| e.index == MSR_IA32_TSC_DEADLINE);
    rest.into_iter().chain(deadline).map(Into::into).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::through_bytes;

    #[test]
    fn test_msr_entry_roundtrip() {
        let orig = kvm_msr_entry {
            index: 0xc000_0102,
            reserved: 0,
            data: 0x1122_3344_5566_7788,
        };
        let ours = through_bytes(&MsrEntry::from(&orig));
        assert_eq!(ours.index, 0xc000_0102);
        assert_eq!(kvm_msr_entry::from(&ours), orig);
    }

    #[test]
    fn test_msrs_roundtrip() {
        let entries: Vec<kvm_msr_entry> = (0..40u32)
            .map(|i| kvm_msr_entry {
                index: 0x4b56_4d00 + i,
                reserved: 0,
                data: u64::from(i) * 0x0101_0101_0101_0101 + 1,
            })
            .collect();
        let orig = kvm_bindings::Msrs::from_entries(&entries).unwrap();
        let ours = through_bytes(&Msrs::from(&orig));
        assert_eq!(ours.entries.len(), 40);
        let back = kvm_bindings::Msrs::try_from(&ours).unwrap();
        assert_eq!(back.as_slice(), orig.as_slice());
    }

    #[test]
    fn test_msrs_too_many() {
        let msrs = Msrs {
            entries: vec![MsrEntry::default(); kvm_bindings::KVM_MAX_MSR_ENTRIES + 1],
        };
        assert!(matches!(
            kvm_bindings::Msrs::try_from(&msrs),
            Err(KvmStateError::TooManyEntries {
                what: "kvm_msrs",
                ..
            })
        ));
    }

    #[test]
    fn test_restore_order_tsc_deadline_after_tsc() {
        let entries = vec![
            MsrEntry {
                index: MSR_IA32_TSC_DEADLINE,
                data: 5,
            },
            MsrEntry {
                index: MSR_IA32_KERNEL_GS_BASE,
                data: 1,
            },
            MsrEntry {
                index: MSR_IA32_TSC,
                data: 3,
            },
        ];
        let order: Vec<u32> = restore_order(&entries).iter().map(|e| e.index).collect();
        assert_eq!(
            order,
            vec![MSR_IA32_KERNEL_GS_BASE, MSR_IA32_TSC, MSR_IA32_TSC_DEADLINE]
        );
    }

    #[test]
    fn test_is_savable_msr() {
        assert!(is_savable_msr(MSR_IA32_TSC));
        assert!(is_savable_msr(MSR_KVM_PV_FIRST));
        assert!(is_savable_msr(0x2ff)); // IA32_MTRR_DEF_TYPE
        assert!(!is_savable_msr(0x480)); // IA32_VMX_BASIC
    }
}
