//! Streams: the writer that seals and the reader that opens, chunk by chunk.

use std::fmt;
use std::io::{self, Read, Write};

use zeroize::Zeroize;

use super::cipher::{nonce, FileKeys};
use super::header::{
    chunk_count, chunk_len, encode_header, read_full, read_header, SealFileId, SealOptions,
    SealedFileRef, SealedHeader,
};
use super::key::{fill_random, SealKey};
use super::SEAL_TAG_LEN;
use crate::{Result, SnapshotError};

/// A writer that seals what is written to it into `inner`. Made by [`seal_writer`]; call
/// [`finish`](Self::finish) when the whole payload is written.
pub struct SealWriter<W: Write> {
    inner: W,
    keys: FileKeys,
    file_ref: SealedFileRef,
    chunk_size: u32,
    /// Payload bytes taken so far.
    written: u64,
    /// Index of the chunk being filled.
    index: u64,
    chunks: u64,
    buffer: Vec<u8>,
}

impl<W: Write> fmt::Debug for SealWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealWriter")
            .field("file", &self.file_ref)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

/// Starts sealing a payload of exactly `payload_len` bytes into `inner` with `key`: writes
/// the header and returns a writer for the payload.
///
/// The payload's length is part of the authenticated header, so a reader names a truncated
/// file as such. Pass `&mut file` to keep the inner writer.
///
/// # Errors
/// [`SnapshotError::SealOptions`] for options that cannot be written, [`SnapshotError::Io`]
/// when the random generator or `inner` fails.
///
/// # Example
/// ```
/// use std::io::{Read, Write};
/// use snapshot::{open_reader, seal_writer, SealAlgorithm, SealKey, SealOptions};
///
/// let key = SealKey::generate().unwrap();
/// let payload = b"guest memory, or a snapshot's state";
/// let mut sealed = Vec::new();
/// let options = SealOptions::new(SealAlgorithm::ChaCha20Poly1305).with_label("memory");
/// let mut writer = seal_writer(&key, &options, payload.len() as u64, &mut sealed).unwrap();
/// writer.write_all(payload).unwrap();
/// let file = writer.finish().unwrap();
///
/// let mut reader = open_reader(&key, &sealed[..], Some(&file)).unwrap();
/// let mut opened = Vec::new();
/// reader.read_to_end(&mut opened).unwrap();
/// assert_eq!(opened, payload);
/// ```
pub fn seal_writer<W: Write>(
    key: &SealKey,
    options: &SealOptions,
    payload_len: u64,
    mut inner: W,
) -> Result<SealWriter<W>> {
    options.check()?;
    let mut file_id = SealFileId([0; 32]);
    fill_random(&mut file_id.0)?;
    let mut keys = FileKeys::new(key, options.algorithm, &file_id);
    let header = encode_header(&key.id(), &file_id, options, payload_len);
    keys.header_tag = keys.header_tag(&header);
    inner.write_all(&header)?;
    inner.write_all(&keys.header_tag)?;
    let chunk_size = options.chunk_size;
    Ok(SealWriter {
        inner,
        keys,
        file_ref: SealedFileRef {
            label: options.label.clone(),
            file_id,
            payload_len,
        },
        chunk_size,
        written: 0,
        index: 0,
        chunks: chunk_count(payload_len, chunk_size),
        buffer: Vec::with_capacity(chunk_len(payload_len, chunk_size, 0)),
    })
}

impl<W: Write> SealWriter<W> {
    fn current_chunk_len(&self) -> usize {
        chunk_len(self.file_ref.payload_len, self.chunk_size, self.index)
    }

    /// Seals the full buffer as the current chunk and writes it.
    fn emit_buffer(&mut self) -> io::Result<()> {
        let last = self.index + 1 == self.chunks;
        let nonce = nonce(self.index, last);
        let tag = self
            .keys
            .chunk
            .seal(&self.keys.header_tag, &nonce, &mut self.buffer)?;
        self.inner.write_all(&self.buffer)?;
        self.inner.write_all(&tag)?;
        self.buffer.zeroize();
        self.buffer.clear();
        self.index += 1;
        Ok(())
    }

