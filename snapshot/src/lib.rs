//! The snapshot container: versioned VMM state in a file that Firecracker's v1 snapshot
//! format can read and write.
//!
//! ```text
//! +--------------------------------------------------------------+
//! | u64 magic: arch base | format version (low 16 bits)           |
//! | SnapshotHdr { data_version: u16 }                             |
//! | state: the object, Versionize-encoded at data_version         |
//! | u64 CRC-64/REDIS of every byte above (absent without CRC)     |
//! +--------------------------------------------------------------+
//! ```
//!
//! Loading checks, in order: the length against the state cap, the magic (naming the
//! architecture of a foreign file), the format version, the CRC, the data version, the state
//! and that nothing trails it. Saving to a path is atomic.
//!
//! Optionally, a snapshot's files (the state and its guest memory files) are *sealed*:
//! authenticated with HMAC-SHA256 or encrypted with ChaCha20-Poly1305 or AES-256-GCM under a
//! caller's [`SealKey`], in chunks that a reader releases only once verified ([`seal_file`],
//! [`open_file`], [`save_sealed`], [`load_sealed`], [`seal_writer`], [`open_reader`]).
//! Plain files stay the default.
//!
//! The full byte layout with a worked example follows.
//!
#![doc = include_str!("../../docs/FORMAT.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod file;
mod info;
pub mod magic;
mod seal;
mod snapshot;
mod writer_info;

pub use crate::error::{Result, SnapshotError};
#[doc(hidden)]
pub use crate::file::{atomic_write_with_faults, SaveStep};
pub use crate::file::{open_regular_file, read_regular_file};
pub use crate::info::{FirecrackerSnapshotInfo, SnapshotInfo};
pub use crate::magic::{arch_of_magic, get_format_version};
pub use crate::seal::{
    load_sealed, open_bytes, open_file, open_reader, open_snapshot_files, peek_sealed_header,
    save_sealed, save_sealed_parts, seal_bytes, seal_file, seal_snapshot_files, seal_writer,
    verify_sealed_file, OpenReader, SealAlgorithm, SealFileId, SealKey, SealKeyId, SealOptions,
    SealWriter, SealedFileRef, SealedHeader, SnapshotFile, DEFAULT_SEAL_CHUNK_SIZE,
    MAX_SEAL_CHUNK_SIZE, MAX_SEAL_COMPANIONS, MAX_SEAL_LABEL_LEN, MIN_SEAL_CHUNK_SIZE,
    SEAL_FORMAT_VERSION, SEAL_KEY_LEN, SEAL_MAGIC, SEAL_TAG_LEN,
};
pub use crate::snapshot::{
    LoadOptions, Snapshot, SnapshotHdr, BUDGET_PER_STATE_BYTE, CRC_LEN, DEFAULT_MAX_STATE_LEN,
    FORMAT_VERSION, HEADER_LEN, MAGIC_LEN, MIN_SNAPSHOT_LEN,
};
pub use crate::writer_info::{
    schema_fingerprint, writer_info_path, WriterInfo, MAX_WRITER_INFO_LEN, WRITER_INFO_HEADER,
};

/// The seed API's name for [`SnapshotError`].
pub type Error = SnapshotError;
