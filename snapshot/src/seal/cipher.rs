//! The keys of one sealed file and the sealing of its chunks.

use std::io;

use aes_gcm::Aes256Gcm;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::Mac;
use zeroize::Zeroizing;

use super::header::{SealAlgorithm, SealFileId};
use super::key::{new_hmac, HmacSha256, SealKey};
use super::{CHUNK_KEY_LABEL, HEADER_KEY_LABEL, HEADER_TAG_LEN, SEAL_TAG_LEN};

/// The keys of one sealed file, derived from the caller's key and the file id.
pub(super) struct FileKeys {
    pub(super) header: Zeroizing<[u8; 32]>,
    pub(super) chunk: ChunkCipher,
    pub(super) header_tag: [u8; HEADER_TAG_LEN],
}

pub(super) enum ChunkCipher {
    Hmac(Box<HmacSha256>),
    ChaCha(Box<ChaCha20Poly1305>),
    Aes(Box<Aes256Gcm>),
}

impl ChunkCipher {
    pub(super) fn new(algorithm: SealAlgorithm, key: &[u8; 32]) -> ChunkCipher {
        match algorithm {
            SealAlgorithm::HmacSha256 => ChunkCipher::Hmac(Box::new(new_hmac(key))),
            SealAlgorithm::ChaCha20Poly1305 => {
                ChunkCipher::ChaCha(Box::new(ChaCha20Poly1305::new(key.into())))
            }
            SealAlgorithm::Aes256Gcm => ChunkCipher::Aes(Box::new(Aes256Gcm::new(key.into()))),
        }
    }

    /// Seals `body` in place and returns its tag.
    pub(super) fn seal(
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
    pub(super) fn mac(&self, aad: &[u8], nonce: &[u8; 12], body: &[u8]) -> [u8; SEAL_TAG_LEN] {
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
    pub(super) fn open(&self, aad: &[u8], nonce: &[u8; 12], body: &mut [u8], tag: &[u8]) -> bool {
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
    pub(super) fn new(key: &SealKey, algorithm: SealAlgorithm, file_id: &SealFileId) -> FileKeys {
        let chunk_key = key.derive(CHUNK_KEY_LABEL, &file_id.0);
        FileKeys {
            header: key.derive(HEADER_KEY_LABEL, &file_id.0),
            chunk: ChunkCipher::new(algorithm, &chunk_key),
            header_tag: [0; HEADER_TAG_LEN],
        }
    }

    pub(super) fn header_tag(&self, header: &[u8]) -> [u8; HEADER_TAG_LEN] {
        let mut mac = new_hmac(&self.header);
        mac.update(header);
        mac.finalize().into_bytes().into()
    }
}

/// The nonce of chunk `index`: its index and whether it is the last chunk.
pub(super) fn nonce(index: u64, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&index.to_le_bytes());
    nonce[8] = u8::from(last);
    nonce
}

impl FileKeys {
    pub(super) fn chunk_encrypts(&self) -> bool {
        !matches!(self.chunk, ChunkCipher::Hmac(_))
    }
}