    /// Writes the last chunk if still due, and returns how other files list this one.
    ///
    /// # Errors
    /// [`SnapshotError::SealLength`] when fewer bytes were written than declared,
    /// [`SnapshotError::Io`] when writing fails.
    pub fn finish(mut self) -> Result<SealedFileRef> {
        if self.written != self.file_ref.payload_len {
            return Err(SnapshotError::SealLength {
                declared: self.file_ref.payload_len,
                written: self.written,
            });
        }
        if self.index < self.chunks {
            // Only the empty payload's single empty chunk is still due here.
            self.emit_buffer()?;
        }
        self.inner.flush()?;
        Ok(self.file_ref.clone())
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let left = self.file_ref.payload_len - self.written;
        if left == 0 {
            return Err(io::Error::other(SnapshotError::SealLength {
                declared: self.file_ref.payload_len,
                written: self.written.saturating_add(data.len() as u64),
            }));
        }
        let want = self.current_chunk_len() - self.buffer.len();
        let take = data.len().min(want);
        let data = &data[..take];
        if self.buffer.is_empty() && take == want && !self.keys.chunk_encrypts() {
            // A whole chunk in the clear: tag it where it is, no copy.
            let nonce = nonce(self.index, self.index + 1 == self.chunks);
            let tag = self.keys.chunk.mac(&self.keys.header_tag, &nonce, data);
            self.inner.write_all(data)?;
            self.inner.write_all(&tag)?;
            self.index += 1;
        } else {
            self.buffer.extend_from_slice(data);
            if self.buffer.len() == self.current_chunk_len() {
                self.emit_buffer()?;
            }
        }
        self.written += take as u64;
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader of a sealed file's payload that releases only bytes of chunks that verified,
/// and returns end of file only after the last chunk verified and nothing follows it. Made
/// by [`open_reader`]. Its errors are [`io::Error`]s wrapping a [`SnapshotError`] (get it
/// back with `into_inner` and `downcast`).
pub struct OpenReader<R: Read> {
    inner: R,
    header: SealedHeader,
    keys: FileKeys,
    /// Index of the next chunk to read.
    index: u64,
    /// The verified plaintext of the current chunk.
    buffer: Vec<u8>,
    /// Plaintext bytes of `buffer`, and how many were released.
    filled: usize,
    released: usize,
    /// Bytes of the sealed file read so far.
    position: u64,
    done: bool,
}

impl<R: Read> fmt::Debug for OpenReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenReader")
            .field("header", &self.header)
            .field("next_chunk", &self.index)
            .finish_non_exhaustive()
    }
}

/// Opens a sealed stream with `key`: reads and authenticates its header, and returns a
/// reader of the payload.
///
/// With `expected` set (a reference another sealed file's header lists, such as a state
/// file's memory file), a file with another file id is refused before any payload is read.
///
/// # Errors
/// [`SnapshotError::NotSealed`], [`SnapshotError::SealUnsupported`],
/// [`SnapshotError::WrongKey`], [`SnapshotError::Tampered`] (for the header),
/// [`SnapshotError::Truncated`], [`SnapshotError::UnexpectedSealedFile`], in that order;
/// [`SnapshotError::Io`] when `inner` fails. The reader's own errors, chunk by chunk, are
/// `Tampered`, `Truncated` and `Extended`.
pub fn open_reader<R: Read>(
    key: &SealKey,
    mut inner: R,
    expected: Option<&SealedFileRef>,
) -> Result<OpenReader<R>> {
    let (header, keys) = read_header(Some(key), &mut inner)?;
    let keys = keys.ok_or_else(|| io::Error::other("header keys missing"))?;
    if let Some(expected) = expected {
        if header.file_id != expected.file_id || header.payload_len != expected.payload_len {
            return Err(SnapshotError::UnexpectedSealedFile {
                path: None,
                label: expected.label.clone(),
                expected: expected.file_id.to_string(),
                found: header.file_id.to_string(),
            });
        }
    }
    let position = header.header_len;
    Ok(OpenReader {
        inner,
        buffer: Vec::new(),
        keys,
        header,
        index: 0,
        filled: 0,
        released: 0,
        position,
        done: false,
    })
}

