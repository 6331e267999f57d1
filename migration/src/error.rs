//! The one error type of the crate.

use std::io;

use snapshot::SnapshotError;

use crate::frame::FrameKind;
use crate::hello::{Role, VersionRange};

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, MigrationError>;

/// Everything that can go wrong in a migration, on either side.
///
/// A source VMM resumes its guest on **any** error: the destination resumes only after the
/// source's commit, which the source sends only after the destination restored the state
/// (see the crate docs).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// The stream failed while `step` was under way.
    #[error("{step}: i/o error: {kind}")]
    Io {
        /// What was being done (`"send memory"`, `"receive frame"`, ...).
        step: &'static str,
        /// The kind of the i/o error.
        kind: io::ErrorKind,
        /// The original error.
        #[source]
        source: io::Error,
    },
    /// The peer closed the stream (end of stream, broken pipe or reset) at a frame
    /// boundary or inside a frame header, while `step` was under way.
    #[error("peer hung up during {step}")]
    PeerHungUp {
        /// What was being done.
        step: &'static str,
    },
    /// The stream ended inside a frame's payload or checksum.
    #[error("{kind} frame truncated: {received} of {len} payload bytes before the stream ended")]
    Truncated {
        /// The frame.
        kind: FrameKind,
        /// The payload length its header announced.
        len: u64,
        /// Payload bytes that arrived.
        received: u64,
    },
    /// The peer's first eight bytes are not the migration magic: it is not a migration
    /// endpoint.
    #[error("not a migration stream: magic {found:#018x}, expected {expected:#018x}")]
    BadMagic {
        /// The first eight bytes, as a little-endian `u64`.
        found: u64,
        /// [`MAGIC`](crate::MAGIC) as a little-endian `u64`.
        expected: u64,
    },
    /// The peer's hello is malformed.
    #[error("invalid hello from the peer: {reason}")]
    InvalidHello {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Both ends play the same role (two sources or two destinations).
    #[error("the peer is also a {role}")]
    RoleMismatch {
        /// The role both ends claim.
        role: Role,
    },
    /// The two ends speak no common protocol version.
    #[error("no common protocol version: this side speaks {ours}, the peer ({peer}) {theirs}")]
    NoCommonProtocol {
        /// The protocol versions this side speaks.
        ours: VersionRange,
        /// The protocol versions the peer speaks.
        theirs: VersionRange,
        /// The peer's name and version.
        peer: String,
    },
    /// The support windows of the two ends do not meet: no app version both read and write.
    /// Both ends return this error; nothing was sent, the source resumes its guest.
    #[error("no common app version: this side supports {ours}, the peer ({peer}) {theirs}")]
    NoCommonVersion {
        /// The app versions this side supports.
        ours: VersionRange,
        /// The app versions the peer supports.
        theirs: VersionRange,
        /// The peer's name and version.
        peer: String,
    },
    /// A hello's or frame's stored checksum does not match its bytes.
    #[error("{what} checksum mismatch: stored {stored:#018x}, contents hash to {computed:#018x}")]
    Crc {
        /// `"hello"` or the frame kind.
        what: &'static str,
        /// The checksum that followed the bytes.
        stored: u64,
        /// The checksum of the bytes received.
        computed: u64,
    },
    /// A frame header carries a kind this protocol version does not have.
    #[error("unknown frame kind {tag:#04x}")]
    UnknownFrame {
        /// The kind byte.
        tag: u8,
    },
    /// A frame arrived that is not allowed at this point of the protocol.
    #[error("unexpected {found} frame while waiting for {expected}")]
    UnexpectedFrame {
        /// The frame that arrived.
        found: FrameKind,
        /// What was expected.
        expected: &'static str,
    },
    /// A frame is longer than the receiver accepts; refused before its payload is read
    /// (incoming), or before it is sent (outgoing, against the peer's announced limit).
    #[error("{kind} frame of {len} bytes exceeds the limit of {limit}")]
    FrameTooLarge {
        /// The frame.
        kind: FrameKind,
        /// Its payload length.
        len: u64,
        /// The receiver's limit for this kind of frame.
        limit: u64,
    },
    /// A frame's payload does not have the layout of its kind.
    #[error("malformed {kind} frame: {reason}")]
    InvalidFrame {
        /// The frame.
        kind: FrameKind,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The source gave up and said why.
    #[error("the source aborted the migration: {reason}")]
    PeerAborted {
        /// The source's reason.
        reason: String,
    },
    /// The destination could not restore the state and said why; the source resumes.
    #[error("the destination failed to restore: {reason}")]
    DestinationFailed {
        /// The destination's reason.
        reason: String,
    },
    /// Encoding the state (source) or decoding it (destination) failed.
    #[error("cannot {action} state at app version {app_version}")]
    State {
        /// `"encode"` or `"decode"`.
        action: &'static str,
        /// The negotiated app version.
        app_version: u16,
        /// Why the snapshot crate failed.
        #[source]
        source: SnapshotError,
    },
    /// The state frame holds another app version than the one negotiated.
    #[error("state frame holds app version {found}, but {negotiated} was negotiated")]
    StateVersionMismatch {
        /// The data version in the state's snapshot header.
        found: u16,
        /// The negotiated app version.
        negotiated: u16,
    },
    /// The destination's memory sink refused a chunk (for example an address outside guest
    /// memory).
    #[error("cannot store {len} bytes of guest memory at {address:#x}")]
    MemorySink {
        /// Guest address of the chunk.
        address: u64,
        /// Bytes in the chunk.
        len: u64,
        /// The sink's error.
        #[source]
        source: io::Error,
    },
    /// The source's memory reader failed or ended early.
    #[error("cannot read guest memory at {address:#x}")]
    MemorySource {
        /// Guest address being read.
        address: u64,
        /// The reader's error.
        #[source]
        source: io::Error,
    },
    /// The counts in the source's done frame differ from what arrived.
    #[error("memory {what} differ: the source sent {sent}, {received} arrived")]
    MemoryCountMismatch {
        /// `"frames"` or `"bytes"`.
        what: &'static str,
        /// The source's count.
        sent: u64,
        /// The destination's count.
        received: u64,
    },
    /// A method was called at the wrong point of the protocol.
    #[error("{call} called out of order: {expected}")]
    OutOfOrder {
        /// The method called.
        call: &'static str,
        /// What the protocol expects at this point.
        expected: &'static str,
    },
    /// A [`Config`](crate::Config) value is outside what the protocol allows.
    #[error("invalid configuration: {field} is {value}, {allowed}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: u64,
        /// What is allowed.
        allowed: &'static str,
    },
}

impl MigrationError {
    /// An error of the stream during `step`: a closed peer is [`MigrationError::PeerHungUp`].
    pub(crate) fn io(step: &'static str, source: io::Error) -> Self {
        if is_hang_up(source.kind()) {
            MigrationError::PeerHungUp { step }
        } else {
            MigrationError::Io {
                step,
                kind: source.kind(),
                source,
            }
        }
    }
}

/// Whether an i/o error means the peer closed the stream.
pub(crate) fn is_hang_up(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}
