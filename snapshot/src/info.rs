//! Reading a snapshot's container fields without decoding its state.

use std::io::Read;
use std::path::Path;

use versionize::crc::crc64;

use crate::file::open_regular_file;
use crate::magic::{arch_of_magic, BASE_MAGIC_ID, BASE_MAGIC_ID_MASK};
use crate::snapshot::{CRC_LEN, HEADER_LEN, MAGIC_LEN, MIN_SNAPSHOT_LEN};
use crate::{Result, SnapshotError};

/// What the container of a snapshot says, read without decoding the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The magic number.
    pub magic: u64,
    /// The architecture the magic belongs to, if any.
    pub arch: Option<&'static str>,
    /// Whether the magic is this build's architecture.
    pub native_arch: bool,
    /// The format version (low 16 bits of the magic).
    pub format_version: u16,
    /// The data version in the header.
    pub data_version: u16,
    /// Bytes in the file.
    pub file_len: u64,
    /// Bytes of state (file less magic, header and CRC).
    pub state_len: u64,
    /// The CRC stored at the end.
    pub stored_crc: u64,
    /// The CRC of the bytes before it.
    pub computed_crc: u64,
}

impl SnapshotInfo {
    /// Whether the stored CRC matches the contents.
    #[must_use]
    pub fn crc_ok(&self) -> bool {
        self.stored_crc == self.computed_crc
    }

    /// Reads the container fields of a whole snapshot held in memory.
    ///
    /// # Errors
    /// [`SnapshotError::InvalidSnapshotSize`] when `bytes` cannot hold a snapshot.
    pub fn from_bytes(bytes: &[u8]) -> Result<SnapshotInfo> {
        let file_len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if file_len < MIN_SNAPSHOT_LEN {
            return Err(SnapshotError::InvalidSnapshotSize {
                len: file_len,
                min: MIN_SNAPSHOT_LEN,
            });
        }
        let word = |at: usize| -> u64 {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(raw)
        };
        let magic = word(0);
        let crc_at = bytes.len() - 8;
        let data_version = u16::from_le_bytes([bytes[8], bytes[9]]);
        Ok(SnapshotInfo {
            magic,
            arch: arch_of_magic(magic),
            native_arch: magic & BASE_MAGIC_ID_MASK == BASE_MAGIC_ID,
            format_version: u16::try_from(magic & 0xFFFF).unwrap_or(u16::MAX),
            data_version,
            file_len,
            state_len: file_len - MAGIC_LEN - HEADER_LEN - CRC_LEN,
            stored_crc: word(crc_at),
            computed_crc: crc64(&bytes[..crc_at]),
        })
    }

    /// Reads the container fields of a snapshot file (at most `max_len` bytes are read).
    ///
    /// # Errors
    /// [`SnapshotError::File`] for an unreadable path, [`SnapshotError::NotRegularFile`] for
    /// a non-file (never blocking on a FIFO),
    /// [`SnapshotError::StateTooLarge`] above `max_len`, and as
    /// [`from_bytes`](Self::from_bytes).
    pub fn from_file(path: impl AsRef<Path>, max_len: u64) -> Result<SnapshotInfo> {
        let path = path.as_ref();
        let (file, len) = open_regular_file(path)?;
        if len > max_len {
            return Err(SnapshotError::StateTooLarge {
                len,
                limit: max_len,
            });
        }
        let mut bytes = Vec::new();
        file.take(max_len)
            .read_to_end(&mut bytes)
            .map_err(|e| SnapshotError::file("read", path, e))?;
        Self::from_bytes(&bytes)
    }
}

/// Longest format version string [`FirecrackerSnapshotInfo`] recognises.
const MAX_SEMVER_LEN: u64 = 64;

/// A snapshot file in the layout of Firecracker releases after the v1 format, recognised
/// so that a tool can name it: an architecture's magic with format bits 0, the format
/// version as a semantic version string (a little-endian `u64` length, then the text),
/// Firecracker's own (serde and bincode) payload, and the CRC-64 of everything before it.
/// This crate does not decode the payload. See `docs/VMSTATE.md`, "Firecracker's later
/// files".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirecrackerSnapshotInfo {
    /// The magic number.
    pub magic: u64,
    /// The architecture the magic belongs to.
    pub arch: &'static str,
    /// Whether the magic is this build's architecture.
    pub native_arch: bool,
    /// The format version, as written (`"4.0.0"`).
    pub format_version: String,
    /// Bytes in the file.
    pub file_len: u64,
    /// Bytes of payload (file less magic, version and CRC).
    pub payload_len: u64,
    /// The CRC stored at the end.
    pub stored_crc: u64,
    /// The CRC of the bytes before it.
    pub computed_crc: u64,
}

impl FirecrackerSnapshotInfo {
    /// Whether the stored CRC matches the contents.
    #[must_use]
    pub fn crc_ok(&self) -> bool {
        self.stored_crc == self.computed_crc
    }

