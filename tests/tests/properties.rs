//! Property tests of hostile input, run in CI with bounded case counts; the same checks the
//! fuzz targets run (`fuzz/src/oracle.rs`, compiled in here):
//!
//! - arbitrary bytes decoded as every fuzzed derived type at every app version (and the
//!   invalid ones on either side) give a value or an error, never a panic;
//! - bytes that decode are written back identically, decode again to the same bytes, and
//!   survive every other app version; arbitrary values round-trip at every app version;
//! - encodings of arbitrary values with bytes changed, inserted or removed never panic;
//! - arbitrary bytes and corrupted snapshots loaded as `MicrovmState` never panic;
//! - every input under `fuzz/regressions/` (crashes found by fuzzing) passes its check.
//!
//! The allocation bound has its own test binary (`properties_alloc.rs`) because it needs a
//! counting global allocator.

use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use proptest::prelude::*;
use versionize::{VersionMap, Versionize};

#[path = "../../fuzz/src/oracle.rs"]
mod oracle;
// The fuzz crate's public entry point, private in this test crate.
#[allow(unreachable_pub)]
#[path = "../../fuzz/src/restore_checks.rs"]
mod restore_checks;

use oracle::{Device, Irq, Machine, Memory, Tree, Wrapper, TYPE_COUNT};

/// Cases per property: enough to matter, few enough that this file runs in seconds in a debug
/// build. libFuzzer does the long runs (`docs/SECURITY.md`).
const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Prefixes `body` with a type selector and an app version, as the fuzz targets read it.
fn input(selector: u8, app_version: u16, body: &[u8]) -> Vec<u8> {
    let mut data = vec![selector, u8::try_from(app_version).unwrap()];
    data.extend_from_slice(body);
    data
}

/// Every (selector, app version) pair the oracle can pick, the invalid versions included.
fn every_type_and_version() -> impl Iterator<Item = (u8, u16)> {
    let latest = oracle::type_map().latest_version();
    (0..TYPE_COUNT).flat_map(move |selector| (0..=latest + 1).map(move |v| (selector, v)))
}

/// Bytes that look like encoded state more often than uniform noise does: length prefixes
/// around the interesting limits, small variant indexes and option tags, and raw bytes.
fn structured_bytes() -> impl Strategy<Value = Vec<u8>> {
    let chunk = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..16),
        prop_oneof![
            Just(0u64),
            Just(1),
            0u64..64,
            Just(1 << 20),
            Just(10 << 20),
            Just((10 << 20) + 1),
            Just(u64::from(u32::MAX)),
            Just(u64::MAX),
            any::<u64>(),
        ]
        .prop_map(|len| len.to_le_bytes().to_vec()),
        (0u32..5).prop_map(|index| index.to_le_bytes().to_vec()),
        Just(vec![1u8]),
    ];
    prop::collection::vec(chunk, 0..24).prop_map(|chunks| chunks.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn test_properties_arbitrary_bytes_decode_without_panic(
        body in prop_oneof![prop::collection::vec(any::<u8>(), 0..512), structured_bytes()]
    ) {
        for (selector, app_version) in every_type_and_version() {
            oracle::decode_types(&input(selector, app_version, &body));
        }
    }

    #[test]
    fn test_properties_decoded_bytes_round_trip(
        body in prop_oneof![prop::collection::vec(any::<u8>(), 0..512), structured_bytes()]
    ) {
        for (selector, app_version) in every_type_and_version() {
            oracle::roundtrip(&input(selector, app_version, &body));
        }
    }

    #[test]
    fn test_properties_corrupted_encodings_decode_without_panic(
        seed in prop::collection::vec(any::<u8>(), 0..1024),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
    ) {
        let map = oracle::type_map();
        for selector in 0..TYPE_COUNT {
            for app_version in 1..=map.latest_version() {
                let Some(bytes) = encode_arbitrary(selector, &seed, &map, app_version) else {
                    continue;
                };
                let corrupted = apply_edits(&bytes, &edits);
                oracle::decode_types(&input(selector, app_version, &corrupted));
            }
        }
    }

    #[test]
    fn test_properties_arbitrary_bytes_load_as_microvm_snapshot(
        body in prop::collection::vec(any::<u8>(), 0..1024)
    ) {
        snapshot_load(&body);
    }

    #[test]
    fn test_properties_corrupted_microvm_snapshots_load_without_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
    ) {
        let bytes = small_microvm_snapshot();
        // Without the CRC trailer: `snapshot_load` checks it as given and re-sealed.
        let body = &bytes[..bytes.len() - 8];
        snapshot_load(&apply_edits(body, &edits));
    }
}

