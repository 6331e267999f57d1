//! Whole migrations between two threads: over a Unix socket pair and over TCP on the
//! loopback address, 64 MiB of guest memory, throughput and downtime printed.

mod support;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Instant;

use migration::{Config, Destination, GuestRegions, MigrationError, Source};
use support::{build_map, migrate, pattern, Received, VmState};

const MEMORY_LEN: usize = 64 * 1024 * 1024;

fn report(transport: &str, outcome: &migration::Outcome, received: &Received, elapsed_secs: f64) {
    let mib = outcome.memory_bytes as f64 / (1024.0 * 1024.0);
    println!(
        "{transport}: {mib:.0} MiB in {} frames at app version {}, {:.0} MiB/s end to end; \
         downtime {:?} (source: paused to commit sent), {:?} (destination: source paused to commit received)",
        outcome.memory_frames,
        outcome.app_version,
        mib / elapsed_secs,
        outcome.downtime,
        received.committed.since_source_paused,
    );
}

fn check(outcome: &migration::Outcome, received: &Received, memory: &[u8], app_version: u16) {
    assert_eq!(outcome.app_version, app_version);
    assert_eq!(received.app_version, app_version);
    assert_eq!(received.state, VmState::sample_at(app_version));
    assert_eq!(outcome.memory_bytes, memory.len() as u64);
    assert_eq!(outcome.memory_frames, 64, "1 MiB chunks");
    assert!(received.memory == memory, "memory differs");
    assert!(outcome.downtime >= outcome.transfer);
    assert!(received.committed.since_source_paused.is_some());
}

#[test]
fn test_transfer_unix_socket_64_mib_newer_source_to_older_destination() {
    let memory = pattern(MEMORY_LEN, 1);
    let start = Instant::now();
    // The source's build reads and writes 2..=6, the destination's 1..=4: they meet at 4.
    let (outcome, received) = migrate(
        UnixStream::pair().unwrap(),
        build_map(2, 6),
        build_map(1, 4),
        &memory,
    );
    let elapsed = start.elapsed().as_secs_f64();
    let (outcome, received) = (outcome.unwrap(), received.unwrap());
    check(&outcome, &received, &memory, 4);
    report("unix socket", &outcome, &received, elapsed);
}

#[test]
fn test_transfer_tcp_loopback_64_mib_older_source_to_newer_destination() {
    let memory = pattern(MEMORY_LEN, 2);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let accept = thread::spawn(move || listener.accept().map(|(stream, _)| stream));
    let source_end = TcpStream::connect(address).unwrap();
    let destination_end = accept.join().unwrap().unwrap();
    let start = Instant::now();
    // Upgrade: the source's build knows 1..=3, the destination's 2..=6.
    let (outcome, received) = migrate(
        (source_end, destination_end),
        build_map(1, 3),
        build_map(2, 6),
        &memory,
    );
    let elapsed = start.elapsed().as_secs_f64();
    let (outcome, received) = (outcome.unwrap(), received.unwrap());
    check(&outcome, &received, &memory, 3);
    report("tcp 127.0.0.1", &outcome, &received, elapsed);
}

/// A reader of guest memory that hands out at most 1000 bytes per read, as a slow file
/// would.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(1000).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn test_transfer_memory_streams_from_a_reader_into_two_regions() {
    let low = pattern(300_000, 3);
    let high = pattern(200_000, 4);
    let (source_end, destination_end) = UnixStream::pair().unwrap();
    let destination = thread::spawn(move || -> migration::Result<(Vec<u8>, Vec<u8>, u64)> {
        let mut dst = Destination::handshake(destination_end, &build_map(1, 6), &Config::new("d"))?;
        let _: VmState = dst.recv_state()?;
        let mut low = vec![0u8; 300_000];
        let mut high = vec![0u8; 200_000];
        let stats = dst.recv_memory(&mut GuestRegions::new(&mut [
            (0x10_0000, low.as_mut_slice()),
            (0x1_0000_0000, high.as_mut_slice()),
        ]))?;
        dst.restored()?;
        Ok((low, high, stats.frames))
    });
    let config = Config::new("s").with_chunk_len(64 * 1024);
    let mut src = Source::handshake(source_end, &build_map(1, 6), &config).unwrap();
    src.send_state(&VmState::sample()).unwrap();
    src.send_memory_from(0x10_0000, low.len() as u64, Trickle(&low))
        .unwrap();
    src.send_memory(0x1_0000_0000, &high).unwrap();
    let outcome = src.finish().unwrap();
    let (got_low, got_high, frames) = destination.join().unwrap().unwrap();
    assert!(got_low == low && got_high == high);
    // 300_000 bytes in 64 KiB chunks is 5 frames, 200_000 is 4.
    assert_eq!((outcome.memory_frames, frames), (9, 9));
}

