//! Nested-virtualization state (`KVM_{GET,SET}_NESTED_STATE`): what KVM holds for a guest
//! that runs guests of its own (Intel VMX: the VMXON region, the current VMCS12 and its
//! shadow; AMD SVM: the VMCB12), with its save and restore steps.
//!
//! A guest hypervisor that executed `VMXON` (or set `EFER.SVME`) and runs a nested guest
//! keeps part of its state only inside KVM; without it a restored L1 finds its L2 gone and
//! usually crashes. [`VcpuState::nested_state`](super::VcpuState::nested_state) keeps the
//! kernel's blob as it is (header and data, the header's `size` bytes), since its layout is
//! the kernel's and versioned by the kernel's own `format` field.

use kvm_bindings::KVM_CAP_NESTED_STATE;
use kvm_ioctls::{KvmNestedStateBuffer, VcpuFd, VmFd};

use crate::error::{KvmStateError, Result};

/// Bytes of the kernel's `struct kvm_nested_state` header (flags, format, size, the
/// VMX/SVM header union).
pub(crate) const NESTED_STATE_HEADER_SIZE: usize = 128;

/// The largest nested state this crate reads or writes: the header and one VMX VMCS12 and
/// its shadow (the larger of VMX's and SVM's data).
pub(crate) const MAX_NESTED_STATE_SIZE: usize = size_of::<KvmNestedStateBuffer>();

// `KvmNestedStateBuffer` is the kernel's header followed by a union of plain byte arrays:
// no padding, so its bytes are all initialised and every byte pattern is a valid value.
const _: () = assert!(MAX_NESTED_STATE_SIZE == NESTED_STATE_HEADER_SIZE + 2 * 4096);

/// Checks a saved nested state's shape: at least the header, at most
/// [`MAX_NESTED_STATE_SIZE`], and as long as the header's `size` says.
///
/// # Errors
///
/// [`KvmStateError::BadLength`] naming `nested state` (the blob's length out of range) or
/// `nested state size field` (the header disagrees with the blob).
pub(crate) fn check_nested_state(blob: &[u8]) -> Result<()> {
    if !(NESTED_STATE_HEADER_SIZE..=MAX_NESTED_STATE_SIZE).contains(&blob.len()) {
        return Err(KvmStateError::BadLength {
            what: "nested state",
            found: blob.len(),
            expected: NESTED_STATE_HEADER_SIZE,
        });
    }
    let size = u32::from_le_bytes([blob[4], blob[5], blob[6], blob[7]]) as usize;
    if size != blob.len() {
        return Err(KvmStateError::BadLength {
            what: "nested state size field",
            found: size,
            expected: blob.len(),
        });
    }
    Ok(())
}

/// The kernel buffer of a checked blob (see [`check_nested_state`]); bytes past the blob
/// are zero.
pub(crate) fn to_kvm(blob: &[u8]) -> Result<Box<KvmNestedStateBuffer>> {
    check_nested_state(blob)?;
    let mut buffer = Box::new(KvmNestedStateBuffer::empty());
    let ptr: *mut KvmNestedStateBuffer = &mut *buffer;
    // SAFETY: `blob.len() <= MAX_NESTED_STATE_SIZE == size_of::<KvmNestedStateBuffer>()`
    // (checked above), so the copy stays inside the buffer, which does not overlap `blob`;
    // the buffer is made of integers and byte arrays, valid for any byte pattern.
    unsafe { std::ptr::copy_nonoverlapping(blob.as_ptr(), ptr.cast::<u8>(), blob.len()) };
    Ok(buffer)
}

/// Save step: `KVM_GET_NESTED_STATE` when the host's KVM has `KVM_CAP_NESTED_STATE`
/// (`None` otherwise: a host without nested virtualization has no such state). The header is
/// kept even when no nested guest runs: it records a VMXON done by the guest.
pub(super) fn save_nested_state(vm: &VmFd, vcpu: &VcpuFd) -> Result<Option<Vec<u8>>> {
    if vm.check_extension_raw(KVM_CAP_NESTED_STATE.into()) <= 0 {
        return Ok(None);
    }
    let mut buffer = Box::new(KvmNestedStateBuffer::empty());
    vcpu.nested_state(&mut buffer)
        .map_err(KvmStateError::ioctl("KVM_GET_NESTED_STATE"))?;
    let len = (buffer.size as usize).clamp(NESTED_STATE_HEADER_SIZE, MAX_NESTED_STATE_SIZE);
    let ptr: *const KvmNestedStateBuffer = &*buffer;
    // SAFETY: `len <= size_of::<KvmNestedStateBuffer>()`, so the slice lies inside the boxed
    // buffer, which lives until the copy ends; it has no padding (see the assertion above),
    // so every byte is initialised.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    Ok(Some(bytes.to_vec()))
}

/// Restore step: `KVM_SET_NESTED_STATE`, after the segment and control registers (EFER.SVME,
/// CR4.VMXE) and before the MSRs and the events.
pub(super) fn restore_nested_state(vcpu: &VcpuFd, buffer: &KvmNestedStateBuffer) -> Result<()> {
    vcpu.set_nested_state(buffer)
        .map_err(KvmStateError::ioctl("KVM_SET_NESTED_STATE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(len: usize) -> Vec<u8> {
        let mut blob = vec![0xa5; len];
        blob[4..8].copy_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
        blob
    }

    #[test]
    fn test_check_nested_state_accepts_header_and_full() {
        check_nested_state(&blob(NESTED_STATE_HEADER_SIZE)).unwrap();
        check_nested_state(&blob(MAX_NESTED_STATE_SIZE)).unwrap();
        let buffer = to_kvm(&blob(NESTED_STATE_HEADER_SIZE + 16)).unwrap();
        assert_eq!(buffer.size as usize, NESTED_STATE_HEADER_SIZE + 16);
        assert_eq!(buffer.flags, 0xa5a5);
    }

    #[test]
    fn test_check_nested_state_refuses_bad_lengths() {
        for len in [
            0,
            7,
            NESTED_STATE_HEADER_SIZE - 1,
            MAX_NESTED_STATE_SIZE + 1,
        ] {
            let error = check_nested_state(&vec![0; len]).unwrap_err();
            assert!(
                matches!(error, KvmStateError::BadLength { what: "nested state", found, .. } if found == len),
                "{len}: {error}"
            );
        }
        let mut lying = blob(NESTED_STATE_HEADER_SIZE);
        lying[4..8].copy_from_slice(&9000u32.to_le_bytes());
        assert!(matches!(
            to_kvm(&lying),
            Err(KvmStateError::BadLength {
                what: "nested state size field",
                found: 9000,
                ..
            })
        ));
    }
}
