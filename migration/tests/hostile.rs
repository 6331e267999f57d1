//! A hostile or broken peer: truncated, corrupted, oversized and out-of-place frames, a peer
//! that hangs up at every point, a peer that is not a migration endpoint. Every case is a
//! named error, never a panic, and never a resumed guest on the destination.

mod support;

use std::os::unix::net::UnixStream;
use std::thread;

use migration::{
    Config, Destination, FrameKind, GuestRegions, MigrationError, Source, DEFAULT_MAX_FRAME_LEN,
};
use support::{build_map, frame, hello, recorded_source_stream, Duplex, VmState};

const MEMORY: [u8; 100] = [0x5A; 100];

/// A source stream of hello, state, two memory frames (64 and 36 bytes) and done, without
/// the commit that follows the destination's ack.
fn source_stream() -> Vec<u8> {
    let config = Config::new("src").with_chunk_len(64);
    let mut stream = recorded_source_stream(&build_map(1, 6), &build_map(1, 6), &MEMORY, &config);
    let commit = frame(5, &[]);
    assert!(stream.ends_with(&commit));
    stream.truncate(stream.len() - commit.len());
    stream
}

/// Where a destination fed `input` stopped.
#[derive(Debug)]
enum Stop {
    /// Before the restored ack (the guest was never restored).
    Before(MigrationError),
    /// Waiting for the commit (restored, but must not resume).
    AtCommit(MigrationError),
    /// Committed: would resume.
    Committed,
}

fn run_destination(input: Vec<u8>) -> Stop {
    run_destination_with_memory(input).0
}

/// As [`run_destination`], also returning the 100 bytes of guest memory at address 0.
fn run_destination_with_memory(input: Vec<u8>) -> (Stop, [u8; 100]) {
    let stream = Duplex::new(input);
    let mut memory = [0u8; 100];
    let received = (|| {
        let mut dst = Destination::handshake(stream, &build_map(1, 6), &Config::new("dst"))?;
        let _: VmState = dst.recv_state()?;
        dst.recv_memory(&mut GuestRegions::new(&mut [(0, memory.as_mut_slice())]))?;
        Ok(dst)
    })();
    let stop = match received {
        Err(err) => Stop::Before(err),
        Ok(dst) => match dst.restored() {
            Ok(_) => Stop::Committed,
            Err(err) => Stop::AtCommit(err),
        },
    };
    (stop, memory)
}

