//! Sealed files: a keyed MAC (HMAC-SHA256) or an AEAD (ChaCha20-Poly1305, AES-256-GCM) over
//! any payload, in fixed-size chunks, so that a snapshot's state file and its memory files
//! can be stored where others can read or write them.
//!
//! A sealed file is a header followed by the payload in chunks, each chunk followed by a
//! 16-byte tag (layout in docs/FORMAT.md, "Sealed files"). The header records the key id (a
//! MAC of a fixed label under the key, never the key), a random 32-byte file id, the chunk
//! size, the payload length and the files this one lists as companions (a state file lists
//! its memory files), and ends with an HMAC-SHA256 tag. Each file gets its own keys, derived
//! from the caller's key and the file id; each chunk's tag binds the header tag, the chunk's
//! index and whether it is the last, so a changed byte, a chunk moved, dropped or taken from
//! another file, a truncated or extended file and a wrong key are all named errors
//! ([`SnapshotError::Tampered`], [`SnapshotError::Truncated`], [`SnapshotError::Extended`],
//! [`SnapshotError::WrongKey`], [`SnapshotError::UnexpectedSealedFile`]).
//!
//! Readers release only bytes of chunks that verified; the whole-file functions
//! ([`open_bytes`], [`open_file`], [`load_sealed`]) return nothing until every chunk has.

mod cipher;
mod header;
mod key;
mod stream;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

pub use self::header::{
    peek_sealed_header, SealAlgorithm, SealFileId, SealOptions, SealedFileRef, SealedHeader,
};
pub use self::key::{SealKey, SealKeyId};
pub use self::stream::{open_reader, seal_writer, OpenReader, SealWriter};

use crate::file::{atomic_write_with_faults, open_regular_file};
use crate::{Result, SnapshotError};

/// The first 8 bytes of every sealed file. Not a Firecracker magic of any architecture, and
/// the high bit and the line ending catch a file mangled as text.
pub const SEAL_MAGIC: [u8; 8] = *b"\x89VMSEAL\n";

/// The seal format version this build writes and reads.
pub const SEAL_FORMAT_VERSION: u16 = 1;

/// Bytes of a key.
pub const SEAL_KEY_LEN: usize = 32;

/// Bytes of the tag after each chunk.
pub const SEAL_TAG_LEN: usize = 16;

/// Chunk size used unless [`SealOptions::with_chunk_size`] says otherwise: 1 MiB.
pub const DEFAULT_SEAL_CHUNK_SIZE: u32 = 1 << 20;

/// Smallest chunk size written or read.
pub const MIN_SEAL_CHUNK_SIZE: u32 = 64;

/// Largest chunk size written or read (a reader holds one chunk in memory): 16 MiB.
pub const MAX_SEAL_CHUNK_SIZE: u32 = 16 << 20;

/// Bytes of a label (`"state"`, `"memory"`), at most.
pub const MAX_SEAL_LABEL_LEN: usize = 64;

/// Companions one header lists, at most.
pub const MAX_SEAL_COMPANIONS: usize = 1024;

/// Bytes of the fixed part of the header, before the label and the companions.
const FIXED_HEADER_LEN: usize = 76;

/// Bytes of the header tag.
const HEADER_TAG_LEN: usize = 32;

/// Largest variable part of a header (label and companions) a reader accepts.
const MAX_VARIABLE_LEN: u32 = 1
    + MAX_SEAL_LABEL_LEN as u32
    + 4
    + MAX_SEAL_COMPANIONS as u32 * (1 + MAX_SEAL_LABEL_LEN as u32 + 32 + 8);

/// Domain separation of the keys derived from the caller's key.
const KEY_ID_LABEL: &[u8] = b"vmstate seal v1 key id";
const HEADER_KEY_LABEL: &[u8] = b"vmstate seal v1 header key";
const CHUNK_KEY_LABEL: &[u8] = b"vmstate seal v1 chunk key";

/// The [`SnapshotError`] an [`OpenReader`] or [`SealWriter`] error carries, or the i/o error.
fn from_io(error: io::Error) -> SnapshotError {
    if error
        .get_ref()
        .is_some_and(|inner| inner.is::<SnapshotError>())
    {
        if let Some(inner) = error.into_inner() {
            if let Ok(error) = inner.downcast::<SnapshotError>() {
                return *error;
            }
        }
        // Unreachable: the check above saw a SnapshotError.
        return SnapshotError::from(io::Error::other("lost error"));
    }
    SnapshotError::from(error)
}

