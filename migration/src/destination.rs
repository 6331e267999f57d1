//! The receiving end.

use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use snapshot::{LoadOptions, Snapshot};
use versionize::{VersionMap, Versionize};

use crate::error::{MigrationError, Result};
use crate::frame::{
    bounded_reason, read_frame, reason_text, write_frame, FrameKind, DONE_LEN, MEMORY_ADDRESS_LEN,
};
use crate::hello::{handshake, Config, Negotiated, Role};
use crate::memory::MemorySink;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Handshake done; the state comes next.
    Negotiated,
    /// State received; memory comes next, up to the done frame.
    StateReceived,
    /// Done received; the ack goes next.
    MemoryReceived,
    /// An error ended the migration.
    Failed,
}

/// What arrived of guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryStats {
    /// Memory frames received.
    pub frames: u64,
    /// Bytes of guest memory received.
    pub bytes: u64,
}

/// The source's commit arrived: the destination resumes the guest now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Committed {
    /// From the source pausing its guest to the commit's arrival, by the two hosts' wall
    /// clocks (exact on one host; across hosts as good as their clock synchronization).
    /// `None` when the source's clock reads later than this one's.
    pub since_source_paused: Option<Duration>,
}

/// The receiving end of a migration.
///
/// The order of calls is [`handshake`](Self::handshake), [`recv_state`](Self::recv_state),
/// [`recv_memory`](Self::recv_memory), then [`restored`](Self::restored) once the VM is
/// restored, or [`failed`](Self::failed) at any point after the handshake. **Resume the
/// guest only when `restored` returns `Ok`**: that is the source's commit, after which the
/// source no longer runs it.
#[derive(Debug)]
pub struct Destination<S> {
    stream: S,
    map: VersionMap,
    negotiated: Negotiated,
    max_frame_len: u64,
    phase: Phase,
    payload: Vec<u8>,
    memory: MemoryStats,
    source_paused: Option<SystemTime>,
}

impl<S: Read + Write> Destination<S> {
    /// Sends this build's hello on `stream`, reads the source's, and agrees on the highest
    /// protocol version and the highest app version both support.
    ///
    /// Timeouts are the caller's: set them on the socket.
    ///
    /// # Errors
    /// As [`Source::handshake`](crate::Source::handshake); in particular
    /// [`MigrationError::NoCommonVersion`] when the windows do not meet.
    pub fn handshake(mut stream: S, map: &VersionMap, config: &Config) -> Result<Destination<S>> {
        let negotiated = handshake(&mut stream, Role::Destination, map, config)?;
        Ok(Destination {
            stream,
            map: map.clone(),
            negotiated,
            max_frame_len: config.max_frame_len(),
            phase: Phase::Negotiated,
            payload: Vec::new(),
            memory: MemoryStats {
                frames: 0,
                bytes: 0,
            },
            source_paused: None,
        })
    }

    /// What the handshake agreed on, and who the source is.
    #[must_use]
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// Receives the state and decodes it with this build's types and version map, at the
    /// negotiated app version. The state's snapshot is checked like a file: CRC, data
    /// version, the map's [`Limits`](versionize::Limits), and at most the configured frame
    /// limit of bytes.
    ///
    /// # Errors
    /// [`MigrationError::State`] when the snapshot does not decode,
    /// [`MigrationError::StateVersionMismatch`], [`MigrationError::PeerAborted`], malformed
    /// or unexpected frames, stream errors, [`MigrationError::OutOfOrder`].
    pub fn recv_state<T: Versionize>(&mut self) -> Result<T> {
        self.expect(
            Phase::Negotiated,
            "recv_state",
            "once, right after the handshake",
        )?;
        self.phase = Phase::Failed;
        self.read(
            &[FrameKind::State, FrameKind::Abort],
            "state",
            "receive state",
        )?;
        let app_version = self.negotiated.app_version;
        let options = LoadOptions::default().with_max_state_len(self.max_frame_len);
        let (state, found) = Snapshot::load_with::<_, T>(
            &mut self.payload.as_slice(),
            self.payload.len(),
            self.map.clone(),
            &options,
        )
        .map_err(|source| MigrationError::State {
            action: "decode",
            app_version,
            source,
        })?;
        if found != app_version {
            return Err(MigrationError::StateVersionMismatch {
                found,
                negotiated: app_version,
            });
        }
        self.phase = Phase::StateReceived;
        Ok(state)
    }

