//! Diff snapshots: only the pages dirtied since the previous layer, applied in order on top
//! of a memory file.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use kvm_ioctls::VmFd;
use versionize::crc::{crc64, CRC64Reader, CRC64Writer};

use super::error::{MemoryError, MemoryResult};
use super::file::{
    restore_memory_file, save_memory_file_as, verify_memory_file, MemoryFileDescriptor,
    RestoreMode, IO_CHUNK,
};
use super::mapping::GuestMemoryMapping;
use super::{
    atomic_write, check_regions, file_len, open, random_id, GuestRegionBytes, MemoryLayerId,
    PAGE_SIZE,
};

/// First 8 bytes of every diff file.
const DIFF_MAGIC: [u8; 8] = *b"VMMEMDIF";
/// The diff format this build writes and reads.
const DIFF_FORMAT_VERSION: u32 = 1;
/// Bytes of the fixed header before the region table.
const FIXED_HEADER_LEN: u64 = 64;
/// Bytes of one region-table entry.
const REGION_ENTRY_LEN: u64 = 24;

/// One region of guest memory as input to [`save_memory_diff`]: its bytes and a bitmap of
/// the pages to write (bit `i % 64` of word `i / 64` is page `i`, as `KVM_GET_DIRTY_LOG`
/// returns it).
#[derive(Clone, Copy, Debug)]
pub struct DiffRegion<'a> {
    /// Guest physical address of the first byte (page-aligned).
    pub guest_phys_addr: u64,
    /// The region's bytes.
    pub bytes: &'a [u8],
    /// One bit per page, `bytes.len() / 4096` bits rounded up to whole `u64`s; bits past
    /// the last page must be clear.
    pub dirty: &'a [u64],
}

/// What a diff file records, as [`save_memory_diff`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryDiffInfo {
    /// Identity of the diff: its random id and the CRC-64 of its page data.
    pub layer: MemoryLayerId,
    /// Identity of the layer it applies on.
    pub base: MemoryLayerId,
    /// Guest address and size of each region.
    pub regions: Vec<(u64, u64)>,
    /// Pages written, over all regions.
    pub dirty_pages: u64,
    /// Length of the diff file in bytes.
    pub file_len: u64,
}

/// Reads KVM's dirty-page bitmap of memory slot `slot` (`size` bytes, registered with
/// `KVM_MEM_LOG_DIRTY_PAGES`), clearing it: the pages written by the guest since the last
/// call, ready for [`DiffRegion::dirty`]. Writes the VMM itself made to guest memory are not
/// in KVM's log: set their bits too.
///
/// # Errors
/// [`MemoryError::DirtyLog`] when the ioctl fails (e.g. the slot does not log dirty pages).
pub fn kvm_dirty_bitmap(vm: &VmFd, slot: u32, size: u64) -> MemoryResult<Vec<u64>> {
    let len = usize::try_from(size).map_err(|_| MemoryError::Region {
        guest_phys_addr: 0,
        size,
        reason: "size does not fit this host's address space",
    })?;
    vm.get_dirty_log(slot, len)
        .map_err(|source| MemoryError::DirtyLog { slot, source })
}

/// Number of pages of a region, and of `u64` words in its bitmap.
fn pages_and_words(size: u64) -> (u64, u64) {
    let pages = size / PAGE_SIZE;
    (pages, pages.div_ceil(64))
}

/// Checks a bitmap against its region; returns its number of set bits.
fn count_dirty(guest_phys_addr: u64, size: u64, bitmap: &[u64]) -> MemoryResult<u64> {
    let (pages, words) = pages_and_words(size);
    if bitmap.len() as u64 != words {
        return Err(MemoryError::Region {
            guest_phys_addr,
            size,
            reason: "dirty bitmap does not have one bit per page",
        });
    }
    if let Some(&last) = bitmap.last() {
        let used = pages % 64;
        if used != 0 && last >> used != 0 {
            return Err(MemoryError::Region {
                guest_phys_addr,
                size,
                reason: "dirty bitmap marks pages past the end of the region",
            });
        }
    }
    Ok(bitmap.iter().map(|w| u64::from(w.count_ones())).sum())
}

/// Runs of consecutive set bits: `(first page, number of pages)`.
fn dirty_runs(bitmap: &[u64]) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for (index, &word) in bitmap.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            let bit = u64::from(bits.trailing_zeros());
            bits &= bits - 1;
            let page = index as u64 * 64 + bit;
            match runs.last_mut() {
                Some((start, count)) if *start + *count == page => *count += 1,
                _ => runs.push((page, 1)),
            }
        }
    }
    runs
}

