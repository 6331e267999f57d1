//! vCPU state: one file per kind of state, each with its save and restore steps, and here
//! the whole [`VcpuState`] with [`save_vcpu`] and [`restore_vcpu`], which run those steps in
//! the order KVM needs.
//!
//! | file | state | ioctls |
//! |---|---|---|
//! | `regs.rs` | [`Regs`], [`Sregs`], [`DebugRegs`] | `KVM_{GET,SET}_{REGS,SREGS,DEBUGREGS}` |
//! | `xsave.rs` | [`Xsave`], [`Xcrs`], [`xsave_size`] | `KVM_{GET,SET}_XSAVE(2)`, `KVM_{GET,SET}_XCRS` |
//! | `lapic.rs` | [`Lapic`], [`MpState`] | `KVM_{GET,SET}_LAPIC`, `KVM_{GET,SET}_MP_STATE` |
//! | `events.rs` | [`VcpuEvents`] | `KVM_{GET,SET}_VCPU_EVENTS` |
//! | `cpuid.rs` | [`Cpuid`], [`check_cpuid`] | `KVM_{GET,SET}_CPUID2` |
//! | `tsc.rs` | `tsc_khz`, [`restore_tsc_khz`] | `KVM_{GET,SET}_TSC_KHZ` |
//! | `nested.rs` | `nested_state` | `KVM_{GET,SET}_NESTED_STATE` |
//! | `pdptrs.rs` | [`Sregs::pdptrs`] | `KVM_{GET,SET}_SREGS2` |
//! | `../msr.rs` | [`Msrs`] | `KVM_{GET,SET}_MSRS` |

mod cpuid;
mod events;
mod lapic;
mod nested;
mod pdptrs;
mod regs;
mod tsc;
mod xsave;

pub use cpuid::{check_cpuid, Cpuid, CpuidEntry};
pub use events::{
    ExceptionEvent, InterruptEvent, NmiEvent, SmiEvent, TripleFaultEvent, VcpuEvents,
};
pub use lapic::{Lapic, MpState, LAPIC_REGS_SIZE};
pub use regs::{DTable, DebugRegs, Regs, Segment, Sregs};
pub use tsc::{restore_tsc_khz, TSC_KHZ_TOLERANCE_PPM};
pub use xsave::{xsave_size, Xcr, Xcrs, Xsave, LEGACY_XSAVE_SIZE};

use kvm_bindings::{kvm_lapic_state, kvm_xcrs, CpuId};
use kvm_ioctls::{VcpuFd, VmFd};
use versionize::prelude::Versionize;

#[cfg(doc)]
use crate::error::KvmStateError;
use crate::error::Result;
use crate::host::HostSupport;
use crate::msr::{self, Msrs};

/// Everything KVM holds for one x86_64 vCPU.
///
/// Field order is the order a snapshot stores them in, not the restore order (see
/// [`restore_vcpu`]).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct VcpuState {
    /// CPUID table.
    pub cpuid: Cpuid,
    /// Multiprocessing state.
    pub mp_state: MpState,
    /// General purpose registers.
    pub regs: Regs,
    /// Segment and control registers.
    pub sregs: Sregs,
    /// XSAVE area (x87, SSE, AVX, ...).
    pub xsave: Xsave,
    /// Extended control registers.
    pub xcrs: Xcrs,
    /// Debug registers.
    pub debug_regs: DebugRegs,
    /// Local APIC registers.
    pub lapic: Lapic,
    /// Model specific registers.
    pub msrs: Msrs,
    /// Pending events.
    pub vcpu_events: VcpuEvents,
    /// TSC frequency in kHz, `None` when the kernel did not report one.
    ///
    /// Added in version 2 of `VcpuState` (app version 2): snapshots of app version 1 read
    /// `None`, and [`restore_vcpu`] then leaves the target vCPU's frequency as it is.
    #[version(start = 2)]
    pub tsc_khz: Option<u32>,
    /// Nested-virtualization state (`KVM_GET_NESTED_STATE`: the kernel's header and VMX or
    /// SVM data, as the kernel lays it out), `None` when the host's KVM has no
    /// `KVM_CAP_NESTED_STATE`.
    ///
    /// Added in version 3 of `VcpuState` (app version 4): a guest hypervisor's nested guest
    /// (its VMCS12 or VMCB12, its VMXON) lives only in KVM and was lost by every snapshot
    /// before. Snapshots of app versions 1 to 3 read `None`; a rollback to them drops the state,
    /// which is what those builds restore anyway (they never wrote it).
    #[version(start = 3)]
    pub nested_state: Option<Vec<u8>>,
}

