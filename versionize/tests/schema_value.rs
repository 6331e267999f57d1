//! Schema-driven decoding: a root type defined only here (nested structs, enums with and
//! without fields, options, collections, maps, generics, arrays, tuples, a recursive type),
//! written by its typed impl at every app version, decoded from the schema of that app
//! version (through its JSON, as a tool reads the file), compared with the value the typed
//! decoder read, and encoded back to the same bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::marker::PhantomData;
use std::num::Wrapping;
use std::sync::Arc;

use versionize::prelude::*;
use versionize::schema::{decode_value, encode_value, export, Schema, Value, ValueError};
use versionize::{Limits, VersionizeError};

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Machine {
    name: String,
    cpus: Vec<Cpu>,
    #[version(start = 2)]
    devices: BTreeMap<u32, Device>,
    ring: Ring<Desc, 3>,
    pair: (u16, i64),
    flags: [bool; 3],
    #[version(end = 3)]
    legacy: u8,
    tags: HashSet<u16>,
    names: HashMap<String, Option<u32>>,
    queue: VecDeque<u32>,
    sorted: BTreeSet<i16>,
    memory: Vec<u8>,
    page: [u8; 16],
    chain: Option<Box<Node>>,
    misc: Misc,
}

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Cpu {
    id: u8,
    regs: Regs,
    #[version(start = 2)]
    tsc_khz: Option<u32>,
    msrs: BTreeMap<u32, u64>,
    events: Vec<Event>,
}

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Regs {
    rip: u64,
    rflags: u64,
    gprs: [u64; 4],
}

#[derive(Clone, Debug, PartialEq, Versionize)]
enum Event {
    Nothing,
    Exception(u8, Option<u32>),
    Interrupt { vector: u8, soft: bool },
}

#[derive(Clone, Debug, PartialEq, Versionize)]
enum Device {
    None,
    Serial {
        port: u16,
        fifo: VecDeque<u8>,
    },
    Virtio(u32, Option<String>),
    #[version(start = 2, default_fn = "no_balloon")]
    Balloon {
        pages: u64,
    },
}

impl Device {
    fn no_balloon(&self, _: u16) -> VersionizeResult<Self> {
        Ok(Device::None)
    }
}

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Ring<T, const N: usize> {
    slots: [T; N],
    head: u16,
}

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Desc {
    addr: u64,
    len: u32,
}

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Node {
    value: i32,
    next: Option<Box<Node>>,
}

#[derive(Clone, Debug, PartialEq, Versionize)]
struct Misc(
    char,
    f32,
    f64,
    u128,
    i128,
    usize,
    isize,
    i8,
    Wrapping<u16>,
    Arc<u32>,
    (),
    PhantomData<u8>,
);

/// App 1: every type at 1. App 2: `Machine` v2 (`devices`). App 3: `Machine` v3 (`legacy`
/// retired), `Cpu` v2 (`tsc_khz`), `Device` v2 (`Balloon`; written as `None` before).
fn version_map() -> VersionMap {
    let mut map = VersionMap::new();
    map.new_version().set_type_version(Machine::type_id(), 2);
    map.new_version()
        .set_type_version(Machine::type_id(), 3)
        .set_type_version(Cpu::type_id(), 2)
        .set_type_version(Device::type_id(), 2);
    map
}

/// A small seeded generator (xorshift64*): the same values on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn len(&mut self, max: u64) -> usize {
        usize::try_from(self.below(max + 1)).unwrap()
    }
    fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }
    /// Edge values often: 0, MAX, and above 2^53.
    fn u64(&mut self) -> u64 {
        match self.below(4) {
            0 => 0,
            1 => u64::MAX,
            2 => (1 << 53) + 1,
            _ => self.next(),
        }
    }
    fn u32(&mut self) -> u32 {
        self.next() as u32
    }
    fn string(&mut self) -> String {
        let len = self.len(6);
        (0..len)
            .map(|_| ['a', 'Z', '0', 'é', '€', '𝄞', '"'][self.len(6)])
            .collect()
    }
}

