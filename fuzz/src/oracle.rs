//! The fuzzed types and the checks the fuzz targets and the property tests share.
//!
//! This file is the `oracle` module of the `vmstate-fuzz` crate (`fuzz/src/lib.rs`) and is
//! also compiled into `tests/tests/properties.rs` with `#[path]`, so libFuzzer and the CI
//! property tests run exactly the same checks on the same types.
//!
//! Every check takes raw bytes: the first byte picks a type, the second an app version
//! (including the invalid 0 and `latest + 1`), the rest is the input. A check returns
//! normally or panics with a message that says which property broke.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;

use arbitrary::{Arbitrary, Unstructured};
use versionize::crc::crc64;
use versionize::{prelude::Versionize, VersionMap, VersionizeError, VersionizeResult};

/// A device. v1: `id`, `name`, `queues`, `legacy`. v2 (app 2): adds `enabled`.
/// v3 (app 3): drops `legacy`, adds `mac` with a `default_fn`.
#[derive(Clone, Debug, PartialEq, Versionize, Arbitrary)]
pub struct Device {
    pub id: u32,
    pub name: String,
    pub queues: Vec<u16>,
    #[version(end = 3)]
    pub legacy: Option<u64>,
    #[version(start = 2)]
    pub enabled: bool,
    #[version(start = 3, default_fn = "default_mac")]
    pub mac: [u8; 6],
}

impl Device {
    fn default_mac(_: u16) -> [u8; 6] {
        [0x02, 0, 0, 0, 0, 0x01]
    }
}

/// An interrupt route. v1: `None`, `Legacy`. v2 (app 3): adds `Msi`, written as `Legacy` at
/// v1. v3 (app 4): drops `Legacy` (written as `Msi`), adds `Vectors` (written as `Msi` at v2,
/// and so as `Legacy` at v1).
#[derive(Clone, Debug, PartialEq, Versionize, Arbitrary)]
pub enum Irq {
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
    fn legacy_up(&self, _: u16) -> VersionizeResult<Self> {
        match self {
            Irq::Legacy(line) => Ok(Irq::Msi {
                address: 0xfee0_0000,
                data: u32::from(*line),
            }),
            other => Err(VersionizeError::Semantic(format!("legacy_up on {other:?}"))),
        }
    }

    fn msi_down(&self, _: u16) -> VersionizeResult<Self> {
        match self {
            // Truncation is the documented downgrade: the line is the low byte.
            Irq::Msi { data, .. } => Ok(Irq::Legacy(data.to_le_bytes()[0])),
            other => Err(VersionizeError::Semantic(format!("msi_down on {other:?}"))),
        }
    }

    fn vectors_down(&self, _: u16) -> VersionizeResult<Self> {
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

/// Guest memory, with a retyped field. v1: `size_kib: u32`. v2 (app 2): `size: u64` in bytes,
/// converted by a `ser_fn` (writing v1) and a `de_fn` (reading v1). Also maps, sets, a deque
/// and a float.
#[derive(Clone, Debug, PartialEq, Versionize, Arbitrary)]
pub struct Memory {
    #[version(end = 2)]
    pub size_kib: u32,
    #[version(start = 2, ser_fn = "ser_size", de_fn = "de_size")]
    pub size: u64,
    pub regions: BTreeMap<u64, String>,
    pub flags: BTreeSet<u8>,
    pub fifo: VecDeque<u8>,
    pub ratio: f64,
}

impl Memory {
    fn ser_size(&mut self, _: u16) -> VersionizeResult<()> {
        self.size_kib = u32::try_from(self.size / 1024).unwrap_or(u32::MAX);
        Ok(())
    }

    fn de_size(&mut self, _: u16) -> VersionizeResult<()> {
        self.size = u64::from(self.size_kib) * 1024;
        Ok(())
    }
}

/// A generic tuple struct.
#[derive(Clone, Debug, Default, PartialEq, Versionize, Arbitrary)]
pub struct Wrapper<T: Debug>(pub T, pub bool);

/// A unit struct.
#[derive(Clone, Debug, PartialEq, Versionize, Arbitrary)]
pub struct Unit;

/// Everything nested. v2 (app 4): adds `tags`.
#[derive(Clone, Debug, PartialEq, Versionize, Arbitrary)]
pub struct Machine {
    pub devices: Vec<Device>,
    pub irqs: [Irq; 2],
    pub memory: Option<Memory>,
    pub pair: (u8, i64, char),
    #[version(start = 2)]
    pub tags: Wrapper<Vec<String>>,
    pub unit: Unit,
    pub boxed: Box<i128>,
}

/// A recursive type: depth is bounded by the decoder's limit. v2 (app 2): adds `next`.
#[derive(Clone, Debug, PartialEq, Versionize)]
pub struct Tree {
    pub label: u16,
    pub children: Vec<Tree>,
    #[version(start = 2)]
    pub next: Option<Box<Tree>>,
}

impl<'a> Arbitrary<'a> for Tree {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Tree::bounded(u, 0)
    }
}

impl Tree {
    /// Deep enough to reach well past the decoder's depth limit is not the point here (the
    /// byte checks do that); values stay within it so that they must round-trip.
    const MAX_DEPTH: u32 = 8;

