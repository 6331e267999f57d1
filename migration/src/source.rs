//! The sending end.

use std::fmt::Debug;
use std::io::{Read, Write};
use std::time::{Duration, Instant, SystemTime};

use snapshot::Snapshot;
use versionize::{VersionMap, Versionize};

use crate::error::{MigrationError, Result};
use crate::frame::{
    bounded_reason, read_frame, reason_text, write_frame, FrameKind, MEMORY_ADDRESS_LEN,
};
use crate::hello::{handshake, Config, Negotiated, Role};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Handshake done; the state goes next.
    Negotiated,
    /// State sent; memory, then `finish`.
    StateSent,
    /// An error ended the migration.
    Failed,
}

/// What a source learns from a successful migration: the destination restored the state
/// and has been told to resume. The source must not resume its guest.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// The app version the state travelled at.
    pub app_version: u16,
    /// Bytes of the state frame (the snapshot).
    pub state_bytes: u64,
    /// Bytes of guest memory sent.
    pub memory_bytes: u64,
    /// Memory frames sent.
    pub memory_frames: u64,
    /// From [`send_state`](Source::send_state) (the guest paused) to the last memory frame
    /// written.
    pub transfer: Duration,
    /// From [`send_state`](Source::send_state) to the commit written: the guest's downtime as
    /// the source sees it (the destination resumes as soon as the commit arrives).
    pub downtime: Duration,
}

/// The sending end of a migration.
///
/// The order of calls is [`handshake`](Self::handshake), [`send_state`](Self::send_state),
/// any number of [`send_memory`](Self::send_memory) / [`send_memory_from`](Self::send_memory_from),
/// then [`finish`](Self::finish); a call out of this order is
/// [`MigrationError::OutOfOrder`]. **On any error the guest stays with the source**: the
/// destination resumes only on the commit that `finish` sends after the destination's ack.
#[derive(Debug)]
pub struct Source<S> {
    stream: S,
    map: VersionMap,
    negotiated: Negotiated,
    chunk_len: u64,
    phase: Phase,
    paused: Option<(Instant, SystemTime)>,
    state_bytes: u64,
    memory_bytes: u64,
    memory_frames: u64,
    chunk: Vec<u8>,
}

impl<S: Read + Write> Source<S> {
    /// Sends this build's hello on `stream`, reads the destination's, and agrees on the
    /// highest protocol version and the highest app version both support (`map`'s support
    /// window, [`VersionMap::supported_range`], against the peer's).
    ///
    /// Timeouts are the caller's: set them on the socket.
    ///
    /// # Errors
    /// [`MigrationError::NoCommonVersion`] when the windows do not meet (the destination
    /// returns the same error), [`MigrationError::NoCommonProtocol`],
    /// [`MigrationError::RoleMismatch`], [`MigrationError::BadMagic`],
    /// [`MigrationError::InvalidHello`], [`MigrationError::Crc`],
    /// [`MigrationError::InvalidConfig`], stream errors.
    pub fn handshake(mut stream: S, map: &VersionMap, config: &Config) -> Result<Source<S>> {
        let negotiated = handshake(&mut stream, Role::Source, map, config)?;
        let room = negotiated
            .peer
            .max_frame_len
            .saturating_sub(MEMORY_ADDRESS_LEN);
        let chunk_len = config.chunk_len().min(room).max(1);
        Ok(Source {
            stream,
            map: map.clone(),
            negotiated,
            chunk_len,
            phase: Phase::Negotiated,
            paused: None,
            state_bytes: 0,
            memory_bytes: 0,
            memory_frames: 0,
            chunk: Vec::new(),
        })
    }