fn gen_machine(rng: &mut Rng) -> Machine {
    let cpus = (0..rng.len(3))
        .map(|id| Cpu {
            id: id as u8,
            regs: Regs {
                rip: rng.u64(),
                rflags: rng.u64(),
                gprs: [rng.u64(), rng.u64(), rng.u64(), rng.u64()],
            },
            tsc_khz: rng.bool().then(|| rng.u32()),
            msrs: (0..rng.len(4)).map(|_| (rng.u32(), rng.u64())).collect(),
            events: (0..rng.len(3))
                .map(|_| match rng.below(3) {
                    0 => Event::Nothing,
                    1 => Event::Exception(rng.next() as u8, rng.bool().then(|| rng.u32())),
                    _ => Event::Interrupt {
                        vector: rng.next() as u8,
                        soft: rng.bool(),
                    },
                })
                .collect(),
        })
        .collect();
    let devices = (0..rng.len(4))
        .map(|_| {
            let device = match rng.below(4) {
                0 => Device::None,
                1 => Device::Serial {
                    port: rng.next() as u16,
                    fifo: (0..rng.len(5)).map(|_| rng.next() as u8).collect(),
                },
                2 => Device::Virtio(rng.u32(), rng.bool().then(|| rng.string())),
                _ => Device::Balloon { pages: rng.u64() },
            };
            (rng.u32(), device)
        })
        .collect();
    let mut chain = None;
    for _ in 0..rng.len(3) {
        chain = Some(Box::new(Node {
            value: rng.next() as i32,
            next: chain,
        }));
    }
    let desc = |rng: &mut Rng| Desc {
        addr: rng.u64(),
        len: rng.u32(),
    };
    Machine {
        name: rng.string(),
        cpus,
        devices,
        ring: Ring {
            slots: [desc(rng), desc(rng), desc(rng)],
            head: rng.next() as u16,
        },
        pair: (rng.next() as u16, rng.next() as i64),
        flags: [rng.bool(), rng.bool(), rng.bool()],
        legacy: rng.next() as u8,
        tags: (0..rng.len(5)).map(|_| rng.next() as u16).collect(),
        names: (0..rng.len(3))
            .map(|_| (rng.string(), rng.bool().then(|| rng.u32())))
            .collect(),
        queue: (0..rng.len(4)).map(|_| rng.u32()).collect(),
        sorted: (0..rng.len(4)).map(|_| rng.next() as i16).collect(),
        memory: (0..rng.len(300)).map(|_| rng.next() as u8).collect(),
        page: std::array::from_fn(|_| rng.next() as u8),
        chain,
        misc: Misc(
            ['x', '\0', 'ß', '🦀'][rng.len(3)],
            f32::from_bits(rng.u32()),
            f64::from_bits(rng.next()),
            u128::from(rng.next()) << 64 | u128::from(rng.next()),
            -(i128::from(rng.next()) << 40),
            rng.u64() as usize,
            rng.next() as isize,
            rng.next() as i8,
            Wrapping(rng.next() as u16),
            Arc::new(rng.u32()),
            (),
            PhantomData,
        ),
    }
}

// ---- The value the typed decoder read, as a `Value` with the fields of each version. ----

fn name(ty: &str) -> String {
    format!("{}::{ty}", module_path!())
}

fn object(ty: &str, fields: Vec<(&str, Value)>) -> Value {
    Value::Struct {
        type_name: name(ty),
        fields: fields
            .into_iter()
            .map(|(field, value)| (field.to_owned(), value))
            .collect(),
    }
}

fn variant(ty: &str, variant: &str, index: u32, fields: Vec<Value>) -> Value {
    Value::Enum {
        type_name: name(ty),
        variant: variant.to_owned(),
        index,
        fields: fields
            .into_iter()
            .enumerate()
            .map(|(at, value)| (at.to_string(), value))
            .collect(),
    }
}

fn option<T>(value: Option<&T>, f: impl Fn(&T) -> Value) -> Value {
    Value::Option(value.map(|inner| Box::new(f(inner))))
}

