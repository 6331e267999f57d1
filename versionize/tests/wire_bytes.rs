//! Fixed byte vectors for every built-in encoding: each test fails when a byte changes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::marker::PhantomData;
use std::num::Wrapping;
use std::sync::Arc;

use versionize::{VersionMap, Versionize, VersionizeError};

fn encode<T: Versionize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value
        .serialize(&mut out, &VersionMap::new(), 1)
        .expect("encode");
    out
}

fn decode<T: Versionize>(bytes: &[u8]) -> Result<T, VersionizeError> {
    let mut reader = bytes;
    let value = T::deserialize(&mut reader, &VersionMap::new(), 1)?;
    assert!(reader.is_empty(), "decoder left {} bytes", reader.len());
    Ok(value)
}

#[track_caller]
fn check<T: Versionize + PartialEq + Debug>(value: T, expected: &[u8]) {
    assert_eq!(encode(&value), expected, "encoding of {value:?}");
    assert_eq!(decode::<T>(expected).expect("decode"), value);
}

#[test]
fn test_wire_unsigned_integers() {
    check(0xABu8, &[0xAB]);
    check(0x1234u16, &[0x34, 0x12]);
    check(0x1234_5678u32, &[0x78, 0x56, 0x34, 0x12]);
    check(0x0102_0304_0506_0708u64, &[8, 7, 6, 5, 4, 3, 2, 1]);
    check(
        0x0102_0304_0506_0708_090A_0B0C_0D0E_0F10u128,
        &[16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1],
    );
    check(0x0102_0304usize, &[4, 3, 2, 1, 0, 0, 0, 0]);
}

#[test]
fn test_wire_signed_integers() {
    check(-1i8, &[0xFF]);
    check(-2i16, &[0xFE, 0xFF]);
    check(-3i32, &[0xFD, 0xFF, 0xFF, 0xFF]);
    check(i64::MIN, &[0, 0, 0, 0, 0, 0, 0, 0x80]);
    check(-1i128, &[0xFF; 16]);
    check(-5isize, &[0xFB, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
}

#[test]
fn test_wire_floats() {
    check(1.0f32, &[0, 0, 0x80, 0x3F]);
    check(-2.5f64, &[0, 0, 0, 0, 0, 0, 0x04, 0xC0]);
}

#[test]
fn test_wire_bool_and_char() {
    check(false, &[0]);
    check(true, &[1]);
    check('a', b"a");
    check('é', &[0xC3, 0xA9]);
    check('€', &[0xE2, 0x82, 0xAC]);
    check('🦀', &[0xF0, 0x9F, 0xA6, 0x80]);
}

#[test]
fn test_wire_bool_rejects_other_bytes() {
    for byte in 2..=255u8 {
        assert!(matches!(
            decode::<bool>(&[byte]),
            Err(VersionizeError::InvalidBool(b)) if b == byte
        ));
    }
}

#[test]
fn test_wire_char_rejects_invalid_utf8() {
    for bad in [
        &[0x80u8][..],
        &[0xC0, 0x80],
        &[0xED, 0xA0, 0x80],
        &[0xF5, 0x80, 0x80, 0x80],
        &[0xFF],
    ] {
        assert!(matches!(
            decode::<char>(bad),
            Err(VersionizeError::InvalidUtf8 { what: "char" })
        ));
    }
}

#[test]
fn test_wire_string() {
    check(String::new(), &[0, 0, 0, 0, 0, 0, 0, 0]);
    check("hi".to_owned(), &[2, 0, 0, 0, 0, 0, 0, 0, b'h', b'i']);
    assert!(matches!(
        decode::<String>(&[2, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFE]),
        Err(VersionizeError::InvalidUtf8 { what: "String" })
    ));
}

#[test]
fn test_wire_sequences() {
    check(vec![1u16, 2], &[2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 0]);
    check(Vec::<u64>::new(), &[0; 8]);
    check(
        VecDeque::from(vec![7u8, 8, 9]),
        &[3, 0, 0, 0, 0, 0, 0, 0, 7, 8, 9],
    );
    check([1u32, 2], &[1, 0, 0, 0, 2, 0, 0, 0]);
    check([true, false, true], &[1, 0, 1]);
    check(
        vec!["a".to_owned()],
        &[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, b'a'],
    );
}

#[test]
fn test_wire_large_arrays() {
    let mut array = [0u8; 4096];
    for (i, byte) in array.iter_mut().enumerate() {
        *byte = (i % 251) as u8;
    }
    check(array, &array.clone());
    let words: [u64; 600] = std::array::from_fn(|i| (i as u64) << 32 | 0xAA);
    let expected: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    check(words, &expected);
}

#[test]
fn test_wire_option_and_wrappers() {
    check(None::<u8>, &[0]);
    check(Some(0x0102u16), &[1, 2, 1]);
    assert!(matches!(
        decode::<Option<u8>>(&[2, 0]),
        Err(VersionizeError::InvalidOptionTag(2))
    ));
    check(Box::new(5u32), &[5, 0, 0, 0]);
    check(Arc::new(6u16), &[6, 0]);
    check(Wrapping(7u8), &[7]);
    check((), &[]);
    check(PhantomData::<String>, &[]);
}

#[test]
fn test_wire_tuples() {
    check((1u8,), &[1]);
    check((1u8, 2u16, true), &[1, 2, 0, 1]);
    check(
        (
            1u8, 2u8, 3u8, 4u8, 5u8, 6u8, 7u8, 8u8, 9u8, 10u8, 11u8, 12u8,
        ),
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
    );
}

#[test]
fn test_wire_maps_and_sets() {
    let mut map = BTreeMap::new();
    map.insert(2u8, 20u16);
    map.insert(1u8, 10u16);
    check(map, &[2, 0, 0, 0, 0, 0, 0, 0, 1, 10, 0, 2, 20, 0]);
    let set: BTreeSet<u8> = [3, 1].into_iter().collect();
    check(set, &[2, 0, 0, 0, 0, 0, 0, 0, 1, 3]);
    let mut hash_map = HashMap::new();
    hash_map.insert(9u8, 90u8);
    check(hash_map, &[1, 0, 0, 0, 0, 0, 0, 0, 9, 90]);
    let hash_set: HashSet<u32> = [4].into_iter().collect();
    check(hash_set, &[1, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0]);
}

#[test]
fn test_wire_truncated_input_is_an_io_error() {
    let bytes = encode(&vec![1u32, 2, 3]);
    for len in 0..bytes.len() {
        let err = decode::<Vec<u32>>(&bytes[..len]).expect_err("truncated");
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::UnexpectedEof),
            "len {len}"
        );
    }
}

#[test]
fn test_wire_zero_sized_elements() {
    check(vec![(); 3], &[3, 0, 0, 0, 0, 0, 0, 0]);
    check(vec![PhantomData::<u64>; 2], &[2, 0, 0, 0, 0, 0, 0, 0]);
}