/// Saves the pages `regions` mark dirty to `path` (atomically replacing it), as a diff on
/// top of the layer `base` (a [`MemoryFileDescriptor::layer`] or the previous diff's
/// [`MemoryDiffInfo::layer`]).
///
/// Consecutive dirty pages are written with one `write`, scattered ones gathered in a 1 MiB
/// buffer, so the cost follows the dirty bytes, not the guest's size.
///
/// # Errors
/// [`MemoryError::Region`] for a region that is not page-aligned, overlaps another, or whose
/// bitmap does not fit it; [`MemoryError::Io`] when writing fails.
///
/// # Example
/// ```
/// use kvm_state::{
///     restore_memory_chain, save_memory_diff, save_memory_file, DiffRegion,
///     GuestMemoryMapping, RestoreMode,
/// };
///
/// let dir = std::env::temp_dir().join(format!("diff-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let mut memory = GuestMemoryMapping::anonymous(0, 1 << 20).unwrap();
/// let base = save_memory_file(dir.join("base.mem"), &[memory.region()]).unwrap();
///
/// // The guest writes page 3; a VMM gets this bitmap from `kvm_dirty_bitmap`.
/// memory.as_mut_slice()[3 * 4096] = 7;
/// let dirty = [1u64 << 3, 0, 0, 0];
/// let region = DiffRegion { guest_phys_addr: 0, bytes: memory.as_slice(), dirty: &dirty };
/// let diff = save_memory_diff(dir.join("1.diff"), base.layer, &[region]).unwrap();
/// assert_eq!(diff.dirty_pages, 1);
///
/// let (restored, layer) =
///     restore_memory_chain(dir.join("base.mem"), &base, &[dir.join("1.diff")], RestoreMode::Lazy)
///         .unwrap();
/// assert_eq!(layer, diff.layer);
/// assert_eq!(restored[0].as_slice(), memory.as_slice());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn save_memory_diff(
    path: impl AsRef<Path>,
    base: MemoryLayerId,
    regions: &[DiffRegion<'_>],
) -> MemoryResult<MemoryDiffInfo> {
    let path = path.as_ref();
    let pairs: Vec<(u64, u64)> = regions
        .iter()
        .map(|r| (r.guest_phys_addr, r.bytes.len() as u64))
        .collect();
    check_regions(&pairs)?;
    let mut dirty_pages = 0u64;
    let mut counts = Vec::with_capacity(regions.len());
    for region in regions {
        let count = count_dirty(
            region.guest_phys_addr,
            region.bytes.len() as u64,
            region.dirty,
        )?;
        counts.push(count);
        dirty_pages += count;
    }
    let id = random_id()?;

    let mut header = Vec::new();
    header.extend_from_slice(&DIFF_MAGIC);
    header.extend_from_slice(&DIFF_FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
    header.extend_from_slice(&id.to_le_bytes());
    header.extend_from_slice(&base.id.to_le_bytes());
    header.extend_from_slice(&base.checksum.to_le_bytes());
    header.extend_from_slice(&(regions.len() as u32).to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    for (region, count) in regions.iter().zip(&counts) {
        header.extend_from_slice(&region.guest_phys_addr.to_le_bytes());
        header.extend_from_slice(&(region.bytes.len() as u64).to_le_bytes());
        header.extend_from_slice(&count.to_le_bytes());
    }
    for region in regions {
        for word in region.dirty {
            header.extend_from_slice(&word.to_le_bytes());
        }
    }
    let header_crc = crc64(&header);
    header.extend_from_slice(&header_crc.to_le_bytes());
    let data_offset = (header.len() as u64).next_multiple_of(PAGE_SIZE);
    header.resize(data_offset as usize, 0);

    let data_crc = atomic_write(path, |file, temp| {
        let io = |e| MemoryError::io("write", temp, e);
        let mut writer = BufWriter::with_capacity(IO_CHUNK, &mut *file);
        writer.write_all(&header).map_err(io)?;
        let mut summed = CRC64Writer::new(writer);
        for region in regions {
            for (page, count) in dirty_runs(region.dirty) {
                let start = (page * PAGE_SIZE) as usize;
                let end = ((page + count) * PAGE_SIZE) as usize;
                let run = region.bytes.get(start..end).ok_or(MemoryError::Region {
                    guest_phys_addr: region.guest_phys_addr,
                    size: region.bytes.len() as u64,
                    reason: "dirty bitmap marks pages past the end of the region",
                })?;
                summed.write_all(run).map_err(io)?;
            }
        }
        let data_crc = summed.checksum();
        let mut writer = summed.into_inner();
        writer.write_all(&data_crc.to_le_bytes()).map_err(io)?;
        writer.flush().map_err(io)?;
        Ok(data_crc)
    })?;
    Ok(MemoryDiffInfo {
        layer: MemoryLayerId {
            id,
            checksum: data_crc,
        },
        base,
        regions: pairs,
        dirty_pages,
        file_len: data_offset + dirty_pages * PAGE_SIZE + 8,
    })
}

/// A diff file's header, read and checked.
struct DiffHeader {
    info: MemoryDiffInfo,
    bitmaps: Vec<Vec<u64>>,
    data_offset: u64,
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_le_bytes(word)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        word.copy_from_slice(src);
    }
    u64::from_le_bytes(word)
}

fn le_u128(bytes: &[u8], at: usize) -> u128 {
    let mut word = [0u8; 16];
    if let Some(src) = bytes.get(at..at + 16) {
        word.copy_from_slice(src);
    }
    u128::from_le_bytes(word)
}

/// Reads `len` bytes at the reader's position, after checking they are in the file.
fn read_bytes(file: &mut File, path: &Path, len: u64, file_len: u64) -> MemoryResult<Vec<u8>> {
    let pos = file
        .stream_position()
        .map_err(|e| MemoryError::io("seek", path, e))?;
    if pos.saturating_add(len) > file_len {
        return Err(MemoryError::format(
            path,
            format!("file ends at byte {file_len}, inside the diff header"),
        ));
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact(&mut bytes)
        .map_err(|e| MemoryError::io("read", path, e))?;
    Ok(bytes)
}

/// Reads and checks a diff's header and length. The page data is not read.
fn read_header(file: &mut File, path: &Path) -> MemoryResult<DiffHeader> {
    let found_len = file_len(file, path)?;
    let fixed = read_bytes(file, path, FIXED_HEADER_LEN, found_len)?;
    if fixed.get(..8) != Some(&DIFF_MAGIC[..]) {
        return Err(MemoryError::format(
            path,
            "not a memory diff file (bad magic)",
        ));
    }
    let version = le_u32(&fixed, 8);
    if version != DIFF_FORMAT_VERSION {
        return Err(MemoryError::format(
            path,
            format!("diff format version {version} is not supported (this build reads {DIFF_FORMAT_VERSION})"),
        ));
    }
    let page_size = le_u32(&fixed, 12);
    if u64::from(page_size) != PAGE_SIZE {
        return Err(MemoryError::format(
            path,
            format!("page size {page_size} is not supported (this build uses {PAGE_SIZE})"),
        ));
    }
    let id = le_u128(&fixed, 16);
    let base = MemoryLayerId {
        id: le_u128(&fixed, 32),
        checksum: le_u64(&fixed, 48),
    };
    let region_count = u64::from(le_u32(&fixed, 56));
    let table = read_bytes(file, path, region_count * REGION_ENTRY_LEN, found_len)?;
    let mut regions = Vec::new();
    let mut counts = Vec::new();
    let mut words_total = 0u64;
    for entry in table.chunks_exact(REGION_ENTRY_LEN as usize) {
        let (addr, size) = (le_u64(entry, 0), le_u64(entry, 8));
        regions.push((addr, size));
        counts.push(le_u64(entry, 16));
        words_total = words_total.saturating_add(pages_and_words(size).1);
    }
    let bitmap_bytes = read_bytes(file, path, words_total.saturating_mul(8), found_len)?;
    let stored_crc = read_bytes(file, path, 8, found_len)?;
    let mut summed = fixed.clone();
    summed.extend_from_slice(&table);
    summed.extend_from_slice(&bitmap_bytes);
    let found_crc = crc64(&summed);
    if le_u64(&stored_crc, 0) != found_crc {
        return Err(MemoryError::format(
            path,
            "diff header checksum does not match",
        ));
    }
    check_regions(&regions)?;

    let mut words = bitmap_bytes.chunks_exact(8).map(|w| le_u64(w, 0));
    let mut bitmaps = Vec::with_capacity(regions.len());
    let mut dirty_pages = 0u64;
    for (&(addr, size), &count) in regions.iter().zip(&counts) {
        let bitmap: Vec<u64> = words
            .by_ref()
            .take(pages_and_words(size).1 as usize)
            .collect();
        let found = count_dirty(addr, size, &bitmap)?;
        if found != count {
            return Err(MemoryError::format(
                path,
                format!("region at {addr:#x} records {count} dirty pages, its bitmap has {found}"),
            ));
        }
        dirty_pages += found;
        bitmaps.push(bitmap);
    }
    let header_len = summed.len() as u64 + 8;
    let data_offset = header_len.next_multiple_of(PAGE_SIZE);
    let expected_len = data_offset + dirty_pages * PAGE_SIZE + 8;
    if found_len != expected_len {
        return Err(MemoryError::Length {
            path: path.to_path_buf(),
            expected: expected_len,
            found: found_len,
        });
    }
    file.seek(SeekFrom::Start(expected_len - 8))
        .map_err(|e| MemoryError::io("seek", path, e))?;
    let trailer = read_bytes(file, path, 8, found_len)?;
    Ok(DiffHeader {
        info: MemoryDiffInfo {
            layer: MemoryLayerId {
                id,
                checksum: le_u64(&trailer, 0),
            },
            base,
            regions,
            dirty_pages,
            file_len: found_len,
        },
        bitmaps,
        data_offset,
    })
}

/// Reads a diff file's header: its identity, its base's, its regions and page count.
///
/// # Errors
/// [`MemoryError::Format`] for a file that is not a diff or whose header is damaged,
/// [`MemoryError::Length`] for a truncated one, [`MemoryError::Io`] when reading fails.
pub fn read_memory_diff_info(path: impl AsRef<Path>) -> MemoryResult<MemoryDiffInfo> {
    let path = path.as_ref();
    let mut file = open(path)?;
    Ok(read_header(&mut file, path)?.info)
}

/// Applies the diff at `path` to `memory`, which is at layer `current`; returns the layer
/// the memory is at afterwards. On an error after the checks of the header, `memory` holds
/// part of the diff: discard it.
fn apply_memory_diff(
    path: &Path,
    current: MemoryLayerId,
    memory: &mut [GuestMemoryMapping],
) -> MemoryResult<MemoryLayerId> {
    let mut file = open(path)?;
    let header = read_header(&mut file, path)?;
    if header.info.base != current {
        return Err(MemoryError::WrongBase {
            path: path.to_path_buf(),
            expected: header.info.base,
            found: current,
        });
    }
    let matches = header.info.regions.len() == memory.len()
        && header
            .info
            .regions
            .iter()
            .zip(memory.iter())
            .all(|(&(addr, size), m)| addr == m.guest_phys_addr() && size == m.size());
    if !matches {
        return Err(MemoryError::format(
            path,
            "diff regions differ from the regions of the memory it is applied to",
        ));
    }
    file.seek(SeekFrom::Start(header.data_offset))
        .map_err(|e| MemoryError::io("seek", path, e))?;
    let mut reader = CRC64Reader::new(BufReader::with_capacity(IO_CHUNK, &mut file));
    for (mapping, bitmap) in memory.iter_mut().zip(&header.bitmaps) {
        let bytes = mapping.as_mut_slice();
        for (page, count) in dirty_runs(bitmap) {
            let start = (page * PAGE_SIZE) as usize;
            let end = ((page + count) * PAGE_SIZE) as usize;
            if let Some(run) = bytes.get_mut(start..end) {
                reader
                    .read_exact(run)
                    .map_err(|e| MemoryError::io("read", path, e))?;
            }
        }
    }
    let found = reader.checksum();
    if found != header.info.layer.checksum {
        return Err(MemoryError::format(
            path,
            format!(
                "page data has crc64 {found:#018x}, expected {:#018x}",
                header.info.layer.checksum
            ),
        ));
    }
    Ok(header.info.layer)
}

/// Restores a memory file and applies the diffs in `diffs` on top of it, in order: the
/// first must have been taken on top of `base`, each next one on top of the one before.
/// Returns the memory and the layer it is at (the last diff's).
///
/// In [`RestoreMode::Lazy`] the base stays mapped from its file and only the pages the diffs
/// carry are copied in; in [`RestoreMode::Eager`] the base is read and checked first.
///
/// # Errors
/// [`MemoryError::WrongBase`] for a diff on another layer (the wrong base, or the chain out
/// of order), [`MemoryError::Format`] for a damaged diff or one with other regions,
/// [`MemoryError::Length`] for a truncated file, and the errors of
/// [`restore_memory_file`].
pub fn restore_memory_chain<P: AsRef<Path>>(
    base_path: impl AsRef<Path>,
    base: &MemoryFileDescriptor,
    diffs: &[P],
    mode: RestoreMode,
) -> MemoryResult<(Vec<GuestMemoryMapping>, MemoryLayerId)> {
    let mut memory = restore_memory_file(base_path, base, mode)?;
    let mut layer = base.layer;
    for diff in diffs {
        layer = apply_memory_diff(diff.as_ref(), layer, &mut memory)?;
    }
    Ok((memory, layer))
}

/// Collapses a memory file and a chain of diffs on top of it into one memory file at `out`
/// (which may be `base_path`: it is replaced atomically). The base's checksums are verified
/// first. The new file takes the identity of the chain's last layer, so diffs taken after
/// that layer apply to it.
///
/// # Errors
/// As [`verify_memory_file`], [`restore_memory_chain`] and
/// [`save_memory_file`](super::save_memory_file).
pub fn merge_memory_chain<P: AsRef<Path>>(
    base_path: impl AsRef<Path>,
    base: &MemoryFileDescriptor,
    diffs: &[P],
    out: impl AsRef<Path>,
) -> MemoryResult<MemoryFileDescriptor> {
    verify_memory_file(base_path.as_ref(), base)?;
    let (memory, layer) = restore_memory_chain(base_path, base, diffs, RestoreMode::Lazy)?;
    let regions: Vec<GuestRegionBytes<'_>> =
        memory.iter().map(GuestMemoryMapping::region).collect();
    save_memory_file_as(out.as_ref(), &regions, Some(layer))
}

/// The fallback where no dirty log is available: a 128-bit BLAKE3 hash of every page,
/// taken when a layer is saved, against which the next save finds the pages that changed.
/// Costs hashing all of guest memory per diff (about a memory-bandwidth pass) and 16 bytes
/// per 4 KiB page.
#[derive(Clone, Debug)]
pub struct PageHashes {
    regions: Vec<(u64, u64, Vec<[u8; 16]>)>,
}

fn page_hash(page: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&blake3::hash(page).as_bytes()[..16]);
    out
}

impl PageHashes {
    /// Hashes every page of `regions` (the memory as the layer just saved holds it).
    ///
    /// # Errors
    /// [`MemoryError::Region`] for regions that are not page-aligned or overlap.
    pub fn new(regions: &[GuestRegionBytes<'_>]) -> MemoryResult<Self> {
        let pairs: Vec<(u64, u64)> = regions
            .iter()
            .map(|r| (r.guest_phys_addr, r.bytes.len() as u64))
            .collect();
        check_regions(&pairs)?;
        Ok(PageHashes {
            regions: regions
                .iter()
                .map(|r| {
                    let hashes = r.bytes.chunks(PAGE_SIZE as usize).map(page_hash).collect();
                    (r.guest_phys_addr, r.bytes.len() as u64, hashes)
                })
                .collect(),
        })
    }

    /// The pages of `regions` whose hash changed since the last call (or [`new`](Self::new)),
    /// as one dirty bitmap per region for [`DiffRegion::dirty`]; the hashes are updated to
    /// the current memory.
    ///
    /// # Errors
    /// [`MemoryError::Region`] when `regions` are not the regions the hashes were taken of.
    pub fn dirty_bitmaps(
        &mut self,
        regions: &[GuestRegionBytes<'_>],
    ) -> MemoryResult<Vec<Vec<u64>>> {
        if regions.len() != self.regions.len() {
            let first = regions
                .first()
                .map_or((0, 0), |r| (r.guest_phys_addr, r.bytes.len() as u64));
            return Err(MemoryError::Region {
                guest_phys_addr: first.0,
                size: first.1,
                reason: "not the regions the page hashes were taken of",
            });
        }
        let mut bitmaps = Vec::with_capacity(regions.len());
        for (region, (addr, size, hashes)) in regions.iter().zip(self.regions.iter_mut()) {
            if region.guest_phys_addr != *addr || region.bytes.len() as u64 != *size {
                return Err(MemoryError::Region {
                    guest_phys_addr: region.guest_phys_addr,
                    size: region.bytes.len() as u64,
                    reason: "not the regions the page hashes were taken of",
                });
            }
            let mut bitmap = vec![0u64; pages_and_words(*size).1 as usize];
            for (index, (page, hash)) in region
                .bytes
                .chunks(PAGE_SIZE as usize)
                .zip(hashes.iter_mut())
                .enumerate()
            {
                let now = page_hash(page);
                if now != *hash {
                    *hash = now;
                    if let Some(word) = bitmap.get_mut(index / 64) {
                        *word |= 1 << (index % 64);
                    }
                }
            }
            bitmaps.push(bitmap);
        }
        Ok(bitmaps)
    }
}
