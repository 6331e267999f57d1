//! The TSC frequency of a vCPU, with its save and restore steps.

use kvm_ioctls::VcpuFd;

use crate::error::{KvmStateError, Result};

/// Largest TSC frequency difference, in parts per million, that a restore tolerates without
/// calling `KVM_SET_TSC_KHZ`.
pub const TSC_KHZ_TOLERANCE_PPM: u64 = 250;

/// Sets the TSC frequency of `vcpu` to `saved_khz` if it differs by more than
/// [`TSC_KHZ_TOLERANCE_PPM`].
///
/// # Errors
///
/// [`KvmStateError::TscFrequency`] if the frequencies differ (or the current one is unknown)
/// and `KVM_SET_TSC_KHZ` fails.
pub fn restore_tsc_khz(vcpu: &VcpuFd, saved_khz: u32) -> Result<()> {
    let current = vcpu.get_tsc_khz().ok();
    if let Some(current) = current {
        let diff = u64::from(current.abs_diff(saved_khz));
        if diff * 1_000_000 <= u64::from(saved_khz) * TSC_KHZ_TOLERANCE_PPM {
            return Ok(());
        }
    }
    vcpu.set_tsc_khz(saved_khz)
        .map_err(|source| KvmStateError::TscFrequency {
            saved_khz,
            current_khz: current,
            source,
        })
}

/// Save step: `KVM_GET_TSC_KHZ`, optional: the kernel refuses it when the host TSC is
/// unstable.
pub(super) fn save_tsc_khz(vcpu: &VcpuFd) -> Option<u32> {
    vcpu.get_tsc_khz().ok()
}