impl VcpuState {
    /// Checks what can be checked without a host: the CPUID table's shape ([`Cpuid::check`]),
    /// a 1024-word xsave region, a 1024-byte LAPIC page, at most 16 XCRs and a nested state
    /// within the kernel's sizes, the sizes of the
    /// kernel structures they become.
    ///
    /// # Errors
    ///
    /// [`KvmStateError::BadLength`] naming the field, [`KvmStateError::CpuidDuplicate`].
    pub fn check(&self) -> Result<()> {
        if let Some(blob) = &self.nested_state {
            nested::check_nested_state(blob)?;
        }
        self.cpuid.check()?;
        self.xsave.check()?;
        kvm_xcrs::try_from(&self.xcrs)?;
        kvm_lapic_state::try_from(&self.lapic)?;
        Ok(())
    }
}

/// Reads the full state of a paused vCPU (see [`pause_vcpu`](crate::pause_vcpu)) of `vm`.
///
/// Can run on the thread that owns the vCPU while other threads save theirs; `vm` is only
/// asked for the xsave size. Steps, in order (each next to its state in this module's files):
///
/// 1. `KVM_GET_MP_STATE` first: it processes pending LAPIC events (INIT/SIPI, a timer wake-up
///    of a halted vCPU), so everything read afterwards agrees with it;
/// 2. registers, segment and control registers, debug registers, the xsave area, XCRs (plain
///    reads);
/// 3. the LAPIC (after 1.);
/// 4. the MSRs of `msr_indices` (usually [`savable_msr_indices`](crate::savable_msr_indices)),
///    the CPUID table, the TSC frequency if the kernel reports one;
/// 5. the events last: the reads above may update KVM's event state.
///
/// # Errors
///
/// [`KvmStateError::Ioctl`] naming the first ioctl that failed, or
/// [`KvmStateError::MsrRead`] if an MSR of `msr_indices` cannot be read.
pub fn save_vcpu(vm: &VmFd, vcpu: &VcpuFd, msr_indices: &[u32]) -> Result<VcpuState> {
    let host_xsave_size = xsave_size(vm)?;
    let mp_state = lapic::save_mp_state(vcpu)?;
    let (regs, mut sregs, debug_regs) = regs::save_registers(vcpu)?;
    sregs.pdptrs = pdptrs::save_pdptrs(vm, vcpu)?;
    let xsave = xsave::save_xsave(vcpu, host_xsave_size)?;
    let xcrs = xsave::save_xcrs(vcpu)?;
    let lapic = lapic::save_lapic(vcpu)?;
    let msrs = msr::get_msrs(vcpu, msr_indices)?;
    let cpuid = cpuid::save_cpuid(vcpu)?;
    let tsc_khz = tsc::save_tsc_khz(vcpu);
    let nested_state = nested::save_nested_state(vm, vcpu)?;
    let vcpu_events = events::save_vcpu_events(vcpu)?;
    Ok(VcpuState {
        cpuid,
        mp_state,
        regs,
        sregs,
        xsave,
        xcrs,
        debug_regs,
        lapic,
        msrs,
        vcpu_events,
        tsc_khz,
        nested_state,
    })
}

/// A vCPU state that passed every check that needs no KVM write, converted to the kernel
/// structures [`restore_vcpu`] passes to KVM.
pub(crate) struct CheckedVcpu<'a> {
    state: &'a VcpuState,
    cpuid: CpuId,
    xsave: kvm_bindings::Xsave,
    xcrs: kvm_xcrs,
    lapic: kvm_lapic_state,
    nested: Option<Box<kvm_ioctls::KvmNestedStateBuffer>>,
}