/// Seals `payload` into a new vector.
///
/// # Errors
/// As [`seal_writer`].
pub fn seal_bytes(
    key: &SealKey,
    options: &SealOptions,
    payload: &[u8],
) -> Result<(Vec<u8>, SealedFileRef)> {
    let mut sealed = Vec::with_capacity(payload.len() + 1024);
    let mut writer = seal_writer(key, options, payload.len() as u64, &mut sealed)?;
    writer.write_all(payload).map_err(from_io)?;
    let file = writer.finish()?;
    Ok((sealed, file))
}

/// Opens a sealed file held in memory: checks its length against the header, then every
/// chunk, and returns the header and the payload.
///
/// # Errors
/// As [`open_reader`], and [`SnapshotError::Truncated`] or [`SnapshotError::Extended`] when
/// `sealed` is not exactly as long as its header says (checked before any chunk).
pub fn open_bytes(
    key: &SealKey,
    sealed: &[u8],
    expected: Option<&SealedFileRef>,
) -> Result<(SealedHeader, Vec<u8>)> {
    let mut reader = open_reader(key, sealed, expected)?;
    check_len(reader.header(), sealed.len() as u64)?;
    let mut payload = Vec::with_capacity(usize::try_from(reader.header().payload_len).unwrap_or(0));
    reader.read_to_end(&mut payload).map_err(from_io)?;
    Ok((reader.header().clone(), payload))
}

fn check_len(header: &SealedHeader, len: u64) -> Result<()> {
    let expected = header.file_len();
    if len < expected {
        return Err(SnapshotError::Truncated {
            path: None,
            len,
            expected,
        });
    }
    if len > expected {
        return Err(SnapshotError::Extended {
            path: None,
            len,
            expected,
        });
    }
    Ok(())
}

/// Seals the regular file `source` into `dest`, atomically (see
/// [`Snapshot::save_to_file`](crate::Snapshot::save_to_file)); the payload streams through
/// one chunk of memory.
///
/// # Errors
/// As [`seal_writer`] and [`open_regular_file`]; [`SnapshotError::SealLength`] when
/// `source` changes length while it is read; [`SnapshotError::File`] when writing `dest`
/// fails (`dest` is then untouched).
///
/// # Example
/// A snapshot's memory file and state sealed together, then opened: the state lists the
/// memory file, which is opened only as that file.
/// ```
/// use snapshot::{load_sealed, open_file, seal_file, save_sealed, SealAlgorithm, SealKey, SealOptions};
///
/// let dir = std::env::temp_dir().join(format!("seal-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// std::fs::write(dir.join("vm.mem"), vec![7u8; 8192]).unwrap(); // a plain memory file
/// let key = SealKey::generate().unwrap();
/// let options = SealOptions::new(SealAlgorithm::preferred_encryption());
///
/// let memory = seal_file(
///     &key,
///     &options.clone().with_label("memory"),
///     dir.join("vm.mem"),
///     dir.join("vm.mem.sealed"),
/// )
/// .unwrap();
/// let state = b"the state, as Snapshot::save wrote it";
/// let state_options = options.with_label("state").with_companion(memory);
/// save_sealed(&key, &state_options, state, dir.join("vm.state.sealed")).unwrap();
///
/// let (header, opened) = load_sealed(&key, dir.join("vm.state.sealed"), 1 << 20, None).unwrap();
/// assert_eq!(opened, state);
/// let listed = header.companion("memory").unwrap();
/// open_file(&key, dir.join("vm.mem.sealed"), dir.join("vm.mem.opened"), Some(listed)).unwrap();
/// assert_eq!(std::fs::read(dir.join("vm.mem.opened")).unwrap(), vec![7u8; 8192]);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn seal_file(
    key: &SealKey,
    options: &SealOptions,
    source: impl AsRef<Path>,
    dest: impl AsRef<Path>,
) -> Result<SealedFileRef> {
    let source = source.as_ref();
    let (file, len) = open_regular_file(source)?;
    let mut file = Some(file);
    let mut sealed = None;
    atomic_write_with_faults(
        dest.as_ref(),
        &mut |out| {
            let input = file
                .take()
                .ok_or_else(|| io::Error::other("written twice"))?;
            let mut writer = seal_writer(key, options, len, out)?;
            // One byte more than declared is an error of the writer: a file that grew.
            io::copy(&mut input.take(len.saturating_add(1)), &mut writer).map_err(
                |e| match from_io(e) {
                    SnapshotError::Io { source: e, .. } => SnapshotError::file("read", source, e),
                    other => other,
                },
            )?;
            sealed = Some(writer.finish()?);
            Ok(())
        },
        &mut |_| Ok(()),
    )?;
    sealed.ok_or_else(|| io::Error::other("nothing sealed").into())
}

