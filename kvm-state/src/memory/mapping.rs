//! Guest memory owned by the VMM: an anonymous or file-backed `mmap` that is unmapped on
//! drop.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::Arc;

use kvm_bindings::kvm_userspace_memory_region;

use super::error::{MemoryError, MemoryResult};
use super::{check_region, GuestRegionBytes};

/// One region of guest memory mapped into the VMM: anonymous memory, or a memory file
/// mapped `MAP_PRIVATE` (copy-on-write, demand-paged). Dropping it unmaps it.
///
/// Register it with KVM through [`kvm_region`](Self::kvm_region) and
/// `VmFd::set_user_memory_region`; the mapping must then outlive the VM's use of the slot
/// (drop the `VmFd`, or delete the slot, first).
///
/// # File-backed mappings
///
/// A mapping of a memory file holds the file open, so deleting or renaming the file
/// (every save in this module replaces files by `rename`) does not affect it. Pages the
/// guest or the VMM writes become private copies. Pages not yet written are read from the
/// file on first access, so *changing the file in place* while it is mapped is the
/// operator's error with the kernel's semantics: pages not yet copied show the new bytes,
/// and pages beyond a *truncated* end raise `SIGBUS` in a VMM thread that touches them
/// (e.g. a later save), while a vCPU's access comes back from `KVM_RUN` as `EFAULT`, or, on
/// a KVM that emulates the access, as an MMIO exit at an address in guest RAM (see
/// [`contains`](Self::contains); both pinned by `tests/memory_file.rs` and
/// `tests/memory_kvm.rs`). The length is checked when the file is mapped, and [`restore_memory_file`](super::restore_memory_file)
/// with [`RestoreMode::Eager`](super::RestoreMode::Eager) copies the file instead, for VMMs
/// that cannot trust the file to stay put.
#[derive(Debug)]
pub struct GuestMemoryMapping {
    addr: NonNull<u8>,
    size: usize,
    guest_phys_addr: u64,
    file: Option<Arc<File>>,
}

// SAFETY: the mapping is plain memory owned by this value; nothing in it is tied to the
// thread that created it, and shared access only hands out `&[u8]`.
unsafe impl Send for GuestMemoryMapping {}
// SAFETY: `&GuestMemoryMapping` only gives read access (`as_slice`, addresses); writing needs
// `&mut`.
unsafe impl Sync for GuestMemoryMapping {}

impl GuestMemoryMapping {
    /// Zeroed anonymous memory of `size` bytes for the guest region at `guest_phys_addr`.
    ///
    /// # Errors
    /// [`MemoryError::Region`] when the address or size is not a non-zero multiple of the
    /// page size, [`MemoryError::Map`] when `mmap` fails.
    pub fn anonymous(guest_phys_addr: u64, size: u64) -> MemoryResult<Self> {
        let len = check_region(guest_phys_addr, size)?;
        // SAFETY: a fresh anonymous private mapping: no address hint, no fd; the kernel
        // picks the place, so no existing memory is affected. The result is checked below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        Self::from_mmap(addr, len, guest_phys_addr, None)
    }

    /// Maps `size` bytes of `file` at `offset` copy-on-write. The caller has checked that the
    /// file holds them.
    pub(super) fn map_file(
        file: &Arc<File>,
        offset: u64,
        guest_phys_addr: u64,
        size: u64,
    ) -> MemoryResult<Self> {
        let len = check_region(guest_phys_addr, size)?;
        let offset = libc::off_t::try_from(offset).map_err(|_| MemoryError::Region {
            guest_phys_addr,
            size,
            reason: "file offset does not fit off_t",
        })?;
        // SAFETY: a new private mapping of `len` bytes of an open file descriptor that
        // `file` keeps open for the mapping's lifetime (the `Arc` is stored in the result);
        // no address hint, so no existing memory is affected. `MAP_PRIVATE` means writes
        // never reach the file. The result is checked below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_NORESERVE,
                file.as_raw_fd(),
                offset,
            )
        };
        Self::from_mmap(addr, len, guest_phys_addr, Some(Arc::clone(file)))
    }

    fn from_mmap(
        addr: *mut libc::c_void,
        len: usize,
        guest_phys_addr: u64,
        file: Option<Arc<File>>,
    ) -> MemoryResult<Self> {
        if addr == libc::MAP_FAILED {
            return Err(MemoryError::Map {
                guest_phys_addr,
                size: len as u64,
                source: io::Error::last_os_error(),
            });
        }
        let addr = NonNull::new(addr.cast::<u8>()).ok_or(MemoryError::Map {
            guest_phys_addr,
            size: len as u64,
            source: io::Error::other("mmap returned a null address"),
        })?;
        Ok(GuestMemoryMapping {
            addr,
            size: len,
            guest_phys_addr,
            file,
        })
    }

    /// Guest physical address of the first byte.
    pub fn guest_phys_addr(&self) -> u64 {
        self.guest_phys_addr
    }

    /// Size in bytes (a multiple of the page size).
    pub fn size(&self) -> u64 {
        self.size as u64
    }

    /// Host virtual address of the first byte, as `kvm_userspace_memory_region` wants it.
    pub fn host_addr(&self) -> u64 {
        self.addr.as_ptr() as u64
    }

    /// Whether guest physical address `guest_phys_addr` lies in this region. A VMM that gets
    /// an MMIO exit for an address in guest RAM must stop the VM: on a KVM that emulates the
    /// access, that is how a page of a memory file truncated under a lazy mapping shows up.
    pub fn contains(&self, guest_phys_addr: u64) -> bool {
        guest_phys_addr
            .checked_sub(self.guest_phys_addr)
            .is_some_and(|offset| offset < self.size as u64)
    }

    /// Whether this is a copy-on-write mapping of a memory file (lazy restore).
    pub fn is_file_backed(&self) -> bool {
        self.file.is_some()
    }

    /// The region's bytes. While a vCPU runs it may change them underneath: read them with
    /// the vCPUs paused (as every save does).
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `addr` is the start of a live mapping of `size` readable bytes, owned by
        // `self` and unmapped only in `drop`; the slice borrows `self`.
        unsafe { std::slice::from_raw_parts(self.addr.as_ptr(), self.size) }
    }

    /// The region's bytes, writable (loading a guest, applying a diff).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and the mapping is writable; `&mut self` makes this the
        // only slice of it in the VMM.
        unsafe { std::slice::from_raw_parts_mut(self.addr.as_ptr(), self.size) }
    }

    /// The region as input to the save functions.
    pub fn region(&self) -> GuestRegionBytes<'_> {
        GuestRegionBytes {
            guest_phys_addr: self.guest_phys_addr,
            bytes: self.as_slice(),
        }
    }

    /// The KVM memory-slot description of this mapping, for `VmFd::set_user_memory_region`
    /// (`flags`: e.g. `KVM_MEM_LOG_DIRTY_PAGES` for diff snapshots).
    pub fn kvm_region(&self, slot: u32, flags: u32) -> kvm_userspace_memory_region {
        kvm_userspace_memory_region {
            slot,
            flags,
            guest_phys_addr: self.guest_phys_addr,
            memory_size: self.size as u64,
            userspace_addr: self.host_addr(),
        }
    }
}

impl Drop for GuestMemoryMapping {
    fn drop(&mut self) {
        // SAFETY: `addr`/`size` are exactly the mapping created in `from_mmap`, unmapped only
        // here; every slice of it borrowed `self`, so none outlives this call.
        unsafe {
            libc::munmap(self.addr.as_ptr().cast(), self.size);
        }
    }
}
