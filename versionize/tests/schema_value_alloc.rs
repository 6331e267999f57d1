//! Schema-driven decoding of hostile bytes allocates within bounds: a huge length prefix is
//! refused having allocated almost nothing, a claim within the budget on a truncated input
//! allocates a bounded first chunk, and a whole decode stays within a small multiple of the
//! budget it was given. Measured with a counting global allocator.

use std::alloc::System;
use std::sync::Mutex;

use cap::Cap;
use versionize::schema::{decode_value, Schema, ValueError};
use versionize::{Limits, VersionizeError};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Every test of this binary holds this lock while it measures.
static SERIAL: Mutex<()> = Mutex::new(());

fn schema(root: &str) -> Schema {
    Schema::from_json(&format!(
        r#"{{"format": 2, "app_version": 1, "root": "{root}", "types": {{
            "a::Entry": {{"name": "a::Entry", "version": 1, "latest_version": 1, "kind": {{"struct": {{"fields": [
                {{"name": "index", "ty": "u32", "start": 1, "end": null, "present": true}},
                {{"name": "data", "ty": "u64", "start": 1, "end": null, "present": true}}]}}}}}}}}}}"#
    ))
    .unwrap()
}

/// Decodes, returning the error and the fewest bytes allocated over a few runs (the
/// allocator also counts the harness's threads).
fn decode_counting(schema: &Schema, bytes: &[u8], limits: &Limits) -> (ValueError, usize) {
    let mut least = usize::MAX;
    let mut error = None;
    for _ in 0..5 {
        let before = ALLOCATOR.total_allocated();
        let result = decode_value(schema, &mut &bytes[..], limits);
        least = least.min(ALLOCATOR.total_allocated() - before);
        error = Some(result.expect_err("hostile input must be refused"));
    }
    (error.expect("measured"), least)
}

/// The compiled schema, the error and its path: nothing proportional to a claimed length.
const ALMOST_NOTHING: usize = 16 * 1024;

#[test]
fn test_schema_value_alloc_huge_claims_allocate_almost_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for root in [
        "Vec<a::Entry>",
        "Vec<u64>",
        "Vec<u8>",
        "String",
        "BTreeMap<u32, a::Entry>",
        "HashSet<String>",
        "Vec<Vec<u8>>",
    ] {
        for claim in [1u64 << 60, u64::MAX, 1 << 40, 10_485_761] {
            let mut input = claim.to_le_bytes().to_vec();
            input.extend_from_slice(&[0xA5; 12]);
            let (error, allocated) = decode_counting(&schema(root), &input, &Limits::default());
            assert!(
                matches!(
                    error,
                    ValueError::Codec {
                        source: VersionizeError::LengthLimit { .. }
                            | VersionizeError::BudgetExceeded { .. },
                        ..
                    }
                ),
                "{root} claiming {claim}: {error:?}"
            );
            assert!(
                allocated < ALMOST_NOTHING,
                "{root} claiming {claim}: {allocated} bytes"
            );
        }
    }
    // Arrays carry their length in the schema, not the input.
    let (error, allocated) = decode_counting(
        &schema("[a::Entry; 1099511627776]"),
        &[0; 16],
        &Limits::default(),
    );
    assert!(
        error.to_string().contains("decode budget exceeded"),
        "{error}"
    );
    assert!(allocated < ALMOST_NOTHING, "{allocated} bytes");
}

#[test]
fn test_schema_value_alloc_truncated_claims_within_budget_allocate_a_bounded_chunk() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // 100 000 entries claimed (within the default budget), 12 bytes present.
    for root in ["Vec<a::Entry>", "Vec<u64>", "Vec<u8>"] {
        let mut input = 100_000u64.to_le_bytes().to_vec();
        input.extend_from_slice(&[0xA5; 12]);
        let (error, allocated) = decode_counting(&schema(root), &input, &Limits::default());
        assert!(matches!(error, ValueError::Truncated { .. }), "{error:?}");
        assert!(allocated < 1 << 20, "{root}: {allocated} bytes");
    }
}

#[test]
fn test_schema_value_alloc_a_whole_decode_stays_near_its_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let budget: u64 = 1 << 20;
    let limits = Limits::default().with_budget(budget);
    let slot = size_of::<versionize::schema::Value>() as u64;
    let entries = |count: u64| {
        let mut input = count.to_le_bytes().to_vec();
        for index in 0..count {
            input.extend_from_slice(&(index as u32).to_le_bytes());
            input.extend_from_slice(&index.to_le_bytes());
        }
        input
    };
    // The element slots fit the budget, the structs' fields do not: refused part way, having
    // allocated a small multiple of the budget.
    let (error, allocated) = decode_counting(
        &schema("Vec<a::Entry>"),
        &entries(budget / slot - 1),
        &limits,
    );
    assert!(
        error.to_string().contains("decode budget exceeded"),
        "{error}"
    );
    assert!(
        allocated < 4 * budget as usize,
        "{allocated} bytes for a budget of {budget}"
    );
    // A decode that fits: also within a small multiple of the budget.
    let input = entries(budget / slot / 8);
    let before = ALLOCATOR.total_allocated();
    let value = decode_value(&schema("Vec<a::Entry>"), &mut input.as_slice(), &limits);
    let allocated = ALLOCATOR.total_allocated() - before;
    assert!(value.is_ok(), "{value:?}");
    assert!(
        allocated < 4 * budget as usize,
        "{allocated} bytes for a budget of {budget}"
    );
}