/// Opens the sealed file `source` into `dest` (atomically): `dest` appears only once every
/// chunk verified, so a tampered or truncated file leaves no plaintext behind.
///
/// # Errors
/// As [`open_reader`], naming `source`; its length is checked against the header before
/// any chunk is read. [`SnapshotError::File`] when writing `dest` fails.
pub fn open_file(
    key: &SealKey,
    source: impl AsRef<Path>,
    dest: impl AsRef<Path>,
    expected: Option<&SealedFileRef>,
) -> Result<SealedHeader> {
    let source = source.as_ref();
    let mut reader = open_checked(key, source, expected)?;
    atomic_write_with_faults(
        dest.as_ref(),
        &mut |out| {
            io::copy(&mut reader, out).map_err(|e| reading(source, e))?;
            Ok(())
        },
        &mut |_| Ok(()),
    )?;
    Ok(reader.header().clone())
}

fn reading(source: &Path, e: io::Error) -> SnapshotError {
    match from_io(e) {
        SnapshotError::Io { source: e, .. } => SnapshotError::file("read", source, e),
        other => other.at_path(source),
    }
}

/// Opens `source` and its header, and checks its length.
fn open_checked(
    key: &SealKey,
    source: &Path,
    expected: Option<&SealedFileRef>,
) -> Result<OpenReader<io::BufReader<File>>> {
    let (file, len) = open_regular_file(source)?;
    let reader = open_reader(key, io::BufReader::new(file), expected)
        .map_err(|e| e.at_path(source))
        .map_err(|e| match e {
            SnapshotError::Io { source: e, .. } => SnapshotError::file("read", source, e),
            other => other,
        })?;
    check_len(reader.header(), len).map_err(|e| e.at_path(source))?;
    Ok(reader)
}

/// Verifies the sealed file `path` with `key` without keeping its payload: its length, its
/// header and every chunk (`vmstate verify`). Reads the file once, one chunk in memory.
///
/// # Errors
/// As [`open_file`].
pub fn verify_sealed_file(
    key: &SealKey,
    path: impl AsRef<Path>,
    expected: Option<&SealedFileRef>,
) -> Result<SealedHeader> {
    let path = path.as_ref();
    let reader = open_checked(key, path, expected)?;
    reader.finish().map_err(|e| match e {
        SnapshotError::Io { source, .. } => SnapshotError::file("read", path, source),
        other => other.at_path(path),
    })
}

/// Seals `payload` (a snapshot's state, as [`Snapshot::save`](crate::Snapshot::save)
/// encoded it) into the file `dest`, atomically.
///
/// # Errors
/// As [`seal_writer`]; [`SnapshotError::File`] when writing `dest` fails.
pub fn save_sealed(
    key: &SealKey,
    options: &SealOptions,
    payload: &[u8],
    dest: impl AsRef<Path>,
) -> Result<SealedFileRef> {
    save_sealed_parts(key, options, &[payload], dest)
}

/// Seals the concatenation of `parts` into the file `dest`, atomically: guest memory
/// regions, back to back in the layout of a memory file, sealed straight from guest memory
/// with no plain copy on disk.
///
/// # Errors
/// As [`save_sealed`].
pub fn save_sealed_parts(
    key: &SealKey,
    options: &SealOptions,
    parts: &[&[u8]],
    dest: impl AsRef<Path>,
) -> Result<SealedFileRef> {
    let len = parts
        .iter()
        .fold(0u64, |sum, part| sum.saturating_add(part.len() as u64));
    let mut sealed = None;
    atomic_write_with_faults(
        dest.as_ref(),
        &mut |out| {
            let mut writer = seal_writer(key, options, len, out)?;
            for part in parts {
                writer.write_all(part).map_err(from_io)?;
            }
            sealed = Some(writer.finish()?);
            Ok(())
        },
        &mut |_| Ok(()),
    )?;
    sealed.ok_or_else(|| io::Error::other("nothing sealed").into())
}

