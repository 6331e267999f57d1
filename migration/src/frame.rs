//! Frames after the handshake (protocol version 1): kind, length, payload, CRC-64.

use std::fmt;
use std::io::{Read, Write};

use versionize::crc::{CRC64Reader, CRC64Writer};

use crate::error::{MigrationError, Result};

/// Bytes of a frame header: the kind and the payload length.
pub(crate) const HEADER_LEN: usize = 9;

/// The longest reason an ack or an abort frame carries, in bytes; longer reasons are cut at
/// a character boundary.
pub const MAX_REASON_LEN: usize = 1024;

/// Bytes of a done frame's payload.
pub(crate) const DONE_LEN: u64 = 24;

/// Bytes before the guest memory in a memory frame's payload (its guest address).
pub(crate) const MEMORY_ADDRESS_LEN: u64 = 8;

/// The kinds of frame of protocol version 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// The state: a snapshot at the negotiated app version (source to destination).
    State,
    /// A chunk of guest memory at a guest address (source to destination).
    Memory,
    /// The end of the memory, with counts and the time the source paused.
    Done,
    /// The destination's verdict: restored, or failed with a reason.
    Ack,
    /// The source gives the guest up: the destination may resume it.
    Commit,
    /// The source gives up the migration, with a reason.
    Abort,
}

impl FrameKind {
    pub(crate) fn tag(self) -> u8 {
        match self {
            FrameKind::State => 1,
            FrameKind::Memory => 2,
            FrameKind::Done => 3,
            FrameKind::Ack => 4,
            FrameKind::Commit => 5,
            FrameKind::Abort => 6,
        }
    }

    fn from_tag(tag: u8) -> Option<FrameKind> {
        Some(match tag {
            1 => FrameKind::State,
            2 => FrameKind::Memory,
            3 => FrameKind::Done,
            4 => FrameKind::Ack,
            5 => FrameKind::Commit,
            6 => FrameKind::Abort,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            FrameKind::State => "state",
            FrameKind::Memory => "memory",
            FrameKind::Done => "done",
            FrameKind::Ack => "ack",
            FrameKind::Commit => "commit",
            FrameKind::Abort => "abort",
        }
    }

    /// The longest payload of this kind a receiver with frame limit `max_frame_len` reads.
    fn limit(self, max_frame_len: u64) -> u64 {
        match self {
            FrameKind::State | FrameKind::Memory => max_frame_len,
            FrameKind::Done => DONE_LEN,
            FrameKind::Ack => 1 + MAX_REASON_LEN as u64,
            FrameKind::Abort => MAX_REASON_LEN as u64,
            FrameKind::Commit => 0,
        }
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Writes one frame whose payload is the concatenation of `parts`.
pub(crate) fn write_frame<W: Write>(
    writer: &mut W,
    kind: FrameKind,
    parts: &[&[u8]],
    step: &'static str,
) -> Result<()> {
    let len: u64 = parts.iter().map(|part| part.len() as u64).sum();
    let mut header = [0u8; HEADER_LEN];
    header[0] = kind.tag();
    header[1..].copy_from_slice(&len.to_le_bytes());
    let mut crc_writer = CRC64Writer::new(&mut *writer);
    let result = (|| {
        crc_writer.write_all(&header)?;
        for part in parts {
            crc_writer.write_all(part)?;
        }
        let crc = crc_writer.checksum();
        let writer = crc_writer.into_inner();
        writer.write_all(&crc.to_le_bytes())?;
        writer.flush()
    })();
    result.map_err(|e| MigrationError::io(step, e))
}

/// Reads one frame of one of the `allowed` kinds into `payload` (cleared first) and returns
/// its kind. Another kind is [`MigrationError::UnexpectedFrame`] naming `expected`, before
/// its payload is read.
///
/// The length is checked against the kind's limit (memory and state: `max_frame_len`)
/// before any payload byte is read, and the payload buffer grows only with bytes that
/// actually arrive.
pub(crate) fn read_frame<R: Read>(
    reader: &mut R,
    payload: &mut Vec<u8>,
    max_frame_len: u64,
    allowed: &[FrameKind],
    expected: &'static str,
    step: &'static str,
) -> Result<FrameKind> {
    let mut crc_reader = CRC64Reader::new(&mut *reader);
    let mut header = [0u8; HEADER_LEN];
    crc_reader
        .read_exact(&mut header)
        .map_err(|e| MigrationError::io(step, e))?;
    let kind =
        FrameKind::from_tag(header[0]).ok_or(MigrationError::UnknownFrame { tag: header[0] })?;
    if !allowed.contains(&kind) {
        return Err(MigrationError::UnexpectedFrame {
            found: kind,
            expected,
        });
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[1..]);
    let len = u64::from_le_bytes(len);
    let limit = kind.limit(max_frame_len);
    if len > limit {
        return Err(MigrationError::FrameTooLarge { kind, len, limit });
    }
    payload.clear();
    let received = (&mut crc_reader)
        .take(len)
        .read_to_end(payload)
        .map_err(|e| MigrationError::io(step, e))? as u64;
    if received != len {
        return Err(MigrationError::Truncated {
            kind,
            len,
            received,
        });
    }
    let computed = crc_reader.checksum();
    let mut stored = [0u8; 8];
    crc_reader
        .into_inner()
        .read_exact(&mut stored)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => MigrationError::Truncated {
                kind,
                len,
                received,
            },
            _ => MigrationError::io(step, e),
        })?;
    let stored = u64::from_le_bytes(stored);
    if stored != computed {
        return Err(MigrationError::Crc {
            what: kind.name(),
            stored,
            computed,
        });
    }
    Ok(kind)
}

/// `reason` cut to at most [`MAX_REASON_LEN`] bytes at a character boundary.
pub(crate) fn bounded_reason(reason: &str) -> &str {
    if reason.len() <= MAX_REASON_LEN {
        return reason;
    }
    let mut end = MAX_REASON_LEN;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// A reason received from the peer (invalid UTF-8 is replaced, never refused: the reason
/// is for humans).
pub(crate) fn reason_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_frame_round_trips() {
        let mut out = Vec::new();
        write_frame(&mut out, FrameKind::Memory, &[&[1, 2], &[3]], "send").unwrap();
        assert_eq!(out.len(), HEADER_LEN + 3 + 8);
        let mut payload = Vec::new();
        let kind = read_frame(
            &mut out.as_slice(),
            &mut payload,
            4096,
            &[FrameKind::Memory],
            "memory",
            "receive",
        )
        .unwrap();
        assert_eq!(
            (kind, payload.as_slice()),
            (FrameKind::Memory, &[1u8, 2, 3][..])
        );
    }

    #[test]
    fn test_bounded_reason_cuts_at_a_char_boundary() {
        let long = "é".repeat(MAX_REASON_LEN);
        let cut = bounded_reason(&long);
        assert!(cut.len() <= MAX_REASON_LEN && cut.len() >= MAX_REASON_LEN - 1);
        assert_eq!(bounded_reason("short"), "short");
    }
}