/// Encodes an arbitrary value of the type `selector` picks, built from `seed`.
fn encode_arbitrary(
    selector: u8,
    seed: &[u8],
    map: &VersionMap,
    app_version: u16,
) -> Option<Vec<u8>> {
    fn encode<'a, T: Versionize + Arbitrary<'a>>(
        seed: &'a [u8],
        map: &VersionMap,
        app_version: u16,
    ) -> Option<Vec<u8>> {
        let value = T::arbitrary(&mut Unstructured::new(seed)).ok()?;
        let mut bytes = Vec::new();
        value.serialize(&mut bytes, map, app_version).ok()?;
        Some(bytes)
    }
    match selector {
        0 => encode::<Device>(seed, map, app_version),
        1 => encode::<Irq>(seed, map, app_version),
        2 => encode::<Memory>(seed, map, app_version),
        3 => encode::<Machine>(seed, map, app_version),
        4 => encode::<Tree>(seed, map, app_version),
        _ => encode::<Wrapper<Vec<String>>>(seed, map, app_version),
    }
}

/// Applies edits to a copy of `bytes`: 0 sets a byte, 1 flips a bit, 2 inserts a byte, 3
/// removes one.
fn apply_edits(bytes: &[u8], edits: &[(prop::sample::Index, u8, u8)]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (index, value, kind) in edits {
        if out.is_empty() {
            out.push(*value);
            continue;
        }
        let at = index.index(out.len());
        match kind {
            0 => out[at] = *value,
            1 => out[at] ^= 1 << (value % 8),
            2 => out.insert(at, *value),
            _ => {
                out.remove(at);
            }
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
fn snapshot_load(data: &[u8]) {
    oracle::snapshot_load(data);
}

#[cfg(not(target_arch = "x86_64"))]
fn snapshot_load(_: &[u8]) {}

/// A small but complete `MicrovmState` snapshot: one vCPU with a CPUID table, MSRs, an xsave
/// area and a LAPIC page; a UART; a 256-byte memory region.
#[cfg(target_arch = "x86_64")]
fn small_microvm_snapshot() -> Vec<u8> {
    use kvm_state::{
        Cpuid, CpuidEntry, DevicesState, Lapic, MemoryRegionState, MicrovmState, MsrEntry, Msrs,
        SerialState, VcpuState, Xsave, CURRENT_APP_VERSION,
    };
    let state = MicrovmState {
        vcpus: vec![VcpuState {
            cpuid: Cpuid {
                entries: (0..4)
                    .map(|function| CpuidEntry {
                        function,
                        eax: 0x1234_5678,
                        ..Default::default()
                    })
                    .collect(),
            },
            xsave: Xsave {
                region: vec![0x5555_aaaa; 64],
                extra: vec![7; 4],
            },
            lapic: Lapic {
                regs: vec![0x42; 64],
            },
            msrs: Msrs {
                entries: vec![
                    MsrEntry {
                        index: 0x10,
                        data: 99,
                    };
                    3
                ],
            },
            tsc_khz: Some(2_500_000),
            ..Default::default()
        }],
        devices: DevicesState {
            serial: vec![SerialState {
                in_buffer: b"ok".to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        },
        memory: vec![MemoryRegionState::with_contents(0x1000, vec![0xa5; 256])],
        ..Default::default()
    };
    state.to_snapshot_bytes(CURRENT_APP_VERSION).unwrap()
}

#[cfg(not(target_arch = "x86_64"))]
fn small_microvm_snapshot() -> Vec<u8> {
    vec![0; 8]
}

/// Every input under `fuzz/regressions/<target>/` still passes the check of `<target>`.
#[test]
fn test_properties_fuzz_regressions_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    let mut replayed = 0;
    for (target, check) in [
        ("decode_types", oracle::decode_types as fn(&[u8])),
        ("roundtrip", oracle::roundtrip),
        ("snapshot_load", snapshot_load),
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            if !path.is_file() || path.extension().is_some_and(|ext| ext == "md") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            check(&data);
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} fuzz regression inputs");
}

/// Writes seed inputs for the fuzz targets to `fuzz/corpus/<target>/` (valid encodings of
/// every type at every app version, and valid `MicrovmState` snapshots), from which libFuzzer
/// reaches deep states sooner. Run by hand:
/// `cargo test -p integration-tests --test properties -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes files: run by hand before fuzzing"]
fn write_fuzz_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let map = oracle::type_map();
    let pattern: Vec<u8> = (0..=255u8).cycle().skip(3).take(2048).collect();
    for target in ["decode_types", "roundtrip"] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for selector in 0..TYPE_COUNT {
            for app_version in 1..=map.latest_version() {
                for (n, seed) in [&pattern[..64], &pattern[..], &pattern[7..900]]
                    .into_iter()
                    .enumerate()
                {
                    if let Some(bytes) = encode_arbitrary(selector, seed, &map, app_version) {
                        let name = format!("seed-{selector}-v{app_version}-{n}");
                        std::fs::write(dir.join(name), input(selector, app_version, &bytes))
                            .unwrap();
                    }
                }
            }
        }
    }
    let dir = root.join("snapshot_load");
    std::fs::create_dir_all(&dir).unwrap();
    let snapshot = small_microvm_snapshot();
    std::fs::write(dir.join("seed-full"), &snapshot).unwrap();
    // Without its CRC: the target re-seals it and the decoders see a valid state.
    std::fs::write(dir.join("seed-body"), &snapshot[..snapshot.len() - 8]).unwrap();
}

/// The committed seeds of the `restore_checks` fuzz target decode at their app version and
/// pass the checks (so that the fuzzer starts from states that reach every check), and the
/// target's consistency property holds on them and on every truncation of one of them.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_properties_restore_checks_seeds() {
    use kvm_state::{check_state, version_map, MicrovmState};
    use versionize::Versionize;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/restore_checks");
    let map = version_map();
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let app_version = u16::from(data[0]) % map.latest_version() + 1;
        let state = MicrovmState::deserialize(&mut &data[1..], &map, app_version)
            .unwrap_or_else(|error| panic!("seed does not decode: {error}"));
        check_state(&state).unwrap();
        restore_checks::restore_checks(&data);
        seeds += 1;
    }
    assert!(seeds >= 3, "{seeds} seeds");
    let data = std::fs::read(dir.join("state-v3")).unwrap();
    for len in (0..data.len()).step_by(97) {
        restore_checks::restore_checks(&data[..len]);
    }
}

