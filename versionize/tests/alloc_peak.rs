//! Peak allocation of a decode stays within 1.25 × the decode budget plus a small constant,
//! for every built-in container and pointer, nested too, on inputs built to allocate the most
//! per input byte (small encodings of large in-memory values).
//!
//! Measured with `cap`'s counting global allocator. Its peak cannot be reset, so this binary
//! has a single test: every input is built (into exactly sized buffers) before the first
//! measurement and kept to the end, so the bytes allocated outside a decode stay the same, and
//! `max_allocated() - allocated()` taken around a decode bounds that decode's peak from above.

use std::alloc::System;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use cap::Cap;
use versionize::limits::DEFAULT_BUDGET;
use versionize::prelude::*;
use versionize::Limits;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// A value whose common variant encodes in 4 bytes and whose size is 4 KiB: each boxed one
/// allocates a thousand times its encoding.
#[derive(Debug, Clone, PartialEq, Versionize)]
#[allow(
    clippy::large_enum_variant,
    reason = "the point: a small encoding of a large value"
)]
enum Slot {
    Empty,
    Page([u8; 4096]),
}

/// The small budget most cases decode under.
const SMALL: u64 = 64 * 1024;

/// Bytes a decode may allocate beyond 1.25 × its budget: the error value, the first
/// reservations of the outermost collections.
const SLACK: usize = 16 * 1024;

fn allowance(budget: u64) -> usize {
    usize::try_from(budget + budget / 4).unwrap() + SLACK
}

/// Decodes an input as one type; returns the result and the most bytes sampled allocated.
type Decode = fn(&[u8], &VersionMap) -> (Result<(), VersionizeError>, usize);

/// One input for one type.
struct Case {
    name: String,
    budget: u64,
    bytes: Vec<u8>,
    decode: Decode,
}

/// A reader that samples the bytes allocated at every read: between reads a decoder does
/// little but allocate what it is about to fill, so the largest sample (and one taken when
/// the decode returns) is close to the decode's true peak, which `max_allocated` bounds.
struct Sampling<'a> {
    bytes: &'a [u8],
    most: usize,
}

impl std::io::Read for Sampling<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.most = self.most.max(ALLOCATOR.allocated());
        self.bytes.read(buf)
    }
}

/// Decodes `bytes` as `T`; returns the result and the most bytes sampled as allocated.
fn decode_as<T: Versionize>(
    bytes: &[u8],
    map: &VersionMap,
) -> (Result<(), VersionizeError>, usize) {
    let mut reader = Sampling { bytes, most: 0 };
    let result = T::deserialize(&mut reader, map, 1);
    let most = reader.most.max(ALLOCATOR.allocated());
    (result.map(drop), most)
}

/// `count` as a length prefix, then `count` elements made by `element(index)`, written into
/// a buffer of exactly the right size (no growth, so building leaves no peak behind).
fn counted(count: usize, element_len: usize, element: impl Fn(usize, &mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + count * element_len);
    bytes.extend_from_slice(&(count as u64).to_le_bytes());
    for index in 0..count {
        element(index, &mut bytes);
    }
    assert_eq!(bytes.len(), bytes.capacity(), "element length");
    bytes
}

const EMPTY_SLOT: [u8; 4] = [0; 4];

macro_rules! cases {
    ($cases:ident, $budget:expr, $counts:expr; $($ty:ty => $len:expr, $element:expr;)*) => {$(
        for count in $counts {
            $cases.push(Case {
                name: format!("{} × {count}", stringify!($ty)),
                budget: $budget,
                bytes: counted(count, $len, $element),
                decode: decode_as::<$ty>,
            });
        }
    )*};
}