impl<R: Read> OpenReader<R> {
    /// The authenticated header.
    pub fn header(&self) -> &SealedHeader {
        &self.header
    }

    /// Verifies whatever remains of the file (payload not read yet is checked and dropped)
    /// and that nothing follows its last chunk. Call it after reading a payload with
    /// `read_exact`, which stops at the payload's length and so never sees the end of file.
    ///
    /// # Errors
    /// [`SnapshotError::Tampered`], [`SnapshotError::Truncated`],
    /// [`SnapshotError::Extended`], [`SnapshotError::Io`].
    pub fn finish(mut self) -> Result<SealedHeader> {
        loop {
            self.released = self.filled;
            self.fill()?;
            if self.done {
                return Ok(self.header.clone());
            }
        }
    }

    /// Reads and verifies the next chunk into the buffer.
    fn next_chunk(&mut self) -> Result<()> {
        let len = self.header.chunk_len(self.index);
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.resize(len, 0);
        let read = self.read_chunk_into(&mut buffer);
        self.buffer = buffer;
        read?;
        self.filled = len;
        self.released = 0;
        Ok(())
    }

    /// Reads the next chunk and its tag, and verifies (and decrypts) the chunk in `body`,
    /// which is exactly as long as the chunk. On error `body` is zeroed: no unverified
    /// byte is left where the caller can see it.
    fn read_chunk_into(&mut self, body: &mut [u8]) -> Result<()> {
        let result = self.read_and_verify(body);
        if result.is_err() {
            body.zeroize();
        }
        result
    }

    fn read_and_verify(&mut self, body: &mut [u8]) -> Result<()> {
        let mut tag = [0u8; SEAL_TAG_LEN];
        let mut got = read_full(&mut self.inner, body)?;
        if got == body.len() {
            got += read_full(&mut self.inner, &mut tag)?;
        }
        self.position += got as u64;
        if got < body.len() + SEAL_TAG_LEN {
            return Err(SnapshotError::Truncated {
                path: None,
                len: self.position,
                expected: self.header.file_len(),
            });
        }
        let last = self.index + 1 == self.header.chunk_count();
        if !self
            .keys
            .chunk
            .open(&self.keys.header_tag, &nonce(self.index, last), body, &tag)
        {
            return Err(SnapshotError::Tampered {
                path: None,
                chunk: Some(self.index),
            });
        }
        self.index += 1;
        Ok(())
    }

    /// After the last chunk: checks that nothing follows it.
    fn check_end(&mut self) -> Result<()> {
        let mut probe = [0u8; 1];
        if read_full(&mut self.inner, &mut probe)? != 0 {
            return Err(SnapshotError::Extended {
                path: None,
                len: self.position + 1,
                expected: self.header.file_len(),
            });
        }
        self.done = true;
        Ok(())
    }

    fn fill(&mut self) -> Result<()> {
        while self.released == self.filled && !self.done {
            if self.index == self.header.chunk_count() {
                self.check_end()?;
            } else {
                self.next_chunk()?;
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let to_io = |e| match e {
            SnapshotError::Io { source, .. } => source,
            other => io::Error::other(other),
        };
        if self.released == self.filled && self.index < self.header.chunk_count() {
            // A whole chunk fits the caller's buffer: verify it there, saving a copy.
            let len = self.header.chunk_len(self.index);
            if len > 0 && out.len() >= len {
                self.read_chunk_into(&mut out[..len]).map_err(to_io)?;
                return Ok(len);
            }
        }
        self.fill().map_err(to_io)?;
        let n = out.len().min(self.filled - self.released);
        out[..n].copy_from_slice(&self.buffer[self.released..self.released + n]);
        self.released += n;
        Ok(n)
    }
}

impl<R: Read> Drop for OpenReader<R> {
    fn drop(&mut self) {
        self.buffer.zeroize();
    }
}

impl<W: Write> Drop for SealWriter<W> {
    fn drop(&mut self) {
        self.buffer.zeroize();
    }
}
