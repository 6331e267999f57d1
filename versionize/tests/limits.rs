//! Hostile length prefixes: decoding returns an error having allocated almost nothing, the
//! budget holds across a whole top-level decode, and nesting depth is bounded. Allocation is
//! measured with a counting global allocator.

use std::alloc::System;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::io::{Read, Write};
use std::sync::Mutex;

use cap::Cap;
use versionize::{DecodeScope, Limits, VersionMap, Versionize, VersionizeError, VersionizeResult};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The allocator counts for the whole process: every test of this binary holds this lock, so
/// no test allocates while another measures.
static SERIAL: Mutex<()> = Mutex::new(());

/// A 20-byte input: a length prefix followed by 12 bytes of data.
fn hostile(len: u64) -> [u8; 20] {
    let mut input = [0xA5u8; 20];
    input[..8].copy_from_slice(&len.to_le_bytes());
    input
}

/// Decodes `bytes` as `T`, returning the error and the bytes allocated meanwhile.
fn decode_counting<T: Versionize + Debug>(
    bytes: &[u8],
    map: &VersionMap,
) -> (VersionizeError, usize) {
    // The decode's own allocations are the same every time, but the allocator also counts
    // the test harness's threads (printing other tests' results): keep the smallest of a
    // few measurements.
    let mut least = usize::MAX;
    let mut last_err = None;
    for _ in 0..5 {
        let before = ALLOCATOR.total_allocated();
        let result = T::deserialize(&mut &bytes[..], map, 1);
        let allocated = ALLOCATOR.total_allocated() - before;
        least = least.min(allocated);
        last_err = Some(result.expect_err("hostile input must be refused"));
    }
    (last_err.expect("measured at least once"), least)
}

/// Bytes a refused decode may allocate: the error value itself, nothing proportional to
/// the claimed length.
const ALMOST_NOTHING: usize = 1024;

#[test]
fn test_limits_huge_claims_allocate_almost_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let map = VersionMap::new();
    for claim in [1u64 << 60, u64::MAX, 1 << 40, 10_485_761] {
        let input = hostile(claim);
        let checks = [
            ("Vec<u64>", decode_counting::<Vec<u64>>(&input, &map)),
            ("String", decode_counting::<String>(&input, &map)),
            ("Vec<u8>", decode_counting::<Vec<u8>>(&input, &map)),
            ("Vec<()>", decode_counting::<Vec<()>>(&input, &map)),
            ("Vec<String>", decode_counting::<Vec<String>>(&input, &map)),
            (
                "VecDeque<u32>",
                decode_counting::<VecDeque<u32>>(&input, &map),
            ),
            (
                "HashMap<u64, u64>",
                decode_counting::<HashMap<u64, u64>>(&input, &map),
            ),
            ("HashSet<()>", decode_counting::<HashSet<()>>(&input, &map)),
            (
                "BTreeMap<u8, u8>",
                decode_counting::<BTreeMap<u8, u8>>(&input, &map),
            ),
        ];
        for (name, (err, allocated)) in checks {
            assert!(
                matches!(
                    err.root(),
                    VersionizeError::LengthLimit { .. } | VersionizeError::BudgetExceeded { .. }
                ),
                "{name} claim {claim}: {err}"
            );
            assert!(
                allocated < ALMOST_NOTHING,
                "{name} claim {claim}: allocated {allocated} bytes"
            );
        }
    }
}

#[test]
fn test_limits_in_budget_claim_with_short_input_allocates_little() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let map = VersionMap::new();
    // 8 MiB fits the 10 MiB budget, but only 12 bytes follow: the decoder must not reserve
    // the whole claim before the input runs out.
    for (name, (err, allocated)) in [
        (
            "Vec<u8>",
            decode_counting::<Vec<u8>>(&hostile(8 << 20), &map),
        ),
        (
            "Vec<u64>",
            decode_counting::<Vec<u64>>(&hostile(1 << 20), &map),
        ),
        ("String", decode_counting::<String>(&hostile(1 << 20), &map)),
    ] {
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::UnexpectedEof),
            "{name}"
        );
        assert!(
            allocated <= 512 * 1024,
            "{name}: allocated {allocated} bytes"
        );
    }
}

