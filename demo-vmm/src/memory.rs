//! Guest memory: one `vm-memory` region at guest physical address 0.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::error::{DemoVmError, Result};

/// The guest's memory, shared by the vCPUs (through KVM) and the virtio device.
pub(crate) type Memory = GuestMemoryMmap<()>;

/// Maps `size` bytes of anonymous memory at guest physical address 0.
pub(crate) fn new(size: usize) -> Result<Memory> {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)])
        .map_err(|source| DemoVmError::GuestMemory { size, source })
}

/// Host address of guest physical address 0, for `KVM_SET_USER_MEMORY_REGION`.
pub(crate) fn host_addr(memory: &Memory) -> Result<u64> {
    memory
        .get_host_address(GuestAddress(0))
        .map(|p| p as u64)
        .map_err(|_| DemoVmError::GuestMemoryBounds { offset: 0, len: 1 })
}

/// A copy of all of it.
pub(crate) fn read_all(memory: &Memory) -> Vec<u8> {
    let size = usize::try_from(memory.last_addr().0).map_or(0, |last| last + 1);
    let mut out = vec![0u8; size];
    // The range is exactly the region's, so the read cannot fail; keep zeros if it did.
    let _ = memory.read_slice(&mut out, GuestAddress(0));
    out
}

/// Copies `data` to guest physical address `offset`.
pub(crate) fn write(memory: &Memory, offset: u64, data: &[u8]) -> Result<()> {
    memory
        .write_slice(data, GuestAddress(offset))
        .map_err(|_| DemoVmError::GuestMemoryBounds {
            offset,
            len: data.len(),
        })
}