    /// What the handshake agreed on, and who the destination is.
    #[must_use]
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// Sends `state` as a snapshot at the negotiated app version. Call it right after
    /// pausing the guest: the downtime is counted from this call.
    ///
    /// # Errors
    /// [`MigrationError::State`] when encoding fails, [`MigrationError::FrameTooLarge`] when
    /// the snapshot exceeds the destination's frame limit (the destination is sent an abort
    /// naming the cause in both cases), stream errors, [`MigrationError::OutOfOrder`].
    pub fn send_state<T: Versionize + Debug>(&mut self, state: &T) -> Result<()> {
        self.expect(
            Phase::Negotiated,
            "send_state",
            "once, right after the handshake",
        )?;
        self.paused = Some((Instant::now(), SystemTime::now()));
        let app_version = self.negotiated.app_version;
        let mut payload = Vec::new();
        if let Err(source) = Snapshot::new(self.map.clone(), app_version).save(&mut payload, state)
        {
            let err = MigrationError::State {
                action: "encode",
                app_version,
                source,
            };
            return Err(self.fail_with_abort(err));
        }
        let len = payload.len() as u64;
        let limit = self.negotiated.peer.max_frame_len;
        if len > limit {
            let err = MigrationError::FrameTooLarge {
                kind: FrameKind::State,
                len,
                limit,
            };
            return Err(self.fail_with_abort(err));
        }
        let sent = write_frame(
            &mut self.stream,
            FrameKind::State,
            &[&payload],
            "send state",
        );
        self.after_write(sent)?;
        self.state_bytes = len;
        self.phase = Phase::StateSent;
        Ok(())
    }

    /// Sends the guest memory `bytes` found at guest address `address`, in frames of at
    /// most the configured chunk length. Send each region of guest memory with its own
    /// call: a destination's [`GuestRegions`](crate::GuestRegions) stores a chunk only if it
    /// lies inside one region.
    ///
    /// # Errors
    /// Stream errors; [`MigrationError::DestinationFailed`] when the destination gave up
    /// and closed the stream after saying why; [`MigrationError::OutOfOrder`] before
    /// [`send_state`](Self::send_state).
    pub fn send_memory(&mut self, address: u64, bytes: &[u8]) -> Result<()> {
        self.expect(Phase::StateSent, "send_memory", "after send_state")?;
        let chunk_len = usize::try_from(self.chunk_len).unwrap_or(usize::MAX);
        let mut address = address;
        for chunk in bytes.chunks(chunk_len) {
            self.send_chunk(address, chunk)?;
            address = address.wrapping_add(chunk.len() as u64);
        }
        Ok(())
    }