fn small_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // 4,096 and 16,384: the counts the budget allowed when it charged 16 and 4 bytes an entry.
    let counts = [1usize, 10, 100, 1_000, 4_096, 16_384];
    let slot = |_: usize, out: &mut Vec<u8>| out.extend_from_slice(&EMPTY_SLOT);
    cases! { cases, SMALL, counts;
        Vec<Box<Slot>> => 4, slot;
        Vec<Arc<Slot>> => 4, slot;
        Vec<Rc<Slot>> => 4, slot;
        VecDeque<Box<Slot>> => 4, slot;
        Box<Vec<Box<Slot>>> => 4, slot;
        Vec<Option<Box<Slot>>> => 5, |_, out| { out.push(1); out.extend_from_slice(&EMPTY_SLOT) };
        Vec<Vec<Box<Slot>>> => 12, |_, out| { out.extend_from_slice(&1u64.to_le_bytes()); out.extend_from_slice(&EMPTY_SLOT) };
        Vec<[Box<Slot>; 4]> => 16, |_, out| out.extend_from_slice(&[0; 16]);
        Vec<(u8, Box<Slot>)> => 5, |_, out| out.extend_from_slice(&[0; 5]);
        Vec<Vec<u8>> => 8, |_, out| out.extend_from_slice(&[0; 8]);
        Vec<String> => 8, |_, out| out.extend_from_slice(&[0; 8]);
        Vec<Vec<()>> => 8, |_, out| out.extend_from_slice(&[0; 8]);
        HashSet<u32> => 4, |i, out| out.extend_from_slice(&(i as u32).to_le_bytes());
        HashMap<u64, u64> => 16, |i, out| { out.extend_from_slice(&(i as u64).to_le_bytes()); out.extend_from_slice(&[0; 8]) };
        HashMap<u32, Box<Slot>> => 8, |i, out| { out.extend_from_slice(&(i as u32).to_le_bytes()); out.extend_from_slice(&EMPTY_SLOT) };
        BTreeMap<u64, u64> => 16, |i, out| { out.extend_from_slice(&(i as u64).to_le_bytes()); out.extend_from_slice(&[0; 8]) };
        // Descending keys: inserted out of order.
        BTreeMap<u32, Vec<u8>> => 12, |i, out| { out.extend_from_slice(&(u32::MAX - i as u32).to_le_bytes()); out.extend_from_slice(&[0; 8]) };
        BTreeSet<u32> => 4, |i, out| out.extend_from_slice(&(i as u32).to_le_bytes());
        BTreeSet<u8> => 1, |i, out| out.push(i as u8);
        Vec<HashSet<u8>> => 9, |_, out| { out.extend_from_slice(&1u64.to_le_bytes()); out.push(7) };
        Vec<BTreeMap<u8, u8>> => 10, |_, out| { out.extend_from_slice(&1u64.to_le_bytes()); out.extend_from_slice(&[1, 2]) };
        Vec<Box<Vec<u64>>> => 16, |_, out| { out.extend_from_slice(&1u64.to_le_bytes()); out.extend_from_slice(&[0; 8]) };
        Vec<u64> => 8, |_, out| out.extend_from_slice(&[0; 8]);
        Vec<u8> => 1, |_, out| out.push(0);
    }
    cases
}

fn default_budget_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let slot = |_: usize, out: &mut Vec<u8>| out.extend_from_slice(&EMPTY_SLOT);
    cases! { cases, DEFAULT_BUDGET, [1_000usize, 1 << 20];
        Vec<Box<Slot>> => 4, slot;
    }
    cases! { cases, DEFAULT_BUDGET, [700_000usize, 1 << 20];
        HashSet<u32> => 4, |i, out| out.extend_from_slice(&(i as u32).to_le_bytes());
    }
    cases! { cases, DEFAULT_BUDGET, [200_000usize, 400_000];
        BTreeMap<u64, u64> => 16, |i, out| { out.extend_from_slice(&(i as u64).to_le_bytes()); out.extend_from_slice(&[0; 8]) };
    }
    cases! { cases, DEFAULT_BUDGET, [(10 << 20) - 64];
        Vec<u8> => 1, |_, out| out.push(0);
    }
    cases! { cases, DEFAULT_BUDGET, [(10 << 20) / 8];
        Vec<u64> => 8, |_, out| out.extend_from_slice(&[0; 8]);
    }
    cases
}

#[test]
fn test_alloc_peak_within_budget_for_every_container_and_pointer() {
    let mut cases = small_cases();
    cases.extend(default_budget_cases());
    let maps: Vec<VersionMap> = [SMALL, DEFAULT_BUDGET]
        .iter()
        .map(|&budget| VersionMap::new().with_limits(Limits::default().with_budget(budget)))
        .collect();
    let mut results: Vec<(usize, usize, bool)> = Vec::with_capacity(cases.len());
    for case in &cases {
        let map = if case.budget == SMALL {
            &maps[0]
        } else {
            &maps[1]
        };
        let before = ALLOCATOR.allocated();
        let (result, sampled) = (case.decode)(&case.bytes, map);
        let bound = ALLOCATOR.max_allocated().saturating_sub(before);
        let sampled = sampled.saturating_sub(before);
        let refused = match result {
            Ok(()) => false,
            Err(err) => {
                assert!(
                    matches!(err.root(), VersionizeError::BudgetExceeded { .. }),
                    "{}: {err}",
                    case.name
                );
                true
            }
        };
        results.push((sampled, bound, refused));
    }
    let mut worst = 0.0f64;
    for (case, (sampled, bound, refused)) in cases.iter().zip(&results) {
        let multiple = *sampled as f64 / case.budget as f64;
        println!(
            "{:<30} {:>8} input bytes: peak {sampled:>9} ({multiple:.3} × budget){}",
            case.name,
            case.bytes.len(),
            if *refused { ", refused" } else { "" }
        );
        worst = worst.max(multiple);
        assert!(
            *bound <= allowance(case.budget),
            "{}: peak of at most {bound} bytes (sampled {sampled}) above {} for a budget of {}",
            case.name,
            allowance(case.budget),
            case.budget
        );
    }
    println!("worst sampled peak: {worst:.3} × budget");
}
