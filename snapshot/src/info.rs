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
    }
}
