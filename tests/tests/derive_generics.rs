//! `#[derive(Versionize)]` on generic types: type parameters get `Versionize + 'static`
//! bounds, each instantiation is its own entry in the `VersionMap`, and the user's own
//! bounds and where clauses are kept.

use std::fmt::Debug;
use std::marker::PhantomData;

use integration_tests::{round_trip, round_trip_lossless, to_bytes};
use versionize::{prelude::Versionize, VersionMap, VersionizeResult};

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Wrapper<T> {
    value: T,
    #[version(start = 2)]
    history: Vec<T>,
}

/// An absent field of type `T` without `default_fn` adds `T: Default`; a `ser_fn` adds
/// `Self: Clone`; the user's `T: Debug` and where clause stay.
#[derive(Clone, Debug, PartialEq, Versionize)]
struct Slot<T: Debug, U>
where
    U: Copy,
{
    #[version(start = 2, ser_fn = "fold")]
    item: T,
    count: U,
}

impl<T: Debug + Versionize + 'static, U: Copy> Slot<T, U> {
    fn fold(&mut self, _: u16) -> VersionizeResult<()> {
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Versionize)]
enum Either<L, R> {
    Left(L),
    Right { value: R },
}

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Buffer<const N: usize> {
    bytes: [u8; N],
}

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Tagged<T: 'static>(u8, PhantomData<T>);

#[test]
fn test_derive_generic_instantiations_are_versioned_separately() {
    let mut map = VersionMap::new();
    map.new_version()
        .set_type_version(Wrapper::<u8>::type_id(), 2);
    assert_ne!(Wrapper::<u8>::type_id(), Wrapper::<u16>::type_id());

    let small = Wrapper {
        value: 1u8,
        history: vec![2, 3],
    };
    let bytes = round_trip(&small, &map, |app_version| match app_version {
        1 => Wrapper {
            value: 1,
            history: Vec::new(),
        },
        _ => small.clone(),
    });
    assert_eq!(bytes, [vec![1], vec![1, 2, 0, 0, 0, 0, 0, 0, 0, 2, 3]]);

    // Wrapper<u16> was never mapped: version 1 at every app version.
    let wide = Wrapper {
        value: 0x0102u16,
        history: vec![3],
    };
    assert_eq!(to_bytes(&wide, &map, 2), [2, 1]);
}

#[test]
fn test_derive_generic_bounds_from_fields_and_hooks() {
    let mut map = VersionMap::new();
    map.new_version()
        .set_type_version(Slot::<String, u8>::type_id(), 2);
    let slot = Slot {
        item: "x".to_owned(),
        count: 4u8,
    };
    let bytes = round_trip(&slot, &map, |app_version| match app_version {
        1 => Slot {
            item: String::new(),
            count: 4,
        },
        _ => slot.clone(),
    });
    assert_eq!(bytes[0], [4]);
}

#[test]
fn test_derive_generic_enum_const_generic_and_phantom() {
    let map = VersionMap::new();
    let left: Either<u8, String> = Either::Left(7);
    let right: Either<u8, String> = Either::Right {
        value: "r".to_owned(),
    };
    assert_eq!(round_trip_lossless(&left, &map), [vec![0, 0, 0, 0, 7]]);
    assert_eq!(
        round_trip_lossless(&right, &map),
        [vec![1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, b'r']]
    );

    let buffer = Buffer { bytes: [1, 2, 3] };
    assert_eq!(round_trip_lossless(&buffer, &map), [vec![1, 2, 3]]);

    let tagged: Tagged<Vec<u64>> = Tagged(9, PhantomData);
    assert_eq!(round_trip_lossless(&tagged, &map), [vec![9]]);
}
