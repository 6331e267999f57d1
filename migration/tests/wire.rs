//! The migration stream byte for byte (docs/FORMAT.md, "Migration stream"): these tests
//! fail when a byte of the hello or of a frame changes. The expected checksums were computed
//! by a bitwise CRC-64/REDIS written independently of the crate.

mod support;

use migration::{Config, Destination, GuestRegions, Source};
use snapshot::Snapshot;
use support::{build_map, hello, Duplex, VmState};

/// The hello of a destination named "vmm 1.0" supporting app versions 2..=4 with the default
/// 16 MiB frame limit.
const HELLO: [u8; 42] = [
    0x56, 0x4d, 0x53, 0x54, 0x4d, 0x49, 0x47, 0x52, // magic "VMSTMIGR"
    0x01, 0x00, 0x01, 0x00, // protocol versions 1..=1
    0x02, // role: destination
    0x02, 0x00, 0x04, 0x00, // app versions 2..=4
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, // frame limit 16 MiB
    0x07, 0x00, // name length
    0x76, 0x6d, 0x6d, 0x20, 0x31, 0x2e, 0x30, // "vmm 1.0"
    0x79, 0xfe, 0x93, 0x48, 0x94, 0xfe, 0x50, 0x0d, // CRC-64/REDIS of the bytes above
];

/// Memory frame: 3 bytes at guest address 0x1000.
const MEMORY: [u8; 28] = [
    0x02, // kind: memory
    0x0b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // payload length 11
    0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // guest address 0x1000
    0x01, 0x02, 0x03, // memory
    0xce, 0x21, 0x40, 0x16, 0xba, 0x46, 0x3d, 0xd4, // CRC-64/REDIS of kind, length, payload
];

/// Ack frame: restored.
const ACK_RESTORED: [u8; 18] = [
    0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // ack, length 1, status 0
    0x42, 0xc9, 0xcc, 0xe8, 0x57, 0xa6, 0xa3, 0xf7,
];

/// Ack frame: failed, reason "no".
const ACK_FAILED: [u8; 20] = [
    0x04, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x6e, 0x6f, // status 1, "no"
    0xcf, 0xbb, 0x2e, 0xe9, 0xee, 0xdf, 0x82, 0x8a,
];

/// Commit frame (empty payload).
const COMMIT: [u8; 17] = [
    0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
    0x34, 0x26, 0x7d, 0x28, 0xf5, 0xa9, 0x92, 0x62,
];

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

#[test]
fn test_wire_hello_bytes() {
    let mut stream = Duplex::new(Vec::new());
    let _ = Destination::handshake(&mut stream, &build_map(2, 4), &Config::new("vmm 1.0"));
    assert_eq!(stream.output, HELLO);
    // The test suite's hand-made hello agrees.
    assert_eq!(hello((1, 1), 2, (2, 4), 16 << 20, "vmm 1.0"), HELLO);
}

#[test]
fn test_wire_source_stream_bytes() {
    let mut input = HELLO.to_vec();
    input.extend_from_slice(&ACK_RESTORED);
    let mut stream = Duplex::new(input);
    let map = build_map(1, 6);
    let mut src = Source::handshake(&mut stream, &map, &Config::new("src")).unwrap();
    assert_eq!(src.negotiated().app_version, 4);
    src.send_state(&VmState::sample()).unwrap();
    src.send_memory(0x1000, &[1, 2, 3]).unwrap();
    src.finish().unwrap();
    let out = stream.output;

    // The source's hello.
    assert_eq!(
        out[..27 + 3],
        hello((1, 1), 1, (1, 6), 16 << 20, "src")[..30]
    );
    let mut at = 27 + 3 + 8;

    // The state frame: a snapshot at the negotiated app version.
    let mut snapshot_bytes = Vec::new();
    Snapshot::new(map, 4)
        .save(&mut snapshot_bytes, &VmState::sample())
        .unwrap();
    assert_eq!(out[at], 0x01);
    assert_eq!(u64_at(&out, at + 1), snapshot_bytes.len() as u64);
    let payload = &out[at + 9..at + 9 + snapshot_bytes.len()];
    assert_eq!(payload, snapshot_bytes);
    let crc_at = at + 9 + snapshot_bytes.len();
    assert_eq!(
        u64_at(&out, crc_at),
        versionize::crc::crc64(&out[at..crc_at])
    );
    at = crc_at + 8;

    assert_eq!(out[at..at + MEMORY.len()], MEMORY);
    at += MEMORY.len();

    // Done: frames 1, bytes 3, the time the source paused (ns since the epoch).
    assert_eq!(out[at..at + 9], [0x03, 24, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!((u64_at(&out, at + 9), u64_at(&out, at + 17)), (1, 3));
    assert!(u64_at(&out, at + 25) > 1_700_000_000 * 1_000_000_000);
    assert_eq!(
        u64_at(&out, at + 33),
        versionize::crc::crc64(&out[at..at + 33])
    );
    at += 41;

    assert_eq!(out[at..], COMMIT);
}

#[test]
fn test_wire_destination_ack_bytes() {
    let source_hello = hello((1, 1), 1, (1, 6), 16 << 20, "src");
    // A complete source stream, then the commit.
    let mut state = Vec::new();
    Snapshot::new(build_map(1, 6), 6)
        .save(&mut state, &VmState::sample())
        .unwrap();
    let mut input = source_hello.clone();
    input.extend(support::frame(1, &state));
    input.extend_from_slice(&MEMORY);
    let mut done = 1u64.to_le_bytes().to_vec();
    done.extend_from_slice(&3u64.to_le_bytes());
    done.extend_from_slice(&0u64.to_le_bytes());
    input.extend(support::frame(3, &done));
    input.extend_from_slice(&COMMIT);

    let mut stream = Duplex::new(input);
    let mut dst = Destination::handshake(&mut stream, &build_map(1, 6), &Config::new("d")).unwrap();
    let got: VmState = dst.recv_state().unwrap();
    assert_eq!(got, VmState::sample());
    let mut memory = [0u8; 3];
    dst.recv_memory(&mut GuestRegions::new(&mut [(
        0x1000,
        memory.as_mut_slice(),
    )]))
    .unwrap();
    assert_eq!(memory, [1, 2, 3]);
    let committed = dst.restored().unwrap();
    // A source that sent 0 as its pause time gives no downtime.
    assert_eq!(committed.since_source_paused, None);
    let hello_len = 27 + 1 + 8;
    assert_eq!(stream.output[hello_len..], ACK_RESTORED);

    let mut stream = Duplex::new(source_hello);
    let dst = Destination::handshake(&mut stream, &build_map(1, 6), &Config::new("d")).unwrap();
    dst.failed("no").unwrap();
    assert_eq!(stream.output[hello_len..], ACK_FAILED);
}
