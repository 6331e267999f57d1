//! The tests of the original Firecracker `snapshot` crate, re-expressed against this crate:
//! semantic hooks and defaults across four versions, the 38-byte `Test1` snapshot, the
//! short-file error, the corrupted x86_64 snapshot's CRC, and a kvm-bindings-like struct.

use snapshot::{Snapshot, SnapshotError};
use versionize::{prelude::Versionize, VersionMap, VersionizeError, VersionizeResult};

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Test1 {
    field_x: u64,
    field0: u64,
    field1: u32,
}

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Test {
    field_x: u64,
    field0: u64,
    field1: u32,
    #[version(start = 2, default_fn = "field2_default")]
    field2: u64,
    #[version(
        start = 3,
        default_fn = "field3_default",
        ser_fn = "field3_serialize",
        de_fn = "field3_deserialize"
    )]
    field3: String,
    #[version(
        start = 4,
        default_fn = "field4_default",
        ser_fn = "field4_serialize",
        de_fn = "field4_deserialize"
    )]
    field4: Vec<u64>,
}

impl Test {
    fn field2_default(_: u16) -> u64 {
        20
    }
    fn field3_default(_: u16) -> String {
        "default".to_owned()
    }
    fn field4_default(_: u16) -> Vec<u64> {
        vec![1, 2, 3, 4]
    }
    fn field4_serialize(&mut self, target_version: u16) -> VersionizeResult<()> {
        // Only runs when writing a version without field4.
        assert_ne!(target_version, Test::version());
        self.field0 = self.field4.iter().sum();
        if self.field0 == 6666 {
            return Err(VersionizeError::Semantic(
                "field4 element sum is 6666".to_owned(),
            ));
        }
        Ok(())
    }
    fn field4_deserialize(&mut self, source_version: u16) -> VersionizeResult<()> {
        assert_ne!(source_version, Test::version());
        self.field4 = vec![self.field0; 4];
        Ok(())
    }
    fn field3_serialize(&mut self, target_version: u16) -> VersionizeResult<()> {
        assert!(target_version < 3);
        self.field_x += 1;
        Ok(())
    }
    fn field3_deserialize(&mut self, source_version: u16) -> VersionizeResult<()> {
        assert!(source_version < 3);
        self.field_x += 1;
        if self.field0 == 7777 {
            return Err(VersionizeError::Semantic("field0 is 7777".to_owned()));
        }
        Ok(())
    }
}

fn four_version_map() -> VersionMap {
    let mut vm = VersionMap::new();
    vm.new_version()
        .set_type_version(Test::type_id(), 2)
        .new_version()
        .set_type_version(Test::type_id(), 3)
        .new_version()
        .set_type_version(Test::type_id(), 4);
    vm
}

fn sample() -> Test {
    Test {
        field0: 0,
        field1: 1,
        field2: 2,
        field3: "test".to_owned(),
        field4: vec![4, 3, 2, 1],
        field_x: 0,
    }
}

fn save_at<O: Versionize + std::fmt::Debug>(vm: &VersionMap, version: u16, object: &O) -> Vec<u8> {
    let mut mem = vec![0u8; 1024];
    Snapshot::new(vm.clone(), version)
        .save_without_crc(&mut mem.as_mut_slice(), object)
        .unwrap();
    mem
}

