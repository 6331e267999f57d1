//! Full memory files: raw, page-aligned regions, described by a [`MemoryFileDescriptor`].

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use versionize::crc::{crc64, CRC64Reader, CRC64Writer};
use versionize::prelude::*;

use super::error::{MemoryError, MemoryResult};
use super::mapping::GuestMemoryMapping;
use super::{
    atomic_write, check_regions, file_len, open, random_id, GuestRegionBytes, MemoryLayerId,
};

/// Bytes handed to one `write`/`read` call: large enough that syscalls cost nothing next to
/// the copy, small enough that the checksum reads them while they are still in cache.
pub(super) const IO_CHUNK: usize = 1 << 20;

/// Where one guest region lives in a memory file, and its checksum.
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize)]
pub struct MemoryFileRegion {
    /// Guest physical address of the first byte.
    pub guest_phys_addr: u64,
    /// Size in bytes (a multiple of the page size).
    pub size: u64,
    /// Offset of the region's first byte in the memory file (page-aligned).
    pub file_offset: u64,
    /// CRC-64/REDIS of the region's `size` bytes.
    pub crc64: u64,
}

/// What the state records about a memory file: its layer identity and where each region is.
/// Returned by [`save_memory_file`] and [`merge_memory_chain`](super::merge_memory_chain);
/// versioned, so a `MicrovmState` can embed it.
#[derive(Clone, Debug, PartialEq, Eq, Versionize, serde::Serialize)]
pub struct MemoryFileDescriptor {
    /// Identity of this layer, which diffs taken on top of it name: a random id and the
    /// CRC-64 of the region table; a file merged from a chain takes the identity of the
    /// chain's last diff, so that diffs taken after that one apply to the merged file.
    pub layer: MemoryLayerId,
    /// The regions, in file order.
    pub regions: Vec<MemoryFileRegion>,
}

impl MemoryFileDescriptor {
    /// Length the memory file must have: the end of its last region.
    pub fn file_len(&self) -> u64 {
        self.regions
            .iter()
            .map(|r| r.file_offset.saturating_add(r.size))
            .max()
            .unwrap_or(0)
    }

    /// Total bytes of guest memory described.
    pub fn memory_size(&self) -> u64 {
        self.regions.iter().map(|r| r.size).sum()
    }

    /// CRC-64 of the region table: each region's guest address, size and CRC-64, as
    /// little-endian `u64`s, in order.
    fn table_checksum(regions: &[MemoryFileRegion]) -> u64 {
        let mut table = Vec::with_capacity(regions.len() * 24);
        for region in regions {
            table.extend_from_slice(&region.guest_phys_addr.to_le_bytes());
            table.extend_from_slice(&region.size.to_le_bytes());
            table.extend_from_slice(&region.crc64.to_le_bytes());
        }
        crc64(&table)
    }

    /// Checks that the regions are page-aligned, do not overlap in guest memory, and lie
    /// back to back in the file from offset 0, as [`save_memory_file`] writes them.
    fn check(&self, path: &Path) -> MemoryResult<()> {
        let pairs: Vec<(u64, u64)> = self
            .regions
            .iter()
            .map(|r| (r.guest_phys_addr, r.size))
            .collect();
        check_regions(&pairs)?;
        let mut offset = 0u64;
        for region in &self.regions {
            if region.file_offset != offset {
                return Err(MemoryError::format(
                    path,
                    format!(
                        "descriptor places the region at guest address {:#x} at file offset {:#x}, expected {offset:#x}",
                        region.guest_phys_addr, region.file_offset
                    ),
                ));
            }
            offset = offset.saturating_add(region.size);
        }
        Ok(())
    }
}

/// How [`restore_memory_file`] brings a memory file back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreMode {
    /// Map the file `MAP_PRIVATE`: copy-on-write, demand-paged by the kernel. Constant time
    /// in the guest's size; the file's length is checked, its checksums are not (run
    /// [`verify_memory_file`] first where the file may have been damaged), and the file must
    /// not be changed in place while mapped (see [`GuestMemoryMapping`]).
    Lazy,
    /// Read the file into anonymous memory, checking each region's CRC-64: one sequential
    /// read of the file, and the VM no longer depends on it.
    Eager,
}

/// Saves guest memory to `path` (atomically replacing it): the regions' bytes back to back,
/// raw, in the order given, each at a page-aligned offset.
///
/// The bytes go to the file in 1 MiB `write` calls straight from guest memory (no copy in
/// between), and each region's CRC-64 is computed on the same pass. Pause the vCPUs first.
///
/// # Errors
/// [`MemoryError::Region`] for a region that is not page-aligned or overlaps another,
/// [`MemoryError::Io`] when writing fails (`path` is then left as it was).
///
/// # Example
/// ```
/// use kvm_state::{
///     restore_memory_file, save_memory_file, verify_memory_file, GuestMemoryMapping,
///     RestoreMode,
/// };
///
/// let dir = std::env::temp_dir().join(format!("memory-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("vm.mem");
///
/// let mut memory = GuestMemoryMapping::anonymous(0, 1 << 20).unwrap();
/// memory.as_mut_slice()[0x1234] = 0xab;
/// let descriptor = save_memory_file(&path, &[memory.region()]).unwrap();
/// verify_memory_file(&path, &descriptor).unwrap();
///
/// let restored = restore_memory_file(&path, &descriptor, RestoreMode::Lazy).unwrap();
/// assert_eq!(restored[0].as_slice(), memory.as_slice());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn save_memory_file(
    path: impl AsRef<Path>,
    regions: &[GuestRegionBytes<'_>],
) -> MemoryResult<MemoryFileDescriptor> {
    save_memory_file_as(path.as_ref(), regions, None)
}

