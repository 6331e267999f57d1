//! Guest memory at real sizes: a VM with more memory, and snapshots whose guest memory is in
//! a memory file beside the state file (lazily mapped back on restore), in a diff on top of
//! an earlier snapshot (from KVM's dirty log and the VMM's own writes), or in a shared chunk
//! store.

use std::path::Path;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::Kvm;
use kvm_state::{
    kvm_dirty_bitmap, ChunkSaveStats, ChunkStore, DiffRegion, GuestMemoryMapping, MemoryDiffInfo,
    MemoryLayerId, MemoryRegionState, MemorySource, MicrovmState, RestoreMode,
};

use crate::error::{DemoVmError, Result};
use crate::guest::MAX_MEM_SIZE;
use crate::memory::GuestRam;
use crate::vm::DemoVm;

/// 2 MiB: the guest maps its memory in pages of this size.
const LARGE_PAGE: u64 = 2 << 20;

/// Checks that the demo guest can use `size` bytes of memory.
pub(crate) fn check_memory_size(size: u64) -> Result<()> {
    if size == 0 || size % LARGE_PAGE != 0 || size > MAX_MEM_SIZE {
        return Err(DemoVmError::MemorySize { size });
    }
    Ok(())
}

impl DemoVm {
    /// Like [`DemoVm::new`] with `size` bytes of guest memory (a multiple of 2 MiB, at most
    /// [`MAX_MEM_SIZE`]); the guest then touches pages across all of it (see
    /// [`crate::expected_output_for`]).
    ///
    /// # Errors
    ///
    /// [`DemoVmError::MemorySize`] for a size the guest cannot use, and those of
    /// [`DemoVm::new`].
    pub fn with_memory_size(size: u64) -> Result<Self> {
        check_memory_size(size)?;
        let kvm = Kvm::new().map_err(DemoVmError::OpenKvm)?;
        DemoVm::with_ram(&kvm, GuestRam::anonymous(size)?)
    }

    /// Like [`DemoVm::new`] with `memory` as guest memory, e.g. a memory file mapped by
    /// [`kvm_state::restore_memory_file`]: one region at guest address 0 whose size the guest
    /// can use.
    ///
    /// # Errors
    ///
    /// [`DemoVmError::MemorySize`] for a mapping that is not one region at 0 of a usable size,
    /// and those of [`DemoVm::new`].
    pub fn with_memory(memory: GuestMemoryMapping) -> Result<Self> {
        if memory.guest_phys_addr() != 0 {
            return Err(DemoVmError::MemorySize {
                size: memory.size(),
            });
        }
        check_memory_size(memory.size())?;
        let kvm = Kvm::new().map_err(DemoVmError::OpenKvm)?;
        DemoVm::with_ram(&kvm, GuestRam::from_mapping(memory)?)
    }

    /// The size of guest memory in bytes.
    pub fn memory_size(&self) -> u64 {
        self.ram().size()
    }

    /// Whether guest memory is a memory file mapped copy-on-write (after a lazy restore).
    pub fn memory_is_file_backed(&self) -> bool {
        self.ram().is_file_backed()
    }

