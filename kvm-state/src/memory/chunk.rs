//! A content-addressed store of guest-memory chunks shared by many snapshots.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use versionize::crc::crc64;

use super::error::{MemoryError, MemoryResult};
use super::mapping::GuestMemoryMapping;
use super::{atomic_write, check_regions, file_len, GuestRegionBytes, PAGE_SIZE};

/// Chunk size of [`ChunkStore::open`]: 64 KiB.
pub const DEFAULT_CHUNK_SIZE: u64 = 64 * 1024;
/// First 8 bytes of every manifest.
const MANIFEST_MAGIC: [u8; 8] = *b"VMCHUNKM";
/// The manifest format this build writes and reads.
const MANIFEST_FORMAT_VERSION: u32 = 1;
/// Bytes of a manifest's fixed header.
const MANIFEST_HEADER_LEN: u64 = 24;
/// Bytes of one region entry of a manifest.
const MANIFEST_REGION_LEN: u64 = 24;
/// Bytes of one chunk id (BLAKE3).
const ID_LEN: u64 = 32;

/// A directory of content-addressed chunks of guest memory and one manifest per snapshot:
///
/// ```text
/// ROOT/lock                    flock: saves and loads share it, gc takes it alone
/// ROOT/chunks/HH/HHHH…HH       a chunk, named by the hex BLAKE3 hash of its bytes
/// ROOT/snapshots/NAME.manifest the chunk ids of each region of snapshot NAME
/// ```
///
/// A save hashes every chunk and writes only chunks the store does not hold, so snapshots of
/// the same or similar guests share their chunks (an unchanged guest adds only its
/// manifest). New chunks are made durable (`syncfs`) before the manifest that names them
/// is renamed into place. A load checks each chunk's hash. [`remove`](Self::remove) deletes
/// a manifest; [`gc`](Self::gc) deletes the chunks no manifest names.
///
/// # Example
/// ```
/// use kvm_state::{ChunkStore, GuestMemoryMapping};
///
/// let root = std::env::temp_dir().join(format!("chunk-doc-{}", std::process::id()));
/// let store = ChunkStore::open(&root).unwrap();
/// let mut memory = GuestMemoryMapping::anonymous(0, 1 << 20).unwrap();
/// memory.as_mut_slice()[0x4321] = 1;
///
/// let first = store.save("monday", &[memory.region()]).unwrap();
/// assert_eq!((first.chunks, first.new_chunks), (16, 2)); // 15 zero chunks are one chunk
/// let second = store.save("tuesday", &[memory.region()]).unwrap();
/// assert_eq!(second.new_chunks, 0); // only the manifest is new
///
/// store.remove("monday").unwrap();
/// assert_eq!(store.gc().unwrap().removed, 0); // "tuesday" names the same chunks
/// assert_eq!(store.load("tuesday").unwrap()[0].as_slice(), memory.as_slice());
/// # std::fs::remove_dir_all(&root).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct ChunkStore {
    root: PathBuf,
    chunk_size: u64,
}

/// What [`ChunkStore::save`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkSaveStats {
    /// Bytes of guest memory saved.
    pub memory_bytes: u64,
    /// Chunks the snapshot names.
    pub chunks: u64,
    /// Chunks written because the store did not hold them.
    pub new_chunks: u64,
    /// Bytes added to the store: the new chunks and the manifest.
    pub new_bytes: u64,
}

/// What [`ChunkStore::gc`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Chunks (and leftover temporary files) deleted.
    pub removed: u64,
    /// Bytes they held.
    pub freed_bytes: u64,
    /// Chunks kept because a manifest names them.
    pub kept: u64,
}

/// A manifest, parsed.
struct Manifest {
    chunk_size: u64,
    /// Guest address, size, chunk ids.
    regions: Vec<(u64, u64, Vec<[u8; 32]>)>,
}

