//! The snapshot crate's error type.

use std::io;
use std::path::PathBuf;

use versionize::VersionizeError;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, SnapshotError>;

/// Everything that can go wrong while saving or loading a snapshot.
///
/// Every variant that rejects a file says what was expected and what was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The stored checksum does not match the bytes: the file is corrupted.
    #[error("crc64 mismatch: file says {stored:#018x}, contents hash to {computed:#018x}")]
    Crc64 {
        /// The checksum stored at the end of the file.
        stored: u64,
        /// The checksum of the bytes before it.
        computed: u64,
    },
    /// The data version is 0 or newer than this build's version map knows.
    #[error("data version {found} is not supported (this build reads 1..={latest})")]
    InvalidDataVersion {
        /// The data version in the file (or asked for when saving).
        found: u16,
        /// The newest app version of the version map in use.
        latest: u16,
    },
    /// The snapshot format version is 0 or newer than this build reads.
    #[error("snapshot format version {found} is not supported (this build reads 1..={supported})")]
    InvalidFormatVersion {
        /// The format version in the file.
        found: u16,
        /// The newest format version this build reads.
        supported: u16,
    },
    /// The magic number is not this architecture's snapshot magic.
    #[error("bad magic {found:#018x} ({}): this build reads {expected_arch} snapshots ({expected:#018x} | format version)", found_arch.map_or("not a snapshot", |arch| arch))]
    InvalidMagic {
        /// The magic number in the file.
        found: u64,
        /// The architecture whose magic that is, if any.
        found_arch: Option<&'static str>,
        /// The base magic of this build's architecture.
        expected: u64,
        /// The architecture of this build.
        expected_arch: &'static str,
    },
    /// The snapshot is too short to hold a magic number, a header and a checksum.
    #[error("snapshot of {len} bytes is too short: at least {min} are needed")]
    InvalidSnapshotSize {
        /// The length given or found.
        len: u64,
        /// The smallest possible snapshot.
        min: u64,
    },
    /// The state is larger than the configured cap.
    #[error("snapshot state of {len} bytes exceeds the limit of {limit} bytes")]
    StateTooLarge {
        /// Bytes of state (file length less magic, header and checksum).
        len: u64,
        /// The configured cap.
        limit: u64,
    },
    /// Bytes remain between the decoded state and the checksum.
    #[error("{count} unexpected bytes after the state")]
    TrailingBytes {
        /// How many bytes were left over.
        count: u64,
    },
    /// Reading or writing failed.
    #[error("i/o error: {kind}")]
    Io {
        /// The kind of the i/o error.
        kind: io::ErrorKind,
        /// The original error.
        #[source]
        source: io::Error,
    },
    /// Saving to or loading from a path failed at `step`.
    #[error("{step} {}: {kind}", path.display())]
    File {
        /// What was being done (`"create temporary file"`, `"rename"`, ...).
        step: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The kind of the i/o error.
        kind: io::ErrorKind,
        /// The original error.
        #[source]
        source: io::Error,
    },
    /// The path is not a regular file: loading never opens devices or blocks on FIFOs, and
    /// saving never replaces a device, FIFO, socket or directory.
    #[error("{step} {}: {found}, not a regular file", path.display())]
    NotRegularFile {
        /// What was being done (`"open"`, `"save to"`).
        step: &'static str,
        /// The path given.
        path: PathBuf,
        /// What it is instead: `"fifo"`, `"character device"`, `"directory"`, ...
        found: &'static str,
    },
    /// A file is larger than the limit set for it.
    #[error("{} is {len} bytes, more than the limit of {limit} bytes", path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its length (or the bytes read so far, for a file that grows).
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A snapshot's info side file (`<snapshot>.info`) is malformed.
    #[error("{} line {line}: {reason}", path.display())]
    WriterInfo {
        /// The side file.
        path: PathBuf,
        /// The first line at fault (1 is the header).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A snapshot's info side file describes another save of it (another CRC-64 or data
    /// version), e.g. one left over by a build that saved without rewriting it.
    #[error("{} describes the snapshot with crc64 {info_crc:#018x}, the snapshot has {snapshot_crc:#018x}", path.display())]
    WriterInfoStale {
        /// The side file.
        path: PathBuf,
        /// The CRC-64 the side file names.
        info_crc: u64,
        /// The snapshot's stored CRC-64.
        snapshot_crc: u64,
    },
    /// Encoding or decoding the header or the state failed.
    #[error("state: {0}")]
    Versionize(#[from] VersionizeError),
    /// The file is not a sealed file (see [`crate::open_reader`]).
    #[error("{}not a sealed file: {found}", at(.path))]
    NotSealed {
        /// The file, when reading from a path.
        path: Option<PathBuf>,
        /// What it is instead (`"a plain x86_64 snapshot"`, `"magic 0x..."`, `"empty"`).
        found: String,
    },
    /// The sealed file uses a seal format version, algorithm or chunk size this build does
    /// not read.
    #[error("{}sealed file {field} {found} is not supported (this build reads {supported})", at(.path))]
    SealUnsupported {
        /// The file, when reading from a path.
        path: Option<PathBuf>,
        /// The header field (`"format version"`, `"algorithm"`, `"flags"`, `"chunk size"`).
        field: &'static str,
        /// Its value in the file.
        found: u64,
        /// What this build reads.
        supported: &'static str,
    },
    /// The key given is not the key the file was sealed with.
    #[error("{}wrong key: the file was sealed with key id {sealed_with}, this key's id is {given}", at(.path))]
    WrongKey {
        /// The file, when reading from a path.
        path: Option<PathBuf>,
        /// The key id recorded in the file (hex).
        sealed_with: String,
        /// The id of the key given (hex).
        given: String,
    },
    /// A part of a sealed file fails authentication: its bytes were changed, chunks were
    /// reordered, or chunks come from another sealed file.
    #[error("{}sealed {} fails authentication (tampered with, reordered or from another file)", at(.path), part(.chunk))]
    Tampered {
        /// The file, when reading from a path.
        path: Option<PathBuf>,
        /// The chunk (from 0) that fails, or `None` for the header.
        chunk: Option<u64>,
    },
    /// A sealed file ends before the length its authenticated header gives.
    #[error("{}sealed file is truncated: {len} of {expected} bytes", at(.path))]
    Truncated {
        /// The file, when reading from a path.
        path: Option<PathBuf>,
        /// Bytes found.
        len: u64,
        /// Bytes the header promises.
        expected: u64,
    },
    /// Bytes follow the last chunk of a sealed file.
    #[error("{}sealed file goes on after its last chunk: {len} bytes, {expected} expected", at(.path))]
    Extended {
        /// The file, when reading from a path.
        path: Option<PathBuf>,
        /// Bytes found (when reading a stream: at least this many).
        len: u64,
        /// Bytes the header promises.
        expected: u64,
    },
    /// An authentic sealed file that is not the one the snapshot lists (a file of another
    /// snapshot, or an older save of the same one).
    #[error("{}not the sealed {label} file this snapshot lists: file id {found}, expected {expected}", at(.path))]
    UnexpectedSealedFile {
        /// The file, when reading from a path.
        path: Option<PathBuf>,
        /// The label the snapshot gives the file (`"memory"`).
        label: String,
        /// The file id listed (hex).
        expected: String,
        /// The file id found (hex).
        found: String,
    },
    /// A snapshot's files do not match what its sealed state lists: a file given that the
    /// state does not list, or a listed file missing.
    #[error("sealed state {}: {problem}", path.display())]
    SealedSetMismatch {
        /// The sealed state file.
        path: PathBuf,
        /// What does not match (`"lists no file labelled memory.2"`).
        problem: String,
    },
    /// A sealed payload got more or fewer bytes than declared when sealing started.
    #[error("sealed payload declared as {declared} bytes, {written} were written")]
    SealLength {
        /// The payload length given to [`crate::seal_writer`].
        declared: u64,
        /// Bytes written (when too many: at least this many).
        written: u64,
    },
    /// [`crate::SealOptions`] that cannot be written.
    #[error("invalid seal options: {problem}")]
    SealOptions {
        /// What is wrong.
        problem: String,
    },
    /// A key file that cannot be used.
    #[error("key file {}: {problem}", path.display())]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

/// `"<path>: "` for an error about a file, or nothing about a stream.
fn at(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map_or_else(String::new, |path| format!("{}: ", path.display()))
}

/// The part of a sealed file an error is about.
fn part(chunk: &Option<u64>) -> String {
    chunk.map_or_else(|| "header".to_string(), |chunk| format!("chunk {chunk}"))
}

impl From<io::Error> for SnapshotError {
    fn from(source: io::Error) -> Self {
        SnapshotError::Io {
            kind: source.kind(),
            source,
        }
    }
}

impl SnapshotError {
    /// Names `file` in an error about a sealed file read as a stream.
    pub(crate) fn at_path(mut self, file: &std::path::Path) -> Self {
        match &mut self {
            SnapshotError::NotSealed { path, .. }
            | SnapshotError::SealUnsupported { path, .. }
            | SnapshotError::WrongKey { path, .. }
            | SnapshotError::Tampered { path, .. }
            | SnapshotError::Truncated { path, .. }
            | SnapshotError::Extended { path, .. }
            | SnapshotError::UnexpectedSealedFile { path, .. } => {
                *path = Some(file.to_path_buf());
            }
            _ => {}
        }
        self
    }

    pub(crate) fn file(step: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SnapshotError::File {
            step,
            path: path.into(),
            kind: source.kind(),
            source,
        }
    }
}
