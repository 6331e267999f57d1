//! Pending and injected events ([`VcpuEvents`]: exceptions, interrupts, NMIs, SMIs, triple
//! faults), with their save and restore steps.

use kvm_bindings::kvm_vcpu_events;
use kvm_ioctls::VcpuFd;
use versionize::prelude::Versionize;

use crate::error::{KvmStateError, Result};

/// A pending or injected exception (`kvm_vcpu_events.exception`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct ExceptionEvent {
    /// The exception is being injected.
    pub injected: u8,
    /// Exception vector.
    pub nr: u8,
    /// `error_code` is valid.
    pub has_error_code: u8,
    /// The exception is pending (not yet injected).
    pub pending: u8,
    /// Error code pushed with the exception.
    pub error_code: u32,
}

/// A pending or injected external or soft interrupt (`kvm_vcpu_events.interrupt`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct InterruptEvent {
    /// The interrupt is being injected.
    pub injected: u8,
    /// Interrupt vector.
    pub nr: u8,
    /// Software interrupt (`int n`).
    pub soft: u8,
    /// Interrupt shadow (after `sti` or `mov ss`).
    pub shadow: u8,
}

/// NMI state (`kvm_vcpu_events.nmi`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct NmiEvent {
    /// An NMI is being injected.
    pub injected: u8,
    /// An NMI is pending.
    pub pending: u8,
    /// NMIs are blocked.
    pub masked: u8,
}

/// System management mode state (`kvm_vcpu_events.smi`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct SmiEvent {
    /// The vCPU is in SMM.
    pub smm: u8,
    /// An SMI is pending.
    pub pending: u8,
    /// SMM was entered while an NMI was being handled.
    pub smm_inside_nmi: u8,
    /// An INIT was latched while in SMM.
    pub latched_init: u8,
}

/// Triple fault state (`kvm_vcpu_events.triple_fault`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct TripleFaultEvent {
    /// A triple fault is pending.
    pub pending: u8,
}

/// Pending exceptions, interrupts, NMIs and SMIs (`kvm_vcpu_events`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Versionize, serde::Serialize)]
pub struct VcpuEvents {
    /// Exception state.
    pub exception: ExceptionEvent,
    /// Interrupt state.
    pub interrupt: InterruptEvent,
    /// NMI state.
    pub nmi: NmiEvent,
    /// SIPI vector of a pending startup IPI.
    pub sipi_vector: u32,
    /// `KVM_VCPUEVENT_VALID_*` flags telling which fields are valid.
    pub flags: u32,
    /// SMM state.
    pub smi: SmiEvent,
    /// Triple fault state.
    pub triple_fault: TripleFaultEvent,
    /// `exception_payload` is valid.
    pub exception_has_payload: u8,
    /// Exception payload (e.g. CR2 of a page fault, DR6 of a debug exception).
    pub exception_payload: u64,
}

impl From<&kvm_vcpu_events> for VcpuEvents {
    fn from(e: &kvm_vcpu_events) -> Self {
        VcpuEvents {
            exception: ExceptionEvent {
                injected: e.exception.injected,
                nr: e.exception.nr,
                has_error_code: e.exception.has_error_code,
                pending: e.exception.pending,
                error_code: e.exception.error_code,
            },
            interrupt: InterruptEvent {
                injected: e.interrupt.injected,
                nr: e.interrupt.nr,
                soft: e.interrupt.soft,
                shadow: e.interrupt.shadow,
            },
            nmi: NmiEvent {
                injected: e.nmi.injected,
                pending: e.nmi.pending,
                masked: e.nmi.masked,
            },
            sipi_vector: e.sipi_vector,
            flags: e.flags,
            smi: SmiEvent {
                smm: e.smi.smm,
                pending: e.smi.pending,
                smm_inside_nmi: e.smi.smm_inside_nmi,
                latched_init: e.smi.latched_init,
            },
            triple_fault: TripleFaultEvent {
                pending: e.triple_fault.pending,
            },
            exception_has_payload: e.exception_has_payload,
            exception_payload: e.exception_payload,
        }
    }
}

impl From<&VcpuEvents> for kvm_vcpu_events {
    fn from(e: &VcpuEvents) -> Self {
        let mut out = kvm_vcpu_events::default();
        out.exception.injected = e.exception.injected;
        out.exception.nr = e.exception.nr;
        out.exception.has_error_code = e.exception.has_error_code;
        out.exception.pending = e.exception.pending;
        out.exception.error_code = e.exception.error_code;
        out.interrupt.injected = e.interrupt.injected;
        out.interrupt.nr = e.interrupt.nr;
        out.interrupt.soft = e.interrupt.soft;
        out.interrupt.shadow = e.interrupt.shadow;
        out.nmi.injected = e.nmi.injected;
        out.nmi.pending = e.nmi.pending;
        out.nmi.masked = e.nmi.masked;
        out.sipi_vector = e.sipi_vector;
        out.flags = e.flags;
        out.smi.smm = e.smi.smm;
        out.smi.pending = e.smi.pending;
        out.smi.smm_inside_nmi = e.smi.smm_inside_nmi;
        out.smi.latched_init = e.smi.latched_init;
        out.triple_fault.pending = e.triple_fault.pending;
        out.exception_has_payload = e.exception_has_payload;
        out.exception_payload = e.exception_payload;
        out
    }
}

/// Save step, last of all: the GET ioctls before it may update KVM's internal event state
/// (`KVM_GET_MP_STATE` processes pending LAPIC events), so the events are read once the
/// others are done and describe the vCPU as they left it.
pub(super) fn save_vcpu_events(vcpu: &VcpuFd) -> Result<VcpuEvents> {
    let events = vcpu
        .get_vcpu_events()
        .map_err(KvmStateError::ioctl("KVM_GET_VCPU_EVENTS"))?;
    Ok(VcpuEvents::from(&events))
}

/// Restore step, last of all: `KVM_SET_REGS`, `KVM_SET_SREGS` and `KVM_SET_LAPIC` can clear
/// pending exceptions and interrupts; this puts them back.
pub(super) fn restore_vcpu_events(vcpu: &VcpuFd, events: &VcpuEvents) -> Result<()> {
    vcpu.set_vcpu_events(&events.into())
        .map_err(KvmStateError::ioctl("KVM_SET_VCPU_EVENTS"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{patterned, through_bytes};

    #[test]
    fn test_vcpu_events_roundtrip() {
        let mut orig: kvm_vcpu_events = patterned();
        orig.nmi.pad = 0;
        orig.reserved = [0; 26];
        let ours = through_bytes(&VcpuEvents::from(&orig));
        assert_eq!(ours.smi.latched_init, orig.smi.latched_init);
        assert_eq!(ours.exception_payload, orig.exception_payload);
        let back = kvm_vcpu_events::from(&ours);
        assert_eq!(back, orig);
    }
}
