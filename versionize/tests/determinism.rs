//! Equal states give equal bytes: hash maps and sets are written sorted by their entries'
//! encoded bytes, whatever their iteration order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

use versionize::prelude::*;

#[derive(Debug, Clone, PartialEq, Versionize)]
struct Devices {
    by_id: HashMap<u32, String>,
    irqs: HashSet<u64>,
    nested: HashMap<String, HashSet<u16>>,
    ordered: BTreeMap<u8, Vec<u8>>,
}

/// The same contents, inserted in an order that depends on `seed`, into tables with fresh
/// random hash keys.
fn devices(seed: u64) -> Devices {
    let mut ids: Vec<u32> = (0..200).collect();
    // A seeded shuffle (the hash of the seed and index) so that insertion orders differ.
    let order = RandomState::new();
    ids.sort_by_key(|id| order.hash_one((seed, *id)));
    let mut devices = Devices {
        by_id: HashMap::new(),
        irqs: HashSet::new(),
        nested: HashMap::new(),
        ordered: BTreeMap::new(),
    };
    for &id in &ids {
        devices.by_id.insert(id, format!("dev{id}"));
        devices.irqs.insert(u64::from(id) * 7919);
        devices
            .nested
            .entry(format!("bus{}", id % 13))
            .or_default()
            .insert(u16::try_from(id).unwrap());
        devices
            .ordered
            .insert(u8::try_from(id).unwrap(), vec![1; 3]);
    }
    devices
}

fn encode(value: &Devices) -> Vec<u8> {
    let mut bytes = Vec::new();
    value.serialize(&mut bytes, &VersionMap::new(), 1).unwrap();
    bytes
}

#[test]
fn test_determinism_eight_saves_of_equal_states_give_equal_bytes() {
    let first = devices(0);
    let bytes = encode(&first);
    for seed in 1..8 {
        let other = devices(seed);
        assert_eq!(other, first);
        assert_eq!(encode(&other), bytes, "save {seed} differs");
    }
}

#[test]
fn test_determinism_save_load_save_gives_the_same_bytes() {
    let bytes = encode(&devices(3));
    let map = VersionMap::new();
    let loaded = Devices::deserialize(&mut bytes.as_slice(), &map, 1).unwrap();
    assert_eq!(encode(&loaded), bytes);
}

#[test]
fn test_determinism_hash_map_bytes_are_sorted_by_encoded_key() {
    let map: HashMap<u16, u8> = [(0x0102, 1), (0x0201, 2), (0x0001, 3)]
        .into_iter()
        .collect();
    let mut bytes = Vec::new();
    map.serialize(&mut bytes, &VersionMap::new(), 1).unwrap();
    // Little-endian keys sorted as bytes: 01 00 (0x0001), 01 02 (0x0201), 02 01 (0x0102).
    assert_eq!(
        bytes,
        [3, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 3, 0x01, 0x02, 2, 0x02, 0x01, 1]
    );
    // Readers take any order (versionize 0.2 wrote iteration order).
    let unsorted = [2, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x02, 2, 0x01, 0x00, 3];
    let back = HashMap::<u16, u8>::deserialize(&mut &unsorted[..], &VersionMap::new(), 1).unwrap();
    assert_eq!(back, [(0x0201, 2), (0x0001, 3)].into_iter().collect());
}

#[test]
fn test_determinism_hash_set_with_custom_hasher() {
    #[derive(Default, Clone)]
    struct Fixed;
    impl BuildHasher for Fixed {
        type Hasher = std::collections::hash_map::DefaultHasher;
        fn build_hasher(&self) -> Self::Hasher {
            Self::Hasher::default()
        }
    }
    let a: HashSet<String, Fixed> = ["x", "yy", "a", "zzz"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let b: HashSet<String> = ["zzz", "a", "yy", "x"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let (mut left, mut right) = (Vec::new(), Vec::new());
    a.serialize(&mut left, &VersionMap::new(), 1).unwrap();
    b.serialize(&mut right, &VersionMap::new(), 1).unwrap();
    assert_eq!(left, right);
}
