//! Differential test: our bytes equal bincode 2.0.1's `config::legacy()` serde output (the
//! bincode 1 layout versionize 0.2 used) for many generated values of every supported type,
//! and each side decodes the other's bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::marker::PhantomData;
use std::num::Wrapping;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use versionize::{VersionMap, Versionize};

/// SplitMix64: a small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

trait Generate: Sized {
    fn generate(rng: &mut Rng) -> Self;
}

macro_rules! generate_int {
    ($($ty:ty),*) => {$(
        impl Generate for $ty {
            fn generate(rng: &mut Rng) -> Self {
                // Mix edge values in with random ones.
                match rng.below(8) {
                    0 => <$ty>::MIN,
                    1 => <$ty>::MAX,
                    2 => 0 as $ty,
                    _ => (u128::from(rng.next()) << 64 | u128::from(rng.next())) as $ty,
                }
            }
        }
    )*};
}
generate_int!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

impl Generate for f32 {
    fn generate(rng: &mut Rng) -> Self {
        f32::from_bits(rng.next() as u32)
    }
}
impl Generate for f64 {
    fn generate(rng: &mut Rng) -> Self {
        f64::from_bits(rng.next())
    }
}
impl Generate for bool {
    fn generate(rng: &mut Rng) -> Self {
        rng.below(2) == 1
    }
}
impl Generate for char {
    fn generate(rng: &mut Rng) -> Self {
        loop {
            let code = match rng.below(4) {
                0 => rng.below(0x80),
                1 => rng.below(0x800),
                2 => rng.below(0x1_0000),
                _ => rng.below(0x11_0000),
            } as u32;
            if let Some(c) = char::from_u32(code) {
                return c;
            }
        }
    }
}
impl Generate for String {
    fn generate(rng: &mut Rng) -> Self {
        let len = rng.below(12);
        (0..len).map(|_| char::generate(rng)).collect()
    }
}
impl<T: Generate> Generate for Vec<T> {
    fn generate(rng: &mut Rng) -> Self {
        let len = rng.below(10);
        (0..len).map(|_| T::generate(rng)).collect()
    }
}
impl<T: Generate> Generate for VecDeque<T> {
    fn generate(rng: &mut Rng) -> Self {
        let mut deque: VecDeque<T> = Vec::generate(rng).into();
        // Rotate so the ring buffer wraps and both halves are exercised.
        if !deque.is_empty() {
            let n = rng.below(deque.len() as u64) as usize;
            deque.rotate_left(n);
        }
        deque
    }
}
impl<T: Generate, const N: usize> Generate for [T; N] {
    fn generate(rng: &mut Rng) -> Self {
        std::array::from_fn(|_| T::generate(rng))
    }
}
impl<T: Generate> Generate for Option<T> {
    fn generate(rng: &mut Rng) -> Self {
        (rng.below(3) > 0).then(|| T::generate(rng))
    }
}
impl<T: Generate> Generate for Box<T> {
    fn generate(rng: &mut Rng) -> Self {
        Box::new(T::generate(rng))
    }
}
impl<T: Generate> Generate for Arc<T> {
    fn generate(rng: &mut Rng) -> Self {
        Arc::new(T::generate(rng))
    }
}
impl<T: Generate> Generate for Wrapping<T> {
    fn generate(rng: &mut Rng) -> Self {
        Wrapping(T::generate(rng))
    }
}
impl Generate for () {
    fn generate(_: &mut Rng) -> Self {}
}
impl<T> Generate for PhantomData<T> {
    fn generate(_: &mut Rng) -> Self {
        PhantomData
    }
}
impl<K: Generate + Ord, V: Generate> Generate for BTreeMap<K, V> {
    fn generate(rng: &mut Rng) -> Self {
        let len = rng.below(8);
        (0..len)
            .map(|_| (K::generate(rng), V::generate(rng)))
            .collect()
    }
}
impl<T: Generate + Ord> Generate for BTreeSet<T> {
    fn generate(rng: &mut Rng) -> Self {
        let len = rng.below(8);
        (0..len).map(|_| T::generate(rng)).collect()
    }
}
impl<K: Generate + Eq + std::hash::Hash, V: Generate> Generate for HashMap<K, V> {
    fn generate(rng: &mut Rng) -> Self {
        let len = rng.below(8);
        (0..len)
            .map(|_| (K::generate(rng), V::generate(rng)))
            .collect()
    }
}
impl<T: Generate + Eq + std::hash::Hash> Generate for HashSet<T> {
    fn generate(rng: &mut Rng) -> Self {
        let len = rng.below(8);
        (0..len).map(|_| T::generate(rng)).collect()
    }
}
macro_rules! generate_tuple {
    ($($name:ident),+) => {
        impl<$($name: Generate),+> Generate for ($($name,)+) {
            fn generate(rng: &mut Rng) -> Self {
                ($($name::generate(rng),)+)
            }
        }
    };
}
generate_tuple!(A);
generate_tuple!(A, B);
generate_tuple!(A, B, C);
generate_tuple!(A, B, C, D, E, F, G, H, I, J, K, L);

const CASES: usize = 300;

