//! The header of a sealed file: what it records, how it is written, and how it is read.

use std::fmt;
use std::io::{self, Read};

use hmac::Mac;

use super::cipher::{ChunkCipher, FileKeys};
use super::key::{hex, new_hmac, SealKey, SealKeyId};
use super::{
    CHUNK_KEY_LABEL, DEFAULT_SEAL_CHUNK_SIZE, FIXED_HEADER_LEN, HEADER_KEY_LABEL, HEADER_TAG_LEN,
    MAX_SEAL_CHUNK_SIZE, MAX_SEAL_COMPANIONS, MAX_SEAL_LABEL_LEN, MAX_VARIABLE_LEN,
    MIN_SEAL_CHUNK_SIZE, SEAL_FORMAT_VERSION, SEAL_MAGIC, SEAL_TAG_LEN,
};
use crate::magic::arch_of_magic;
use crate::{Result, SnapshotError};

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

    /// The faster encryption on this CPU: AES-256-GCM where x86_64 has AES-NI and PCLMULQDQ
    /// (as fast as or faster than ChaCha20-Poly1305 there, benches/README.md), ChaCha20-Poly1305
    /// elsewhere (AES in software is slow).
    pub fn preferred_encryption() -> SealAlgorithm {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("aes")
                && std::arch::is_x86_feature_detected!("pclmulqdq")
            {
                return SealAlgorithm::Aes256Gcm;
            }
        }
        SealAlgorithm::ChaCha20Poly1305
    }

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

/// How [`seal_writer`](crate::seal_writer) and the other sealing functions seal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealOptions {
    pub(super) algorithm: SealAlgorithm,
    pub(super) chunk_size: u32,
    pub(super) label: String,
    pub(super) companions: Vec<SealedFileRef>,
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
    /// whoever opens the state opens them with [`open_reader`](crate::open_reader)'s `expected` set to the
    /// listed reference, so a memory file of another snapshot is refused.
    pub fn with_companion(mut self, file: SealedFileRef) -> SealOptions {
        self.companions.push(file);
        self
    }

    /// The algorithm.
    pub fn algorithm(&self) -> SealAlgorithm {
        self.algorithm
    }

    pub(super) fn check(&self) -> Result<()> {
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

/// The authenticated header of a sealed file, as [`open_reader`](crate::open_reader) read it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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

    pub(super) fn chunk_len(&self, index: u64) -> usize {
        chunk_len(self.payload_len, self.chunk_size, index)
    }
}

pub(super) fn chunk_count(payload_len: u64, chunk_size: u32) -> u64 {
    payload_len.div_ceil(u64::from(chunk_size)).max(1)
}

pub(super) fn chunk_len(payload_len: u64, chunk_size: u32, index: u64) -> usize {
    let start = index.saturating_mul(u64::from(chunk_size));
    // At most `chunk_size`, a u32: fits a usize.
    payload_len.saturating_sub(start).min(u64::from(chunk_size)) as usize
}

/// Encodes the header (without its tag).
pub(super) fn encode_header(
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

/// Reads as much of `buf` as `reader` has; fewer bytes only at end of file.
pub(super) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
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
pub(super) fn read_header(
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

/// Reads the header of a sealed file without a key, for display (`vmstate info`): nothing
/// in it is authenticated; its key id says which key opens the file.
///
/// # Errors
/// [`SnapshotError::NotSealed`], [`SnapshotError::SealUnsupported`],
/// [`SnapshotError::Truncated`], [`SnapshotError::Io`].
pub fn peek_sealed_header(mut inner: impl Read) -> Result<SealedHeader> {
    read_header(None, &mut inner).map(|(header, _)| header)
}
