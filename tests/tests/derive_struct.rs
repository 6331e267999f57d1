//! `#[derive(Versionize)]` on structs: one struct with every primitive and the std
//! wrappers, evolving over four versions with `start`, `end`, `default_fn`, `ser_fn` and
//! `de_fn`, pinned byte for byte at each app version, with the order of the hooks checked.

use std::cell::RefCell;

use integration_tests::{from_bytes, round_trip, round_trip_lossless, to_bytes};
use versionize::{prelude::Versionize, VersionMap, VersionizeError, VersionizeResult};

thread_local! {
    /// What each hook saw and did, in call order (one log per test thread).
    static HOOKS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn log(entry: String) {
    HOOKS.with(|hooks| hooks.borrow_mut().push(entry));
}

fn take_log() -> Vec<String> {
    HOOKS.with(|hooks| hooks.borrow_mut().drain(..).collect())
}

/// Version 1: the primitives, `regs` and `legacy`.
/// Version 2: adds `name` and `transitional`.
/// Version 3: drops `legacy`, adds `boxed`.
/// Version 4: drops `transitional`, adds `list`.
#[derive(Clone, Debug, PartialEq, Versionize)]
struct Machine {
    a_u8: u8,
    a_u16: u16,
    a_u32: u32,
    a_u64: u64,
    a_u128: u128,
    a_usize: usize,
    a_i8: i8,
    a_i16: i16,
    a_i32: i32,
    a_i64: i64,
    a_i128: i128,
    a_isize: isize,
    a_bool: bool,
    a_char: char,
    a_f32: f32,
    a_f64: f64,
    regs: [u16; 3],
    #[version(end = 3, default_fn = "default_legacy", de_fn = "de_legacy")]
    legacy: u16,
    #[version(
        start = 2,
        default_fn = "default_name",
        ser_fn = "ser_name",
        de_fn = "de_name"
    )]
    name: String,
    #[version(start = 2, end = 4)]
    transitional: Option<u32>,
    #[version(start = 3, default_fn = "default_boxed")]
    boxed: Box<u32>,
    #[version(start = 4, ser_fn = "ser_list", de_fn = "de_list")]
    list: Vec<u8>,
}

impl Machine {
    fn default_legacy(version: u16) -> u16 {
        log(format!("default_legacy(v{version})"));
        1000 + version
    }

    fn de_legacy(&mut self, version: u16) -> VersionizeResult<()> {
        log(format!(
            "de_legacy(v{version}) saw legacy={} regs[0]={}",
            self.legacy, self.regs[0]
        ));
        self.legacy += self.regs[0];
        Ok(())
    }

    fn default_name(version: u16) -> String {
        log(format!("default_name(v{version})"));
        format!("default-v{version}")
    }

    fn ser_name(&mut self, version: u16) -> VersionizeResult<()> {
        log(format!("ser_name(v{version}) saw name={:?}", self.name));
        self.a_u8 = u8::try_from(self.name.len()).unwrap_or(u8::MAX);
        Ok(())
    }

    fn de_name(&mut self, version: u16) -> VersionizeResult<()> {
        log(format!(
            "de_name(v{version}) saw name={:?} a_u8={}",
            self.name, self.a_u8
        ));
        self.name = format!("{}+{}", self.name, self.a_u8);
        Ok(())
    }

    fn default_boxed(version: u16) -> Box<u32> {
        Box::new(u32::from(version) * 100)
    }

    fn ser_list(&mut self, version: u16) -> VersionizeResult<()> {
        log(format!(
            "ser_list(v{version}) saw list={:?} a_u8={}",
            self.list, self.a_u8
        ));
        if self.list.len() > 100 {
            return Err(VersionizeError::Semantic("list too long for v3".to_owned()));
        }
        self.regs[2] = u16::try_from(self.list.len()).unwrap_or(u16::MAX);
        Ok(())
    }

    fn de_list(&mut self, version: u16) -> VersionizeResult<()> {
        log(format!(
            "de_list(v{version}) saw list={:?} name={:?} regs[2]={}",
            self.list, self.name, self.regs[2]
        ));
        self.list = vec![0xAB; usize::from(self.regs[2])];
        Ok(())
    }
}

fn sample() -> Machine {
    Machine {
        a_u8: 0x81,
        a_u16: 0x0102,
        a_u32: 0x0304_0506,
        a_u64: 0x0708_090A_0B0C_0D0E,
        a_u128: 0x1112_1314_1516_1718_191A_1B1C_1D1E_1F20,
        a_usize: 0x21,
        a_i8: -2,
        a_i16: -3,
        a_i32: -4,
        a_i64: -5,
        a_i128: -6,
        a_isize: -7,
        a_bool: true,
        a_char: 'é',
        a_f32: 1.5,
        a_f64: -2.25,
        regs: [0x10, 0x20, 0x30],
        legacy: 0x0A0B,
        name: "cpu".to_owned(),
        transitional: Some(0x99),
        boxed: Box::new(0x0102_0304),
        list: vec![7, 8],
    }
}

