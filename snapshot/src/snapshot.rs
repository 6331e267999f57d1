//! Saving and loading a versioned state object in the snapshot container.

use std::borrow::Borrow;
use std::fmt::Debug;
use std::io::{BufWriter, Read, Write};

use versionize::crc::{CRC64Reader, CRC64Writer};
use versionize::limits::BudgetOverride;
use versionize::{prelude::Versionize, VersionMap};

use crate::magic::{build_magic_id, get_format_version};
use crate::{Result, SnapshotError};

/// The newest container format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// Bytes of the magic number.
pub const MAGIC_LEN: u64 = 8;
/// Bytes of the header (`data_version: u16`) at format version 1.
pub const HEADER_LEN: u64 = 2;
/// Bytes of the trailing checksum.
pub const CRC_LEN: u64 = 8;
/// The shortest snapshot [`Snapshot::load`] accepts: magic, header, no state, checksum.
pub const MIN_SNAPSHOT_LEN: u64 = MAGIC_LEN + HEADER_LEN + CRC_LEN;

/// Default cap on the bytes of state [`Snapshot::load`] accepts: 10 MiB.
pub const DEFAULT_MAX_STATE_LEN: u64 = 10 * 1024 * 1024;

/// Decode budget per byte of state that [`Snapshot::load`] allows at least: a state that
/// passed the cap on disk may allocate twice its size in memory (or the version map's
/// budget, if larger), since in-memory values are larger than their encoding.
pub const BUDGET_PER_STATE_BYTE: u64 = 2;

/// The container header that follows the magic number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Versionize)]
pub struct SnapshotHdr {
    /// The app (data) version the state was written at.
    pub data_version: u16,
}

/// Options of [`Snapshot::load_with`] and [`Snapshot::load_file_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    max_state_len: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            max_state_len: DEFAULT_MAX_STATE_LEN,
        }
    }
}

impl LoadOptions {
    /// Sets the largest state (bytes between header and checksum) accepted. A state that
    /// fits is decoded with a budget of at least [`BUDGET_PER_STATE_BYTE`] times its size.
    #[must_use]
    pub fn with_max_state_len(mut self, bytes: u64) -> Self {
        self.max_state_len = bytes;
        self
    }

    /// The largest state accepted.
    #[must_use]
    pub fn max_state_len(&self) -> u64 {
        self.max_state_len
    }
}

/// Writes and reads snapshots: magic, header, state, CRC-64.
///
/// # Example
/// ```
/// use snapshot::Snapshot;
/// use versionize::prelude::*;
///
/// #[derive(Debug, PartialEq, Versionize)]
/// struct Pit {
///     count: u32,
///     #[version(start = 2)]
///     mode: u8,
/// }
///
/// let mut map = VersionMap::new();
/// map.new_version().set_type_version(Pit::type_id(), 2);
///
/// // Save for a build that only knows app version 1.
/// let mut file = Vec::new();
/// Snapshot::new(map.clone(), 1).save(&mut file, &Pit { count: 7, mode: 3 }).unwrap();
/// assert_eq!(file.len(), 8 + 2 + 4 + 8);
///
/// let (pit, data_version) = Snapshot::load::<_, Pit>(&mut file.as_slice(), file.len(), map).unwrap();
/// assert_eq!((pit, data_version), (Pit { count: 7, mode: 0 }, 1));
/// ```
#[derive(Debug)]
pub struct Snapshot {
    hdr: SnapshotHdr,
    version_map: VersionMap,
    target_version: u16,
}

/// Bytes the encoder's writes are gathered into before they are checksummed and written.
const STAGING_BYTES: usize = 64 * 1024;

impl Snapshot {
    /// A snapshot writer for state at app version `target_version` of `version_map`.
    #[must_use]
    pub fn new(version_map: VersionMap, target_version: u16) -> Snapshot {
        Snapshot {
            hdr: SnapshotHdr::default(),
            version_map,
            target_version,
        }
    }

    /// The version map of the container itself (format version 1).
    fn format_version_map() -> VersionMap {
        VersionMap::new()
    }

