//! CRC-64/REDIS ("Jones") over the bytes that pass through a reader or a writer.
//!
//! Polynomial `0xad93d23594c935a9`, reflected in and out, init 0, xorout 0; the check value
//! of `"123456789"` is `0xe9c6d914c4b8d9ca`. Firecracker's v1 snapshot files end with this
//! checksum. The table-driven implementation of the `crc` crate (16 tables, slice-by-16) is
//! used.
//!
//! # Example
//! ```
//! use std::io::Write;
//! use versionize::crc::CRC64Writer;
//!
//! let mut out = Vec::new();
//! let mut writer = CRC64Writer::new(&mut out);
//! writer.write_all(b"123456789").unwrap();
//! assert_eq!(writer.checksum(), 0xe9c6_d914_c4b8_d9ca);
//! ```

use std::fmt;
use std::io::{self, IoSlice, Read, Write};

use crc::{Crc, Digest, Table, CRC_64_REDIS};

/// The CRC-64/REDIS algorithm with a 16-table (slice-by-16) lookup.
pub static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// CRC-64/REDIS of `bytes` in one call.
#[must_use]
pub fn crc64(bytes: &[u8]) -> u64 {
    CRC64.checksum(bytes)
}

/// Wraps a reader and updates a CRC-64/REDIS with every byte read through it.
///
/// Only bytes actually returned by the inner reader are counted, so short reads and
/// errors leave the checksum exactly over the bytes that passed.
pub struct CRC64Reader<R> {
    reader: R,
    digest: Digest<'static, u64, Table<16>>,
}

impl<R> CRC64Reader<R> {
    /// Starts a checksum over the bytes read from `reader`.
    pub fn new(reader: R) -> Self {
        CRC64Reader {
            reader,
            digest: CRC64.digest(),
        }
    }

    /// The checksum of every byte read so far.
    #[must_use]
    pub fn checksum(&self) -> u64 {
        self.digest.clone().finalize()
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.reader
    }

    /// A shared reference to the wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.reader
    }
}

impl<R: Read> Read for CRC64Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let count = self.reader.read(buf)?;
        // A misbehaving reader may claim more than the buffer; never index past it.
        let counted = buf.get(..count).unwrap_or(buf);
        self.digest.update(counted);
        Ok(count)
    }
}

impl<R> fmt::Debug for CRC64Reader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CRC64Reader")
            .field("checksum", &self.checksum())
            .finish_non_exhaustive()
    }
}

/// Wraps a writer and updates a CRC-64/REDIS with every byte written through it.
///
/// Only the bytes the inner writer accepted are counted, so short writes and errors leave
/// the checksum exactly over the bytes that reached it.
pub struct CRC64Writer<W> {
    writer: W,
    digest: Digest<'static, u64, Table<16>>,
}

impl<W> CRC64Writer<W> {
    /// Starts a checksum over the bytes written to `writer`.
    pub fn new(writer: W) -> Self {
        CRC64Writer {
            writer,
            digest: CRC64.digest(),
        }
    }

    /// The checksum of every byte written so far.
    #[must_use]
    pub fn checksum(&self) -> u64 {
        self.digest.clone().finalize()
    }

    /// The wrapped writer.
    pub fn into_inner(self) -> W {
        self.writer
    }

    /// A shared reference to the wrapped writer.
    pub fn get_ref(&self) -> &W {
        &self.writer
    }
}

impl<W: Write> Write for CRC64Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let count = self.writer.write(buf)?;
        let counted = buf.get(..count).unwrap_or(buf);
        self.digest.update(counted);
        Ok(count)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // Count through `write` so exactly the accepted bytes are summed.
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(first) => self.write(first),
            None => Ok(0),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

impl<W> fmt::Debug for CRC64Writer<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CRC64Writer")
            .field("checksum", &self.checksum())
            .finish_non_exhaustive()
    }
}