#[test]
fn test_hostile_complete_stream_without_commit_does_not_resume() {
    // The source hung up after the destination's ack (it resumes its own guest): the
    // destination must not resume.
    match run_destination(source_stream()) {
        Stop::AtCommit(MigrationError::PeerHungUp {
            step: "receive commit",
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    let mut with_commit = source_stream();
    with_commit.extend(frame(5, &[]));
    let (stop, memory) = run_destination_with_memory(with_commit);
    assert!(matches!(stop, Stop::Committed), "{stop:?}");
    assert_eq!(memory, MEMORY);
}

#[test]
fn test_hostile_every_truncation_is_a_hang_up_or_a_truncated_frame() {
    let stream = source_stream();
    for len in 0..stream.len() {
        match run_destination(stream[..len].to_vec()) {
            Stop::Before(MigrationError::PeerHungUp { .. } | MigrationError::Truncated { .. }) => {}
            other => panic!("{len} of {} bytes: unexpected {other:?}", stream.len()),
        }
    }
}

#[test]
fn test_hostile_every_bit_flip_is_refused_before_the_ack() {
    let stream = source_stream();
    for at in 0..stream.len() {
        for bit in 0..8 {
            let mut bad = stream.clone();
            bad[at] ^= 1 << bit;
            match run_destination(bad) {
                Stop::Before(
                    MigrationError::Crc { .. }
                    | MigrationError::BadMagic { .. }
                    | MigrationError::InvalidHello { .. }
                    | MigrationError::UnknownFrame { .. }
                    | MigrationError::UnexpectedFrame { .. }
                    | MigrationError::FrameTooLarge { .. }
                    | MigrationError::Truncated { .. }
                    | MigrationError::PeerHungUp { .. },
                ) => {}
                other => panic!("byte {at} bit {bit}: unexpected {other:?}"),
            }
        }
    }
}

/// The source's hello and a state frame of this build, for hand-made streams.
fn hello_and_state() -> Vec<u8> {
    let full = source_stream();
    let hello_len = 27 + 3 + 8;
    let state_len =
        9 + u64::from_le_bytes(full[hello_len + 1..hello_len + 9].try_into().unwrap()) as usize + 8;
    full[..hello_len + state_len].to_vec()
}

fn memory_frame(address: u64, bytes: &[u8]) -> Vec<u8> {
    let mut payload = address.to_le_bytes().to_vec();
    payload.extend_from_slice(bytes);
    frame(2, &payload)
}

fn done_frame(frames: u64, bytes: u64) -> Vec<u8> {
    let mut payload = frames.to_le_bytes().to_vec();
    payload.extend_from_slice(&bytes.to_le_bytes());
    payload.extend_from_slice(&1u64.to_le_bytes());
    frame(3, &payload)
}

fn stop_before(input: Vec<u8>) -> MigrationError {
    match run_destination(input) {
        Stop::Before(err) => err,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn test_hostile_oversized_frames_are_refused_before_their_payload() {
    let source_hello = &hello_and_state()[..38];
    for (tag, len, kind, limit) in [
        (1u8, u64::MAX, FrameKind::State, DEFAULT_MAX_FRAME_LEN),
        (
            1,
            DEFAULT_MAX_FRAME_LEN + 1,
            FrameKind::State,
            DEFAULT_MAX_FRAME_LEN,
        ),
        (6, 1025, FrameKind::Abort, 1024),
    ] {
        let mut input = source_hello.to_vec();
        input.push(tag);
        input.extend_from_slice(&len.to_le_bytes());
        match stop_before(input) {
            MigrationError::FrameTooLarge {
                kind: found,
                len: found_len,
                limit: found_limit,
            } => assert_eq!((found, found_len, found_limit), (kind, len, limit)),
            other => panic!("unexpected {other:?}"),
        }
    }
    // A memory frame above the limit, after a valid state.
    let mut input = hello_and_state();
    input.push(2);
    input.extend_from_slice(&(DEFAULT_MAX_FRAME_LEN + 1).to_le_bytes());
    assert!(matches!(
        stop_before(input),
        MigrationError::FrameTooLarge {
            kind: FrameKind::Memory,
            ..
        }
    ));
}

#[test]
fn test_hostile_malformed_and_misplaced_frames_are_named() {
    let base = hello_and_state();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (frame(9, &[]), "unknown frame kind 0x09"),
        (
            frame(4, &[0]),
            "unexpected ack frame while waiting for memory or done",
        ),
        (
            frame(1, &[]),
            "unexpected state frame while waiting for memory or done",
        ),
        (
            frame(2, &[1, 2, 3]),
            "malformed memory frame: shorter than its guest address",
        ),
        (
            memory_frame(u64::MAX - 1, &[1, 2, 3]),
            "malformed memory frame: chunk passes the end of the address space",
        ),
        (
            memory_frame(96, &[1; 8]),
            "cannot store 8 bytes of guest memory at 0x60",
        ),
        (
            frame(3, &[0; 23]),
            "malformed done frame: shorter than 24 bytes",
        ),
        (
            done_frame(1, 0),
            "memory frames differ: the source sent 1, 0 arrived",
        ),
        (
            [memory_frame(0, &[1; 4]), done_frame(1, 5)].concat(),
            "memory bytes differ: the source sent 5, 4 arrived",
        ),
        (
            frame(6, b"disk full"),
            "the source aborted the migration: disk full",
        ),
    ];
    for (tail, message) in cases {
        let mut input = base.clone();
        input.extend(tail);
        let err = stop_before(input);
        assert_eq!(err.to_string(), message);
    }
    // A state frame where the state was expected but holding another app version than the
    // negotiated one (a source that ignores the agreement).
    let mut snapshot_bytes = Vec::new();
    snapshot::Snapshot::new(build_map(1, 6), 5)
        .save(&mut snapshot_bytes, &VmState::sample())
        .unwrap();
    let mut input = base[..38].to_vec();
    input.extend(frame(1, &snapshot_bytes));
    assert_eq!(
        stop_before(input).to_string(),
        "state frame holds app version 5, but 6 was negotiated"
    );
    // A state that is not a snapshot.
    let mut input = base[..38].to_vec();
    input.extend(frame(1, b"not a snapshot at all"));
    match stop_before(input) {
        MigrationError::State {
            action: "decode",
            app_version: 6,
            ..
        } => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn test_hostile_peers_that_are_not_migration_endpoints() {
    let map = build_map(1, 6);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            "not a migration stream: magic 0x5448202f20544547, expected 0x5247494d54534d56",
        ),
        (
            hello((1, 1), 3, (1, 6), 1 << 20, "x"),
            "invalid hello from the peer: role is neither source (1) nor destination (2)",
        ),
        (
            hello((1, 1), 1, (3, 2), 1 << 20, "x"),
            "invalid hello from the peer: empty app version range",
        ),
        (
            hello((0, 1), 1, (1, 2), 1 << 20, "x"),
            "invalid hello from the peer: empty protocol version range",
        ),
        (
            hello((1, 1), 1, (1, 2), 4095, "x"),
            "invalid hello from the peer: frame limit below 4096 bytes",
        ),
        (
            hello((1, 1), 1, (1, 2), 1 << 20, &"x".repeat(300)),
            "invalid hello from the peer: name longer than 256 bytes",
        ),
        (Vec::new(), "peer hung up during receive hello"),
    ];
    for (input, message) in cases {
        let mut stream = Duplex::new(input);
        let err = Destination::handshake(&mut stream, &map, &Config::new("d")).unwrap_err();
        assert_eq!(err.to_string(), message);
    }
    let mut bad_utf8 = hello((1, 1), 1, (1, 2), 1 << 20, "xx");
    bad_utf8[27] = 0xFF;
    let crc_at = bad_utf8.len() - 8;
    let crc = versionize::crc::crc64(&bad_utf8[..crc_at]);
    bad_utf8[crc_at..].copy_from_slice(&crc.to_le_bytes());
    let mut stream = Duplex::new(bad_utf8);
    let err = Destination::handshake(&mut stream, &map, &Config::new("d")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid hello from the peer: name is not utf-8"
    );
}

#[test]
fn test_hostile_source_side_acks() {
    // What the destination answers after the done frame, as the source sees it.
    let destination_hello = hello((1, 1), 2, (1, 6), 1 << 20, "dst");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "peer hung up during receive ack"),
        (
            frame(4, &[2]),
            "malformed ack frame: status is neither restored (0) nor failed (1)",
        ),
        (
            frame(4, &[]),
            "malformed ack frame: status is neither restored (0) nor failed (1)",
        ),
        (
            frame(4, &[0, 1]),
            "malformed ack frame: a restored ack carries a reason",
        ),
        (
            frame(4, &[1; 2000]),
            "ack frame of 2000 bytes exceeds the limit of 1025",
        ),
        (
            frame(5, &[]),
            "unexpected commit frame while waiting for ack",
        ),
        (
            frame(4, b"\x01bad \xFF"),
            "the destination failed to restore: bad \u{FFFD}",
        ),
    ];
    for (tail, message) in cases {
        let mut input = destination_hello.clone();
        input.extend(tail);
        let mut stream = Duplex::new(input);
        let mut src = Source::handshake(&mut stream, &build_map(1, 6), &Config::new("s")).unwrap();
        src.send_state(&VmState::sample()).unwrap();
        let err = src.finish().unwrap_err();
        assert_eq!(err.to_string(), message);
        // No commit was sent: the destination must not resume.
        assert_ne!(
            stream.output.last_chunk::<17>(),
            Some(&frame(5, &[]).try_into().unwrap())
        );
    }
}

#[test]
fn test_hostile_peer_hangs_up_mid_transfer_over_a_socket() {
    // The source crashes after half of the memory: the destination stops with a named
    // error, and the guest is not resumed there.
    let (source_end, destination_end) = UnixStream::pair().unwrap();
    let destination = thread::spawn(move || -> MigrationError {
        let mut dst =
            Destination::handshake(destination_end, &build_map(1, 6), &Config::new("d")).unwrap();
        let _: VmState = dst.recv_state().unwrap();
        let mut memory = vec![0u8; 4 << 20];
        dst.recv_memory(&mut GuestRegions::new(&mut [(0, memory.as_mut_slice())]))
            .unwrap_err()
    });
    let mut src = Source::handshake(source_end, &build_map(1, 6), &Config::new("s")).unwrap();
    src.send_state(&VmState::sample()).unwrap();
    src.send_memory(0, &[1; 2 << 20]).unwrap();
    drop(src);
    match destination.join().unwrap() {
        MigrationError::PeerHungUp {
            step: "receive memory",
        } => {}
        other => panic!("unexpected {other:?}"),
    }

    // The destination crashes before its ack: the source learns it and resumes.
    let (source_end, destination_end) = UnixStream::pair().unwrap();
    let destination = thread::spawn(move || {
        let mut dst =
            Destination::handshake(destination_end, &build_map(1, 6), &Config::new("d")).unwrap();
        let _: VmState = dst.recv_state().unwrap();
        dst.recv_memory(&mut |_: u64, _: &[u8]| Ok(())).unwrap();
    });
    let mut src = Source::handshake(source_end, &build_map(1, 6), &Config::new("s")).unwrap();
    src.send_state(&VmState::sample()).unwrap();
    src.send_memory(0, &[1; 4096]).unwrap();
    let finished = src.finish();
    destination.join().unwrap();
    match finished {
        Err(MigrationError::PeerHungUp {
            step: "receive ack",
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
}

mod arbitrary_input {
    use super::*;
    use proptest::prelude::*;

    /// Frames with valid checksums but arbitrary kinds and payloads, and some raw noise.
    fn frames() -> impl Strategy<Value = Vec<u8>> {
        let one = prop_oneof![
            (0u8..8, prop::collection::vec(any::<u8>(), 0..48)).prop_map(|(tag, p)| frame(tag, &p)),
            (any::<u64>(), prop::collection::vec(any::<u8>(), 0..32))
                .prop_map(|(address, bytes)| memory_frame(address % 128, &bytes)),
            (0u64..4, 0u64..200).prop_map(|(frames, bytes)| done_frame(frames, bytes)),
            prop::collection::vec(any::<u8>(), 0..24),
        ];
        prop::collection::vec(one, 0..6).prop_map(|frames| frames.concat())
    }

    proptest! {
        #[test]
        fn test_hostile_arbitrary_frames_after_a_valid_state_never_panic(tail in frames()) {
            let mut input = hello_and_state();
            input.extend_from_slice(&tail);
            // The runner fails on a panic; any outcome other than a commit is an error, and a
            // commit needs a done frame whose counts match what arrived.
            if let Stop::Committed = run_destination(input) {
                prop_assert!(tail.ends_with(&frame(5, &[])));
            }
        }

        #[test]
        fn test_hostile_arbitrary_bytes_after_a_valid_hello_never_panic(
            tail in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut input = hello_and_state()[..38].to_vec();
            input.extend_from_slice(&tail);
            prop_assert!(!matches!(run_destination(input), Stop::Committed));
        }

        #[test]
        fn test_hostile_arbitrary_answers_to_a_source_never_panic(tail in frames()) {
            let mut input = hello((1, 1), 2, (1, 6), 1 << 20, "dst");
            input.extend_from_slice(&tail);
            let mut stream = Duplex::new(input);
            let mut src = Source::handshake(&mut stream, &build_map(1, 6), &Config::new("s")).unwrap();
            src.send_state(&VmState::sample()).unwrap();
            src.send_memory(0, &[1; 10]).unwrap();
            // Only an ack "restored" at the front of the answer lets the source commit.
            let restored = tail.starts_with(&frame(4, &[0]));
            prop_assert_eq!(src.finish().is_ok(), restored);
        }
    }
}

#[test]
fn test_hostile_silent_peer_times_out_with_the_callers_socket_timeout() {
    // Timeouts are the caller's: a read timeout on the socket ends the handshake with an
    // i/o error naming the step, instead of waiting forever for a peer that never speaks.
    let (source_end, silent) = UnixStream::pair().unwrap();
    source_end
        .set_read_timeout(Some(std::time::Duration::from_millis(50)))
        .unwrap();
    match Source::handshake(source_end, &build_map(1, 6), &Config::new("s")) {
        Err(MigrationError::Io {
            step: "receive hello",
            kind: std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut,
            ..
        }) => {}
        other => panic!("unexpected {:?}", other.err()),
    }
    drop(silent);
}
