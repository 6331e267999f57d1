//! CRC-64/REDIS ("Jones") over the bytes that pass through a reader or a writer.
//!
//! Polynomial `0xad93d23594c935a9`, reflected in and out, init 0, xorout 0; the check value
//! of `"123456789"` is `0xe9c6d914c4b8d9ca`. Firecracker's v1 snapshot files end with this
//! checksum.
//!
//! The checksum is computed by the `crc-fast` crate, which folds 64 bytes at a time with
//! carry-less multiplication (PCLMULQDQ/VPCLMULQDQ on x86_64, PMULL on aarch64) and falls
//! back to tables where the CPU has neither; the tests check it against the `crc` crate's
//! catalogue algorithm and a bitwise reference. Because each call has a fixed cost, the
//! reader and writer collect small transfers (the few bytes of a field) into a pending
//! buffer and checksum it in blocks, while large transfers are summed in place.
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

use crc_fast::{CrcAlgorithm, Digest};

/// Transfers of at least this many bytes are summed in place; smaller ones are collected.
const DIRECT_LEN: usize = 512;
/// Bytes collected before they are summed.
const PENDING_CAPACITY: usize = 8 * 1024;

/// CRC-64/REDIS of `bytes` in one call.
#[must_use]
pub fn crc64(bytes: &[u8]) -> u64 {
    crc_fast::checksum(CrcAlgorithm::Crc64Redis, bytes)
}

/// A running CRC-64/REDIS that batches small updates.
#[derive(Clone)]
struct Summer {
    digest: Digest,
    pending: Vec<u8>,
}

impl Summer {
    fn new() -> Self {
        Summer {
            digest: Digest::new(CrcAlgorithm::Crc64Redis),
            pending: Vec::with_capacity(PENDING_CAPACITY),
        }
    }

    #[inline]
    fn update(&mut self, bytes: &[u8]) {
        if bytes.len() >= DIRECT_LEN {
            self.flush();
            self.digest.update(bytes);
        } else {
            if self.pending.len() + bytes.len() > PENDING_CAPACITY {
                self.flush();
            }
            self.pending.extend_from_slice(bytes);
        }
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.digest.update(&self.pending);
            self.pending.clear();
        }
    }

    fn checksum(&self) -> u64 {
        if self.pending.is_empty() {
            return self.digest.finalize();
        }
        let mut digest = self.digest;
        digest.update(&self.pending);
        digest.finalize()
    }
}

/// Wraps a reader and updates a CRC-64/REDIS with every byte read through it.
///
/// Only bytes actually returned by the inner reader are counted, so short reads and
/// errors leave the checksum exactly over the bytes that passed.
pub struct CRC64Reader<R> {
    reader: R,
    summer: Summer,
}

impl<R> CRC64Reader<R> {
    /// Starts a checksum over the bytes read from `reader`.
    pub fn new(reader: R) -> Self {
        CRC64Reader {
            reader,
            summer: Summer::new(),
        }
    }

    /// The checksum of every byte read so far.
    #[must_use]
    pub fn checksum(&self) -> u64 {
        self.summer.checksum()
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
        self.summer.update(counted);
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
    summer: Summer,
}

impl<W> CRC64Writer<W> {
    /// Starts a checksum over the bytes written to `writer`.
    pub fn new(writer: W) -> Self {
        CRC64Writer {
            writer,
            summer: Summer::new(),
        }
    }

    /// The checksum of every byte written so far.
    #[must_use]
    pub fn checksum(&self) -> u64 {
        self.summer.checksum()
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
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let count = self.writer.write(buf)?;
        let counted = buf.get(..count).unwrap_or(buf);
        self.summer.update(counted);
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
