//! The handshake: each end sends a hello (who it is, which protocol versions it speaks,
//! which app versions it supports, the largest frame it accepts), reads the peer's, and
//! both compute the same agreement or the same refusal.

use std::fmt;
use std::io::{Read, Write};

use versionize::crc::crc64;
use versionize::VersionMap;

use crate::error::{MigrationError, Result};

/// The first eight bytes of every hello: `"VMSTMIGR"`.
pub const MAGIC: [u8; 8] = *b"VMSTMIGR";

/// The protocol version of this build's frames (the hello itself never changes).
pub const PROTOCOL_VERSION: u16 = 1;

/// The oldest protocol version this build speaks.
pub const OLDEST_PROTOCOL_VERSION: u16 = 1;

/// The longest name (VMM name and version) a hello carries, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// The smallest frame limit an end may announce: room for an ack with its longest reason.
pub const MIN_FRAME_LEN: u64 = 4096;

/// Default limit on the payload of one frame: 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: u64 = 16 * 1024 * 1024;

/// Default bytes of guest memory per memory frame: 1 MiB.
pub const DEFAULT_CHUNK_LEN: u64 = 1024 * 1024;

/// Bytes of a hello before the name: magic, protocol range, role, app-version range, frame
/// limit and name length.
pub(crate) const HELLO_FIXED_LEN: usize = 27;

/// Which end of a migration a side is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sends the state and memory of a paused guest.
    Source,
    /// Receives them, restores and resumes the guest.
    Destination,
}

impl Role {
    fn to_byte(self) -> u8 {
        match self {
            Role::Source => 1,
            Role::Destination => 2,
        }
    }

    fn from_byte(byte: u8) -> Option<Role> {
        match byte {
            1 => Some(Role::Source),
            2 => Some(Role::Destination),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Source => "source",
            Role::Destination => "destination",
        })
    }
}

/// An inclusive range of versions, `oldest..=latest`, never empty and never starting at 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VersionRange {
    oldest: u16,
    latest: u16,
}

impl VersionRange {
    /// The range `oldest..=latest`, or `None` when it is empty or starts at 0.
    #[must_use]
    pub fn new(oldest: u16, latest: u16) -> Option<VersionRange> {
        (oldest >= 1 && oldest <= latest).then_some(VersionRange { oldest, latest })
    }

    /// The support window of a version map ([`VersionMap::supported_range`]).
    #[must_use]
    pub fn of_map(map: &VersionMap) -> VersionRange {
        // A map's window is never empty and never starts at 0.
        VersionRange {
            oldest: map.oldest_supported().max(1),
            latest: map.latest_version().max(1),
        }
    }

    /// The first version of the range.
    #[must_use]
    pub fn oldest(&self) -> u16 {
        self.oldest
    }

    /// The last version of the range.
    #[must_use]
    pub fn latest(&self) -> u16 {
        self.latest
    }

    /// Whether `version` is in the range.
    #[must_use]
    pub fn contains(&self, version: u16) -> bool {
        (self.oldest..=self.latest).contains(&version)
    }

    /// The highest version in both ranges, or `None` when they do not meet.
    ///
    /// This is the whole negotiation rule: it is symmetric, so both ends reach the same
    /// answer from the same two hellos without another message.
    ///
    /// # Example
    /// ```
    /// use migration::VersionRange;
    ///
    /// let newer = VersionRange::new(2, 5).unwrap();
    /// let older = VersionRange::new(1, 3).unwrap();
    /// assert_eq!(newer.highest_common(&older), Some(3));
    /// assert_eq!(older.highest_common(&newer), Some(3));
    /// let dropped = VersionRange::new(4, 5).unwrap();
    /// assert_eq!(dropped.highest_common(&older), None);
    /// ```
    #[must_use]
    pub fn highest_common(&self, other: &VersionRange) -> Option<u16> {
        let latest = self.latest.min(other.latest);
        (latest >= self.oldest.max(other.oldest)).then_some(latest)
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.oldest, self.latest)
    }
}

/// Settings of one end of a migration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    name: String,
    max_frame_len: u64,
    chunk_len: u64,
}

impl Config {
    /// Settings with the defaults ([`DEFAULT_MAX_FRAME_LEN`], [`DEFAULT_CHUNK_LEN`]) for an
    /// end that calls itself `name` (the VMM's name and version, for the peer's messages and
    /// logs; at most [`MAX_NAME_LEN`] bytes).
    #[must_use]
    pub fn new(name: impl Into<String>) -> Config {
        Config {
            name: name.into(),
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            chunk_len: DEFAULT_CHUNK_LEN,
        }
    }