fn expected_machine(m: &Machine, map: &VersionMap, app: u16) -> Value {
    let machine_version = map.get_type_version(app, Machine::type_id());
    let cpu_version = map.get_type_version(app, Cpu::type_id());
    let device_version = map.get_type_version(app, Device::type_id());
    let cpu = |c: &Cpu| {
        let mut fields = vec![
            ("id", Value::U8(c.id)),
            (
                "regs",
                object(
                    "Regs",
                    vec![
                        ("rip", Value::U64(c.regs.rip)),
                        ("rflags", Value::U64(c.regs.rflags)),
                        (
                            "gprs",
                            Value::Seq(c.regs.gprs.iter().map(|g| Value::U64(*g)).collect()),
                        ),
                    ],
                ),
            ),
        ];
        if cpu_version >= 2 {
            fields.push(("tsc_khz", option(c.tsc_khz.as_ref(), |k| Value::U32(*k))));
        }
        fields.push((
            "msrs",
            Value::Map(
                c.msrs
                    .iter()
                    .map(|(k, v)| (Value::U32(*k), Value::U64(*v)))
                    .collect(),
            ),
        ));
        fields.push((
            "events",
            Value::Seq(
                c.events
                    .iter()
                    .map(|e| match e {
                        Event::Nothing => variant("Event", "Nothing", 0, vec![]),
                        Event::Exception(vector, code) => variant(
                            "Event",
                            "Exception",
                            1,
                            vec![
                                Value::U8(*vector),
                                option(code.as_ref(), |c| Value::U32(*c)),
                            ],
                        ),
                        Event::Interrupt { vector, soft } => Value::Enum {
                            type_name: name("Event"),
                            variant: "Interrupt".to_owned(),
                            index: 2,
                            fields: vec![
                                ("vector".to_owned(), Value::U8(*vector)),
                                ("soft".to_owned(), Value::Bool(*soft)),
                            ],
                        },
                    })
                    .collect(),
            ),
        ));
        object("Cpu", fields)
    };
    let device = |d: &Device| match d {
        Device::None => variant("Device", "None", 0, vec![]),
        Device::Serial { port, fifo } => Value::Enum {
            type_name: name("Device"),
            variant: "Serial".to_owned(),
            index: 1,
            fields: vec![
                ("port".to_owned(), Value::U16(*port)),
                (
                    "fifo".to_owned(),
                    Value::Bytes(fifo.iter().copied().collect()),
                ),
            ],
        },
        Device::Virtio(id, label) => variant(
            "Device",
            "Virtio",
            2,
            vec![
                Value::U32(*id),
                option(label.as_ref(), |l| Value::String(l.clone())),
            ],
        ),
        Device::Balloon { pages } => {
            assert!(device_version >= 2, "typed decode read a Balloon at v1");
            Value::Enum {
                type_name: name("Device"),
                variant: "Balloon".to_owned(),
                index: 3,
                fields: vec![("pages".to_owned(), Value::U64(*pages))],
            }
        }
    };
    fn node(n: &Node) -> Value {
        object(
            "Node",
            vec![
                ("value", Value::I32(n.value)),
                ("next", option(n.next.as_deref(), node)),
            ],
        )
    }
    let desc = |d: &Desc| {
        object(
            "Desc",
            vec![("addr", Value::U64(d.addr)), ("len", Value::U32(d.len))],
        )
    };
    let Misc(c, f, d, wide, signed, size, isize, small, wrapping, arc, (), PhantomData) = &m.misc;
    let mut fields = vec![
        ("name", Value::String(m.name.clone())),
        ("cpus", Value::Seq(m.cpus.iter().map(cpu).collect())),
    ];
    if machine_version >= 2 {
        fields.push((
            "devices",
            Value::Map(
                m.devices
                    .iter()
                    .map(|(k, v)| (Value::U32(*k), device(v)))
                    .collect(),
            ),
        ));
    }
    fields.extend([
        (
            "ring",
            Value::Struct {
                type_name: format!("{}<{}, 3>", name("Ring"), name("Desc")),
                fields: vec![
                    (
                        "slots".to_owned(),
                        Value::Seq(m.ring.slots.iter().map(desc).collect()),
                    ),
                    ("head".to_owned(), Value::U16(m.ring.head)),
                ],
            },
        ),
        (
            "pair",
            Value::Tuple(vec![Value::U16(m.pair.0), Value::I64(m.pair.1)]),
        ),
        (
            "flags",
            Value::Seq(m.flags.iter().map(|b| Value::Bool(*b)).collect()),
        ),
    ]);
    if machine_version < 3 {
        fields.push(("legacy", Value::U8(m.legacy)));
    }
    fields.extend([
        (
            "tags",
            Value::Set(m.tags.iter().map(|t| Value::U16(*t)).collect()),
        ),
        (
            "names",
            Value::Map(
                m.names
                    .iter()
                    .map(|(k, v)| {
                        (
                            Value::String(k.clone()),
                            option(v.as_ref(), |n| Value::U32(*n)),
                        )
                    })
                    .collect(),
            ),
        ),
        (
            "queue",
            Value::Seq(m.queue.iter().map(|q| Value::U32(*q)).collect()),
        ),
        (
            "sorted",
            Value::Set(m.sorted.iter().map(|s| Value::I16(*s)).collect()),
        ),
        ("memory", Value::Bytes(m.memory.clone())),
        ("page", Value::Bytes(m.page.to_vec())),
        ("chain", option(m.chain.as_deref(), node)),
        (
            "misc",
            Value::Struct {
                type_name: name("Misc"),
                fields: [
                    Value::Char(*c),
                    Value::F32(*f),
                    Value::F64(*d),
                    Value::U128(*wide),
                    Value::I128(*signed),
                    Value::U64(*size as u64),
                    Value::I64(*isize as i64),
                    Value::I8(*small),
                    Value::U16(wrapping.0),
                    Value::U32(**arc),
                    Value::Unit,
                    Value::Unit,
                ]
                .into_iter()
                .enumerate()
                .map(|(at, value)| (at.to_string(), value))
                .collect(),
            },
        ),
    ]);
    object("Machine", fields)
}

