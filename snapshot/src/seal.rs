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

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use aes_gcm::Aes256Gcm;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::file::{atomic_write_with_faults, open_regular_file};
use crate::magic::arch_of_magic;
use crate::{Result, SnapshotError};

type HmacSha256 = Hmac<Sha256>;

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

/// How a file is sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SealAlgorithm {
    /// Authentication only: each chunk in the clear, with an HMAC-SHA256 tag (truncated to
    /// 16 bytes).
    HmacSha256,
    /// Authenticated encryption with ChaCha20-Poly1305: fast on every CPU.
    ChaCha20Poly1305,
    /// Authenticated encryption with AES-256-GCM: fastest where the CPU has AES and carry-less
    /// multiply instructions (x86_64 AES-NI + PCLMULQDQ), slow (constant time) elsewhere.
    Aes256Gcm,
}

impl SealAlgorithm {
    /// Every algorithm, in id order.
    pub const ALL: [SealAlgorithm; 3] = [
        SealAlgorithm::HmacSha256,
        SealAlgorithm::ChaCha20Poly1305,
        SealAlgorithm::Aes256Gcm,
    ];

    /// Whether the payload is encrypted (else only authenticated).
    pub fn encrypts(self) -> bool {
        self != SealAlgorithm::HmacSha256
    }

    /// The algorithm's name, as `vmstate` spells it.
    pub fn name(self) -> &'static str {
        match self {
            SealAlgorithm::HmacSha256 => "hmac-sha256",
            SealAlgorithm::ChaCha20Poly1305 => "chacha20-poly1305",
            SealAlgorithm::Aes256Gcm => "aes-256-gcm",
        }
    }

    /// The algorithm called `name` ([`name`](Self::name)), if any.
    pub fn from_name(name: &str) -> Option<SealAlgorithm> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    fn id(self) -> u8 {
        match self {
            SealAlgorithm::HmacSha256 => 1,
            SealAlgorithm::ChaCha20Poly1305 => 2,
            SealAlgorithm::Aes256Gcm => 3,
        }
    }

    fn from_id(id: u8) -> Option<SealAlgorithm> {
        Self::ALL.into_iter().find(|a| a.id() == id)
    }
}

impl fmt::Display for SealAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id of a key: the first 16 bytes of HMAC-SHA256 of a fixed label under the key. Tells
/// keys apart without revealing them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SealKeyId(pub [u8; 16]);

impl fmt::Display for SealKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for SealKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealKeyId({self})")
    }
}

/// The random id of one sealed file: fresh for every file sealed, so no two files share
/// their derived keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SealFileId(pub [u8; 32]);

impl fmt::Display for SealFileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for SealFileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealFileId({self})")
    }
}

/// A 32-byte secret key, wiped from memory when dropped. `Debug` shows only its id.
pub struct SealKey {
    bytes: Zeroizing<[u8; SEAL_KEY_LEN]>,
}

impl SealKey {
    /// The key made of `bytes` (the caller's copy is the caller's to wipe).
    pub fn from_bytes(bytes: [u8; SEAL_KEY_LEN]) -> SealKey {
        SealKey {
            bytes: Zeroizing::new(bytes),
        }
    }

    /// A new random key from the operating system's generator.
    ///
    /// # Errors
    /// [`SnapshotError::Io`] when the generator fails.
    pub fn generate() -> Result<SealKey> {
        let mut bytes = Zeroizing::new([0u8; SEAL_KEY_LEN]);
        fill_random(&mut bytes[..])?;
        Ok(SealKey { bytes })
    }

