//! `#[derive(Versionize)]` on enums: variant indexes, substitution of variants absent at the
//! target version across three versions, cycles, and unknown indexes.

use std::cell::RefCell;

use integration_tests::{from_bytes, round_trip, round_trip_lossless, to_bytes};
use versionize::{prelude::Versionize, VersionMap, VersionizeError, VersionizeResult};

thread_local! {
    static SUBSTITUTIONS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn take_log() -> Vec<String> {
    SUBSTITUTIONS.with(|log| log.borrow_mut().drain(..).collect())
}

/// Version 1: `None`, `Legacy`.
/// Version 2: adds `Msi` (written as `Legacy` at v1).
/// Version 3: drops `Legacy` (written as `Msi` from v3), adds `Vectors` (written as `Msi`
/// at v2, and so as `Legacy` at v1: two replacements).
#[derive(Clone, Debug, PartialEq, Versionize)]
enum Irq {
    None,
    #[version(end = 3, default_fn = "legacy_up")]
    Legacy(u8),
    #[version(start = 2, default_fn = "msi_down")]
    Msi {
        address: u64,
        data: u32,
    },
    #[version(start = 3, default_fn = "vectors_down")]
    Vectors(Vec<u16>),
}

impl Irq {
    fn legacy_up(&self, version: u16) -> VersionizeResult<Self> {
        SUBSTITUTIONS.with(|log| log.borrow_mut().push(format!("legacy_up(v{version})")));
        match self {
            Irq::Legacy(line) => Ok(Irq::Msi {
                address: 0xFEE0_0000,
                data: u32::from(*line),
            }),
            other => Err(VersionizeError::Semantic(format!("legacy_up on {other:?}"))),
        }
    }

    fn msi_down(&self, version: u16) -> VersionizeResult<Self> {
        SUBSTITUTIONS.with(|log| log.borrow_mut().push(format!("msi_down(v{version})")));
        match self {
            Irq::Msi { data, .. } => u8::try_from(*data)
                .map(Irq::Legacy)
                .map_err(|_| VersionizeError::Semantic("msi data above 255".to_owned())),
            other => Err(VersionizeError::Semantic(format!("msi_down on {other:?}"))),
        }
    }

    fn vectors_down(&self, version: u16) -> VersionizeResult<Self> {
        SUBSTITUTIONS.with(|log| log.borrow_mut().push(format!("vectors_down(v{version})")));
        match self {
            Irq::Vectors(vectors) => Ok(Irq::Msi {
                address: 0,
                data: vectors.first().copied().map_or(0, u32::from),
            }),
            other => Err(VersionizeError::Semantic(format!(
                "vectors_down on {other:?}"
            ))),
        }
    }
}

fn irq_map() -> VersionMap {
    let mut map = VersionMap::new();
    map.new_version()
        .set_type_version(Irq::type_id(), 2)
        .new_version()
        .set_type_version(Irq::type_id(), 3);
    map
}

#[test]
fn test_derive_enum_version_is_largest_start_or_end() {
    assert_eq!(Irq::version(), 3);
}

#[test]
fn test_derive_enum_fixed_bytes_and_substitutions() {
    let map = irq_map();
    let _ = take_log();

    // A variant present everywhere: u32 LE index, then nothing.
    for app_version in 1..=3 {
        assert_eq!(to_bytes(&Irq::None, &map, app_version), [0, 0, 0, 0]);
    }

    let legacy = Irq::Legacy(0x0A);
    assert_eq!(to_bytes(&legacy, &map, 1), [1, 0, 0, 0, 0x0A]);
    assert_eq!(to_bytes(&legacy, &map, 2), [1, 0, 0, 0, 0x0A]);
    // Gone at v3: written as the Msi that legacy_up returns.
    assert_eq!(
        to_bytes(&legacy, &map, 3),
        [2, 0, 0, 0, 0, 0, 0xE0, 0xFE, 0, 0, 0, 0, 0x0A, 0, 0, 0]
    );
    assert_eq!(take_log(), ["legacy_up(v3)"]);

    let msi = Irq::Msi {
        address: 0x0102_0304_0506_0708,
        data: 0x33,
    };
    assert_eq!(to_bytes(&msi, &map, 1), [1, 0, 0, 0, 0x33]);
    assert_eq!(take_log(), ["msi_down(v1)"]);
    let msi_bytes = [2, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, 0x33, 0, 0, 0];
    assert_eq!(to_bytes(&msi, &map, 2), msi_bytes);
    assert_eq!(to_bytes(&msi, &map, 3), msi_bytes);
    assert!(take_log().is_empty());

    let vectors = Irq::Vectors(vec![0x44, 0x55]);
    // v1: Vectors -> Msi -> Legacy, each hook given the type version.
    assert_eq!(to_bytes(&vectors, &map, 1), [1, 0, 0, 0, 0x44]);
    assert_eq!(take_log(), ["vectors_down(v1)", "msi_down(v1)"]);
    assert_eq!(
        to_bytes(&vectors, &map, 2),
        [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x44, 0, 0, 0]
    );
    assert_eq!(take_log(), ["vectors_down(v2)"]);
    assert_eq!(
        to_bytes(&vectors, &map, 3),
        [3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x44, 0, 0x55, 0]
    );
    assert!(take_log().is_empty());
}

#[test]
fn test_derive_enum_round_trip_every_version() {
    let map = irq_map();
    round_trip_lossless(&Irq::None, &map);
    round_trip(&Irq::Legacy(9), &map, |app_version| match app_version {
        3 => Irq::Msi {
            address: 0xFEE0_0000,
            data: 9,
        },
        _ => Irq::Legacy(9),
    });
    round_trip(
        &Irq::Vectors(vec![7]),
        &map,
        |app_version| match app_version {
            1 => Irq::Legacy(7),
            2 => Irq::Msi {
                address: 0,
                data: 7,
            },
            _ => Irq::Vectors(vec![7]),
        },
    );
}

#[test]
fn test_derive_enum_substitute_error_names_the_variant() {
    let map = irq_map();
    let msi = Irq::Msi {
        address: 0,
        data: 300,
    };
    let error = msi
        .serialize(&mut Vec::new(), &map, 1)
        .expect_err("msi_down refuses");
    assert!(
        matches!(error.root(), VersionizeError::Semantic(message) if message == "msi data above 255")
    );
    let frame = &error.path()[0];
    assert_eq!(
        (frame.type_name, frame.field, frame.version),
        ("Irq", Some("Msi"), 1)
    );
}

#[test]
fn test_derive_enum_rejects_unknown_or_absent_index() {
    let map = irq_map();
    // Index 7 exists at no version.
    for app_version in 1..=3 {
        let error = from_bytes::<Irq>(&[7, 0, 0, 0], &map, app_version).expect_err("unknown");
        assert!(matches!(
            error.root(),
            VersionizeError::UnknownVariant { type_name: "Irq", index: 7, version }
                if *version == app_version
        ));
    }
    // Msi (2) is not in v1 data, Vectors (3) not in v1 or v2, Legacy (1) not in v3.
    let absent: [(&[u8], u16, u32); 4] = [
        (&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 1, 2),
        (&[3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 1, 3),
        (&[3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 2, 3),
        (&[1, 0, 0, 0, 9], 3, 1),
    ];
    for (bytes, app_version, index) in absent {
        let error = from_bytes::<Irq>(bytes, &map, app_version).expect_err("absent variant");
        assert!(
            matches!(
                error.root(),
                VersionizeError::UnknownVariant { index: found, version, .. }
                    if *found == index && *version == app_version
            ),
            "{error}"
        );
    }
    // An index above u16 range, and a truncated index.
    let error = from_bytes::<Irq>(&[0, 0, 1, 0], &map, 3).expect_err("unknown");
    assert!(matches!(
        error.root(),
        VersionizeError::UnknownVariant {
            index: 0x1_0000,
            ..
        }
    ));
    let error = from_bytes::<Irq>(&[0, 0], &map, 3).expect_err("truncated");
    assert_eq!(error.io_kind(), Some(std::io::ErrorKind::UnexpectedEof));
}

/// `A` and `B` appear at v2 and replace each other at v1: a cycle.
#[derive(Clone, Debug, PartialEq, Versionize)]
enum Cycle {
    Stable,
    #[version(start = 2, default_fn = "to_b")]
    A(u8),
    #[version(start = 2, default_fn = "to_a")]
    B,
    #[version(start = 2, default_fn = "to_itself")]
    Selfish,
}

impl Cycle {
    fn to_b(&self, _: u16) -> VersionizeResult<Self> {
        Ok(Cycle::B)
    }
    fn to_a(&self, _: u16) -> VersionizeResult<Self> {
        Ok(Cycle::A(1))
    }
    fn to_itself(&self, _: u16) -> VersionizeResult<Self> {
        Ok(self.clone())
    }
}

#[test]
fn test_derive_enum_substitution_cycle_is_an_error() {
    let mut map = VersionMap::new();
    map.new_version().set_type_version(Cycle::type_id(), 2);
    for (value, name) in [
        (Cycle::A(0), "A"),
        (Cycle::B, "B"),
        (Cycle::Selfish, "Selfish"),
    ] {
        let mut sink = Vec::new();
        let error = value.serialize(&mut sink, &map, 1).expect_err("cycle");
        assert!(
            matches!(
                error.root(),
                VersionizeError::VariantCycle { type_name: "Cycle", variant, version: 1 }
                    if *variant == name
            ),
            "{error}"
        );
        assert!(
            sink.is_empty(),
            "nothing written before the cycle was found"
        );
        // At v2 the variants exist and are written as they are.
        assert!(value.serialize(&mut Vec::new(), &map, 2).is_ok());
    }
    assert_eq!(to_bytes(&Cycle::Stable, &map, 1), [0, 0, 0, 0]);
}

/// A recursive enum: decoding hostile input stops at the depth limit instead of
/// overflowing the stack.
#[derive(Debug, PartialEq, Versionize)]
enum Chain {
    End,
    Link(u8, Box<Chain>),
}

#[test]
fn test_derive_enum_deep_input_hits_depth_limit() {
    let map = VersionMap::new().with_limits(versionize::Limits::default().with_max_depth(64));
    let mut bytes = Vec::new();
    for _ in 0..100_000 {
        bytes.extend([1, 0, 0, 0, 0xAA]);
    }
    let error = from_bytes::<Chain>(&bytes, &map, 1).expect_err("too deep");
    assert!(matches!(
        error.root(),
        VersionizeError::DepthLimit { limit: 64 }
    ));

    // Within the limit it decodes (each level counts the enum and its `Box`).
    let mut value = Chain::End;
    for step in 0..20 {
        value = Chain::Link(step, Box::new(value));
    }
    let bytes = to_bytes(&value, &map, 1);
    assert_eq!(
        from_bytes::<Chain>(&bytes, &map, 1).expect("decodes"),
        value
    );
}

#[test]
fn test_derive_enum_rejects_bad_app_and_type_versions() {
    let map = irq_map();
    for app_version in [0, 4] {
        let error = Irq::None
            .serialize(&mut Vec::new(), &map, app_version)
            .expect_err("bad app version");
        assert!(matches!(
            error.root(),
            VersionizeError::InvalidAppVersion { .. }
        ));
        let error =
            from_bytes::<Irq>(&[0, 0, 0, 0], &map, app_version).expect_err("bad app version");
        assert!(matches!(
            error.root(),
            VersionizeError::InvalidAppVersion { .. }
        ));
    }
    let mut bad = VersionMap::new();
    bad.set_type_version(Irq::type_id(), 4);
    let error = Irq::None
        .serialize(&mut Vec::new(), &bad, 1)
        .expect_err("mapped above latest");
    assert!(matches!(
        error.root(),
        VersionizeError::InvalidTypeVersion {
            type_name: "Irq",
            mapped: 4,
            latest: 3
        }
    ));
}