impl std::fmt::Debug for CheckedVcpu<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedVcpu")
            .field("state", &self.state)
            .field("nested", &self.nested.as_ref().map(|n| n.size))
            .finish_non_exhaustive()
    }
}

impl<'a> CheckedVcpu<'a> {
    /// Runs every check of one vCPU's state against `host`: the shape ([`VcpuState::check`]),
    /// the CPUID feature flags ([`check_cpuid`]) and the xsave area's size.
    pub(crate) fn new(state: &'a VcpuState, host: &HostSupport) -> Result<Self> {
        state.check()?;
        check_cpuid(host.cpuid(), &state.cpuid)?;
        let cpuid = CpuId::try_from(&state.cpuid)?;
        let xsave = state
            .xsave
            .to_kvm(host.xsave_size().unwrap_or(LEGACY_XSAVE_SIZE))?;
        let xcrs = kvm_xcrs::try_from(&state.xcrs)?;
        let lapic = kvm_lapic_state::try_from(&state.lapic)?;
        let nested = state
            .nested_state
            .as_deref()
            .map(nested::to_kvm)
            .transpose()?;
        Ok(CheckedVcpu {
            state,
            cpuid,
            xsave,
            xcrs,
            lapic,
            nested,
        })
    }

    /// Writes the state into `vcpu`, in the order documented on [`restore_vcpu`].
    pub(crate) fn write(&self, vcpu: &VcpuFd) -> Result<()> {
        let state = self.state;
        if let Some(khz) = state.tsc_khz {
            restore_tsc_khz(vcpu, khz)?;
        }
        cpuid::restore_cpuid(vcpu, &self.cpuid)?;
        lapic::restore_mp_state(vcpu, &state.mp_state)?;
        regs::restore_regs(vcpu, &state.regs)?;
        regs::restore_sregs(vcpu, &state.sregs)?;
        if let Some(saved) = state.sregs.pdptrs {
            pdptrs::restore_pdptrs(vcpu, &state.sregs, saved)?;
        }
        if let Some(nested) = &self.nested {
            nested::restore_nested_state(vcpu, nested)?;
        }
        xsave::restore_xsave(vcpu, &self.xsave)?;
        xsave::restore_xcrs(vcpu, &self.xcrs)?;
        regs::restore_debug_regs(vcpu, &state.debug_regs)?;
        lapic::restore_lapic(vcpu, &self.lapic)?;
        msr::set_msrs(vcpu, &state.msrs)?;
        events::restore_vcpu_events(vcpu, &state.vcpu_events)
    }
}

/// Checks one vCPU's state against what `host` offers, without touching any vCPU: what
/// [`restore_vcpu`] checks before its first write.
///
/// # Errors
///
/// As the checks of [`restore_vcpu`].
pub fn check_vcpu(state: &VcpuState, host: &HostSupport) -> Result<()> {
    CheckedVcpu::new(state, host).map(drop)
}