/// App version n uses `Machine` version n.
fn machine_map() -> VersionMap {
    let mut map = VersionMap::new();
    for version in 2..=4 {
        map.new_version()
            .set_type_version(Machine::type_id(), version);
    }
    map
}

/// The bytes of the fields present at every version, for `sample()` with `a_u8` and
/// `regs[2]` as given (the `ser_fn`s change them on the copy).
fn common_bytes(a_u8: u8, regs2: u8) -> Vec<u8> {
    let mut bytes = vec![a_u8];
    bytes.extend([0x02, 0x01]); // a_u16
    bytes.extend([0x06, 0x05, 0x04, 0x03]); // a_u32
    bytes.extend([0x0E, 0x0D, 0x0C, 0x0B, 0x0A, 0x09, 0x08, 0x07]); // a_u64
    bytes.extend([
        0x20, 0x1F, 0x1E, 0x1D, 0x1C, 0x1B, 0x1A, 0x19, 0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12,
        0x11,
    ]); // a_u128
    bytes.extend([0x21, 0, 0, 0, 0, 0, 0, 0]); // a_usize, 8 bytes
    bytes.extend([0xFE]); // a_i8
    bytes.extend([0xFD, 0xFF]); // a_i16
    bytes.extend([0xFC, 0xFF, 0xFF, 0xFF]); // a_i32
    bytes.extend([0xFB, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]); // a_i64
    bytes.extend([0xFA]); // a_i128
    bytes.extend([0xFF; 15]);
    bytes.extend([0xF9, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]); // a_isize, 8 bytes
    bytes.extend([0x01]); // a_bool
    bytes.extend([0xC3, 0xA9]); // a_char 'é' as UTF-8
    bytes.extend([0x00, 0x00, 0xC0, 0x3F]); // a_f32 1.5
    bytes.extend([0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xC0]); // a_f64 -2.25
    bytes.extend([0x10, 0x00, 0x20, 0x00, regs2, 0x00]); // regs, no length
    bytes
}

#[test]
fn test_derive_struct_fixed_bytes_at_each_app_version() {
    let map = machine_map();
    let machine = sample();

    // v1: primitives (a_u8 = name.len() from ser_name), regs (regs[2] = list.len() from
    // ser_list), legacy.
    let mut v1 = common_bytes(3, 2);
    v1.extend([0x0B, 0x0A]); // legacy
    assert_eq!(to_bytes(&machine, &map, 1), v1);

    // v2: adds name and transitional; ser_list still runs.
    let mut v2 = common_bytes(0x81, 2);
    v2.extend([0x0B, 0x0A]); // legacy
    v2.extend([3, 0, 0, 0, 0, 0, 0, 0, b'c', b'p', b'u']); // name: u64 length, bytes
    v2.extend([1, 0x99, 0, 0, 0]); // transitional: tag 1, u32
    assert_eq!(to_bytes(&machine, &map, 2), v2);

    // v3: legacy gone, boxed added (Box is transparent).
    let mut v3 = common_bytes(0x81, 2);
    v3.extend([3, 0, 0, 0, 0, 0, 0, 0, b'c', b'p', b'u']);
    v3.extend([1, 0x99, 0, 0, 0]);
    v3.extend([0x04, 0x03, 0x02, 0x01]); // boxed
    assert_eq!(to_bytes(&machine, &map, 3), v3);

    // v4: transitional gone, list added; no hook runs, regs[2] is the real one.
    let mut v4 = common_bytes(0x81, 0x30);
    v4.extend([3, 0, 0, 0, 0, 0, 0, 0, b'c', b'p', b'u']);
    v4.extend([0x04, 0x03, 0x02, 0x01]);
    v4.extend([2, 0, 0, 0, 0, 0, 0, 0, 7, 8]); // list: u64 count, elements
    assert_eq!(to_bytes(&machine, &map, 4), v4);

    assert_eq!(
        [v1.len(), v2.len(), v3.len(), v4.len()],
        [101, 117, 119, 124]
    );
    // The ser_fns changed a copy, never the value.
    assert_eq!(machine, sample());
}

#[test]
fn test_derive_struct_round_trip_every_version() {
    let map = machine_map();
    let machine = sample();
    let bytes = round_trip(&machine, &map, |app_version| {
        let mut expected = sample();
        match app_version {
            1 => {
                expected.a_u8 = 3;
                expected.regs[2] = 2;
                expected.name = "default-v1+3".to_owned();
                expected.transitional = None;
                expected.boxed = Box::new(100);
                expected.list = vec![0xAB; 2];
            }
            2 => {
                expected.regs[2] = 2;
                expected.boxed = Box::new(200);
                expected.list = vec![0xAB; 2];
            }
            3 => {
                expected.regs[2] = 2;
                expected.legacy = 1003 + 0x10;
                expected.list = vec![0xAB; 2];
            }
            _ => {
                expected.legacy = 1004 + 0x10;
                expected.transitional = None;
            }
        }
        expected
    });
    assert_eq!(bytes.len(), 4);
}