fn ours<T: Versionize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value.serialize(&mut out, &VersionMap::new(), 1).unwrap();
    out
}

fn ours_decode<T: Versionize>(bytes: &[u8]) -> T {
    let mut reader = bytes;
    let value = T::deserialize(&mut reader, &VersionMap::new(), 1).unwrap();
    assert!(reader.is_empty(), "we left {} bytes", reader.len());
    value
}

fn theirs<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::legacy()).unwrap()
}

fn theirs_decode<T: DeserializeOwned>(bytes: &[u8]) -> T {
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, bincode::config::legacy()).unwrap();
    assert_eq!(read, bytes.len(), "bincode left bytes");
    value
}

/// Same bytes both ways, and each side decodes the other's bytes to a value that the other
/// side encodes to the same bytes (this also covers NaN floats, which are not `==`).
fn same_bytes<T>(seed: u64)
where
    T: Generate + Versionize + Serialize + DeserializeOwned + Debug,
{
    let mut rng = Rng(seed);
    for case in 0..CASES {
        let value = T::generate(&mut rng);
        let our_bytes = ours(&value);
        let their_bytes = theirs(&value);
        assert_eq!(our_bytes, their_bytes, "case {case}: {value:?}");
        assert_eq!(
            theirs(&ours_decode::<T>(&their_bytes)),
            their_bytes,
            "case {case}"
        );
        assert_eq!(
            ours(&theirs_decode::<T>(&our_bytes)),
            our_bytes,
            "case {case}"
        );
    }
}

/// For unordered collections the byte order depends on the hasher; compare values.
fn same_values<T>(seed: u64)
where
    T: Generate + Versionize + Serialize + DeserializeOwned + Debug + PartialEq,
{
    let mut rng = Rng(seed);
    for case in 0..CASES {
        let value = T::generate(&mut rng);
        let our_bytes = ours(&value);
        assert_eq!(our_bytes.len(), theirs(&value).len(), "case {case}");
        assert_eq!(theirs_decode::<T>(&our_bytes), value, "case {case}");
        assert_eq!(ours_decode::<T>(&theirs(&value)), value, "case {case}");
    }
}

#[test]
fn test_differential_integers() {
    same_bytes::<u8>(1);
    same_bytes::<u16>(2);
    same_bytes::<u32>(3);
    same_bytes::<u64>(4);
    same_bytes::<u128>(5);
    same_bytes::<usize>(6);
    same_bytes::<i8>(7);
    same_bytes::<i16>(8);
    same_bytes::<i32>(9);
    same_bytes::<i64>(10);
    same_bytes::<i128>(11);
    same_bytes::<isize>(12);
}

#[test]
fn test_differential_floats_bool_char() {
    same_bytes::<f32>(20);
    same_bytes::<f64>(21);
    same_bytes::<bool>(22);
    same_bytes::<char>(23);
}

#[test]
fn test_differential_strings_and_sequences() {
    same_bytes::<String>(30);
    same_bytes::<Vec<u8>>(31);
    same_bytes::<Vec<u64>>(32);
    same_bytes::<Vec<i16>>(33);
    same_bytes::<Vec<String>>(34);
    same_bytes::<Vec<Vec<u32>>>(35);
    same_bytes::<VecDeque<u32>>(36);
    same_bytes::<VecDeque<String>>(37);
    same_bytes::<Vec<f64>>(38);
    same_bytes::<Vec<bool>>(39);
    same_bytes::<Vec<char>>(40);
}

#[test]
fn test_differential_arrays() {
    same_bytes::<[u8; 0]>(50);
    same_bytes::<[u8; 7]>(51);
    same_bytes::<[u32; 16]>(52);
    same_bytes::<[i64; 3]>(53);
    same_bytes::<[String; 2]>(54);
    same_bytes::<[Option<u16>; 4]>(55);
    same_bytes::<[[u8; 3]; 2]>(56);
}

#[test]
fn test_differential_wrappers() {
    same_bytes::<Option<u32>>(60);
    same_bytes::<Option<String>>(61);
    same_bytes::<Option<Option<u8>>>(62);
    same_bytes::<Box<u64>>(63);
    same_bytes::<Arc<String>>(64);
    same_bytes::<Wrapping<u16>>(65);
    same_bytes::<()>(66);
    same_bytes::<PhantomData<u8>>(67);
    same_bytes::<Vec<()>>(68);
}

#[test]
fn test_differential_tuples() {
    same_bytes::<(u8,)>(70);
    same_bytes::<(u16, String)>(71);
    same_bytes::<(bool, char, i64)>(72);
    same_bytes::<(
        u8,
        u16,
        u32,
        u64,
        i8,
        i16,
        i32,
        i64,
        bool,
        char,
        String,
        Vec<u8>,
    )>(73);
}

#[test]
fn test_differential_maps_and_sets() {
    same_bytes::<BTreeMap<u32, String>>(80);
    same_bytes::<BTreeSet<i16>>(81);
    same_bytes::<BTreeMap<String, Vec<u8>>>(82);
    same_values::<HashMap<u16, u64>>(83);
    same_values::<HashSet<String>>(84);
}