    fn bounded(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Self> {
        let label = u16::arbitrary(u)?;
        if depth >= Self::MAX_DEPTH {
            return Ok(Tree {
                label,
                children: Vec::new(),
                next: None,
            });
        }
        let count = u.int_in_range(0..=3)?;
        let children = (0..count)
            .map(|_| Tree::bounded(u, depth + 1))
            .collect::<arbitrary::Result<_>>()?;
        let next = if bool::arbitrary(u)? {
            Some(Box::new(Tree::bounded(u, depth + 1)?))
        } else {
            None
        };
        Ok(Tree {
            label,
            children,
            next,
        })
    }
}

/// The app versions of the fuzzed types:
/// 1: all at v1; 2: `Device`, `Memory`, `Tree` v2; 3: `Device` v3, `Irq` v2;
/// 4: `Irq` v3, `Machine` v2.
pub fn type_map() -> VersionMap {
    let mut map = VersionMap::new();
    map.new_version()
        .set_type_version(Device::type_id(), 2)
        .set_type_version(Memory::type_id(), 2)
        .set_type_version(Tree::type_id(), 2)
        .new_version()
        .set_type_version(Device::type_id(), 3)
        .set_type_version(Irq::type_id(), 2)
        .new_version()
        .set_type_version(Irq::type_id(), 3)
        .set_type_version(Machine::type_id(), 2);
    map
}

/// Number of fuzzed types.
pub const TYPE_COUNT: u8 = 6;

/// Names of the fuzzed types, by selector.
pub const TYPE_NAMES: [&str; TYPE_COUNT as usize] = [
    "Device",
    "Irq",
    "Memory",
    "Machine",
    "Tree",
    "Wrapper<Vec<String>>",
];

/// Splits an input into (type selector, app version, body). The app version ranges over
/// `0..=latest + 1`, so the invalid versions on either side are fuzzed too.
pub fn split_input(data: &[u8], latest: u16) -> Option<(u8, u16, &[u8])> {
    let (&selector, rest) = data.split_first()?;
    let (&version, body) = rest.split_first()?;
    let span = latest + 2;
    Some((selector % TYPE_COUNT, u16::from(version) % span, body))
}

/// Calls `$check::<T>(args)` with the type `T` that `$selector` picks.
macro_rules! for_type {
    ($selector:expr, $check:ident ( $($arg:expr),* )) => {
        match $selector {
            0 => $check::<Device>($($arg),*),
            1 => $check::<Irq>($($arg),*),
            2 => $check::<Memory>($($arg),*),
            3 => $check::<Machine>($($arg),*),
            4 => $check::<Tree>($($arg),*),
            _ => $check::<Wrapper<Vec<String>>>($($arg),*),
        }
    };
}

/// Whether writing back a decoded value must give exactly the bytes it was read from. Not
/// so for types holding maps or sets: a duplicate key is read as one entry.
fn canonical(selector: u8) -> bool {
    !matches!(selector, 2 | 3)
}

fn encode<T: Versionize>(
    value: &T,
    map: &VersionMap,
    app_version: u16,
) -> VersionizeResult<Vec<u8>> {
    let mut bytes = Vec::new();
    value.serialize(&mut bytes, map, app_version)?;
    Ok(bytes)
}

/// Decodes `bytes`, returning the value and how many bytes it took.
fn decode<T: Versionize>(
    bytes: &[u8],
    map: &VersionMap,
    app_version: u16,
) -> VersionizeResult<(T, usize)> {
    let mut reader = bytes;
    let value = T::deserialize(&mut reader, map, app_version)?;
    Ok((value, bytes.len() - reader.len()))
}

fn check_decode<T: Versionize + Debug>(body: &[u8], map: &VersionMap, app_version: u16) {
    match decode::<T>(body, map, app_version) {
        Ok((value, used)) => {
            assert!(used <= body.len());
            assert!(
                (1..=map.latest_version()).contains(&app_version),
                "decoded at invalid app version {app_version}: {value:?}"
            );
        }
        Err(error) => {
            // Rendering the error must not panic either.
            let _ = error.to_string();
            if !(1..=map.latest_version()).contains(&app_version) {
                assert!(
                    matches!(error.root(), VersionizeError::InvalidAppVersion { .. }),
                    "app version {app_version}: {error}"
                );
            }
        }
    }
}

/// Fuzz target `decode_types`: any bytes, decoded as any fuzzed type at any app version,
/// give a value or an error (an invalid app version always gives `InvalidAppVersion`).
pub fn decode_types(data: &[u8]) {
    let map = type_map();
    if let Some((selector, app_version, body)) = split_input(data, map.latest_version()) {
        for_type!(selector, check_decode(body, &map, app_version));
    }
}

/// Writes `value` at every app version, reads it back, and checks that writing what was read
/// gives the same bytes again: what survives a version survives it exactly.
fn check_every_version<T: Versionize + Debug>(value: &T, map: &VersionMap, what: &str) {
    for app_version in 1..=map.latest_version() {
        let bytes = encode(value, map, app_version).unwrap_or_else(|error| {
            panic!("{what}: writing {value:?} at app version {app_version} failed: {error}")
        });
        let (back, used) = decode::<T>(&bytes, map, app_version).unwrap_or_else(|error| {
            panic!("{what}: reading {bytes:02x?} at app version {app_version} failed: {error}")
        });
        assert_eq!(
            used,
            bytes.len(),
            "{what}: app version {app_version}: bytes left over"
        );
        let again = encode(&back, map, app_version).unwrap_or_else(|error| {
            panic!("{what}: rewriting {back:?} at app version {app_version} failed: {error}")
        });
        assert_eq!(
            again, bytes,
            "{what}: app version {app_version}: {value:?} read back as {back:?}"
        );
    }
}

fn check_roundtrip<T: Versionize + Debug>(
    body: &[u8],
    map: &VersionMap,
    app_version: u16,
    selector: u8,
) {
    let Ok((value, used)) = decode::<T>(body, map, app_version) else {
        return;
    };
    let bytes = encode(&value, map, app_version).unwrap_or_else(|error| {
        panic!("decoded {value:?} at app version {app_version} but cannot write it: {error}")
    });
    if canonical(selector) {
        assert_eq!(
            bytes,
            &body[..used],
            "app version {app_version}: {value:?} written back differently"
        );
    }
    let (again, again_used) = decode::<T>(&bytes, map, app_version).unwrap_or_else(|error| {
        panic!("app version {app_version}: reading back {value:?} failed: {error}")
    });
    assert_eq!(again_used, bytes.len());
    assert_eq!(
        encode(&again, map, app_version).ok().as_deref(),
        Some(bytes.as_slice()),
        "app version {app_version}: decode-encode-decode changed {value:?} into {again:?}"
    );
    check_every_version(&value, map, "decoded value");
}

fn check_value<'a, T: Versionize + Debug + Arbitrary<'a>>(
    u: &mut Unstructured<'a>,
    map: &VersionMap,
) {
    if let Ok(value) = T::arbitrary(u) {
        check_every_version(&value, map, "arbitrary value");
    }
}

/// Fuzz target `roundtrip`: bytes that decode as a type at a version are written back to the
/// same bytes (for types without maps), decode again to a value that writes the same bytes,
/// and survive every other app version; and an arbitrary value built from the same bytes
/// round-trips at every app version.
pub fn roundtrip(data: &[u8]) {
    let map = type_map();
    if let Some((selector, app_version, body)) = split_input(data, map.latest_version()) {
        for_type!(selector, check_roundtrip(body, &map, app_version, selector));
        let mut u = Unstructured::new(body);
        for_type!(selector, check_value(&mut u, &map));
    }
}

/// Fuzz target `snapshot_load`: any bytes loaded as a `MicrovmState` snapshot give a value or
/// an error, both as they are (the CRC rejects nearly everything) and re-sealed with a correct
/// CRC, which lets the bytes reach the state decoders.
#[cfg(target_arch = "x86_64")]
pub fn snapshot_load(data: &[u8]) {
    use kvm_state::MicrovmState;
    use snapshot::Snapshot;

    let version_map = fuzz_version_map;

    let _ = Snapshot::load::<_, MicrovmState>(&mut &data[..], data.len(), version_map());
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&crc64(data).to_le_bytes());
    if let Ok((state, app_version)) =
        Snapshot::load::<_, MicrovmState>(&mut sealed.as_slice(), sealed.len(), version_map())
    {
        // What loads can be saved again at the version it was read at, and loads again equal.
        let bytes = state
            .to_snapshot_bytes(app_version)
            .unwrap_or_else(|error| {
                panic!("loaded a state at app version {app_version} but cannot save it: {error}")
            });
        let (again, _) =
            Snapshot::load::<_, MicrovmState>(&mut bytes.as_slice(), bytes.len(), version_map())
                .unwrap_or_else(|error| panic!("saved state does not load: {error}"));
        assert_eq!(again, state);
    }
}

/// `kvm_state::version_map()` with a stack cap of 6 MiB instead of 1 MiB: AddressSanitizer's
/// frames are several times larger than a release build's, so the decoder's measured-stack
/// guard would refuse every real `MicrovmState` under the fuzzer (libFuzzer's main thread has
/// 8 MiB). The accounting stays on, so the guard is still exercised.
#[cfg(target_arch = "x86_64")]
#[must_use]
pub fn fuzz_version_map() -> VersionMap {
    let map = kvm_state::version_map();
    let limits = map.limits().with_max_stack(6 << 20);
    map.with_limits(limits)
}