#[test]
fn test_transfer_chunks_shrink_to_the_destination_frame_limit() {
    let memory = pattern(100_000, 5);
    let (source_end, destination_end) = UnixStream::pair().unwrap();
    let destination = thread::spawn(move || -> migration::Result<Vec<u8>> {
        let config = Config::new("d").with_max_frame_len(8192);
        let mut dst = Destination::handshake(destination_end, &build_map(1, 6), &config)?;
        let _: VmState = dst.recv_state()?;
        let mut memory = vec![0u8; 100_000];
        dst.recv_memory(&mut GuestRegions::new(&mut [(0, memory.as_mut_slice())]))?;
        dst.restored()?;
        Ok(memory)
    });
    let mut src = Source::handshake(source_end, &build_map(1, 6), &Config::new("s")).unwrap();
    src.send_state(&VmState::sample()).unwrap();
    src.send_memory(0, &memory).unwrap();
    let outcome = src.finish().unwrap();
    assert!(destination.join().unwrap().unwrap() == memory);
    // 8192 - 8 bytes of memory per frame.
    assert_eq!(outcome.memory_frames, 100_000u64.div_ceil(8184));
}

#[test]
fn test_transfer_state_above_the_destination_limit_is_refused_before_sending() {
    let (source_end, destination_end) = UnixStream::pair().unwrap();
    let destination = thread::spawn(move || {
        let config = Config::new("d").with_max_frame_len(4096);
        let mut dst = Destination::handshake(destination_end, &build_map(1, 6), &config).unwrap();
        dst.recv_state::<VmState>().err()
    });
    let mut src = Source::handshake(source_end, &build_map(1, 6), &Config::new("s")).unwrap();
    let mut big = VmState::sample();
    big.uart_fifo = vec![0; 10_000];
    match src.send_state(&big) {
        Err(MigrationError::FrameTooLarge {
            len, limit: 4096, ..
        }) => assert!(len > 10_000),
        other => panic!("unexpected {other:?}"),
    }
    // The destination is told why instead of waiting for a state that never comes.
    match destination.join().unwrap() {
        Some(MigrationError::PeerAborted { reason }) => {
            assert!(reason.starts_with("state frame of "), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // The source is done: later calls say so.
    match src.send_memory(0, &[1]) {
        Err(MigrationError::OutOfOrder {
            call: "send_memory",
            expected,
        }) => {
            assert_eq!(expected, "the migration already failed");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn test_transfer_destination_failure_reaches_the_source_with_its_reason() {
    let (source_end, destination_end) = UnixStream::pair().unwrap();
    let destination = thread::spawn(move || {
        let mut dst =
            Destination::handshake(destination_end, &build_map(1, 6), &Config::new("d")).unwrap();
        let _: VmState = dst.recv_state().unwrap();
        let mut memory = vec![0u8; 4096];
        dst.recv_memory(&mut GuestRegions::new(&mut [(0, memory.as_mut_slice())]))
            .unwrap();
        dst.failed("restore: KVM_SET_MSRS set 3 of 40 MSRs")
            .unwrap();
    });
    let mut src = Source::handshake(source_end, &build_map(1, 6), &Config::new("s")).unwrap();
    src.send_state(&VmState::sample()).unwrap();
    src.send_memory(0, &[7; 4096]).unwrap();
    match src.finish() {
        Err(MigrationError::DestinationFailed { reason }) => {
            assert_eq!(reason, "restore: KVM_SET_MSRS set 3 of 40 MSRs");
        }
        other => panic!("unexpected {other:?}"),
    }
    destination.join().unwrap();
}

#[test]
fn test_transfer_destination_giving_up_mid_memory_stops_the_source_with_its_reason() {
    // The destination refuses a chunk outside its memory, says why and closes while the
    // source is still streaming: the source finds the reason instead of a broken pipe.
    let memory = pattern(8 * 1024 * 1024, 6);
    let (source_end, destination_end) = UnixStream::pair().unwrap();
    let destination = thread::spawn(move || {
        let mut dst =
            Destination::handshake(destination_end, &build_map(1, 6), &Config::new("d")).unwrap();
        let _: VmState = dst.recv_state().unwrap();
        let mut small = vec![0u8; 1024 * 1024];
        let err = dst
            .recv_memory(&mut GuestRegions::new(&mut [(0, small.as_mut_slice())]))
            .unwrap_err();
        let reason = err.to_string();
        assert!(
            matches!(
                err,
                MigrationError::MemorySink {
                    address: 0x10_0000,
                    ..
                }
            ),
            "{reason}"
        );
        dst.failed(&reason).unwrap();
        reason
    });
    let mut src = Source::handshake(source_end, &build_map(1, 6), &Config::new("s")).unwrap();
    src.send_state(&VmState::sample()).unwrap();
    let sent = src.send_memory(0, &memory);
    let reason = destination.join().unwrap();
    let err = match sent {
        Ok(()) => src.finish().unwrap_err(),
        Err(err) => err,
    };
    match err {
        MigrationError::DestinationFailed { reason: got } => assert_eq!(got, reason),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        reason,
        "cannot store 1048576 bytes of guest memory at 0x100000"
    );
}

#[test]
fn test_transfer_source_abort_reaches_the_destination() {
    let (source_end, destination_end) = UnixStream::pair().unwrap();
    let destination = thread::spawn(move || {
        let mut dst =
            Destination::handshake(destination_end, &build_map(1, 6), &Config::new("d")).unwrap();
        dst.recv_state::<VmState>().err()
    });
    let src = Source::handshake(source_end, &build_map(1, 6), &Config::new("s")).unwrap();
    src.abort("operator cancelled").unwrap();
    match destination.join().unwrap() {
        Some(MigrationError::PeerAborted { reason }) => assert_eq!(reason, "operator cancelled"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn test_transfer_calls_out_of_order_are_named() {
    let (source_end, destination_end) = UnixStream::pair().unwrap();
    let destination = thread::spawn(move || {
        let mut dst =
            Destination::handshake(destination_end, &build_map(1, 6), &Config::new("d")).unwrap();
        let err = dst.recv_memory(&mut |_: u64, _: &[u8]| Ok(())).unwrap_err();
        assert!(
            matches!(
                err,
                MigrationError::OutOfOrder {
                    call: "recv_memory",
                    ..
                }
            ),
            "{err}"
        );
        let _: VmState = dst.recv_state().unwrap();
        let err = dst.recv_state::<VmState>().unwrap_err();
        assert!(
            matches!(
                err,
                MigrationError::OutOfOrder {
                    call: "recv_state",
                    ..
                }
            ),
            "{err}"
        );
        dst.recv_memory(&mut |_: u64, _: &[u8]| Ok(())).unwrap();
        dst.restored().unwrap();
    });
    let mut src = Source::handshake(source_end, &build_map(1, 6), &Config::new("s")).unwrap();
    let err = src.send_memory(0, &[1]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "send_memory called out of order: after send_state"
    );
    src.send_state(&VmState::sample()).unwrap();
    let err = src.send_state(&VmState::sample()).unwrap_err();
    assert!(
        matches!(
            err,
            MigrationError::OutOfOrder {
                call: "send_state",
                ..
            }
        ),
        "{err}"
    );
    src.finish().unwrap();
    destination.join().unwrap();
}

#[cfg(target_arch = "x86_64")]
#[test]
fn test_transfer_kvm_state_microvm_state() {
    use kvm_state::{version_map, MicrovmState, CURRENT_APP_VERSION};

    // kvm-state's own map, and an older build that stopped at app version 2.
    let memory = pattern(2 * 1024 * 1024, 7);
    let state = MicrovmState {
        host: kvm_state::HostFacts {
            cpu_vendor: "GenuineIntel".into(),
            ..Default::default()
        },
        vcpus: vec![Default::default(); 2],
        ..Default::default()
    };
    for (source_map, destination_map, expected) in [
        (version_map(), version_map(), CURRENT_APP_VERSION),
        (version_map(), truncated(2), 2),
    ] {
        let (source_end, destination_end) = UnixStream::pair().unwrap();
        let len = memory.len();
        let destination =
            thread::spawn(move || -> migration::Result<(MicrovmState, Vec<u8>, u16)> {
                let mut dst =
                    Destination::handshake(destination_end, &destination_map, &Config::new("d"))?;
                let state: MicrovmState = dst.recv_state()?;
                let mut memory = vec![0u8; len];
                dst.recv_memory(&mut GuestRegions::new(&mut [(0, memory.as_mut_slice())]))?;
                let app_version = dst.negotiated().app_version;
                dst.restored()?;
                Ok((state, memory, app_version))
            });
        let mut src = Source::handshake(source_end, &source_map, &Config::new("s")).unwrap();
        src.send_state(&state).unwrap();
        src.send_memory(0, &memory).unwrap();
        src.finish().unwrap();
        let (got, got_memory, app_version) = destination.join().unwrap().unwrap();
        assert_eq!(app_version, expected);
        assert!(got_memory == memory);
        assert_eq!(got.vcpus.len(), 2);
        // App version 2 has no host facts: the older build reads them empty.
        let vendor = if expected >= 3 { "GenuineIntel" } else { "" };
        assert_eq!(got.host.cpu_vendor, vendor);
    }

    /// kvm-state's map as a build that stopped at `latest` would have it.
    fn truncated(latest: u16) -> versionize::VersionMap {
        use versionize::prelude::Versionize;
        let mut map = versionize::VersionMap::new();
        if latest >= 2 {
            map.new_version()
                .set_type_version(kvm_state::VcpuState::type_id(), 2)
                .set_type_version(kvm_state::ClockState::type_id(), 2);
        }
        map
    }
}