    /// Reads a key file: 32 raw bytes, or 64 hex digits (surrounding whitespace allowed).
    ///
    /// The file must be a regular file that neither its group nor others can read or write
    /// (mode `0600` or stricter): a key others can read is no secret.
    ///
    /// # Errors
    /// [`SnapshotError::KeyFile`] for a file of another size or content, or one that others
    /// can access; [`SnapshotError::NotRegularFile`], [`SnapshotError::File`] when it cannot
    /// be opened or read.
    pub fn from_key_file(path: impl AsRef<Path>) -> Result<SealKey> {
        let path = path.as_ref();
        let problem = |problem: String| SnapshotError::KeyFile {
            path: path.to_path_buf(),
            problem,
        };
        let (file, len) = open_regular_file(path)?;
        let mode = file
            .metadata()
            .map_err(|e| SnapshotError::file("stat", path, e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(problem(format!(
                "mode {:04o} lets group or others access it (use 0600)",
                mode & 0o7777
            )));
        }
        const MAX_KEY_FILE_LEN: u64 = 256;
        if len > MAX_KEY_FILE_LEN {
            return Err(problem(format!(
                "{len} bytes: expected 32 raw bytes or 64 hex digits"
            )));
        }
        let mut contents = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
        file.take(MAX_KEY_FILE_LEN + 1)
            .read_to_end(&mut contents)
            .map_err(|e| SnapshotError::file("read", path, e))?;
        let mut bytes = Zeroizing::new([0u8; SEAL_KEY_LEN]);
        if contents.len() == SEAL_KEY_LEN {
            bytes.copy_from_slice(&contents);
            return Ok(SealKey { bytes });
        }
        let digits = contents.trim_ascii();
        if digits.len() != 2 * SEAL_KEY_LEN {
            return Err(problem(format!(
                "{} bytes: expected 32 raw bytes or 64 hex digits",
                contents.len()
            )));
        }
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            match (hex_value(pair[0]), hex_value(pair[1])) {
                (Some(high), Some(low)) => *byte = high << 4 | low,
                _ => {
                    return Err(problem(
                        "64 characters that are not all hex digits: expected 32 raw bytes or 64 hex digits"
                            .to_string(),
                    ))
                }
            }
        }
        Ok(SealKey { bytes })
    }

    /// Writes this key to a new key file at `path` as 64 hex digits and a newline, with mode
    /// `0600`. Never replaces an existing file.
    ///
    /// # Errors
    /// [`SnapshotError::File`] when `path` exists or cannot be created or written.
    pub fn write_key_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| SnapshotError::file("create", path, e))?;
        let mut text = Zeroizing::new(hex(&self.bytes[..]));
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| SnapshotError::file("write", path, e))
    }

    /// This key's id, recorded in every file sealed with it.
    pub fn id(&self) -> SealKeyId {
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.derive(KEY_ID_LABEL, &[])[..16]);
        SealKeyId(id)
    }

    /// HMAC-SHA256 of `label || context` under this key.
    fn derive(&self, label: &[u8], context: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut mac = new_hmac(&self.bytes);
        mac.update(label);
        mac.update(context);
        Zeroizing::new(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealKey").field("id", &self.id()).finish()
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// HMAC-SHA256 keyed with a 32-byte key: HMAC pads a key shorter than the hash's 64-byte
/// block with zeros, so the padded key is the same key, and this form cannot fail.
fn new_hmac(key: &[u8; 32]) -> HmacSha256 {
    let mut padded = Zeroizing::new([0u8; 64]);
    padded[..32].copy_from_slice(key);
    <HmacSha256 as KeyInit>::new(&(*padded).into())
}

fn fill_random(bytes: &mut [u8]) -> Result<()> {
    getrandom::fill(bytes).map_err(|e| io::Error::other(format!("random generator: {e}")).into())
}

/// A sealed file as another file's header lists it: the state file lists its memory files.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SealedFileRef {
    /// What the file is (`"memory"`), as given by [`SealOptions::with_label`].
    pub label: String,
    /// Its file id.
    pub file_id: SealFileId,
    /// Bytes of its payload.
    pub payload_len: u64,
}

/// How [`seal_writer`] and the other sealing functions seal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealOptions {
    algorithm: SealAlgorithm,
    chunk_size: u32,
    label: String,
    companions: Vec<SealedFileRef>,
}

impl SealOptions {
    /// Options for `algorithm`, with 1 MiB chunks, an empty label and no companions.
    pub fn new(algorithm: SealAlgorithm) -> SealOptions {
        SealOptions {
            algorithm,
            chunk_size: DEFAULT_SEAL_CHUNK_SIZE,
            label: String::new(),
            companions: Vec::new(),
        }
    }

    /// Sets the chunk size ([`MIN_SEAL_CHUNK_SIZE`]..=[`MAX_SEAL_CHUNK_SIZE`]).
    pub fn with_chunk_size(mut self, bytes: u32) -> SealOptions {
        self.chunk_size = bytes;
        self
    }

    /// Sets the label, which says what the file is (`"state"`, `"memory"`); at most
    /// [`MAX_SEAL_LABEL_LEN`] bytes.
    pub fn with_label(mut self, label: impl Into<String>) -> SealOptions {
        self.label = label.into();
        self
    }

    /// Lists `file` in the header: a state file lists the memory files sealed with it, and
    /// whoever opens the state opens them with [`open_reader`]'s `expected` set to the
    /// listed reference, so a memory file of another snapshot is refused.
    pub fn with_companion(mut self, file: SealedFileRef) -> SealOptions {
        self.companions.push(file);
        self
    }