    /// Turns on KVM's dirty-page log for guest memory (`KVM_MEM_LOG_DIRTY_PAGES`), which
    /// [`DemoVm::save_diff`] reads. Turn it on before the snapshot that a diff will be taken
    /// against.
    ///
    /// # Errors
    ///
    /// [`DemoVmError::Ioctl`] if KVM refuses the flag.
    pub fn enable_dirty_log(&mut self) -> Result<()> {
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: KVM_MEM_LOG_DIRTY_PAGES,
            guest_phys_addr: 0,
            memory_size: self.ram().size(),
            userspace_addr: self.ram().host_addr(),
        };
        // SAFETY: the same slot, address and size as registered when the VM was created (the
        // live mapping owned by `self`, dropped after the VM fd), with only the flags changed.
        unsafe { self.vm().set_user_memory_region(region) }.map_err(|source| {
            DemoVmError::Ioctl {
                ioctl: "KVM_SET_USER_MEMORY_REGION",
                source,
            }
        })?;
        // The VMM's record starts now too.
        self.ram().take_vmm_dirty_bitmap();
        Ok(())
    }

    /// Saves the paused VM (as [`DemoVm::save_microvm`]) to the state file `path` and guest
    /// memory to the memory file beside it (`<path>.mem`) with
    /// [`MicrovmState::save_with_memory`] at `app_version` (memory inline for app versions
    /// before 4 if it fits, refused otherwise). Returns the state as written; its
    /// [`MemorySource::File`] layer is the base for [`DemoVm::save_diff`]. With the dirty log
    /// on, the record of dirty pages starts again from this snapshot.
    ///
    /// # Errors
    ///
    /// Those of [`DemoVm::save_microvm`] and [`MicrovmState::save_with_memory`], and
    /// [`DemoVmError::MemoryFile`] if the dirty log cannot be read.
    pub fn save_with_memory(
        &mut self,
        path: impl AsRef<Path>,
        app_version: u16,
    ) -> Result<MicrovmState> {
        let state = self.save_microvm_with(self.regions_without_contents())?;
        let written = state.save_with_memory(path, app_version, &[self.ram().region()])?;
        self.reset_dirty_log()?;
        Ok(written)
    }

    /// Saves the paused VM to the state file `path` and, beside it, a diff of guest memory
    /// on top of memory layer `base` (the previous snapshot's): the pages the guest wrote
    /// since then (KVM's dirty log, see [`DemoVm::enable_dirty_log`]) and those the VMM wrote
    /// (the virtio device's responses and used ring, through `vm-memory`'s dirty bitmap).
    /// Returns the state as written and what the diff holds.
    ///
    /// # Errors
    ///
    /// [`DemoVmError::MemoryFile`] (`DirtyLog`) when the dirty log is off, and those of
    /// [`MicrovmState::save_diff_with_memory`].
    pub fn save_diff(
        &mut self,
        path: impl AsRef<Path>,
        app_version: u16,
        base: MemoryLayerId,
    ) -> Result<(MicrovmState, MemoryDiffInfo)> {
        let state = self.save_microvm_with(self.regions_without_contents())?;
        let mut dirty = kvm_dirty_bitmap(self.vm(), 0, self.ram().size())?;
        let vmm = self.ram().take_vmm_dirty_bitmap();
        for (word, vmm_word) in dirty.iter_mut().zip(&vmm) {
            *word |= vmm_word;
        }
        let region = DiffRegion {
            guest_phys_addr: 0,
            bytes: self.ram().region().bytes,
            dirty: &dirty,
        };
        Ok(state.save_diff_with_memory(path, app_version, base, &[region])?)
    }

    /// Saves the paused VM's state to `state_path` (its memory regions without contents) and
    /// guest memory to `store` as snapshot `name`, each distinct chunk once.
    ///
    /// # Errors
    ///
    /// Those of [`DemoVm::save_microvm`], [`ChunkStore::save`] and
    /// [`MicrovmState::save_to_file`].
    pub fn save_to_chunk_store(
        &mut self,
        store: &ChunkStore,
        name: &str,
        state_path: impl AsRef<Path>,
        app_version: u16,
    ) -> Result<ChunkSaveStats> {
        let state = self.save_microvm_with(self.regions_without_contents())?;
        let stats = store.save(name, &[self.ram().region()])?;
        state.save_to_file(state_path, app_version)?;
        Ok(stats)
    }

    /// Restores the snapshot at `path` (state file, and the memory file beside it when its
    /// memory is there) into a fresh VM whose guest memory is that memory file, mapped
    /// `MAP_PRIVATE` ([`RestoreMode::Lazy`]: pages are read from the file when first
    /// touched) or read and checked ([`RestoreMode::Eager`]). Snapshots with memory inside
    /// the state (any app version) restore too.
    ///
    /// # Errors
    ///
    /// Those of [`MicrovmState::load_with_memory`] (a truncated memory file, a changed byte
    /// in eager mode, a diff snapshot), and of [`DemoVm::restore_microvm`].
    pub fn restore_from_files(path: impl AsRef<Path>, mode: RestoreMode) -> Result<DemoVm> {
        let (state, _app_version, memory) = MicrovmState::load_with_memory(path, mode)?;
        DemoVm::restore_into_memory(&state, memory)
    }

    /// Restores a diff snapshot: the full snapshot `base` and the diff snapshots `diffs` on
    /// top of it, in order ([`MicrovmState::load_with_memory_chain`]).
    ///
    /// # Errors
    ///
    /// [`kvm_state::KvmStateError::Memory`] wrapping `WrongBase` for a diff on the wrong
    /// base or out of order, and those of [`DemoVm::restore_from_files`].
    pub fn restore_from_chain<P: AsRef<Path>>(
        base: impl AsRef<Path>,
        diffs: &[P],
        mode: RestoreMode,
    ) -> Result<DemoVm> {
        let (state, _app_version, memory) =
            MicrovmState::load_with_memory_chain(base, diffs, mode)?;
        DemoVm::restore_into_memory(&state, memory)
    }

    /// Restores the state file `state_path` with guest memory from `store`'s snapshot `name`
    /// (every chunk checked against its hash).
    ///
    /// # Errors
    ///
    /// Those of [`ChunkStore::load`] (a missing or corrupt chunk), of
    /// [`MicrovmState::load_file`] and of [`DemoVm::restore_microvm`].
    pub fn restore_from_chunk_store(
        store: &ChunkStore,
        name: &str,
        state_path: impl AsRef<Path>,
    ) -> Result<DemoVm> {
        let (state, _app_version) = MicrovmState::load_file(state_path)?;
        if state.memory_source != MemorySource::Inline
            || state.memory.iter().any(|r| r.has_contents())
        {
            return Err(DemoVmError::MemoryOutsideState);
        }
        let memory = store.load(name)?;
        DemoVm::restore_into_memory(&state, memory)
    }

    /// A fresh VM on `memory`, with `state` restored into it.
    fn restore_into_memory(
        state: &MicrovmState,
        memory: Vec<GuestMemoryMapping>,
    ) -> Result<DemoVm> {
        let [mapping] = <[GuestMemoryMapping; 1]>::try_from(memory).map_err(|memory| {
            kvm_state::KvmStateError::BadLength {
                what: "memory regions",
                found: memory.len(),
                expected: 1,
            }
        })?;
        let mut vm = DemoVm::with_memory(mapping)?;
        vm.restore_state(state)?;
        Ok(vm)
    }

    /// The state's memory regions when memory is saved outside it.
    fn regions_without_contents(&self) -> Vec<MemoryRegionState> {
        vec![MemoryRegionState {
            guest_phys_addr: 0,
            size: self.ram().size(),
            contents: Vec::new(),
        }]
    }

    /// Clears KVM's dirty log and the VMM's record, if the log is on.
    fn reset_dirty_log(&mut self) -> Result<()> {
        match kvm_dirty_bitmap(self.vm(), 0, self.ram().size()) {
            Ok(_) => {
                self.ram().take_vmm_dirty_bitmap();
                Ok(())
            }
            // The log is off: nothing to reset.
            Err(kvm_state::MemoryError::DirtyLog { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_check_memory_size_refuses_sizes_the_guest_cannot_map() {
        for size in [2 << 20, 256 << 20, MAX_MEM_SIZE] {
            check_memory_size(size).unwrap();
        }
        for size in [0, 1 << 20, 3 << 20, MAX_MEM_SIZE + (2 << 20)] {
            assert!(matches!(
                check_memory_size(size),
                Err(DemoVmError::MemorySize { size: s }) if s == size
            ));
        }
        // Refused before /dev/kvm is opened.
        assert!(matches!(
            DemoVm::with_memory_size(5 << 20),
            Err(DemoVmError::MemorySize { .. })
        ));
    }
}