/// Hash maps and sets come out in hash order, which differs between two instances with the
/// same contents: sort their entries before comparing.
fn sorted(value: Value) -> Value {
    match value {
        Value::Set(items) => {
            let mut items: Vec<Value> = items.into_iter().map(sorted).collect();
            items.sort_by_key(|item| format!("{item:?}"));
            Value::Set(items)
        }
        Value::Map(entries) => {
            let mut entries: Vec<(Value, Value)> = entries
                .into_iter()
                .map(|(k, v)| (sorted(k), sorted(v)))
                .collect();
            entries.sort_by_key(|(k, _)| format!("{k:?}"));
            Value::Map(entries)
        }
        Value::Seq(items) => Value::Seq(items.into_iter().map(sorted).collect()),
        Value::Tuple(items) => Value::Tuple(items.into_iter().map(sorted).collect()),
        Value::Option(inner) => Value::Option(inner.map(|v| Box::new(sorted(*v)))),
        Value::Struct { type_name, fields } => Value::Struct {
            type_name,
            fields: fields.into_iter().map(|(n, v)| (n, sorted(v))).collect(),
        },
        Value::Enum {
            type_name,
            variant,
            index,
            fields,
        } => Value::Enum {
            type_name,
            variant,
            index,
            fields: fields.into_iter().map(|(n, v)| (n, sorted(v))).collect(),
        },
        other => other,
    }
}

/// The schema of `app`, through its JSON file as a tool would read it.
fn schema_file(map: &VersionMap, app: u16) -> Schema {
    let json = export::<Machine>(map, app).unwrap().to_json();
    Schema::from_json(&json).unwrap()
}

fn to_bytes<T: Versionize>(value: &T, map: &VersionMap, app: u16) -> Vec<u8> {
    let mut bytes = Vec::new();
    value.serialize(&mut bytes, map, app).unwrap();
    bytes
}

#[test]
fn test_schema_value_decodes_like_the_typed_decoder_at_every_app_version() {
    let map = version_map();
    let schemas: Vec<Schema> = (1..=3).map(|app| schema_file(&map, app)).collect();
    let mut rng = Rng(0x5eed_0001);
    let mut seen_balloon_substituted = false;
    for _ in 0..200 {
        let machine = gen_machine(&mut rng);
        for app in 1..=3u16 {
            let schema = &schemas[usize::from(app) - 1];
            let bytes = to_bytes(&machine, &map, app);
            let back = Machine::deserialize(&mut bytes.as_slice(), &map, app).unwrap();
            let value = decode_value(schema, &mut bytes.as_slice(), &Limits::default())
                .unwrap_or_else(|e| panic!("app {app}: {e}"));
            assert_eq!(
                sorted(value.clone()),
                sorted(expected_machine(&back, &map, app)),
                "app version {app}"
            );
            let mut again = Vec::new();
            encode_value(schema, &value, &mut again, &Limits::default()).unwrap();
            assert_eq!(again, bytes, "app version {app}: re-encoded bytes differ");
            if app == 2
                && machine
                    .devices
                    .values()
                    .any(|d| matches!(d, Device::Balloon { .. }))
            {
                seen_balloon_substituted = true;
            }
        }
    }
    assert!(
        seen_balloon_substituted,
        "the generator never made a Balloon"
    );
}

