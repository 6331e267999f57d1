//! The behaviour of the original Firecracker derive that snapshots depend on, checked on a
//! struct shaped like the one of the old `snapshot` crate's tests: a field added at each of
//! versions 2, 3 and 4, with `default_fn`, `ser_fn` and `de_fn` hooks.

use integration_tests::{from_bytes, to_bytes};
use versionize::{prelude::Versionize, VersionMap, VersionizeError, VersionizeResult};

#[derive(Clone, Debug, PartialEq, Versionize)]
struct State {
    counter: u64,
    base: u64,
    flags: u32,
    #[version(start = 2, default_fn = "default_limit")]
    limit: u64,
    #[version(
        start = 3,
        default_fn = "default_label",
        ser_fn = "label_out",
        de_fn = "label_in"
    )]
    label: String,
    #[version(
        start = 4,
        default_fn = "default_items",
        ser_fn = "items_out",
        de_fn = "items_in"
    )]
    items: Vec<u64>,
}

impl State {
    fn default_limit(_: u16) -> u64 {
        20
    }
    fn default_label(_: u16) -> String {
        "default".to_owned()
    }
    fn default_items(_: u16) -> Vec<u64> {
        vec![1, 2, 3, 4]
    }
    fn items_out(&mut self, version: u16) -> VersionizeResult<()> {
        assert!(
            version < 4,
            "never called at the version that has the field"
        );
        self.base = self.items.iter().sum();
        if self.base == 6666 {
            return Err(VersionizeError::Semantic("items sum to 6666".to_owned()));
        }
        Ok(())
    }
    fn items_in(&mut self, version: u16) -> VersionizeResult<()> {
        assert!(
            version < 4,
            "never called at the version that has the field"
        );
        self.items = vec![self.base; 4];
        Ok(())
    }
    fn label_out(&mut self, version: u16) -> VersionizeResult<()> {
        assert!(
            version < 3,
            "never called at the versions that have the field"
        );
        self.counter += 1;
        Ok(())
    }
    fn label_in(&mut self, version: u16) -> VersionizeResult<()> {
        assert!(
            version < 3,
            "never called at the versions that have the field"
        );
        self.counter += 1;
        if self.base == 7777 {
            return Err(VersionizeError::Semantic("base is 7777".to_owned()));
        }
        Ok(())
    }
}

/// App version n maps State to version n.
fn state_map() -> VersionMap {
    let mut map = VersionMap::new();
    for version in 2..=4 {
        map.new_version()
            .set_type_version(State::type_id(), version);
    }
    map
}

fn state() -> State {
    State {
        counter: 0,
        base: 0,
        flags: 1,
        limit: 2,
        label: "test".to_owned(),
        items: vec![4, 3, 2, 1],
    }
}

fn write_read(value: &State, map: &VersionMap, app_version: u16) -> State {
    from_bytes(&to_bytes(value, map, app_version), map, app_version).expect("round trip")
}

#[test]
fn test_compat_semantic_hooks_per_version() {
    let map = state_map();

    // v1: both ser_fns ran on the copy, both de_fns on the result.
    let v1 = write_read(&state(), &map, 1);
    assert_eq!(v1.base, 10, "items_out wrote the sum into base");
    assert_eq!(v1.items, [10; 4], "items_in rebuilt items from base");
    assert_eq!(v1.counter, 2, "label_out and label_in each added one");
    assert_eq!((v1.flags, v1.limit, v1.label.as_str()), (1, 20, "default"));

    // v3: only the hooks of the v4 field run.
    let v3 = write_read(&state(), &map, 3);
    assert_eq!((v3.base, v3.counter), (10, 0));
    assert_eq!(v3.items, [10; 4]);
    assert_eq!(v3.label, "test");

    // v4: no hook runs.
    assert_eq!(write_read(&state(), &map, 4), state());
}

#[test]
fn test_compat_default_fns_fill_missing_fields() {
    let map = state_map();
    // Bytes of a v1-only build: counter, base, flags.
    let old_bytes = to_bytes(&(0u64, 0u64, 1u32), &map, 1);
    let from_v1: State = from_bytes(&old_bytes, &map, 1).expect("v1");
    assert_eq!((from_v1.limit, from_v1.label.as_str()), (20, "default"));

    let v2 = write_read(&state(), &map, 2);
    assert_eq!((v2.limit, v2.label.as_str()), (2, "default"));
    let v3 = write_read(&state(), &map, 3);
    assert_eq!((v3.limit, v3.label.as_str()), (2, "test"));
}

#[test]
fn test_compat_hook_errors_propagate() {
    let map = state_map();
    let mut bad = state();
    bad.items = vec![6000, 666];
    let error = bad
        .serialize(&mut Vec::new(), &map, 1)
        .expect_err("items_out refuses");
    assert!(matches!(error.root(), VersionizeError::Semantic(m) if m == "items sum to 6666"));

    let mut bad = state();
    bad.base = 7777;
    let bytes = to_bytes(&bad, &map, 4);
    // The v2 layout (counter, base, flags, limit) of a value whose base is 7777.
    let v2_bytes = to_bytes(&(0u64, 7777u64, 1u32, 2u64), &map, 1);
    let error = from_bytes::<State>(&v2_bytes, &map, 2).expect_err("label_in refuses");
    assert!(matches!(error.root(), VersionizeError::Semantic(m) if m == "base is 7777"));
    assert!(from_bytes::<State>(&bytes, &map, 4).is_ok());

    // A truncated input is an i/o error, not a panic.
    let error = from_bytes::<State>(&bytes[..10], &map, 4).expect_err("truncated");
    assert_eq!(error.io_kind(), Some(std::io::ErrorKind::UnexpectedEof));
}