    /// Streams `len` bytes of guest memory for guest address `address` from `reader` (a
    /// memory file, a region's mapping), one chunk at a time: never more than one chunk is
    /// buffered.
    ///
    /// # Errors
    /// [`MigrationError::MemorySource`] when `reader` fails or ends before `len` bytes (the
    /// destination is sent an abort), and as [`send_memory`](Self::send_memory).
    pub fn send_memory_from<R: Read>(&mut self, address: u64, len: u64, reader: R) -> Result<()> {
        self.expect(Phase::StateSent, "send_memory_from", "after send_state")?;
        let mut reader = reader.take(len);
        let mut chunk = std::mem::take(&mut self.chunk);
        let mut address = address;
        let mut left = len;
        let result = loop {
            if left == 0 {
                break Ok(());
            }
            chunk.clear();
            let want = left.min(self.chunk_len);
            match (&mut reader).take(want).read_to_end(&mut chunk) {
                Ok(got) if got as u64 == want => {}
                Ok(_) => {
                    let source = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "memory reader ended early",
                    );
                    break Err(
                        self.fail_with_abort(MigrationError::MemorySource { address, source })
                    );
                }
                Err(source) => {
                    break Err(
                        self.fail_with_abort(MigrationError::MemorySource { address, source })
                    );
                }
            }
            if let Err(err) = self.send_chunk(address, &chunk) {
                break Err(err);
            }
            address = address.wrapping_add(want);
            left -= want;
        };
        self.chunk = chunk;
        result
    }

    fn send_chunk(&mut self, address: u64, chunk: &[u8]) -> Result<()> {
        let sent = write_frame(
            &mut self.stream,
            FrameKind::Memory,
            &[&address.to_le_bytes(), chunk],
            "send memory",
        );
        self.after_write(sent)?;
        self.memory_frames += 1;
        self.memory_bytes += chunk.len() as u64;
        Ok(())
    }

    /// Ends the memory, waits for the destination's ack and, if it restored the state, sends
    /// the commit that lets it resume.
    ///
    /// `Ok` means the guest now runs at the destination: the source must not resume it.
    /// On any error the source resumes its guest.
    ///
    /// # Errors
    /// [`MigrationError::DestinationFailed`] with the destination's reason, stream errors
    /// ([`MigrationError::PeerHungUp`] when the destination closed without an ack),
    /// malformed frames, [`MigrationError::OutOfOrder`] before
    /// [`send_state`](Self::send_state).
    pub fn finish(mut self) -> Result<Outcome> {
        self.expect(Phase::StateSent, "finish", "after send_state")?;
        let (paused, paused_wall) = self.paused.unwrap_or((Instant::now(), SystemTime::now()));
        let paused_nanos = paused_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
            });
        let sent = write_frame(
            &mut self.stream,
            FrameKind::Done,
            &[
                &self.memory_frames.to_le_bytes(),
                &self.memory_bytes.to_le_bytes(),
                &paused_nanos.to_le_bytes(),
            ],
            "send done",
        );
        self.after_write(sent)?;
        let transfer = paused.elapsed();
        self.receive_verdict()?;
        write_frame(&mut self.stream, FrameKind::Commit, &[], "send commit")?;
        Ok(Outcome {
            app_version: self.negotiated.app_version,
            state_bytes: self.state_bytes,
            memory_bytes: self.memory_bytes,
            memory_frames: self.memory_frames,
            transfer,
            downtime: paused.elapsed(),
        })
    }

    /// Gives up the migration and tells the destination why (at most
    /// [`MAX_REASON_LEN`](crate::MAX_REASON_LEN) bytes of `reason`). The source resumes its
    /// guest.
    ///
    /// # Errors
    /// Stream errors while sending the abort.
    pub fn abort(mut self, reason: &str) -> Result<()> {
        self.phase = Phase::Failed;
        send_abort(&mut self.stream, reason)
    }

    /// Reads the destination's ack: `Ok` when it restored the state.
    fn receive_verdict(&mut self) -> Result<()> {
        let mut payload = Vec::new();
        let kind = read_frame(
            &mut self.stream,
            &mut payload,
            0,
            &[FrameKind::Ack],
            "ack",
            "receive ack",
        )?;
        match payload.split_first() {
            Some((0, [])) => Ok(()),
            Some((1, reason)) => Err(MigrationError::DestinationFailed {
                reason: reason_text(reason),
            }),
            Some((0, _)) => Err(MigrationError::InvalidFrame {
                kind,
                reason: "a restored ack carries a reason",
            }),
            _ => Err(MigrationError::InvalidFrame {
                kind,
                reason: "status is neither restored (0) nor failed (1)",
            }),
        }
    }

    fn expect(&mut self, phase: Phase, call: &'static str, expected: &'static str) -> Result<()> {
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

    /// After a failed write: a destination that gave up says why before it closes, so
    /// look for its ack before blaming the stream.
    fn after_write(&mut self, sent: Result<()>) -> Result<()> {
        let Err(err) = sent else {
            return Ok(());
        };
        self.phase = Phase::Failed;
        if !matches!(err, MigrationError::PeerHungUp { .. }) {
            return Err(err);
        }
        match self.receive_verdict() {
            Err(verdict @ MigrationError::DestinationFailed { .. }) => Err(verdict),
            _ => Err(err),
        }
    }

    /// Tells the destination why the source gives up, then returns `err`.
    fn fail_with_abort(&mut self, err: MigrationError) -> MigrationError {
        self.phase = Phase::Failed;
        // Best effort: the error in hand is the one to report.
        let _ = send_abort(&mut self.stream, &err.to_string());
        err
    }
}

fn send_abort<W: Write>(stream: &mut W, reason: &str) -> Result<()> {
    let reason = bounded_reason(reason);
    write_frame(stream, FrameKind::Abort, &[reason.as_bytes()], "send abort")
}