#[test]
fn test_limits_zero_sized_elements_do_not_divide_by_zero_or_spin() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let map = VersionMap::new();
    // Each zero-sized element is charged one byte, so a count above the budget is refused.
    let (err, _) = decode_counting::<Vec<()>>(&hostile(1 << 60), &map);
    assert!(matches!(err.root(), VersionizeError::LengthLimit { .. }));
    let small = VersionMap::new().with_limits(Limits::default().with_budget(1000));
    let (err, _) = decode_counting::<Vec<()>>(&hostile(1001), &small);
    assert!(
        matches!(
            err.root(),
            VersionizeError::BudgetExceeded {
                requested: 1001,
                ..
            }
        ),
        "{err}"
    );
    let ok = Vec::<()>::deserialize(&mut &hostile(1000)[..8], &small, 1).unwrap();
    assert_eq!(ok.len(), 1000);
}

#[test]
fn test_limits_budget_spans_the_whole_top_level_decode() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let map = VersionMap::new().with_limits(Limits::default().with_budget(1000));
    // Two 600-byte vectors: each fits alone, together they exceed the budget.
    let value = vec![vec![7u8; 600], vec![8u8; 600]];
    let mut bytes = Vec::new();
    value.serialize(&mut bytes, &map, 1).unwrap();
    let err = Vec::<Vec<u8>>::deserialize(&mut bytes.as_slice(), &map, 1).unwrap_err();
    assert!(
        matches!(
            err.root(),
            VersionizeError::BudgetExceeded { budget: 1000, .. }
        ),
        "{err}"
    );
    // One of them decodes, and the budget is fresh for the next top-level decode.
    for _ in 0..3 {
        let mut one = Vec::new();
        vec![1u8; 600].serialize(&mut one, &map, 1).unwrap();
        assert_eq!(
            Vec::<u8>::deserialize(&mut one.as_slice(), &map, 1)
                .unwrap()
                .len(),
            600
        );
    }
}

#[test]
fn test_limits_string_and_collection_caps() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let map = VersionMap::new().with_limits(
        Limits::default()
            .with_max_string_len(4)
            .with_max_collection_len(3),
    );
    let mut bytes = Vec::new();
    "hello".to_owned().serialize(&mut bytes, &map, 1).unwrap();
    let err = String::deserialize(&mut bytes.as_slice(), &map, 1).unwrap_err();
    assert!(matches!(
        err.root(),
        VersionizeError::LengthLimit {
            what: "String",
            found: 5,
            limit: 4
        }
    ));
    bytes.clear();
    vec![1u8; 4].serialize(&mut bytes, &map, 1).unwrap();
    let err = Vec::<u8>::deserialize(&mut bytes.as_slice(), &map, 1).unwrap_err();
    assert!(matches!(
        err.root(),
        VersionizeError::LengthLimit {
            what: "collection",
            found: 4,
            limit: 3
        }
    ));
}

/// A recursive type written by hand, as a user would for a linked structure.
#[derive(Debug)]
struct Chain(Option<Box<Chain>>);

impl Versionize for Chain {
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        self.0.serialize(writer, map, v)
    }
    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let _scope = DecodeScope::enter(map.limits())?;
        Ok(Chain(Option::deserialize(reader, map, v)?))
    }
    fn version() -> u16 {
        1
    }
}

#[test]
fn test_limits_nesting_depth_is_bounded() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // 100,000 levels of `Some(Box(...))`: without a depth limit this overflows the stack.
    let input = vec![1u8; 100_000];
    let map = VersionMap::new();
    let err = Chain::deserialize(&mut input.as_slice(), &map, 1).unwrap_err();
    assert!(
        matches!(err.root(), VersionizeError::DepthLimit { limit: 128 }),
        "{err}"
    );
    // Within the limit it decodes.
    let mut shallow = vec![1u8; 20];
    shallow.push(0);
    assert!(Chain::deserialize(&mut shallow.as_slice(), &map, 1).is_ok());
    // The depth counter is restored after an error: a fresh decode works again.
    assert!(Chain::deserialize(&mut shallow.as_slice(), &map, 1).is_ok());
}