#[test]
fn test_schema_value_root_and_generic_names_are_schema_keys() {
    let map = version_map();
    let schema = schema_file(&map, 3);
    assert_eq!(schema.root, name("Machine"));
    let ring = format!("{}<{}, 3>", name("Ring"), name("Desc"));
    assert!(
        schema.types.contains_key(&ring),
        "{:?}",
        schema.types.keys()
    );
}

fn sample() -> (VersionMap, Machine, Vec<u8>, Schema) {
    let map = version_map();
    let mut rng = Rng(7);
    let mut machine = gen_machine(&mut rng);
    machine.memory = vec![0xa5; 64];
    machine.chain = Some(Box::new(Node {
        value: 1,
        next: None,
    }));
    let bytes = to_bytes(&machine, &map, 3);
    let schema = schema_file(&map, 3);
    (map, machine, bytes, schema)
}

#[test]
fn test_schema_value_every_truncation_says_truncated() {
    let (_, _, bytes, schema) = sample();
    for len in 0..bytes.len() {
        match decode_value(&schema, &mut &bytes[..len], &Limits::default()) {
            Err(ValueError::Truncated { .. }) => {}
            other => panic!("prefix of {len} bytes: {other:?}"),
        }
    }
}

#[test]
fn test_schema_value_trailing_bytes_are_refused() {
    let (_, _, mut bytes, schema) = sample();
    bytes.extend_from_slice(&[0, 1, 2]);
    let error = decode_value(&schema, &mut bytes.as_slice(), &Limits::default()).unwrap_err();
    assert!(
        matches!(error, ValueError::TrailingBytes { count: 3, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("3 byte(s) after the end of"));
    // A long tail is counted up to 1 MiB, not read to its end.
    bytes.resize(bytes.len() + (4 << 20), 0);
    let error = decode_value(&schema, &mut bytes.as_slice(), &Limits::default()).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("at least 1048576 bytes after the end of the "),
        "{error}"
    );
}

#[test]
fn test_schema_value_corrupted_bytes_never_panic_and_valid_results_reencode() {
    let (_, _, bytes, schema) = sample();
    let mut rng = Rng(99);
    let mut decoded = 0;
    for _ in 0..2000 {
        let mut corrupt = bytes.clone();
        for _ in 0..=rng.len(3) {
            let at = rng.len(corrupt.len() as u64 - 1);
            corrupt[at] = rng.next() as u8;
        }
        if let Ok(value) = decode_value(&schema, &mut corrupt.as_slice(), &Limits::default()) {
            decoded += 1;
            let mut again = Vec::new();
            encode_value(&schema, &value, &mut again, &Limits::default()).unwrap();
            assert_eq!(again, corrupt);
        }
    }
    assert!(decoded > 0);
}

#[test]
fn test_schema_value_limits_bound_the_decode() {
    let (_, _, bytes, schema) = sample();
    let error = decode_value(
        &schema,
        &mut bytes.as_slice(),
        &Limits::default().with_budget(64),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            ValueError::Codec {
                source: VersionizeError::BudgetExceeded { .. },
                ..
            }
        ),
        "{error:?}"
    );
    // Machine > misc is two levels; Machine > chain > Node is two; cpus > Cpu > regs three.
    let shallow = Limits::default().with_max_depth(2);
    let error = decode_value(&schema, &mut bytes.as_slice(), &shallow).unwrap_err();
    assert!(
        matches!(
            error,
            ValueError::Codec {
                source: VersionizeError::DepthLimit { limit: 2 },
                ..
            }
        ),
        "{error:?}"
    );
    // The schema decoder counts nesting as the typed decoder does, plus one level per
    // `Some`: it never accepts a nesting that the typed decoder refuses, and needs at most
    // one level per `Option` more.
    let (machine_map, _, _, _) = sample();
    let accepts = |depth: u32| {
        let limits = Limits::default().with_max_depth(depth);
        let typed = Machine::deserialize(
            &mut bytes.as_slice(),
            &machine_map.clone().with_limits(limits),
            3,
        )
        .is_ok();
        let schema_ok = decode_value(&schema, &mut bytes.as_slice(), &limits).is_ok();
        (typed, schema_ok)
    };
    let typed_needs = (1..16).find(|&depth| accepts(depth).0).unwrap();
    let schema_needs = (1..16).find(|&depth| accepts(depth).1).unwrap();
    for depth in 1..16 {
        let (typed, schema_ok) = accepts(depth);
        assert!(typed || !schema_ok, "max depth {depth}");
    }
    // `chain` is `Option<Box<Node>>` holding one node whose `next` is `None`.
    assert_eq!(schema_needs, typed_needs + 1);
}

