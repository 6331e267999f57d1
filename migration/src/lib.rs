//! Migration of a paused microVM between two VMM builds over any byte stream (a Unix
//! socket, a TCP connection between hosts), with version negotiation.
//!
//! Both ends first exchange a *hello*: who they are, which protocol versions they speak,
//! which app versions they read and write (their version map's support window,
//! [`VersionMap::supported_range`](versionize::VersionMap::supported_range)) and the largest frame they accept. Both compute the same
//! agreement from the two hellos: the highest common protocol version and the highest common
//! app version ([`VersionRange::highest_common`]), or the same refusal
//! ([`MigrationError::NoCommonVersion`] on both sides, before any state is sent: the source
//! resumes its guest).
//!
//! Then, in checksummed frames (kind, length, payload, CRC-64) bounded by the receiver's
//! announced limit: the state as a snapshot at the agreed app version
//! ([`Source::send_state`] / [`Destination::recv_state`]), guest memory in chunks, streamed
//! ([`Source::send_memory`] / [`Destination::recv_memory`]), a done frame with counts and the
//! time the source paused, the destination's ack (restored, or failed with a reason) and,
//! after a restored ack, the source's commit. The destination resumes the guest only on the
//! commit; the source resumes it on any error. The byte layout is in `docs/FORMAT.md`,
//! section "Migration stream", and `docs/VERSIONING.md`, section "Migration", explains the
//! decisions.
//!
//! Timeouts are the caller's: set them on the socket (`set_read_timeout`); a timed-out read
//! is [`MigrationError::Io`] and ends the migration like any error.
//!
//! # Example
//!
//! A source that knows app versions 1..=3 and a destination that knows 1..=2 agree on 2;
//! the destination decodes the state with its own, older, types.
//!
//! ```
//! use std::os::unix::net::UnixStream;
//! use migration::{Config, Destination, GuestRegions, Source};
//! use versionize::prelude::*;
//!
//! #[derive(Debug, PartialEq, Versionize)]
//! struct Vm {
//!     vcpus: u8,
//!     #[version(start = 2)]
//!     tsc_khz: u32,
//!     #[version(start = 3)]
//!     balloon_pages: u32,
//! }
//!
//! mod older_build {
//!     #[derive(Debug, PartialEq, versionize::prelude::Versionize)]
//!     pub struct Vm {
//!         pub vcpus: u8,
//!         #[version(start = 2)]
//!         pub tsc_khz: u32,
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (source_end, destination_end) = UnixStream::pair()?;
//!
//! let destination = std::thread::spawn(move || -> migration::Result<(older_build::Vm, Vec<u8>)> {
//!     let mut map = VersionMap::new();
//!     map.new_version().set_type_version(older_build::Vm::type_id(), 2);
//!     let mut dst = Destination::handshake(destination_end, &map, &Config::new("vmm 1.1"))?;
//!     let state: older_build::Vm = dst.recv_state()?;
//!     let mut memory = vec![0u8; 64 * 1024];
//!     dst.recv_memory(&mut GuestRegions::new(&mut [(0x1000, memory.as_mut_slice())]))?;
//!     // ... restore the VM from `state` and `memory` here, then:
//!     dst.restored()?; // the commit arrived: resume the guest
//!     Ok((state, memory))
//! });
//!
//! let mut map = VersionMap::new();
//! map.new_version().set_type_version(Vm::type_id(), 2);
//! map.new_version().set_type_version(Vm::type_id(), 3);
//! let mut src = Source::handshake(source_end, &map, &Config::new("vmm 1.2"))?;
//! assert_eq!(src.negotiated().app_version, 2);
//! assert_eq!(src.negotiated().peer.name, "vmm 1.1");
//! // ... pause the guest, then:
//! src.send_state(&Vm { vcpus: 2, tsc_khz: 2_000_000, balloon_pages: 7 })?;
//! src.send_memory(0x1000, &[0xAB; 64 * 1024])?;
//! let outcome = src.finish()?; // Ok: the guest runs at the destination now
//! assert_eq!(outcome.memory_bytes, 64 * 1024);
//!
//! let (state, memory) = destination.join().unwrap()?;
//! assert_eq!(state, older_build::Vm { vcpus: 2, tsc_khz: 2_000_000 });
//! assert!(memory.iter().all(|&b| b == 0xAB));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod destination;
mod error;
mod frame;
mod hello;
mod memory;
mod source;

pub use crate::destination::{Committed, Destination, MemoryStats};
pub use crate::error::{MigrationError, Result};
pub use crate::frame::{FrameKind, MAX_REASON_LEN};
pub use crate::hello::{
    Config, Negotiated, PeerInfo, Role, VersionRange, DEFAULT_CHUNK_LEN, DEFAULT_MAX_FRAME_LEN,
    MAGIC, MAX_NAME_LEN, MIN_FRAME_LEN, OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
pub use crate::memory::{GuestRegions, MemorySink};
pub use crate::source::{Outcome, Source};