    /// The algorithm.
    pub fn algorithm(&self) -> SealAlgorithm {
        self.algorithm
    }

    fn check(&self) -> Result<()> {
        let problem = |problem: String| Err(SnapshotError::SealOptions { problem });
        if !(MIN_SEAL_CHUNK_SIZE..=MAX_SEAL_CHUNK_SIZE).contains(&self.chunk_size) {
            return problem(format!(
                "chunk size {} is outside {MIN_SEAL_CHUNK_SIZE}..={MAX_SEAL_CHUNK_SIZE}",
                self.chunk_size
            ));
        }
        if self.companions.len() > MAX_SEAL_COMPANIONS {
            return problem(format!(
                "{} companions, at most {MAX_SEAL_COMPANIONS}",
                self.companions.len()
            ));
        }
        for label in std::iter::once(&self.label).chain(self.companions.iter().map(|c| &c.label)) {
            if label.len() > MAX_SEAL_LABEL_LEN {
                return problem(format!(
                    "label of {} bytes, at most {MAX_SEAL_LABEL_LEN}",
                    label.len()
                ));
            }
        }
        Ok(())
    }
}

/// The authenticated header of a sealed file, as [`open_reader`] read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedHeader {
    /// How the file is sealed.
    pub algorithm: SealAlgorithm,
    /// Payload bytes per chunk (the last chunk may hold fewer).
    pub chunk_size: u32,
    /// Bytes of payload.
    pub payload_len: u64,
    /// The id of the key it was sealed with.
    pub key_id: SealKeyId,
    /// Its file id.
    pub file_id: SealFileId,
    /// Its label.
    pub label: String,
    /// The files it lists.
    pub companions: Vec<SealedFileRef>,
    /// Bytes of the header, tag included.
    pub header_len: u64,
}

impl SealedHeader {
    /// How another header lists this file.
    pub fn file_ref(&self) -> SealedFileRef {
        SealedFileRef {
            label: self.label.clone(),
            file_id: self.file_id,
            payload_len: self.payload_len,
        }
    }

    /// The companion labelled `label`, if the header lists one.
    pub fn companion(&self, label: &str) -> Option<&SealedFileRef> {
        self.companions.iter().find(|c| c.label == label)
    }

    /// Chunks in the file: at least one (an empty payload has one empty chunk).
    pub fn chunk_count(&self) -> u64 {
        chunk_count(self.payload_len, self.chunk_size)
    }

    /// Bytes of the whole sealed file.
    pub fn file_len(&self) -> u64 {
        self.header_len
            .saturating_add(self.payload_len)
            .saturating_add(self.chunk_count().saturating_mul(SEAL_TAG_LEN as u64))
    }

    fn chunk_len(&self, index: u64) -> usize {
        chunk_len(self.payload_len, self.chunk_size, index)
    }
}

fn chunk_count(payload_len: u64, chunk_size: u32) -> u64 {
    payload_len.div_ceil(u64::from(chunk_size)).max(1)
}

fn chunk_len(payload_len: u64, chunk_size: u32, index: u64) -> usize {
    let start = index.saturating_mul(u64::from(chunk_size));
    // At most `chunk_size`, a u32: fits a usize.
    payload_len.saturating_sub(start).min(u64::from(chunk_size)) as usize
}

/// The keys of one sealed file, derived from the caller's key and the file id.
struct FileKeys {
    header: Zeroizing<[u8; 32]>,
    chunk: ChunkCipher,
    header_tag: [u8; HEADER_TAG_LEN],
}

enum ChunkCipher {
    Hmac(Box<HmacSha256>),
    ChaCha(Box<ChaCha20Poly1305>),
    Aes(Box<Aes256Gcm>),
}

impl ChunkCipher {
    fn new(algorithm: SealAlgorithm, key: &[u8; 32]) -> ChunkCipher {
        match algorithm {
            SealAlgorithm::HmacSha256 => ChunkCipher::Hmac(Box::new(new_hmac(key))),
            SealAlgorithm::ChaCha20Poly1305 => {
                ChunkCipher::ChaCha(Box::new(ChaCha20Poly1305::new(key.into())))
            }
            SealAlgorithm::Aes256Gcm => ChunkCipher::Aes(Box::new(Aes256Gcm::new(key.into()))),
        }
    }