#[test]
fn test_schema_value_hostile_length_is_refused_before_allocating() {
    let (_, _, bytes, schema) = sample();
    // `name` is the first field: its u64 length leads the bytes.
    let mut hostile = bytes.clone();
    hostile[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let error = decode_value(&schema, &mut hostile.as_slice(), &Limits::default()).unwrap_err();
    assert!(
        matches!(
            error,
            ValueError::Codec {
                source: VersionizeError::LengthLimit { .. },
                ref path,
            } if path == "name"
        ),
        "{error:?}"
    );
}

#[test]
fn test_schema_value_error_paths_name_the_field() {
    let (_, machine, bytes, schema) = sample();
    // The bool of `flags[1]`: find it by writing a machine that differs only there.
    let mut other = machine.clone();
    other.flags[1] = !other.flags[1];
    let other_bytes = to_bytes(&other, &version_map(), 3);
    let at = bytes
        .iter()
        .zip(&other_bytes)
        .position(|(a, b)| a != b)
        .unwrap();
    let mut bad = bytes.clone();
    bad[at] = 7;
    let error = decode_value(&schema, &mut bad.as_slice(), &Limits::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "flags[1]: invalid bool byte 0x07, expected 0 or 1"
    );
}

#[test]
fn test_schema_value_encode_refuses_values_of_another_layout() {
    let (_, _, bytes, schema) = sample();
    let value = decode_value(&schema, &mut bytes.as_slice(), &Limits::default()).unwrap();
    let Value::Struct { type_name, fields } = value else {
        panic!("not a struct")
    };
    let with = |field: &str, new: Value| {
        let fields = fields
            .iter()
            .map(|(name, value)| {
                let value = if name == field {
                    new.clone()
                } else {
                    value.clone()
                };
                (name.clone(), value)
            })
            .collect();
        Value::Struct {
            type_name: type_name.clone(),
            fields,
        }
    };
    let encode = |value: &Value| {
        encode_value(&schema, value, &mut Vec::new(), &Limits::default())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        encode(&with("name", Value::U32(1))),
        "name: expected String, found u32"
    );
    assert_eq!(
        encode(&with("page", Value::Bytes(vec![1, 2]))),
        "page: expected [u8; 16], found 2 bytes"
    );
    assert_eq!(
        encode(&with(
            "pair",
            Value::Tuple(vec![Value::U16(1), Value::U64(2)])
        )),
        "pair[1]: expected i64, found u64"
    );
    assert_eq!(
        encode(&with("tags", Value::Seq(vec![]))),
        "tags: expected HashSet<u16>, found a sequence of 0"
    );
    assert_eq!(
        encode(&with("queue", Value::Set(vec![]))),
        "queue: expected VecDeque<u32>, found a set of 0"
    );
    // A field of another app version: `legacy` is retired at Machine v3.
    let mut extra = fields.clone();
    extra.push(("legacy".to_owned(), Value::U8(0)));
    let error = encode(&Value::Struct {
        type_name: type_name.clone(),
        fields: extra,
    });
    assert!(error.starts_with("<root>: expected "), "{error}");
    assert!(error.contains("legacy"), "{error}");
    // A variant that does not exist at the enum's version.
    let balloon_at_v1 = Value::Enum {
        type_name: name("Device"),
        variant: "Balloon".to_owned(),
        index: 3,
        fields: vec![("pages".to_owned(), Value::U64(1))],
    };
    let v2 = schema_file(&version_map(), 2);
    let v2_value = {
        let bytes = to_bytes(&gen_machine(&mut Rng(3)), &version_map(), 2);
        decode_value(&v2, &mut bytes.as_slice(), &Limits::default()).unwrap()
    };
    let Value::Struct { type_name, fields } = v2_value else {
        panic!("not a struct")
    };
    let fields = fields
        .into_iter()
        .map(|(name, value)| match name.as_str() {
            "devices" => (
                name,
                Value::Map(vec![(Value::U32(1), balloon_at_v1.clone())]),
            ),
            _ => (name, value),
        })
        .collect();
    let error = encode_value(
        &v2,
        &Value::Struct { type_name, fields },
        &mut Vec::new(),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            ValueError::UnknownVariant {
                index: 3,
                version: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "devices[0].value: unknown variant index 3 for {} at version 1",
            name("Device")
        )
    );
}

/// A hand-written impl: its layout is not in the schema.
#[derive(Clone, Debug, PartialEq)]
struct Handmade(u32);

impl Versionize for Handmade {
    fn serialize<W: std::io::Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        app_version: u16,
    ) -> VersionizeResult<()> {
        self.0.serialize(writer, map, app_version)
    }

    fn deserialize<R: std::io::Read>(
        reader: &mut R,
        map: &VersionMap,
        app_version: u16,
    ) -> VersionizeResult<Self> {
        u32::deserialize(reader, map, app_version).map(Handmade)
    }

    fn version() -> u16 {
        1
    }
}