    /// Sets the largest frame payload this end accepts, announced in its hello (at least
    /// [`MIN_FRAME_LEN`]). It also caps the state a destination decodes. A frame announcing
    /// more is refused before its payload is read, so a hostile peer never makes this end
    /// allocate more than this per frame.
    #[must_use]
    pub fn with_max_frame_len(mut self, bytes: u64) -> Config {
        self.max_frame_len = bytes;
        self
    }

    /// Sets the guest memory bytes a source sends per memory frame (at least 1; lowered to
    /// fit the destination's frame limit).
    #[must_use]
    pub fn with_chunk_len(mut self, bytes: u64) -> Config {
        self.chunk_len = bytes;
        self
    }

    /// The name this end announces.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The largest frame payload this end accepts.
    #[must_use]
    pub fn max_frame_len(&self) -> u64 {
        self.max_frame_len
    }

    /// The guest memory bytes per memory frame a source sends at most.
    #[must_use]
    pub fn chunk_len(&self) -> u64 {
        self.chunk_len
    }

    fn check(&self) -> Result<()> {
        if self.name.len() > MAX_NAME_LEN {
            return Err(MigrationError::InvalidConfig {
                field: "name length",
                value: self.name.len() as u64,
                allowed: "at most 256 bytes",
            });
        }
        if self.max_frame_len < MIN_FRAME_LEN {
            return Err(MigrationError::InvalidConfig {
                field: "max_frame_len",
                value: self.max_frame_len,
                allowed: "at least 4096",
            });
        }
        if self.chunk_len == 0 {
            return Err(MigrationError::InvalidConfig {
                field: "chunk_len",
                value: 0,
                allowed: "at least 1",
            });
        }
        Ok(())
    }
}

/// What a peer said about itself in its hello.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// Its name and version.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The protocol versions it speaks.
    pub protocol_versions: VersionRange,
    /// The app versions it supports (its support window).
    pub app_versions: VersionRange,
    /// The largest frame payload it accepts.
    pub max_frame_len: u64,
}

/// The outcome of a handshake: what both ends agreed on, and who the peer is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Negotiated {
    /// The protocol version of the frames that follow: the highest both speak.
    pub protocol_version: u16,
    /// The app version the state travels at: the highest both support.
    pub app_version: u16,
    /// The peer.
    pub peer: PeerInfo,
}

/// A hello as sent on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) protocols: VersionRange,
    pub(crate) role: Role,
    pub(crate) app_versions: VersionRange,
    pub(crate) max_frame_len: u64,
    pub(crate) name: String,
}

