//! The local APIC ([`Lapic`]) and the multiprocessing state ([`MpState`], which KVM derives
//! from LAPIC events: INIT, SIPI, a halted vCPU's wake-up), with their save and restore steps.

use kvm_bindings::{kvm_lapic_state, kvm_mp_state};
use kvm_ioctls::VcpuFd;
use versionize::prelude::Versionize;

use crate::error::{KvmStateError, Result};

/// Size in bytes of the LAPIC register page.
pub const LAPIC_REGS_SIZE: usize = kvm_bindings::KVM_APIC_REG_SIZE as usize;

/// The local APIC register page (`kvm_lapic_state`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct Lapic {
    /// The 1024-byte register page as KVM lays it out.
    pub regs: Vec<u8>,
}

impl From<&kvm_lapic_state> for Lapic {
    fn from(l: &kvm_lapic_state) -> Self {
        Lapic {
            // c_char -> u8 keeps the bit pattern.
            regs: l.regs.iter().map(|&b| b as u8).collect(),
        }
    }
}

impl TryFrom<&Lapic> for kvm_lapic_state {
    type Error = KvmStateError;

    fn try_from(l: &Lapic) -> Result<Self> {
        let mut out = kvm_lapic_state::default();
        if l.regs.len() != out.regs.len() {
            return Err(KvmStateError::BadLength {
                what: "lapic registers",
                found: l.regs.len(),
                expected: out.regs.len(),
            });
        }
        for (dst, &src) in out.regs.iter_mut().zip(&l.regs) {
            // u8 -> c_char keeps the bit pattern.
            *dst = src as std::os::raw::c_char;
        }
        Ok(out)
    }
}

/// Multiprocessing state, e.g. runnable or halted (`kvm_mp_state`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct MpState {
    /// One of the `KVM_MP_STATE_*` values.
    pub mp_state: u32,
}

impl From<&kvm_mp_state> for MpState {
    fn from(m: &kvm_mp_state) -> Self {
        MpState {
            mp_state: m.mp_state,
        }
    }
}

impl From<&MpState> for kvm_mp_state {
    fn from(m: &MpState) -> Self {
        kvm_mp_state {
            mp_state: m.mp_state,
        }
    }
}

/// Save step, first of all: `KVM_GET_MP_STATE` processes pending LAPIC events (INIT/SIPI, a
/// pending timer wake-up of a halted vCPU) and so can change the LAPIC and run state;
/// everything read afterwards then agrees with it.
pub(super) fn save_mp_state(vcpu: &VcpuFd) -> Result<MpState> {
    let mp_state = vcpu
        .get_mp_state()
        .map_err(KvmStateError::ioctl("KVM_GET_MP_STATE"))?;
    Ok(MpState::from(&mp_state))
}

/// Save step, after [`save_mp_state`]: `KVM_GET_LAPIC`.
pub(super) fn save_lapic(vcpu: &VcpuFd) -> Result<Lapic> {
    let lapic = vcpu
        .get_lapic()
        .map_err(KvmStateError::ioctl("KVM_GET_LAPIC"))?;
    Ok(Lapic::from(&lapic))
}

/// Restore step, before the registers: KVM acts on some states at the next event processing
/// (`INIT_RECEIVED` resets the vCPU), so the registers written after it are the final ones.
pub(super) fn restore_mp_state(vcpu: &VcpuFd, mp_state: &MpState) -> Result<()> {
    vcpu.set_mp_state(mp_state.into())
        .map_err(KvmStateError::ioctl("KVM_SET_MP_STATE"))
}

/// Restore step: `KVM_SET_LAPIC`, after sregs (which carry `IA32_APIC_BASE`: enable, x2APIC
/// mode) and before the MSRs (`IA32_TSC_DEADLINE` is accepted only once the LAPIC timer is
/// in TSC-deadline mode).
pub(super) fn restore_lapic(vcpu: &VcpuFd, lapic: &kvm_lapic_state) -> Result<()> {
    vcpu.set_lapic(lapic)
        .map_err(KvmStateError::ioctl("KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{patterned, through_bytes};

    #[test]
    fn test_lapic_roundtrip() {
        let orig: kvm_lapic_state = patterned();
        let ours = through_bytes(&Lapic::from(&orig));
        assert_eq!(ours.regs.len(), LAPIC_REGS_SIZE);
        assert!(
            ours.regs.iter().any(|&b| b > 0x7f),
            "bit pattern of c_char kept"
        );
        let back = kvm_lapic_state::try_from(&ours).unwrap();
        assert_eq!(back.regs, orig.regs);
    }

    #[test]
    fn test_lapic_bad_length() {
        let ours = Lapic {
            regs: vec![0; 1000],
        };
        assert!(matches!(
            kvm_lapic_state::try_from(&ours),
            Err(KvmStateError::BadLength {
                what: "lapic registers",
                found: 1000,
                expected: 1024
            })
        ));
    }

    #[test]
    fn test_mp_state_roundtrip() {
        let orig: kvm_mp_state = patterned();
        assert_eq!(
            kvm_mp_state::from(&through_bytes(&MpState::from(&orig))),
            orig
        );
    }
}