    /// Seals `body` in place and returns its tag.
    fn seal(
        &self,
        aad: &[u8],
        nonce: &[u8; 12],
        body: &mut [u8],
    ) -> io::Result<[u8; SEAL_TAG_LEN]> {
        // Encryption fails only for a chunk over 64 GiB; chunks are at most 16 MiB.
        let failed = |_| io::Error::other("chunk too large to encrypt");
        match self {
            ChunkCipher::Hmac(_) => Ok(self.mac(aad, nonce, body)),
            ChunkCipher::ChaCha(cipher) => cipher
                .encrypt_in_place_detached(nonce.into(), aad, body)
                .map(Into::into)
                .map_err(failed),
            ChunkCipher::Aes(cipher) => cipher
                .encrypt_in_place_detached(nonce.into(), aad, body)
                .map(Into::into)
                .map_err(failed),
        }
    }

    /// The tag of a chunk that is not encrypted.
    fn mac(&self, aad: &[u8], nonce: &[u8; 12], body: &[u8]) -> [u8; SEAL_TAG_LEN] {
        let mut tag = [0u8; SEAL_TAG_LEN];
        if let ChunkCipher::Hmac(mac) = self {
            let mut mac = (**mac).clone();
            mac.update(aad);
            mac.update(nonce);
            mac.update(body);
            tag.copy_from_slice(&mac.finalize().into_bytes()[..SEAL_TAG_LEN]);
        }
        tag
    }

    /// Checks `body`'s tag, decrypting it in place; false when it does not verify.
    fn open(&self, aad: &[u8], nonce: &[u8; 12], body: &mut [u8], tag: &[u8]) -> bool {
        match self {
            ChunkCipher::Hmac(mac) => {
                let mut mac = (**mac).clone();
                mac.update(aad);
                mac.update(nonce);
                mac.update(body);
                mac.verify_truncated_left(tag).is_ok()
            }
            ChunkCipher::ChaCha(cipher) => cipher
                .decrypt_in_place_detached(nonce.into(), aad, body, tag.into())
                .is_ok(),
            ChunkCipher::Aes(cipher) => cipher
                .decrypt_in_place_detached(nonce.into(), aad, body, tag.into())
                .is_ok(),
        }
    }
}

impl FileKeys {
    fn new(key: &SealKey, algorithm: SealAlgorithm, file_id: &SealFileId) -> FileKeys {
        let chunk_key = key.derive(CHUNK_KEY_LABEL, &file_id.0);
        FileKeys {
            header: key.derive(HEADER_KEY_LABEL, &file_id.0),
            chunk: ChunkCipher::new(algorithm, &chunk_key),
            header_tag: [0; HEADER_TAG_LEN],
        }
    }

    fn header_tag(&self, header: &[u8]) -> [u8; HEADER_TAG_LEN] {
        let mut mac = new_hmac(&self.header);
        mac.update(header);
        mac.finalize().into_bytes().into()
    }
}

/// The nonce of chunk `index`: its index and whether it is the last chunk.
fn nonce(index: u64, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&index.to_le_bytes());
    nonce[8] = u8::from(last);
    nonce
}

/// Encodes the header (without its tag).
fn encode_header(
    key_id: &SealKeyId,
    file_id: &SealFileId,
    options: &SealOptions,
    payload_len: u64,
) -> Vec<u8> {
    let mut variable = Vec::new();
    put_label(&mut variable, &options.label);
    // At most MAX_SEAL_COMPANIONS (checked): fits a u32.
    variable.extend_from_slice(&(options.companions.len() as u32).to_le_bytes());
    for companion in &options.companions {
        put_label(&mut variable, &companion.label);
        variable.extend_from_slice(&companion.file_id.0);
        variable.extend_from_slice(&companion.payload_len.to_le_bytes());
    }
    let mut header = Vec::with_capacity(FIXED_HEADER_LEN + variable.len() + HEADER_TAG_LEN);
    header.extend_from_slice(&SEAL_MAGIC);
    header.extend_from_slice(&SEAL_FORMAT_VERSION.to_le_bytes());
    header.push(options.algorithm.id());
    header.push(0); // flags
    header.extend_from_slice(&options.chunk_size.to_le_bytes());
    header.extend_from_slice(&payload_len.to_le_bytes());
    header.extend_from_slice(&key_id.0);
    header.extend_from_slice(&file_id.0);
    // Bounded by MAX_VARIABLE_LEN (options checked): fits a u32.
    header.extend_from_slice(&(variable.len() as u32).to_le_bytes());
    header.extend_from_slice(&variable);
    header
}