fn hex(id: &[u8; 32]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_u64(bytes: &[u8], at: u64) -> u64 {
    let mut word = [0u8; 8];
    if let Some(src) = usize::try_from(at)
        .ok()
        .and_then(|at| bytes.get(at..at + 8))
    {
        word.copy_from_slice(src);
    }
    u64::from_le_bytes(word)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_le_bytes(word)
}

/// A lock on the store's lock file, released on drop (with the file).
struct StoreLock(#[allow(dead_code, reason = "held for its lock")] File);

impl ChunkStore {
    /// Opens (creating if needed) the store at `root`, with 64 KiB chunks for new saves.
    ///
    /// # Errors
    /// [`MemoryError::Io`] when the directories cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> MemoryResult<Self> {
        Self::with_chunk_size(root, DEFAULT_CHUNK_SIZE)
    }

    /// Opens (creating if needed) the store at `root`; new saves cut memory into chunks of
    /// `chunk_size` bytes (a multiple of the page size, at most 64 MiB). Manifests record
    /// their chunk size, so stores can mix sizes (chunks of different sizes are never
    /// shared).
    ///
    /// # Errors
    /// [`MemoryError::Region`] for a bad chunk size, [`MemoryError::Io`] when the
    /// directories cannot be created.
    pub fn with_chunk_size(root: impl Into<PathBuf>, chunk_size: u64) -> MemoryResult<Self> {
        if chunk_size == 0 || chunk_size % PAGE_SIZE != 0 || chunk_size > 64 << 20 {
            return Err(MemoryError::Region {
                guest_phys_addr: 0,
                size: chunk_size,
                reason: "chunk size must be a multiple of the page size, at most 64 MiB",
            });
        }
        let root = root.into();
        for dir in [root.join("chunks"), root.join("snapshots")] {
            fs::create_dir_all(&dir).map_err(|e| MemoryError::io("create directory", dir, e))?;
        }
        Ok(ChunkStore { root, chunk_size })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self, exclusive: bool) -> MemoryResult<StoreLock> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| MemoryError::io("open", &path, e))?;
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        // SAFETY: `flock` on a file descriptor `file` owns and keeps open; it reads no
        // memory of ours.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc != 0 {
            return Err(MemoryError::io("lock", path, io::Error::last_os_error()));
        }
        Ok(StoreLock(file))
    }

    fn manifest_path(&self, name: &str) -> MemoryResult<PathBuf> {
        let valid = !name.is_empty()
            && name.len() <= 128
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
        if !valid {
            return Err(MemoryError::SnapshotName {
                name: name.to_owned(),
            });
        }
        Ok(self.root.join("snapshots").join(format!("{name}.manifest")))
    }

    fn chunk_path(&self, id: &[u8; 32]) -> PathBuf {
        let name = hex(id);
        self.root.join("chunks").join(&name[..2]).join(name)
    }

    /// Saves `regions` as snapshot `name` (replacing a snapshot of that name): writes the
    /// chunks the store does not hold, then the manifest.
    ///
    /// # Errors
    /// [`MemoryError::SnapshotName`] for a name that is not a plain file name,
    /// [`MemoryError::Region`] for regions that are not page-aligned or overlap,
    /// [`MemoryError::Io`] when writing fails.
    pub fn save(
        &self,
        name: &str,
        regions: &[GuestRegionBytes<'_>],
    ) -> MemoryResult<ChunkSaveStats> {
        let manifest_path = self.manifest_path(name)?;
        let pairs: Vec<(u64, u64)> = regions
            .iter()
            .map(|r| (r.guest_phys_addr, r.bytes.len() as u64))
            .collect();
        check_regions(&pairs)?;
        let _lock = self.lock(false)?;

        let mut stats = ChunkSaveStats::default();
        let mut manifest = Vec::new();
        manifest.extend_from_slice(&MANIFEST_MAGIC);
        manifest.extend_from_slice(&MANIFEST_FORMAT_VERSION.to_le_bytes());
        manifest.extend_from_slice(&(self.chunk_size as u32).to_le_bytes());
        manifest.extend_from_slice(&(regions.len() as u32).to_le_bytes());
        manifest.extend_from_slice(&0u32.to_le_bytes());
        for region in regions {
            let size = region.bytes.len() as u64;
            manifest.extend_from_slice(&region.guest_phys_addr.to_le_bytes());
            manifest.extend_from_slice(&size.to_le_bytes());
            manifest.extend_from_slice(&size.div_ceil(self.chunk_size).to_le_bytes());
        }
        let mut seen = HashSet::new();
        for region in regions {
            stats.memory_bytes += region.bytes.len() as u64;
            for chunk in region.bytes.chunks(self.chunk_size as usize) {
                let id: [u8; 32] = *blake3::hash(chunk).as_bytes();
                manifest.extend_from_slice(&id);
                stats.chunks += 1;
                if seen.insert(id) && self.write_chunk(&id, chunk)? {
                    stats.new_chunks += 1;
                    stats.new_bytes += chunk.len() as u64;
                }
            }
        }
        let crc = crc64(&manifest);
        manifest.extend_from_slice(&crc.to_le_bytes());
        if stats.new_chunks > 0 {
            self.sync_chunks()?;
        }
        atomic_write(&manifest_path, |file, temp| {
            file.write_all(&manifest)
                .map_err(|e| MemoryError::io("write", temp, e))
        })?;
        stats.new_bytes += manifest.len() as u64;
        Ok(stats)
    }

    /// Writes a chunk unless the store holds it with the right length; returns whether it
    /// wrote it. A chunk of the wrong length (e.g. left empty by a crash before the
    /// `syncfs`) is replaced; one with the right length and wrong bytes is found by the next
    /// load.
    fn write_chunk(&self, id: &[u8; 32], bytes: &[u8]) -> MemoryResult<bool> {
        let path = self.chunk_path(id);
        if fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
            return Ok(false);
        }
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(|e| MemoryError::io("create directory", dir, e))?;
        let temp = path.with_extension(format!("{:016x}.tmp", super::random_id()? as u64));
        let result = File::create(&temp)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(|e| MemoryError::io("write", &temp, e))
            .and_then(|()| {
                fs::rename(&temp, &path).map_err(|e| MemoryError::io("rename", &path, e))
            });
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result.map(|()| true)
    }

    /// Makes every chunk written so far durable with one `syncfs` of the store's file
    /// system (instead of an fsync per chunk file and directory).
    fn sync_chunks(&self) -> MemoryResult<()> {
        let dir = self.root.join("chunks");
        let handle = File::open(&dir).map_err(|e| MemoryError::io("open", &dir, e))?;
        // SAFETY: `syncfs` on a descriptor `handle` owns and keeps open; it reads no memory
        // of ours.
        let rc = unsafe { libc::syncfs(handle.as_raw_fd()) };
        if rc != 0 {
            return Err(MemoryError::io("sync", dir, io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Reads and checks the manifest of snapshot `name`.
    fn read_manifest(&self, name: &str) -> MemoryResult<Manifest> {
        let path = self.manifest_path(name)?;
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(MemoryError::NoSnapshot {
                    name: name.to_owned(),
                })
            }
            Err(e) => return Err(MemoryError::io("open", path, e)),
        };
        let len = file_len(&file, &path)?;
        if len < MANIFEST_HEADER_LEN + 8 {
            return Err(MemoryError::Length {
                path,
                expected: MANIFEST_HEADER_LEN + 8,
                found: len,
            });
        }
        let mut header = [0u8; MANIFEST_HEADER_LEN as usize];
        file.read_exact(&mut header)
            .map_err(|e| MemoryError::io("read", &path, e))?;
        if header[..8] != MANIFEST_MAGIC {
            return Err(MemoryError::format(
                &path,
                "not a chunk manifest (bad magic)",
            ));
        }
        let version = read_u32(&header, 8);
        if version != MANIFEST_FORMAT_VERSION {
            return Err(MemoryError::format(
                &path,
                format!("manifest format version {version} is not supported (this build reads {MANIFEST_FORMAT_VERSION})"),
            ));
        }
        let chunk_size = u64::from(read_u32(&header, 12));
        let region_count = u64::from(read_u32(&header, 16));
        let table_end = MANIFEST_HEADER_LEN + region_count * MANIFEST_REGION_LEN;
        if table_end + 8 > len {
            return Err(MemoryError::Length {
                path,
                expected: table_end + 8,
                found: len,
            });
        }
        // The whole file is at most a few MiB for terabytes of memory; `len` is the real
        // file length, checked against what the header announces before anything is used.
        let mut bytes = header.to_vec();
        bytes.resize(len as usize, 0);
        file.read_exact(&mut bytes[MANIFEST_HEADER_LEN as usize..])
            .map_err(|e| MemoryError::io("read", &path, e))?;
        let body_len = len - 8;
        let found = crc64(&bytes[..body_len as usize]);
        if read_u64(&bytes, body_len) != found {
            return Err(MemoryError::format(
                &path,
                "manifest checksum does not match",
            ));
        }
        if chunk_size == 0 || chunk_size % PAGE_SIZE != 0 {
            return Err(MemoryError::format(
                &path,
                format!("bad chunk size {chunk_size}"),
            ));
        }
        let mut at = table_end;
        let mut regions = Vec::new();
        for index in 0..region_count {
            let entry = MANIFEST_HEADER_LEN + index * MANIFEST_REGION_LEN;
            let (addr, size, count) = (
                read_u64(&bytes, entry),
                read_u64(&bytes, entry + 8),
                read_u64(&bytes, entry + 16),
            );
            if count != size.div_ceil(chunk_size) || count.saturating_mul(ID_LEN) > body_len - at {
                return Err(MemoryError::format(
                    &path,
                    format!("region at {addr:#x} has {count} chunks, which do not fit its size {size} or the file"),
                ));
            }
            let ids = (0..count)
                .map(|i| {
                    let start = (at + i * ID_LEN) as usize;
                    let mut id = [0u8; 32];
                    id.copy_from_slice(&bytes[start..start + ID_LEN as usize]);
                    id
                })
                .collect();
            at += count * ID_LEN;
            regions.push((addr, size, ids));
        }
        if at != body_len {
            return Err(MemoryError::Length {
                path,
                expected: at + 8,
                found: len,
            });
        }
        let pairs: Vec<(u64, u64)> = regions.iter().map(|(a, s, _)| (*a, *s)).collect();
        check_regions(&pairs)?;
        Ok(Manifest {
            chunk_size,
            regions,
        })
    }

    /// Restores snapshot `name` into anonymous guest memory, one mapping per region,
    /// checking that every chunk hashes to its id.
    ///
    /// # Errors
    /// [`MemoryError::NoSnapshot`], [`MemoryError::ChunkMissing`],
    /// [`MemoryError::ChunkCorrupt`], [`MemoryError::Format`] or [`MemoryError::Length`] for
    /// a damaged manifest, [`MemoryError::Io`], [`MemoryError::Map`].
    pub fn load(&self, name: &str) -> MemoryResult<Vec<GuestMemoryMapping>> {
        let _lock = self.lock(false)?;
        let manifest = self.read_manifest(name)?;
        let mut mappings = Vec::with_capacity(manifest.regions.len());
        for (addr, size, ids) in &manifest.regions {
            let mut mapping = GuestMemoryMapping::anonymous(*addr, *size)?;
            let bytes = mapping.as_mut_slice();
            for (chunk, id) in bytes.chunks_mut(manifest.chunk_size as usize).zip(ids) {
                self.read_chunk(id, chunk, name)?;
            }
            mappings.push(mapping);
        }
        Ok(mappings)
    }

    fn read_chunk(&self, id: &[u8; 32], dest: &mut [u8], snapshot: &str) -> MemoryResult<()> {
        let path = self.chunk_path(id);
        let corrupt = || MemoryError::ChunkCorrupt {
            id: hex(id),
            snapshot: snapshot.to_owned(),
        };
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(MemoryError::ChunkMissing {
                    id: hex(id),
                    snapshot: snapshot.to_owned(),
                })
            }
            Err(e) => return Err(MemoryError::io("open", path, e)),
        };
        if file_len(&file, &path)? != dest.len() as u64 {
            return Err(corrupt());
        }
        file.read_exact(dest)
            .map_err(|e| MemoryError::io("read", &path, e))?;
        if blake3::hash(dest).as_bytes() != id {
            return Err(corrupt());
        }
        Ok(())
    }

    /// The names of the snapshots in the store, sorted.
    ///
    /// # Errors
    /// [`MemoryError::Io`] when the directory cannot be read.
    pub fn snapshots(&self) -> MemoryResult<Vec<String>> {
        let dir = self.root.join("snapshots");
        let entries = fs::read_dir(&dir).map_err(|e| MemoryError::io("read directory", &dir, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| MemoryError::io("read directory", &dir, e))?;
            if let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".manifest"))
            {
                if !name.starts_with('.') {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Removes snapshot `name`'s manifest; its chunks stay until [`gc`](Self::gc).
    ///
    /// # Errors
    /// [`MemoryError::NoSnapshot`] when there is none, [`MemoryError::Io`].
    pub fn remove(&self, name: &str) -> MemoryResult<()> {
        let path = self.manifest_path(name)?;
        let _lock = self.lock(false)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(MemoryError::NoSnapshot {
                name: name.to_owned(),
            }),
            Err(e) => Err(MemoryError::io("remove", path, e)),
        }
    }

    /// Deletes every chunk no snapshot's manifest names, and temporary files left by
    /// interrupted saves. Holds the store's lock alone, so no save or load runs meanwhile.
    /// Refuses to delete anything if a manifest cannot be read.
    ///
    /// # Errors
    /// The errors of reading a manifest (a damaged manifest stops the collection),
    /// [`MemoryError::Io`].
    pub fn gc(&self) -> MemoryResult<GcStats> {
        let _lock = self.lock(true)?;
        let mut live = HashSet::new();
        for name in self.snapshots()? {
            for (_, _, ids) in self.read_manifest(&name)?.regions {
                live.extend(ids.iter().map(hex));
            }
        }
        let mut stats = GcStats::default();
        let chunks = self.root.join("chunks");
        let read_dir =
            |dir: &Path| fs::read_dir(dir).map_err(|e| MemoryError::io("read directory", dir, e));
        for sub in read_dir(&chunks)? {
            let sub = sub
                .map_err(|e| MemoryError::io("read directory", &chunks, e))?
                .path();
            if !sub.is_dir() {
                continue;
            }
            for entry in read_dir(&sub)? {
                let entry = entry.map_err(|e| MemoryError::io("read directory", &sub, e))?;
                let name = entry.file_name();
                if live.contains(name.to_string_lossy().as_ref()) {
                    stats.kept += 1;
                    continue;
                }
                let path = entry.path();
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).map_err(|e| MemoryError::io("remove", &path, e))?;
                stats.removed += 1;
                stats.freed_bytes += len;
            }
        }
        // Temporary manifests of interrupted saves.
        let snapshots = self.root.join("snapshots");
        for entry in read_dir(&snapshots)? {
            let entry = entry.map_err(|e| MemoryError::io("read directory", &snapshots, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let path = entry.path();
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).map_err(|e| MemoryError::io("remove", &path, e))?;
                stats.removed += 1;
                stats.freed_bytes += len;
            }
        }
        Ok(stats)
    }
}
