//! Both ends agree on the highest common app version, or both refuse by name.

mod support;

use std::os::unix::net::UnixStream;
use std::thread;

use migration::{Config, Destination, MigrationError, Role, Source, VersionRange};
use proptest::prelude::*;
use support::{build_map, hello, migrate, Duplex, VmState};

/// The highest version in both ranges, by looking at every version.
fn brute_force(a: (u16, u16), b: (u16, u16)) -> Option<u16> {
    (1..=u16::MAX)
        .rev()
        .find(|v| (a.0..=a.1).contains(v) && (b.0..=b.1).contains(v))
}

fn ranges_of(max: u16) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for oldest in 1..=max {
        for latest in oldest..=max {
            out.push((oldest, latest));
        }
    }
    out
}

#[test]
fn test_negotiation_every_range_pair_over_a_socket() {
    // Every pair of builds supporting a window of 1..=6: 21 x 21 migrations, each end on its
    // own thread, the state decoded with the destination's map.
    let mut agreed = 0;
    let mut refused = 0;
    for source in ranges_of(6) {
        for destination in ranges_of(6) {
            let pair = UnixStream::pair().unwrap();
            let (src, dst) = migrate(
                pair,
                build_map(source.0, source.1),
                build_map(destination.0, destination.1),
                &[1, 2, 3],
            );
            match brute_force(source, destination) {
                Some(expected) => {
                    let outcome = src.unwrap();
                    let received = dst.unwrap();
                    assert_eq!(
                        outcome.app_version, expected,
                        "{source:?} -> {destination:?}"
                    );
                    assert_eq!(received.app_version, expected);
                    assert_eq!(received.state, VmState::sample_at(expected));
                    assert_eq!(received.memory, [1, 2, 3]);
                    agreed += 1;
                }
                None => {
                    let ours = VersionRange::new(source.0, source.1).unwrap();
                    let theirs = VersionRange::new(destination.0, destination.1).unwrap();
                    match (src, dst) {
                        (
                            Err(MigrationError::NoCommonVersion {
                                ours: src_ours,
                                theirs: src_theirs,
                                peer: src_peer,
                            }),
                            Err(MigrationError::NoCommonVersion {
                                ours: dst_ours,
                                theirs: dst_theirs,
                                peer: dst_peer,
                            }),
                        ) => {
                            assert_eq!((src_ours, src_theirs), (ours, theirs));
                            assert_eq!((dst_ours, dst_theirs), (theirs, ours));
                            assert_eq!(
                                (src_peer.as_str(), dst_peer.as_str()),
                                ("dst 1.0", "src 2.0")
                            );
                        }
                        (src, dst) => panic!(
                            "{source:?} -> {destination:?}: {:?} / {:?}",
                            src.err(),
                            dst.err()
                        ),
                    }
                    refused += 1;
                }
            }
        }
    }
    assert_eq!(agreed + refused, 21 * 21);
    assert!(refused > 0 && agreed > 0);
}

#[test]
fn test_negotiation_no_common_version_message_names_both_windows() {
    let pair = UnixStream::pair().unwrap();
    let (src, dst) = migrate(pair, build_map(4, 6), build_map(1, 3), &[]);
    assert_eq!(
        src.err().unwrap().to_string(),
        "no common app version: this side supports 4..=6, the peer (dst 1.0) 1..=3"
    );
    assert_eq!(
        dst.err().unwrap().to_string(),
        "no common app version: this side supports 1..=3, the peer (src 2.0) 4..=6"
    );
}

