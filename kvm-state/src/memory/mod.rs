//! Guest memory outside the state: memory files beside the state file, lazy (`MAP_PRIVATE`)
//! and eager restore, diff snapshots from KVM's dirty log (or page hashes), and a shared
//! content-addressed chunk store. The byte layouts are in `docs/FORMAT.md`, section "Guest
//! memory files".
//!
//! - [`save_memory_file`] writes guest regions raw and page-aligned into one file at
//!   sequential-write bandwidth and returns the [`MemoryFileDescriptor`] (guest address,
//!   size, file offset and CRC-64 of each region, and the layer's random id) that the state
//!   embeds.
//! - [`restore_memory_file`] maps it back: [`RestoreMode::Lazy`] maps the file `MAP_PRIVATE`
//!   (restore time does not grow with the guest; the length is checked, the checksums are
//!   not: call [`verify_memory_file`] for that), [`RestoreMode::Eager`] reads it into
//!   anonymous memory and checks every region's CRC-64 on the way.
//! - [`save_memory_diff`] writes only the pages a dirty bitmap marks (from
//!   [`kvm_dirty_bitmap`], or [`PageHashes`] where there is no dirty log), naming the layer it
//!   applies on; [`restore_memory_chain`] applies a chain of them in order, refusing a diff
//!   on the wrong layer with [`MemoryError::WrongBase`]; [`merge_memory_chain`] collapses a
//!   chain into one memory file.
//! - [`ChunkStore`] keeps many snapshots' memory as BLAKE3-addressed chunks, each distinct
//!   chunk stored once, with removal and garbage collection.
//!
//! Every save replaces its target atomically (temporary file, fsync, rename, fsync of the
//! directory), so a file that a restored VM has mapped is never rewritten in place by this
//! module.

mod chunk;
mod diff;
mod error;
mod file;
mod mapping;
#[cfg(target_arch = "x86_64")]
mod state_file;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use chunk::{ChunkSaveStats, ChunkStore, GcStats, DEFAULT_CHUNK_SIZE};
pub use diff::{
    kvm_dirty_bitmap, merge_memory_chain, read_memory_diff_info, restore_memory_chain,
    save_memory_diff, DiffRegion, MemoryDiffInfo, PageHashes,
};
pub use error::{MemoryError, MemoryResult};
pub use file::{
    restore_memory_file, save_memory_file, verify_memory_file, MemoryFileDescriptor,
    MemoryFileRegion, RestoreMode,
};
pub use mapping::GuestMemoryMapping;

use versionize::prelude::*;

/// Page size of every memory file, diff and chunk: 4 KiB.
pub const PAGE_SIZE: u64 = 4096;

/// One region of guest memory as input to a save: its guest physical address and the host
/// bytes that back it (read with the vCPUs paused).
#[derive(Clone, Copy, Debug)]
pub struct GuestRegionBytes<'a> {
    /// Guest physical address of the first byte (page-aligned).
    pub guest_phys_addr: u64,
    /// The region's bytes (a non-zero multiple of [`PAGE_SIZE`]).
    pub bytes: &'a [u8],
}

/// The identity of one layer of guest memory: a full memory file or a diff on top of
/// another layer. A diff records the identity of the layer it was taken against, and is
/// applied only on that layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Versionize, serde::Serialize)]
pub struct MemoryLayerId {
    /// Random, drawn when the layer is saved.
    pub id: u128,
    /// CRC-64 of the layer's content: for a memory file, of its region table (addresses,
    /// sizes and region checksums); for a diff, of its page data.
    pub checksum: u64,
}

impl fmt::Display for MemoryLayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}/{:016x}", self.id, self.checksum)
    }
}

/// Checks that a region is page-aligned, non-empty and addressable; returns its length.
pub(crate) fn check_region(guest_phys_addr: u64, size: u64) -> MemoryResult<usize> {
    let reason = if size == 0 {
        Some("size is zero")
    } else if guest_phys_addr % PAGE_SIZE != 0 {
        Some("guest address is not page-aligned")
    } else if size % PAGE_SIZE != 0 {
        Some("size is not a multiple of the page size")
    } else if guest_phys_addr.checked_add(size).is_none() {
        Some("region wraps around the address space")
    } else {
        None
    };
    if let Some(reason) = reason {
        return Err(MemoryError::Region {
            guest_phys_addr,
            size,
            reason,
        });
    }
    usize::try_from(size).map_err(|_| MemoryError::Region {
        guest_phys_addr,
        size,
        reason: "size does not fit this host's address space",
    })
}

/// Checks every region and that no two overlap in guest physical memory.
pub(crate) fn check_regions(regions: &[(u64, u64)]) -> MemoryResult<()> {
    if u32::try_from(regions.len()).is_err() {
        // The files count regions in a u32.
        return Err(MemoryError::Region {
            guest_phys_addr: 0,
            size: 0,
            reason: "more than u32::MAX regions",
        });
    }
    for &(addr, size) in regions {
        check_region(addr, size)?;
    }
    let mut sorted: Vec<(u64, u64)> = regions.to_vec();
    sorted.sort_unstable();
    for pair in sorted.windows(2) {
        if let [(a_addr, a_size), (b_addr, b_size)] = *pair {
            if a_addr + a_size > b_addr {
                return Err(MemoryError::Region {
                    guest_phys_addr: b_addr,
                    size: b_size,
                    reason: "overlaps another region",
                });
            }
        }
    }
    Ok(())
}

/// A fresh random layer id from the kernel's random source.
pub(crate) fn random_id() -> MemoryResult<u128> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| MemoryError::io("read", "/dev/urandom", e))?;
    Ok(u128::from_le_bytes(bytes))
}

/// Writes a file atomically: `write` fills a new temporary file next to `target`, which is
/// then fsynced and renamed over `target`, and the directory fsynced. On any failure the
/// temporary file is removed and `target` is untouched.
pub(crate) fn atomic_write<T>(
    target: &Path,
    write: impl FnOnce(&mut File, &Path) -> MemoryResult<T>,
) -> MemoryResult<T> {
    let dir = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = target.file_name().ok_or_else(|| {
        MemoryError::io(
            "save to",
            target,
            io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
        )
    })?;
    let (temp, mut file) = create_temp(dir, name)?;
    let result = write(&mut file, &temp).and_then(|value| {
        file.sync_all()
            .map_err(|e| MemoryError::io("sync", &temp, e))?;
        fs::rename(&temp, target).map_err(|e| MemoryError::io("rename", target, e))?;
        Ok(value)
    });
    match result {
        Ok(value) => {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| MemoryError::io("sync directory", dir, e))?;
            Ok(value)
        }
        Err(err) => {
            // Best effort: the error that matters is the one already in hand.
            let _ = fs::remove_file(&temp);
            Err(err)
        }
    }
}

/// Creates `.<name>.<random>.tmp` in `dir`.
fn create_temp(dir: &Path, name: &std::ffi::OsStr) -> MemoryResult<(PathBuf, File)> {
    let mut attempt = 0;
    loop {
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{:016x}.tmp", random_id()? as u64));
        let temp = dir.join(temp_name);
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 8 => attempt += 1,
            Err(e) => return Err(MemoryError::io("create temporary file", temp, e)),
        }
    }
}

/// The length of an open file.
pub(crate) fn file_len(file: &File, path: &Path) -> MemoryResult<u64> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| MemoryError::io("stat", path, e))
}

/// Opens a file for reading.
pub(crate) fn open(path: &Path) -> MemoryResult<File> {
    File::open(path).map_err(|e| MemoryError::io("open", path, e))
}