    /// Reads the magic and header from `reader` and returns the data version.
    ///
    /// # Errors
    /// [`SnapshotError::InvalidMagic`], [`SnapshotError::InvalidFormatVersion`],
    /// [`SnapshotError::InvalidDataVersion`], a data version older than the map's support
    /// window ([`VersionizeError::AppVersionUnsupported`](versionize::VersionizeError::AppVersionUnsupported)
    /// in [`SnapshotError::Versionize`]) or a decoding error.
    pub fn get_data_version<R: Read>(reader: &mut R, version_map: &VersionMap) -> Result<u16> {
        let format_map = Self::format_version_map();
        let magic = u64::deserialize(reader, &format_map, 1)?;
        let format_version = get_format_version(magic)?;
        if format_version == 0 || format_version > FORMAT_VERSION {
            return Err(SnapshotError::InvalidFormatVersion {
                found: format_version,
                supported: FORMAT_VERSION,
            });
        }
        let hdr = SnapshotHdr::deserialize(reader, &format_map, format_version)?;
        check_data_version(hdr.data_version, version_map)?;
        Ok(hdr.data_version)
    }

    /// Loads a snapshot from `reader` without checking a CRC (there may be none).
    ///
    /// The version map is borrowed (`&map`); a map by value, as the original API took,
    /// works too.
    ///
    /// Reads exactly the magic, header and state; whatever follows stays in the reader.
    ///
    /// # Errors
    /// As [`get_data_version`](Self::get_data_version), plus state decoding errors.
    pub fn unchecked_load<R: Read, O: Versionize>(
        reader: &mut R,
        version_map: impl Borrow<VersionMap>,
    ) -> Result<(O, u16)> {
        let version_map = version_map.borrow();
        let data_version = Self::get_data_version(reader, version_map)?;
        let object = O::deserialize(reader, version_map, data_version)?;
        Ok((object, data_version))
    }

    /// Loads a snapshot of `snapshot_len` bytes (CRC included) from `reader`, checking the
    /// CRC, with the default [`LoadOptions`].
    ///
    /// # Errors
    /// See [`load_with`](Self::load_with).
    pub fn load<R: Read, O: Versionize>(
        reader: &mut R,
        snapshot_len: usize,
        version_map: impl Borrow<VersionMap>,
    ) -> Result<(O, u16)> {
        Self::load_with(reader, snapshot_len, version_map, &LoadOptions::default())
    }