/// One file of a snapshot for [`seal_snapshot_files`] and [`open_snapshot_files`]: its
/// label (`"state"`, `"memory"`), the file read and the file written.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotFile<'a> {
    /// What the file is; labels of one snapshot's files differ.
    pub label: &'a str,
    /// The file read.
    pub source: &'a Path,
    /// The file written.
    pub dest: &'a Path,
}

/// Seals a snapshot's files together (`vmstate seal`): each companion (the memory files)
/// first, then the state, whose header lists them. Returns how the state is listed (keep it
/// in trusted storage to refuse a rollback, docs/SECURITY.md).
///
/// # Errors
/// As [`seal_file`]; [`SnapshotError::SealOptions`] for two files with one label.
pub fn seal_snapshot_files(
    key: &SealKey,
    options: &SealOptions,
    state: SnapshotFile<'_>,
    companions: &[SnapshotFile<'_>],
) -> Result<SealedFileRef> {
    for (i, file) in companions.iter().enumerate() {
        let clash = file.label == state.label
            || companions[..i]
                .iter()
                .any(|other| other.label == file.label);
        if clash {
            return Err(SnapshotError::SealOptions {
                problem: format!("two files labelled {}", file.label),
            });
        }
    }
    let mut state_options = options.clone().with_label(state.label);
    for file in companions {
        let sealed = seal_file(
            key,
            &options.clone().with_label(file.label),
            file.source,
            file.dest,
        )?;
        state_options = state_options.with_companion(sealed);
    }
    seal_file(key, &state_options, state.source, state.dest)
}

/// Opens a snapshot's sealed files together (`vmstate open`), all or nothing: the state is
/// verified in memory (at most `max_state_len` bytes of payload), each companion is opened
/// only as the file the state lists under its label, and the state is written last. On any
/// error no output is left behind. With `expected_state` set, a state file with another file
/// id (an older or another snapshot) is refused.
///
/// # Errors
/// As [`load_sealed`] and [`open_file`]; [`SnapshotError::SealedSetMismatch`] when a file
/// given is not listed by the state, or a listed one is not given.
pub fn open_snapshot_files(
    key: &SealKey,
    state: SnapshotFile<'_>,
    companions: &[SnapshotFile<'_>],
    max_state_len: u64,
    expected_state: Option<&SealedFileRef>,
) -> Result<SealedHeader> {
    let (header, payload) = load_sealed(key, state.source, max_state_len, expected_state)?;
    let mismatch = |problem: String| SnapshotError::SealedSetMismatch {
        path: state.source.to_path_buf(),
        problem,
    };
    for file in companions {
        if header.companion(file.label).is_none() {
            return Err(mismatch(format!("lists no file labelled {}", file.label)));
        }
    }
    for listed in &header.companions {
        if !companions.iter().any(|file| file.label == listed.label) {
            return Err(mismatch(format!(
                "lists a file labelled {} that was not given",
                listed.label
            )));
        }
    }
    let mut written: Vec<&Path> = Vec::with_capacity(companions.len() + 1);
    let result = (|| {
        for file in companions {
            open_file(key, file.source, file.dest, header.companion(file.label))?;
            written.push(file.dest);
        }
        save_plain(state.dest, &payload)
    })();
    if result.is_err() {
        for path in written {
            let _ = std::fs::remove_file(path);
        }
    }
    result.map(|()| header)
}

/// Writes `bytes` to `dest` atomically.
fn save_plain(dest: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with_faults(
        dest,
        &mut |out| out.write_all(bytes).map_err(SnapshotError::from),
        &mut |_| Ok(()),
    )
}

/// Opens the sealed file `source` into memory: at most `max_payload_len` bytes of payload
/// (checked against the header before anything is allocated), every chunk verified.
///
/// # Errors
/// As [`open_file`]; [`SnapshotError::FileTooLarge`] when the payload is over
/// `max_payload_len`.
pub fn load_sealed(
    key: &SealKey,
    source: impl AsRef<Path>,
    max_payload_len: u64,
    expected: Option<&SealedFileRef>,
) -> Result<(SealedHeader, Vec<u8>)> {
    let source = source.as_ref();
    let mut reader = open_checked(key, source, expected)?;
    let len = reader.header().payload_len;
    if len > max_payload_len {
        return Err(SnapshotError::FileTooLarge {
            path: source.to_path_buf(),
            len,
            limit: max_payload_len,
        });
    }
    let mut payload = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    reader
        .read_to_end(&mut payload)
        .map_err(|e| reading(source, e))?;
    Ok((reader.header().clone(), payload))
}