#[test]
fn test_negotiation_two_sources_are_a_role_mismatch_on_both_sides() {
    let (a, b) = UnixStream::pair().unwrap();
    let other =
        thread::spawn(move || Source::handshake(b, &build_map(1, 3), &Config::new("b")).err());
    let ours = Source::handshake(a, &build_map(1, 3), &Config::new("a")).err();
    let theirs = other.join().unwrap();
    for err in [ours, theirs] {
        match err {
            Some(MigrationError::RoleMismatch { role: Role::Source }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn test_negotiation_peer_of_a_future_protocol_is_named() {
    // A build that speaks only protocol versions 2..=3 (the hello layout never changes).
    let mut stream = Duplex::new(hello((2, 3), 2, (1, 6), 1 << 20, "vmm 9.0"));
    match Source::handshake(&mut stream, &build_map(1, 6), &Config::new("vmm 2.0")) {
        Err(MigrationError::NoCommonProtocol { ours, theirs, peer }) => {
            assert_eq!((ours.oldest(), ours.latest()), (1, 1));
            assert_eq!((theirs.oldest(), theirs.latest()), (2, 3));
            assert_eq!(peer, "vmm 9.0");
        }
        other => panic!("unexpected {:?}", other.err()),
    }
    // A peer that also speaks protocol 1 is fine, and what it says about itself is kept.
    let mut stream = Duplex::new(hello((1, 3), 2, (2, 9), 1 << 20, "vmm 9.0"));
    let src = Source::handshake(&mut stream, &build_map(1, 6), &Config::new("vmm 2.0")).unwrap();
    let negotiated = src.negotiated();
    assert_eq!(
        (negotiated.protocol_version, negotiated.app_version),
        (1, 6)
    );
    assert_eq!(negotiated.peer.name, "vmm 9.0");
    assert_eq!(negotiated.peer.role, Role::Destination);
    assert_eq!(negotiated.peer.max_frame_len, 1 << 20);
    assert_eq!(
        negotiated.peer.app_versions,
        VersionRange::new(2, 9).unwrap()
    );
}

#[test]
fn test_negotiation_invalid_config_is_refused_before_anything_is_sent() {
    let map = build_map(1, 2);
    let configs = [
        (Config::new("x".repeat(257)), "name length"),
        (Config::new("vmm").with_max_frame_len(4095), "max_frame_len"),
        (Config::new("vmm").with_chunk_len(0), "chunk_len"),
    ];
    for (config, expected) in configs {
        let mut stream = Duplex::new(hello((1, 1), 2, (1, 2), 1 << 20, "peer"));
        match Source::handshake(&mut stream, &map, &config) {
            Err(MigrationError::InvalidConfig { field, .. }) => assert_eq!(field, expected),
            other => panic!("unexpected {:?}", other.err()),
        }
        assert!(stream.output.is_empty());
        let mut stream = Duplex::new(hello((1, 1), 1, (1, 2), 1 << 20, "peer"));
        assert!(matches!(
            Destination::handshake(&mut stream, &map, &config),
            Err(MigrationError::InvalidConfig { .. })
        ));
        assert!(stream.output.is_empty());
    }
}

#[test]
fn test_negotiation_support_window_comes_from_the_version_map() {
    // The hello carries `VersionMap::supported_range`, so raising the oldest supported app
    // version in a release is all it takes for migrations to refuse older builds.
    let mut stream = Duplex::new(hello((1, 1), 2, (1, 3), 1 << 20, "old"));
    let err = Source::handshake(&mut stream, &build_map(4, 5), &Config::new("new")).unwrap_err();
    assert!(
        matches!(err, MigrationError::NoCommonVersion { .. }),
        "{err}"
    );
    let sent = &stream.output;
    assert_eq!(
        &sent[13..17],
        &[4, 0, 5, 0],
        "oldest and latest app version"
    );
}

proptest! {
    #[test]
    fn test_negotiation_highest_common_matches_brute_force(
        a in (1u16..=u16::MAX).prop_flat_map(|o| (Just(o), o..=u16::MAX)),
        b in (1u16..=u16::MAX).prop_flat_map(|o| (Just(o), o..=u16::MAX)),
    ) {
        let ra = VersionRange::new(a.0, a.1).unwrap();
        let rb = VersionRange::new(b.0, b.1).unwrap();
        let expected = brute_force(a, b);
        prop_assert_eq!(ra.highest_common(&rb), expected);
        prop_assert_eq!(rb.highest_common(&ra), expected);
    }

    #[test]
    fn test_negotiation_close_ranges_match_brute_force(
        a in (1u16..=8).prop_flat_map(|o| (Just(o), o..=8)),
        b in (1u16..=8).prop_flat_map(|o| (Just(o), o..=8)),
    ) {
        // Small ranges overlap often: the interesting cases are at the edges.
        let ra = VersionRange::new(a.0, a.1).unwrap();
        let rb = VersionRange::new(b.0, b.1).unwrap();
        prop_assert_eq!(ra.highest_common(&rb), brute_force(a, b));
    }
}