    /// Loads a snapshot of `snapshot_len` bytes (CRC included) from `reader`.
    ///
    /// The length is checked against the state cap before anything is allocated, the bytes
    /// are read (growing with what the reader actually returns), then the magic and format
    /// version, the CRC, the data version, the state, and finally that no bytes remain
    /// between the state and the CRC.
    ///
    /// # Errors
    /// [`SnapshotError::InvalidSnapshotSize`], [`SnapshotError::StateTooLarge`], i/o
    /// errors, [`SnapshotError::InvalidMagic`], [`SnapshotError::InvalidFormatVersion`],
    /// [`SnapshotError::Crc64`], [`SnapshotError::InvalidDataVersion`], state decoding
    /// errors, [`SnapshotError::TrailingBytes`].
    pub fn load_with<R: Read, O: Versionize>(
        reader: &mut R,
        snapshot_len: usize,
        version_map: impl Borrow<VersionMap>,
        options: &LoadOptions,
    ) -> Result<(O, u16)> {
        let len = u64::try_from(snapshot_len).unwrap_or(u64::MAX);
        if len < MIN_SNAPSHOT_LEN {
            return Err(SnapshotError::InvalidSnapshotSize {
                len,
                min: MIN_SNAPSHOT_LEN,
            });
        }
        let state_len = len - MIN_SNAPSHOT_LEN;
        if state_len > options.max_state_len {
            return Err(SnapshotError::StateTooLarge {
                len: state_len,
                limit: options.max_state_len,
            });
        }

        let mut crc_reader = CRC64Reader::new(reader);
        let body_len = len - CRC_LEN;
        let mut body = Vec::new();
        (&mut crc_reader).take(body_len).read_to_end(&mut body)?;
        if u64::try_from(body.len()).unwrap_or(u64::MAX) != body_len {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        // The checksum of the body is taken before the stored checksum passes through.
        let computed = crc_reader.checksum();
        let mut stored = [0u8; 8];
        crc_reader.read_exact(&mut stored)?;
        let stored = u64::from_le_bytes(stored);

        // Name a foreign file or architecture before blaming the checksum.
        let mut magic = [0u8; 8];
        magic.copy_from_slice(body.get(..8).unwrap_or(&[0; 8]));
        get_format_version(u64::from_le_bytes(magic))?;
        if computed != stored {
            return Err(SnapshotError::Crc64 { stored, computed });
        }

        let mut rest = body.as_slice();
        // The budget counts memory, which exceeds the bytes on disk: a state that fits the
        // cap gets what its size calls for (docs/SECURITY.md, "Limits").
        let budget = state_len.saturating_mul(BUDGET_PER_STATE_BYTE);
        let _budget = BudgetOverride::new(version_map.borrow().limits().budget().max(budget));
        let (object, data_version) = Self::unchecked_load(&mut rest, version_map)?;
        if !rest.is_empty() {
            return Err(SnapshotError::TrailingBytes {
                count: u64::try_from(rest.len()).unwrap_or(u64::MAX),
            });
        }
        Ok((object, data_version))
    }

    /// Saves `object` with a trailing CRC-64.
    ///
    /// The encoder's many small writes are gathered in a 64 KiB staging buffer before they
    /// reach the checksum and `writer`, so the CRC is taken over large blocks (and large
    /// fields, such as guest memory, pass straight through) instead of a little
    /// bookkeeping on every field, and no second copy of a large state is made.
    ///
    /// # Errors
    /// [`SnapshotError::InvalidDataVersion`] for a target version outside the map,
    /// [`SnapshotError::Versionize`] with
    /// [`VersionizeError::AppVersionUnsupported`](versionize::VersionizeError::AppVersionUnsupported)
    /// for one older than the map's support window (nothing is written), writer failures, or
    /// state encoding errors.
    pub fn save<W: Write, O: Versionize + Debug>(
        &mut self,
        writer: &mut W,
        object: &O,
    ) -> Result<()> {
        let mut crc_writer = CRC64Writer::new(writer);
        {
            let mut staged = BufWriter::with_capacity(STAGING_BYTES, &mut crc_writer);
            self.save_without_crc(&mut staged, object)?;
            staged.flush()?;
        }
        let checksum = crc_writer.checksum();
        crc_writer.write_all(&checksum.to_le_bytes())?;
        crc_writer.flush()?;
        Ok(())
    }

    /// Saves `object` without a CRC.
    ///
    /// # Errors
    /// As [`save`](Self::save).
    pub fn save_without_crc<W: Write, O: Versionize + Debug>(
        &mut self,
        writer: &mut W,
        object: &O,
    ) -> Result<()> {
        check_data_version(self.target_version, &self.version_map)?;
        self.hdr = SnapshotHdr {
            data_version: self.target_version,
        };
        let format_map = Self::format_version_map();
        build_magic_id(FORMAT_VERSION).serialize(writer, &format_map, 1)?;
        self.hdr.serialize(writer, &format_map, FORMAT_VERSION)?;
        object.serialize(writer, &self.version_map, self.target_version)?;
        writer.flush()?;
        Ok(())
    }

    /// The app version this snapshot writes at.
    #[must_use]
    pub fn target_version(&self) -> u16 {
        self.target_version
    }

    /// The version map this snapshot writes with.
    #[must_use]
    pub fn version_map(&self) -> &VersionMap {
        &self.version_map
    }
}

fn check_data_version(data_version: u16, version_map: &VersionMap) -> Result<()> {
    if data_version == 0 || data_version > version_map.latest_version() {
        return Err(SnapshotError::InvalidDataVersion {
            found: data_version,
            latest: version_map.latest_version(),
        });
    }
    // The support window: a data version this build no longer reads or writes is named
    // here, before any state is decoded or encoded.
    version_map.check_supported(data_version)?;
    Ok(())
}