#[test]
fn test_snapshot_struct_semantic_fn() {
    let vm = four_version_map();
    let state = sample();

    // v1: field4's ser_fn sets field0 to the sum, its de_fn rebuilds field4 from field0;
    // field3's hooks each increment field_x.
    let mem = save_at(&vm, 1, &state);
    let (restored, version) =
        Snapshot::unchecked_load::<_, Test>(&mut mem.as_slice(), vm.clone()).unwrap();
    assert_eq!(version, 1);
    assert_eq!(restored.field0, state.field4.iter().sum::<u64>());
    assert_eq!(restored.field4, vec![restored.field0; 4]);
    assert_eq!(restored.field_x, 2);
    assert_eq!(restored.field1, 1);
    assert_eq!(restored.field2, 20);

    // v3: only field4's hooks run.
    let mem = save_at(&vm, 3, &state);
    let (restored, _) =
        Snapshot::unchecked_load::<_, Test>(&mut mem.as_slice(), vm.clone()).unwrap();
    assert_eq!(restored.field0, state.field4.iter().sum::<u64>());
    assert_eq!(restored.field4, vec![restored.field0; 4]);
    assert_eq!(restored.field_x, 0);

    // v4: no hook runs.
    let mem = save_at(&vm, 4, &state);
    let (restored, _) =
        Snapshot::unchecked_load::<_, Test>(&mut mem.as_slice(), vm.clone()).unwrap();
    assert_eq!(restored, state);

    // A truncated snapshot is an unexpected-end-of-file error from the state decoder.
    let err = Snapshot::unchecked_load::<_, Test>(&mut &mem[..10], vm).unwrap_err();
    match err {
        SnapshotError::Versionize(inner) => {
            assert_eq!(
                inner.io_kind(),
                Some(std::io::ErrorKind::UnexpectedEof),
                "{inner}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn test_snapshot_semantic_errors_propagate() {
    let vm = four_version_map();
    let mut state = sample();
    state.field4 = vec![6000, 666];
    let mut mem = vec![0u8; 1024];
    let err = Snapshot::new(vm.clone(), 1)
        .save_without_crc(&mut mem.as_mut_slice(), &state)
        .unwrap_err();
    match err {
        SnapshotError::Versionize(inner) => assert!(
            matches!(inner.root(), VersionizeError::Semantic(msg) if msg == "field4 element sum is 6666"),
            "{inner}"
        ),
        other => panic!("unexpected {other:?}"),
    }

    let mut state = sample();
    state.field4 = vec![7777];
    let mem = save_at(&vm, 2, &state);
    let err = Snapshot::unchecked_load::<_, Test>(&mut mem.as_slice(), vm).unwrap_err();
    match err {
        SnapshotError::Versionize(inner) => {
            assert!(
                matches!(inner.root(), VersionizeError::Semantic(msg) if msg == "field0 is 7777")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn test_snapshot_struct_default_fn() {
    let vm = four_version_map();
    let state = sample();
    let state_1 = Test1 {
        field_x: 0,
        field0: 0,
        field1: 1,
    };

    // A v1 `Test1` reads as a v1 `Test`: same layout.
    let mem = save_at(&vm, 1, &state_1);
    let (restored, _) =
        Snapshot::unchecked_load::<_, Test>(&mut mem.as_slice(), vm.clone()).unwrap();
    assert_eq!(restored.field1, state_1.field1);
    assert_eq!(restored.field2, 20);
    assert_eq!(restored.field3, "default");

    let expectations = [(2u16, 2u64, "default"), (3, 2, "test"), (4, 2, "test")];
    for (version, field2, field3) in expectations {
        let mem = save_at(&vm, version, &state);
        let (restored, _) =
            Snapshot::unchecked_load::<_, Test>(&mut mem.as_slice(), vm.clone()).unwrap();
        assert_eq!(restored.field1, state.field1, "v{version}");
        assert_eq!(restored.field2, field2, "v{version}");
        assert_eq!(restored.field3, field3, "v{version}");
    }
}

fn test1_snapshot() -> Vec<u8> {
    let state_1 = Test1 {
        field_x: 0,
        field0: 0,
        field1: 1,
    };
    let mut mem = Vec::new();
    Snapshot::new(VersionMap::new(), 1)
        .save(&mut mem, &state_1)
        .unwrap();
    mem
}

#[test]
fn test_snapshot_crc_ok() {
    let mem = test1_snapshot();
    assert_eq!(mem.len(), 38);
    // The original test loads from a larger zeroed buffer with an explicit length.
    let mut padded = vec![0u8; 1024];
    padded[..38].copy_from_slice(&mem);
    let (state, version) =
        Snapshot::load::<_, Test1>(&mut padded.as_slice(), 38, VersionMap::new()).unwrap();
    assert_eq!(version, 1);
    assert_eq!(
        state,
        Test1 {
            field_x: 0,
            field0: 0,
            field1: 1
        }
    );
}

#[test]
fn test_snapshot_invalid_snapshot_size() {
    let mem = vec![0u8; 4];
    let err = Snapshot::load::<_, Test1>(&mut mem.as_slice(), 4, VersionMap::new()).unwrap_err();
    assert!(
        matches!(err, SnapshotError::InvalidSnapshotSize { len: 4, min: 18 }),
        "{err}"
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn test_snapshot_corrupted_x86_64() {
    let mut mem = test1_snapshot();
    mem[20] = 123;
    let err = Snapshot::load::<_, Test1>(&mut mem.as_slice(), 38, VersionMap::new()).unwrap_err();
    match err {
        SnapshotError::Crc64 { computed, stored } => {
            assert_eq!(computed, 0x103F_8F52_8F51_20B1);
            assert_eq!(stored, u64::from_le_bytes(mem[30..38].try_into().unwrap()));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, PartialEq, Eq, Versionize)]
struct kvm_pit_config {
    flags: std::os::raw::c_uint,
    pad: [std::os::raw::c_uint; 15usize],
}

#[test]
fn test_snapshot_kvm_bindings_struct() {
    let state = kvm_pit_config {
        flags: 123_456,
        pad: [0; 15usize],
    };
    let vm = VersionMap::new();
    let mem = save_at(&vm, 1, &state);
    assert_eq!(&mem[10..14], &123_456u32.to_le_bytes());
    let (restored, _) =
        Snapshot::unchecked_load::<_, kvm_pit_config>(&mut mem.as_slice(), vm).unwrap();
    assert_eq!(restored, state);
}