#[test]
fn test_derive_struct_hooks_run_in_declaration_order_with_type_version() {
    let map = machine_map();
    let machine = sample();
    let _ = take_log();

    // Writing v1: both ser_fns, in declaration order, on the same copy (ser_list sees the
    // a_u8 that ser_name wrote).
    let v1 = to_bytes(&machine, &map, 1);
    assert_eq!(
        take_log(),
        [
            "ser_name(v1) saw name=\"cpu\"",
            "ser_list(v1) saw list=[7, 8] a_u8=3",
        ]
    );

    // Reading v1: defaults first (while building), then de_fns in declaration order.
    let _: Machine = from_bytes(&v1, &map, 1).expect("read v1");
    assert_eq!(
        take_log(),
        [
            "default_name(v1)",
            "de_name(v1) saw name=\"default-v1\" a_u8=3",
            "de_list(v1) saw list=[] name=\"default-v1+3\" regs[2]=2",
        ]
    );

    // Writing and reading v3: de_legacy sees its default_fn's value.
    let v3 = to_bytes(&machine, &map, 3);
    assert_eq!(take_log(), ["ser_list(v3) saw list=[7, 8] a_u8=129"]);
    let _: Machine = from_bytes(&v3, &map, 3).expect("read v3");
    assert_eq!(
        take_log(),
        [
            "default_legacy(v3)",
            "de_legacy(v3) saw legacy=1003 regs[0]=16",
            "de_list(v3) saw list=[] name=\"cpu\" regs[2]=2",
        ]
    );

    // The latest version runs no hook at all.
    let v4 = to_bytes(&machine, &map, 4);
    let _: Machine = from_bytes(&v4, &map, 4).expect("read v4");
    assert_eq!(
        take_log(),
        [
            "default_legacy(v4)",
            "de_legacy(v4) saw legacy=1004 regs[0]=16"
        ]
    );
}

#[test]
fn test_derive_struct_hook_argument_is_type_version() {
    // App versions 1..=5; Machine changes only at 3 (to v2) and 5 (to v4).
    let mut map = VersionMap::new();
    map.new_version()
        .new_version()
        .set_type_version(Machine::type_id(), 2)
        .new_version()
        .new_version()
        .set_type_version(Machine::type_id(), 4);
    let _ = take_log();
    let bytes = to_bytes(&sample(), &map, 4);
    assert_eq!(take_log(), ["ser_list(v2) saw list=[7, 8] a_u8=129"]);
    let _: Machine = from_bytes(&bytes, &map, 4).expect("read");
    assert_eq!(
        take_log(),
        ["de_list(v2) saw list=[] name=\"cpu\" regs[2]=2"]
    );
}

#[test]
fn test_derive_struct_hook_error_names_type_field_and_version() {
    let map = machine_map();
    let mut machine = sample();
    machine.list = vec![0; 101];
    let mut sink = Vec::new();
    let error = machine
        .serialize(&mut sink, &map, 2)
        .expect_err("ser_list refuses");
    assert!(
        matches!(error.root(), VersionizeError::Semantic(message) if message == "list too long for v3")
    );
    let frame = &error.path()[0];
    assert_eq!(
        (frame.type_name, frame.field, frame.version),
        ("Machine", Some("list"), 2)
    );
    // Nothing was written before the hooks ran.
    assert!(sink.is_empty());
}

#[test]
fn test_derive_struct_truncated_input_names_the_field() {
    let map = machine_map();
    let bytes = to_bytes(&sample(), &map, 4);
    // 99 bytes of fixed-size fields, then `name` (8 + 3 bytes): cut inside its bytes.
    let error = from_bytes::<Machine>(&bytes[..108], &map, 4).expect_err("truncated");
    assert_eq!(error.io_kind(), Some(std::io::ErrorKind::UnexpectedEof));
    let frame = &error.path()[0];
    assert_eq!(
        (frame.type_name, frame.field, frame.version),
        ("Machine", Some("name"), 4)
    );
}

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Pair(
    u16,
    #[version(start = 2, default_fn = "default_second")] String,
);

impl Pair {
    fn default_second(version: u16) -> String {
        format!("v{version}")
    }
}

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Unit;

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Empty {}