#[derive(Clone, Debug, PartialEq, Versionize)]
struct WithHandmade {
    before: u8,
    inner: Option<Handmade>,
}

#[test]
fn test_schema_value_opaque_type_is_named_when_reached() {
    let map = VersionMap::new();
    let schema = export::<WithHandmade>(&map, 1).unwrap();
    let none = to_bytes(
        &WithHandmade {
            before: 1,
            inner: None,
        },
        &map,
        1,
    );
    // Not reached: decodes.
    decode_value(&schema, &mut none.as_slice(), &Limits::default()).unwrap();
    let some = to_bytes(
        &WithHandmade {
            before: 1,
            inner: Some(Handmade(5)),
        },
        &map,
        1,
    );
    let error = decode_value(&schema, &mut some.as_slice(), &Limits::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "inner: {} has a hand-written Versionize impl whose layout the schema does not \
             describe, so it cannot be decoded without its Rust type",
            name("Handmade")
        )
    );
}

/// Schema files edited by hand or by an attacker: errors, never a panic, a hang or a stack
/// overflow.
#[test]
fn test_schema_value_garbage_schemas_are_errors() {
    let schema_with = |root: &str, types: &str| {
        Schema::from_json(&format!(
            r#"{{"format": 2, "app_version": 1, "root": "{root}", "types": {{{types}}}}}"#
        ))
        .unwrap()
    };
    let field = |name: &str, ty: &str| {
        format!(r#"{{"name": "{name}", "ty": "{ty}", "start": 1, "end": null, "present": true}}"#)
    };
    let structure = |name: &str, fields: &[String]| {
        format!(
            r#""{name}": {{"name": "{name}", "version": 1, "latest_version": 1, "kind": {{"struct": {{"fields": [{}]}}}}}}"#,
            fields.join(", ")
        )
    };
    let decode = |schema: &Schema, bytes: &[u8]| {
        decode_value(schema, &mut &bytes[..], &Limits::default())
            .unwrap_err()
            .to_string()
    };
    // A field type that names nothing.
    let unknown = schema_with("a::A", &structure("a::A", &[field("x", "a::Missing")]));
    assert_eq!(
        decode(&unknown, &[]),
        "cannot read the type `a::Missing` of a::A.x: `a::Missing` is neither a type of the \
         schema nor a built-in layout"
    );
    // A root that names nothing.
    let rootless = schema_with("a::Gone", "");
    assert!(decode(&rootless, &[]).contains("of root"));
    // A type that contains itself with no way out: the depth limit, not a stack overflow.
    let endless = schema_with("a::A", &structure("a::A", &[field("again", "(a::A,)")]));
    let error = decode(&endless, &[]);
    assert!(error.starts_with("again[0].again[0].again"), "{error}");
    assert!(
        error.ends_with(": nesting deeper than the limit of 128"),
        "{error}"
    );
    // Options nested as deep as a type expression may go, inside a type that contains
    // itself: the options are not nesting levels of the typed decoders, and must not be a
    // recursion the depth limit does not see (127 x 128 frames overflowed the stack).
    let options = format!("{}a::A{}", "Option<".repeat(126), ">".repeat(126));
    let deep = schema_with("a::A", &structure("a::A", &[field("next", &options)]));
    let error = decode(&deep, &vec![1; 200_000]);
    assert!(
        error.ends_with(": nesting deeper than the limit of 128"),
        "{error}"
    );
    // A huge array of nothing: refused by the budget before the loop.
    let huge = schema_with("[(); 18446744073709551615]", "");
    assert!(decode(&huge, &[]).contains("decode budget exceeded"));
    // Two variants with one index.
    let twins = schema_with(
        "a::E",
        r#""a::E": {"name": "a::E", "version": 1, "latest_version": 1, "kind": {"enum": {"variants": [
            {"name": "A", "index": 0, "start": 1, "end": null, "present": true, "fields": []},
            {"name": "B", "index": 0, "start": 1, "end": null, "present": true, "fields": []}]}}}"#,
    );
    assert_eq!(
        decode(&twins, &[0, 0, 0, 0]),
        "inconsistent schema: a::E has two variants with index 0 at version 1"
    );
}