fn put_label(out: &mut Vec<u8>, label: &str) {
    // At most MAX_SEAL_LABEL_LEN (checked): fits a u8.
    out.push(label.len() as u8);
    out.extend_from_slice(label.as_bytes());
}

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

impl FileKeys {
    fn chunk_encrypts(&self) -> bool {
        !matches!(self.chunk, ChunkCipher::Hmac(_))
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
    /// The verified plaintext of the current chunk (tag space included).
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

/// Reads as much of `buf` as `reader` has; fewer bytes only at end of file.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn le_u16(bytes: &[u8], at: usize) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&bytes[at..at + 2]);
    u16::from_le_bytes(b)
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// What a file that is not sealed is.
fn describe_unsealed(first: &[u8]) -> String {
    if first.is_empty() {
        return "empty".to_string();
    }
    if first.len() < 8 {
        return format!("{} bytes", first.len());
    }
    let magic = le_u64(first, 0);
    match arch_of_magic(magic) {
        Some(arch) => format!("a plain {arch} snapshot"),
        None => format!("magic {magic:#018x}"),
    }
}

/// Cursor over the variable part of a header whose tag verified.
struct Fields<'a> {
    bytes: &'a [u8],
}

impl Fields<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Some(head)
    }

    fn label(&mut self) -> Option<String> {
        let len = *self.take(1)?.first()?;
        let bytes = self.take(usize::from(len))?;
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// Reads the header of a sealed file, and with a key checks the key id and authenticates it.
fn read_header(
    key: Option<&SealKey>,
    inner: &mut impl Read,
) -> Result<(SealedHeader, Option<FileKeys>)> {
    let mut fixed = [0u8; FIXED_HEADER_LEN];
    let n = read_full(inner, &mut fixed)?;
    let magic_len = n.min(SEAL_MAGIC.len());
    if fixed[..magic_len] != SEAL_MAGIC[..magic_len] || n == 0 {
        return Err(SnapshotError::NotSealed {
            path: None,
            found: describe_unsealed(&fixed[..n]),
        });
    }
    if n < FIXED_HEADER_LEN {
        return Err(SnapshotError::Truncated {
            path: None,
            len: n as u64,
            expected: FIXED_HEADER_LEN as u64,
        });
    }
    let unsupported = |field, found, supported| SnapshotError::SealUnsupported {
        path: None,
        field,
        found,
        supported,
    };
    let version = le_u16(&fixed, 8);
    if version != SEAL_FORMAT_VERSION {
        return Err(unsupported("format version", u64::from(version), "1"));
    }
    let mut key_id = SealKeyId([0; 16]);
    key_id.0.copy_from_slice(&fixed[24..40]);
    if let Some(key) = key {
        let given = key.id();
        if key_id != given {
            return Err(SnapshotError::WrongKey {
                path: None,
                sealed_with: key_id.to_string(),
                given: given.to_string(),
            });
        }
    }
    let mut file_id = SealFileId([0; 32]);
    file_id.0.copy_from_slice(&fixed[40..72]);
    let variable_len = le_u32(&fixed, 72);
    let tampered_header = || SnapshotError::Tampered {
        path: None,
        chunk: None,
    };
    if variable_len > MAX_VARIABLE_LEN {
        // No writer makes such a header.
        return Err(match key {
            Some(_) => tampered_header(),
            None => unsupported("header length", u64::from(variable_len), "format version 1"),
        });
    }
    let mut header = fixed.to_vec();
    header.resize(FIXED_HEADER_LEN + variable_len as usize + HEADER_TAG_LEN, 0);
    let got = read_full(inner, &mut header[FIXED_HEADER_LEN..])?;
    if FIXED_HEADER_LEN + got < header.len() {
        return Err(SnapshotError::Truncated {
            path: None,
            len: (FIXED_HEADER_LEN + got) as u64,
            expected: header.len() as u64,
        });
    }
    let (body, tag) = header.split_at(FIXED_HEADER_LEN + variable_len as usize);
    // The tag does not depend on the algorithm: checked first, so that an algorithm this
    // build does not know is named only in an authentic header.
    let algorithm_id = fixed[10];
    let mut verified = None;
    if let Some(key) = key {
        let header_key = key.derive(HEADER_KEY_LABEL, &file_id.0);
        let mut mac = new_hmac(&header_key);
        mac.update(body);
        if mac.verify_slice(tag).is_err() {
            return Err(tampered_header());
        }
        verified = Some(header_key);
    }
    let algorithm = SealAlgorithm::from_id(algorithm_id).ok_or_else(|| {
        unsupported(
            "algorithm",
            u64::from(algorithm_id),
            "1 hmac-sha256, 2 chacha20-poly1305, 3 aes-256-gcm",
        )
    })?;
    if fixed[11] != 0 {
        return Err(unsupported("flags", u64::from(fixed[11]), "0"));
    }
    let chunk_size = le_u32(&fixed, 12);
    if !(MIN_SEAL_CHUNK_SIZE..=MAX_SEAL_CHUNK_SIZE).contains(&chunk_size) {
        return Err(unsupported(
            "chunk size",
            u64::from(chunk_size),
            "64..=16777216",
        ));
    }
    let mut fields = Fields {
        bytes: &body[FIXED_HEADER_LEN..],
    };
    // With a key the tag verified, so a writer of this format made these bytes: one this
    // build cannot parse comes from a writer it does not know.
    let malformed = || unsupported("layout", u64::from(variable_len), "format version 1");
    let label = fields.label().ok_or_else(malformed)?;
    let count = fields.take(4).map(|b| le_u32(b, 0)).ok_or_else(malformed)?;
    let mut companions = Vec::new();
    for _ in 0..count {
        let label = fields.label().ok_or_else(malformed)?;
        let mut file_id = SealFileId([0; 32]);
        file_id
            .0
            .copy_from_slice(fields.take(32).ok_or_else(malformed)?);
        let payload_len = fields.take(8).map(|b| le_u64(b, 0)).ok_or_else(malformed)?;
        companions.push(SealedFileRef {
            label,
            file_id,
            payload_len,
        });
    }
    if !fields.bytes.is_empty() {
        return Err(malformed());
    }
    let keys = match (key, verified) {
        (Some(key), Some(header_key)) => {
            let mut header_tag = [0u8; HEADER_TAG_LEN];
            header_tag.copy_from_slice(tag);
            Some(FileKeys {
                header: header_key,
                chunk: ChunkCipher::new(algorithm, &key.derive(CHUNK_KEY_LABEL, &file_id.0)),
                header_tag,
            })
        }
        _ => None,
    };
    Ok((
        SealedHeader {
            algorithm,
            chunk_size,
            payload_len: le_u64(&fixed, 16),
            key_id,
            file_id,
            label,
            companions,
            header_len: header.len() as u64,
        },
        keys,
    ))
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
        let record = len + SEAL_TAG_LEN;
        if self.buffer.len() < record {
            self.buffer.resize(record, 0);
        }
        let got = read_full(&mut self.inner, &mut self.buffer[..record])?;
        self.position += got as u64;
        if got < record {
            return Err(SnapshotError::Truncated {
                path: None,
                len: self.position,
                expected: self.header.file_len(),
            });
        }
        let last = self.index + 1 == self.header.chunk_count();
        let (body, tag) = self.buffer[..record].split_at_mut(len);
        if !self
            .keys
            .chunk
            .open(&self.keys.header_tag, &nonce(self.index, last), body, tag)
        {
            body.zeroize();
            return Err(SnapshotError::Tampered {
                path: None,
                chunk: Some(self.index),
            });
        }
        self.index += 1;
        self.filled = len;
        self.released = 0;
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
        self.fill().map_err(|e| match e {
            SnapshotError::Io { source, .. } => source,
            other => io::Error::other(other),
        })?;
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
    Ok((reader.header.clone(), payload))
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
    Ok(reader.header.clone())
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
    let mut sealed = None;
    atomic_write_with_faults(
        dest.as_ref(),
        &mut |out| {
            let mut writer = seal_writer(key, options, payload.len() as u64, out)?;
            writer.write_all(payload).map_err(from_io)?;
            sealed = Some(writer.finish()?);
            Ok(())
        },
        &mut |_| Ok(()),
    )?;
    sealed.ok_or_else(|| io::Error::other("nothing sealed").into())
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
    let len = reader.header.payload_len;
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
    Ok((reader.header.clone(), payload))
}

/// Reads the header of a sealed file without a key, for display (`vmstate info`): nothing
/// in it is authenticated; its key id says which key opens the file.
///
/// # Errors
/// [`SnapshotError::NotSealed`], [`SnapshotError::SealUnsupported`],
/// [`SnapshotError::Truncated`], [`SnapshotError::Io`].
pub fn peek_sealed_header(mut inner: impl Read) -> Result<SealedHeader> {
    read_header(None, &mut inner).map(|(header, _)| header)
}