#[test]
fn test_derive_tuple_and_unit_structs() {
    let mut map = VersionMap::new();
    map.new_version().set_type_version(Pair::type_id(), 2);
    assert_eq!(Pair::version(), 2);
    let pair = Pair(0x0201, "x".to_owned());
    let bytes = round_trip(&pair, &map, |app_version| match app_version {
        1 => Pair(0x0201, "v1".to_owned()),
        _ => pair.clone(),
    });
    assert_eq!(bytes[0], [1, 2]);
    assert_eq!(bytes[1], [1, 2, 1, 0, 0, 0, 0, 0, 0, 0, b'x']);

    assert_eq!(Unit::version(), 1);
    assert_eq!(Empty::version(), 1);
    assert!(round_trip_lossless(&Unit, &map).iter().all(Vec::is_empty));
    assert!(round_trip_lossless(&Empty {}, &map)
        .iter()
        .all(Vec::is_empty));
}

/// Without any `ser_fn` the type needs no `Clone`: the value is written from `self`.
#[derive(Debug, PartialEq, Versionize)]
struct NotClone {
    #[version(start = 2, de_fn = "de_b")]
    b: u8,
    a: u8,
}

impl NotClone {
    fn de_b(&mut self, _: u16) -> VersionizeResult<()> {
        self.b = self.a * 2;
        Ok(())
    }
}

#[test]
fn test_derive_struct_without_ser_fn_needs_no_clone() {
    let mut map = VersionMap::new();
    map.new_version().set_type_version(NotClone::type_id(), 2);
    let value = NotClone { b: 1, a: 5 };
    let bytes = round_trip(&value, &map, |app_version| match app_version {
        1 => NotClone { b: 10, a: 5 },
        _ => NotClone { b: 1, a: 5 },
    });
    assert_eq!(bytes, [vec![5], vec![1, 5]]);
}

/// `ser_fn` clones only when a hook runs: a `Clone` that counts shows it.
mod clone_count {
    use std::cell::Cell;

    use versionize::{prelude::Versionize, VersionizeResult};

    thread_local! {
        pub(crate) static CLONES: Cell<u32> = const { Cell::new(0) };
    }

    #[derive(Debug, PartialEq, Versionize)]
    pub(crate) struct Counted {
        pub(crate) a: u8,
        #[version(start = 2, ser_fn = "ser_b")]
        pub(crate) b: u8,
    }

    impl Counted {
        fn ser_b(&mut self, _: u16) -> VersionizeResult<()> {
            self.a = self.b;
            Ok(())
        }
    }

    impl Clone for Counted {
        fn clone(&self) -> Self {
            CLONES.with(|clones| clones.set(clones.get() + 1));
            Counted {
                a: self.a,
                b: self.b,
            }
        }
    }
}

#[test]
fn test_derive_struct_clones_only_when_a_ser_fn_runs() {
    use std::cell::Cell;

    use clone_count::{Counted, CLONES};

    let mut map = VersionMap::new();
    map.new_version().set_type_version(Counted::type_id(), 2);
    let value = Counted { a: 1, b: 9 };
    CLONES.with(|clones| clones.set(0));
    assert_eq!(to_bytes(&value, &map, 2), [1, 9]);
    assert_eq!(CLONES.with(Cell::get), 0);
    assert_eq!(to_bytes(&value, &map, 1), [9]);
    assert_eq!(CLONES.with(Cell::get), 1);
}

#[test]
fn test_derive_struct_rejects_bad_app_and_type_versions() {
    let map = machine_map();
    let machine = sample();
    for app_version in [0, 5, u16::MAX] {
        let mut sink = Vec::new();
        let error = machine
            .serialize(&mut sink, &map, app_version)
            .expect_err("out of range");
        assert!(matches!(
            error.root(),
            VersionizeError::InvalidAppVersion { app_version: found, latest: 4 } if *found == app_version
        ));
        let error = Machine::deserialize(&mut [0u8; 200].as_slice(), &map, app_version)
            .expect_err("out of range");
        assert!(matches!(
            error.root(),
            VersionizeError::InvalidAppVersion { .. }
        ));
    }

    // A map that sends Machine to a version it does not have.
    let mut bad = VersionMap::new();
    bad.new_version().set_type_version(Machine::type_id(), 5);
    let error = machine
        .serialize(&mut Vec::new(), &bad, 2)
        .expect_err("mapped above latest");
    assert!(matches!(
        error.root(),
        VersionizeError::InvalidTypeVersion {
            type_name: "Machine",
            mapped: 5,
            latest: 4
        }
    ));
    let error =
        Machine::deserialize(&mut [0u8; 200].as_slice(), &bad, 2).expect_err("mapped above latest");
    assert!(matches!(
        error.root(),
        VersionizeError::InvalidTypeVersion { .. }
    ));
    // Still fine at the app version that maps correctly.
    assert!(machine.serialize(&mut Vec::new(), &bad, 1).is_ok());
}
