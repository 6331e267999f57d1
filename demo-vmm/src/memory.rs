//! Guest memory: one anonymous host mapping.

use crate::error::{DemoVmError, Result};

/// Anonymous host memory backing the guest, unmapped on drop.
#[derive(Debug)]
pub(crate) struct GuestMemory {
    addr: *mut u8,
    size: usize,
}

// SAFETY: `GuestMemory` owns its mapping exclusively (like a `Box<[u8]>`); moving it to another
// thread moves that ownership. Sharing `&GuestMemory` only allows reads (`read_all`).
unsafe impl Send for GuestMemory {}
// SAFETY: see `Send`: through `&GuestMemory` the host only reads, and the guest (which may write
// concurrently while vCPUs run) is never running while the VMM reads: `DemoVm::run` holds
// `&mut` of the VM until every vCPU thread has stopped.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    pub(crate) fn new(size: usize) -> Result<Self> {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
        // no existing memory; the result is checked for MAP_FAILED before use.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(DemoVmError::GuestMemory {
                size,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(GuestMemory {
            addr: addr.cast(),
            size,
        })
    }

    /// Host address of the mapping, for `KVM_SET_USER_MEMORY_REGION`.
    pub(crate) fn host_addr(&self) -> u64 {
        self.addr as u64
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// A copy of all of it.
    pub(crate) fn read_all(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.size];
        // SAFETY: the mapping is valid for `size` bytes while `self` lives and `out` has the
        // same length; no vCPU runs while the VMM holds the VM (see `Sync`).
        unsafe { std::ptr::copy_nonoverlapping(self.addr, out.as_mut_ptr(), out.len()) };
        out
    }

    /// Copies `data` to guest physical address `offset`.
    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let start = usize::try_from(offset)
            .ok()
            .filter(|&o| {
                o.checked_add(data.len())
                    .is_some_and(|end| end <= self.size)
            })
            .ok_or(DemoVmError::GuestMemoryBounds {
                offset,
                len: data.len(),
            })?;
        // SAFETY: the check above proved `start + data.len() <= size`, so the destination
        // lies in the live mapping; `data` is a distinct host buffer; `&mut self` means no
        // vCPU runs.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.addr.add(start), data.len());
        }
        Ok(())
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: `addr`/`size` are exactly the mapping created in `new`, unmapped only here;
        // the VM using it has been dropped before (field order of `DemoVm`).
        unsafe {
            libc::munmap(self.addr.cast(), self.size);
        }
    }
}
