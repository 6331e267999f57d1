//! Shared by the migration tests: a test root type with six app versions, builds that
//! support a range of them, a duplex in-memory stream, hand-made frames, and a runner that
//! migrates between two threads.

#![allow(dead_code)] // Each test binary uses part of this module.

use std::io::{self, Cursor, Read, Write};
use std::thread;

use migration::{Committed, Config, Destination, GuestRegions, MigrationError, Outcome, Source};
use versionize::crc::crc64;
use versionize::prelude::*;

/// The test root type: a VMM state that changed in every app version.
#[derive(Clone, Debug, PartialEq, Versionize)]
pub(crate) struct VmState {
    pub(crate) vcpus: Vec<u64>,
    #[version(start = 2)]
    pub(crate) tsc_khz: u32,
    #[version(start = 3)]
    pub(crate) uart_fifo: Vec<u8>,
    #[version(start = 4)]
    pub(crate) balloon_pages: u32,
    #[version(start = 5)]
    pub(crate) nested: Option<u64>,
    #[version(start = 6)]
    pub(crate) name: String,
}

impl VmState {
    pub(crate) fn sample() -> VmState {
        VmState {
            vcpus: vec![0x1000, 0x2000, 0x3000],
            tsc_khz: 2_500_000,
            uart_fifo: b"hello".to_vec(),
            balloon_pages: 42,
            nested: Some(7),
            name: "guest".into(),
        }
    }

    /// What a build reading at `app_version` gets of [`sample`](Self::sample): the fields
    /// added later take their defaults.
    pub(crate) fn sample_at(app_version: u16) -> VmState {
        let full = VmState::sample();
        VmState {
            vcpus: full.vcpus,
            tsc_khz: if app_version >= 2 { full.tsc_khz } else { 0 },
            uart_fifo: if app_version >= 3 {
                full.uart_fifo
            } else {
                vec![]
            },
            balloon_pages: if app_version >= 4 {
                full.balloon_pages
            } else {
                0
            },
            nested: if app_version >= 5 { full.nested } else { None },
            name: if app_version >= 6 {
                full.name
            } else {
                String::new()
            },
        }
    }
}

/// The map of a build whose newest app version is `latest` (1..=6) and that supports
/// `oldest..=latest`: `VmState` is at version `v` in app version `v`.
pub(crate) fn build_map(oldest: u16, latest: u16) -> VersionMap {
    let mut map = VersionMap::new();
    for version in 2..=latest {
        map.new_version()
            .set_type_version(VmState::type_id(), version);
    }
    map.set_oldest_supported(oldest).unwrap();
    map
}

/// A deterministic pattern of guest memory (an xorshift stream).
pub(crate) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&state.to_le_bytes()[..take]);
    }
    out
}

/// A stream whose reads come from `input` and whose writes go to `output`.
#[derive(Debug, Default)]
pub(crate) struct Duplex {
    pub(crate) input: Cursor<Vec<u8>>,
    pub(crate) output: Vec<u8>,
}

impl Duplex {
    pub(crate) fn new(input: Vec<u8>) -> Duplex {
        Duplex {
            input: Cursor::new(input),
            output: Vec::new(),
        }
    }
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A frame: kind tag, u64 length, payload, CRC-64 of the bytes before it.
pub(crate) fn frame(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A hello as a peer of another build would send it.
pub(crate) fn hello(
    protocols: (u16, u16),
    role: u8,
    apps: (u16, u16),
    max_frame: u64,
    name: &str,
) -> Vec<u8> {
    let mut out = b"VMSTMIGR".to_vec();
    out.extend_from_slice(&protocols.0.to_le_bytes());
    out.extend_from_slice(&protocols.1.to_le_bytes());
    out.push(role);
    out.extend_from_slice(&apps.0.to_le_bytes());
    out.extend_from_slice(&apps.1.to_le_bytes());
    out.extend_from_slice(&max_frame.to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The bytes a source of `source_map` writes for [`VmState::sample`] and `memory` at
/// address 0, against a destination of `destination_map` that restores.
pub(crate) fn recorded_source_stream(
    source_map: &VersionMap,
    destination_map: &VersionMap,
    memory: &[u8],
    config: &Config,
) -> Vec<u8> {
    // The destination's hello does not depend on the source's: record it against nothing.
    let mut destination_side = Duplex::new(Vec::new());
    let err = Destination::handshake(&mut destination_side, destination_map, &Config::new("dst"))
        .unwrap_err();
    assert!(matches!(err, MigrationError::PeerHungUp { .. }), "{err}");
    let mut input = destination_side.output;
    input.extend(frame(4, &[0])); // ack: restored
    let mut source_side = Duplex::new(input);
    let mut src = Source::handshake(&mut source_side, source_map, config).unwrap();
    src.send_state(&VmState::sample()).unwrap();
    src.send_memory(0, memory).unwrap();
    src.finish().unwrap();
    source_side.output
}

/// What the destination thread of [`migrate`] returns.
pub(crate) struct Received {
    pub(crate) app_version: u16,
    pub(crate) state: VmState,
    pub(crate) memory: Vec<u8>,
    pub(crate) committed: Committed,
}

/// Migrates [`VmState::sample`] and `memory` (at guest address 0) from a source of
/// `source_map` to a destination of `destination_map` over a connected pair of streams, one
/// thread per end, and returns what each end returned.
pub(crate) fn migrate<S>(
    (source_end, destination_end): (S, S),
    source_map: VersionMap,
    destination_map: VersionMap,
    memory: &[u8],
) -> (migration::Result<Outcome>, migration::Result<Received>)
where
    S: Read + Write + Send + 'static,
{
    let len = memory.len();
    let destination = thread::spawn(move || -> migration::Result<Received> {
        let mut dst =
            Destination::handshake(destination_end, &destination_map, &Config::new("dst 1.0"))?;
        let app_version = dst.negotiated().app_version;
        let state: VmState = dst.recv_state()?;
        let mut memory = vec![0u8; len];
        let stats = dst.recv_memory(&mut GuestRegions::new(&mut [(0, memory.as_mut_slice())]))?;
        assert_eq!(stats.bytes, len as u64);
        let committed = dst.restored()?;
        Ok(Received {
            app_version,
            state,
            memory,
            committed,
        })
    });
    let source = (|| {
        let mut src = Source::handshake(source_end, &source_map, &Config::new("src 2.0"))?;
        src.send_state(&VmState::sample())?;
        src.send_memory(0, memory)?;
        src.finish()
    })();
    let destination = destination.join().expect("destination thread panicked");
    (source, destination)
}