/// Writes the seeds of the `restore_checks` fuzz target into `fuzz/seeds/restore_checks/`:
/// the app version selector and an encoded `MicrovmState` that passes `check_state` (kernel-
/// sized LAPIC page and xsave area, two vCPUs with their own APIC ids, two memory regions), at
/// every app version.
///
/// `cargo test -p integration-tests --test properties -- --ignored write_restore_checks_seeds`.
#[cfg(target_arch = "x86_64")]
#[test]
#[ignore = "writes files: run by hand before fuzzing"]
fn write_restore_checks_seeds() {
    use kvm_state::{
        check_state, version_map, Lapic, MemoryRegionState, MicrovmState, VcpuState, Xsave,
        LAPIC_REGS_SIZE,
    };
    use versionize::Versionize;

    let mut state = MicrovmState {
        memory: vec![
            MemoryRegionState::with_contents(0, vec![0x5a; 256]),
            MemoryRegionState::with_contents(0x10_0000, vec![0xa5; 256]),
        ],
        ..Default::default()
    };
    for index in 0..2u8 {
        let mut vcpu = VcpuState {
            xsave: Xsave {
                region: vec![0; 1024],
                extra: Vec::new(),
            },
            lapic: Lapic {
                regs: vec![0; LAPIC_REGS_SIZE],
            },
            ..Default::default()
        };
        vcpu.cpuid = small_cpuid();
        // Each vCPU its own xAPIC id (register 0x20, bits 31:24), as `check_state` requires.
        vcpu.lapic.regs[0x23] = index;
        state.vcpus.push(vcpu);
    }
    check_state(&state).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/restore_checks");
    std::fs::create_dir_all(&dir).unwrap();
    let map = version_map();
    for app_version in 1..=map.latest_version() {
        let mut bytes = vec![u8::try_from(app_version - 1).unwrap()];
        state.serialize(&mut bytes, &map, app_version).unwrap();
        std::fs::write(dir.join(format!("state-v{app_version}")), bytes).unwrap();
    }
}

#[cfg(target_arch = "x86_64")]
fn small_cpuid() -> kvm_state::Cpuid {
    kvm_state::Cpuid {
        entries: (0..4)
            .map(|function| kvm_state::CpuidEntry {
                function,
                eax: 0x1234_5678,
                ..Default::default()
            })
            .collect(),
    }
}

/// Regression (found while writing the allocation properties): the decode budget is shared
/// by one top-level decode only when the top-level type opens a decode scope. Tuples and
/// arrays of non-numbers did not, so each of their elements started a fresh budget:
/// `(Vec<u8>, Vec<u8>)` under a 1000-byte budget decoded two 600-byte vectors. (`Option`,
/// `Arc` and `Wrapping` hold one value, whose own scope is the top-level one.)
#[test]
fn test_properties_budget_spans_top_level_tuples_and_arrays() {
    use versionize::{Limits, VersionizeError};

    let map = VersionMap::new().with_limits(Limits::default().with_budget(1000));
    let pair = (vec![7u8; 600], vec![8u8; 600]);
    let mut bytes = Vec::new();
    pair.serialize(&mut bytes, &map, 1).unwrap();
    let err = <(Vec<u8>, Vec<u8>)>::deserialize(&mut bytes.as_slice(), &map, 1).unwrap_err();
    assert!(
        matches!(
            err.root(),
            VersionizeError::BudgetExceeded { budget: 1000, .. }
        ),
        "{err}"
    );

    let array = [vec![1u8; 600], vec![2u8; 600]];
    bytes.clear();
    array.serialize(&mut bytes, &map, 1).unwrap();
    let err = <[Vec<u8>; 2]>::deserialize(&mut bytes.as_slice(), &map, 1).unwrap_err();
    assert!(
        matches!(
            err.root(),
            VersionizeError::BudgetExceeded { budget: 1000, .. }
        ),
        "{err}"
    );
}
