//! Allocation stays within the decode budget on arbitrary input: bytes decoded as every fuzzed
//! derived type at every app version, with a small budget and with the default one, and
//! arbitrary bytes loaded as a `MicrovmState` snapshot. Measured with a counting global
//! allocator (`cap`), so in a test binary of its own; the measured sections run one at a time.

use std::alloc::System;
use std::fmt::Debug;
use std::sync::Mutex;

use cap::Cap;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use versionize::limits::DEFAULT_BUDGET;
use versionize::{Limits, VersionMap, Versionize};

#[path = "../../fuzz/src/oracle.rs"]
mod oracle;

use oracle::{Device, Irq, Machine, Memory, Tree, Wrapper, TYPE_COUNT};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The allocator counts for the whole process.
static SERIAL: Mutex<()> = Mutex::new(());

/// The small budget the first property decodes under.
const SMALL_BUDGET: u64 = 64 * 1024;

/// What one decode may allocate in all (every allocation counted, freed or not) for a budget
/// of `budget` bytes: twice the budget (each growth step of a vector is counted whole, so a
/// vector that doubles up to its length counts about twice that length) plus 64 KiB for what
/// the budget does not count (error values, the first reservations). The peak, which the
/// budget bounds to 1.25 × plus 16 KiB, is tested in `versionize/tests/alloc_peak.rs`.
fn allowance(budget: u64) -> usize {
    usize::try_from(2 * budget).unwrap() + 64 * 1024
}

/// Decodes `body` as the type `selector` picks; returns the bytes allocated meanwhile.
fn allocated_by_decode(selector: u8, body: &[u8], map: &VersionMap, app_version: u16) -> usize {
    fn decode<T: Versionize + Debug>(body: &[u8], map: &VersionMap, app_version: u16) -> usize {
        let before = ALLOCATOR.total_allocated();
        let result = T::deserialize(&mut &body[..], map, app_version);
        let allocated = ALLOCATOR.total_allocated() - before;
        drop(result);
        allocated
    }
    match selector {
        0 => decode::<Device>(body, map, app_version),
        1 => decode::<Irq>(body, map, app_version),
        2 => decode::<Memory>(body, map, app_version),
        3 => decode::<Machine>(body, map, app_version),
        4 => decode::<Tree>(body, map, app_version),
        _ => decode::<Wrapper<Vec<String>>>(body, map, app_version),
    }
}

/// Bytes built from length prefixes near the limits, small counts, variant indexes, option
/// tags and noise: what gets past the first length check.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let chunk = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..16),
        prop_oneof![
            0u64..64,
            Just(SMALL_BUDGET / 2),
            Just(SMALL_BUDGET - 1),
            Just(SMALL_BUDGET),
            Just(1 << 20),
            Just(DEFAULT_BUDGET / 2),
            Just(DEFAULT_BUDGET - 1),
            Just(DEFAULT_BUDGET),
            Just(u64::MAX),
            any::<u64>(),
        ]
        .prop_map(|len| len.to_le_bytes().to_vec()),
        (0u32..5).prop_map(|index| index.to_le_bytes().to_vec()),
        Just(vec![1u8]),
        // A run of filler that lets a claimed length be partly honoured.
        (1usize..4096).prop_map(|n| vec![0x31; n]),
    ];
    prop::collection::vec(chunk, 0..32).prop_map(|chunks| chunks.concat())
}

/// Runs `property` on `cases` generated bodies while holding [`SERIAL`] for the whole run:
/// generation allocates too, and the allocator counts every thread, so no other measured
/// test may generate while this one measures.
fn run_serialized(cases: u32, property: impl Fn(Vec<u8>) -> Result<(), TestCaseError>) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    if let Err(failure) = runner.run(&hostile_bytes(), property) {
        panic!("{failure}");
    }
}

#[test]
fn test_properties_alloc_decode_stays_within_budget() {
    run_serialized(128, |body| {
        let small = oracle::type_map().with_limits(Limits::default().with_budget(SMALL_BUDGET));
        let default = oracle::type_map();
        for selector in 0..TYPE_COUNT {
            for app_version in 1..=default.latest_version() {
                let allocated = allocated_by_decode(selector, &body, &small, app_version);
                prop_assert!(
                    allocated <= allowance(SMALL_BUDGET),
                    "type {} at app version {app_version}: {allocated} bytes with a budget of {SMALL_BUDGET}",
                    oracle::TYPE_NAMES[usize::from(selector)]
                );
                let allocated = allocated_by_decode(selector, &body, &default, app_version);
                // With the default budget a few hundred input bytes can legitimately make the
                // decoder reserve megabytes (nested collections each claiming a length it
                // charges before reading): never more than the budget.
                prop_assert!(
                    allocated <= allowance(DEFAULT_BUDGET),
                    "type {} at app version {app_version}: {allocated} bytes from {} input bytes",
                    oracle::TYPE_NAMES[usize::from(selector)],
                    body.len()
                );
            }
        }
        Ok(())
    });
}

#[cfg(target_arch = "x86_64")]
#[test]
fn test_properties_alloc_microvm_snapshot_stays_within_budget() {
    use kvm_state::{version_map, MicrovmState};
    use snapshot::Snapshot;
    use versionize::crc::crc64;

    run_serialized(128, |body| {
        // A valid magic and data version, then the hostile state, sealed with its CRC so that
        // the bytes reach the decoders.
        let mut data = Vec::new();
        data.extend_from_slice(&snapshot::magic::build_magic_id(1).to_le_bytes());
        data.extend_from_slice(&kvm_state::CURRENT_APP_VERSION.to_le_bytes());
        data.extend_from_slice(&body);
        data.extend_from_slice(&crc64(&data).to_le_bytes());
        let before = ALLOCATOR.total_allocated();
        let result =
            Snapshot::load::<_, MicrovmState>(&mut data.as_slice(), data.len(), version_map());
        let allocated = ALLOCATOR.total_allocated() - before;
        drop(result);
        // The loader holds the file (read in growing steps), the decoder its budget.
        prop_assert!(
            allocated <= 4 * data.len() + allowance(DEFAULT_BUDGET),
            "{allocated} bytes for a {}-byte snapshot",
            data.len()
        );
        Ok(())
    });
}

/// The worst case the budget allows: nested collections that each claim a length they are
/// charged for before anything is read. A few hundred bytes make the decoder reserve close to
/// the budget, and no more.
#[test]
fn test_properties_alloc_nested_claims_reserve_at_most_the_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Each level of `Tree` (app version 1: label, children): a label, then a child count
    // whose first reservation is the decoder's 256 KiB step.
    let count = (256 * 1024 / size_of::<Tree>()) as u64;
    let mut body = Vec::new();
    for _ in 0..100 {
        body.extend_from_slice(&7u16.to_le_bytes());
        body.extend_from_slice(&count.to_le_bytes());
    }
    let map = oracle::type_map();
    let allocated = allocated_by_decode(4, &body, &map, 1);
    eprintln!(
        "{} input bytes of nested claims: {allocated} bytes allocated (budget {DEFAULT_BUDGET})",
        body.len()
    );
    assert!(allocated <= allowance(DEFAULT_BUDGET), "{allocated}");
    assert!(
        allocated as u64 > DEFAULT_BUDGET / 2,
        "the claims are reserved: {allocated}"
    );
    let err = Tree::deserialize(&mut body.as_slice(), &map, 1).unwrap_err();
    assert!(
        matches!(
            err.root(),
            versionize::VersionizeError::BudgetExceeded { .. }
        ),
        "{err}"
    );
}