/// Saves a memory file with the given identity, or a fresh one.
pub(super) fn save_memory_file_as(
    path: &Path,
    regions: &[GuestRegionBytes<'_>],
    layer: Option<MemoryLayerId>,
) -> MemoryResult<MemoryFileDescriptor> {
    let id = random_id()?;
    let pairs: Vec<(u64, u64)> = regions
        .iter()
        .map(|r| (r.guest_phys_addr, r.bytes.len() as u64))
        .collect();
    check_regions(&pairs)?;
    atomic_write(path, |file, temp| {
        let mut described = Vec::with_capacity(regions.len());
        let mut offset = 0u64;
        for region in regions {
            let mut writer = CRC64Writer::new(&mut *file);
            for chunk in region.bytes.chunks(IO_CHUNK) {
                writer
                    .write_all(chunk)
                    .map_err(|e| MemoryError::io("write", temp, e))?;
            }
            let size = region.bytes.len() as u64;
            described.push(MemoryFileRegion {
                guest_phys_addr: region.guest_phys_addr,
                size,
                file_offset: offset,
                crc64: writer.checksum(),
            });
            offset += size;
        }
        let layer = layer.unwrap_or(MemoryLayerId {
            id,
            checksum: MemoryFileDescriptor::table_checksum(&described),
        });
        Ok(MemoryFileDescriptor {
            layer,
            regions: described,
        })
    })
}

/// Opens a memory file and checks that it has exactly the length `descriptor` gives.
fn open_checked(path: &Path, descriptor: &MemoryFileDescriptor) -> MemoryResult<File> {
    descriptor.check(path)?;
    let file = open(path)?;
    let found = file_len(&file, path)?;
    let expected = descriptor.file_len();
    if found != expected {
        return Err(MemoryError::Length {
            path: path.to_path_buf(),
            expected,
            found,
        });
    }
    Ok(file)
}

/// Reads `dest.len()` bytes of `reader` into `dest`, returning their CRC-64.
fn read_region(reader: &mut impl Read, dest: &mut [u8], path: &Path) -> MemoryResult<u64> {
    let mut reader = CRC64Reader::new(reader);
    for chunk in dest.chunks_mut(IO_CHUNK) {
        reader
            .read_exact(chunk)
            .map_err(|e| MemoryError::io("read", path, e))?;
    }
    Ok(reader.checksum())
}

/// Brings the memory file at `path`, described by `descriptor`, back as guest memory: one
/// mapping per region, in the descriptor's order, ready for `set_user_memory_region`.
///
/// # Errors
/// [`MemoryError::Length`] when the file is not exactly as long as described (truncated,
/// or another file); [`MemoryError::Checksum`] in [`RestoreMode::Eager`] when a region's
/// bytes changed; [`MemoryError::Io`], [`MemoryError::Map`] when reading or mapping fails;
/// [`MemoryError::Region`], [`MemoryError::Format`] for a descriptor that cannot describe a
/// memory file.
pub fn restore_memory_file(
    path: impl AsRef<Path>,
    descriptor: &MemoryFileDescriptor,
    mode: RestoreMode,
) -> MemoryResult<Vec<GuestMemoryMapping>> {
    let path = path.as_ref();
    let file = open_checked(path, descriptor)?;
    match mode {
        RestoreMode::Lazy => {
            let file = Arc::new(file);
            descriptor
                .regions
                .iter()
                .map(|r| {
                    GuestMemoryMapping::map_file(&file, r.file_offset, r.guest_phys_addr, r.size)
                })
                .collect()
        }
        RestoreMode::Eager => {
            let mut file = file;
            let mut mappings = Vec::with_capacity(descriptor.regions.len());
            for region in &descriptor.regions {
                let mut mapping =
                    GuestMemoryMapping::anonymous(region.guest_phys_addr, region.size)?;
                let found = read_region(&mut file, mapping.as_mut_slice(), path)?;
                check_crc(path, region, found)?;
                mappings.push(mapping);
            }
            Ok(mappings)
        }
    }
}

fn check_crc(path: &Path, region: &MemoryFileRegion, found: u64) -> MemoryResult<()> {
    if found != region.crc64 {
        return Err(MemoryError::Checksum {
            path: path.to_path_buf(),
            guest_phys_addr: region.guest_phys_addr,
            expected: region.crc64,
            found,
        });
    }
    Ok(())
}

/// Checks a memory file against its descriptor: its length and every region's CRC-64. Costs
/// one sequential read of the file (through a 1 MiB buffer, never the whole file in memory)
/// and the checksum, which runs at several GB/s; run it before a lazy restore when the file
/// may have been damaged since it was saved (`vmstate verify` does).
///
/// # Errors
/// As [`restore_memory_file`] in eager mode.
pub fn verify_memory_file(
    path: impl AsRef<Path>,
    descriptor: &MemoryFileDescriptor,
) -> MemoryResult<()> {
    let path = path.as_ref();
    let mut file = open_checked(path, descriptor)?;
    let mut buffer = vec![0u8; IO_CHUNK];
    for region in &descriptor.regions {
        let mut reader = CRC64Reader::new(&mut file);
        let mut left = region.size;
        while left > 0 {
            let n = usize::try_from(left.min(IO_CHUNK as u64)).unwrap_or(IO_CHUNK);
            let chunk = &mut buffer[..n];
            reader
                .read_exact(chunk)
                .map_err(|e| MemoryError::io("read", path, e))?;
            left -= n as u64;
        }
        check_crc(path, region, reader.checksum())?;
    }
    Ok(())
}