    /// Recognises a whole file held in memory; `None` when it is not in that layout (a
    /// v1 snapshot, whose magic carries a non-zero format version, never is).
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<FirecrackerSnapshotInfo> {
        let word = |at: usize| -> Option<u64> {
            let raw: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
            Some(u64::from_le_bytes(raw))
        };
        let magic = word(0)?;
        if magic & !BASE_MAGIC_ID_MASK != 0 {
            return None;
        }
        let arch = arch_of_magic(magic)?;
        let text_len = word(8)?;
        if text_len == 0 || text_len > MAX_SEMVER_LEN {
            return None;
        }
        // Bounded by MAX_SEMVER_LEN above.
        let text_end = 16 + usize::try_from(text_len).ok()?;
        let crc_at = bytes.len().checked_sub(8)?;
        if text_end > crc_at {
            return None;
        }
        let format_version = std::str::from_utf8(&bytes[16..text_end]).ok()?;
        if !is_semver(format_version) {
            return None;
        }
        let file_len = u64::try_from(bytes.len()).ok()?;
        Some(FirecrackerSnapshotInfo {
            magic,
            arch,
            native_arch: magic & BASE_MAGIC_ID_MASK == BASE_MAGIC_ID,
            format_version: format_version.to_owned(),
            file_len,
            payload_len: file_len - 16 - text_len - CRC_LEN,
            stored_crc: word(crc_at)?,
            computed_crc: crc64(&bytes[..crc_at]),
        })
    }
}

/// `MAJOR.MINOR.PATCH`, then an optional `-pre` and `+build` of `[0-9A-Za-z.-]`.
fn is_semver(text: &str) -> bool {
    let (core, rest) = match text.find(['-', '+']) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    numbers.len() == 3
        && numbers
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'+')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Snapshot;
    use versionize::VersionMap;

    #[test]
    fn test_info_reads_container_fields() {
        let mut map = VersionMap::new();
        map.new_version();
        let mut bytes = Vec::new();
        Snapshot::new(map, 2).save(&mut bytes, &0xABCDu32).unwrap();
        let info = SnapshotInfo::from_bytes(&bytes).unwrap();
        assert!(info.native_arch);
        assert_eq!(info.format_version, 1);
        assert_eq!(info.data_version, 2);
        assert_eq!(info.state_len, 4);
        assert_eq!(info.file_len, 22);
        assert!(info.crc_ok());
        bytes[10] ^= 1;
        assert!(!SnapshotInfo::from_bytes(&bytes).unwrap().crc_ok());
        assert!(SnapshotInfo::from_bytes(&bytes[..17]).is_err());
        assert_eq!(FirecrackerSnapshotInfo::from_bytes(&bytes), None);
    }

    /// A file in the layout of seed 002, built from bytes: magic with format bits 0,
    /// `u64` length and semver text, payload, CRC-64 of all before it.
    fn firecracker_file(magic: u64, version: &str, payload: &[u8]) -> Vec<u8> {
        let mut bytes = magic.to_le_bytes().to_vec();
        bytes.extend_from_slice(&(version.len() as u64).to_le_bytes());
        bytes.extend_from_slice(version.as_bytes());
        bytes.extend_from_slice(payload);
        let crc = crc64(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn test_info_recognises_firecracker_semver_files() {
        let bytes = firecracker_file(BASE_MAGIC_ID, "4.0.0", &[7; 100]);
        let info = FirecrackerSnapshotInfo::from_bytes(&bytes).unwrap();
        assert_eq!(info.format_version, "4.0.0");
        assert_eq!(info.payload_len, 100);
        assert_eq!(info.file_len, 8 + 8 + 5 + 100 + 8);
        assert!(info.native_arch && info.crc_ok());
        // The CRC of the layout is the container's: the residue over the whole file is 0.
        assert_eq!(crc64(&bytes), 0);

        let mut tampered = bytes.clone();
        tampered[40] ^= 1;
        assert!(!FirecrackerSnapshotInfo::from_bytes(&tampered)
            .unwrap()
            .crc_ok());

        let other = firecracker_file(crate::magic::MAGIC_AARCH64, "2.1.0-dev+abc", &[]);
        let info = FirecrackerSnapshotInfo::from_bytes(&other).unwrap();
        assert_eq!((info.arch, info.payload_len), ("aarch64", 0));
    }

    #[test]
    fn test_info_firecracker_recognition_refuses_other_layouts() {
        // Our v1 magic carries a format version.
        let v1 = firecracker_file(BASE_MAGIC_ID | 1, "4.0.0", &[0; 8]);
        assert_eq!(FirecrackerSnapshotInfo::from_bytes(&v1), None);
        // An unknown magic.
        assert_eq!(
            FirecrackerSnapshotInfo::from_bytes(&firecracker_file(0x1234_0000, "1.0.0", &[])),
            None
        );
        // Not a semantic version.
        for text in ["4.0", "a.b.c", "1.2.3 ", "1..3", ""] {
            let bytes = firecracker_file(BASE_MAGIC_ID, text, &[1, 2]);
            assert_eq!(
                FirecrackerSnapshotInfo::from_bytes(&bytes),
                None,
                "{text:?}"
            );
        }
        // A length past the end, a huge length, a file cut inside the version.
        let good = firecracker_file(BASE_MAGIC_ID, "4.0.0", &[]);
        assert_eq!(FirecrackerSnapshotInfo::from_bytes(&good[..20]), None);
        let mut huge = good.clone();
        huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(FirecrackerSnapshotInfo::from_bytes(&huge), None);
        for len in 0..good.len() - 8 {
            assert_eq!(FirecrackerSnapshotInfo::from_bytes(&good[..len]), None);
        }
    }
}
