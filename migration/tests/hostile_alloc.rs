//! A hostile peer never makes an end allocate beyond its frame limit, and a frame that
//! claims a large payload costs only the bytes that actually arrive. Measured with a
//! counting global allocator, so in a test binary of its own, one measurement at a time.

mod support;

use std::alloc::System;
use std::sync::Mutex;

use cap::Cap;
use migration::{Config, Destination, GuestRegions, MigrationError, Source};
use support::{build_map, frame, hello, recorded_source_stream, Duplex, VmState};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The allocator counts for the whole process: each test holds this for its whole body, so
/// no other test's setup runs while it measures.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes allocated, in all, while `run` runs.
fn allocated_by<T>(run: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATOR.total_allocated();
    let result = run();
    (result, ALLOCATOR.total_allocated() - before)
}

fn source_hello() -> Vec<u8> {
    hello((1, 1), 1, (1, 6), 1 << 20, "hostile")
}

#[test]
fn test_hostile_alloc_claimed_lengths_cost_only_what_arrives() {
    let _serial = serial();
    // A state frame claiming the whole 16 MiB limit, followed by 1000 bytes and the end.
    let mut input = source_hello();
    input.push(1);
    input.extend_from_slice(&(16u64 << 20).to_le_bytes());
    input.extend_from_slice(&[0x33; 1000]);
    let (err, allocated) = allocated_by(|| {
        let mut dst =
            Destination::handshake(Duplex::new(input), &build_map(1, 6), &Config::new("d"))
                .unwrap();
        dst.recv_state::<VmState>().unwrap_err()
    });
    assert!(
        matches!(err, MigrationError::Truncated { len, received: 1000, .. } if len == 16 << 20),
        "{err}"
    );
    assert!(allocated < 64 * 1024, "{allocated} bytes allocated");
}

#[test]
fn test_hostile_alloc_lengths_above_the_limit_allocate_nothing_for_the_payload() {
    let _serial = serial();
    for len in [u64::MAX, (16 << 20) + 1, 1 << 40] {
        let mut input = source_hello();
        input.push(1);
        input.extend_from_slice(&len.to_le_bytes());
        let (err, allocated) = allocated_by(|| {
            let mut dst =
                Destination::handshake(Duplex::new(input), &build_map(1, 6), &Config::new("d"))
                    .unwrap();
            dst.recv_state::<VmState>().unwrap_err()
        });
        assert!(matches!(err, MigrationError::FrameTooLarge { .. }), "{err}");
        assert!(allocated < 16 * 1024, "{allocated} bytes allocated");
    }
}

#[test]
fn test_hostile_alloc_memory_frames_reuse_one_buffer_of_the_frame_limit() {
    let _serial = serial();
    // 16 memory frames of 64 KiB: the destination keeps one payload buffer, not sixteen.
    let memory = vec![0x44u8; 1 << 20];
    let config = Config::new("s").with_chunk_len(64 * 1024);
    let stream = recorded_source_stream(&build_map(1, 6), &build_map(1, 6), &memory, &config);
    let mut target = vec![0u8; 1 << 20];
    let (stats, allocated) = allocated_by(|| {
        let mut dst =
            Destination::handshake(Duplex::new(stream), &build_map(1, 6), &Config::new("d"))
                .unwrap();
        let _: VmState = dst.recv_state().unwrap();
        dst.recv_memory(&mut GuestRegions::new(&mut [(0, target.as_mut_slice())]))
            .unwrap()
    });
    assert_eq!(stats.frames, 16);
    assert!(target == memory);
    // One payload buffer, grown by doubling with the bytes of the first frame (about 256 KiB
    // counted in all for a 64 KiB frame), plus 8 KiB of checksum staging per frame.
    assert!(allocated < 512 * 1024, "{allocated} bytes allocated");
}

#[test]
fn test_hostile_alloc_source_reads_acks_within_their_bound() {
    let _serial = serial();
    let mut input = hello((1, 1), 2, (1, 6), 1 << 20, "dst");
    input.extend(frame(4, &[1; 1025]));
    let mut src =
        Source::handshake(Duplex::new(input), &build_map(1, 6), &Config::new("s")).unwrap();
    src.send_state(&VmState::sample()).unwrap();
    let (err, allocated) = allocated_by(|| src.finish().unwrap_err());
    assert!(
        matches!(err, MigrationError::DestinationFailed { .. }),
        "{err}"
    );
    assert!(allocated < 64 * 1024, "{allocated} bytes allocated");
}