    /// Receives guest memory into `sink`, chunk by chunk, up to the source's done frame,
    /// and checks that the source's counts match what arrived.
    ///
    /// # Errors
    /// [`MigrationError::MemorySink`] when `sink` refuses a chunk,
    /// [`MigrationError::MemoryCountMismatch`], [`MigrationError::PeerAborted`], malformed
    /// or unexpected frames, stream errors, [`MigrationError::OutOfOrder`].
    pub fn recv_memory<M: MemorySink + ?Sized>(&mut self, sink: &mut M) -> Result<MemoryStats> {
        self.expect(
            Phase::StateReceived,
            "recv_memory",
            "once, after recv_state",
        )?;
        self.phase = Phase::Failed;
        loop {
            let kind = self.read(
                &[FrameKind::Memory, FrameKind::Done, FrameKind::Abort],
                "memory or done",
                "receive memory",
            )?;
            if kind == FrameKind::Done {
                break;
            }
            let Some((address, bytes)) = self.payload.split_first_chunk::<8>() else {
                return Err(MigrationError::InvalidFrame {
                    kind,
                    reason: "shorter than its guest address",
                });
            };
            let address = u64::from_le_bytes(*address);
            let len = bytes.len() as u64;
            if address.checked_add(len).is_none() {
                return Err(MigrationError::InvalidFrame {
                    kind,
                    reason: "chunk passes the end of the address space",
                });
            }
            sink.write_memory(address, bytes)
                .map_err(|source| MigrationError::MemorySink {
                    address,
                    len,
                    source,
                })?;
            self.memory.frames += 1;
            self.memory.bytes += len;
        }
        let Some(done) = self.payload.first_chunk::<{ DONE_LEN as usize }>() else {
            return Err(MigrationError::InvalidFrame {
                kind: FrameKind::Done,
                reason: "shorter than 24 bytes",
            });
        };
        let field = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&done[at..at + 8]);
            u64::from_le_bytes(word)
        };
        let (frames, bytes, paused_nanos) = (field(0), field(8), field(16));
        for (what, sent, received) in [
            ("frames", frames, self.memory.frames),
            ("bytes", bytes, self.memory.bytes),
        ] {
            if sent != received {
                return Err(MigrationError::MemoryCountMismatch {
                    what,
                    sent,
                    received,
                });
            }
        }
        self.source_paused = (paused_nanos != 0)
            .then(|| SystemTime::UNIX_EPOCH.checked_add(Duration::from_nanos(paused_nanos)))
            .flatten();
        self.phase = Phase::MemoryReceived;
        Ok(self.memory)
    }

    /// Tells the source the state is restored and waits for its commit. `Ok` means resume
    /// the guest now; on an error the source may still run it, so do not.
    ///
    /// # Errors
    /// [`MigrationError::PeerHungUp`] when the source closed without committing (it
    /// resumes its guest), malformed or unexpected frames, stream errors,
    /// [`MigrationError::OutOfOrder`] before [`recv_memory`](Self::recv_memory).
    pub fn restored(mut self) -> Result<Committed> {
        self.expect(Phase::MemoryReceived, "restored", "after recv_memory")?;
        write_frame(&mut self.stream, FrameKind::Ack, &[&[0]], "send ack")?;
        self.read(&[FrameKind::Commit], "commit", "receive commit")?;
        let since_source_paused = self
            .source_paused
            .and_then(|paused| SystemTime::now().duration_since(paused).ok());
        Ok(Committed {
            since_source_paused,
        })
    }

    /// Tells the source the migration failed here and why (at most
    /// [`MAX_REASON_LEN`](crate::MAX_REASON_LEN) bytes of `reason`); the source resumes its
    /// guest. Callable at any point after the handshake, also after an error.
    ///
    /// # Errors
    /// Stream errors while sending the ack.
    pub fn failed(mut self, reason: &str) -> Result<()> {
        let reason = bounded_reason(reason);
        write_frame(
            &mut self.stream,
            FrameKind::Ack,
            &[&[1], reason.as_bytes()],
            "send ack",
        )
    }

    /// Reads a frame of one of the `allowed` kinds; an allowed abort is
    /// [`MigrationError::PeerAborted`].
    fn read(
        &mut self,
        allowed: &[FrameKind],
        expected: &'static str,
        step: &'static str,
    ) -> Result<FrameKind> {
        let kind = read_frame(
            &mut self.stream,
            &mut self.payload,
            self.max_frame_len.max(MEMORY_ADDRESS_LEN),
            allowed,
            expected,
            step,
        )?;
        if kind == FrameKind::Abort {
            return Err(MigrationError::PeerAborted {
                reason: reason_text(&self.payload),
            });
        }
        Ok(kind)
    }

    fn expect(&self, phase: Phase, call: &'static str, expected: &'static str) -> Result<()> {
        if self.phase == phase {
            return Ok(());
        }
        Err(MigrationError::OutOfOrder {
            call,
            expected: if self.phase == Phase::Failed {
                "the migration already failed"
            } else {
                expected
            },
        })
    }
}
