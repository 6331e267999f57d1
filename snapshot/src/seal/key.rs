//! Keys: the caller's key, key files, and the keys derived from it.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{KEY_ID_LABEL, SEAL_KEY_LEN};
use crate::file::open_regular_file;
use crate::{Result, SnapshotError};

pub(super) type HmacSha256 = Hmac<Sha256>;

pub(super) fn hex(bytes: &[u8]) -> String {
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
    ///
    /// # Example
    /// ```
    /// use snapshot::SealKey;
    ///
    /// let path = std::env::temp_dir().join(format!("seal-key-doc-{}", std::process::id()));
    /// let key = SealKey::generate().unwrap();
    /// key.write_key_file(&path).unwrap(); // 64 hex digits, mode 0600
    /// assert_eq!(SealKey::from_key_file(&path).unwrap().id(), key.id());
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
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
    pub(super) fn derive(&self, label: &[u8], context: &[u8]) -> Zeroizing<[u8; 32]> {
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
pub(super) fn new_hmac(key: &[u8; 32]) -> HmacSha256 {
    let mut padded = Zeroizing::new([0u8; 64]);
    padded[..32].copy_from_slice(key);
    <HmacSha256 as hmac::digest::KeyInit>::new(&(*padded).into())
}

pub(super) fn fill_random(bytes: &mut [u8]) -> Result<()> {
    getrandom::fill(bytes).map_err(|e| io::Error::other(format!("random generator: {e}")).into())
}