/// Writes a saved state into a vCPU that has not run yet.
///
/// Checks first, writing nothing when a check fails: the state's shape
/// ([`VcpuState::check`]), its CPUID feature flags against what `host` offers
/// ([`check_cpuid`]; a restore cannot skip it), and that its xsave area fits the host's.
/// Then writes, in this order (each step next to its state in this module's files):
///
/// 0. the TSC frequency, if saved and more than [`TSC_KHZ_TOLERANCE_PPM`] away from the
///    vCPU's: the TSC value (an MSR) and the LAPIC timer deadline are read at that frequency;
/// 1. CPUID: KVM derives which registers, MSRs and xsave components are valid from it, and
///    refuses to change it once the vCPU has run;
/// 2. mp_state, before the registers: KVM acts on some states at the next event processing
///    (`INIT_RECEIVED` resets the vCPU), so the registers written next are the final ones;
/// 3. general purpose registers (`KVM_SET_REGS` drops a pending exception, one reason the
///    events come last);
/// 4. sregs: control registers and EFER select the mode later state is checked against; also
///    `IA32_APIC_BASE`, which the LAPIC needs; then, if saved, the PAE PDPTRs
///    (`KVM_SET_SREGS2`: `KVM_SET_SREGS` reloaded them from guest memory);
///    then the nested state, if saved (KVM checks it against EFER.SVME and CR4.VMXE), before
///    the MSRs and events;
/// 5. xsave and 6. XCRs, after CPUID and sregs (checked against the guest CPUID);
/// 7. debug registers;
/// 8. the LAPIC, after sregs and before the MSRs (`IA32_TSC_DEADLINE` is accepted only once
///    the LAPIC timer is in TSC-deadline mode);
/// 9. MSRs, `IA32_TSC_DEADLINE` after `IA32_TSC`;
/// 10. events last: the writes above can clear pending exceptions and interrupts.
///
/// Safe to call on the thread that owns `vcpu` while other vCPUs are restored on theirs, after
/// the VM-wide state ([`restore_vm`](crate::restore_vm)).
///
/// # Errors
///
/// Before any write: [`KvmStateError::BadLength`], [`KvmStateError::CpuidDuplicate`],
/// [`KvmStateError::CpuidNotOffered`], [`KvmStateError::XsaveTooLarge`],
/// [`KvmStateError::TooManyEntries`]. After some writes (discard the vCPU):
/// [`KvmStateError::Ioctl`] naming the first ioctl that failed, [`KvmStateError::MsrWrite`]
/// naming the first refused MSR, [`KvmStateError::TscFrequency`].
pub fn restore_vcpu(vcpu: &VcpuFd, state: &VcpuState, host: &HostSupport) -> Result<()> {
    CheckedVcpu::new(state, host)?.write(vcpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::KvmStateError;
    use crate::test_util::at_app_version;
    use nested::NESTED_STATE_HEADER_SIZE;

    #[test]
    fn test_vcpu_state_versions() {
        let state = VcpuState {
            regs: Regs {
                rip: 0x8000,
                ..Default::default()
            },
            lapic: Lapic {
                regs: vec![7; LAPIC_REGS_SIZE],
            },
            tsc_khz: Some(2_500_000),
            ..Default::default()
        };
        // App version 2: everything, `tsc_khz` included.
        let (v2, v2_len) = at_app_version(&state, 2);
        assert_eq!(v2, state);
        // App version 1 (`VcpuState` v1) has no `tsc_khz`: 5 bytes fewer (tag + u32), and it
        // reads back as `None`, which makes `restore_vcpu` keep the target's frequency.
        let (v1, v1_len) = at_app_version(&state, 1);
        assert_eq!(v2_len - v1_len, 5);
        assert_eq!(
            v1,
            VcpuState {
                tsc_khz: None,
                ..state.clone()
            }
        );
    }

    #[test]
    fn test_vcpu_state_nested_state_from_app_version_4() {
        let mut blob = vec![0x11; NESTED_STATE_HEADER_SIZE + 8];
        blob[4..8].copy_from_slice(&136u32.to_le_bytes());
        let state = VcpuState {
            tsc_khz: Some(2_500_000),
            nested_state: Some(blob),
            ..Default::default()
        };
        let (v4, v4_len) = at_app_version(&state, 4);
        assert_eq!(v4, state);
        // App version 3 (`VcpuState` v2) has no `nested_state`: the tag, the length and the
        // blob fewer, and it reads back as `None`.
        let (v3, v3_len) = at_app_version(&state, 3);
        assert_eq!(v4_len - v3_len, 1 + 8 + 136);
        assert_eq!(
            v3,
            VcpuState {
                nested_state: None,
                ..state.clone()
            }
        );
        assert_eq!(VcpuState::version(), 3);
    }

    #[test]
    fn test_vcpu_state_check_refuses_bad_nested_state() {
        let state = VcpuState {
            nested_state: Some(vec![0; 3]),
            ..Default::default()
        };
        assert!(matches!(
            state.check(),
            Err(KvmStateError::BadLength {
                what: "nested state",
                found: 3,
                ..
            })
        ));
    }
}