impl Hello {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HELLO_FIXED_LEN + self.name.len() + 8);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.protocols.oldest.to_le_bytes());
        out.extend_from_slice(&self.protocols.latest.to_le_bytes());
        out.push(self.role.to_byte());
        out.extend_from_slice(&self.app_versions.oldest.to_le_bytes());
        out.extend_from_slice(&self.app_versions.latest.to_le_bytes());
        out.extend_from_slice(&self.max_frame_len.to_le_bytes());
        // `Config::check` bounds the name to 256 bytes.
        let name_len = u16::try_from(self.name.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        let crc = crc64(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads and checks a hello: magic first (a stranger is named before anything else),
    /// then the bounded name, the checksum, and the fields.
    pub(crate) fn read<R: Read>(reader: &mut R) -> Result<Hello> {
        let mut fixed = [0u8; HELLO_FIXED_LEN];
        read_exact(reader, &mut fixed[..8])?;
        if fixed[..8] != MAGIC {
            return Err(MigrationError::BadMagic {
                found: u64::from_le_bytes(word(&fixed[..8])),
                expected: u64::from_le_bytes(MAGIC),
            });
        }
        read_exact(reader, &mut fixed[8..])?;
        let u16_at = |at: usize| u16::from_le_bytes([fixed[at], fixed[at + 1]]);
        let name_len = usize::from(u16_at(25));
        if name_len > MAX_NAME_LEN {
            return Err(MigrationError::InvalidHello {
                reason: "name longer than 256 bytes",
            });
        }
        let mut rest = [0u8; MAX_NAME_LEN + 8];
        let rest = &mut rest[..name_len + 8];
        read_exact(reader, rest)?;
        let (name, stored) = rest.split_at(name_len);
        let stored = u64::from_le_bytes(word(stored));
        let mut summed = fixed.to_vec();
        summed.extend_from_slice(name);
        let computed = crc64(&summed);
        if stored != computed {
            return Err(MigrationError::Crc {
                what: "hello",
                stored,
                computed,
            });
        }
        let protocols =
            VersionRange::new(u16_at(8), u16_at(10)).ok_or(MigrationError::InvalidHello {
                reason: "empty protocol version range",
            })?;
        let role = Role::from_byte(fixed[12]).ok_or(MigrationError::InvalidHello {
            reason: "role is neither source (1) nor destination (2)",
        })?;
        let app_versions =
            VersionRange::new(u16_at(13), u16_at(15)).ok_or(MigrationError::InvalidHello {
                reason: "empty app version range",
            })?;
        let max_frame_len = u64::from_le_bytes(word(&fixed[17..25]));
        if max_frame_len < MIN_FRAME_LEN {
            return Err(MigrationError::InvalidHello {
                reason: "frame limit below 4096 bytes",
            });
        }
        let name = String::from_utf8(name.to_vec()).map_err(|_| MigrationError::InvalidHello {
            reason: "name is not utf-8",
        })?;
        Ok(Hello {
            protocols,
            role,
            app_versions,
            max_frame_len,
            name,
        })
    }
}

fn word(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    let len = bytes.len().min(8);
    out[..len].copy_from_slice(&bytes[..len]);
    out
}

fn read_exact<R: Read>(reader: &mut R, buf: &mut [u8]) -> Result<()> {
    reader
        .read_exact(buf)
        .map_err(|e| MigrationError::io("receive hello", e))
}

/// Sends this end's hello, reads the peer's and agrees on the protocol and app versions.
pub(crate) fn handshake<S: Read + Write>(
    stream: &mut S,
    role: Role,
    map: &VersionMap,
    config: &Config,
) -> Result<Negotiated> {
    config.check()?;
    let ours = Hello {
        protocols: VersionRange {
            oldest: OLDEST_PROTOCOL_VERSION,
            latest: PROTOCOL_VERSION,
        },
        role,
        app_versions: VersionRange::of_map(map),
        max_frame_len: config.max_frame_len,
        name: config.name.clone(),
    };
    // Both ends write first: a hello is a few hundred bytes, which any stream buffers.
    stream
        .write_all(&ours.encode())
        .and_then(|()| stream.flush())
        .map_err(|e| MigrationError::io("send hello", e))?;
    let theirs = Hello::read(stream)?;
    agree(&ours, theirs)
}

/// The agreement both ends compute from the two hellos.
pub(crate) fn agree(ours: &Hello, theirs: Hello) -> Result<Negotiated> {
    if theirs.role == ours.role {
        return Err(MigrationError::RoleMismatch { role: ours.role });
    }
    let protocol_version = ours
        .protocols
        .highest_common(&theirs.protocols)
        .ok_or_else(|| MigrationError::NoCommonProtocol {
            ours: ours.protocols,
            theirs: theirs.protocols,
            peer: theirs.name.clone(),
        })?;
    let app_version = ours
        .app_versions
        .highest_common(&theirs.app_versions)
        .ok_or_else(|| MigrationError::NoCommonVersion {
            ours: ours.app_versions,
            theirs: theirs.app_versions,
            peer: theirs.name.clone(),
        })?;
    Ok(Negotiated {
        protocol_version,
        app_version,
        peer: PeerInfo {
            name: theirs.name,
            role: theirs.role,
            protocol_versions: theirs.protocols,
            app_versions: theirs.app_versions,
            max_frame_len: theirs.max_frame_len,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            protocols: VersionRange::new(1, 1).unwrap(),
            role: Role::Source,
            app_versions: VersionRange::new(2, 4).unwrap(),
            max_frame_len: 1 << 20,
            name: "vmm 1.2".into(),
        }
    }

    #[test]
    fn test_hello_round_trips() {
        let bytes = hello().encode();
        assert_eq!(bytes.len(), HELLO_FIXED_LEN + 7 + 8);
        assert_eq!(Hello::read(&mut bytes.as_slice()).unwrap(), hello());
    }

    #[test]
    fn test_hello_every_truncation_is_a_hang_up() {
        let bytes = hello().encode();
        for len in 0..bytes.len() {
            match Hello::read(&mut &bytes[..len]) {
                Err(MigrationError::PeerHungUp {
                    step: "receive hello",
                }) => {}
                other => panic!("{len} bytes: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn test_hello_every_bit_flip_is_refused() {
        let bytes = hello().encode();
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[at] ^= 1 << bit;
                // A flip in the name length reads a longer or shorter name: the checksum
                // (or the end of the input) still catches it.
                assert!(
                    Hello::read(&mut bad.as_slice()).is_err(),
                    "byte {at} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn test_version_range_rejects_empty_and_zero() {
        assert_eq!(VersionRange::new(0, 3), None);
        assert_eq!(VersionRange::new(3, 2), None);
        assert_eq!(
            VersionRange::new(3, 3).map(|r| r.to_string()),
            Some("3..=3".into())
        );
    }
}
