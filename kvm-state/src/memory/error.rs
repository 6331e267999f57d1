//! The error type of the guest-memory files.

use std::io;
use std::path::PathBuf;

use super::MemoryLayerId;

/// Result alias of the guest-memory functions.
pub type MemoryResult<T> = Result<T, MemoryError>;

/// Everything that can go wrong while saving, mapping, verifying or combining guest-memory
/// files (full memory files, diffs and the chunk store).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// A file operation failed; `op` names it.
    #[error("cannot {op} {path}", path = path.display())]
    Io {
        /// What was being done, e.g. `write`.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error of the operating system.
        #[source]
        source: io::Error,
    },
    /// Mapping guest memory (`mmap`) failed.
    #[error("cannot map {size} bytes of guest memory at guest address {guest_phys_addr:#x}")]
    Map {
        /// Guest physical address of the region.
        guest_phys_addr: u64,
        /// Size of the region, in bytes.
        size: u64,
        /// The error of the operating system.
        #[source]
        source: io::Error,
    },
    /// The regions given to a save are not page-aligned, empty, overlapping, or do not
    /// match the regions of the file they are combined with.
    #[error("guest memory region at {guest_phys_addr:#x} ({size} bytes): {reason}")]
    Region {
        /// Guest physical address of the region.
        guest_phys_addr: u64,
        /// Size of the region, in bytes.
        size: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A file does not have the length its description says: truncated, or not the file the
    /// description belongs to.
    #[error("{path} is {found} bytes long, expected {expected}", path = path.display())]
    Length {
        /// The file.
        path: PathBuf,
        /// Length it must have.
        expected: u64,
        /// Length it has.
        found: u64,
    },
    /// The bytes of a region of a memory file do not have the checksum recorded when it was
    /// saved.
    #[error(
        "{path}: region at guest address {guest_phys_addr:#x} has crc64 {found:#018x}, expected {expected:#018x}",
        path = path.display()
    )]
    Checksum {
        /// The memory file (or diff file).
        path: PathBuf,
        /// Guest physical address of the region whose bytes changed.
        guest_phys_addr: u64,
        /// Checksum recorded at save time.
        expected: u64,
        /// Checksum of the bytes read.
        found: u64,
    },
    /// A diff file or a chunk manifest is malformed: wrong magic, unknown format version, a
    /// header whose checksum fails, or fields that contradict each other.
    #[error("{path}: {reason}", path = path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A diff was applied on top of a layer it was not taken from: the wrong base, or a
    /// chain out of order.
    #[error(
        "{path} applies on top of memory layer {expected}, but the memory it is applied to is layer {found}",
        path = path.display()
    )]
    WrongBase {
        /// The diff file.
        path: PathBuf,
        /// The layer the diff records as its base.
        expected: MemoryLayerId,
        /// The layer the memory is at.
        found: MemoryLayerId,
    },
    /// Reading KVM's dirty-page log failed.
    #[error("KVM_GET_DIRTY_LOG failed for memory slot {slot}")]
    DirtyLog {
        /// The memory slot.
        slot: u32,
        /// The errno returned by the kernel.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// A chunk of the chunk store is missing.
    #[error("chunk {id} is missing from the chunk store (needed by snapshot {snapshot})")]
    ChunkMissing {
        /// Hex content id of the chunk.
        id: String,
        /// The snapshot whose manifest names it.
        snapshot: String,
    },
    /// A chunk's bytes do not hash to its content id.
    #[error(
        "chunk {id} is corrupt: its bytes do not hash to its id (needed by snapshot {snapshot})"
    )]
    ChunkCorrupt {
        /// Hex content id of the chunk.
        id: String,
        /// The snapshot whose manifest names it.
        snapshot: String,
    },
    /// A snapshot name the chunk store cannot use as a file name.
    #[error(
        "invalid snapshot name {name:?}: use 1 to 128 of A-Z a-z 0-9 . _ -, not starting with ."
    )]
    SnapshotName {
        /// The name given.
        name: String,
    },
    /// The chunk store has no snapshot of this name.
    #[error("the chunk store has no snapshot {name}")]
    NoSnapshot {
        /// The name given.
        name: String,
    },
}

impl MemoryError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        MemoryError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        MemoryError::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