#[test]
fn test_schema_value_fam_struct_wrapper_layout() {
    // `FamStructWrapper<H, E>`: the header, then a u64 count and the entries.
    let schema = Schema::from_json(
        r#"{"format": 2, "app_version": 1, "root": "FamStructWrapper<a::Hdr, u64>", "types": {
            "a::Hdr": {"name": "a::Hdr", "version": 1, "latest_version": 1, "kind": {"struct": {"fields": [
                {"name": "count", "ty": "u32", "start": 1, "end": null, "present": true}]}}}}}"#,
    )
    .unwrap();
    let mut bytes = 2u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&2u64.to_le_bytes());
    bytes.extend_from_slice(&7u64.to_le_bytes());
    bytes.extend_from_slice(&9u64.to_le_bytes());
    let value = decode_value(&schema, &mut bytes.as_slice(), &Limits::default()).unwrap();
    assert_eq!(
        value.to_json(),
        serde_json::json!({"header": {"count": 2}, "entries": ["0x7", "0x9"]})
    );
    let mut again = Vec::new();
    encode_value(&schema, &value, &mut again, &Limits::default()).unwrap();
    assert_eq!(again, bytes);
}

/// A value built by hand may nest deeper than a decoder would accept: encoding refuses it
/// at the depth limit instead of recursing without bound, and writes what decodes back.
#[test]
fn test_schema_value_encode_depth_is_bounded_like_decoding() {
    let schema = Schema::from_json(
        r#"{"format": 2, "app_version": 1, "root": "a::List", "types": {
            "a::List": {"name": "a::List", "version": 1, "latest_version": 1, "kind": {"struct": {"fields": [
                {"name": "next", "ty": "Option<a::List>", "start": 1, "end": null, "present": true}]}}}}}"#,
    )
    .unwrap();
    let list = |len: usize| {
        let mut value = Value::Option(None);
        for _ in 0..len {
            value = Value::Option(Some(Box::new(Value::Struct {
                type_name: "a::List".to_owned(),
                fields: vec![("next".to_owned(), value)],
            })));
        }
        let Value::Option(Some(root)) = value else {
            panic!("empty list")
        };
        *root
    };
    // `list(n)`: n structs and n - 1 `Some`s, one level each.
    let limits = Limits::default().with_max_depth(199);
    let mut bytes = Vec::new();
    encode_value(&schema, &list(100), &mut bytes, &limits).unwrap();
    assert_eq!(bytes.len(), 100);
    let back = decode_value(&schema, &mut bytes.as_slice(), &limits).unwrap();
    assert_eq!(back, list(100));

    let error = encode_value(&schema, &list(101), &mut Vec::new(), &limits).unwrap_err();
    assert!(
        matches!(
            error,
            ValueError::Codec {
                source: VersionizeError::DepthLimit { limit: 199 },
                ..
            }
        ),
        "{error:?}"
    );
    let mut deeper = Vec::new();
    let generous = Limits::default().with_max_depth(400);
    encode_value(&schema, &list(101), &mut deeper, &generous).unwrap();
    let error = decode_value(&schema, &mut deeper.as_slice(), &limits).unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("nesting deeper than the limit of 199"),
        "{error}"
    );
}
