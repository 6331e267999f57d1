//! Guest memory: one region at guest physical address 0, owned by a
//! [`kvm_state::GuestMemoryMapping`] (anonymous, or a memory file mapped `MAP_PRIVATE` on a
//! lazy restore), seen by the devices through a `vm-memory` view whose dirty bitmap records
//! the pages the VMM itself writes (KVM's dirty log has only the guest's writes).

use kvm_state::{GuestMemoryMapping, GuestRegionBytes};
use vm_memory::bitmap::AtomicBitmap;
use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap, MmapRegion,
};

use crate::error::{DemoVmError, Result};

/// The guest's memory as the vCPU threads' devices and the virtio device see it.
pub(crate) type Memory = GuestMemoryMmap<AtomicBitmap>;

/// Guest memory: the mapping that owns the pages and a `vm-memory` view of the same pages.
pub(crate) struct GuestRam {
    // Field order is drop order: the view, which points into the mapping, goes first.
    view: Memory,
    mapping: GuestMemoryMapping,
}

impl std::fmt::Debug for GuestRam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestRam")
            .field("size", &self.mapping.size())
            .field("file_backed", &self.mapping.is_file_backed())
            .finish()
    }
}

impl GuestRam {
    /// `size` bytes of zeroed anonymous memory at guest physical address 0.
    pub(crate) fn anonymous(size: u64) -> Result<GuestRam> {
        let mapping =
            GuestMemoryMapping::anonymous(0, size).map_err(|source| DemoVmError::GuestMemory {
                size,
                source: Box::new(source),
            })?;
        GuestRam::from_mapping(mapping)
    }

    /// Guest memory over an existing mapping (e.g. a restored memory file).
    pub(crate) fn from_mapping(mapping: GuestMemoryMapping) -> Result<GuestRam> {
        let size = mapping.size();
        let len = usize::try_from(size).map_err(|_| DemoVmError::GuestMemoryBounds {
            offset: 0,
            len: usize::MAX,
        })?;
        // SAFETY: `host_addr()..+len` is exactly the live, page-aligned, readable and
        // writable private mapping owned by `mapping`, which this `GuestRam` keeps and drops
        // after the view (field order); the prot and flags are the ones it was mapped with
        // (`MAP_PRIVATE`; `build_raw` records them and, not owning the mapping, never unmaps
        // it).
        let region = unsafe {
            MmapRegion::<AtomicBitmap>::build_raw(
                mapping.host_addr() as *mut u8,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_NORESERVE,
            )
        }
        .map_err(|_| DemoVmError::GuestMemoryBounds { offset: 0, len })?;
        let region = GuestRegionMmap::new(region, GuestAddress(0))
            .ok_or(DemoVmError::GuestMemoryBounds { offset: 0, len })?;
        let view = GuestMemoryMmap::from_regions(vec![region])
            .map_err(|_| DemoVmError::GuestMemoryBounds { offset: 0, len })?;
        Ok(GuestRam { view, mapping })
    }

    /// The `vm-memory` view, for the devices.
    pub(crate) fn view(&self) -> &Memory {
        &self.view
    }

    /// The size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.mapping.size()
    }

    /// Host address of guest physical address 0, for `KVM_SET_USER_MEMORY_REGION`.
    pub(crate) fn host_addr(&self) -> u64 {
        self.mapping.host_addr()
    }

    /// Whether the memory is a memory file mapped copy-on-write (a lazy restore).
    pub(crate) fn is_file_backed(&self) -> bool {
        self.mapping.is_file_backed()
    }

    /// The memory as input to a save. Read with the vCPUs paused.
    pub(crate) fn region(&self) -> GuestRegionBytes<'_> {
        self.mapping.region()
    }

    /// The pages the VMM wrote through the view since the last call, one bit per page as
    /// `KVM_GET_DIRTY_LOG` gives them; clears the record.
    pub(crate) fn take_vmm_dirty_bitmap(&self) -> Vec<u64> {
        self.view
            .iter()
            .next()
            .map(|region| region.bitmap().get_and_reset())
            .unwrap_or_default()
    }

    /// A copy of all of it.
    pub(crate) fn read_all(&self) -> Vec<u8> {
        self.mapping.as_slice().to_vec()
    }

    /// Copies `data` to guest physical address `offset`.
    pub(crate) fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        write(&self.view, offset, data)
    }
}

/// Maps `size` bytes of anonymous memory at guest physical address 0, with no owner beyond
/// the view (for unit tests of the devices).
#[cfg(test)]
pub(crate) fn new(size: usize) -> Result<Memory> {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)]).map_err(|_| {
        DemoVmError::GuestMemoryBounds {
            offset: 0,
            len: size,
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_guest_ram_records_the_pages_the_vmm_writes() {
        let ram = GuestRam::anonymous(1 << 20).unwrap();
        assert!(ram.take_vmm_dirty_bitmap().iter().all(|&word| word == 0));
        ram.write(5 * 4096 + 10, &[1, 2, 3]).unwrap();
        ram.write(70 * 4096, &[4]).unwrap();
        let dirty = ram.take_vmm_dirty_bitmap();
        assert_eq!(dirty.len(), 256 / 64);
        assert_eq!(dirty[0], 1 << 5);
        assert_eq!(dirty[1], 1 << (70 - 64));
        // The record starts again after each read.
        assert!(ram.take_vmm_dirty_bitmap().iter().all(|&word| word == 0));
        // The view and the mapping are the same pages.
        assert_eq!(
            &ram.region().bytes[5 * 4096 + 10..5 * 4096 + 13],
            &[1, 2, 3]
        );
        assert!(ram.write(1 << 20, &[0]).is_err());
    }
}
